# Shared by tests/lab/e2e.sh, move.sh and e2e-kube.sh (sourced, not run): the prerequisites, the
# builds (the CLI, HookOS with the static tink-worker, the installed OS image), the Template,
# the checks of an installed OS's console and of a machine's timeline, and for the scripts with
# more than one host on the wire: a namespace on the bridge, an appliance, lab-m1 provisioned
# by it, the DHCP handoff probe.
# The caller sets `here` (tests/lab), `repo` and `E` (its output directory) and `set -euo pipefail`.

# e2e_require NAME: every tool the lab tests need; missing ones fail under CI=true, skip otherwise.
e2e_require() {
  local missing="" t
  [ "$(id -u)" = 0 ] || missing="$missing root"
  [ -c /dev/net/tun ] || missing="$missing /dev/net/tun"
  for t in qemu-system-x86_64 ipmi_sim ipmitool sfdisk mkfs.vfat mcopy syslinux grub-mkstandalone zstd python3 openssl; do
    command -v $t >/dev/null || missing="$missing $t"
  done
  [ -f /usr/share/OVMF/OVMF_CODE_4M.fd ] || missing="$missing OVMF"
  if [ -n "$missing" ]; then
    if [ -n "${CI:-}" ]; then echo "$1: FAIL: missing$missing (scripts/install-deps.sh installs them)" >&2; exit 1; fi
    echo "$1: SKIP: missing$missing (run scripts/install-deps.sh as root)"; exit 0
  fi
}

# e2e_build: the CLI ($cli), HookOS ($E/hookos), the installed OS ($E/os/disk.raw, build id in
# $build_id) and its zstd image as an artifact server serves it ($E/www/os.raw.zst, $img_sha).
# TINKERBELL_BIN: a binary already built (scripts/test.sh passes cargo test's, which a
# `cargo build -p tinkerbell` would rebuild with other unified features). E2E_WORKER_BIN: a
# static tink-worker already built, for HookOS (default: hookos/build.sh builds one).
e2e_build() {
  if [ -n "${TINKERBELL_BIN:-}" ]; then
    cli=$TINKERBELL_BIN
    [ -x "$cli" ] || { echo "TINKERBELL_BIN=$cli is not an executable" >&2; exit 1; }
  else
    (cd "$repo" && cargo build -q --locked -p tinkerbell --bin tinkerbell)
    cli="${CARGO_TARGET_DIR:-$repo/target}/debug/tinkerbell"
  fi
  # HookOS as a user builds it: `tinkerbell hookos build` (hookos/build.sh, then every file its
  # SHA256SUMS lists, checked, into the directory).
  "$cli" hookos build --source "$repo" --dir "$E/hookos" -- ${E2E_WORKER_BIN:+--worker "$E2E_WORKER_BIN"} \
    > "$E/logs/hookos-build.log" 2>&1 \
    || { tail -20 "$E/logs/hookos-build.log"; exit 1; }
  "$repo/hookos/build.sh" --out "$E/os" --no-worker --overlay "$here/os" > "$E/logs/os-build.log" 2>&1 \
    || { tail -20 "$E/logs/os-build.log"; exit 1; }
  "$here/osimage.sh" --kernel "$E/os/vmlinuz-x86_64" --initrd "$E/os/initramfs-x86_64" --out "$E/os/disk.raw"
  build_id=$(grep -ao 'e2e_build=[0-9a-f]*' "$E/os/disk.raw" | head -n1 | cut -d= -f2)
  mkdir -p "$E/www"
  zstd -q -f -T0 "$E/os/disk.raw" -o "$E/www/os.raw.zst"
  img_sha=$(sha256sum < "$E/www/os.raw.zst" | cut -d' ' -f1)   # image2disk checks the file as served
}

# e2e_template FILE IMAGE_URL METADATA_URL: the Template "e2e": image2disk of IMAGE_URL (checked
# against $img_sha), writefile of METADATA_URL into the boot partition, reboot.
e2e_template() {
  cat > "$1" <<EOF
apiVersion: tinkerbell.org/v1alpha1
kind: Template
metadata:
  name: e2e
  namespace: default
spec:
  data: |
    version: "0.1"
    name: e2e
    global_timeout: 1200
    tasks:
      - name: provision
        worker: "{{.device_1}}"
        volumes:
          - /dev:/dev
        actions:
          - name: stream-image
            image: quay.io/tinkerbell/actions/image2disk:v1.0.0
            timeout: 300
            environment:
              DEST_DISK: {{ index .Hardware.Disks 0 }}
              IMG_URL: "$2"
              COMPRESSED: true
              IMG_SHA256: "$img_sha"
          - name: write-metadata-url
            image: quay.io/tinkerbell/actions/writefile:v1.0.0
            timeout: 60
            environment:
              DEST_DISK: {{ formatPartition ( index .Hardware.Disks 0 ) 1 }}
              FS_TYPE: vfat
              DEST_PATH: /tinkerbell/metadata-url
              CONTENTS: "$3"
              UID: 0
              GID: 0
              MODE: "0755"
              DIRMODE: "0755"
          - name: reboot
            image: quay.io/tinkerbell/actions/reboot:v1.0.0
            timeout: 60
EOF
}

# e2e_wait_os I CONSOLE OFFSET METADATA_URL [HOSTNAME]: waits (300 s) until the installed OS of
# lab-m<I> printed, after byte OFFSET of its console, E2E-OK with its own hostname (HOSTNAME,
# default lab-m<I>: its Hardware's name) and address; checks it booted the image of $build_id
# and read METADATA_URL from the writefile. Prints the E2E-OK line.
e2e_wait_os() {
  local i=$1 c=$2 off=$3 url=$4 host=${5:-lab-m$1} end=$((SECONDS + 300)) ok
  con() { tail -c +$((off + 1)) "$c"; }
  until con | grep -qa "e2e-os\[.*E2E-OK"; do
    if con | grep -qa "e2e-os\[.*ERROR"; then echo "lab-m$i: $(con | grep -a 'e2e-os\[.*ERROR' | tail -1)" >&2; return 1; fi
    if [ $SECONDS -ge $end ]; then
      echo "lab-m$i: the installed OS did not read its metadata within 300 s; its console (ttyS0):" >&2
      con | tail -c 3000 >&2
      echo "--- HookOS's console (ttyS1, ${c%/*}/console-ttyS1.log):" >&2
      tail -c 3000 "${c%/*}/console-ttyS1.log" >&2 2>/dev/null
      return 1
    fi
    sleep 1
  done
  ok=$(con | grep -a "e2e-os\[.*E2E-OK" | tail -n1 | tr -d '\r')
  con | grep -qa "e2e-os\[.*booted from disk:.*e2e_build=$build_id" \
    || { echo "lab-m$i: no 'booted from disk' line with build $build_id" >&2; return 1; }
  con | grep -qa "e2e-os\[.*writefile: metadata-url=$url" \
    || { echo "lab-m$i: writefile's metadata-url $url not seen" >&2; return 1; }
  case $ok in
    *"hostname=$host ipv4=$LAB_NET.$((100 + i)) "*) ;;
    *) echo "lab-m$i: wrong metadata: $ok" >&2; return 1 ;;
  esac
  echo "${ok#*E2E-OK }"
}

# e2e_check_timeline JSON NAME FIRMWARE [SINCE_UNIX_NANOS]: the events (from SINCE on) hold, in
# order, power-on, DHCP ack, iPXE script, kernel, initramfs, worker, image written, reboot and a
# metadata read, with no netboot between the reboot and the metadata read; prints "e2e: NAME FIRMWARE power-on→image-written X s power-on→metadata-read Y s".
e2e_check_timeline() {
  python3 - "$1" "$2" "$3" "${4:-0}" <<'PY'
import json, sys
name, fw, since = sys.argv[2], sys.argv[3], int(sys.argv[4])
events = [e for e in json.load(open(sys.argv[1])) if e["at_unix_nanos"] >= since]
phases = [e["phase"] for e in events]
def first(p, after=0, detail=None):
    for k in range(after, len(events)):
        if events[k]["phase"] == p and (detail is None or detail in events[k]["detail"]):
            return k
    sys.exit(f"e2e: {name}: no {p}{' ' + detail if detail else ''} in the timeline after event {after}: {phases}")
on = first("power-on")
order = [on]
for p in ["dhcp-ack", "ipxe-script", "kernel", "initramfs", "worker-connected"]:
    order.append(first(p, order[-1]))
written = first("action-finished", order[-1], "stream-image: SUCCESS")
reboot = first("reboot", written)
md = first("metadata-read", reboot)
# The netboot was a one-time boot override: after the reboot the firmware boots the disk
# without trying the network first (no boot file handed out, nothing fetched).
netboot = [events[k] for k in range(reboot, md)
           if events[k]["phase"] in ("tftp", "ipxe-binary", "ipxe-script", "kernel", "initramfs")
           or (events[k]["phase"].startswith("dhcp-") and "boot file" in events[k]["detail"])]
if netboot:
    sys.exit(f"e2e: {name}: netbooted again after the reboot: {netboot}")
t = lambda k: (events[k]["at_unix_nanos"] - events[on]["at_unix_nanos"]) / 1e9
print(f"e2e: {name} {fw} power-on→image-written {t(written):.1f} s power-on→metadata-read {t(md):.1f} s")
PY
}

# e2e_attach NS IP PORT: a network namespace NS with one veth (eth0, IP/24), the other end PORT a
# port of the lab bridge: a second host on the lab's wire.
e2e_attach() {
  local ns=$1 ip=$2 port=$3
  ip netns del "$ns" 2>/dev/null || true
  ip netns add "$ns"
  ip -n "$LAB_NS" link add "$port" type veth peer name eth0 netns "$ns"
  ip -n "$LAB_NS" link set "$port" master br0 up
  ip -n "$ns" addr add "$ip/24" dev eth0
  ip -n "$ns" link set eth0 up
  ip -n "$ns" link set lo up
}

# e2e_serve DIR IP IFACE LOG NSX...: one appliance (`tinkerbell serve`, embedded store in DIR,
# every service, DHCP on IFACE only, HookOS from $E/hookos) on IP and an artifact server for
# $E/www on IP:8090, both run through NSX (e.g. `ip netns exec NS`); their pids are appended to
# the caller's `pids` array, their logs go to $E/logs/{serve,www}-LOG.log. Waits until it serves.
e2e_serve() {
  local dir=$1 ip=$2 ifc=$3 log=$4
  shift 4
  "$@" python3 -m http.server 8090 --bind "$ip" --directory "$E/www" > "$E/logs/www-$log.log" 2>&1 &
  pids+=($!)
  e2e_store_cert "$E/tls-$log" "$ip"
  "$@" "$cli" --data-dir "$dir" serve \
    --bind-address "$ip" --http-port 7080 --store-api-addr "$ip:7081" \
    --store-api-tls-cert-file "$E/tls-$log/cert.pem" --store-api-tls-key-file "$E/tls-$log/key.pem" \
    --dhcp-enabled --dhcp-bind-interface "$ifc" \
    --tftp-enabled --syslog-enabled --ipv6-ra-enabled \
    --hookos-dir "$E/hookos" \
    > "$E/logs/serve-$log.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 300); do [ -f "$dir/http-url" ] && [ -f "$dir/tink-grpc-url" ] && break; sleep 0.1; done
  [ -f "$dir/http-url" ] || { cat "$E/logs/serve-$log.log" >&2; echo "appliance $log did not start" >&2; exit 1; }
}

# e2e_store_cert DIR IP: a self-signed certificate for a store API on IP (DIR/cert.pem,
# DIR/key.pem). Off loopback the store API serves HTTPS; clients on the appliance's data dir
# trust its api-cert.pem (a copy of cert.pem) as it is, others pass --ca-file DIR/api-cert.pem.
e2e_store_cert() {
  local dir=$1 ip=$2
  mkdir -p "$dir"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=tinkerbell store API $ip" -addext "subjectAltName=IP:$ip" \
    -keyout "$dir/key.pem" -out "$dir/cert.pem" 2> /dev/null
  chmod 600 "$dir/key.pem"
}

# e2e_names CMD...: namespace/name of every object in the JSON list CMD prints (`tinkerbell get
# KIND -A -o json`, `kubectl get KIND -A -o json`), sorted, on one line.
e2e_names() {
  "$@" | python3 -c 'import json,sys; print(" ".join(sorted(o["metadata"]["namespace"]+"/"+o["metadata"]["name"] for o in json.load(sys.stdin).get("items") or [])))'
}

# e2e_handoff JSON: the DHCP handoff annotation of the object `get -o json` printed into JSON
# ("none" without one).
e2e_handoff() {
  python3 -c 'import json,sys; print(json.load(sys.stdin)["metadata"].get("annotations",{}).get("move.tinkerbell.org/dhcp-handoff","none"))'
}

# e2e_probe_start TAG MAC FROM TO NSX...: tests/lab/dhcp_probe.py (run through NSX, on its eth0)
# broadcasts DISCOVERs for MAC and records who answers; returns once FROM has answered (start
# the move then). Files: $E/probe-TAG.{ready,stop}, $E/logs/probe-TAG.{log,json}.
e2e_probe_start() {
  local tag=$1 mac=$2 from=$3 to=$4
  shift 4
  rm -f "$E/probe-$tag.ready" "$E/probe-$tag.stop"
  "$@" python3 "$here/dhcp_probe.py" --iface eth0 --mac "$mac" --from-server "$from" --to-server "$to" \
    --ready-file "$E/probe-$tag.ready" --stop-file "$E/probe-$tag.stop" --json "$E/logs/probe-$tag.json" \
    > "$E/logs/probe-$tag.log" 2>&1 &
  probe_pid=$!
  pids+=($probe_pid)
  for _ in $(seq 100); do [ -f "$E/probe-$tag.ready" ] && break; kill -0 $probe_pid 2>/dev/null || break; sleep 0.1; done
  [ -f "$E/probe-$tag.ready" ] || { cat "$E/logs/probe-$tag.log" >&2; echo "$from does not answer the probe's DISCOVERs for $mac" >&2; exit 1; }
}

# e2e_probe_end TAG: stops the probe once the new server answered; fails when two servers
# answered one DISCOVER or the old one answered after the new one; sets $handoff to the probe's
# numbers. (Not in a subshell: it waits for the probe, a child of the caller's shell.)
e2e_probe_end() {
  touch "$E/probe-$1.stop"
  wait "$probe_pid" || { cat "$E/logs/probe-$1.log" >&2; echo "FAIL: DHCP handoff ($1)" >&2; exit 1; }
  handoff=$(grep '^dhcp_probe: [0-9]' "$E/logs/probe-$1.log" | sed 's/^dhcp_probe: //')
}

# e2e_provision_m1 DIR IP TAG NSX...: the appliance serving DIR on IP (e2e_serve) imports
# hardware.csv and provisions lab-m1 (BIOS) with `workflow create --netboot`: the workflow
# succeeds, the installed OS reads its metadata from http://IP:7080, and the appliance's own
# timeline passes e2e_check_timeline (printed as "e2e: TAG: ..."). Logs: $E/logs/*-TAG.*.
e2e_provision_m1() {
  local dir=$1 ip=$2 tag=$3 ok
  shift 3
  "$@" "$cli" --data-dir "$dir" hardware import --csv "$LAB_CSV" > "$E/logs/import-$tag.log"
  e2e_template "$E/template-$tag.yaml" "http://$ip:8090/os.raw.zst" "http://$ip:7080"
  "$@" "$cli" --data-dir "$dir" apply -f "$E/template-$tag.yaml" > /dev/null
  "$@" "$cli" --data-dir "$dir" workflow create --template e2e --hardware lab-m1 --netboot > /dev/null
  "$@" timeout 900 "$cli" --data-dir "$dir" workflow watch lab-m1 > "$E/logs/watch-$tag.log" 2>&1 \
    || { tail -5 "$E/logs/watch-$tag.log" >&2; echo "FAIL: $tag: the workflow for lab-m1 did not succeed" >&2; exit 1; }
  ok=$(e2e_wait_os 1 "$LAB_STATE/m1/console.log" 0 "http://$ip:7080") || { echo "FAIL: $tag: lab-m1's installed OS" >&2; exit 1; }
  echo "e2e: $tag: lab-m1: $ok"
  "$@" "$cli" --data-dir "$dir" timeline lab-m1 --json > "$E/logs/timeline-$tag.json"
  e2e_check_timeline "$E/logs/timeline-$tag.json" lab-m1 bios | sed "s/^e2e: /e2e: $tag: /"
}
