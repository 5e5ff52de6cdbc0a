#!/usr/bin/env bash
# What idempotence costs: W1 (100 partitions, 1 KiB records, 100 per request, 64
# producers, maximum rate) with plain producers and with idempotent ones (each producer
# a `POST /v1/producers` producer numbering its requests), ROUNDS times each, interleaved,
# each run on a fresh `floe serve` (release build, local store). Prints one line per run;
# docs/benchmarks.md records the figures.
#   scripts/bench-idempotence.sh            # 2 rounds, 20 s measured after 5 s warm-up
#   ROUNDS=3 SECS=30 scripts/bench-idempotence.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-2}"
SECS="${SECS:-20}"
WARM="${WARM:-5}"
WORK="$(mktemp -d -t floe-idem.XXXXXX)"
source scripts/bench-common.sh
trap 'kill "$PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT

for round in $(seq 1 "$ROUNDS"); do
  for mode in plain idempotent; do
    P=$(port)
    start_floe "$P"
    flags=()
    [ "$mode" = idempotent ] && flags=(--idempotent)
    echo "== round $round: $mode" >&2
    "$BENCH" run --system floe --url "http://127.0.0.1:$P" --label "W1-$mode" \
      --server-pid "$PID" --partitions 100 --record-size 1024 --batch 100 --producers 64 \
      --duration "${SECS}s" --warmup "${WARM}s" "${flags[@]}" 2>/dev/null | grep -E "records/s|ack"
    stop_floe
  done
done
