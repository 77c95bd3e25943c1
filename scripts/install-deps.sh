#!/usr/bin/env bash
# Installs the real peers and tools the tests use, from Debian's packages and PyPI.
# Idempotent; needs root. Called by .ci/run and by scripts/test.sh when run as root.
set -euo pipefail

# Debian packages, one per line with the reason.
apt_packages=(
  bc            # bench/ arithmetic
)

# PyPI packages.
pip_packages=(
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
