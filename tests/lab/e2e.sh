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

# shellcheck source=tests/lab/e2e-lib.sh
. "$here/e2e-lib.sh"
e2e_require tests/lab/e2e.sh

"$L" down --purge >/dev/null 2>&1 || true
rm -rf "$E/data" "$E/www" "$E/logs"
mkdir -p "$E/data" "$E/www" "$E/logs"

# --- build: the CLI, HookOS with the static tink-worker, the OS image ---------------------------
say "building tinkerbell, HookOS and the OS image"
e2e_build

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

# The OS image comes from an artifact server of its own, as in a real site; so does HookOS, as a
# release: `tinkerbell hookos fetch` puts it into the data dir, where serve finds it unasked.
ln -sfn "$E/hookos" "$E/www/hookos"
nsx python3 -m http.server 8090 --bind "$A" --directory "$E/www" > "$E/logs/www.log" 2>&1 &
for _ in $(seq 100); do nsx curl -sf -o /dev/null "http://$A:8090/hookos/SHA256SUMS" && break; sleep 0.1; done
ip netns exec "$LAB_NS" "$cli" --data-dir "$E/data" hookos fetch --url "http://$A:8090/hookos" \
  > "$E/logs/hookos-fetch.log" 2>&1 || { cat "$E/logs/hookos-fetch.log" >&2; exit 1; }
e2e_store_cert "$E/tls" "$A"
# Turnkey netboot on the lab's bridge (README): DHCP, TFTP, syslog, RA and HTTP on br0's address,
# after checking that no other DHCP server answers there.
ip netns exec "$LAB_NS" "$cli" --data-dir "$E/data" serve \
  --netboot-interface br0 --http-port 7080 --store-api-addr "$A:7081" \
  --store-api-tls-cert-file "$E/tls/cert.pem" --store-api-tls-key-file "$E/tls/key.pem" \
  > "$E/logs/serve.log" 2>&1 &
serve_pid=$!  # `ip netns exec` execs serve: the same process (not via nsx, a subshell)
for _ in $(seq 300); do [ -f "$E/data/http-url" ] && [ -f "$E/data/tink-grpc-url" ] && break; sleep 0.1; done
[ -f "$E/data/http-url" ] || { echo "e2e: serve did not start:" >&2; cat "$E/logs/serve.log" >&2; exit 1; }
say "appliance up: $(cat "$E/data/http-url"), gRPC $(cat "$E/data/tink-grpc-url")"

# --- inventory, template, workflows ------------------------------------------------------------
tb hardware import --csv "$LAB_CSV" > "$E/logs/import.log"
e2e_template "$E/template.yaml" "http://$A:8090/os.raw.zst" "http://$A:7080"
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
  ok=$(e2e_wait_os "$i" "$LAB_STATE/m$i/console.log" 0 "http://$A:7080") || { echo "e2e: lab-m$i: FAILED" >&2; exit 1; }
  say "lab-m$i: $ok"
done

# --- the timeline: every phase recorded, in order ------------------------------------------------
for i in $(seq 1 "$n"); do
  tb timeline "lab-m$i" --json > "$E/logs/timeline-m$i.json"
  tb timeline "lab-m$i" | tee "$E/logs/timeline-m$i.txt"
  e2e_check_timeline "$E/logs/timeline-m$i.json" "lab-m$i" "$([ $((i % 2)) = 1 ] && echo bios || echo uefi)"
done
# CPU time spent so far: each machine's QEMU process (started by the netboot power-on; the
# reboot stays inside it) against the whole appliance. On a box with fewer cores than
# machines, the guests' CPU, not the appliance, sets how much slower N machines are than one.
cpu() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.1f", ($14 + $15) / hz}' "/proc/$1/stat"; }
for i in $(seq 1 "$n"); do
  echo "e2e: lab-m$i cpu qemu $(cpu "$(cat "$LAB_STATE/m$i/qemu.pid")") s"
done
echo "e2e: appliance cpu $(cpu "$serve_pid") s (every service in one serve process)"
say "PASS ($n machines)"
