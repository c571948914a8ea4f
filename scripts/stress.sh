#!/usr/bin/env bash
# Runs one durability test again and again, COPIES at a time (contention makes rare
# interleavings likely), and stops at the first failure, keeping that cluster's data
# directories (node logs and RocksDB) for a post-mortem.
#   ROUNDS=40 COPIES=3 TEST=sigkill_of_every_node scripts/stress.sh
set -euo pipefail
: "${FRESHET_BIN:?set FRESHET_BIN to the directory holding freshet-broker (make stress does)}"
ROUNDS=${ROUNDS:-20} COPIES=${COPIES:-3} TEST=${TEST:-sigkill_of_every_node}
deps="$FRESHET_BIN/deps"
suite=$(ls -t "$deps"/durability-* | grep -v '\.d$' | head -1)
logs=$(mktemp -d)
export FRESHET_KEEP_FAILED=1
cd "$(dirname "$0")/../tests"
for round in $(seq 1 "$ROUNDS"); do
  for copy in $(seq 1 "$COPIES"); do "$suite" "$TEST" >"$logs/$round.$copy.log" 2>&1 & done
  wait || true
  for copy in $(seq 1 "$COPIES"); do
    if ! grep -q "test result: ok. [1-9]" "$logs/$round.$copy.log"; then
      echo "round $round, copy $copy failed:"
      grep -E "panicked|lost|kept the failed" "$logs/$round.$copy.log" | head -20
      echo "full log: $logs/$round.$copy.log"
      exit 1
    fi
  done
  printf '\rround %d/%d: %d runs passed' "$round" "$ROUNDS" $((round * COPIES))
done
echo
