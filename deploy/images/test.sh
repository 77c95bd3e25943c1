#!/usr/bin/env bash
# Container image test, run as users run the images (invoked from scripts/test.sh).
#
# 1. Build the static binaries and the OCI archives (deploy/images/build.sh), verify every
#    digest of the layouts (oci.py verify), `docker load` them.
# 2. Admin machine: `docker run --network host` of `tinkerbell serve` with a data-dir volume;
#    the CLI on the host imports a hardware.csv through the store API and gets it back.
# 3. Services on a private Docker network: the appliance's store API in one container, `hegel`
#    in another reaching it by container name; a metadata request made from a third network
#    namespace on that network (another container) is answered for the Hardware holding that
#    container's address.
#
# Without a Docker engine: skips (exit 0) with a message, unless CI=true (then fails).
# Network traffic stays on loopback and on the Docker network this test creates.
set -euo pipefail
cd "$(dirname "$0")/../.."

DOCKER=${DOCKER:-docker}
if ! "$DOCKER" info >/dev/null 2>&1; then
  if [ "${CI:-}" = true ]; then
    echo "deploy/images/test.sh: FAIL: no Docker engine answers ('$DOCKER info' failed) and CI=true" >&2
    exit 1
  fi
  echo "deploy/images/test.sh: SKIP: no Docker engine answers; run as root with dockerd up to test the images" >&2
  exit 0
fi
for tool in curl nsenter file python3; do
  command -v "$tool" >/dev/null || { echo "deploy/images/test.sh: FAIL: $tool is missing (scripts/install-deps.sh)" >&2; exit 1; }
done

TAG=test-$$
OUT=$(mktemp -d /tmp/tb-images.XXXXXX)
ID=tbimg$$
NET=$ID-net
passed=0
failed=0
containers=()
cleanup() {
  for c in "${containers[@]}"; do "$DOCKER" rm -f "$c" >/dev/null 2>&1 || true; done
  "$DOCKER" network rm "$NET" >/dev/null 2>&1 || true
  for img in "tinkerbell:$TAG" "hegel:$TAG" "hegel:$TAG-built"; do
    "$DOCKER" rmi -f "tinkerbell-rs/$img" >/dev/null 2>&1 || true
  done
  rm -rf "$OUT"
}
trap cleanup EXIT
ok() { echo "ok: $*"; passed=$((passed + 1)); }
fail() { echo "FAIL: $*" >&2; failed=$((failed + 1)); }
# poll CMD until it succeeds or SECONDS_LIMIT passes
wait_for() {
  local limit=$1; shift
  local deadline=$(( $(date +%s) + limit ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.2
  done
}

t0=$(date +%s)
OUT=$OUT TAG=$TAG deploy/images/build.sh --tag "$TAG" --out "$OUT/archives" tinkerbell hegel
t_build=$(( $(date +%s) - t0 ))
BIN=target/x86_64-unknown-linux-gnu/${CARGO_PROFILE_FOR_IMAGES:-release}
TB=$BIN/tinkerbell

for img in tinkerbell hegel; do
  if python3 deploy/images/oci.py verify "$OUT/archives/$img.oci.tar"; then ok "$img: OCI layout digests verify"; else fail "$img: OCI layout"; fi
  user=$("$DOCKER" image inspect -f '{{.Config.User}}' "tinkerbell-rs/$img:$TAG")
  [ -n "$user" ] && ok "$img: loaded, USER $user" || fail "$img: not loaded"
  size=$("$DOCKER" image inspect -f '{{.Size}}' "tinkerbell-rs/$img:$TAG")
  echo "image tinkerbell-rs/$img:$TAG: $size bytes ($(du -h "$OUT/archives/$img.oci.tar" | cut -f1) archive)"
done
# The image reproduces bit for bit (the digest is a function of the binary alone).
python3 deploy/images/oci.py build --binary "$BIN/hegel" --name hegel --tag "$TAG" --user 65532 \
  --port 50061/tcp --out "$OUT/again.tar" >/dev/null
cmp -s "$OUT/again.tar" "$OUT/archives/hegel.oci.tar" && ok "OCI archive is reproducible" || fail "OCI archive differs between two builds"
if "$DOCKER" run --rm "tinkerbell-rs/hegel:$TAG" --version | grep -q '^hegel '; then ok "hegel --version runs FROM scratch"; else fail "hegel --version"; fi
# The engine-built variant (docker build of a FROM-scratch Dockerfile) runs the same way.
TAG=$TAG-built deploy/images/build.sh --docker-build --tag "$TAG-built" --out "$OUT/built" hegel >/dev/null
if "$DOCKER" run --rm "tinkerbell-rs/hegel:$TAG-built" --version | grep -q '^hegel ' \
  && [ "$("$DOCKER" image inspect -f '{{.Config.User}}' "tinkerbell-rs/hegel:$TAG-built")" = 65532:65532 ]; then
  ok "docker build FROM scratch (same rootfs) runs as 65532"
else
  fail "docker build variant"
fi

# --- 2. admin machine: host network, data-dir volume, CLI on the host ---------------------
DATA=$OUT/data
mkdir -p "$DATA"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
http=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$DOCKER" run -d --name "$ID-admin" --network host -v "$DATA:/var/lib/tinkerbell" \
  "tinkerbell-rs/tinkerbell:$TAG" serve --store-api-addr "127.0.0.1:$port" \
  --bind-address 127.0.0.1 --http-port "$http" >/dev/null
containers+=("$ID-admin")
if wait_for 30 test -s "$DATA/api-url" && wait_for 30 "$TB" --data-dir "$DATA" get hardware; then
  ok "tinkerbell serve (docker run --network host) answers the host CLI"
  "$TB" --data-dir "$DATA" hardware import --csv cli/tests/fixtures/hardware.csv
  got=$("$TB" --data-dir "$DATA" get hardware cp-0 -o json)
  if grep -q '52:54:00:00:00:10' <<<"$got" && grep -q '10.10.0.10' <<<"$got"; then
    ok "hardware.csv imported through the containerised store API and read back"
  else
    fail "hardware cp-0 read back: $got"
  fi
  # The host-network container serves metadata on the host's loopback.
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$http/2009-04-04/meta-data/")
  [ "$code" = 404 ] && ok "metadata on the host network answers (404 for an unknown source)" || fail "metadata on host network: HTTP $code"
else
  fail "tinkerbell serve in a container did not come up"; "$DOCKER" logs "$ID-admin" >&2 || true
fi

# --- 3. private network: store API container + hegel container by name --------------------
"$DOCKER" network create "$NET" >/dev/null
STORE=$OUT/store
mkdir -p "$STORE"
"$DOCKER" run -d --name "$ID-store" --network "$NET" -v "$STORE:/var/lib/tinkerbell" \
  "tinkerbell-rs/tinkerbell:$TAG" serve --store-api-addr 0.0.0.0:7081 >/dev/null
containers+=("$ID-store")
wait_for 30 test -s "$STORE/api-token" || fail "store container wrote no api-token"
# hegel runs as 65532 and, like every client, refuses a token file others can read: give it a
# 0600 copy of its own.
mkdir -p "$OUT/hegel-secret"
install -m 0600 -o 65532 -g 65532 "$STORE/api-token" "$OUT/hegel-secret/api-token"
chown 65532:65532 "$OUT/hegel-secret"
"$DOCKER" run -d --name "$ID-hegel" --network "$NET" -v "$OUT/hegel-secret:/secret:ro" \
  -e TINKERBELL_SERVER="http://$ID-store:7081" -e TINKERBELL_TOKEN_FILE=/secret/api-token \
  "tinkerbell-rs/hegel:$TAG" >/dev/null
containers+=("$ID-hegel")
# The client: a container on the same network. Its address goes into the Hardware.
# Any long-running process will do; the request is made from its network namespace.
"$DOCKER" run -d --name "$ID-client" --network "$NET" "tinkerbell-rs/tinkerbell:$TAG" serve >/dev/null
containers+=("$ID-client")
client_ip=$("$DOCKER" inspect -f "{{(index .NetworkSettings.Networks \"$NET\").IPAddress}}" "$ID-client")
hegel_ip=$("$DOCKER" inspect -f "{{(index .NetworkSettings.Networks \"$NET\").IPAddress}}" "$ID-hegel")
client_pid=$("$DOCKER" inspect -f '{{.State.Pid}}' "$ID-client")
cat >"$STORE/hw.yaml" <<EOF
apiVersion: tinkerbell.org/v1alpha1
kind: Hardware
metadata: {name: docker-client, namespace: default}
spec:
  interfaces:
    - dhcp: {mac: "02:42:00:00:00:01", ip: {address: "$client_ip", netmask: 255.255.0.0}}
  metadata:
    instance: {id: "i-docker-client", hostname: docker-client}
EOF
# The CLI in a container on the network, reaching the store API by name.
"$DOCKER" run --rm --network "$NET" -v "$STORE:/store:ro" "tinkerbell-rs/tinkerbell:$TAG" \
  --server "http://$ID-store:7081" --token-file /store/api-token apply -f /store/hw.yaml
meta() { nsenter -t "$client_pid" -n curl -sf "http://$hegel_ip:50061/2009-04-04/meta-data/$1"; }
if wait_for 30 meta instance-id && [ "$(meta instance-id)" = i-docker-client ] \
  && [ "$(meta hostname)" = docker-client ]; then
  ok "hegel container (store by name) answers a metadata request from another container"
else
  fail "metadata from $client_ip via hegel $hegel_ip: '$(meta instance-id || true)'"
  "$DOCKER" logs "$ID-hegel" >&2 || true
fi

echo "deploy/images/test.sh: build ${t_build}s, total $(( $(date +%s) - t0 ))s"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
