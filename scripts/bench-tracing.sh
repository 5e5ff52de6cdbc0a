#!/usr/bin/env bash
# What exporting traces costs: W1 (100 partitions, 1 KiB records, 100 per request, 64
# producers, maximum rate) with no OTLP endpoint, with one at the default
# `tracing.sample_ratio` (0.01), and with every span exported (1), ROUNDS times each,
# interleaved, each run on a fresh `floe serve` (release build, local store). The
# endpoint is scripts/otlp_sink.py, which counts the posts and bytes it gets.
#   scripts/bench-tracing.sh
#   ROUNDS=3 SECS=30 scripts/bench-tracing.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh
cargo build --release --bin floe --bin floe-bench
FLOE="$CARGO_TARGET_DIR/release/floe"
BENCH="$CARGO_TARGET_DIR/release/floe-bench"
ROUNDS="${ROUNDS:-2}"
SECS="${SECS:-15}"
WARM="${WARM:-3}"
WORK="$(mktemp -d -t floe-tracing.XXXXXX)"
PID=""
SINK=""
trap 'kill $PID $SINK 2>/dev/null || true; rm -rf "$WORK"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

SP=$(port)
python3 scripts/otlp_sink.py "$SP" &
SINK=$!
for _ in $(seq 1 50); do curl -fs "http://127.0.0.1:$SP/" >/dev/null 2>&1 && break; sleep 0.1; done

for round in $(seq 1 "$ROUNDS"); do
  for ratio in off 0.01 1; do
    P=$(port)
    rm -rf "$WORK/data"
    if [ "$ratio" = off ]; then
      : >"$WORK/floe.toml"
    else
      printf '[tracing]\notlp_endpoint = "http://127.0.0.1:%s"\nsample_ratio = %s\n' "$SP" "$ratio" >"$WORK/floe.toml"
    fi
    "$FLOE" serve --config "$WORK/floe.toml" --data-dir "$WORK/data" --listen "127.0.0.1:$P" \
      >"$WORK/serve.log" 2>&1 &
    PID=$!
    for _ in $(seq 1 100); do
      curl -fs "http://127.0.0.1:$P/healthz" >/dev/null 2>&1 && break
      sleep 0.1
    done
    before=$(curl -fs "http://127.0.0.1:$SP/")
    echo "== round $round: tracing $ratio"
    "$BENCH" run --system floe --url "http://127.0.0.1:$P" --label "W1-tracing-$ratio" \
      --server-pid "$PID" --partitions 100 --record-size 1024 --batch 100 --producers 64 \
      --duration "${SECS}s" --warmup "${WARM}s" 2>/dev/null | grep -E "records/s|ack|CPU"
    kill "$PID"
    wait "$PID" 2>/dev/null || true
    PID=""
    after=$(curl -fs "http://127.0.0.1:$SP/")
    python3 -c "b=list(map(int,'$before'.split())); a=list(map(int,'$after'.split())); print(f'  exported: {a[0]-b[0]} posts, {(a[1]-b[1])/1e6:.1f} MB')"
  done
done
