#!/usr/bin/env bash
# Rufio IPMI benchmark (issue 5): N power-status operations against M ipmi_sim BMCs on
# 127.0.0.1, with our async client (all BMCs at once, one session per operation) versus the
# same N operations as sequential `ipmitool -I lanplus -C 3 chassis power status` calls
# (what bmclib runs). Afterwards every simulator is asked for its active session count
# (Get Session Info): 1 (the asking session) means nothing leaked.
# Part 2, the controllers: OPS bmc Tasks (power on/off, each verified) over the same BMCs,
# run by the rufio controllers on an embedded store (examples/task_bench.rs), versus the same
# work as sequential ipmitool calls (`chassis power on|off` then `chassis power status`).
# Usage: bench/rufio.sh [OPS] [BMCS]      (defaults 200 and 20; needs ipmi_sim and ipmitool)
set -euo pipefail
cd "$(dirname "$0")/.."
ops=${1:-200}
bmcs=${2:-20}
for b in ipmi_sim ipmitool; do
  command -v "$b" >/dev/null || { echo "$b is missing: run scripts/install-deps.sh" >&2; exit 1; }
done
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT

cargo build --release -p tinkerbell-rufio --example power_bench --example task_bench -q
bin="${CARGO_TARGET_DIR:-target}/release/examples/power_bench"
task_bin="${CARGO_TARGET_DIR:-target}/release/examples/task_bench"

# chassis_control hook: `hook.sh <bmc dir> get|set parm [val]...`, power kept in a file.
cat > "$work/hook.sh" <<'HOOK'
#!/bin/sh
d=$1; op=$2; shift 2
case $op in
  get) for p in "$@"; do case $p in
         power) echo "power:$(cat "$d/power" 2>/dev/null || echo 0)" ;;
         boot) echo "boot:default" ;; esac; done ;;
  set) while [ $# -ge 2 ]; do [ "$1" = power ] && echo "$2" > "$d/power"; shift 2; done ;;
esac
HOOK
chmod +x "$work/hook.sh"
cat > "$work/lab.emu" <<'EMU'
mc_setbmc 0x20
mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr
sel_enable 0x20 1000 0x0a
mc_enable 0x20
EMU
ports=()
for i in $(seq "$bmcs"); do
  port=$((24000 + RANDOM % 20000))
  d="$work/bmc$i"; mkdir -p "$d/state"
  cat > "$d/lan.conf" <<CONF
name "bench$i"
set_working_mc 0x20
  startlan 1
    addr 127.0.0.1 $port
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin none md2 md5 straight
    guid a123456789abcdefa123456789abcdef
  endlan
  chassis_control "$work/hook.sh $d"
  user 2 true "admin" "password" admin 10 none md2 md5 straight
CONF
  (cd "$d" && exec ipmi_sim -c lan.conf -f "$work/lab.emu" -s state -n >ipmi_sim.log 2>&1) & pids+=($!)
  ports+=("$port")
done
ipmi() { ipmitool -I lanplus -C 3 -H 127.0.0.1 -p "$1" -U admin -P password "${@:2}"; }
for p in "${ports[@]}"; do
  for _ in $(seq 50); do ipmi "$p" mc info >/dev/null 2>&1 && break; sleep 0.1; done
done

ours=$("$bin" "$ops" "$(IFS=,; echo "${ports[*]}")")
echo "rufio:    $ours"

start=$(date +%s.%N)
fail=0
for i in $(seq 0 $((ops - 1))); do
  ipmi "${ports[$((i % bmcs))]}" chassis power status >/dev/null 2>&1 || fail=$((fail + 1))
done
end=$(date +%s.%N)
base_s=$(echo "$end - $start" | bc)
echo "ipmitool: ops=$ops bmcs=$bmcs errors=$fail total_s=$base_s (sequential, one process per operation)"

# Part 2: Tasks through the controllers vs ipmitool doing the same work.
tasks=$("$task_bin" "$ops" "$(IFS=,; echo "${ports[*]}")")
echo "rufio controllers: $tasks"
start=$(date +%s.%N)
fail=0
for i in $(seq 0 $((ops - 1))); do
  b=$((i % bmcs)); p=${ports[$b]}
  if [ $((b % 2)) = 0 ]; then want=on; else want=off; fi
  ipmi "$p" chassis power "$want" >/dev/null 2>&1 || fail=$((fail + 1))
  ipmi "$p" chassis power status 2>/dev/null | grep -q "is $want" || fail=$((fail + 1))
done
end=$(date +%s.%N)
tbase_s=$(echo "$end - $start" | bc)
echo "ipmitool: tasks=$ops bmcs=$bmcs errors=$fail total_s=$tbase_s tasks_per_s=$(echo "scale=1; $ops / $tbase_s" | bc) (sequential: power on|off, then status)"

leaked=0
for p in "${ports[@]}"; do
  active=$(ipmi "$p" session info active 2>/dev/null | awk -F: '/active sessions/ {gsub(/ /, "", $2); print $2}')
  [ "$active" = 1 ] || { echo "BMC on port $p reports $active active sessions" >&2; leaked=1; }
done
ours_s=$(echo "$ours" | sed -n 's/.*total_s=\([0-9.]*\).*/\1/p')
tasks_s=$(echo "$tasks" | sed -n 's/.*total_s=\([0-9.]*\).*/\1/p')
echo "ratio power status (ipmitool / rufio client): $(echo "scale=1; $base_s / $ours_s" | bc)x"
echo "ratio Tasks (ipmitool / rufio controllers): $(echo "scale=1; $tbase_s / $tasks_s" | bc)x"
echo "leaked sessions: $([ $leaked = 0 ] && echo none || echo YES)"
[ $leaked = 0 ]
