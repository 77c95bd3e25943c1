#!/usr/bin/env bash
# The tinkerbell image on the host network provisions a lab machine, the way EKS Anywhere runs
# boots on its admin machine (`docker run --network host`).
#
#   tests/lab/docker-host.sh --image tinkerbell-rs/tinkerbell:TAG     (root, a Docker engine)
#
# deploy/images/test.sh runs it with the image it just built. The lab (tests/lab/lab.sh, one
# BIOS machine, on LAB_NET, default 10.99.7.0/24) gets a second bridge port: a veth whose host
# end, tblab0 (LAB_NET.2/24, created and deleted here), is the only interface the container's
# DHCP and IPv6 RA use (--dhcp-bind-interface) and whose address every other listener binds
# (HTTP, store API, tink gRPC, TFTP, syslog). So the container serves the machines' segment from
# the host's network namespace and nothing else: all traffic stays on the veth and the lab's
# namespace. Then as e2e.sh: the host's CLI imports hardware.csv and creates a workflow with
# --netboot through the container's store API (the data dir is a volume), the container's rufio
# powers m1 on, boots/TFTP/iPXE/HookOS come from the container, the worker writes the OS image
# (served from the lab namespace), the installed OS reads its metadata from the container's
# hegel; its timeline is checked as e2e.sh does. Logs in target/docker-host/logs.
# Without Docker: skip (exit 0), or fail under CI=true; the lab tools: as e2e.sh.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
E=${DOCKER_HOST_DIR:-$repo/target/docker-host}
export LAB_STATE="$E/lab"
export LAB_NET=${LAB_NET:-10.99.7}
L="$here/lab.sh"
DOCKER=${DOCKER:-docker}
IFACE=tblab0
image=""
[ "${1:-}" = --image ] && image=${2:-}
[ -n "$image" ] || { echo "usage: tests/lab/docker-host.sh --image tinkerbell-rs/tinkerbell:TAG" >&2; exit 2; }
T0=$SECONDS
say() { echo "docker-host [$((SECONDS - T0)) s]: $*"; }
fail() { echo "docker-host: FAIL: $*" >&2; exit 1; }

if ! "$DOCKER" info >/dev/null 2>&1; then
  [ -z "${CI:-}" ] || fail "no Docker engine answers ('$DOCKER info') and CI=true"
  echo "tests/lab/docker-host.sh: SKIP: no Docker engine answers"; exit 0
fi
# shellcheck source=tests/lab/e2e-lib.sh
. "$here/e2e-lib.sh"
e2e_require tests/lab/docker-host.sh
"$DOCKER" image inspect "$image" >/dev/null 2>&1 || fail "no image $image (deploy/images/build.sh tinkerbell)"
H=$LAB_NET.2
if ip -4 -o addr show | grep -q " inet $LAB_NET\."; then
  fail "the host already has an address in $LAB_NET.0/24; set LAB_NET to a free /24"
fi
ip link show "$IFACE" >/dev/null 2>&1 && fail "$IFACE exists already (another run?)"

"$L" down --purge >/dev/null 2>&1 || true
rm -rf "$E/data" "$E/www" "$E/logs"
mkdir -p "$E/data" "$E/www" "$E/logs"
say "building the CLI, HookOS and the OS image"
e2e_build
say "lab up: 1 machine on $LAB_NET.0/24"
"$L" up --machines 1 --no-redfish > "$E/logs/lab-up.log"
# shellcheck disable=SC1091
. "$LAB_STATE/lab.env"
name=tblab-host-$$
tb() { "$cli" --data-dir "$E/data" "$@"; }

cleanup() {
  rc=$?
  tb timeline lab-m1 > "$E/logs/timeline-m1.txt" 2>&1 || true
  tb logs lab-m1 > "$E/logs/syslog-m1.txt" 2>&1 || true
  "$DOCKER" logs "$name" > "$E/logs/serve.log" 2>&1 || true
  "$DOCKER" rm -f "$name" > /dev/null 2>&1 || true
  cp -f "$LAB_STATE/m1/console.log" "$E/logs/console-m1.log" 2>/dev/null || true
  ip link del "$IFACE" 2>/dev/null || true
  "$L" down > /dev/null 2>&1 || true
  [ $rc = 0 ] || echo "docker-host: FAILED; the container's log, console, timeline are in $E/logs" >&2
  exit $rc
}
trap cleanup EXIT

# The host's port on the lab bridge.
ip link add "$IFACE" type veth peer name tbhost netns "$LAB_NS"
ip -n "$LAB_NS" link set tbhost master br0 up
ip addr add "$H/24" dev "$IFACE"
ip link set "$IFACE" up
ip netns exec "$LAB_NS" python3 -m http.server 8090 --bind "$LAB_APPLIANCE_IP" --directory "$E/www" > "$E/logs/www.log" 2>&1 &

e2e_store_cert "$E/tls" "$H"
"$DOCKER" run -d --name "$name" --network host \
  -v "$E/data:/var/lib/tinkerbell" -v "$E/hookos:/hookos:ro" -v "$E/tls:/tls:ro" "$image" \
  serve --bind-address "$H" --http-port 7080 --store-api-addr "$H:7081" \
  --store-api-tls-cert-file /tls/cert.pem --store-api-tls-key-file /tls/key.pem \
  --dhcp-enabled --dhcp-bind-interface "$IFACE" --ipv6-ra-enabled \
  --tftp-enabled --tftp-server-bind-addr "$H" \
  --syslog-enabled --syslog-bind-addr "$H" \
  --hookos-dir /hookos > /dev/null
for _ in $(seq 300); do [ -f "$E/data/http-url" ] && [ -f "$E/data/tink-grpc-url" ] && break; sleep 0.1; done
[ -f "$E/data/http-url" ] || { "$DOCKER" logs "$name" >&2; fail "the container did not start serving"; }
say "container $name serving on $H ($IFACE): $(cat "$E/data/http-url")"
# Nothing listens beyond the veth's address, except DHCP on 0.0.0.0:67 bound to $IFACE
# (SO_BINDTODEVICE; ss shows 0.0.0.0%$IFACE:67) and the RA responder (raw ICMPv6 on $IFACE).
pid=$("$DOCKER" inspect -f '{{.State.Pid}}' "$name")
wild=$(ss -Htulnp | grep "pid=$pid," | awk '{print $5}' | grep -v "^$H:" | grep -vx "0.0.0.0%$IFACE:67" || true)
[ -z "$wild" ] || fail "the container listens beyond $H: $wild"

tb hardware import --csv "$LAB_CSV" > "$E/logs/import.log"
e2e_template "$E/template.yaml" "http://$LAB_APPLIANCE_IP:8090/os.raw.zst" "http://$H:7080"
tb apply -f "$E/template.yaml" > /dev/null
tb workflow create --template e2e --hardware lab-m1 --netboot > /dev/null
say "workflow created; the container's rufio powers lab-m1 on"
timeout 900 "$cli" --data-dir "$E/data" workflow watch lab-m1 > "$E/logs/watch.log" 2>&1 \
  || { tail -5 "$E/logs/watch.log" >&2; fail "the workflow did not succeed"; }
say "workflow SUCCESS"
ok=$(e2e_wait_os 1 "$LAB_STATE/m1/console.log" 0 "http://$H:7080") || fail "lab-m1's installed OS"
say "lab-m1: $ok"
tb timeline lab-m1 --json > "$E/logs/timeline-m1.json"
tb timeline lab-m1 | tee "$E/logs/timeline-m1.txt"
e2e_check_timeline "$E/logs/timeline-m1.json" lab-m1 bios
say "PASS"
