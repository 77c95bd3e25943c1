#!/usr/bin/env bash
# Move, then provision from the target (issue #8): two appliances on one lab bridge.
#
#   A (the source, an admin machine's appliance) runs in the lab's namespace on LAB_NET.1, with
#   DHCP, TFTP, syslog, tink server and controller and rufio, and provisions lab machine m1
#   (BIOS) end to end, as tests/lab/e2e.sh does: the installed OS reads its metadata from A.
#   B (the target) runs in a second namespace whose veth is a port of the lab bridge, on
#   LAB_NET.2 with its own data dir, every service on, its store empty.
#   From a third namespace on the bridge (the operator's), with the two store API tokens:
#     tinkerbell move --from https://A:7081 --to https://B:7081 (each store API's certificate
#     pinned: --from-ca-file/--to-ca-file, the appliance's api-cert.pem)
#   while tests/lab/dhcp_probe.py broadcasts a DISCOVER for m1's MAC every 10 ms and records
#   who answers: never both, A then (after the move's DHCP handoff) only B, and the longest
#   stretch with no answer. Then B provisions m1 again (workflow create --netboot against B; B's
#   rufio powers it on; DHCP, iPXE, HookOS, worker, image from an artifact server next to B,
#   metadata from B's hegel), and A answered nothing for m1 after the move: no event in A's
#   timeline, no DHCP reply sent by A's boots (which heard m1 and left it unanswered).
#
#   tests/lab/move.sh        (root; logs, timelines and consoles in target/move/logs)
#
# Prints "move: handoff ..." (the probe's numbers and the mover's own window) and
# "e2e: lab-m1 bios ..." for each appliance's provisioning.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
E=${MOVE_DIR:-$repo/target/move}
export LAB_STATE="$E/lab"
L="$here/lab.sh"
T0=$SECONDS
say() { echo "move [$((SECONDS - T0)) s]: $*"; }
fail() { echo "move: FAIL: $*" >&2; exit 1; }

# shellcheck source=tests/lab/e2e-lib.sh
. "$here/e2e-lib.sh"
e2e_require tests/lab/move.sh

"$L" down --purge >/dev/null 2>&1 || true
rm -rf "$E/a" "$E/b" "$E/www" "$E/logs"
mkdir -p "$E/a" "$E/b" "$E/www" "$E/logs"

say "building tinkerbell, HookOS and the OS image"
e2e_build

say "lab up: 1 machine (m1, BIOS)"
"$L" up --machines 1 --no-redfish > "$E/logs/lab-up.log"
# shellcheck disable=SC1091
. "$LAB_STATE/lab.env"
A=$LAB_APPLIANCE_IP
B=$LAB_NET.2
OP=$LAB_NET.3
NB="$LAB_NS-b"   # appliance B
NO="$LAB_NS-op"  # the operator: the move and the DHCP probe
MAC1=$(awk -F, '$1 == "lab-m1" {print $6}' "$LAB_CSV")
nsa() { ip netns exec "$LAB_NS" "$@"; }
nsb() { ip netns exec "$NB" "$@"; }
nso() { ip netns exec "$NO" "$@"; }
ta() { nsa "$cli" --data-dir "$E/a" "$@"; }
tb() { nsb "$cli" --data-dir "$E/b" "$@"; }

pids=()
cleanup() {
  rc=$?
  ta timeline lab-m1 > "$E/logs/timeline-a.txt" 2>&1 || true
  tb timeline lab-m1 > "$E/logs/timeline-b.txt" 2>&1 || true
  ta logs lab-m1 > "$E/logs/syslog-a.txt" 2>&1 || true
  tb logs lab-m1 > "$E/logs/syslog-b.txt" 2>&1 || true
  cp -f "$LAB_STATE/m1/console.log" "$E/logs/console-m1.log" 2>/dev/null || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for ns in "$NB" "$NO"; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  "$L" down > /dev/null 2>&1 || true
  [ $rc = 0 ] || echo "move: FAILED; consoles, service logs, timelines and the probe's record are in $E/logs" >&2
  exit $rc
}
trap cleanup EXIT

dhcp_sent() { nsa curl -sf "http://$A:7080/boots/metrics" | awk '/^boots_dhcp_sent_total/ {n += $2} END {print n + 0}'; }
unknown_mac() { nsa curl -sf "http://$A:7080/boots/metrics" | awk '/^boots_dhcp_not_answered_total\{reason="unknown_mac"\}/ {n += $2} END {print n + 0}'; }

# --- A provisions m1 -------------------------------------------------------------------------------
e2e_serve "$E/a" "$A" br0 a nsa
say "appliance A up on $A"
e2e_provision_m1 "$E/a" "$A" A nsa

# --- B, the operator, and the move ---------------------------------------------------------------
e2e_attach "$NB" "$B" mvb
e2e_attach "$NO" "$OP" mvo
e2e_serve "$E/b" "$B" eth0 b nsb
say "appliance B up on $B (namespace $NB)"
# names KIND URL DATA-DIR: namespace/name of every KIND object in that store, sorted.
names() { e2e_names nso "$cli" --server "$2" --token-file "$3/api-token" --ca-file "$3/api-cert.pem" get "$1" -A -o json; }
[ -z "$(names hardware "https://$B:7081" "$E/b")" ] || fail "B's store is not empty before the move"

e2e_probe_start move "$MAC1" "$A" "$B" nso

t_move=$(date +%s%N)
nso "$cli" move -A \
  --from "https://$A:7081" --from-token-file "$E/a/api-token" --from-ca-file "$E/a/api-cert.pem" \
  --to "https://$B:7081" --to-token-file "$E/b/api-token" --to-ca-file "$E/b/api-cert.pem" \
  > "$E/logs/move.txt" 2> "$E/logs/move.err" || { cat "$E/logs/move.err" >&2; fail "tinkerbell move"; }
t_moved=$(date +%s%N)
move_ms=$(( (t_moved - t_move) / 1000000 ))
sent_after_move=$(dhcp_sent)
unknown_after_move=$(unknown_mac)
e2e_probe_end move
cat "$E/logs/move.txt"
say "handoff: $handoff"
window=$(sed -n 's/.*for at most \([0-9.]*\) ms.*/\1/p' "$E/logs/move.txt")
[ -n "$window" ] || fail "the move reported no DHCP handoff"
say "move took $move_ms ms; the mover's own bound of the window: $window ms"

# What moved: every Hardware, bmc Machine and Secret, A's Hardware marked moved-out, B's released.
for k in hardware machine secret; do
  na=$(names "$k" "https://$A:7081" "$E/a")
  nb=$(names "$k" "https://$B:7081" "$E/b")
  [ -n "$na" ] && [ "$na" = "$nb" ] || fail "$k differs after the move: A [$na] B [$nb]"
done
ann() { nso "$cli" --server "https://$1:7081" --token-file "$2/api-token" --ca-file "$2/api-cert.pem" get hw lab-m1 -o json | e2e_handoff; }
[ "$(ann "$A" "$E/a")" = moved-out ] || fail "A's lab-m1 is not marked moved-out"
[ "$(ann "$B" "$E/b")" = none ] || fail "B's lab-m1 still carries the handoff annotation"

# --- B provisions m1 --------------------------------------------------------------------------------
off=$(stat -c %s "$LAB_STATE/m1/console.log")
e2e_template "$E/template-b.yaml" "http://$B:8090/os.raw.zst" "http://$B:7080"
tb apply -f "$E/template-b.yaml" > /dev/null
t_b=$(date +%s%N)
tb workflow create --template e2e --hardware lab-m1 --netboot > /dev/null
say "B: workflow created; B's rufio powers lab-m1 on"
timeout 900 ip netns exec "$NB" "$cli" --data-dir "$E/b" workflow watch lab-m1 > "$E/logs/watch-b.log" 2>&1 \
  || { tail -5 "$E/logs/watch-b.log" >&2; fail "B: the workflow for lab-m1 did not succeed"; }
say "B: workflow SUCCESS"
ok=$(e2e_wait_os 1 "$LAB_STATE/m1/console.log" "$off" "http://$B:7080") || fail "B: lab-m1's installed OS"
say "B: lab-m1: $ok"
tb timeline lab-m1 --json > "$E/logs/timeline-b.json"
e2e_check_timeline "$E/logs/timeline-b.json" lab-m1 bios "$t_b" | sed 's/^e2e: /e2e: B: /'

# --- A served nothing for m1 after the move ----------------------------------------------------------
ta timeline lab-m1 --json > "$E/logs/timeline-a.json"
python3 - "$E/logs/timeline-a.json" "$t_moved" <<'PY' || fail "A served lab-m1 after the move"
import json, sys
late = [e for e in json.load(open(sys.argv[1])) if e["at_unix_nanos"] > int(sys.argv[2])]
for e in late:
    print(f"move: A after the move: {e['phase']} {e['source']} {e['detail']}", file=sys.stderr)
sys.exit(1 if late else 0)
PY
sent_end=$(dhcp_sent)
unknown_end=$(unknown_mac)
[ "$sent_end" = "$sent_after_move" ] || fail "A's boots sent $((sent_end - sent_after_move)) DHCP replies after the move"
[ "$unknown_end" -gt "$unknown_after_move" ] || fail "A's boots heard no DHCP from lab-m1 after the move (is it on the bridge?)"
say "A after the move: no timeline event for lab-m1, no DHCP reply sent, $((unknown_end - unknown_after_move)) requests from it left unanswered"
say "PASS"
