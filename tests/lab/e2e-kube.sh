#!/usr/bin/env bash
# The pivot as an EKS Anywhere user lives it, on the wire and with the store in a real
# kube-apiserver: the admin machine's appliance (`tinkerbell serve`, embedded store) provisions
# m1; `tinkerbell move` hands Hardware, bmc Machines and Secrets to the cluster while a DHCP
# probe watches m1's answers; the services on the cluster, each its own process on
# `--backend kube` as the Helm chart deploys them, provision m2 and re-provision m1; then the
# inventory moves back to the admin machine, under the probe again.
#
#   lab: m1 (BIOS), m2 (UEFI), ..., their BMCs (ipmi_sim) on the lab bridge
#   A, the admin machine: `tinkerbell serve` in the lab's namespace on LAB_NET.1 (every
#     service, DHCP on br0), hardware.csv imported; provisions m1 as tests/lab/e2e.sh does
#   K, the cluster's host: a second namespace on the bridge, LAB_NET.2, with etcd +
#     kube-apiserver (tests/kube/kube.sh up, on its loopback), the CRDs (deploy/crds,
#     server-side apply), and boots (DHCP on its eth0, TFTP, syslog, iPXE/HookOS HTTP on :7080,
#     RA), hegel (:50061), tink-server (:42113), tink-controller and rufio, each
#     `--backend kube --backend-kube-namespace default`; boots and tink-server share one
#     `--worker-token-key-file` (worker authentication on)
#   P, the probe's host: a third namespace on the bridge, LAB_NET.3, where
#     tests/lab/dhcp_probe.py broadcasts a DISCOVER for m1's MAC every 10 ms during each move:
#     never two answers to one DISCOVER, the old server never again once the new one answered
#   1. A provisions m1 (workflow create --netboot; A's rufio, DHCP, ..., metadata from A)
#   2. on K: tinkerbell move -A --from https://A:7081 --to kube:KUBECONFIG#default (probe A → K);
#      A's Hardware are marked moved-out, the cluster's released; then P asks the cluster's boots
#      for lab-m2's iPXE script and must get it without lab-m2's worker token
#   3. the Template and one Workflow per machine (what `tinkerbell workflow create --netboot`
#      writes) applied with kubectl; the controller makes the bmc Jobs, rufio powers the
#      machines on, ...; workflows watched with kubectl until SUCCESS; each installed OS must
#      print E2E-OK read from the cluster's hegel; A sent no DHCP reply meanwhile
#   4. on K: tinkerbell move -A --from kube:KUBECONFIG#default --to https://A:7081 (probe K → A)
#
#   tests/lab/e2e-kube.sh [--machines N]   (root; default 2: m1 BIOS, m2 UEFI)
#
# There is no `tinkerbell timeline` without serve (each standalone service keeps its own, in
# memory), so the script rebuilds each machine's timeline on the cluster from what the processes
# leave behind and checks it with e2e-lib.sh's e2e_check_timeline (same order checks as e2e.sh):
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
# (A's own provisioning of m1 is checked from A's timeline and printed as "e2e: A: ...").
# Consoles, every service's log, the control plane's logs, the probes' records, the
# Workflows/Jobs/Machines as YAML and the rebuilt timelines stay under target/e2e-kube/logs
# (E2E_KUBE_DIR) whatever the outcome.
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
rm -rf "$E/a" "$E/www" "$E/logs" "$E/kube" "$E/run"
mkdir -p "$E/a" "$E/www" "$E/logs" "$E/run"

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

# --- the lab, the admin machine A, the cluster's host K, the probe's host P ---------------------
NS=default                 # the Kubernetes namespace of every object and of every service
KC="$E/kube/kubeconfig"
KEY="$E/run/worker-token-key"
nsa() { ip netns exec "$LAB_NS" "$@"; }
nsk() { ip netns exec "$NK" "$@"; }
nsp() { ip netns exec "$NP" "$@"; }
kc() { nsk "$kbin/kubectl" --kubeconfig "$KC" "$@"; }
ta() { nsa "$cli" --data-dir "$E/a" "$@"; }
# A's store as another host reads it: its store API with its token.
ta_remote() { nsp "$cli" --server "https://$A:7081" --token-file "$E/a/api-token" --ca-file "$E/a/api-cert.pem" "$@"; }

declare -A pid          # service name → pid (the service itself: `ip netns exec` execs it)
pids=()                 # A's serve and artifact server, the probes
services=(boots hegel tink-server tink-controller rufio)
cleanup() {
  rc=$?
  set +e
  if [ -f "$KC" ] && [ -n "${NK:-}" ]; then
    for k in workflows templates hardware machines.bmc.tinkerbell.org jobs.bmc.tinkerbell.org tasks.bmc.tinkerbell.org; do
      kc get "$k" -n "$NS" -o yaml > "$E/logs/kube-$k.yaml" 2>&1
    done
  fi
  if [ -n "${LAB_NS:-}" ]; then
    ta timeline lab-m1 > "$E/logs/timeline-a.txt" 2>&1
    for i in $(seq 1 "$n"); do
      cp -f "$LAB_STATE/m$i/console.log" "$E/logs/console-m$i.log" 2>/dev/null
      [ -z "${pid[boots]:-}" ] || nsk curl -sf "http://$B:7080/tinkerbell/v1/logs/lab-m$i?namespace=$NS" > "$E/logs/syslog-m$i.json" 2>/dev/null
    done
  fi
  for s in "${!pid[@]}"; do kill "${pid[$s]}" 2>/dev/null; done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  for s in "${!pid[@]}"; do
    for _ in $(seq 50); do kill -0 "${pid[$s]}" 2>/dev/null || break; sleep 0.1; done
    kill -9 "${pid[$s]}" 2>/dev/null
  done
  cp -f "$E/kube/etcd.log" "$E/kube/apiserver.log" "$E/logs/" 2>/dev/null
  "$K" down "$E/kube" > /dev/null 2>&1
  for ns in "${NK:-}" "${NP:-}"; do
    [ -n "$ns" ] || continue
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
  done
  "$L" down > /dev/null 2>&1
  [ $rc = 0 ] || echo "e2e-kube: FAILED; consoles, service and control-plane logs, probes, objects and timelines are in $E/logs" >&2
  exit $rc
}
trap cleanup EXIT

say "lab up: $n machines"
"$L" up --machines "$n" --no-redfish > "$E/logs/lab-up.log" || { tail -20 "$E/logs/lab-up.log" >&2; fail "lab.sh up"; }
# shellcheck disable=SC1091
. "$LAB_STATE/lab.env"
A=$LAB_APPLIANCE_IP
B=$LAB_NET.2               # the cluster's host: apiserver (loopback), every service
P=$LAB_NET.3               # the probe's host
NK="$LAB_NS-k"
NP="$LAB_NS-p"
MD_URL="http://$B:50061"   # the cluster's hegel
MAC1=$(awk -F, '$1 == "lab-m1" {print $6}' "$LAB_CSV")
dhcp_sent_a() { nsa curl -sf "http://$A:7080/boots/metrics" | awk '/^boots_dhcp_sent_total/ {n += $2} END {print n + 0}'; }

# --- 1. the admin machine's appliance (embedded store) provisions m1 ----------------------------
e2e_serve "$E/a" "$A" br0 a nsa
say "appliance A up on $A (embedded store)"
e2e_provision_m1 "$E/a" "$A" A nsa

# --- the cluster: control plane and services on K ------------------------------------------------
e2e_attach "$NK" "$B" vk
e2e_attach "$NP" "$P" vp
say "control plane up on K ($NK, $B)"
nsk "$K" up "$E/kube" > "$E/logs/kube-up.log" 2>&1 || { cat "$E/logs/kube-up.log" >&2; fail "kube.sh up"; }
kc apply --server-side -f "$repo/deploy/crds/" > "$E/logs/crds.log"
kc wait --for condition=established --timeout 60s crd --all > /dev/null
say "$(tail -n1 "$E/logs/kube-up.log"); CRDs established"

openssl rand -hex 32 > "$KEY"; chmod 600 "$KEY"
kube=(--backend kube --backend-kube-config "$KC" --backend-kube-namespace "$NS")
start() { # NAME ARGS...: the service on K, its own empty data dir, log in logs/
  local name=$1; shift
  mkdir -p "$E/run/$name"
  NO_COLOR=1 ip netns exec "$NK" "$sbin/$name" "${kube[@]}" --data-dir "$E/run/$name" "$@" \
    > "$E/logs/$name.log" 2>&1 &
  pid[$name]=$!
}
alive() { # fails naming the first service that exited
  local s
  for s in "${services[@]}"; do
    kill -0 "${pid[$s]}" 2>/dev/null || { tail -20 "$E/logs/$s.log" >&2; fail "$s exited"; }
  done
}
start boots --bind-address "$B" --http-port 7080 \
  --dhcp-bind-interface eth0 --ipv6-ra-enabled \
  --tftp-server-bind-addr "$B" --syslog-bind-addr "$B" \
  --hookos-dir "$E/hookos" --tink-server-bind-port 42113 \
  --worker-token-key-file "$KEY" \
  --log-level info,tinkerbell_boots::record=debug
start hegel --http-addr "$B:50061"
start tink-server --tink-server-bind-addr "$B" --tink-server-bind-port 42113 --worker-token-key-file "$KEY"
start tink-controller
start rufio
ready() {
  nsk curl -sf -o /dev/null "http://$B:7080/boots/metrics" \
    && nsk curl -sf -o /dev/null "$MD_URL/healthz" \
    && nsk bash -c "exec 3<>/dev/tcp/$B/42113" 2> /dev/null
}
for _ in $(seq 300); do alive; ready && break; sleep 0.1; done
ready || fail "boots, hegel or tink-server not listening after 30 s"
sleep 1; alive
say "services up on K: boots $B:7080 (DHCP eth0, TFTP, syslog), hegel $MD_URL, tink-server $B:42113, tink-controller, rufio"
nsk python3 -m http.server 8090 --bind "$B" --directory "$E/www" > "$E/logs/www.log" 2>&1 &
pids+=($!)

# same KIND CLUSTER_KIND: A's and the cluster's KIND objects are the same set (namespace/name).
same() {
  local a k
  a=$(e2e_names ta_remote get "$1" -A -o json)
  k=$(e2e_names kc get "$2" -A -o json)
  [ -n "$a" ] && [ "$a" = "$k" ] || fail "$1 differs between A and the cluster: A [$a] cluster [$k]"
}
handoff_of() { # A|K NAME: the DHCP handoff annotation of Hardware NAME there
  case $1 in
    A) ta_remote get hw "$2" -o json | e2e_handoff ;;
    K) kc get hardware "$2" -n "$NS" -o json | e2e_handoff ;;
  esac
}

# pivot TAG FROM_SIDE TO_SIDE MOVE_ARGS...: `tinkerbell move -A MOVE_ARGS` on K while the probe
# on P watches lab-m1's DHCP go from FROM_SIDE to TO_SIDE (A or K); then both sides hold the same
# Hardware, Machines and Secrets, FROM_SIDE's marked moved-out, TO_SIDE's released.
pivot() {
  local tag=$1 from=$2 to=$3 ip_from ip_to i
  shift 3
  ip_from=$([ "$from" = A ] && echo "$A" || echo "$B")
  ip_to=$([ "$to" = A ] && echo "$A" || echo "$B")
  e2e_probe_start "$tag" "$MAC1" "$ip_from" "$ip_to" nsp
  nsk "$cli" move -A "$@" > "$E/logs/move-$tag.txt" 2> "$E/logs/move-$tag.err" \
    || { cat "$E/logs/move-$tag.err" >&2; fail "tinkerbell move ($tag)"; }
  e2e_probe_end "$tag"
  sed 's/^/  /' "$E/logs/move-$tag.txt"
  say "move $from → $to: DHCP handoff seen by the probe: $handoff"
  same hardware hardware; same machine machines.bmc.tinkerbell.org; same secret secrets
  for i in $(seq 1 "$n"); do
    [ "$(handoff_of "$from" "lab-m$i")" = moved-out ] || fail "$from's lab-m$i is not marked moved-out"
    [ "$(handoff_of "$to" "lab-m$i")" = none ] || fail "$to's lab-m$i still carries the handoff annotation"
  done
}

# --- 2. the move onto the cluster, under the probe -----------------------------------------------
[ -z "$(e2e_names kc get hardware -A -o json)" ] || fail "the cluster has Hardware before the move"
pivot in A K --from "https://$A:7081" --from-token-file "$E/a/api-token" --from-ca-file "$E/a/api-cert.pem" --to "kube:$KC#$NS"
sent_after_move=$(dhcp_sent_a)
say "moved: $(kc get hardware -n "$NS" --no-headers | wc -l) Hardware, $(kc get machines.bmc.tinkerbell.org -n "$NS" --no-headers | wc -l) bmc Machines and their Secrets; A's marked moved-out"

# A host on the wire that is not lab-m2 asks boots for lab-m2's script (lab-m2 may netboot:
# untouched since the import; lab-m1's allowPXE went off when A's workflow ended): it gets the
# script, not the machine's worker token (that goes to lab-m2's reserved address only; the
# provisioning below shows lab-m2 itself still gets one).
if [ "$n" -ge 2 ]; then
  MAC2=$(awk -F, '$1 == "lab-m2" {print $6}' "$LAB_CSV")
  script=$(nsp curl -sS "http://$B:7080/ipxe/script/$MAC2/auto.ipxe") || fail "P could not reach boots for lab-m2's iPXE script"
  case $script in
    *"hw_addr=$MAC2"*) ;;
    *) fail "P got no Hook script for lab-m2: $script" ;;
  esac
  case $script in
    *worker_token=*) fail "P ($P), not lab-m2, was handed lab-m2's worker token" ;;
  esac
  say "P ($P) fetched lab-m2's script without its worker token"
fi

# --- 3. the cluster provisions m2.. and re-provisions m1 -----------------------------------------
declare -A off            # console offset per machine: what the cluster's provisioning printed
for i in $(seq 1 "$n"); do off[$i]=$(stat -c %s "$LAB_STATE/m$i/console.log" 2>/dev/null || echo 0); done
e2e_template "$E/template.yaml" "http://$B:8090/os.raw.zst" "$MD_URL"
kc apply -f "$E/template.yaml" > /dev/null
# What `tinkerbell workflow create --template e2e --hardware lab-mI --netboot` writes
# (cli/src/workflow.rs): hardwareMap.device_1 = the Hardware's first MAC, bootOptions netboot.
for i in $(seq 1 "$n"); do
  mac=$(kc get hardware "lab-m$i" -n "$NS" -o jsonpath='{.spec.interfaces[0].dhcp.mac}')
  [ -n "$mac" ] || fail "Hardware lab-m$i has no MAC"
  cat > "$E/workflow-m$i.yaml" <<EOW
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
EOW
done
wf_created=$(date +%s.%N)   # the timelines start here (before: the controller and rufio are quick)
for i in $(seq 1 "$n"); do kc create -f "$E/workflow-m$i.yaml" > /dev/null; done
say "workflows created on the cluster; tink-controller makes the bmc Jobs, rufio powers the machines on"

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
    c=$(tail -c +$((off[$i] + 1)) "$LAB_STATE/m$i/console.log")
    if grep -qa "e2e-os\[.*\(E2E-OK\|ERROR\)" <<< "$c"; then
      md_at[$i]=$(date +%s.%N)
    elif grep -qa "e2e-os\[.*metadata not readable yet.*(attempt 10)" <<< "$c"; then
      grep -a "e2e-os\[" <<< "$c" | tail -3 >&2
      nsk curl -sf "$MD_URL/metrics" | grep '^hegel_http_requests_total' >&2
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
  ok=$(e2e_wait_os "$i" "$LAB_STATE/m$i/console.log" "${off[$i]}" "$MD_URL") || fail "lab-m$i: the installed OS"
  say "lab-m$i: $ok"
done
# ... and hegel (on the cluster) is who answered: at least hostname, an address and instance-id each.
hits=$(nsk curl -sf "$MD_URL/metrics" | awk '/^hegel_http_requests_total\{.*status="200"/ {n += $2} END {print n + 0}')
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

# --- A stayed silent; 4. the move back to the admin machine, under the probe ---------------------
sent=$(dhcp_sent_a)
[ "$sent" = "$sent_after_move" ] || fail "A's boots sent $((sent - sent_after_move)) DHCP replies after the move to the cluster"
say "A sent no DHCP reply while the cluster provisioned"
pivot out K A --from "kube:$KC#$NS" --to "https://$A:7081" --to-token-file "$E/a/api-token" --to-ca-file "$E/a/api-cert.pem"
say "PASS ($n machines: A provisioned lab-m1, moved to kube-apiserver, the services on --backend kube provisioned all, moved back)"
