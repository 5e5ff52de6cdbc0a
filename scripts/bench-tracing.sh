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
ROUNDS="${ROUNDS:-2}"
SECS="${SECS:-15}"
WARM="${WARM:-3}"
WORK="$(mktemp -d -t floe-tracing.XXXXXX)"
source scripts/bench-common.sh
SINK=""
trap 'kill $PID $SINK 2>/dev/null || true; rm -rf "$WORK"' EXIT

SP=$(port)
python3 scripts/otlp_sink.py "$SP" &
SINK=$!
for _ in $(seq 1 50); do curl -fs "http://127.0.0.1:$SP/" >/dev/null 2>&1 && break; sleep 0.1; done

for round in $(seq 1 "$ROUNDS"); do
  for ratio in off 0.01 1; do
    P=$(port)
    if [ "$ratio" = off ]; then
      : >"$WORK/floe.toml"
    else
      printf '[tracing]\notlp_endpoint = "http://127.0.0.1:%s"\nsample_ratio = %s\n' "$SP" "$ratio" >"$WORK/floe.toml"
    fi
    start_floe "$P" --config "$WORK/floe.toml"
    before=$(curl -fs "http://127.0.0.1:$SP/")
    echo "== round $round: tracing $ratio"
    "$BENCH" run --system floe --url "http://127.0.0.1:$P" --label "W1-tracing-$ratio" \
      --server-pid "$PID" --partitions 100 --record-size 1024 --batch 100 --producers 64 \
      --duration "${SECS}s" --warmup "${WARM}s" 2>/dev/null | grep -E "records/s|ack|CPU"
    stop_floe
    after=$(curl -fs "http://127.0.0.1:$SP/")
    python3 -c "b=list(map(int,'$before'.split())); a=list(map(int,'$after'.split())); print(f'  exported: {a[0]-b[0]} posts, {(a[1]-b[1])/1e6:.1f} MB')"
  done
done
