#!/usr/bin/env bash
# The README's cluster quick start, run as written against a control plane of its own
# (tests/kube/kube.sh up: a real etcd + kube-apiserver; its own, because the shared one of the
# test run holds other tests' Hardware, whose MACs a move must not collide with): the lines of
# the fenced block after `<!-- quickstart: cluster ... -->` in README.md, with only these words
# replaced:
#
#   helm, kubectl         → the pinned builds kube.sh makes, helm's homes in a temporary
#                           directory
#   tinkerbell            → the CLI cargo test built (TINKERBELL_BIN)
#   /var/lib/tinkerbell   → an appliance's data directory this test fills (hardware.csv imported
#                           through `serve`, rufio off: the fixture's BMC addresses are not ours)
#   $HOME/.kube/config    → the control plane's kubeconfig (also given to helm and kubectl)
#
# Then: the release is deployed, its Deployments exist, and every machine of the CSV is a
# Hardware in the cluster, listed by the block's last line. The control plane has no kubelet,
# so nothing runs in the pods (their images are deploy/images/test.sh's business).
#
#   tests/kube/quickstart.sh     (without the Go toolchain kube.sh needs: fail under CI=true)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
fail() { echo "tests/kube/quickstart.sh: FAIL: $*" >&2; exit 1; }
say() { echo "quickstart-cluster: $*"; }
if [ -n "${TINKERBELL_BIN:-}" ]; then cli=$TINKERBELL_BIN; else
  (cd "$repo" && cargo build -q --locked -p tinkerbell --bin tinkerbell)
  cli="${CARGO_TARGET_DIR:-$repo/target}/debug/tinkerbell"
fi
W=$(mktemp -d /tmp/tb-quickstart-cluster.XXXXXX)
if ! "$here/kube.sh" up "$W/kube" > "$W/kube-up.log" 2>&1; then
  cat "$W/kube-up.log" >&2
  "$here/kube.sh" down "$W/kube" >/dev/null 2>&1 || true
  [ "${CI:-}" != true ] || fail "tests/kube/kube.sh up failed"
  echo "tests/kube/quickstart.sh: SKIP: no control plane (tests/kube/kube.sh up failed)"; rm -rf "$W"; exit 0
fi
KC=$(sed -n 's/^TINKERBELL_TEST_KUBECONFIG=//p' "$W/kube/env")
KB=$(sed -n 's/^TINKERBELL_TEST_KUBE_BIN=//p' "$W/kube/env")
export HELM_CONFIG_HOME=$W/helm/config HELM_CACHE_HOME=$W/helm/cache HELM_DATA_HOME=$W/helm/data
serve_pid=""
cleanup() {
  rc=$?
  [ -z "$serve_pid" ] || kill "$serve_pid" 2>/dev/null || true
  "$here/kube.sh" down "$W/kube" >/dev/null 2>&1 || true
  [ $rc = 0 ] && rm -rf "$W" || echo "quickstart-cluster: FAILED; logs in $W" >&2
  exit $rc
}
trap cleanup EXIT

mapfile -t lines < <(awk 'index($0, "<!-- quickstart: cluster ") == 1 {f=1; next} f && /^```sh/{b=1; next} b && /^```/{exit} b' \
  "$repo/README.md" | sed -E 's/[[:space:]]+#.*$//')
[ ${#lines[@]} -ge 2 ] || fail "README.md: no quick-start block (<!-- quickstart: cluster -->)"

# The appliance's machines: the CLI fixture's hardware.csv, imported through serve.
data=$W/data
mkdir -p "$data"
"$cli" --data-dir "$data" serve --store-api-addr 127.0.0.1:0 --bind-address 127.0.0.1 --http-port 0 \
  --tink-server-bind-port 0 --enable-rufio-controller=false --enable-tink-controller=false \
  > "$W/serve.log" 2>&1 &
serve_pid=$!
for _ in $(seq 300); do [ -f "$data/api-url" ] && break; sleep 0.1; done
[ -f "$data/api-url" ] || { cat "$W/serve.log" >&2; fail "serve did not start"; }
# In the release's namespace (`move -A` keeps every object's namespace).
"$cli" --data-dir "$data" -n tinkerbell hardware import --csv "$repo/cli/tests/fixtures/hardware.csv" > /dev/null
mapfile -t machines < <(tail -n +2 "$repo/cli/tests/fixtures/hardware.csv" | cut -d, -f1)
kill "$serve_pid"; wait "$serve_pid" 2>/dev/null || true; serve_pid=""

cd "$repo"
for line in "${lines[@]}"; do
  [ -n "${line// }" ] || continue
  cmd=$line
  cmd=${cmd//\/var\/lib\/tinkerbell/$data}
  cmd=${cmd//\$HOME\/.kube\/config/$KC}
  case $cmd in
    "helm "*) cmd="\"$KB/helm\" --kubeconfig \"$KC\" ${cmd#helm }" ;;
    "kubectl "*) cmd="\"$KB/kubectl\" --kubeconfig \"$KC\" ${cmd#kubectl }" ;;
    "tinkerbell "*) cmd="\"$cli\" ${cmd#tinkerbell }" ;;
    *) fail "README cluster quick start: not helm, kubectl or tinkerbell: $line" ;;
  esac
  say "\$ $line"
  eval "$cmd" > "$W/step.log" 2>&1 || { cat "$W/step.log" >&2; fail "$line"; }
  cp "$W/step.log" "$W/last-output.log"
done

status=$("$KB/helm" --kubeconfig "$KC" status tinkerbell -n tinkerbell -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["info"]["status"])')
[ "$status" = deployed ] || fail "helm release status: $status"
deploys=$("$KB/kubectl" --kubeconfig "$KC" get deployments -n tinkerbell -o name | sort | tr '\n' ' ')
for d in boots hegel tink-server tink-controller rufio; do
  grep -q "deployment.apps/tinkerbell-$d " <<<"$deploys " || fail "no Deployment tinkerbell-$d (have: $deploys)"
done
got=$("$KB/kubectl" --kubeconfig "$KC" get hardware -n tinkerbell -o name | sort | tr '\n' ' ')
for m in "${machines[@]}"; do
  grep -q "hardware.tinkerbell.org/$m " <<<"$got " || fail "Hardware $m not in the cluster (have: $got)"
  # The last README line listed them too.
  grep -q "^tinkerbell  *$m " "$W/last-output.log" || fail "kubectl get hardware did not list $m: $(cat "$W/last-output.log")"
done
say "PASS: release deployed (per-service Deployments), ${#machines[@]} machines moved into the cluster"
