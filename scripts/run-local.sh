#!/usr/bin/env bash
# `make run`: a local 3-node Freshet cluster on 127.0.0.1, data kept in $DATA across runs.
set -euo pipefail
BIN="${FRESHET_BIN:?set FRESHET_BIN to the directory holding freshet-broker}"
DATA="${DATA:-$PWD/data}"
PEERS="1=127.0.0.1:50051,2=127.0.0.1:50052,3=127.0.0.1:50053"
export FRESHET_ENDPOINT="http://127.0.0.1:50051"

for port in 50051 50052 50053 4567 4568 4569; do
  if (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
    echo "port $port is already in use: is another 'make run' still running? Stop it first." >&2
    exit 1
  fi
done

pids=()
# Stops every node started so far and exits with `$1`: 0 after Ctrl-C, the failed step's
# status when a step below fails (set -e), so no node is ever left running.
stop() {
  local status=$1
  trap - INT TERM EXIT
  echo
  echo "==> stopping the cluster (data stays in $DATA)"
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  echo "==> stopped"
  exit "$status"
}
trap 'stop 0' INT TERM
trap 'stop $?' EXIT

# Three nodes share this machine: each gets a third of its cores (at least one) for its
# worker threads, so they do not wake each other's threads across CPUs for nothing.
export FRESHET_WORKER_THREADS="${FRESHET_WORKER_THREADS:-$(( $(nproc) / 3 > 0 ? $(nproc) / 3 : 1 ))}"

for i in 1 2 3; do
  mkdir -p "$DATA/node$i"
  "$BIN/freshet-broker" --id "$i" --listen "127.0.0.1:5005$i" --data-dir "$DATA/node$i" \
    --kinesis-listen "127.0.0.1:456$((6 + i))" --peers "$PEERS" >>"$DATA/node$i.log" 2>&1 &
  pids+=($!)
  echo "==> node $i: gRPC 127.0.0.1:5005$i, Kinesis API http://127.0.0.1:456$((6 + i)), data $DATA/node$i, log $DATA/node$i.log"
done

"$BIN/freshet" cluster wait --timeout-secs 60
if ! "$BIN/freshet" stream describe demo >/dev/null 2>&1; then
  "$BIN/freshet" stream create demo --shards 4 --wait
fi
"$BIN/freshet" stream describe demo

B="$BIN/freshet"
cat <<TIPS

Freshet is running: 3 nodes, stream 'demo'. In another terminal try:

  $B put demo --partition-key user-1 'hello freshet'
  seq 1 10000 | $B put demo                 # one record per line, random keys
  $B read demo --from trim-horizon           # every record, one per line
  $B read demo --from latest --follow        # new records as they commit
  $B cluster status                          # leaders, applied/committed per replica

The Kinesis API answers on every node (any credentials, any region): the AWS CLI and SDKs
work with only the endpoint changed. 'make test' installs the AWS CLI in .venv:

  export AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local AWS_DEFAULT_REGION=us-east-1
  .venv/bin/aws --endpoint-url http://127.0.0.1:4567 kinesis list-shards --stream-name demo
  .venv/bin/aws --endpoint-url http://127.0.0.1:4568 kinesis put-record --stream-name demo \
      --partition-key user-1 --data 'hello from the AWS CLI'

Ctrl-C stops all three nodes; 'make run' again finds every record.
TIPS
wait "${pids[@]}"
