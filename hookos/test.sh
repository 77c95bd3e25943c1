#!/usr/bin/env bash
# HookOS boot test: builds the image and boots it in QEMU (TCG) with -kernel/-initrd/-append
# (no PXE), twice in parallel inside a private network namespace:
#
#  vm1  DHCP + worker: two NICs (a virtio-net decoy first, the e1000 named by hw_addr second).
#       A busybox udhcpd in the namespace has a static lease for the e1000's MAC only, so
#       getting that address proves the init picked the NIC by MAC. Asserts: the lease, a log
#       line at the test's syslog listener from that address, the worker's environment
#       (hookos/tests/env-worker.sh prints it and exits 3) and that the worker is restarted.
#  vm2  static ipam= on a VLAN, built without a worker: asserts the VLAN interface and
#       address, syslog over the VLAN, and the clear "no worker binary" message.
#
# Needs root, /dev/net/tun, qemu-system-x86_64, busybox and python3 (scripts/install-deps.sh).
# When one is missing it fails if CI is set and skips otherwise. Artifacts (consoles, syslog,
# udhcpd log) stay in target/hookos-test/ — always, so a failure can be read afterwards.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
W="$repo/target/hookos-test"
T0=$(date +%s.%N)
el() { awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'; }
say() { echo "[hookos-test $(el) s] $*"; }

missing=""
[ "$(id -u)" = 0 ] || missing="$missing root"
[ -c /dev/net/tun ] || missing="$missing /dev/net/tun"
for t in qemu-system-x86_64 busybox python3 ip zstd cpio depmod; do command -v $t >/dev/null || missing="$missing $t"; done
if [ -n "$missing" ]; then
  if [ -n "${CI:-}" ]; then echo "hookos/test.sh: FAIL: missing$missing (scripts/install-deps.sh installs them)" >&2; exit 1; fi
  echo "hookos/test.sh: SKIP: missing$missing (run scripts/install-deps.sh as root)"; exit 0
fi

rm -rf "$W"; mkdir -p "$W"
NS="hookos-t$$"
PIDFILES=()
cleanup() {
  local rc=$?
  for f in "${PIDFILES[@]}"; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done
  # Whatever still runs in our namespace is ours (and would keep it alive after `ip netns del`).
  local pids
  pids=$(ip netns pids "$NS" 2>/dev/null || true)
  [ -z "$pids" ] || kill $pids 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
  [ $rc = 0 ] || echo "hookos/test.sh: FAILED; consoles and logs are in $W" >&2
}
trap cleanup EXIT

# --- images --------------------------------------------------------------------------------------
"$here/build.sh" --out "$W/img-worker" --worker "$here/tests/env-worker.sh" > "$W/build1.log" 2>&1 \
  || { cat "$W/build1.log"; exit 1; }
"$here/build.sh" --out "$W/img-noworker" --no-worker > "$W/build2.log" 2>&1 || { cat "$W/build2.log"; exit 1; }
say "images built ($(stat -c %s "$W/img-worker/initramfs-x86_64") bytes initramfs)"

# --- namespace: br0 (10.98.0.1/24) with tap1a/tap1b for vm1; tap2 for vm2 with a VLAN peer -----
# (the host kernel has no 802.1Q, so hookos/tests/vlan_peer.py plays 10.98.100.1 on VLAN 100)
ip netns add "$NS"
nsx() { ip netns exec "$NS" "$@"; }
ip -n "$NS" link set lo up
ip -n "$NS" link add br0 type bridge
ip -n "$NS" link set br0 type bridge stp_state 0 forward_delay 0
ip -n "$NS" addr add 10.98.0.1/24 dev br0
ip -n "$NS" link set br0 up
for t in tap1a tap1b tap2; do
  ip -n "$NS" tuntap add dev $t mode tap
  [ $t = tap2 ] || ip -n "$NS" link set $t master br0
  ip -n "$NS" link set $t up
done

MAC_DECOY=52:54:00:98:00:01
MAC_VM1=52:54:00:98:00:02
MAC_VM2=52:54:00:98:00:03
cat > "$W/udhcpd.conf" <<EOF
start 10.98.0.100
end 10.98.0.150
interface br0
lease_file $W/udhcpd.leases
pidfile $W/udhcpd.pid
static_lease $MAC_VM1 10.98.0.42
option subnet 255.255.255.0
option router 10.98.0.1
option dns 10.98.0.1
option lease 600
EOF
touch "$W/udhcpd.leases"
ip netns exec "$NS" busybox udhcpd -f "$W/udhcpd.conf" > "$W/udhcpd.log" 2>&1 &
echo $! > "$W/udhcpd.pid2"; PIDFILES+=("$W/udhcpd.pid2")  # $! is udhcpd itself (ip netns exec execs)

cat > "$W/syslog_listener.py" <<'EOF'
import socket, selectors, sys, time
out = open(sys.argv[1], "a", buffering=1)
sel = selectors.DefaultSelector()
for addr in sys.argv[2:]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, 514))
    sel.register(s, selectors.EVENT_READ)
print("listening", flush=True)
while True:
    for key, _ in sel.select():
        data, peer = key.fileobj.recvfrom(65535)
        out.write(f"{time.time():.3f} {peer[0]} {data.decode(errors='replace').rstrip()}\n")
EOF
: > "$W/syslog.log"
ip netns exec "$NS" python3 "$W/syslog_listener.py" "$W/syslog.log" 10.98.0.1 > "$W/syslog_listener.out" 2>&1 &
echo $! > "$W/syslog.pid"; PIDFILES+=("$W/syslog.pid")
ip netns exec "$NS" python3 "$here/tests/vlan_peer.py" tap2 100 10.98.100.1 "$W/syslog.log" > "$W/vlan_peer.out" 2>&1 &
echo $! > "$W/vlan_peer.pid"; PIDFILES+=("$W/vlan_peer.pid")

# poll <deadline-seconds> <description> <command...>: polls until the command succeeds.
poll() {
  local limit=$1 what=$2; shift 2
  local end=$((SECONDS + limit))
  until "$@"; do
    if [ $SECONDS -ge $end ]; then echo "hookos/test.sh: FAIL: timed out after ${limit}s waiting for: $what" >&2; return 1; fi
    sleep 0.2
  done
}
poll 10 "syslog listener" grep -q listening "$W/syslog_listener.out"
poll 10 "VLAN peer" grep -q listening "$W/vlan_peer.out"
poll 10 "udhcpd" test -s "$W/udhcpd.pid"
say "namespace $NS up"

# --- boot both VMs -----------------------------------------------------------------------------------
TOKEN="tok-$$-s3cret"
qemu() {
  local name=$1 img=$2 append=$3; shift 3
  : > "$W/console-$name.log"
  nsx qemu-system-x86_64 -accel tcg -cpu max -smp 1 -m 512 -nodefaults -display none \
    -serial "file:$W/console-$name.log" -monitor none -no-reboot \
    -kernel "$img/vmlinuz-x86_64" -initrd "$img/initramfs-x86_64" -append "$append" \
    -pidfile "$W/qemu-$name.pid" -daemonize "$@" 2> "$W/qemu-$name.err"
  PIDFILES+=("$W/qemu-$name.pid")
}
qemu vm1 "$W/img-worker" "console=ttyS0 quiet panic=-1 hw_addr=${MAC_VM1^^} worker_id=machine-1 grpc_authority=10.98.0.1:42113 syslog_host=10.98.0.1 tinkerbell_tls=false tinkerbell_insecure_tls=true worker_token=$TOKEN HTTP_PROXY=http://10.98.0.1:3128" \
  -netdev tap,id=n0,ifname=tap1a,script=no,downscript=no -device virtio-net-pci,netdev=n0,mac=$MAC_DECOY \
  -netdev tap,id=n1,ifname=tap1b,script=no,downscript=no -device e1000,netdev=n1,mac=$MAC_VM1
T_VM1=$SECONDS
qemu vm2 "$W/img-noworker" "console=ttyS0 quiet panic=-1 ipam=${MAC_VM2//:/-}:100:10.98.100.7:255.255.255.0:10.98.100.1:hook-two:10.98.100.1:lab.test: syslog_host=10.98.100.1" \
  -netdev tap,id=n0,ifname=tap2,script=no,downscript=no -device virtio-net-pci,netdev=n0,mac=$MAC_VM2
say "VMs started"

fail=0
check() {  # check <description> <command...>
  local what=$1; shift
  if "$@"; then echo "  ok: $what"; else echo "  FAIL: $what" >&2; fail=1; fi
}
c1="$W/console-vm1.log"; c2="$W/console-vm2.log"
# Fail fast on a dead end instead of waiting for the deadline.
dead() { grep -qaE "Kernel panic|ERROR:" "$1"; }
wait_for() {  # wait_for <console> <limit> <regex>
  local end=$((SECONDS + $2))
  until grep -qaE "$3" "$1"; do
    if dead "$1" || [ $SECONDS -ge $end ]; then
      echo "hookos/test.sh: FAIL: $1 never showed /$3/ (last lines:)" >&2; tail -n 15 "$1" >&2; return 1
    fi
    sleep 0.2
  done
}

wait_for "$c1" 150 'worker: starting .*\(attempt 1\)'
B2W=$((SECONDS - T_VM1))
UP=$(grep -a 'worker: starting .*(attempt 1)' "$c1" | sed -n 's/^hookos\[\([0-9.]*\)\].*/\1/p' | head -1)
say "vm1: worker started ${B2W}s after QEMU start (guest uptime ${UP}s)"
wait_for "$c1" 60 'worker: starting .*\(attempt 2\)'
wait_for "$c2" 150 'no worker binary'
poll 20 "syslog lines from vm2 over the VLAN" grep -q '^[0-9.]* 10\.98\.100\.7 .*hookos' "$W/syslog.log"
poll 20 "worker output at the syslog listener" grep -q '^[0-9.]* 10\.98\.0\.42 .*tink-worker.*ENV-WORKER' "$W/syslog.log"

echo "vm1 (DHCP, hw_addr picks the second NIC, worker):"
check "init found the NIC by hw_addr" grep -qaE "nic: eth[0-9] has hw_addr $MAC_VM1" "$c1"
check "the e1000 driver is loaded" grep -qaE "modules loaded: .*\be1000\b" "$c1"
check "DHCP lease is the static one for hw_addr's MAC" grep -qa "dhcp: eth[0-9] ip=10.98.0.42/24 router=10.98.0.1" "$c1"
check "a hookos log line reached syslog_host from 10.98.0.42" grep -q '^[0-9.]* 10\.98\.0\.42 .*hookos.*syslog started' "$W/syslog.log"
check "early (pre-network) lines were replayed to syslog" grep -q '^[0-9.]* 10\.98\.0\.42 .*hookos.*nic: eth[0-9] has hw_addr' "$W/syslog.log"
check "TINKERBELL_GRPC_AUTHORITY" grep -qa "ENV TINKERBELL_GRPC_AUTHORITY=10.98.0.1:42113" "$c1"
check "WORKER_ID" grep -qa "ENV WORKER_ID=machine-1" "$c1"
check "ID" grep -qa "ENV ID=machine-1" "$c1"
check "TINKERBELL_TLS" grep -qa "ENV TINKERBELL_TLS=false" "$c1"
check "TINKERBELL_INSECURE_TLS" grep -qa "ENV TINKERBELL_INSECURE_TLS=true" "$c1"
check "TINKERBELL_WORKER_TOKEN (length)" grep -qa "ENV TINKERBELL_WORKER_TOKEN.len=${#TOKEN}" "$c1"
check "HTTP_PROXY and http_proxy" grep -qa "ENV http_proxy=http://10.98.0.1:3128" "$c1"
check "the worker's exit is seen and it is restarted" grep -qa "worker: exited with status 3 after [0-9]*s; restarting in 1s" "$c1"
check "the token is never in HookOS's own console lines" bash -c "! grep -a '^hookos\[' '$c1' | grep -q '$TOKEN'"
check "the token never reaches syslog" bash -c "! grep -q '$TOKEN' '$W/syslog.log'"
echo "vm2 (ipam= on VLAN 100, no worker):"
check "VLAN interface" grep -qa "vlan: eth0.100 (id 100)" "$c2"
check "static address from ipam=" grep -qa "ipam: eth0.100 10.98.100.7/24 gateway 10.98.100.1 dns 10.98.100.1 hostname hook-two" "$c2"
check "hw_addr taken from ipam= when absent" grep -qa "nic: eth0 has hw_addr $MAC_VM2" "$c2"
check "clear message without a worker" grep -qa "ERROR: no worker binary at /usr/bin/tink-worker" "$c2"
check "that message also went to syslog over the VLAN" grep -q '^[0-9.]* 10\.98\.100\.7 .*no worker binary' "$W/syslog.log"

if [ $fail = 0 ]; then say "PASS (boot to worker ${B2W}s, guest uptime ${UP}s)"; else exit 1; fi
