#!/usr/bin/env bash
# End-to-end provisioning with the store in a real Kubernetes API server: tests/lab/e2e.sh's
# flow (power-on over IPMI, PXE, HookOS, image2disk + writefile + reboot, the installed OS reads
# its metadata), but every service is its own process on `--backend kube`, as the Helm chart
# deploys them, instead of one `tinkerbell serve` on the embedded store.
#
#   etcd + kube-apiserver (tests/kube/kube.sh up, on the lab namespace's loopback), the CRDs
#   (deploy/crds, server-side apply)
#   → hardware.csv imported into a scratch embedded store, then `tinkerbell move --from DIR
#     --to kube:KUBECONFIG#default -A` (the pivot path: bootstrap appliance → cluster)
#   → boots (DHCP on br0, TFTP, syslog, iPXE/HookOS HTTP on 10.99.0.1:7080, RA), hegel
#     (10.99.0.1:50061), tink-server (10.99.0.1:42113), tink-controller and rufio, each
#     `--backend kube --backend-kube-namespace default`; boots and tink-server share one
#     `--worker-token-key-file` (worker authentication on)
#   → the Template and one Workflow per machine (what `tinkerbell workflow create --netboot`
#     writes) applied with kubectl; the controller makes the bmc Job, rufio powers the machine
#     on, ... ; workflows watched with kubectl until SUCCESS; each installed OS must print
#     E2E-OK read from hegel.
#
#   tests/lab/e2e-kube.sh [--machines N]   (root; default 2: m1 BIOS, m2 UEFI)
#
# There is no `tinkerbell timeline` without serve (each standalone service keeps its own, in
# memory), so the script rebuilds each machine's timeline from what the processes leave behind
# and checks it with e2e-lib.sh's e2e_check_timeline (same order checks as e2e.sh):
#   power-on          the lab BMC hook's "=== lab: power on ... boot=pxe" line in the console
#   dhcp-*, tftp, ipxe-*, kernel, initramfs
#                     boots' own timeline records (its `tinkerbell_boots::record` debug log)
#   worker-connected  the worker's first action report, in tink-server's log (a standalone
#                     tink-server keeps no timeline; a worker that reports an action connected)
#   action-*, reboot  tink-server's "action status" log lines (the Workflow status has whole
#                     seconds only), named through the Workflow status's action IDs
#   metadata-read     when the installed OS's E2E-OK line (printed right after its reads from
#                     hegel) appeared on its console, polled every 0.2 s
# and prints e2e.sh's summary line (the format bench/e2e.sh parses):
#   e2e: lab-m1 bios power-on→image-written 61.2 s power-on→metadata-read 98.7 s
# Consoles, every service's log, the control plane's logs, the Workflows/Jobs/Machines as YAML
# and the rebuilt timelines stay under target/e2e-kube/logs (E2E_KUBE_DIR) whatever the outcome.
#
# Binaries: TINKERBELL_BIN (the CLI, as e2e.sh) and TINKERBELL_SERVICES_DIR (a directory with
# boots, hegel, tink-server, tink-controller and rufio; default: cargo builds them into
# ${CARGO_TARGET_DIR:-target}/debug); E2E_WORKER_BIN (optional) a static tink-worker for
# HookOS (e2e-lib.sh's e2e_build). Needs what e2e.sh needs plus Go and openssl (the
# control plane, tests/kube/kube.sh); missing ones fail under CI=true and skip otherwise.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
E=${E2E_KUBE_DIR:-$repo/target/e2e-kube}
export LAB_STATE="$E/lab"
L="$here/lab.sh"
K="$repo/tests/kube/kube.sh"
n=2
[ "${1:-}" = --machines ] && n=$2
T0=$SECONDS
say() { echo "e2e-kube [$((SECONDS - T0)) s]: $*"; }
fail() { echo "e2e-kube: FAIL: $*" >&2; exit 1; }

# shellcheck source=tests/lab/e2e-lib.sh
. "$here/e2e-lib.sh"
e2e_require tests/lab/e2e-kube.sh
missing=""
for t in go openssl; do command -v $t > /dev/null || missing="$missing $t"; done
if [ -n "$missing" ]; then
  if [ -n "${CI:-}" ]; then echo "tests/lab/e2e-kube.sh: FAIL: missing$missing (the control plane of tests/kube/kube.sh)" >&2; exit 1; fi
  echo "tests/lab/e2e-kube.sh: SKIP: missing$missing (the control plane of tests/kube/kube.sh)"; exit 0
fi

"$L" down --purge > /dev/null 2>&1 || true
[ ! -f "$E/kube/apiserver.pid" ] || "$K" down "$E/kube" > /dev/null 2>&1 || true
rm -rf "$E/scratch" "$E/www" "$E/logs" "$E/kube" "$E/run"
mkdir -p "$E/scratch" "$E/www" "$E/logs" "$E/run"

# --- build: the CLI, HookOS, the OS image, the services, the control plane ----------------------
say "building tinkerbell, HookOS and the OS image"
e2e_build
if [ -n "${TINKERBELL_SERVICES_DIR:-}" ]; then
  sbin=$TINKERBELL_SERVICES_DIR
else
  say "building boots, hegel, tink-server, tink-controller, rufio"
  (cd "$repo" && cargo build -q --locked -p tinkerbell-boots --bin boots -p tinkerbell-hegel --bin hegel \
    -p tinkerbell-tink-server --bin tink-server -p tinkerbell-tink-controller --bin tink-controller \
    -p tinkerbell-rufio --bin rufio)
  sbin="${CARGO_TARGET_DIR:-$repo/target}/debug"
fi
for b in boots hegel tink-server tink-controller rufio; do
  [ -x "$sbin/$b" ] || fail "$sbin/$b is not an executable (TINKERBELL_SERVICES_DIR)"
done
"$K" build > "$E/logs/kube-build.log" 2>&1 || { tail -20 "$E/logs/kube-build.log" >&2; fail "tests/kube/kube.sh build"; }
kbin=$("$K" bin)

# --- the lab, the control plane ----------------------------------------------------------------
NS=default                 # the Kubernetes namespace of every object and of every service
KC="$E/kube/kubeconfig"
KEY="$E/run/worker-token-key"
nsx() { ip netns exec "$LAB_NS" "$@"; }
kc() { nsx "$kbin/kubectl" --kubeconfig "$KC" "$@"; }

declare -A pid          # service name → pid (the service itself: `ip netns exec` execs it)
services=(boots hegel tink-server tink-controller rufio)
cleanup() {
  rc=$?
  set +e
  if [ -f "$KC" ] && [ -n "${LAB_NS:-}" ]; then
    for k in workflows templates hardware machines.bmc.tinkerbell.org jobs.bmc.tinkerbell.org tasks.bmc.tinkerbell.org; do
      kc get "$k" -n "$NS" -o yaml > "$E/logs/kube-$k.yaml" 2>&1
    done
  fi
  for i in $(seq 1 "$n"); do
    cp -f "$LAB_STATE/m$i/console.log" "$E/logs/console-m$i.log" 2>/dev/null
    [ -z "${pid[boots]:-}" ] || nsx curl -sf "http://$A:7080/tinkerbell/v1/logs/lab-m$i?namespace=$NS" > "$E/logs/syslog-m$i.json" 2>/dev/null
  done
  for s in "${!pid[@]}"; do kill "${pid[$s]}" 2>/dev/null; done
  for s in "${!pid[@]}"; do
    for _ in $(seq 50); do kill -0 "${pid[$s]}" 2>/dev/null || break; sleep 0.1; done
    kill -9 "${pid[$s]}" 2>/dev/null
  done
  cp -f "$E/kube/etcd.log" "$E/kube/apiserver.log" "$E/logs/" 2>/dev/null
  "$K" down "$E/kube" > /dev/null 2>&1
  "$L" down > /dev/null 2>&1
  [ $rc = 0 ] || echo "e2e-kube: FAILED; consoles, service and control-plane logs, objects and timelines are in $E/logs" >&2
  exit $rc
}
trap cleanup EXIT

say "lab up: $n machines"
"$L" up --machines "$n" --no-redfish > "$E/logs/lab-up.log" || { tail -20 "$E/logs/lab-up.log" >&2; fail "lab.sh up"; }
# shellcheck disable=SC1091
. "$LAB_STATE/lab.env"
A=$LAB_APPLIANCE_IP
MD_URL="http://$A:50061"   # hegel

say "control plane up in $LAB_NS"
nsx "$K" up "$E/kube" > "$E/logs/kube-up.log" 2>&1 || { cat "$E/logs/kube-up.log" >&2; fail "kube.sh up"; }
kc apply --server-side -f "$repo/deploy/crds/" > "$E/logs/crds.log"
kc wait --for condition=established --timeout 60s crd --all > /dev/null
say "$(tail -n1 "$E/logs/kube-up.log"); CRDs established"

# --- inventory: hardware.csv → a scratch embedded store → tinkerbell move → the cluster ---------
# `hardware import` writes through a store API, so a bare `serve` (loopback, no DHCP/TFTP/
# syslog, no controllers) holds the scratch store while it imports; the move opens the store
# file itself once serve is gone, as an admin's bootstrap appliance pivots to a cluster.
ip netns exec "$LAB_NS" "$cli" --data-dir "$E/scratch" serve --bind-address 127.0.0.1 --http-port 0 --store-api-addr 127.0.0.1:0 \
  --enable-tink-server=false --enable-tink-controller=false --enable-rufio-controller=false \
  --enable-tootles=false > "$E/logs/scratch-serve.log" 2>&1 &
pid[scratch-serve]=$!
for _ in $(seq 300); do [ -f "$E/scratch/api-url" ] && break; sleep 0.1; done
[ -f "$E/scratch/api-url" ] || { cat "$E/logs/scratch-serve.log" >&2; fail "the scratch serve did not start"; }
nsx "$cli" --data-dir "$E/scratch" hardware import --csv "$LAB_CSV" > "$E/logs/import.log"
kill "${pid[scratch-serve]}"; wait "${pid[scratch-serve]}" || true
unset 'pid[scratch-serve]'
nsx "$cli" move --from "$E/scratch" --to "kube:$KC#$NS" -A > "$E/logs/move.log" 2>&1 \
  || { cat "$E/logs/move.log" >&2; fail "tinkerbell move to the cluster"; }
for i in $(seq 1 "$n"); do
  kc get hardware "lab-m$i" -n "$NS" > /dev/null || fail "Hardware lab-m$i is not in the cluster after the move"
  kc get machines.bmc.tinkerbell.org "bmc-lab-m$i" -n "$NS" > /dev/null || fail "bmc Machine bmc-lab-m$i is not in the cluster after the move"
done
say "hardware.csv moved into the cluster: $(kc get hardware -n "$NS" --no-headers | wc -l) Hardware, $(kc get machines.bmc.tinkerbell.org -n "$NS" --no-headers | wc -l) bmc Machines"

# --- the services, one process each, all on the cluster ----------------------------------------
openssl rand -hex 32 > "$KEY"; chmod 600 "$KEY"
kube=(--backend kube --backend-kube-config "$KC" --backend-kube-namespace "$NS")
start() { # NAME ARGS...: the service in the lab namespace, its own empty data dir, log in logs/
  local name=$1; shift
  mkdir -p "$E/run/$name"
  NO_COLOR=1 ip netns exec "$LAB_NS" "$sbin/$name" "${kube[@]}" --data-dir "$E/run/$name" "$@" \
    > "$E/logs/$name.log" 2>&1 &
  pid[$name]=$!
}
alive() { # fails naming the first service that exited
  local s
  for s in "${services[@]}"; do
    kill -0 "${pid[$s]}" 2>/dev/null || { tail -20 "$E/logs/$s.log" >&2; fail "$s exited"; }
  done
}
start boots --bind-address "$A" --http-port 7080 \
  --dhcp-bind-interface br0 --ipv6-ra-enabled \
  --tftp-server-bind-addr "$A" --syslog-bind-addr "$A" \
  --hookos-dir "$E/hookos" --tink-server-bind-port 42113 \
  --worker-token-key-file "$KEY" \
  --log-level info,tinkerbell_boots::record=debug
start hegel --http-addr "$A:50061"
start tink-server --tink-server-bind-addr "$A" --tink-server-bind-port 42113 --worker-token-key-file "$KEY"
start tink-controller
start rufio
ready() {
  nsx curl -sf -o /dev/null "http://$A:7080/boots/metrics" \
    && nsx curl -sf -o /dev/null "$MD_URL/healthz" \
    && nsx bash -c "exec 3<>/dev/tcp/$A/42113" 2> /dev/null
}
for _ in $(seq 300); do alive; ready && break; sleep 0.1; done
ready || fail "boots, hegel or tink-server not listening after 30 s"
sleep 1; alive
say "services up: boots $A:7080 (DHCP br0, TFTP, syslog), hegel $MD_URL, tink-server $A:42113, tink-controller, rufio"

# --- the OS image, template, workflows ---------------------------------------------------------
ip netns exec "$LAB_NS" python3 -m http.server 8090 --bind "$A" --directory "$E/www" > "$E/logs/www.log" 2>&1 &
pid[www]=$!
e2e_template "$E/template.yaml" "http://$A:8090/os.raw.zst" "$MD_URL"
kc apply -f "$E/template.yaml" > /dev/null
# What `tinkerbell workflow create --template e2e --hardware lab-mI --netboot` writes
# (cli/src/workflow.rs): hardwareMap.device_1 = the Hardware's first MAC, bootOptions netboot.
for i in $(seq 1 "$n"); do
  mac=$(kc get hardware "lab-m$i" -n "$NS" -o jsonpath='{.spec.interfaces[0].dhcp.mac}')
  [ -n "$mac" ] || fail "Hardware lab-m$i has no MAC"
  cat > "$E/workflow-m$i.yaml" <<EOF
apiVersion: tinkerbell.org/v1alpha1
kind: Workflow
metadata:
  name: lab-m$i
  namespace: $NS
spec:
  templateRef: e2e
  hardwareRef: lab-m$i
  hardwareMap:
    device_1: "$mac"
  bootOptions:
    toggleAllowNetboot: true
    bootMode: netboot
EOF
done
wf_created=$(date +%s.%N)   # the timelines start here (before: the controller and rufio are quick)
for i in $(seq 1 "$n"); do kc create -f "$E/workflow-m$i.yaml" > /dev/null; done
say "workflows created; tink-controller makes the bmc Jobs, rufio powers the machines on"

# --- wait: every workflow SUCCESS (kubectl), then every installed OS reads its metadata ----------
# Rendering and the netboot Job (power off, bootdev pxe, power on) take seconds: a workflow still
# new or PREPARING after 180 s means tink-controller or rufio is not doing its part.
declare -A state done
end=$((SECONDS + 900)) prep_end=$((SECONDS + 180))
while :; do
  alive
  left=0
  for i in $(seq 1 "$n"); do
    [ -z "${done[$i]:-}" ] || continue
    s=$(kc get workflow "lab-m$i" -n "$NS" -o jsonpath='{.status.state}' 2>/dev/null || echo "?")
    if [ "$s" != "${state[$i]:-}" ]; then say "lab-m$i: workflow ${s:-<no state>}"; state[$i]=$s; fi
    case $s in
      SUCCESS) done[$i]=1 ;;
      FAILED | TIMEOUT)
        kc get workflow "lab-m$i" -n "$NS" -o yaml > "$E/logs/workflow-m$i.yaml" 2>&1
        fail "lab-m$i: workflow $s (status in $E/logs/workflow-m$i.yaml)" ;;
      "" | PREPARING | "?")
        left=1
        if [ $SECONDS -ge $prep_end ]; then
          kc get workflow "lab-m$i" -n "$NS" -o jsonpath='{range .status.conditions[*]}{.type}={.status} {.message}{"\n"}{end}' >&2
          kc get jobs.bmc.tinkerbell.org,tasks.bmc.tinkerbell.org -n "$NS" >&2
          fail "lab-m$i: workflow still ${s:-new} 180 s after creation (tink-controller, rufio: see their logs)"
        fi ;;
      *) left=1 ;;
    esac
  done
  [ $left = 1 ] || break
  [ $SECONDS -lt $end ] || fail "workflows not SUCCESS within 900 s: $(for i in $(seq 1 "$n"); do printf 'lab-m%s=%s ' "$i" "${state[$i]:-}"; done)"
  sleep 1
done

# The installed OS prints E2E-OK right after reading its metadata; note when each line appears.
# It tries 10 times ("metadata not readable yet ... (attempt N)") and then gives up silently.
declare -A md_at
end=$((SECONDS + 300))
while :; do
  alive
  left=0
  for i in $(seq 1 "$n"); do
    [ -z "${md_at[$i]:-}" ] || continue
    c="$LAB_STATE/m$i/console.log"
    if grep -qa "e2e-os\[.*\(E2E-OK\|ERROR\)" "$c"; then
      md_at[$i]=$(date +%s.%N)
    elif grep -qa "e2e-os\[.*metadata not readable yet.*(attempt 10)" "$c"; then
      grep -a "e2e-os\[" "$c" | tail -3 >&2
      nsx curl -sf "$MD_URL/metrics" | grep '^hegel_http_requests_total' >&2
      fail "lab-m$i: the installed OS could not read its metadata from hegel ($MD_URL)"
    else
      left=1
    fi
  done
  [ $left = 1 ] || break
  [ $SECONDS -lt $end ] || fail "the installed OS did not read its metadata within 300 s:$(for i in $(seq 1 "$n"); do [ -n "${md_at[$i]:-}" ] || printf ' lab-m%s' "$i"; done)"
  sleep 0.2
done
for i in $(seq 1 "$n"); do
  ok=$(e2e_wait_os "$i" "$LAB_STATE/m$i/console.log" 0 "$MD_URL") || fail "lab-m$i: the installed OS"
  say "lab-m$i: $ok"
done
# ... and hegel (on the cluster) is who answered: at least hostname, an address and instance-id each.
hits=$(nsx curl -sf "$MD_URL/metrics" | awk '/^hegel_http_requests_total\{.*status="200"/ {n += $2} END {print n + 0}')
[ "$hits" -ge $((3 * n)) ] || fail "hegel answered $hits metadata reads with 200, expected at least $((3 * n))"

# --- the timeline, rebuilt from the processes' traces ------------------------------------------
for i in $(seq 1 "$n"); do
  kc get workflow "lab-m$i" -n "$NS" -o json > "$E/logs/workflow-m$i.json"
  python3 - "$i" "$LAB_STATE/m$i/console.log" "$E/logs/boots.log" "$E/logs/tink-server.log" \
    "$E/logs/workflow-m$i.json" "${md_at[$i]}" "$wf_created" \
    > "$E/logs/timeline-m$i.json" 2> "$E/logs/timeline-m$i.txt" <<'PY' || { cat "$E/logs/timeline-m$i.txt" >&2; fail "lab-m$i: rebuilding the timeline"; }
import datetime, json, re, sys
i, console, boots, server, wf, md_at, created = sys.argv[1:8]
name = f"lab-m{i}"
ev = []
def ns(ts):  # RFC 3339 (any fraction, Z) → unix nanoseconds
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z$", ts)
    base = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    return int(base.timestamp()) * 10**9 + int(((m.group(2) or "") + "000000000")[:9])
def add(at, phase, detail, source):
    ev.append({"at_unix_nanos": at, "phase": phase, "detail": detail, "source": source})
since = int(float(created) * 1e9)
ansi = re.compile(r"\x1b\[[0-9;]*m")
def lines(path):
    for line in open(path, errors="replace"):
        yield ansi.sub("", line.rstrip("\n"))
# power: the lab BMC hook's own lines (it starts/stops QEMU right after writing them)
for line in lines(console):
    m = re.match(r"=== lab: power (on|off) (\S+)(?: boot=(\S+))?", line)
    if m and ns(m.group(2)) >= since:
        add(ns(m.group(2)), "power-" + m.group(1), f"boot={m.group(3)}" if m.group(3) else "", "lab bmc hook")
# DHCP, TFTP, iPXE, HookOS downloads: boots' timeline records (debug log of tinkerbell_boots::record)
for line in lines(boots):
    m = re.match(r"(\S+Z)\s+DEBUG\s.*?tinkerbell_boots::record: timeline subject=(\S+) phase=(\S+) detail=(.*)$", line)
    if m and m.group(2).endswith("/" + name) and ns(m.group(1)) >= since:
        add(ns(m.group(1)), m.group(3), m.group(4).strip(), "boots")
# actions: tink-server's "action status" log lines (nanoseconds), named through the Workflow
# status (whose executionStart/Stop have whole seconds only: the fallback)
actions = [a for t in json.load(open(wf)).get("status", {}).get("tasks") or [] for a in t.get("actions") or []]
names = {a.get("id"): a["name"] for a in actions}
reports = []
for line in lines(server):
    m = re.match(r'(\S+Z)\s+INFO\s.*action status workflow=\S+/' + re.escape(name) + r' action=action id "([^"]+)" state=(\S+)', line)
    if m and m.group(2) in names:
        reports.append((ns(m.group(1)), names[m.group(2)], m.group(3)))
if not reports:
    print("(no tink-server action lines: action times from the Workflow status, whole seconds)", file=sys.stderr)
    for a in actions:
        if a.get("executionStart"):
            reports.append((ns(a["executionStart"]), a["name"], "RUNNING"))
        if a.get("executionStop"):
            reports.append((ns(a["executionStop"]), a["name"], a.get("state")))
    reports.sort(key=lambda r: r[0])
for k, (at, action, state) in enumerate(reports):
    if k == 0:  # the worker reports its first action right after it connected and got it
        add(at, "worker-connected", f"first report: {action} {state}", "tink-server")
    if state == "RUNNING":
        add(at, "action-started", action, "tink-server")
    else:
        add(at, "action-finished", f"{action}: {state}", "tink-server")
        if action == "reboot" and state == "SUCCESS":
            add(at, "reboot", action, "tink-server")
add(int(float(md_at) * 1e9), "metadata-read", "E2E-OK seen on the installed OS's console", "console")
ev.sort(key=lambda e: e["at_unix_nanos"])  # stable: equal stamps keep the order added
t0 = ev[0]["at_unix_nanos"] if ev else 0
for e in ev:
    print(f"{(e['at_unix_nanos'] - t0) / 1e9:8.2f} s  {e['phase']:<18} {e['source']:<13} {e['detail']}", file=sys.stderr)
json.dump(ev, sys.stdout, indent=1)
PY
  echo "e2e-kube: lab-m$i timeline (rebuilt: power = lab BMC hook, DHCP..initramfs = boots, actions = tink-server, metadata = console):"
  sed 's/^/  /' "$E/logs/timeline-m$i.txt"
  e2e_check_timeline "$E/logs/timeline-m$i.json" "lab-m$i" "$([ $((i % 2)) = 1 ] && echo bios || echo uefi)"
done

cpu() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.1f", ($14 + $15) / hz}' "/proc/$1/stat"; }
for i in $(seq 1 "$n"); do
  echo "e2e-kube: lab-m$i cpu qemu $(cpu "$(cat "$LAB_STATE/m$i/qemu.pid")") s"
done
line="e2e-kube: cpu"
for s in "${services[@]}"; do line="$line $s $(cpu "${pid[$s]}") s,"; done
echo "$line kube-apiserver $(cpu "$(cat "$E/kube/apiserver.pid")") s, etcd $(cpu "$(cat "$E/kube/etcd.pid")") s"
say "PASS ($n machines, store in kube-apiserver, services on --backend kube)"
