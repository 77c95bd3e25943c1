#!/usr/bin/env bash
# Netboot through the appliance alone: `tinkerbell serve` with its own DHCP, TFTP, iPXE over
# HTTP and HookOS directory runs inside the lab's namespace (tests/lab/lab.sh), the lab's
# hardware.csv is imported, and machines powered on over IPMI with `bootdev pxe` must get as
# far as downloading the HookOS kernel and initramfs from it:
#
#   m1  BIOS: SeaBIOS + QEMU's iPXE NIC ROM → DHCP (user class iPXE) → auto.ipxe → kernel
#   m2  UEFI: OVMF + QEMU's iPXE EFI ROM → the same over HTTP
#   m4  UEFI without the iPXE ROM (romfile=): OVMF's own PXE client → DHCP → ipxe.efi over
#       TFTP → iPXE → DHCP again → auto.ipxe → kernel (the path of real UEFI firmware)
#
# Each phase is checked in serve's timeline records (its debug log of tinkerbell_boots::record)
# and the per-phase times since power-on are printed. The HookOS directory holds a HookOS build
# when there is one (hookos/build.sh's target/hookos, or NETBOOT_HOOKOS_DIR), else a Linux
# kernel found on this host (hookos/build.sh's package cache, /boot) with random bytes as the
# initramfs: this test is about the netboot path, not HookOS. Without any Linux kernel, iPXE's
# ipxe.lkrn stands in; UEFI's iPXE cannot execute it, so the UEFI machines are then checked
# only up to the kernel download.
#
# Needs root, /dev/net/tun, qemu-system-x86_64, OVMF, ipmi_sim, ipmitool, Debian's ipxe and
# the tinkerbell binary (cargo build -p tinkerbell). Missing: fail under CI=true, else skip.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
export LAB_STATE="${LAB_STATE:-$repo/target/lab-netboot}"
L="$here/lab.sh"
cli="${TINKERBELL_BIN:-${CARGO_TARGET_DIR:-$repo/target}/debug/tinkerbell}"
T0=$SECONDS

missing=""
[ "$(id -u)" = 0 ] || missing="$missing root"
[ -c /dev/net/tun ] || missing="$missing /dev/net/tun"
for t in qemu-system-x86_64 ipmi_sim ipmitool curl; do command -v $t >/dev/null || missing="$missing $t"; done
[ -f /usr/share/OVMF/OVMF_CODE_4M.fd ] || missing="$missing OVMF"
[ -f /usr/lib/ipxe/ipxe.lkrn ] && [ -f /usr/lib/ipxe/ipxe.efi ] || missing="$missing ipxe"
[ -x "$cli" ] || missing="$missing $cli"
if [ -n "$missing" ]; then
  if [ -n "${CI:-}" ]; then echo "tests/lab/netboot.sh: FAIL: missing$missing" >&2; exit 1; fi
  echo "tests/lab/netboot.sh: SKIP: missing$missing (scripts/install-deps.sh; cargo build -p tinkerbell)"; exit 0
fi

"$L" down --purge >/dev/null 2>&1 || true
serve_pid=""
cleanup() {
  [ -n "$serve_pid" ] && kill "$serve_pid" 2>/dev/null && wait "$serve_pid" 2>/dev/null
  "$L" down >/dev/null 2>&1 || true
}
trap cleanup EXIT
fail=0
check() { local what=$1; shift; if "$@"; then echo "  ok: $what"; else echo "  FAIL: $what" >&2; fail=1; fi; }
wait_for() {  # wait_for <limit s> <description> <command...>
  local limit=$1 what=$2; shift 2
  local end=$((SECONDS + limit))
  until "$@"; do
    if [ $SECONDS -ge $end ]; then echo "  FAIL: timed out after $limit s: $what" >&2; fail=1; return 1; fi
    sleep 0.5
  done
  echo "  ok: $what ($((SECONDS - T0)) s)"
}

"$L" up --machines 4 >/dev/null
# shellcheck disable=SC1091
. "$LAB_STATE/lab.env"
: > "$LAB_STATE/m4/nic-rom"   # m4: no iPXE ROM, OVMF's own PXE

data="$LAB_STATE/appliance"; hookos="$LAB_STATE/hookos"; log="$LAB_STATE/serve.log"
: > "$log"
mkdir -p "$data" "$hookos"
built=""
for d in "${NETBOOT_HOOKOS_DIR:-}" "${CARGO_TARGET_DIR:-$repo/target}/hookos" "$repo/target/hookos"; do
  [ -n "$d" ] && [ -f "$d/vmlinuz-x86_64" ] && [ -f "$d/initramfs-x86_64" ] && { built=$d; break; }
done
efi_kernel=1
if [ -n "$built" ]; then
  cp "$built/vmlinuz-x86_64" "$built/initramfs-x86_64" "$hookos/"
  echo "HookOS: $built"
else
  kernel=$(ls "${CARGO_TARGET_DIR:-$repo/target}"/hookos-cache/x/*/boot/vmlinuz-* "$repo"/target/hookos-cache/x/*/boot/vmlinuz-* /boot/vmlinuz-* 2>/dev/null | head -1) || true
  if [ -n "$kernel" ]; then
    cp "$kernel" "$hookos/vmlinuz-x86_64"
  else
    cp /usr/lib/ipxe/ipxe.lkrn "$hookos/vmlinuz-x86_64"; efi_kernel=0
  fi
  head -c 2097152 /dev/urandom > "$hookos/initramfs-x86_64"
  echo "HookOS stand-in: kernel ${kernel:-ipxe.lkrn (BIOS only)}, random initramfs"
fi

# Stock iPXE waits ~16 s for an IPv6 router after its DHCP unless a Router Advertisement
# answers its solicitation: serve answers on br0 (NETBOOT_IPV6_RA=0 measures without it).
ra_flags=()
[ "${NETBOOT_IPV6_RA:-1}" = 1 ] && ra_flags=(--ipv6-ra-enabled --dhcp-bind-interface "$LAB_BRIDGE")
echo "appliance: IPv6 RA responder ${ra_flags[*]:-off}"
NO_COLOR=1 ip netns exec "$LAB_NS" "$cli" --data-dir "$data" --log-level "info,tinkerbell_boots::record=debug" \
  serve --bind-address "$LAB_APPLIANCE_IP" --http-port 7080 \
  --dhcp-enabled --tftp-enabled --syslog-enabled --hookos-dir "$hookos" "${ra_flags[@]}" \
  --enable-rufio-controller=false > "$log" 2>&1 &
serve_pid=$!
wait_for 60 "tinkerbell serve is up in $LAB_NS" grep -q "store API at" "$log"
ip netns exec "$LAB_NS" "$cli" --data-dir "$data" hardware import --csv "$LAB_CSV" >/dev/null
check "hardware.csv imported" bash -c "ip netns exec '$LAB_NS' '$cli' --data-dir '$data' get hardware | grep -q lab-m4"

for m in m1 m2 m4; do
  "$L" ipmi $m chassis bootdev pxe >/dev/null
  "$L" ipmi $m chassis power on >/dev/null
done

# serve's log without colour codes, should the logger add them.
plain() { sed 's/\x1b\[[0-9;]*m//g' "$log"; }
# recorded <machine> <phase>: serve's timeline has the phase for lab-<machine>.
recorded() { plain | grep -aq "timeline subject=default/lab-$1 phase=$2 "; }
for m in m1 m2 m4; do
  echo "lab-$m ($(cat "$LAB_STATE/$m/firmware")$([ -f "$LAB_STATE/$m/nic-rom" ] && echo ', no iPXE ROM')):"
  wait_for 240 "$m: DHCP offer and ack" recorded $m dhcp-ack
  [ $m = m4 ] && wait_for 240 "$m: ipxe.efi over TFTP" recorded $m tftp
  wait_for 240 "$m: auto.ipxe" recorded $m ipxe-script
  wait_for 240 "$m: HookOS kernel" recorded $m kernel
  if [ "$(cat "$LAB_STATE/$m/firmware")" = uefi ] && [ $efi_kernel = 0 ]; then
    echo "  skip: $m: initramfs (no EFI-bootable kernel on this host)"
  else
    wait_for 240 "$m: HookOS initramfs" recorded $m initramfs
  fi
done

echo "metrics:"
metrics=$(ip netns exec "$LAB_NS" curl -sf "http://$LAB_APPLIANCE_IP:7080/boots/metrics")
check "DHCP acks sent" grep -q 'boots_dhcp_sent_total{type="ack"}' <<<"$metrics"
check "TFTP transfers completed" grep -q 'boots_tftp_transfers_total{outcome="Completed"}' <<<"$metrics"
check "HookOS served" grep -q 'boots_http_requests_total{route="Hookos",status="200"}' <<<"$metrics"
if [ ${#ra_flags[@]} -gt 0 ]; then
  check "IPv6 router solicitations answered" grep -Eq '^boots_ra_advertisements_total [1-9]' <<<"$metrics"
fi

# Seconds from each machine's (last) power-on to each of its phases, from the timestamps of
# the console marker and serve's log.
echo "times since power-on (s):"
for m in m1 m2 m4; do
  on=$(grep -a '=== lab: power on' "$LAB_STATE/$m/console.log" | tail -1 | awk '{print $5}')
  on_s=$(date -d "$on" +%s.%N)
  line="  $m:"
  for p in dhcp-offer dhcp-ack tftp ipxe-script kernel initramfs; do
    at=$(plain | grep -a "timeline subject=default/lab-$m phase=$p " | head -1 | awk '{print $1}') || true
    [ -n "$at" ] && line="$line $p=$(awk -v a="$(date -d "$at" +%s.%N)" -v b="$on_s" 'BEGIN { printf "%.1f", a - b }')"
  done
  echo "$line"
done

if [ $fail = 0 ]; then
  echo "tests/lab/netboot.sh: PASS in $((SECONDS - T0)) s"
else
  echo "tests/lab/netboot.sh: FAILED; serve log $log, consoles $LAB_STATE/m*/console.log" >&2
  exit 1
fi
