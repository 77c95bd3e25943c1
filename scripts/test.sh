#!/usr/bin/env bash
# The test command: installs what the tests need (as root), then runs every test in the
# workspace, including the real-peer tests (network namespaces, emulators).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" = 0 ]; then
  scripts/install-deps.sh
fi

# The real services the tests talk to, started here and stopped when this script exits:
# - a Docker engine (deploy/images/test.sh): scripts/dockerd.sh starts Debian's dockerd with its
#   own data root unless an engine already answers (needs root);
# - a Kubernetes control plane (etcd + kube-apiserver, TLS on loopback; tests/kube/kube.sh) that
#   every real-apiserver test uses, each in its own namespace, through TINKERBELL_TEST_KUBECONFIG.
started_docker=""
kube_dir=""
stop_services() {
  [ -z "$kube_dir" ] || tests/kube/kube.sh down "$kube_dir" || true
  [ -z "$started_docker" ] || scripts/dockerd.sh stop || true
}
trap stop_services EXIT
if [ "$(id -u)" = 0 ] && ! timeout 10 docker info >/dev/null 2>&1; then
  eval "export $(scripts/dockerd.sh start)"
  started_docker=1
fi
kube_dir=$(mktemp -d /tmp/tb-kube.XXXXXX)
if tests/kube/kube.sh up "$kube_dir"; then
  while IFS='=' read -r k v; do
    case "$k" in TINKERBELL_TEST_*) export "$k=$v" ;; esac
  done < "$kube_dir/env"
elif [ "${CI:-}" = true ]; then
  echo "scripts/test.sh: FAIL: the test Kubernetes control plane did not start (CI=true)" >&2
  exit 1
else
  echo "scripts/test.sh: the test Kubernetes control plane did not start; its tests will SKIP" >&2
  rm -rf "$kube_dir"; kube_dir=""
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
# The README's cluster quick start (helm install, then move) on a control plane of its own.
tests/kube/quickstart.sh
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
# The README's quick start (one real machine on a second NIC) run as written: hookos build,
# serve --netboot-interface on a veth into the lab's bridge, import, apply, workflow create
# --netboot, workflow watch; then the installed OS reads its metadata.
E2E_WORKER_BIN="${TINK_WORKER_STATIC_BIN:-}" tests/lab/quickstart.sh
# The pivot on the wire with the store in a real kube-apiserver: the embedded appliance
# provisions m1, `tinkerbell move` hands the inventory to the cluster (DHCP handoff watched by a
# probe), boots, hegel, tink-server, tink-controller and rufio as separate processes on
# --backend kube provision m2 and re-provision m1, then the inventory moves back.
TINKERBELL_SERVICES_DIR="$(dirname "$TINKERBELL_BIN")" E2E_WORKER_BIN="${TINK_WORKER_STATIC_BIN:-}" \
  tests/lab/e2e-kube.sh
# Move, then provision from the target: appliance A provisions m1, `tinkerbell move` to appliance
# B in a second namespace on the same bridge (DHCP handoff watched by a probe), B provisions m1.
tests/lab/move.sh
# Helm chart: helm lint/template of every values case, install/upgrade/uninstall on a real
# kube-apiserver (tests/kube/kube.sh); generated files fresh.
python3 deploy/helm/test.py
# Container images: static build, OCI layout, docker run as users run them (needs Docker).
deploy/images/test.sh
