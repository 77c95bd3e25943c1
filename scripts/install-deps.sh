#!/usr/bin/env bash
# Installs the real peers and tools the tests use, from Debian's packages and PyPI, and builds
# the Kubernetes control plane and helm from the Go module proxy (tests/kube/kube.sh build).
# Idempotent; needs root. Called by .ci/run and by scripts/test.sh when run as root.
set -euo pipefail

# Debian packages, one per line with the reason.
apt_packages=(
  bc               # bench/ arithmetic
  curl             # tests/lab Redfish requests; curl tftp:// in the boots TFTP tests; bench baselines
  openipmi         # ipmi_sim: the IPMI BMC the rufio tests drive
  ipmitool         # bench/rufio.sh baseline; session checks by hand
  openssl          # self-signed certificates for the Redfish and gRPC TLS tests
  iproute2         # network namespaces for the real-peer tests
  cloud-init       # hegel's real peer (services/hegel/tests/cloud_init.rs; Debian's python3)
  wrk              # bench/hegel.sh load generator
  nginx            # bench/hegel.sh, bench/http.sh reference server (run by hand, never as a service)
  busybox-static   # hookos initramfs userland; udhcpc/udhcpd in the boots and hookos tests; cexec chroot
  cpio             # hookos/build.sh: packs the initramfs
  kmod             # hookos/build.sh: depmod for the initramfs' modules
  zstd             # hookos/build.sh; bench/image2disk.sh
  xz-utils         # bench/image2disk.sh
  ipxe             # boots: the iPXE binaries it serves by default (/usr/lib/ipxe)
  ipxe-qemu        # QEMU NIC option ROMs (boots QEMU test, tests/lab)
  ovmf             # tests/lab: UEFI firmware
  tftp-hpa         # boots TFTP tests: the real client
  tftpd-hpa        # bench/tftp.sh reference server (in.tftpd run by hand, never as a service)
  isc-dhcp-client  # dhclient, a second DHCP client for manual checks
  kea-admin        # perfdhcp (services/boots/tests/netns.rs, bench/dhcp.sh)
  ndisc6           # rdisc6: the IPv6 Router Solicitation peer of the boots RA responder test
  kea-dhcp4-server # bench/dhcp.sh reference server (run in a namespace, never as a service)
  dnsmasq-base     # bench/dhcp.sh reference server (the binary only, no init script)
  e2fsprogs        # mkfs.ext4/debugfs: ext4 partitions for the worker's writefile/archive2disk/cexec tests
  mount            # losetup: loop devices for the worker tests
  file             # deploy/images/build.sh: checks the binaries are statically linked
  util-linux       # deploy/images/test.sh: nsenter; logger for the syslog tests
  fdisk            # tests/lab/osimage.sh: sfdisk partitions the e2e test's bootable disk image
  dosfstools       # tests/lab/osimage.sh: mkfs.vfat for its boot partition
  mtools           # tests/lab/osimage.sh: copies files into that FAT image without mounting it
  syslinux         # tests/lab/osimage.sh: BIOS boot loader (installed into the image file, not the host)
  syslinux-common  # tests/lab/osimage.sh: mbr.bin and the ldlinux modules
  grub-efi-amd64-bin # tests/lab/osimage.sh: grub-mkstandalone's x86_64-efi modules (the host's boot is untouched)
  grub-common      # tests/lab/osimage.sh: grub-mkstandalone
  docker.io        # deploy/images/test.sh: the Docker engine (scripts/dockerd.sh starts its own dockerd)
  fuse-overlayfs   # scripts/dockerd.sh: storage driver where the kernel has no overlayfs
)

# Debian packages from bookworm-backports: QEMU 10 (bookworm's 7.2 would remove the preinstalled
# qemu-utils 10, see reference testbed.md R1). Used by the boots QEMU test, rufio's QEMU power
# test, hookos/test.sh and tests/lab.
bpo_packages=(
  qemu-system-x86 qemu-system-common qemu-system-data seabios
  qemu-utils # qemu-img: qcow2 fixtures for the worker's qemuimg2disk tests
)

# PyPI packages.
pip_packages=(
  sushy-tools                 # sushy-emulator: the Redfish BMC the rufio tests drive
  pyyaml                      # deploy/helm and deploy/images scripts
)

# Guard: never let a package install start a daemon (kea, dnsmasq, tftpd, nginx, ...) on the host.
if [ "$(id -u)" = 0 ] && [ ! -x /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
fi

missing=()
bpo_missing=()
for p in "${bpo_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || bpo_missing+=("$p/bookworm-backports")
done
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ] || [ "${#bpo_missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing Debian packages: ${missing[*]} ${bpo_missing[*]} — run: sudo $0" >&2
    exit 1
  fi
  bpo=/etc/apt/sources.list.d/bookworm-backports.sources
  if [ "${#bpo_missing[@]}" -gt 0 ] && [ ! -f "$bpo" ] \
    && ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
    mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      "${mirror:-http://deb.debian.org/debian}" > "$bpo"
  fi
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  # Backports first, in one transaction, so the preinstalled qemu-utils 10 is kept.
  if [ "${#bpo_missing[@]}" -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${bpo_missing[@]}" >/dev/null
  fi
  if [ "${#missing[@]}" -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
fi
if [ "${#pip_packages[@]}" -gt 0 ]; then
  python3 -m pip install -q --disable-pip-version-check "${pip_packages[@]}"
fi

# etcd, kube-apiserver, kubectl and helm, from the pins in tests/kube/go (cached by content).
"$(dirname "$0")/../tests/kube/kube.sh" build
