#!/usr/bin/env bash
# End-to-end provisioning in the lab, the judge of the whole stack (issue #9):
#
#   power-on over IPMI (rufio) → DHCP, TFTP/iPXE, auto.ipxe, HookOS kernel + initramfs (boots)
#   → tink-worker in HookOS (tink server) → image2disk of a bootable OS image, writefile into
#   its boot partition, reboot → the machine boots its disk → the installed OS reads its
#   metadata from hegel and prints a marker on its serial console.
#
# One `tinkerbell serve` runs inside the lab's namespace on 10.99.0.1 with DHCP, TFTP, syslog,
# the tink server and controller and rufio; the machines come from the lab's hardware.csv; a
# workflow with --netboot per machine does the rest. Machines run in parallel: odd ones BIOS
# (SeaBIOS + iPXE ROM), even ones UEFI (OVMF).
#
#   tests/lab/e2e.sh [--machines N]        (root; default 2: m1 BIOS, m2 UEFI)
#
# Prints each machine's timeline (`tinkerbell timeline`) and a summary line per machine:
#   e2e: lab-m1 bios power-on→image-written 61.2 s power-on→metadata-read 98.7 s
# which bench/e2e.sh reads. Consoles, service logs and the timelines stay under
# target/e2e/ (E2E_DIR) whatever the outcome. Needs root, /dev/net/tun, QEMU, OVMF, ipmi_sim,
# ipmitool and the osimage.sh tools; missing ones fail under CI=true and skip otherwise.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
E=${E2E_DIR:-$repo/target/e2e}
export LAB_STATE="$E/lab"
L="$here/lab.sh"
n=2
[ "${1:-}" = --machines ] && n=$2
T0=$SECONDS
say() { echo "e2e [$((SECONDS - T0)) s]: $*"; }

missing=""
[ "$(id -u)" = 0 ] || missing="$missing root"
[ -c /dev/net/tun ] || missing="$missing /dev/net/tun"
for t in qemu-system-x86_64 ipmi_sim ipmitool sfdisk mkfs.vfat mcopy syslinux grub-mkstandalone zstd python3; do
  command -v $t >/dev/null || missing="$missing $t"
done
[ -f /usr/share/OVMF/OVMF_CODE_4M.fd ] || missing="$missing OVMF"
if [ -n "$missing" ]; then
  if [ -n "${CI:-}" ]; then echo "tests/lab/e2e.sh: FAIL: missing$missing (scripts/install-deps.sh installs them)" >&2; exit 1; fi
  echo "tests/lab/e2e.sh: SKIP: missing$missing (run scripts/install-deps.sh as root)"; exit 0
fi

"$L" down --purge >/dev/null 2>&1 || true
rm -rf "$E/data" "$E/www" "$E/logs"
mkdir -p "$E/data" "$E/www" "$E/logs"

# --- build: the CLI, HookOS with the static tink-worker, the OS image ---------------------------
say "building tinkerbell, HookOS and the OS image"
(cd "$repo" && cargo build -q --locked -p tinkerbell --bin tinkerbell)
cli="$repo/target/debug/tinkerbell"
"$repo/hookos/build.sh" --out "$E/hookos" > "$E/logs/hookos-build.log" 2>&1 \
  || { tail -20 "$E/logs/hookos-build.log"; exit 1; }
"$repo/hookos/build.sh" --out "$E/os" --no-worker --overlay "$here/os" > "$E/logs/os-build.log" 2>&1 \
  || { tail -20 "$E/logs/os-build.log"; exit 1; }
"$here/osimage.sh" --kernel "$E/os/vmlinuz-x86_64" --initrd "$E/os/initramfs-x86_64" --out "$E/os/disk.raw"
build_id=$(grep -ao 'e2e_build=[0-9a-f]*' "$E/os/disk.raw" | head -n1 | cut -d= -f2)
zstd -q -f -T0 "$E/os/disk.raw" -o "$E/www/os.raw.zst"
img_sha=$(sha256sum < "$E/www/os.raw.zst" | cut -d' ' -f1)   # image2disk checks the file as served

# --- the lab and the appliance -----------------------------------------------------------------
say "lab up: $n machines"
"$L" up --machines "$n" --no-redfish > "$E/logs/lab-up.log"
# shellcheck disable=SC1091
. "$LAB_STATE/lab.env"
A=$LAB_APPLIANCE_IP
nsx() { ip netns exec "$LAB_NS" "$@"; }
tb() { nsx "$cli" --data-dir "$E/data" "$@"; }

cleanup() {
  rc=$?
  for i in $(seq 1 "$n"); do
    tb timeline "lab-m$i" > "$E/logs/timeline-m$i.txt" 2>&1 || true
    tb logs "lab-m$i" > "$E/logs/syslog-m$i.txt" 2>&1 || true
    cp -f "$LAB_STATE/m$i/console.log" "$E/logs/console-m$i.log" 2>/dev/null || true
  done
  "$L" down > /dev/null 2>&1 || true
  [ $rc = 0 ] || echo "e2e: FAILED; consoles, service logs and timelines are in $E/logs" >&2
  exit $rc
}
trap cleanup EXIT

# The OS image comes from an artifact server of its own, as in a real site.
nsx python3 -m http.server 8090 --bind "$A" --directory "$E/www" > "$E/logs/www.log" 2>&1 &
nsx "$cli" --data-dir "$E/data" serve \
  --bind-address "$A" --http-port 7080 --store-api-addr "$A:7081" \
  --dhcp-enabled --dhcp-bind-interface br0 \
  --tftp-enabled --syslog-enabled --ipv6-ra-enabled \
  --hookos-dir "$E/hookos" \
  > "$E/logs/serve.log" 2>&1 &
for _ in $(seq 300); do [ -f "$E/data/http-url" ] && [ -f "$E/data/tink-grpc-url" ] && break; sleep 0.1; done
[ -f "$E/data/http-url" ] || { echo "e2e: serve did not start:" >&2; cat "$E/logs/serve.log" >&2; exit 1; }
say "appliance up: $(cat "$E/data/http-url"), gRPC $(cat "$E/data/tink-grpc-url")"

# --- inventory, template, workflows ------------------------------------------------------------
tb hardware import --csv "$LAB_CSV" > "$E/logs/import.log"
cat > "$E/template.yaml" <<EOF
apiVersion: tinkerbell.org/v1alpha1
kind: Template
metadata:
  name: e2e
  namespace: default
spec:
  data: |
    version: "0.1"
    name: e2e
    global_timeout: 1200
    tasks:
      - name: provision
        worker: "{{.device_1}}"
        volumes:
          - /dev:/dev
        actions:
          - name: stream-image
            image: quay.io/tinkerbell/actions/image2disk:v1.0.0
            timeout: 300
            environment:
              DEST_DISK: {{ index .Hardware.Disks 0 }}
              IMG_URL: "http://$A:8090/os.raw.zst"
              COMPRESSED: true
              IMG_SHA256: "$img_sha"
          - name: write-metadata-url
            image: quay.io/tinkerbell/actions/writefile:v1.0.0
            timeout: 60
            environment:
              DEST_DISK: {{ formatPartition ( index .Hardware.Disks 0 ) 1 }}
              FS_TYPE: vfat
              DEST_PATH: /tinkerbell/metadata-url
              CONTENTS: "http://$A:7080"
              UID: 0
              GID: 0
              MODE: "0755"
              DIRMODE: "0755"
          - name: reboot
            image: quay.io/tinkerbell/actions/reboot:v1.0.0
            timeout: 60
EOF
tb apply -f "$E/template.yaml" > /dev/null
declare -A t_start
for i in $(seq 1 "$n"); do
  tb workflow create --template e2e --hardware "lab-m$i" --netboot > /dev/null
  t_start[$i]=$(date +%s.%N)
done
say "workflows created; the controller powers the machines on through rufio"

# --- wait: every workflow SUCCESS, then every installed OS reads its metadata -------------------
pids=()
for i in $(seq 1 "$n"); do
  timeout 900 ip netns exec "$LAB_NS" "$cli" --data-dir "$E/data" workflow watch "lab-m$i" > "$E/logs/watch-m$i.log" 2>&1 &
  pids+=($!)
done
fail=0
for i in $(seq 1 "$n"); do
  if wait "${pids[$((i - 1))]}"; then say "lab-m$i: workflow SUCCESS"
  else echo "e2e: lab-m$i: workflow did not succeed:" >&2; tail -5 "$E/logs/watch-m$i.log" >&2; fail=1; fi
done
[ $fail = 0 ] || exit 1

for i in $(seq 1 "$n"); do
  c="$LAB_STATE/m$i/console.log"
  end=$((SECONDS + 300))
  until grep -qa "e2e-os\[.*E2E-OK" "$c"; do
    if grep -qa "e2e-os\[.*ERROR" "$c"; then echo "e2e: lab-m$i: $(grep -a 'e2e-os\[.*ERROR' "$c" | tail -1)" >&2; exit 1; fi
    [ $SECONDS -lt $end ] || { echo "e2e: lab-m$i: the installed OS did not read its metadata within 300 s" >&2; tail -c 3000 "$c" >&2; exit 1; }
    sleep 1
  done
  ok=$(grep -a "e2e-os\[.*E2E-OK" "$c" | tail -n1 | tr -d '\r')
  grep -qa "e2e-os\[.*booted from disk:.*e2e_build=$build_id" "$c" \
    || { echo "e2e: lab-m$i: no 'booted from disk' line with build $build_id" >&2; exit 1; }
  grep -qa "e2e-os\[.*writefile: metadata-url=http://$A:7080" "$c" \
    || { echo "e2e: lab-m$i: writefile's metadata-url not seen" >&2; exit 1; }
  case $ok in
    *"hostname=lab-m$i ipv4=$LAB_NET.$((100 + i)) "*) ;;
    *) echo "e2e: lab-m$i: wrong metadata: $ok" >&2; exit 1 ;;
  esac
  say "lab-m$i: ${ok#*E2E-OK }"
done

# --- the timeline: every phase recorded, in order ------------------------------------------------
for i in $(seq 1 "$n"); do
  tb timeline "lab-m$i" --json > "$E/logs/timeline-m$i.json"
  tb timeline "lab-m$i" | tee "$E/logs/timeline-m$i.txt"
  python3 - "$E/logs/timeline-m$i.json" "lab-m$i" "$([ $((i % 2)) = 1 ] && echo bios || echo uefi)" <<'PY'
import json, sys
events, name, fw = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
phases = [e["phase"] for e in events]
def first(p, after=0, detail=None):
    for k in range(after, len(events)):
        if events[k]["phase"] == p and (detail is None or detail in events[k]["detail"]):
            return k
    sys.exit(f"e2e: {name}: no {p}{' ' + detail if detail else ''} in the timeline after event {after}: {phases}")
on = first("power-on")
order = [on]
for p in ["dhcp-ack", "ipxe-script", "kernel", "initramfs", "worker-connected"]:
    order.append(first(p, order[-1]))
written = first("action-finished", order[-1], "stream-image: SUCCESS")
reboot = first("reboot", written)
md = first("metadata-read", reboot)
t = lambda k: (events[k]["at_unix_nanos"] - events[on]["at_unix_nanos"]) / 1e9
print(f"e2e: {name} {fw} power-on→image-written {t(written):.1f} s power-on→metadata-read {t(md):.1f} s")
PY
done
say "PASS ($n machines)"
