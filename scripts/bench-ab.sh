#!/usr/bin/env bash
# Two floe builds, alternated, at one fixed rate (or W1's maximum rate) in W2's shape (100 partitions, 1 KiB
# records, 100 per request, 64 producers), each run on a fresh `floe serve` with its own
# data directory: for a change whose effect is smaller than the host's drift over the
# minutes a set of runs takes. Background jobs run as configured, so a run longer than
# about 20 s includes compaction's first runs (interval 10 s, minimum age 10 s).
#   cp "$CARGO_TARGET_DIR/release/floe" /tmp/floe-a   # at one commit, then at the other:
#   cp "$CARGO_TARGET_DIR/release/floe" /tmp/floe-b
#   A=/tmp/floe-a B=/tmp/floe-b PAIRS=4 SECS=30 OUT=/tmp/ab scripts/bench-ab.sh 400000
#   ENV="FLOE_JOBS__ENABLED=false" A=… B=… scripts/bench-ab.sh 400000   # settings for both
#   A=… B=… SECS=10 scripts/bench-ab.sh max   # W1: the same shape at the maximum rate
# Prints each run's ack line; OUT keeps the bench output, the per-second progress (.err),
# floe's log and /metrics at the end of each run. After each pair the data is emptied
# (below) and the script waits GAP seconds (10). The order within a pair alternates (A B,
# B A, ...), so that neither build always runs first: use an even PAIRS.
set -euo pipefail
cd "$(dirname "$0")/.."
RATE="${1:?usage: A=floe-binary B=floe-binary scripts/bench-ab.sh RECORDS_PER_SECOND|max}"
: "${A:?A=path of the first floe binary}" "${B:?B=path of the second floe binary}"
PAIRS="${PAIRS:-2}" SECS="${SECS:-30}" GAP="${GAP:-10}"
OUT="${OUT:-bench-out/ab-$(date -u +%Y%m%dT%H%M%SZ)}"
WORK="$(mktemp -d -t floe-ab.XXXXXX)"
# The release floe-bench, port() and PID (it builds this tree's floe too, unused here).
source scripts/bench-common.sh
trap 'kill $PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
mkdir -p "$OUT"
RATE_ARGS=()
[ "$RATE" = max ] || RATE_ARGS=(--rate "$RATE")

for pair in $(seq 1 "$PAIRS"); do
  # A first in odd pairs, B first in even ones: whatever running first after a pair costs
  # (it was a whole run's backlog while pairs were deleted, below) falls on both alike.
  order="A B"
  [ $((pair % 2)) = 0 ] && order="B A"
  for side in $order; do
    binary="${!side}"
    label="$side-$pair"
    P=$(port)
    # shellcheck disable=SC2086 # ENV is a list of NAME=value words
    env ${ENV:-} "$binary" serve --data-dir "$WORK/data-$label" --listen "127.0.0.1:$P" \
      >"$OUT/$label.floe.log" 2>&1 &
    PID=$!
    for _ in $(seq 1 100); do
      curl -fs "http://127.0.0.1:$P/healthz" >/dev/null 2>&1 && break
      sleep 0.1
    done
    "$BENCH" run --system floe --url "http://127.0.0.1:$P" --label "$label" --server-pid "$PID" \
      ${RATE_ARGS[@]+"${RATE_ARGS[@]}"} --partitions 100 --record-size 1024 --batch 100 --producers 64 \
      --duration "${SECS}s" --warmup 2s >"$OUT/$label.txt" 2>"$OUT/$label.err"
    curl -fs "http://127.0.0.1:$P/metrics" >"$OUT/$label.metrics"
    kill "$PID"
    wait "$PID" 2>/dev/null || true
    PID=""
    echo "$label ($binary): $(grep -E '^  ack ' "$OUT/$label.txt" | sed 's/^ *//')"
    if [ "$RATE" = max ]; then
      echo "  $(grep -E 'records/s,' "$OUT/$label.txt" | sed 's/^ *//')"
    fi
  done
  # Emptied, not deleted, as scripts/bench.sh's forget() does: on ext4 without a journal,
  # files created soon after mass deletions pay for them, and the next run fell behind
  # from its first second (p50 300-1,750 ms against 5-7). The empty trees go at exit.
  find "$WORK"/data-* -type f -exec truncate -s 0 {} +
  mkdir -p "$WORK/forgotten"
  mv "$WORK"/data-* "$WORK/forgotten/"
  [ "$pair" = "$PAIRS" ] || sleep "$GAP"
done
