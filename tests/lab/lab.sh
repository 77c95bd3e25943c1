#!/usr/bin/env bash
# The QEMU + virtual-BMC lab: bare-metal machines for the appliance to provision.
#
#   tests/lab/lab.sh up [--machines N] [--firmware mixed|bios|uefi] [--memory MiB] [--disk SIZE]
#                       [--no-redfish]
#   tests/lab/lab.sh status | env | down [--purge]
#   tests/lab/lab.sh ipmi MACHINE ARGS...      # ipmitool lanplus against that machine's BMC
#
# `up` creates, under the state dir (LAB_STATE, default target/lab):
# * a network namespace (lab-<hash of the state dir>) with a bridge br0 at LAB_NET.1/24
#   (default 10.99.0.1; also fd99::1/64) — the address the appliance must listen on, inside
#   that namespace (`ip netns exec $LAB_NS ...`); the lab runs no DHCP/TFTP/HTTP of its own;
# * N machines, powered off: a tap on br0, a sparse raw disk (virtio), BIOS (SeaBIOS + the
#   iPXE NIC ROM) or UEFI (OVMF with its own vars file); odd machines BIOS, even UEFI in the
#   default "mixed" mode. Serial consoles are appended to m<i>/console.log across power cycles
#   (ttyS0: firmware, iPXE, the installed OS) and m<i>/console-ttyS1.log (ttyS1: HookOS, whose
#   kernel command line from boots says console=ttyS1 as upstream's does);
# * one virtual BMC per machine: OpenIPMI ipmi_sim at LAB_NET.(10+i):623 (IPMI 2.0 lanplus,
#   admin/password, cipher suite 3) whose chassis_control hook starts and stops the machine's
#   QEMU process: power on/off/cycle/reset/status and boot device pxe/disk;
# * Redfish (when sushy-emulator is installed, unless --no-redfish): one sushy-tools emulator
#   at LAB_NET.9:8000 (fake driver) whose systems lab-m<i> drive the same hooks through
#   tests/lab/redfish_notifier.py: ComputerSystem.Reset On/ForceOff/ForceRestart and
#   BootSourceOverrideTarget Pxe/Hdd. Its PowerState is sushy's own (changes apply lazily,
#   1-11 s later) and does not see a machine that powered itself off; IPMI does;
# * hardware.csv (EKS Anywhere columns) describing the machines and their IPMI BMCs.
#
# `down` kills every process in the namespace and the namespace itself (also after a crash:
# it works from the namespace and the pid files, not from a running `up`); the state dir stays
# for its logs unless --purge.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
STATE=${LAB_STATE:-$repo/target/lab}
mkdir -p "$STATE"
STATE=$(cd "$STATE" && pwd)
NS=${LAB_NS:-lab-$(echo -n "$STATE" | sha1sum | cut -c1-8)}
NET=${LAB_NET:-10.99.0}
APPLIANCE_IP=$NET.1
IPMI_USER=admin
IPMI_PASS=password
REDFISH_IP=$NET.9
REDFISH_PORT=8000

die() { echo "lab.sh: $*" >&2; exit 1; }
nsx() { ip netns exec "$NS" "$@"; }
have_ns() { ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$NS"; }

machine_count() { ls -d "$STATE"/m[0-9]* 2>/dev/null | wc -l; }
mac_of() { printf '52:54:00:99:%02x:%02x' "$(( $1 / 256 ))" "$(( $1 % 256 ))"; }

write_env() {
  cat > "$STATE/lab.env" <<EOF
LAB_STATE=$STATE
LAB_NS=$NS
LAB_BRIDGE=br0
LAB_APPLIANCE_IP=$APPLIANCE_IP
LAB_NET=$NET
LAB_MACHINES=$1
LAB_CSV=$STATE/hardware.csv
LAB_IPMI_USER=$IPMI_USER
LAB_IPMI_PASS=$IPMI_PASS
LAB_REDFISH_URL=$2
EOF
}

# The ipmi_sim chassis_control hook of one machine: <hook> <mc> get|set parm [val]...
write_hook() {
  local i=$1 dir=$2 fw=$3 mem=$4 mac
  mac=$(mac_of "$i")
  cat > "$dir/chassis.sh" <<EOF
#!/bin/bash
# ipmi_sim chassis_control hook for lab machine m$i ($fw): starts/stops its QEMU process.
D=$dir
running() { [ -f \$D/qemu.pid ] && kill -0 "\$(cat \$D/qemu.pid)" 2>/dev/null; }
start_vm() {
  running && return 0
  # boot: "pxe" (NIC first, then disk) or "default"/"none" (disk first, then NIC).
  local nb=2 db=1 order=()
  [ "\$(cat \$D/boot 2>/dev/null)" = pxe ] && { nb=1; db=2; }
  # IPMI's boot override without "persistent" is for the next boot only: this power-on
  # netboots, and a later guest reset (the worker's reboot action, the installed OS) boots the
  # default order again, as on a real server. QEMU keeps its start-up order across resets, so
  # the machine starts paused and qmp.py moves the NIC behind the disk before it runs; the
  # firmware sees the new order from the next reset on.
  if [ \$nb = 1 ] && [ ! -f \$D/boot.persistent ]; then order=(nic0=3 disk0=1 nic0=2); fi
  [ -f \$D/boot.persistent ] || echo default > \$D/boot
  # nic-rom (optional): the virtio-net option ROM; an empty file disables QEMU's iPXE ROM,
  # so UEFI boots through OVMF's own PXE client (DHCP + TFTP), as most real firmware does.
  local rom=""
  [ -f \$D/nic-rom ] && rom=",romfile=\$(cat \$D/nic-rom)"
  local fw=()
  if [ $fw = uefi ]; then
    fw=(-machine q35,graphics=off -drive if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd
        -drive if=pflash,format=raw,file=\$D/vars.fd)
  else
    fw=(-machine pc,graphics=off)
  fi
  echo "=== lab: power on \$(date -u +%FT%T.%NZ) boot=\$( [ \$nb = 1 ] && echo pxe || echo disk)" >> \$D/console.log
  qemu-system-x86_64 -name lab-m$i -accel tcg -cpu max -smp 1 -m $mem "\${fw[@]}" \\
    -nodefaults -display none -monitor none \\
    -chardev file,id=con0,path=\$D/console.log,append=on -serial chardev:con0 \\
    -chardev file,id=con1,path=\$D/console-ttyS1.log,append=on -serial chardev:con1 \\
    -netdev tap,id=n0,ifname=tap$i,script=no,downscript=no \\
    -device virtio-net-pci,id=nic0,netdev=n0,mac=$mac,bootindex=\$nb\$rom \\
    -drive file=\$D/disk.raw,format=raw,if=none,id=d0 -device virtio-blk-pci,id=disk0,drive=d0,bootindex=\$db \\
    -S -qmp unix:\$D/qmp.sock,server=on,wait=off \\
    -pidfile \$D/qemu.pid -daemonize 2>>\$D/qemu.err || return 1
  if ! python3 $here/qmp.py \$D/qmp.sock "\${order[@]}" 2>>\$D/qemu.err; then
    kill "\$(cat \$D/qemu.pid)" 2>/dev/null; rm -f \$D/qemu.pid; return 1
  fi
}
stop_vm() {
  running || { rm -f \$D/qemu.pid; return 0; }
  kill "\$(cat \$D/qemu.pid)"
  for _ in \$(seq 100); do running || break; sleep 0.05; done
  running && kill -9 "\$(cat \$D/qemu.pid)"
  rm -f \$D/qemu.pid
  echo "=== lab: power off \$(date -u +%FT%T.%NZ)" >> \$D/console.log
}
mc=\$1; op=\$2; shift 2
echo "\$(date -u +%T.%N) \$op \$*" >> \$D/chassis.log
case \$op in
  get) for p in "\$@"; do case \$p in
         power) running && echo power:1 || echo power:0 ;;
         boot) echo "boot:\$(cat \$D/boot 2>/dev/null || echo default)" ;;
         *) echo "bad parm \$p" >&2; exit 1 ;; esac; done ;;
  set) while [ \$# -ge 2 ]; do p=\$1 v=\$2; shift 2; case \$p in
         power) if [ "\$v" = 1 ]; then start_vm; else stop_vm; fi ;;
         reset) stop_vm; start_vm ;;
         boot) echo "\$v" > \$D/boot ;;   # none|pxe|default (ipmitool "bootdev disk" arrives as default)
         shutdown) stop_vm ;;
         identify) ;;
         *) echo "bad parm \$p" >&2; exit 1 ;; esac; done ;;
  *) echo "bad op \$op" >&2; exit 1 ;;
esac
EOF
  chmod +x "$dir/chassis.sh"
}

write_bmc() {
  local i=$1 dir=$2 ip=$3
  cat > "$dir/lan.conf" <<EOF
name "lab-m$i"
set_working_mc 0x20
  startlan 1
    addr $ip 623
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin none md2 md5 straight
    guid $(printf 'a1234567%024x' "$i")
  endlan
  chassis_control "$dir/chassis.sh 0x20"
  user 2 true "$IPMI_USER" "$IPMI_PASS" admin 10 none md2 md5 straight
EOF
  cat > "$dir/bmc.emu" <<'EOF'
mc_setbmc 0x20
mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr
sel_enable 0x20 1000 0x0a
mc_enable 0x20
EOF
}

cmd_up() {
  local n=2 fwmode=mixed mem=512 disk=2G redfish=1
  while [ $# -gt 0 ]; do
    case $1 in
      --machines) n=$2; shift 2 ;;
      --firmware) fwmode=$2; shift 2 ;;
      --memory) mem=$2; shift 2 ;;
      --disk) disk=$2; shift 2 ;;
      --no-redfish) redfish=0; shift ;;
      *) die "up: unknown argument $1" ;;
    esac
  done
  [ "$(id -u)" = 0 ] || die "needs root (network namespace, taps)"
  [ "$n" -ge 1 ] && [ "$n" -le 200 ] || die "--machines must be 1..200"
  for t in qemu-system-x86_64 ipmi_sim ipmitool; do command -v $t >/dev/null || die "$t is missing (scripts/install-deps.sh)"; done
  [ -f /usr/share/OVMF/OVMF_CODE_4M.fd ] || [ "$fwmode" = bios ] || die "OVMF is missing (scripts/install-deps.sh)"
  if have_ns; then die "lab $NS is already up (state $STATE); run: $0 down"; fi
  rm -rf "$STATE"/m[0-9]* "$STATE/hardware.csv" "$STATE/redfish"

  ip netns add "$NS"
  ip -n "$NS" link set lo up
  ip -n "$NS" link add br0 type bridge
  ip -n "$NS" link set br0 type bridge stp_state 0 forward_delay 0
  ip -n "$NS" addr add "$APPLIANCE_IP/24" dev br0
  ip -n "$NS" addr add fd99::1/64 dev br0 nodad
  ip -n "$NS" link set br0 up

  echo "hostname,ip_address,netmask,gateway,nameservers,mac,disk,labels,bmc_ip,bmc_username,bmc_password" > "$STATE/hardware.csv"
  local i dir fw bmc_ip
  for i in $(seq 1 "$n"); do
    dir="$STATE/m$i"; mkdir -p "$dir/bmc-state"
    case $fwmode in
      bios|uefi) fw=$fwmode ;;
      mixed) if [ $((i % 2)) = 1 ]; then fw=bios; else fw=uefi; fi ;;
      *) die "--firmware is mixed, bios or uefi" ;;
    esac
    echo "$fw" > "$dir/firmware"
    bmc_ip="$NET.$((10 + i))"
    truncate -s "$disk" "$dir/disk.raw"
    [ "$fw" = uefi ] && cp /usr/share/OVMF/OVMF_VARS_4M.fd "$dir/vars.fd"
    echo default > "$dir/boot"
    : > "$dir/console.log"
    : > "$dir/console-ttyS1.log"
    ip -n "$NS" tuntap add dev "tap$i" mode tap
    ip -n "$NS" link set "tap$i" master br0
    ip -n "$NS" link set "tap$i" up
    ip -n "$NS" addr add "$bmc_ip/24" dev br0
    write_hook "$i" "$dir" "$fw" "$mem"
    write_bmc "$i" "$dir" "$bmc_ip"
    ip netns exec "$NS" ipmi_sim -c "$dir/lan.conf" -f "$dir/bmc.emu" -s "$dir/bmc-state" -n > "$dir/ipmi_sim.log" 2>&1 &
    echo $! > "$dir/ipmi_sim.pid"
    echo "lab-m$i,$NET.$((100 + i)),255.255.255.0,$APPLIANCE_IP,$APPLIANCE_IP,$(mac_of "$i"),/dev/vda,type=worker|firmware=$fw,$bmc_ip,$IPMI_USER,$IPMI_PASS" >> "$STATE/hardware.csv"
  done
  local redfish_url=""
  if [ $redfish = 1 ] && command -v sushy-emulator >/dev/null; then
    start_redfish "$n"
    redfish_url="http://$REDFISH_IP:$REDFISH_PORT"
  fi
  write_env "$n" "$redfish_url"
  # Ready when every BMC answers.
  for i in $(seq 1 "$n"); do
    local end=$((SECONDS + 20))
    until ipmi "$i" chassis power status >/dev/null 2>&1; do
      [ $SECONDS -lt $end ] || die "BMC of m$i does not answer; see $STATE/m$i/ipmi_sim.log"
      sleep 0.1
    done
  done
  echo "lab $NS up: $n machines, state $STATE"
  echo "  appliance: run it inside the namespace (ip netns exec $NS ...) on $APPLIANCE_IP (br0)"
  echo "  inventory: $STATE/hardware.csv"
  [ -z "$redfish_url" ] || echo "  redfish:   $redfish_url/redfish/v1/Systems/<uuid> (see status)"
  echo "  variables: $STATE/lab.env"
}

system_uuid() { printf '00000000-0000-4000-8000-%012x' "$1"; }

start_redfish() {
  local n=$1 i systems=""
  mkdir -p "$STATE/redfish/state"
  for i in $(seq 1 "$n"); do
    systems="$systems    {'uuid': '$(system_uuid "$i")', 'name': 'lab-m$i', 'power_state': 'Off',
     'external_notifier': True, 'nics': [{'mac': '$(mac_of "$i")', 'ip': '$NET.$((100 + i))'}]},
"
  done
  cat > "$STATE/redfish/sushy.conf" <<END
SUSHY_EMULATOR_LISTEN_IP = '$REDFISH_IP'
SUSHY_EMULATOR_LISTEN_PORT = $REDFISH_PORT
SUSHY_EMULATOR_FAKE_DRIVER = True
SUSHY_EMULATOR_STATE_DIR = '$STATE/redfish/state'
SUSHY_EMULATOR_FAKE_SYSTEMS = [
$systems]
EXTERNAL_NOTIFICATION_URL = 'http://127.0.0.1:9999/notify'
END
  ip -n "$NS" addr add "$REDFISH_IP/24" dev br0
  ip netns exec "$NS" python3 "$here/redfish_notifier.py" "$STATE" 127.0.0.1 9999 > "$STATE/redfish/notifier.err" 2>&1 &
  echo $! > "$STATE/redfish/notifier.pid"
  ip netns exec "$NS" sushy-emulator --config "$STATE/redfish/sushy.conf" > "$STATE/redfish/sushy.log" 2>&1 &
  echo $! > "$STATE/redfish/sushy.pid"
  local end=$((SECONDS + 30))
  until nsx curl -sf -o /dev/null "http://$REDFISH_IP:$REDFISH_PORT/redfish/v1/Systems"; do
    [ $SECONDS -lt $end ] || die "sushy-emulator does not answer; see $STATE/redfish/sushy.log"
    sleep 0.2
  done
}

ipmi() {
  local i=${1#lab-}; i=${i#m}; shift
  nsx ipmitool -I lanplus -C 3 -H "$NET.$((10 + i))" -U "$IPMI_USER" -P "$IPMI_PASS" "$@"
}

cmd_status() {
  if ! have_ns; then echo "lab $NS: down (state $STATE)"; return 3; fi
  echo "lab $NS: up (state $STATE, appliance address $APPLIANCE_IP)"
  local dir i p bmc power
  for dir in "$STATE"/m[0-9]*; do
    i=${dir##*/m}
    p="off"; [ -f "$dir/qemu.pid" ] && kill -0 "$(cat "$dir/qemu.pid")" 2>/dev/null && p="on (qemu pid $(cat "$dir/qemu.pid"))"
    bmc="down"; [ -f "$dir/ipmi_sim.pid" ] && kill -0 "$(cat "$dir/ipmi_sim.pid")" 2>/dev/null && bmc="$NET.$((10 + i)):623"
    printf '  lab-m%s  %-4s mac %s  bmc %s  power %s  boot %s  console %s\n' "$i" "$(cat "$dir/firmware")" \
      "$(mac_of "$i")" "$bmc" "$p" "$(cat "$dir/boot")" "$dir/console.log"
    if [ -f "$STATE/redfish/sushy.pid" ]; then
      echo "          redfish http://$REDFISH_IP:$REDFISH_PORT/redfish/v1/Systems/$(system_uuid "$i")"
    fi
  done
}

# Kills a process from a pid file if it still is the process we started (its command line
# names the state dir), so a recycled pid is never hit.
kill_pidfile() {
  local f=$1 pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  if [ -n "$pid" ] && tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF "$STATE"; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

cmd_down() {
  local purge=0
  [ "${1:-}" = --purge ] && purge=1
  local f
  for f in "$STATE"/m[0-9]*/qemu.pid "$STATE"/m[0-9]*/ipmi_sim.pid "$STATE"/redfish/*.pid; do [ -e "$f" ] && kill_pidfile "$f"; done
  if have_ns; then
    # Anything else still running in our namespace (an appliance the e2e test started, a hook
    # mid-flight) belongs to this lab.
    local pids
    pids=$(ip netns pids "$NS" 2>/dev/null || true)
    [ -n "$pids" ] && kill $pids 2>/dev/null || true
    for _ in $(seq 40); do [ -z "$(ip netns pids "$NS" 2>/dev/null)" ] && break; sleep 0.05; done
    pids=$(ip netns pids "$NS" 2>/dev/null || true)
    [ -n "$pids" ] && kill -9 $pids 2>/dev/null || true
    ip netns del "$NS"
  fi
  if [ $purge = 1 ]; then rm -rf "$STATE"; echo "lab $NS down; state removed"; else echo "lab $NS down; logs kept in $STATE"; fi
}

case ${1:-} in
  up) shift; cmd_up "$@" ;;
  down) shift; cmd_down "$@" ;;
  status) cmd_status ;;
  env) [ -f "$STATE/lab.env" ] || die "no lab in $STATE"; cat "$STATE/lab.env" ;;
  ipmi) shift; [ $# -ge 2 ] || die "usage: $0 ipmi MACHINE ARGS..."; ipmi "$@" ;;
  *) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
