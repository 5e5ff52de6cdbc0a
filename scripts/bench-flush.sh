#!/usr/bin/env bash
# What the adaptive flush (ADR 0011) changes: W2's shape (100 partitions, 1 KiB records,
# 100 per request, 64 producers) at fixed rates, with `--flush-when-idle true` (seal as
# soon as the pipeline is idle) and `false` (linger and size only), ROUNDS times each,
# interleaved, each run on a fresh `floe serve` (release build, local store). Prints the
# ack latency line of each run and the seals by reason from /metrics.
#   scripts/bench-flush.sh                      # rates 2000 18000 45000, 2 rounds, 20 s
#   RATES="5000 60000" ROUNDS=3 SECS=30 scripts/bench-flush.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-2}"
SECS="${SECS:-20}"
WARM="${WARM:-3}"
RATES="${RATES:-2000 18000 45000}"
WORK="$(mktemp -d -t floe-flush.XXXXXX)"
source scripts/bench-common.sh
trap 'kill "$PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT

for round in $(seq 1 "$ROUNDS"); do
  for rate in $RATES; do
    for idle in true false; do
      P=$(port)
      start_floe "$P" --flush-when-idle "$idle"
      echo "== round $round: rate $rate, flush_when_idle $idle" >&2
      "$BENCH" run --system floe --url "http://127.0.0.1:$P" --label "W2-$rate-idle-$idle" \
        --server-pid "$PID" --rate "$rate" --partitions 100 --record-size 1024 --batch 100 \
        --producers 64 --duration "${SECS}s" --warmup "${WARM}s" 2>/dev/null | grep -E "records/s|ack"
      curl -fs "http://127.0.0.1:$P/metrics" | grep '^floe_segments_sealed_total' | tr '\n' ' '
      echo
      stop_floe
    done
  done
done
