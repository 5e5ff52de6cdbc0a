#!/usr/bin/env bash
# One W2 step, attributed: W2's shape (100 partitions, 1 KiB records, 100 per request,
# 64 producers) at one fixed rate on a fresh `floe serve` (release build, local store),
# RUNS times, each on a new server. Around each run it keeps /metrics before and after,
# samples the data directory's block device for stalls (scripts/diskstats.py) and the host
# for lost CPU time and pressure (scripts/pressure.py), and keeps floe's log, then prints
# the ack line, the three worst seconds of ack p99, the stage quantiles of the run
# (scripts/stage_quantiles.py), floe's slow-upload and slow-append warnings, the device's
# stalls and the host's, whose UTC times can be set beside each other.
#   scripts/bench-step.sh 241000          # one run of 10 s after 2 s of warm-up
#   RUNS=3 SECS=10 WARM=2 OUT=/tmp/step scripts/bench-step.sh 241000
#   OFFCPU_MS=30 scripts/bench-step.sh 241000   # also floe's threads blocked >= 30 ms, with
#                                               # kernel stacks (scripts/offcpu.bt; root, bpftrace)
set -euo pipefail
cd "$(dirname "$0")/.."
RATE="${1:?usage: scripts/bench-step.sh RECORDS_PER_SECOND}"
RUNS="${RUNS:-1}"
SECS="${SECS:-10}"
WARM="${WARM:-2}"
OUT="${OUT:-bench-out/step-$(date -u +%Y%m%dT%H%M%SZ)}"
PID="" SAMPLER="" PRESSURE="" TRACER=""
WORK="$(mktemp -d -t floe-step.XXXXXX)"
trap 'kill $PID $SAMPLER $PRESSURE $TRACER 2>/dev/null || true; rm -rf "$WORK"' EXIT
source scripts/bench-common.sh
mkdir -p "$OUT"
# The device under the data directory, as /proc/diskstats names it (vda, nvme0n1p2,
# dm-0, …); none on tmpfs or overlay, and then no device samples.
DEVICE="$(basename "$(readlink -f "$(df --output=source "$WORK" | tail -1)")")"
if ! awk -v d="$DEVICE" '$3 == d { found = 1 } END { exit !found }' /proc/diskstats; then
  echo "bench-step: $WORK is on $DEVICE, not a block device in /proc/diskstats: no device samples" >&2
  DEVICE=""
fi

for run in $(seq 1 "$RUNS"); do
  label="step-$RATE-$run"
  P=$(port)
  # Each run writes to a directory of its own; nothing is deleted until the end, so no
  # run pays for the last one's deletions (see `forget` in scripts/bench.sh).
  "$FLOE" serve --data-dir "$WORK/data-$run" --listen "127.0.0.1:$P" >"$OUT/$label.floe.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$P/healthz" >/dev/null 2>&1 && break
    sleep 0.1
  done
  curl -fs "http://127.0.0.1:$P/metrics" >"$OUT/$label.before.txt"
  if [ -n "$DEVICE" ]; then
    python3 scripts/diskstats.py --device "$DEVICE" >"$OUT/$label.disk.txt" &
    SAMPLER=$!
  fi
  python3 scripts/pressure.py >"$OUT/$label.host.txt" &
  PRESSURE=$!
  if [ -n "${OFFCPU_MS:-}" ]; then
    TZ=UTC bpftrace scripts/offcpu.bt "$PID" "$OFFCPU_MS" >"$OUT/$label.offcpu.txt" 2>&1 &
    TRACER=$!
    sleep 2 # attaching takes a moment
  fi
  started="$(date +%s.%N)"
  "$BENCH" run --system floe --url "http://127.0.0.1:$P" --label "$label" --server-pid "$PID" \
    --rate "$RATE" --partitions 100 --record-size 1024 --batch 100 --producers 64 \
    --duration "${SECS}s" --warmup "${WARM}s" >"$OUT/$label.bench.txt" 2>"$OUT/$label.bench.err"
  # (`wait` with no job named would wait for floe too.)
  for job in $SAMPLER $PRESSURE $TRACER; do
    kill -INT "$job" 2>/dev/null || true
    wait "$job" 2>/dev/null || true
  done
  SAMPLER="" PRESSURE="" TRACER=""
  curl -fs "http://127.0.0.1:$P/metrics" >"$OUT/$label.after.txt"
  stop_floe
  python3 scripts/stage_quantiles.py "$OUT/$label.before.txt" "$OUT/$label.after.txt" >"$OUT/$label.stages.txt"
  echo "== $label ($RATE records/s, $SECS s after $WARM s of warm-up; files in $OUT)"
  grep -E "records/s,|^  ack" "$OUT/$label.bench.txt"
  # floe-bench's progress lines (`[label]   12s  produce … ack p99 …`), seconds from its
  # start: a few hundred ms after `started` (process start, topic creation), so "about".
  tr '\r' '\n' <"$OUT/$label.bench.err" | sed -nE 's/^\[[^]]*\] +([0-9]+)s .*ack p99 +([0-9.]+) ms.*/\1 \2/p' |
    awk -v warm="$WARM" '$1 > warm' | sort -k2,2gr | sed -n 1,3p | while read -r second p99; do
      echo "  worst second: ack p99 $p99 ms in the second to about $(date -u -d "@$(awk -v a="$started" -v b="$second" 'BEGIN { printf "%.3f", a + b }')" +%H:%M:%S.%1N) UTC"
    done
  grep -E "produce_latency|produce_request_stage|produce_stage|append_seconds|schedule_delay" "$OUT/$label.stages.txt" || true
  grep -E "was slow" "$OUT/$label.floe.log" | sed -e 's/\x1b\[[0-9;]*m//g' || true
  [ -z "$DEVICE" ] || cat "$OUT/$label.disk.txt"
  cat "$OUT/$label.host.txt"
  [ -z "${OFFCPU_MS:-}" ] || grep -E "blocked|^\s+[a-z_0-9]+\+" "$OUT/$label.offcpu.txt" | head -60 || true
done
