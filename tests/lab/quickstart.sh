#!/usr/bin/env bash
# The README's quick starts, run as written against lab machines: the lines of the fenced block
# after `<!-- quickstart: NAME ... -->` in README.md, each run as it stands, with only the
# site-specific words replaced:
#
#   tinkerbell      → the CLI cargo test built (TINKERBELL_BIN), data in target/quickstart/data
#   eth1            → tbqs0, the host end of a veth this test plugs into the lab's bridge
#   hardware.csv    → the lab's hardware.csv with its machine named cp-0
#   template.yaml   → the e2e Template (image2disk of an OS image, writefile, reboot) named ubuntu
#   `&`             → the line runs in the background; the next waits until serve is up
#   `workflow watch`→ under `timeout 900`
#   `hookos build`  → with `-- --worker E2E_WORKER_BIN` when that static worker is given
#
# 1. "real machine": one lab machine (tests/lab/lab.sh) behind a veth, the appliance on the host.
# 2. "lab": `tinkerbell lab up` and `lab run` provision lab-m1; before `lab down` the check below.
# After each workflow, as e2e.sh: the installed OS reads its metadata, the timeline has every
# phase.
# The lab (tests/lab/lab.sh, one BIOS machine) runs on LAB_NET (default 10.99.8.0/24); the
# veth's host end gets LAB_NET.2/24, so serve's DHCP, TFTP, HTTP, syslog and RA stay on it.
# Logs in target/quickstart/logs. Needs what e2e.sh needs (missing: fail under CI=true, else
# skip).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
E=${QUICKSTART_DIR:-$repo/target/quickstart}
export LAB_STATE="$E/lab"
export LAB_NET=${LAB_NET:-10.99.8}
L="$here/lab.sh"
IFACE=tbqs0
T0=$SECONDS
say() { echo "quickstart [$((SECONDS - T0)) s]: $*"; }
fail() { echo "quickstart: FAIL: $*" >&2; exit 1; }

# shellcheck source=tests/lab/e2e-lib.sh
. "$here/e2e-lib.sh"
e2e_require tests/lab/quickstart.sh

# quickstart_block NAME: the block's lines, comments after the commands dropped.
quickstart_block() {
  awk -v m="<!-- quickstart: $1 " 'index($0, m) == 1 {f=1; next} f && /^```sh/{b=1; next} b && /^```/{exit} b' \
    "$repo/README.md" | sed -E 's/[[:space:]]+#.*$//'
}
mapfile -t lines < <(quickstart_block "real machine")
[ ${#lines[@]} -ge 5 ] || fail "README.md: no quick-start block (<!-- quickstart: real machine -->)"
mapfile -t lab_lines < <(quickstart_block lab)
[ ${#lab_lines[@]} -ge 2 ] || fail "README.md: no quick-start block (<!-- quickstart: lab -->)"

# run_line LINE: one README line with the substitutions above; BEFORE_DOWN runs before `lab down`.
run_line() {
  local line=$1 cmd
  [ -n "${line// }" ] || return 0
  [[ $line == tinkerbell\ * ]] || fail "README quick start: not a tinkerbell command: $line"
  cmd=${line/#tinkerbell /\"\$cli\" }
  cmd=${cmd//eth1/$IFACE}
  cmd=${cmd//hardware.csv/\"\$E/hardware.csv\"}
  cmd=${cmd//template.yaml/\"\$E/template.yaml\"}
  case $line in
    *"hookos build"*) [ -z "${E2E_WORKER_BIN:-}" ] || cmd="$cmd -- --worker \"\$E2E_WORKER_BIN\"" ;;
    *"workflow watch"*) cmd="timeout 900 $cmd" ;;
    *"lab down"*) before_down ;;
  esac
  say "\$ $line"
  if [[ $cmd == *'&' ]]; then
    eval "${cmd%&} > \"\$E/logs/serve.log\" 2>&1 &"
    serve_pid=$!
    for _ in $(seq 300); do [ -f "$E/data/http-url" ] && [ -f "$E/data/tink-grpc-url" ] && break; sleep 0.1; done
    [ -f "$E/data/http-url" ] || { cat "$E/logs/serve.log" >&2; fail "serve did not start"; }
    grep -q 'files match its SHA256SUMS' "$E/logs/serve.log" || fail "serve did not find the HookOS 'hookos build' installed"
  else
    eval "$cmd" > "$E/logs/step.log" 2>&1 || { tail -20 "$E/logs/step.log" >&2; fail "$line"; }
  fi
  case $line in
    *"lab up"*) after_lab_up ;;
  esac
}

H=$LAB_NET.2
if ip -4 -o addr show | grep -q " inet $LAB_NET\."; then
  fail "the host already has an address in $LAB_NET.0/24; set LAB_NET to a free /24"
fi
ip link show "$IFACE" >/dev/null 2>&1 && fail "$IFACE exists already (another run?)"

"$L" down --purge >/dev/null 2>&1 || true
rm -rf "$E/data" "$E/www" "$E/logs"
mkdir -p "$E/data" "$E/www" "$E/logs"
say "building the CLI and the OS image"
e2e_build
say "lab up: 1 machine on $LAB_NET.0/24"
"$L" up --machines 1 --no-redfish > "$E/logs/lab-up.log"
# shellcheck disable=SC1091
. "$LAB_STATE/lab.env"
export TINKERBELL_DATA_DIR=$E/data
serve_pid=""

cleanup() {
  rc=$?
  "$cli" timeline cp-0 > "$E/logs/timeline.txt" 2>&1 || true
  "$cli" logs cp-0 > "$E/logs/syslog.txt" 2>&1 || true
  [ -z "$serve_pid" ] || kill "$serve_pid" 2>/dev/null || true
  cp -f "$LAB_STATE/m1/console.log" "$E/logs/console-m1.log" 2>/dev/null || true
  cp -f "$LAB_STATE/m1/console-ttyS1.log" "$E/logs/console-ttyS1-m1.log" 2>/dev/null || true
  ip link del "$IFACE" 2>/dev/null || true
  "$L" down > /dev/null 2>&1 || true
  [ $rc = 0 ] || echo "quickstart: FAILED; serve's log, the console and the timeline are in $E/logs" >&2
  exit $rc
}
trap cleanup EXIT

# The host's second NIC: a veth into the lab's bridge.
ip link add "$IFACE" type veth peer name tbqshost netns "$LAB_NS"
ip -n "$LAB_NS" link set tbqshost master br0 up
ip addr add "$H/24" dev "$IFACE"
ip link set "$IFACE" up
ip netns exec "$LAB_NS" python3 -m http.server 8090 --bind "$LAB_APPLIANCE_IP" --directory "$E/www" > "$E/logs/www.log" 2>&1 &

# The site's files: the lab's machine as cp-0, the e2e Template as ubuntu.
sed 's/^lab-m1,/cp-0,/' "$LAB_CSV" > "$E/hardware.csv"
e2e_template "$E/template.yaml" "http://$LAB_APPLIANCE_IP:8090/os.raw.zst" "http://$H:7080"
sed -i 's/^  name: e2e$/  name: ubuntu/' "$E/template.yaml"

cd "$repo"
for line in "${lines[@]}"; do run_line "$line"; done
say "the quick start's last command (workflow watch) ended 0: SUCCESS"

ok=$(e2e_wait_os 1 "$LAB_STATE/m1/console.log" 0 "http://$H:7080" cp-0) || fail "cp-0's installed OS"
say "cp-0: $ok"
"$cli" timeline cp-0 --json > "$E/logs/timeline.json"
e2e_check_timeline "$E/logs/timeline.json" cp-0 bios
say "real machine: PASS"

# --- 2. the lab quick start ------------------------------------------------------------------
kill "$serve_pid" 2>/dev/null || true; wait "$serve_pid" 2>/dev/null || true; serve_pid=""
ip link del "$IFACE" 2>/dev/null || true
"$L" down --purge > /dev/null 2>&1 || true
rm -f "$E/data/api-url" "$E/data/http-url"
A=$LAB_NET.1   # lab.sh's appliance address
e2e_template "$E/template.yaml" "http://$A:8090/os.raw.zst" "http://$A:7080"
sed -i 's/^  name: e2e$/  name: ubuntu/' "$E/template.yaml"
after_lab_up() {
  # The OS image's server, inside the lab's namespace (the user's template points at theirs).
  local ns
  ns=$("$cli" lab env | sed -n 's/^LAB_NS=//p')
  ip netns exec "$ns" python3 -m http.server 8090 --bind "$A" --directory "$E/www" > "$E/logs/www-lab.log" 2>&1 &
  grep -q 'files match its SHA256SUMS' "$LAB_STATE/appliance.log" \
    || fail "the lab's appliance did not find the HookOS 'hookos build' installed: $(cat "$LAB_STATE/appliance.log")"
}
before_down() {
  # (LAB_STATE, exported above, is also where `tinkerbell lab` keeps this lab; `lab down
  # --purge` removes it, so its consoles are kept in $E/logs)
  local waited=0
  ok=$(e2e_wait_os 1 "$LAB_STATE/m1/console.log" 0 "http://$A:7080") || waited=$?
  cp -f "$LAB_STATE/m1/console.log" "$E/logs/console-lab-m1.log" 2>/dev/null || true
  cp -f "$LAB_STATE/m1/console-ttyS1.log" "$E/logs/console-ttyS1-lab-m1.log" 2>/dev/null || true
  if [ "$waited" != 0 ]; then
    "$cli" lab run -- logs lab-m1 > "$E/logs/syslog-lab.txt" 2>&1 || true
    "$cli" lab run -- timeline lab-m1 > "$E/logs/timeline-lab.txt" 2>&1 || true
    fail "lab: lab-m1's installed OS"
  fi
  say "lab: lab-m1: $ok"
  "$cli" lab run -- timeline lab-m1 --json > "$E/logs/timeline-lab.json"
  e2e_check_timeline "$E/logs/timeline-lab.json" lab-m1 bios
}
for line in "${lab_lines[@]}"; do run_line "$line"; done
[ ! -e "$LAB_STATE/m1" ] || fail "lab down --purge left $LAB_STATE/m1"
say "lab: PASS"
