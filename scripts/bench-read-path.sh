#!/usr/bin/env bash
# Read-path benchmark (docs/benchmarks.md, "Tail cache"): end-to-end tail latency on the
# local store and on S3 (moto) with three brokers on etcd, and a cold catch-up read of
# history on S3 with its GET count and the cache's memory use. Not part of CI.
#
#   scripts/bench-read-path.sh [SECONDS] [RATE] [HISTORY_MIB]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh
SECONDS_RUN=${1:-20}
RATE=${2:-200}
HISTORY_MIB=${3:-1024}
TARGET=${CARGO_TARGET_DIR:-target}
cargo build --release -p floe-cli --bin floe && cargo build --release -p floe-server --example tail_bench
FLOE="$TARGET/release/floe"
BENCH="$TARGET/release/examples/tail_bench"
MOTO=${FLOE_MOTO_BIN:-$HOME/.cache/floe/venv/bin/moto_server}
WORK=$(mktemp -d)
PIDS=()
cleanup() { for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 100); do curl -sf "$1/healthz" >/dev/null && return 0; sleep 0.2; done; echo "no answer from $1" >&2; exit 1; }

echo "== local store, one broker (embedded sequencer, default linger)"
P=$(port)
"$FLOE" serve --data-dir "$WORK/local" --listen "127.0.0.1:$P" 2>"$WORK/local.log" & PIDS+=($!)
wait_http "http://127.0.0.1:$P"
"$BENCH" tail "http://127.0.0.1:$P" "$SECONDS_RUN" "$RATE"

echo "== S3 (moto), three brokers on etcd (linger 20ms, 64 MiB cache memory each)"
MP=$(port); EP=$(port); EPEER=$(port)
"$MOTO" -H 127.0.0.1 -p "$MP" >/dev/null 2>&1 & PIDS+=($!)
etcd --data-dir "$WORK/etcd" --name b \
  --listen-client-urls "http://127.0.0.1:$EP" --advertise-client-urls "http://127.0.0.1:$EP" \
  --listen-peer-urls "http://127.0.0.1:$EPEER" --initial-advertise-peer-urls "http://127.0.0.1:$EPEER" \
  --initial-cluster "b=http://127.0.0.1:$EPEER" >"$WORK/etcd.log" 2>&1 & PIDS+=($!)
for _ in $(seq 100); do curl -sf -X PUT "http://127.0.0.1:$MP/bench" >/dev/null && break; sleep 0.2; done
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_ENDPOINT_URL="http://127.0.0.1:$MP"
URLS=()
BROKER_PIDS=()
for i in 1 2 3; do
  P=$(port)
  "$FLOE" serve --data-dir "$WORK/b$i" --listen "127.0.0.1:$P" --store s3://bench/c \
    --etcd "http://127.0.0.1:$EP" --cluster bench --broker-id "b$i" --linger 20ms \
    --cache-memory-bytes 67108864 --cache-disk-bytes 0 2>"$WORK/b$i.log" & PIDS+=($!)
  BROKER_PIDS+=($!)
  URLS+=("http://127.0.0.1:$P")
done
for url in "${URLS[@]}"; do wait_http "$url"; done
sleep 3   # membership and ownership settle
"$BENCH" tail "${URLS[0]}" "$SECONDS_RUN" "$RATE"

echo "== S3 (moto): ${HISTORY_MIB} MiB of history written via its owner, read cold via another broker"
for i in 0 1 2; do
  pid=${BROKER_PIDS[$i]}
  (
    peak=0
    while kill -0 "$pid" 2>/dev/null; do
      rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
      if [ "${rss:-0}" -gt "$peak" ]; then peak=$rss; echo "$peak" >"$WORK/peak-$i"; fi
      sleep 0.2
    done
  ) &
done
"$BENCH" history "$(IFS=,; echo "${URLS[*]}")" "$HISTORY_MIB"
for i in 0 1 2; do
  echo "broker ${URLS[$i]} peak RSS: $(( $(cat "$WORK/peak-$i") / 1024 )) MiB (cache memory tier 64 MiB)"
done
