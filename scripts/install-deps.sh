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
  busybox-static   # udhcpc: the DHCP client of services/boots/tests/netns.rs
  isc-dhcp-client  # dhclient, a second DHCP client for manual checks
  kea-admin        # perfdhcp (services/boots/tests/netns.rs, bench/dhcp.sh)
  kea-dhcp4-server # bench/dhcp.sh reference server (run in a namespace, never as a service)
  dnsmasq-base     # bench/dhcp.sh reference server (the binary only, no init script)
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
  # Never let a package install start a daemon (kea, dnsmasq, nginx …) on the host's interfaces.
  if [ ! -x /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ "${#pip_packages[@]}" -gt 0 ]; then
  python3 -m pip install -q --disable-pip-version-check "${pip_packages[@]}"
fi
