#!/bin/bash
# The hand-made PXE baseline of reference/testbed.md recipe R3, kept verbatim apart from this
# header: dnsmasq (DHCP, TFTP, IPv6 RA) + a Python HTTP server + a busybox initramfs that
# streams a 64 MiB image to /dev/vda and powers off. bench/e2e.sh runs it beside the appliance.
# PXE-boot-to-disk-written end-to-end lab: netns + bridge + tap, dnsmasq (DHCP/TFTP/RA), python HTTP,
# QEMU (TCG) BIOS or UEFI node, busybox initramfs "worker" that DHCPs, streams an image to /dev/vda, reports, powers off.
# usage: ./lab-e2e.sh [bios|uefi|uefi-native|ipmi]...   (as root; packages: see recipe R1)
set -euo pipefail
MODES=("${@:-bios}")
W=${LAB_DIR:-$(mktemp -d -t lab-e2e.XXXX)}; NS=${LAB_NS:-lab-e2e}; IP=10.99.7.1; PORT=8080
mkdir -p "$W"/{http,tftp,initrd,kernel}; chmod 755 "$W"; cd "$W"   # dnsmasq serves TFTP as nobody
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; [ -f dnsmasq.pid ] && kill "$(cat dnsmasq.pid)" 2>/dev/null || true; ip netns del "$NS" 2>/dev/null || true; }
trap cleanup EXIT
t0=$(date +%s.%N); el() { printf '%6.2f' "$(echo "$(date +%s.%N) - $t0" | bc)"; }

# 1. kernel + modules from Debian's cloud kernel package
if [ ! -f kernel/vmlinuz ]; then
  KPKG=$(apt-cache depends linux-image-cloud-amd64 | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
  (cd kernel && apt-get download "$KPKG" >/dev/null 2>&1 && dpkg -x "$KPKG"_*.deb x && cp x/boot/vmlinuz-* vmlinuz)
fi
KMOD=$(echo "$W"/kernel/x/lib/modules/*/kernel)
echo "[$(el)] kernel ready"

# 2. initramfs: busybox-static + virtio modules + /init worker
R=initrd; mkdir -p $R/{bin,dev,proc,sys,tmp,mnt,lib/modules,usr/share/udhcpc}
cp /usr/bin/busybox $R/bin/busybox
for m in drivers/virtio/virtio.ko drivers/virtio/virtio_ring.ko drivers/virtio/virtio_pci_legacy_dev.ko \
         drivers/virtio/virtio_pci_modern_dev.ko drivers/virtio/virtio_pci.ko net/core/failover.ko \
         drivers/net/net_failover.ko drivers/net/virtio_net.ko drivers/block/virtio_blk.ko; do cp "$KMOD/$m" $R/lib/modules/; done
cat > $R/usr/share/udhcpc/default.script <<'EOF'
#!/bin/sh
case "$1" in
  deconfig) ip addr flush dev "$interface"; ip link set "$interface" up ;;
  bound|renew) ip addr flush dev "$interface"; ip addr add "$ip/${mask:-24}" dev "$interface"
    [ -n "$router" ] && ip route add default via ${router%% *} dev "$interface"; echo "$ip" > /tmp/dhcp.ip ;;
esac
exit 0
EOF
cat > $R/init <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin; export PATH=/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
up() { cut -d' ' -f1 /proc/uptime; }
echo "LABMARK init-start uptime=$(up)"
for pass in 1 2 3; do for m in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci failover net_failover virtio_net virtio_blk; do
  [ -e /sys/module/$m ] || insmod /lib/modules/$m.ko 2>/dev/null; done; done
for a in $(cat /proc/cmdline); do case $a in lab.url=*) URL=${a#lab.url=};; lab.report=*) REP=${a#lab.report=};; esac; done
i=0; while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
ip link set lo up; ip link set eth0 up
if udhcpc -i eth0 -q -n -t 10 -T 1 -s /usr/share/udhcpc/default.script >/dev/null 2>&1; then echo "LABMARK dhcp-ok ip=$(cat /tmp/dhcp.ip) uptime=$(up)"; else echo "LABMARK dhcp-FAIL"; fi
wget -q -O - "$URL" | dd of=/dev/vda bs=1M conv=fsync 2>/tmp/dd.log && echo "LABMARK disk-written $(tail -1 /tmp/dd.log) uptime=$(up)"
SUM=$(head -c "$(wget -q -O - "$URL.size")" /dev/vda | md5sum | cut -d' ' -f1); echo "LABMARK disk-md5 $SUM"
wget -q -O /dev/null "$REP?md5=$SUM&ip=$(cat /tmp/dhcp.ip)" && echo "LABMARK reported"
echo "LABMARK done uptime=$(up)"; sync; poweroff -f
EOF
chmod +x $R/init $R/usr/share/udhcpc/default.script
(cd $R && find . | cpio -o -H newc 2>/dev/null | gzip -1) > http/initrd.gz
cp kernel/vmlinuz http/vmlinuz
echo "[$(el)] initramfs built ($(stat -c %s http/initrd.gz) bytes)"

# 3. payload image (64 MiB ext4 made without mounting) + iPXE script + TFTP files
rm -f http/image.raw; truncate -s 64M http/image.raw; mkfs.ext4 -q -F -L labroot -d $R/usr http/image.raw
stat -c %s http/image.raw > http/image.raw.size; WANT=$(md5sum < http/image.raw | cut -d' ' -f1)
cat > http/boot.ipxe <<EOF
#!ipxe
echo LABMARK ipxe-script-loaded \${net0/mac} \${net0/ip} \${platform}
kernel http://$IP:$PORT/vmlinuz initrd=initrd.gz console=ttyS0 quiet panic=-1 lab.url=http://$IP:$PORT/image.raw lab.report=http://$IP:$PORT/done
initrd --name initrd.gz http://$IP:$PORT/initrd.gz
boot
EOF
cp /usr/lib/ipxe/undionly.kpxe /usr/lib/ipxe/snponly.efi tftp/
cat > dnsmasq.conf <<EOF
port=0
interface=br0
bind-interfaces
dhcp-range=10.99.7.100,10.99.7.200,255.255.255.0,1h
dhcp-range=::,constructor:br0,ra-only
enable-ra
dhcp-leasefile=$W/dnsmasq.leases
dhcp-authoritative
no-ping
log-dhcp
enable-tftp
tftp-root=$W/tftp
dhcp-match=set:ipxe,175
dhcp-match=set:bios,option:client-arch,0
dhcp-match=set:efi64,option:client-arch,7
dhcp-match=set:efi64,option:client-arch,9
dhcp-option=tag:ipxe,encap:175,176,1b
dhcp-boot=tag:ipxe,http://$IP:$PORT/boot.ipxe
dhcp-boot=tag:!ipxe,tag:bios,undionly.kpxe,,$IP
dhcp-boot=tag:!ipxe,tag:efi64,snponly.efi,,$IP
EOF
cat > labhttp.py <<'EOF'
import http.server, sys, os, time
from urllib.parse import urlparse
root, port, bind = sys.argv[1], int(sys.argv[2]), sys.argv[3]
class H(http.server.SimpleHTTPRequestHandler):
    def __init__(s, *a, **k): super().__init__(*a, directory=root, **k)
    def do_GET(s):
        u = urlparse(s.path)
        if u.path == "/done":
            open(os.path.join(root, "..", "done.log"), "a").write(f"{time.time():.3f} {s.client_address[0]} {u.query}\n")
            s.send_response(200); s.send_header("Content-Length", "0"); s.end_headers(); return
        super().do_GET()
http.server.ThreadingHTTPServer((bind, port), H).serve_forever()
EOF

# 4. network namespace: bridge + tap; services
ip netns del "$NS" 2>/dev/null || true
ip netns add "$NS"; ip -n "$NS" link set lo up
ip -n "$NS" link add br0 type bridge; ip -n "$NS" link set br0 type bridge stp_state 0 forward_delay 0
ip -n "$NS" addr add $IP/24 dev br0; ip -n "$NS" addr add fd99:7::1/64 dev br0 nodad; ip -n "$NS" link set br0 up
ip -n "$NS" tuntap add dev tap0 mode tap; ip -n "$NS" link set tap0 master br0; ip -n "$NS" link set tap0 up
ip netns exec "$NS" dnsmasq --conf-file="$W/dnsmasq.conf" --pid-file="$W/dnsmasq.pid" --log-facility="$W/dnsmasq.log"
ip netns exec "$NS" python3 labhttp.py "$W/http" $PORT $IP 2>http.log & PIDS+=($!)
ok=0; for i in $(seq 50); do ip netns exec "$NS" bash -c "exec 3<>/dev/tcp/$IP/$PORT" 2>/dev/null && { ok=1; break; }; sleep 0.1; done
[ $ok = 1 ] || { echo "HTTP server did not start"; cat http.log; exit 1; }
echo "[$(el)] lab up"

# 4b. optional virtual BMC (OpenIPMI ipmi_sim) whose chassis_control hook starts/stops the QEMU node
cat > chassis.sh <<EOF
#!/bin/bash
# ipmi_sim chassis_control hook: chassis.sh <mc> get|set [parm [val]]...
S=$W/bmc; mkdir -p \$S
running() { [ -f \$S/qemu.pid ] && kill -0 "\$(cat \$S/qemu.pid)" 2>/dev/null; }
start_vm() {
  running && return 0
  nb=2; db=1; [ "\$(cat \$S/boot 2>/dev/null)" = pxe ] && { nb=1; db=2; }
  qemu-system-x86_64 -accel tcg -cpu max -m 256 -nodefaults -display none -machine graphics=off -no-reboot -daemonize \\
    -pidfile \$S/qemu.pid -serial file:$W/console-ipmi.log -monitor none \\
    -netdev tap,id=n0,ifname=tap0,script=no,downscript=no -device virtio-net-pci,netdev=n0,mac=52:54:00:00:07:01,bootindex=\$nb \\
    -drive file=$W/disk.raw,format=raw,if=none,id=d0 -device virtio-blk-pci,drive=d0,bootindex=\$db 2>>\$S/qemu.err
}
stop_vm() { running && kill "\$(cat \$S/qemu.pid)"; for i in \$(seq 50); do running || break; sleep 0.1; done; rm -f \$S/qemu.pid; }
mc=\$1; op=\$2; shift 2; echo "\$(date +%T.%N) \$op \$*" >> \$S/chassis.log
case \$op in
  get) for p in "\$@"; do case \$p in
         power) running && echo power:1 || echo power:0 ;;
         boot) echo "boot:\$(cat \$S/boot 2>/dev/null || echo default)" ;;
         *) echo "bad parm \$p"; exit 1 ;; esac; done ;;
  set) while [ \$# -ge 2 ]; do p=\$1 v=\$2; shift 2; case \$p in
         power) if [ "\$v" = 1 ]; then start_vm; else stop_vm; fi ;;
         reset) stop_vm; start_vm ;;
         boot) echo "\$v" > \$S/boot ;;      # ipmi_sim passes none|pxe|default (bootdev disk -> default)
         shutdown) stop_vm ;;
         identify) ;;
         *) echo "bad parm \$p"; exit 1 ;; esac; done ;;
  *) echo "bad op \$op"; exit 1 ;;
esac
EOF
chmod +x chassis.sh
cat > lan.conf <<EOF
name "labbmc"
set_working_mc 0x20
  startlan 1
    addr 10.99.7.2 623
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin none md2 md5 straight
    guid a123456789abcdefa123456789abcdef
  endlan
  chassis_control "$W/chassis.sh 0x20"
  user 2 true "admin" "password" admin 10 none md2 md5 straight
EOF
cat > lab.emu <<EOF
mc_setbmc 0x20
mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr
sel_enable 0x20 1000 0x0a
mc_enable 0x20
EOF
if printf '%s\n' "${MODES[@]}" | grep -qx ipmi; then
  ip -n "$NS" addr add 10.99.7.2/24 dev br0
  mkdir -p bmc/state; ip netns exec "$NS" ipmi_sim -c lan.conf -f lab.emu -s bmc/state -n > bmc/ipmi_sim.log 2>&1 & PIDS+=($!)
  sleep 0.5
fi
IPMI="ip netns exec $NS ipmitool -I lanplus -C 3 -H 10.99.7.2 -U admin -P password"

# 5. boot nodes
FAIL=0
for MODE in "${MODES[@]}"; do
  rm -f disk.raw; truncate -s 128M disk.raw
  FW=(); ROM=""
  case $MODE in
    bios) ;;
    uefi|uefi-native) cp /usr/share/OVMF/OVMF_VARS_4M.fd vars.fd
      FW=(-machine q35 -drive if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd -drive if=pflash,format=raw,file="$W/vars.fd")
      [ $MODE = uefi-native ] && ROM=",romfile=" ;;   # no iPXE option ROM: OVMF PXE -> TFTP snponly.efi -> iPXE
  esac
  s=$(date +%s.%N)
  if [ $MODE = ipmi ]; then   # BMC-driven: bootdev pxe + power on, wait until the node powers itself off
    $IPMI chassis bootdev pxe >/dev/null; $IPMI chassis power on >/dev/null
    deadline=$((SECONDS + ${VM_TIMEOUT:-180}))
    sleep 1; until [ "$($IPMI chassis power status)" = "Chassis Power is off" ] || [ $SECONDS -ge $deadline ]; do sleep 1; done
    $IPMI chassis power off >/dev/null    # no-op when already off; stops the VM on timeout
  else
  : > "console-$MODE.log"
  ip netns exec "$NS" qemu-system-x86_64 -accel tcg -cpu max -smp 1 -m 256 "${FW[@]}" \
    -nodefaults -display none -machine graphics=off -serial "file:$W/console-$MODE.log" -monitor none -no-reboot \
    -netdev tap,id=n0,ifname=tap0,script=no,downscript=no \
    -device virtio-net-pci,netdev=n0,mac=52:54:00:00:07:01,bootindex=1$ROM \
    -drive file="$W/disk.raw",format=raw,if=none,id=d0 -device virtio-blk-pci,drive=d0,bootindex=2 \
    </dev/null 2>"console-$MODE.err" & QP=$!; PIDS+=($QP)
  deadline=$((SECONDS + ${VM_TIMEOUT:-180}))
  while kill -0 $QP 2>/dev/null; do     # watchdog: fail fast on known dead ends
    if grep -qaE "No bootable device|Kernel panic|LABMARK dhcp-FAIL|PXE-E|Boot Failed" "console-$MODE.log"; then kill $QP; break; fi
    [ $SECONDS -ge $deadline ] && { echo "timeout"; kill $QP; break; }
    sleep 0.5
  done
  wait $QP 2>/dev/null || true
  fi
  GOT=$(head -c "$(cat http/image.raw.size)" disk.raw | md5sum | cut -d' ' -f1)
  wall=$(echo "$(date +%s.%N) - $s" | bc)
  if [ "$GOT" = "$WANT" ] && grep -q "LABMARK disk-md5 $WANT" "console-$MODE.log"; then r=PASS; else r=FAIL; FAIL=1; fi
  echo "[$(el)] $MODE: $r in ${wall}s (disk md5 $GOT)"
done
exit $FAIL
