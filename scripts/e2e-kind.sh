#!/usr/bin/env bash
# `make e2e-kind`: the whole path on a real Kubernetes (kind): build and load the images,
# helm install, apply the example Stream, wait for Ready, put and get records with the AWS
# CLI through a port-forward, raise the declared throughput and wait for the new shard
# count, delete. Where Docker or kind is missing it says so and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER=${CLUSTER:-freshet-e2e}
NS=${NS:-freshet-e2e}
TAG=e2e

skip() { echo "e2e-kind: skipped: $*"; exit 0; }
command -v docker >/dev/null || skip "docker is not installed"
docker info >/dev/null 2>&1 || skip "no Docker engine is running"
for tool in kind kubectl helm aws; do
  command -v "$tool" >/dev/null || skip "$tool is not installed"
done

step() { echo; echo "==> $*"; }
cleanup() {
  [ -n "${PF:-}" ] && kill "$PF" 2>/dev/null || true
  [ "${KEEP_CLUSTER:-0}" = 1 ] || kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
}
trap cleanup EXIT

step "kind cluster $CLUSTER"
kind get clusters 2>/dev/null | grep -qx "$CLUSTER" || kind create cluster --name "$CLUSTER" --wait 120s

step "images"
docker build --target broker -t freshet/broker:$TAG .
docker build --target operator -t freshet/operator:$TAG .
kind load docker-image --name "$CLUSTER" freshet/broker:$TAG freshet/operator:$TAG

step "helm install"
helm upgrade --install freshet charts/freshet --namespace freshet-system --create-namespace --wait \
  --set image.repository=freshet/operator --set image.tag=$TAG --set image.pullPolicy=Never \
  --set brokerImage.repository=freshet/broker --set brokerImage.tag=$TAG

step "example Stream"
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f -
kubectl -n "$NS" apply -f charts/freshet/examples/stream.yaml
kubectl -n "$NS" wait stream/clicks --for=condition=Ready --timeout=10m
kubectl -n "$NS" get streams

step "put and get through the Kinesis API"
kubectl -n "$NS" port-forward svc/clicks 4567:4567 >/dev/null 2>&1 & PF=$!
sleep 3
export AWS_ACCESS_KEY_ID=e2e AWS_SECRET_ACCESS_KEY=e2e AWS_DEFAULT_REGION=us-east-1
K="aws kinesis --endpoint-url http://127.0.0.1:4567"
DATA=$(printf 'hello e2e' | base64)
# The record goes to the shard its key hashes to; read that one back.
SHARD=$($K put-record --stream-name clicks --partition-key user-1 --data "$DATA" --query ShardId --output text)
IT=$($K get-shard-iterator --stream-name clicks --shard-id "$SHARD" --shard-iterator-type TRIM_HORIZON \
  --query ShardIterator --output text)
GOT=$($K get-records --shard-iterator "$IT" --query 'Records[0].Data' --output text)
if [ "$GOT" != "$DATA" ]; then
  echo "e2e-kind: read back '$GOT' from $SHARD, expected '$DATA'" >&2
  exit 1
fi
echo "read back the record from $SHARD"

step "raise the declared throughput: 8 MiB/s of writes -> 8 shards"
kubectl -n "$NS" patch stream clicks --type merge -p '{"spec":{"throughput":{"writeMiBPerSecond":8}}}'
kubectl -n "$NS" wait stream/clicks --for=jsonpath='{.status.shards}'=8 --timeout=10m
kubectl -n "$NS" get streams

step "delete"
kubectl -n "$NS" delete stream clicks --wait --timeout=5m
echo "e2e-kind: passed"
