#!/usr/bin/env bash
# TFTP benchmark (issue 3): PARALLEL (64) simultaneous downloads of a 1 MiB file from boots'
# TFTP server and from tftp-hpa's in.tftpd, both on 127.0.0.1, with the same client
# (services/boots/examples/boots_bench.rs `get`, an RFC 7440 receiver).
#   lockstep:      blksize 512, no options, on both servers.            Target: ours >= 1x.
#   windowsize 16: ours with windowsize 16 vs in.tftpd at its best       Target: ours >= 2x.
#                  (tftp-hpa has no windowsize; it answers lockstep).
# Usage: bench/tftp.sh [PARALLEL]   (ROUNDS=3 interleaved rounds, median counts; needs root
# for in.tftpd's chroot; everything stays on 127.0.0.1)
set -euo pipefail
cd "$(dirname "$0")/.."
par=${1:-64}
rounds=${ROUNDS:-3}
ours_port=${BOOTS_TFTP_BENCH_PORT:-16969}
http_port=${BOOTS_HTTP_BENCH_PORT:-18090}
hpa_port=${HPA_BENCH_PORT:-16970}
command -v in.tftpd >/dev/null || { echo "missing in.tftpd (tftpd-hpa): run scripts/install-deps.sh" >&2; exit 1; }
work=$(mktemp -d)
trap 'kill "${pid:-}" "${hpid:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
cargo build --release -p tinkerbell-boots --example boots_bench -q
bin="${CARGO_TARGET_DIR:-target}/release/examples/boots_bench"

mkdir -p "$work/tftp" "$work/hookos"
head -c 1048576 /dev/urandom > "$work/tftp/file.bin"
chmod -R a+rX "$work"
"$bin" serve "127.0.0.1:$ours_port" "$work/tftp" "127.0.0.1:$http_port" "$work/hookos" 2>"$work/ours.log" & pid=$!
in.tftpd -L -s -a "127.0.0.1:$hpa_port" "$work/tftp" 2>"$work/hpa.log" & hpid=$!
for port in "$ours_port" "$hpa_port"; do
  ok=0
  for _ in $(seq 50); do
    if "$bin" get "127.0.0.1:$port" file.bin 1 512 0 >/dev/null 2>&1; then ok=1; break; fi
    sleep 0.1
  done
  [ $ok = 1 ] || { echo "server on port $port does not answer" >&2; cat "$work"/*.log >&2; exit 1; }
done

run() { # port blksize window -> seconds (fails unless every byte arrived)
  local out; out=$("$bin" get "127.0.0.1:$1" file.bin "$par" "$2" "$3")
  [ "${out#* }" = "$((par * 1048576))" ] || { echo "short transfer: $out" >&2; exit 1; }
  echo "${out% *}"
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
: > "$work/ours-lock"; : > "$work/hpa-lock"; : > "$work/ours-win"
for _ in $(seq "$rounds"); do
  run "$ours_port" 512 0 >> "$work/ours-lock"
  run "$hpa_port" 512 0 >> "$work/hpa-lock"
  run "$ours_port" 512 16 >> "$work/ours-win"
done
ol=$(median < "$work/ours-lock"); hl=$(median < "$work/hpa-lock"); ow=$(median < "$work/ours-win")
mib=$par
echo "== TFTP benchmark: $par parallel downloads of 1 MiB, blksize 512, median of $rounds interleaved rounds, $(nproc) cores"
echo "rounds (s): ours lockstep: $(tr '\n' ' ' < "$work/ours-lock")| in.tftpd: $(tr '\n' ' ' < "$work/hpa-lock")| ours windowsize 16: $(tr '\n' ' ' < "$work/ours-win")"
printf '%-34s %8s %10s\n' "server / mode" "seconds" "MiB/s"
printf '%-34s %8.3f %10.1f\n' "boots, lockstep" "$ol" "$(echo "$mib / $ol" | bc -l)"
printf '%-34s %8.3f %10.1f\n' "in.tftpd (tftp-hpa), lockstep" "$hl" "$(echo "$mib / $hl" | bc -l)"
printf '%-34s %8.3f %10.1f\n' "boots, windowsize 16" "$ow" "$(echo "$mib / $ow" | bc -l)"
awk -v o="$ol" -v h="$hl" 'BEGIN { r = h / o; printf "ratio lockstep ours/in.tftpd: %.2f (target >= 1) %s\n", r, (r >= 1 ? "PASS" : "FAIL") }'
awk -v o="$ow" -v h="$hl" 'BEGIN { r = h / o; printf "ratio windowsize 16 ours/in.tftpd: %.2f (target >= 2) %s\n", r, (r >= 2 ? "PASS" : "FAIL") }'
