#!/usr/bin/env bash
# boots HTTP benchmark (issue 3): PARALLEL (64) simultaneous downloads of a 64 MiB HookOS
# artifact from boots' /hookos/ route (services/boots/src/http/hookos.rs) and from nginx
# serving the same directory, both on 127.0.0.1, with curl. Target: ours >= 0.9x nginx's throughput.
# Usage: bench/http.sh [PARALLEL]   (ROUNDS=3 interleaved rounds, median counts; BIN= a prebuilt
# boots_bench example instead of building one)
set -euo pipefail
cd "$(dirname "$0")/.."
par=${1:-64}
rounds=${ROUNDS:-3}
ours_port=${BOOTS_HTTP_BENCH_PORT:-18090}
tftp_port=${BOOTS_TFTP_BENCH_PORT:-16969}
nginx_port=${NGINX_BENCH_PORT:-18091}
for tool in curl nginx; do
  command -v "$tool" >/dev/null || { echo "missing $tool: run scripts/install-deps.sh" >&2; exit 1; }
done
work=$(mktemp -d)
trap 'kill "${pid:-}" "${npid:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT
if [ -n "${BIN:-}" ]; then
  bin=$BIN
else
  cargo build --release -p tinkerbell-boots --example boots_bench -q
  bin="${CARGO_TARGET_DIR:-target}/release/examples/boots_bench"
fi

mkdir -p "$work/hookos" "$work/tftp" "$work/nginx"
head -c $((64 << 20)) /dev/urandom > "$work/hookos/vmlinuz-x86_64"
chmod -R a+rX "$work"
"$bin" serve "127.0.0.1:$tftp_port" "$work/tftp" "127.0.0.1:$ours_port" "$work/hookos" 2>"$work/ours.log" & pid=$!
cat > "$work/nginx/nginx.conf" <<NGINX
worker_processes auto;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  server {
    listen 127.0.0.1:$nginx_port;
    location /hookos/ { alias $work/hookos/; }
  }
}
NGINX
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -g 'daemon off;' & npid=$!
ours="http://127.0.0.1:$ours_port/hookos/vmlinuz-x86_64"
theirs="http://127.0.0.1:$nginx_port/hookos/vmlinuz-x86_64"
for url in "$ours" "$theirs"; do
  for _ in $(seq 50); do curl -sf -o /dev/null "$url" && break; sleep 0.1; done
  curl -sf -o /dev/null "$url" || { echo "$url is not served" >&2; exit 1; }
done

run() { # url -> seconds for PARALLEL downloads (fails on any short or failed download)
  local s e
  s=$(date +%s.%N)
  seq "$par" | xargs -P "$par" -I{} curl -sf -o /dev/null -w '%{size_download}\n' "$1" > "$work/sizes"
  e=$(date +%s.%N)
  [ "$(grep -cx $((64 << 20)) "$work/sizes")" = "$par" ] || { echo "short downloads from $1" >&2; exit 1; }
  echo "$e - $s" | bc -l
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
: > "$work/ours"; : > "$work/nginx.res"
for _ in $(seq "$rounds"); do
  run "$ours" >> "$work/ours"
  run "$theirs" >> "$work/nginx.res"
done
o=$(median < "$work/ours"); n=$(median < "$work/nginx.res")
echo "== boots HTTP benchmark: $par parallel downloads of 64 MiB, median of $rounds interleaved rounds, $(nproc) cores"
echo "rounds (s): ours: $(tr '\n' ' ' < "$work/ours")| nginx: $(tr '\n' ' ' < "$work/nginx.res")"
printf '%-30s %8s %10s\n' "server" "seconds" "MiB/s"
printf '%-30s %8.3f %10.0f\n' "boots /hookos" "$o" "$(echo "$par * 64 / $o" | bc -l)"
printf '%-30s %8.3f %10.0f\n' "nginx (sendfile)" "$n" "$(echo "$par * 64 / $n" | bc -l)"
awk -v o="$o" -v n="$n" 'BEGIN { r = n / o; printf "ratio ours/nginx: %.2f (target >= 0.9) %s\n", r, (r >= 0.9 ? "PASS" : "FAIL") }'
