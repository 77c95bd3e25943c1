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
# builds all of rufio, and the services' targets (syslog_parse, http_range, hegel_paths,
# store_api_body, yaml_apply, csv_import, template_render, report_classifier) its `services`
# feature; both are turned on for them here.
#
# A unit that runs longer than 30 s counts as a crash (-timeout=30; libFuzzer's default is
# 20 min): every parser here is bounded, template rendering by its 5 s time budget.
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
  case $t in
    rmcp_decode|redfish_json) features=(--features rufio) ;;
    syslog_parse|http_range|hegel_paths|store_api_body|yaml_apply|csv_import|template_render|report_classifier)
      features=(--features services) ;;
  esac
  cargo "${tc[@]}" fuzz run --debug-assertions "${features[@]}" --target-dir "$target_dir" "$t" "$work" "$here/seeds/$t" -- \
    -max_total_time="$secs" -timeout=30 -print_final_stats=1 >"$log" 2>&1
  rc=$?
  set -e
  # `|| true`: a build that failed has no stats, and pipefail + set -e would end the script
  # silently here instead of reporting it below.
  execs=$({ grep -a 'stat::number_of_executed_units' "$log" || true; } | awk '{print $2}' | tail -1)
  cov=$({ grep -aoE 'cov: [0-9]+' "$log" || true; } | tail -1 | awk '{print $2}')
  if [ $rc = 0 ]; then
    echo "$t: ${execs:-?} executions in ${secs} s, coverage ${cov:-?}, no crash"
  else
    echo "$t: FAILED (exit $rc) after ${execs:-?} executions; log $log" >&2
    grep -aE 'panicked|ERROR|SUMMARY|Test unit written|^error' "$log" | head -10 >&2 || true
    status=1
  fi
done
exit $status
