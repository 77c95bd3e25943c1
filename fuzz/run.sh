#!/usr/bin/env bash
# A bounded, repeatable fuzz run of the network decoders: each target for SECONDS seconds
# (default 120), from the committed seeds in fuzz/seeds/<target> plus what earlier runs
# found (kept in the target dir, not committed). Prints executions per target; exits 1 when a
# target crashed (the reproducer is under fuzz/artifacts/<target>/).
#
#   fuzz/run.sh [SECONDS] [TARGET...]      # default: dhcp_decode tftp_decode
#
# dhcp_decode and tftp_decode link boots' protocol logic only (tinkerbell-boots without its
# `server` feature); rmcp_decode and redfish_json need the fuzz crate's `rufio` feature, which
# builds all of rufio, and is turned on for them here.
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`) and a nightly toolchain; without nightly it
# uses stable with RUSTC_BOOTSTRAP=1 (libFuzzer's sanitizer flags are nightly-only).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
secs=${1:-120}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(dhcp_decode tftp_decode)
cd "$here"
command -v cargo-fuzz >/dev/null || { echo "fuzz/run.sh: cargo-fuzz is not installed (cargo install cargo-fuzz)" >&2; exit 2; }
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  tc=(+nightly)
else
  tc=(); export RUSTC_BOOTSTRAP=1
fi
target_dir=${CARGO_TARGET_DIR:-$here/../target}/fuzz
status=0
for t in "${targets[@]}"; do
  work="$target_dir/corpus/$t"
  mkdir -p "$work" "$here/seeds/$t"
  log="$target_dir/$t.log"
  set +e
  features=()
  case $t in rmcp_decode|redfish_json) features=(--features rufio) ;; esac
  cargo "${tc[@]}" fuzz run --debug-assertions "${features[@]}" --target-dir "$target_dir" "$t" "$work" "$here/seeds/$t" -- \
    -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1
  rc=$?
  set -e
  execs=$(grep -a 'stat::number_of_executed_units' "$log" | awk '{print $2}' | tail -1)
  cov=$(grep -aoE 'cov: [0-9]+' "$log" | tail -1 | awk '{print $2}')
  if [ $rc = 0 ]; then
    echo "$t: ${execs:-?} executions in ${secs} s, coverage ${cov:-?}, no crash"
  else
    echo "$t: FAILED (exit $rc) after ${execs:-?} executions; log $log" >&2
    grep -aE 'panicked|ERROR|SUMMARY|Test unit written' "$log" | head -10 >&2
    status=1
  fi
done
exit $status
