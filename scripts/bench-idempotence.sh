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
source scripts/bootstrap.sh
cargo build --release --bin floe --bin floe-bench
FLOE="$CARGO_TARGET_DIR/release/floe"
BENCH="$CARGO_TARGET_DIR/release/floe-bench"
ROUNDS="${ROUNDS:-2}"
SECS="${SECS:-20}"
WARM="${WARM:-5}"
WORK="$(mktemp -d -t floe-idem.XXXXXX)"
trap 'kill "$PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT
PID=""
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

for round in $(seq 1 "$ROUNDS"); do
  for mode in plain idempotent; do
    P=$(port)
    rm -rf "$WORK/data"
    "$FLOE" serve --data-dir "$WORK/data" --listen "127.0.0.1:$P" >"$WORK/serve.log" 2>&1 &
    PID=$!
    for _ in $(seq 1 100); do
      curl -fs "http://127.0.0.1:$P/healthz" >/dev/null 2>&1 && break
      sleep 0.1
    done
    flags=()
    [ "$mode" = idempotent ] && flags=(--idempotent)
    echo "== round $round: $mode" >&2
    "$BENCH" run --system floe --url "http://127.0.0.1:$P" --label "W1-$mode" \
      --server-pid "$PID" --partitions 100 --record-size 1024 --batch 100 --producers 64 \
      --duration "${SECS}s" --warmup "${WARM}s" "${flags[@]}" 2>/dev/null | grep -E "records/s|ack"
    kill "$PID"
    wait "$PID" 2>/dev/null || true
    PID=""
  done
done
