#!/usr/bin/env bash
# Installs the real peers and tools the tests use, from Debian's packages and PyPI.
# Idempotent; needs root. Called by .ci/run and by scripts/test.sh when run as root.
set -euo pipefail

# Debian packages, one per line with the reason.
apt_packages=(
  bc            # bench/ arithmetic
  openipmi      # ipmi_sim: the IPMI BMC the rufio tests drive
  ipmitool      # bench/rufio.sh baseline; session checks by hand
  openssl       # self-signed certificates for the Redfish TLS tests
  iproute2      # network namespaces for the real-peer tests
  cloud-init    # hegel's real peer (services/hegel/tests/cloud_init.rs; Debian's python3)
  wrk           # bench/hegel.sh load generator
  nginx         # bench/hegel.sh reference server (run by hand on loopback, not as a service)
  qemu-utils    # qemu-img: qcow2 fixtures for the worker's qemuimg2disk tests
  e2fsprogs     # mkfs.ext4 / debugfs: ext4 partitions for the worker's writefile/archive2disk/cexec tests
  mount         # losetup: loop devices for the worker tests
  busybox-static # a static shell inside the cexec test's chroot
  zstd          # bench/image2disk.sh compressor and baseline pipeline
  xz-utils      # bench/image2disk.sh
  curl          # bench/image2disk.sh baseline pipeline
)

# PyPI packages.
pip_packages=(
  sushy-tools   # sushy-emulator: the Redfish BMC the rufio tests drive
)

missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing Debian packages: ${missing[*]} — run: sudo $0" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ "${#pip_packages[@]}" -gt 0 ]; then
  python3 -m pip install -q --disable-pip-version-check "${pip_packages[@]}"
fi
