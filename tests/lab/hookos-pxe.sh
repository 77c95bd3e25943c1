#!/usr/bin/env bash
# HookOS over PXE in the lab, without the appliance: busybox udhcpd + busybox httpd stand in
# for boots inside the lab's namespace; the machines are powered on through their IPMI BMCs
# with boot device pxe and must reach HookOS's worker start. Prints power-on → worker per
# machine. A measurement and a check of HookOS + lab together, not a CI test (see README).
#
#   tests/lab/hookos-pxe.sh [--machines N]        (root; default 2: one BIOS, one UEFI)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
export LAB_STATE="$repo/target/lab-pxe"
L="$here/lab.sh"
n=2
[ "${1:-}" = --machines ] && n=$2

"$L" down --purge >/dev/null 2>&1 || true
mkdir -p "$LAB_STATE"
http="$repo/target/lab-pxe-http"
mkdir -p "$http"
"$repo/hookos/build.sh" --out "$http" --worker "$repo/hookos/tests/env-worker.sh" > "$http/build.log" 2>&1 \
  || { cat "$http/build.log"; exit 1; }
trap '"$L" down >/dev/null 2>&1 || true' EXIT
"$L" up --machines "$n" --no-redfish > /dev/null
# shellcheck disable=SC1091
. "$LAB_STATE/lab.env"
A=$LAB_APPLIANCE_IP

# The iPXE script boots' would serve, reduced to HookOS's contract. The old iPXE EFI ROM
# passes the initrd only by name, hence initrd=.
cat > "$http/boot.ipxe" <<EOF
#!ipxe
echo LAB ipxe-script \${net0/mac} \${net0/ip} \${platform}
kernel http://$A:8080/vmlinuz-x86_64 initrd=initramfs-x86_64 console=ttyS0 quiet panic=-1 hw_addr=\${net0/mac} worker_id=\${net0/mac} grpc_authority=$A:42113 syslog_host=$A tinkerbell_tls=false
initrd --name initramfs-x86_64 http://$A:8080/initramfs-x86_64
boot
EOF
{
  echo "start $LAB_NET.100"; echo "end $LAB_NET.199"; echo "interface br0"
  echo "lease_file $LAB_STATE/udhcpd.leases"; echo "pidfile $LAB_STATE/udhcpd.pid"
  echo "option subnet 255.255.255.0"; echo "option router $A"; echo "siaddr $A"
  echo "boot_file http://$A:8080/boot.ipxe"
  for i in $(seq 1 "$n"); do
    echo "static_lease $(grep "^lab-m$i," "$LAB_CSV" | cut -d, -f6) $LAB_NET.$((100 + i))"
  done
} > "$LAB_STATE/udhcpd.conf"
touch "$LAB_STATE/udhcpd.leases"
ip netns exec "$LAB_NS" busybox udhcpd -f "$LAB_STATE/udhcpd.conf" > "$LAB_STATE/udhcpd.log" 2>&1 &
ip netns exec "$LAB_NS" busybox httpd -f -p "$A:8080" -h "$http" > "$LAB_STATE/httpd.log" 2>&1 &

declare -A t_on
for i in $(seq 1 "$n"); do
  "$L" ipmi "m$i" chassis bootdev pxe > /dev/null
  "$L" ipmi "m$i" chassis power on > /dev/null
  t_on[$i]=$(date +%s.%N)
done
rc=0
for i in $(seq 1 "$n"); do
  c="$LAB_STATE/m$i/console.log"
  end=$((SECONDS + 240))
  until grep -qa "worker: starting" "$c"; do
    if [ $SECONDS -ge $end ] || grep -qaE "Kernel panic|No bootable device" "$c"; then
      echo "lab-m$i ($(cat "$LAB_STATE/m$i/firmware")): FAIL; console $c"; rc=1; continue 2
    fi
    sleep 0.2
  done
  t=$(awk -v a="${t_on[$i]}" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
  up=$(grep -a 'worker: starting' "$c" | head -1 | sed -n 's/^hookos\[\([0-9.]*\)\].*/\1/p')
  echo "lab-m$i ($(cat "$LAB_STATE/m$i/firmware")): power on -> worker started <= ${t} s (HookOS uptime ${up} s)"
done
exit $rc
