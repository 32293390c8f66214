#!/usr/bin/env bash
# Runs every cargo-fuzz target in turn for SECONDS each (default 600: the
# documented 10-minute runs of docs/fuzzing.md; CI uses 30), on the stable
# toolchain (RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its nightly flags).
# Each target starts from its seeds (fuzz/seeds/<target>) and its growing
# corpus (fuzz/corpus/<target>, not committed); a crash is saved under
# fuzz/artifacts/<target>/ and fails the run. Prints one line per target:
# executions, coverage, corpus size.
#
#   bash fuzz/run.sh          # 7 targets x 10 minutes
#   bash fuzz/run.sh 30       # 7 targets x 30 seconds (CI)
#   TARGETS="config sse" bash fuzz/run.sh 60
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH="${1:-600}"
TARGETS="${TARGETS:-protocol handshake config token channels sse records}"
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked --version 0.13.2
LOGS="${LOGS:-${CARGO_TARGET_DIR:-target}/fuzz-logs}"
mkdir -p "$LOGS"
cargo fuzz build >&2
failed=0
for t in $TARGETS; do
  mkdir -p "fuzz/corpus/$t" "fuzz/seeds/$t"
  log="$LOGS/$t.log"
  set +e
  cargo fuzz run "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
    -max_total_time="$SECONDS_EACH" -rss_limit_mb=2048 -max_len=8192 -print_final_stats=1 \
    >"$log" 2>&1
  rc=$?
  set -e
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*')
  corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
  if [ "$rc" -ne 0 ]; then
    failed=1
    echo "$t: FAILED after ${runs:-?} executions (see $log and fuzz/artifacts/$t/)"
    grep -m5 -E 'panicked|ERROR|SUMMARY' "$log" || true
  else
    echo "$t: ${SECONDS_EACH}s, ${runs:-?} executions, coverage ${cov:-?} edges, corpus $corpus inputs, no crash"
  fi
done
exit $failed
