#!/usr/bin/env bash
# Container image test, run as users run the images (invoked from scripts/test.sh).
#
# 1. The release build: the static binaries, HookOS (with the static tink-worker) and the OCI
#    archives, the data-only `hookos` image among them (deploy/images/build.sh --with-hookos);
#    verify every digest of the layouts (oci.py verify) and HookOS against its SHA256SUMS,
#    `docker load` them, install HookOS out of its image with `tinkerbell hookos fetch --from`.
# 2. Admin machine: `docker run --network host` of `tinkerbell serve` with a data-dir volume;
#    the CLI on the host imports a hardware.csv through the store API and gets it back; then
#    tests/lab/docker-host.sh: the image on the host network provisions a lab machine (DHCP on
#    a veth into the lab's bridge only).
# 3. Services on a private Docker network, each in its own container and pointed at the
#    appliance's store API by name over HTTPS (`--backend embedded --server
#    https://<store>:7081 --token-file --ca-file`, the store's certificate pinned): the store
#    API alone (`tinkerbell serve` with every service off), tink-server, tink-controller,
#    hegel, rufio and a tink-worker. A Secret, bmc Machine, Hardware, Template and Workflow
#    applied with the CLI: the tink-controller container renders the workflow, the worker
#    container gets the action from the tink-server container and runs it (image2disk of a URL
#    served by the hegel container: the worker's own metadata, which hegel finds by the
#    worker's address) into a file, and the workflow ends SUCCESS; the rufio
#    container marks the Machine, whose BMC does not answer, Contactable=False.
#
# Without a Docker engine: skips (exit 0) with a message, unless CI=true (then fails).
# Network traffic stays on loopback, on the Docker network and on the lab namespace and veth
# (tblab0) this test creates.
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
IMAGES=(tinkerbell boots hegel tink-server tink-controller rufio tink-worker)
OUT=$(mktemp -d /tmp/tb-images.XXXXXX)
ID=tbimg$$
NET=$ID-net
passed=0
failed=0
containers=()
cleanup() {
  for c in "${containers[@]}"; do "$DOCKER" rm -f "$c" >/dev/null 2>&1 || true; done
  "$DOCKER" network rm "$NET" >/dev/null 2>&1 || true
  for img in "${IMAGES[@]/%/:$TAG}" "hegel:$TAG-built" "hookos:$TAG"; do
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
# Every image, from the one cargo invocation in build.sh.
# The release build: the images and HookOS (built with the static tink-worker, as its image too).
OUT=$OUT TAG=$TAG deploy/images/build.sh --tag "$TAG" --out "$OUT/archives" --with-hookos "${IMAGES[@]}"
t_build=$(( $(date +%s) - t0 ))
BIN=${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-gnu/${CARGO_PROFILE_FOR_IMAGES:-release}
TB=$BIN/tinkerbell

for img in "${IMAGES[@]}"; do
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

# --- 1b. HookOS from the release build, and its data image ------------------------------------
# (SHA256SUMS and the files it lists at the image's root: what the Helm chart mounts as an image
# volume, and what `tinkerbell hookos fetch` installs)
HK=$OUT/archives/hookos
if (cd "$HK" && sha256sum --quiet -c SHA256SUMS) && grep -q ' vmlinuz-x86_64$' "$HK/SHA256SUMS" \
  && grep -q ' initramfs-x86_64$' "$HK/SHA256SUMS"; then
  ok "hookos: the release build wrote the kernel and initramfs with their SHA256SUMS"
else
  fail "hookos: release artifacts ($(ls "$HK" 2>&1))"
fi
if python3 deploy/images/oci.py verify "$OUT/archives/hookos.oci.tar" >/dev/null; then
  ok "hookos: data image verified (layer digests, files against its SHA256SUMS)"
else
  fail "hookos: data image"
fi
mkdir -p "$OUT/hookos-out"
"$DOCKER" create --name "$ID-hookos" "tinkerbell-rs/hookos:$TAG" /none >/dev/null && containers+=("$ID-hookos")
"$DOCKER" export "$ID-hookos" | tar -x -C "$OUT/hookos-out"
if "$TB" hookos fetch --from "$OUT/hookos-out" --dir "$OUT/hookos-installed" >/dev/null \
  && cmp -s "$HK/initramfs-x86_64" "$OUT/hookos-installed/initramfs-x86_64" \
  && "$TB" hookos status --dir "$OUT/hookos-installed" >/dev/null; then
  ok "hookos: the image's files, copied out, install with tinkerbell hookos fetch --from"
else
  fail "hookos: files out of the image"
fi
cp -r "$HK" "$OUT/hookos-bad"
echo corrupt >> "$OUT/hookos-bad/manifest.txt"
if err=$(deploy/images/build.sh --tag "$TAG-bad" --out "$OUT/bad" --hookos-dir "$OUT/hookos-bad" hookos 2>&1); then
  fail "hookos: an image was built from files that do not match SHA256SUMS"
elif grep -q 'manifest.txt: sha256 .* does not match SHA256SUMS' <<<"$err"; then
  ok "hookos: files that do not match SHA256SUMS are refused, naming the file"
else
  fail "hookos: refused without naming the file: $err"
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

# --- 2b. the same image on the host network netboots a lab machine end to end ------------
# (tests/lab/docker-host.sh: DHCP on a veth into the lab's bridge, everything else bound to
# that veth's address; rufio power-on, PXE, HookOS, image, the installed OS reads metadata.)
if tests/lab/docker-host.sh --image "tinkerbell-rs/tinkerbell:$TAG"; then
  ok "docker run --network host: the tinkerbell image provisions a lab machine"
else
  fail "docker run --network host: lab provisioning (logs in target/docker-host/logs)"
fi

# --- 3. private network: the store API and every service in its own container ----------
"$DOCKER" network create "$NET" >/dev/null
STORE=$OUT/store
mkdir -p "$STORE"
# Off loopback the store API serves HTTPS: a self-signed certificate, which every client
# trusts as it is (pinned: --ca-file, the api-cert.pem serve leaves in its data dir).
mkdir -p "$OUT/store-tls"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj "/CN=$ID-store" -addext "subjectAltName=DNS:$ID-store" \
  -keyout "$OUT/store-tls/key.pem" -out "$OUT/store-tls/cert.pem" 2>/dev/null
chmod 600 "$OUT/store-tls/key.pem"
"$DOCKER" run -d --name "$ID-store" --network "$NET" -v "$STORE:/var/lib/tinkerbell" \
  -v "$OUT/store-tls:/tls:ro" "tinkerbell-rs/tinkerbell:$TAG" serve --store-api-addr 0.0.0.0:7081 \
  --store-api-tls-cert-file /tls/cert.pem --store-api-tls-key-file /tls/key.pem --enable-tootles=false \
  --enable-tink-server=false --enable-tink-controller=false --enable-rufio-controller=false >/dev/null
containers+=("$ID-store")
wait_for 30 test -s "$STORE/api-token" || fail "store container wrote no api-token"
# The services run as 65532 and, like every client, refuse a token file others can read: they
# get a 0600 copy they own. tink-server keeps its worker token key in its own data dir.
mkdir -p "$OUT/secret" "$OUT/tink-data"
install -m 0600 -o 65532 -g 65532 "$STORE/api-token" "$OUT/secret/api-token"
wait_for 30 test -s "$STORE/api-cert.pem" || fail "store container wrote no api-cert.pem"
install -m 0644 "$STORE/api-cert.pem" "$OUT/secret/api-cert.pem"
chown 65532:65532 "$OUT/secret" "$OUT/tink-data"
store_args=(--backend embedded --server "https://$ID-store:7081" --token-file /secret/api-token
  --ca-file /secret/api-cert.pem)
svc() { # NAME [docker args...] -- [service args...]; the image is tinkerbell-rs/NAME
  local name=$1
  shift
  local dargs=()
  while [ "$1" != -- ]; do dargs+=("$1"); shift; done
  shift
  "$DOCKER" run -d --name "$ID-$name" --network "$NET" -v "$OUT/secret:/secret:ro" "${dargs[@]}" \
    "tinkerbell-rs/$name:$TAG" "$@" "${store_args[@]}" >/dev/null
  containers+=("$ID-$name")
}
svc tink-server -v "$OUT/tink-data:/data" -- --data-dir /data
svc tink-controller -- --resync-seconds 1
svc hegel --
svc rufio -- --rufio-bmc-connect-timeout 2s --rufio-power-check-interval 30s
wait_for 30 test -s "$OUT/tink-data/worker-token-key" || fail "tink-server wrote no worker-token-key"

# The worker: its ID is a MAC; its token is derived from tink-server's key, as boots does.
MAC=02:42:0a:00:00:99
# A v2 token (core/src/worker_token.rs): v2.<expiry>.<hex HMAC(key, domain || id || 0 || expiry)>.
token=$(python3 -c 'import hmac,hashlib,sys,time; k=open(sys.argv[1]).read().strip().encode(); e=str(int(time.time())+3600); print("v2."+e+"."+hmac.new(k, b"tinkerbell-worker-token-v2\0"+sys.argv[2].lower().encode()+b"\0"+e.encode(), hashlib.sha256).hexdigest())' \
  "$OUT/tink-data/worker-token-key" "$MAC")
"$DOCKER" run -d --name "$ID-worker" --network "$NET" "tinkerbell-rs/tink-worker:$TAG" \
  --id "$MAC" --tinkerbell-grpc-authority "$ID-tink-server:42113" --tinkerbell-tls false \
  --worker-token "$token" --retry-interval 1s >/dev/null
containers+=("$ID-worker")
ip_of() { "$DOCKER" inspect -f "{{(index .NetworkSettings.Networks \"$NET\").IPAddress}}" "$ID-$1"; }
worker_ip=$(ip_of worker)
hegel_ip=$(ip_of hegel)
store_ip=$(ip_of store)
cat >"$STORE/objects.yaml" <<YAML
apiVersion: v1
kind: Secret
metadata: {name: bmc-worker-auth, namespace: default}
stringData: {username: admin, password: secret}
---
apiVersion: bmc.tinkerbell.org/v1alpha1
kind: Machine
metadata: {name: bmc-worker, namespace: default}
spec:
  connection:
    # The store container's address: nothing answers IPMI (623/udp) there.
    host: "$store_ip"
    port: 623
    insecureTLS: true
    authSecretRef: {name: bmc-worker-auth, namespace: default}
---
apiVersion: tinkerbell.org/v1alpha1
kind: Hardware
metadata: {name: worker, namespace: default}
spec:
  interfaces:
    - dhcp: {mac: "$MAC", ip: {address: "$worker_ip", netmask: 255.255.0.0}}
      netboot: {allowPXE: true, allowWorkflow: true}
  metadata:
    instance: {id: "i-docker-worker", hostname: docker-worker}
---
apiVersion: tinkerbell.org/v1alpha1
kind: Template
metadata: {name: fetch, namespace: default}
spec:
  data: |
    version: "0.1"
    name: fetch
    global_timeout: 120
    tasks:
      - name: "fetch"
        worker: "{{.device_1}}"
        actions:
          - name: "metadata-to-disk"
            image: quay.io/tinkerbell/actions/image2disk:latest
            timeout: 60
            environment:
              IMG_URL: "http://$hegel_ip:50061/2009-04-04/meta-data/hostname"
              DEST_DISK: /tmp/disk.img
              SPARSE: false
---
apiVersion: tinkerbell.org/v1alpha1
kind: Workflow
metadata: {name: fetch-worker, namespace: default}
spec:
  templateRef: fetch
  hardwareRef: worker
  hardwareMap: {device_1: "$MAC"}
YAML
# The CLI in a container on the network, reaching the store API by name.
"$DOCKER" run --rm --network "$NET" -v "$STORE:/store:ro" "tinkerbell-rs/tinkerbell:$TAG" \
  --server "https://$ID-store:7081" --token-file /store/api-token --ca-file /store/api-cert.pem \
  apply -f /store/objects.yaml
cli() { "$TB" --server "https://$store_ip:7081" --token-file "$STORE/api-token" --ca-file "$STORE/api-cert.pem" "$@"; }
wf_state() {
  cli get workflow fetch-worker -o json \
    | python3 -c 'import json,sys; print((json.load(sys.stdin).get("status") or {}).get("state",""))'
}
wf_done() { case "$(wf_state)" in SUCCESS|FAILED|TIMEOUT) return 0 ;; *) return 1 ;; esac; }
t_wf=$(date +%s)
if wait_for 90 wf_done && [ "$(wf_state)" = SUCCESS ]; then
  ok "workflow rendered by the tink-controller container, run by the worker container through the tink-server container: SUCCESS in $(( $(date +%s) - t_wf ))s"
else
  fail "workflow state '$(wf_state)'"
  cli get workflow fetch-worker -o yaml >&2 || true
  for c in tink-controller tink-server worker; do echo "--- $c" >&2; "$DOCKER" logs "$ID-$c" 2>&1 | tail -20 >&2; done
fi
got=$("$DOCKER" cp "$ID-worker:/tmp/disk.img" - 2>/dev/null | tar -xO 2>/dev/null || true)
if [ "$got" = docker-worker ]; then
  ok "the action wrote the worker's own metadata, served by the hegel container"
else
  fail "disk.img holds '$got'"
  "$DOCKER" logs "$ID-hegel" 2>&1 | tail -20 >&2
fi
contactable() {
  cli get machine bmc-worker -o json | python3 -c '
import json,sys
c=[c for c in (json.load(sys.stdin).get("status") or {}).get("conditions") or [] if c["type"]=="Contactable"]
sys.exit(0 if c and c[0]["status"]=="False" else 1)'
}
if wait_for 30 contactable; then
  ok "rufio container reconciled the Machine (BMC not answering: Contactable=False)"
else
  fail "rufio: $(cli get machine bmc-worker -o json 2>&1 | tr -d '\n' | cut -c1-400)"
  "$DOCKER" logs "$ID-rufio" 2>&1 | tail -20 >&2
fi
# hegel, asked from the worker's network namespace, answers for the worker's Hardware.
worker_pid=$("$DOCKER" inspect -f '{{.State.Pid}}' "$ID-worker")
meta() { nsenter -t "$worker_pid" -n curl -sf "http://$hegel_ip:50061/2009-04-04/meta-data/$1"; }
if [ "$(meta instance-id)" = i-docker-worker ]; then
  ok "hegel container (store by name) answers a metadata request from another container"
else
  fail "metadata from $worker_ip via hegel $hegel_ip: '$(meta instance-id || true)'"
fi
for c in tink-server tink-controller hegel rufio; do
  if [ "$("$DOCKER" inspect -f '{{.State.Running}}' "$ID-$c")" = true ]; then
    ok "$c container still running"
  else
    fail "$c container exited"
    "$DOCKER" logs "$ID-$c" 2>&1 | tail -20 >&2
  fi
done

echo "deploy/images/test.sh: build ${t_build}s, total $(( $(date +%s) - t0 ))s"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
