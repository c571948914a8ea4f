#!/usr/bin/env bash
# Fuzzes what the Kinesis endpoint does with a request's bytes (broker/fuzz): each target
# for FUZZ_SECONDS (default 300) on one core, then prints CPU time, runs and crashes.
# Crashing inputs land in broker/fuzz/artifacts/<target>/; replay one with
#   cargo +nightly fuzz run -O -a -s none <target> <file>
set -euo pipefail
cd "$(dirname "$0")/../broker/fuzz"
SECONDS_PER_TARGET=${FUZZ_SECONDS:-300}
TARGETS=${FUZZ_TARGETS:-"kinesis_request sigv4 tokens kpl"}
TARGET_DIR=${FUZZ_TARGET_DIR:-$HOME/.cache/freshet-fuzz-target}
CORPUS=${FUZZ_CORPUS:-$HOME/.cache/freshet-fuzz-corpus}
# cargo-fuzz instruments with nightly-only rustc flags; sanitizers are off because the
# decoders are safe Rust, while overflow checks and debug assertions (-a) stay on.
FLAGS=(-O -a -s none --target-dir "$TARGET_DIR")

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "==> installing the nightly toolchain (cargo-fuzz needs it)"
  rustup toolchain install nightly --profile minimal || {
    echo "make fuzz needs a nightly Rust toolchain: rustup toolchain install nightly" >&2; exit 1; }
fi
if ! cargo fuzz --version 2>/dev/null | grep -q "0.13.2"; then
  echo "==> installing cargo-fuzz 0.13.2"
  cargo install cargo-fuzz --version 0.13.2 --locked
fi
echo "==> building the fuzz targets (the first build compiles RocksDB for nightly: about 15 minutes on 2 cores)"
cargo +nightly fuzz build "${FLAGS[@]}"

status=0
summary=()
for t in $TARGETS; do
  mkdir -p "$CORPUS/$t"
  log="$CORPUS/$t.log"
  echo "==> fuzzing $t for ${SECONDS_PER_TARGET}s (log: $log)"
  start=$(date +%s)
  if cargo +nightly fuzz run "${FLAGS[@]}" "$t" "$CORPUS/$t" "seeds/$t" -- \
      -max_total_time="$SECONDS_PER_TARGET" -print_final_stats=1 >"$log" 2>&1; then
    result="no crash"
  else
    result="CRASH: $(grep -o 'artifacts/[^ ]*crash-[0-9a-f]*' "$log" | head -1)"
    status=1
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
  summary+=("$(printf '%-16s %6.1f CPU-min  %12s runs  %-9s  %s' "$t" "$(awk "BEGIN { print ($(date +%s) - $start) / 60 }")" "$runs" "$cov" "$result")")
done
echo
echo "target           CPU time     executions  coverage   result"
printf '%s\n' "${summary[@]}"
exit $status
