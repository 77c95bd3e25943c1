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
  ipxe          # boots: the iPXE binaries it serves by default (/usr/lib/ipxe/{undionly.kpxe,ipxe.efi,snponly.efi})
  ipxe-qemu     # boots QEMU test: the NIC option ROMs (/usr/lib/ipxe/qemu/*.rom)
  tftp-hpa      # boots TFTP tests: the real client
  tftpd-hpa     # bench/tftp.sh reference server (in.tftpd run by hand on loopback, not as a service)
  curl          # boots TFTP tests: curl tftp:// with --tftp-blksize
)

# From bookworm-backports (QEMU 10, so the preinstalled qemu-utils 10 is kept; bookworm's QEMU 7.2
# would remove it), for the boots QEMU network-boot test.
bpo_packages=(qemu-system-x86 qemu-system-common qemu-system-data seabios)

# PyPI packages.
pip_packages=(
  sushy-tools   # sushy-emulator: the Redfish BMC the rufio tests drive
)

# Never let a package install start a daemon (tftpd-hpa, nginx) on the host.
if [ "$(id -u)" = 0 ] && [ ! -x /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
fi

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
bpo_missing=()
for p in "${bpo_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || bpo_missing+=("$p/bookworm-backports")
done
if [ "${#bpo_missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing Debian packages: ${bpo_missing[*]} — run: sudo $0" >&2
    exit 1
  fi
  bpo=/etc/apt/sources.list.d/bookworm-backports.sources
  if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      "${mirror:-http://deb.debian.org/debian}" > "$bpo"
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${bpo_missing[@]}" >/dev/null
fi
if [ "${#pip_packages[@]}" -gt 0 ]; then
  python3 -m pip install -q --disable-pip-version-check "${pip_packages[@]}"
fi
