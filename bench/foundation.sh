#!/usr/bin/env bash
# Foundation benchmarks (issue 2). Targets:
#   import 10,000 Hardware rows from an EKS Anywhere hardware.csv  < 10 s
#   in-process lookups by MAC and by IP                             > 1,000,000 /s
#   RSS of `tinkerbell serve` holding them                          < 200 MiB
# Usage: bench/foundation.sh [ROWS]   (everything stays on 127.0.0.1)
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${1:-10000}
work=$(mktemp -d)
trap 'kill "${pid:-}" 2>/dev/null || true; rm -rf "$work"' EXIT

cargo build --release -p tinkerbell -q
bin="${CARGO_TARGET_DIR:-target}/release/tinkerbell"

python3 - "$rows" > "$work/hardware.csv" <<'PY'
import sys
n = int(sys.argv[1])
print("hostname,ip_address,netmask,gateway,nameservers,mac,disk,labels,bmc_ip,bmc_username,bmc_password")
for i in range(n):
    a, b, c = (i >> 16) & 255, (i >> 8) & 255, i & 255
    print(f"node-{i},10.{a}.{b}.{c},255.0.0.0,10.0.0.1,10.0.0.1|10.0.0.2,02:00:00:{a:02x}:{b:02x}:{c:02x},/dev/sda,type=worker|rack=r{i % 40},"
          f"11.{a}.{b}.{c},admin,pw-{i}")
PY

"$bin" --data-dir "$work/data" --log-level warn serve --store-api-addr 127.0.0.1:0 & pid=$!
for _ in $(seq 100); do [ -f "$work/data/api-url" ] && break; sleep 0.1; done
rss_empty=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)

start=$(date +%s.%N)
"$bin" --data-dir "$work/data" hardware import --csv "$work/hardware.csv" >/dev/null
end=$(date +%s.%N)
import_s=$(echo "$end - $start" | bc)
count=$("$bin" --data-dir "$work/data" get hw | tail -n +2 | wc -l)
rss_kib=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
size=$(du -k "$work/data/store.redb" | cut -f1)

# Restart: time to reopen 30,000 objects (Hardware + Machine + Secret per row).
kill "$pid"; wait "$pid" 2>/dev/null || true
rm -f "$work/data/api-url"
start=$(date +%s.%N)
"$bin" --data-dir "$work/data" --log-level warn serve --store-api-addr 127.0.0.1:0 & pid=$!
while [ ! -f "$work/data/api-url" ]; do sleep 0.02; done
end=$(date +%s.%N)
reopen_s=$(echo "$end - $start" | bc)
rss_reopen=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)

echo "== foundation benchmark ($rows rows, $(nproc) cores)"
printf 'import %d rows (CSV → Hardware+Machine+Secret, one transaction): %.2f s (target < 10 s)\n' "$rows" "$import_s"
echo "Hardware listed after import: $count"
printf 'serve RSS: empty %d MiB, after import %d MiB, after restart %d MiB (target < 200 MiB)\n' \
  $((rss_empty / 1024)) $((rss_kib / 1024)) $((rss_reopen / 1024))
printf 'store file: %d MiB; restart to serving: %.2f s\n' $((size / 1024)) "$reopen_s"
cargo bench -q -p tinkerbell-core --bench lookups 2>/dev/null | grep -E 'lookup|insert'
