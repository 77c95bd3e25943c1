#!/usr/bin/env bash
# The test command: installs what the tests need (as root), then runs every test in the
# workspace, including the real-peer tests (network namespaces, emulators).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ]; then
  scripts/install-deps.sh
fi
# The static tink-worker in an empty root (services/tink/worker/tests/static_root.rs) needs the
# static release build that hookos/build.sh makes anyway (same flags and target, so it is built
# once) and root for `unshare --root`; elsewhere that test says SKIP.
if [ "$(id -u)" = 0 ]; then
  RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" cargo build -q --release --locked \
    -p tinkerbell-tink-worker --bin tink-worker --target x86_64-unknown-linux-gnu
  export TINK_WORKER_STATIC_BIN
  TINK_WORKER_STATIC_BIN="$(realpath "${CARGO_TARGET_DIR:-target}")/x86_64-unknown-linux-gnu/release/tink-worker"
fi
cargo test --workspace --locked "$@"
# The lab scripts below use the CLI cargo test just built (a `cargo build -p tinkerbell` would
# rebuild it with other unified features).
export TINKERBELL_BIN
TINKERBELL_BIN="$(realpath "${CARGO_TARGET_DIR:-target}")/debug/tinkerbell"
# HookOS: build the image and boot it in QEMU (needs root; fails under CI=true when it cannot run).
hookos/test.sh
# The QEMU + virtual-BMC lab harness (tests/lab/lab.sh): 2 machines driven over IPMI.
tests/lab/test.sh
# Netboot from `tinkerbell serve` alone (its DHCP, TFTP, iPXE HTTP, HookOS dir) in the lab:
# BIOS, UEFI, and UEFI with OVMF's own PXE over TFTP, to the HookOS downloads.
tests/lab/netboot.sh
# End to end: workflows with --netboot provision a BIOS and a UEFI lab machine (rufio power-on,
# PXE, HookOS, image2disk, writefile, reboot) and the installed OS reads its metadata.
tests/lab/e2e.sh
# Move, then provision from the target: appliance A provisions m1, `tinkerbell move` to appliance
# B in a second namespace on the same bridge (DHCP handoff watched by a probe), B provisions m1.
tests/lab/move.sh
# Helm chart: render (deploy/helm/render.py) and validate every object; generated files fresh.
python3 deploy/helm/test.py
# Container images: static build, OCI layout, docker run as users run them (needs Docker).
deploy/images/test.sh
