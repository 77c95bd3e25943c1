#!/usr/bin/env bash
# hegel benchmark (issue 4): wrk on /2009-04-04/meta-data/hostname against `tinkerbell serve`'s
# consolidated HTTP port with 10,000 Hardware in the embedded store, side by side with nginx
# serving the same bytes as a static file. Target: ours >= 0.5x nginx's requests/s.
# hegel identifies callers by source address, so one of the Hardware holds 127.0.0.1 (wrk's).
# Usage: bench/hegel.sh [SECONDS] [CONNECTIONS]   (ROUNDS=3; everything stays on 127.0.0.1)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
conns=${2:-64}
threads=${WRK_THREADS:-2}
hegel_port=${HEGEL_BENCH_PORT:-18080}
nginx_port=${NGINX_BENCH_PORT:-18081}
rows=10000
path=/2009-04-04/meta-data/hostname
for tool in wrk nginx python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool: run scripts/install-deps.sh" >&2; exit 1; }
done
work=$(mktemp -d)
trap 'kill "${pid:-}" "${npid:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

cargo build --release -p tinkerbell -q
bin="${CARGO_TARGET_DIR:-target}/release/tinkerbell"

# 10,000 Hardware; node-0 holds 127.0.0.1.
python3 - "$rows" > "$work/hardware.yaml" <<'PY'
import sys
n = int(sys.argv[1])
for i in range(n):
    a, b, c = (i >> 16) & 255, (i >> 8) & 255, i & 255
    ip = "127.0.0.1" if i == 0 else f"10.{a}.{b}.{c}"
    print(f"""---
apiVersion: tinkerbell.org/v1alpha1
kind: Hardware
metadata: {{name: node-{i}, namespace: default}}
spec:
  interfaces:
  - dhcp: {{mac: "02:00:00:{a:02x}:{b:02x}:{c:02x}", ip: {{address: {ip}, netmask: 255.0.0.0, family: 4}}}}
  metadata:
    instance: {{id: i-{i:06d}, hostname: node-{i}.bench.lab, ssh_keys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBench node-{i}"]}}
  userData: "#cloud-config\\nhostname: node-{i}\\n"
""")
PY

"$bin" --data-dir "$work/data" --log-level warn serve --store-api-addr 127.0.0.1:0 \
  --bind-address 127.0.0.1 --http-port "$hegel_port" 2>"$work/serve.log" & pid=$!
for _ in $(seq 100); do [ -f "$work/data/api-url" ] && break; sleep 0.1; done
"$bin" --data-dir "$work/data" apply -f "$work/hardware.yaml" >/dev/null
count=$("$bin" --data-dir "$work/data" get hw | tail -n +2 | wc -l)
body=$(curl -sf "http://127.0.0.1:$hegel_port$path")
[ "$body" = "node-0.bench.lab" ] || { echo "hegel answered '$body'" >&2; exit 1; }

# nginx on loopback with a throwaway config, serving the same bytes.
mkdir -p "$work/www${path%/*}" "$work/nginx"
printf '%s' "$body" > "$work/www$path"
chmod -R a+rX "$work"
cat > "$work/nginx/nginx.conf" <<NGINX
worker_processes auto;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  server {
    listen 127.0.0.1:$nginx_port;
    root $work/www;
    default_type text/plain;
  }
}
NGINX
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" -g 'daemon off;' & npid=$!
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$nginx_port$path" >/dev/null && break; sleep 0.1; done
[ "$(curl -sf "http://127.0.0.1:$nginx_port$path")" = "$body" ] || { echo "nginx is not serving" >&2; exit 1; }

run_wrk() { # url -> "rps p99_ms"
  wrk -t"$threads" -c"$conns" -d"${secs}s" --latency "$1" > "$work/wrk.out"
  local rps p99
  rps=$(awk '/^Requests\/sec:/ {print $2}' "$work/wrk.out")
  p99=$(awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; print v}' "$work/wrk.out")
  grep -q "Non-2xx" "$work/wrk.out" && { cat "$work/wrk.out" >&2; echo "errors during the run" >&2; exit 1; }
  echo "$rps $p99"
}
# Warm both up, then measure side by side.
wrk -t1 -c4 -d1s "http://127.0.0.1:$hegel_port$path" >/dev/null
wrk -t1 -c4 -d1s "http://127.0.0.1:$nginx_port$path" >/dev/null
# Interleaved rounds (other work on the machine shifts the numbers); the median of each counts.
rounds=${ROUNDS:-3}
: > "$work/res-ours"; : > "$work/res-nginx"
for _ in $(seq "$rounds"); do
  run_wrk "http://127.0.0.1:$hegel_port$path" >> "$work/res-ours"
  run_wrk "http://127.0.0.1:$nginx_port$path" >> "$work/res-nginx"
done
median() { sort -n -k1,1 "$1" | awk '{a[NR]=$0} END {print a[int((NR+1)/2)]}'; }
read -r ours_rps ours_p99 < <(median "$work/res-ours")
read -r nginx_rps nginx_p99 < <(median "$work/res-nginx")
rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)

echo "== hegel benchmark: GET $path, $count Hardware in the store, wrk -t$threads -c$conns -d${secs}s, median of $rounds interleaved rounds, $(nproc) cores"
echo "rounds (requests/s p99 ms): ours: $(tr '\n' ';' < "$work/res-ours") nginx: $(tr '\n' ';' < "$work/res-nginx")"
printf '%-28s %12s %10s\n' "server" "requests/s" "p99 ms"
printf '%-28s %12.0f %10.2f\n' "hegel (tinkerbell serve)" "$ours_rps" "$ours_p99"
printf '%-28s %12.0f %10.2f\n' "nginx (static file)" "$nginx_rps" "$nginx_p99"
awk -v o="$ours_rps" -v n="$nginx_rps" 'BEGIN { r = o / n; printf "ratio ours/nginx: %.2f (target >= 0.5) %s\n", r, (r >= 0.5 ? "PASS" : "FAIL") }'
echo "tinkerbell serve RSS with $count Hardware: $((rss / 1024)) MiB"
