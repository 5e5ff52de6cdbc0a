#!/usr/bin/env bash
# The side-by-side benchmark report (docs/benchmarks.md, "Side by side"): floe, the peer
# s2-lite and this machine's limits (loopback HTTP, local disk) in one run, for the
# standard workloads W1–W6 on the local store and W1/W4/W5 on S3 (moto behind a counting
# proxy), then a profile of floe on each workload. Not part of CI; about 30 minutes.
# A maximum-rate run writes several GB; each store is emptied as soon as its run ends
# (see `forget`), and the empty files are deleted at exit.
#
#   scripts/bench.sh
#
# Settings (environment): FLOE_BENCH_SECONDS (measured seconds per run, 20),
# FLOE_BENCH_WARMUP (5), FLOE_BENCH_HISTORY_BYTES (W5's history, 1 GiB),
# FLOE_BENCH_S3=0 (skip the S3 runs), FLOE_BENCH_PROFILE=0 (skip the profiles),
# FLOE_BENCH_OUT (output directory, bench-out/<time>), FLOE_BENCH_W2_RUNS (runs of each W2
# step and system, each on a fresh server, 1; the report shows the median run and the
# range of p99: a single stall moves one 10 s step's p99 by 50x). Each floe W2 run also
# leaves W2-<fraction>[-<run>].stages.txt: the quantiles of floe's stage histograms over it.
# FLOE_BENCH_RUNS (runs of each maximum-rate workload, W1, W3, W6, W7 and W1-S3, per
# system, 1): the systems alternate run by run, and the report shows the median run and
# the range, the noise it states. `scripts/bench_report.py --compare A B` sets two reports'
# results.jsonl beside each other and says which figures agree within that noise.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh

SECS=${FLOE_BENCH_SECONDS:-20}
WARM=${FLOE_BENCH_WARMUP:-5}
HISTORY=${FLOE_BENCH_HISTORY_BYTES:-1073741824}
WITH_S3=${FLOE_BENCH_S3:-1}
WITH_PROFILE=${FLOE_BENCH_PROFILE:-1}
W2_RUNS=${FLOE_BENCH_W2_RUNS:-1}
RUNS=${FLOE_BENCH_RUNS:-1}
OUT=${FLOE_BENCH_OUT:-$PWD/bench-out/$(date +%Y%m%d-%H%M%S)}
PEER_VERSION=0.43.4
PEERS="$HOME/.cache/floe/peers"
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: >"$RESULTS"

# The peer, installed here and nowhere else (never by the build or CI).
if ! "$PEERS/bin/server" --version 2>/dev/null | grep -q "$PEER_VERSION"; then
  echo "bench: installing s2-lite $PEER_VERSION into $PEERS (a release build, ~15 minutes)" >&2
  CARGO_TARGET_DIR="$PEERS/target" cargo install s2-lite --version "$PEER_VERSION" --locked --root "$PEERS"
fi
S2="$PEERS/bin/server"
command -v curl >/dev/null 2>&1 || apt_install curl
[ "$WITH_S3" = 1 ] && ensure_moto
if [ "$WITH_PROFILE" = 1 ] && ! command -v perf >/dev/null 2>&1; then
  apt_install linux-perf || WITH_PROFILE=0
fi

cargo build --release -p floe-cli --bin floe -p floe-bench --bin floe-bench
FLOE="$CARGO_TARGET_DIR/release/floe"
BENCH="$CARGO_TARGET_DIR/release/floe-bench"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/floe-bench.XXXXXX")
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() {
  for _ in $(seq 300); do curl -sf "$1" >/dev/null && return 0; sleep 0.2; done
  echo "bench: no answer from $1" >&2
  exit 1
}

# start_server SYSTEM DATA_NAME [s3]: starts floe or s2-lite on a fresh port with its
# data under $WORK/DATA_NAME (kept across restarts); sets URL and PID.
start_server() {
  local system=$1 data="$WORK/$2" store=${3:-local} p
  p=$(port)
  URL="http://127.0.0.1:$p"
  case "$system" in
    floe)
      local extra=()
      [ "$store" = s3 ] && extra=(--store "s3://floe-bench/$2")
      AWS_ENDPOINT_URL="${S3_PROXY:-}" "$FLOE" serve --data-dir "$data" --listen "127.0.0.1:$p" "${extra[@]}" \
        >>"$OUT/$2.floe.log" 2>&1 &
      PID=$!
      wait_http "$URL/healthz"
      ;;
    s2)
      local store_args=(--local-root "$data")
      [ "$store" = s3 ] && store_args=(--bucket s2-bench --path "$2")
      AWS_ENDPOINT_URL_S3="${S3_PROXY:-}" "$S2" "${store_args[@]}" --port "$p" --no-dashboard \
        >>"$OUT/$2.s2.log" 2>&1 &
      PID=$!
      wait_http "$URL/health"
      ;;
    sink)
      "$BENCH" sink --listen "127.0.0.1:$p" >/dev/null 2>&1 &
      PID=$!
      wait_http "$URL/healthz"
      ;;
  esac
  PIDS+=("$PID")
}
stop_server() { kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; }
# forget DATA_NAME: frees a stopped server's local data by emptying its files, not
# deleting them. On an ext4 without a journal (this VM's root), creating a file checks
# every inode deleted in the last 1-6 minutes in its group before reusing one; after a
# run's thousands of deletions that scan took 9-16 % of floe's CPU in the next run
# (docs/benchmarks.md, "The inode scan"). The emptied tree moves aside, so the next
# server of that name starts fresh; it goes with $WORK at exit.
forget() {
  local dir="${WORK:?}/$1" aside
  [ -e "$dir" ] || return 0
  find "$dir" -type f -exec truncate -s 0 {} +
  mkdir -p "$WORK/forgotten"
  aside=$(mktemp -d "$WORK/forgotten/${1//\//-}.XXXXXX")
  mv "$dir" "$aside/"
}

# bench SYSTEM LABEL ARGS…: one run against the running server.
bench() {
  local system=$1 label=$2
  shift 2
  echo "== $label on $system" >&2
  "$BENCH" run --system "$system" --url "$URL" --label "$label" --server-pid "$PID" \
    --json "$RESULTS" "$@" 2>>"$OUT/progress.log"
}

# side_by_side LABEL STORE ARGS…: the same run on floe and on s2-lite, each on a fresh
# server and store.
side_by_side() {
  local label=$1 store=$2
  shift 2
  for system in floe s2; do
    start_server "$system" "$label-$system" "$store"
    bench "$system" "$label" "$@" $(store_counts_arg "$store")
    stop_server
    forget "$label-$system"
  done
}
# repeated LABEL STORE ARGS…: side_by_side RUNS times (a maximum-rate workload).
repeated() {
  local run
  for run in $(seq 1 "$RUNS"); do side_by_side "$@"; done
}
store_counts_arg() { [ "$1" = s3 ] && echo "--store-counts $S3_PROXY"; true; }
rate_of() { python3 scripts/bench_report.py --rate "$RESULTS" "$1" "$2"; }

COMMON=(--duration "${SECS}s" --warmup "${WARM}s")
W1=(--partitions 100 --record-size 1024 --batch 100 --producers 64 "${COMMON[@]}")

# The machine's limits.
echo "== disk limit" >&2
"$BENCH" disk --dir "$WORK/disk" --duration 10s --json "$RESULTS"
start_server sink sink
bench sink W1 "${W1[@]}"
bench sink W3 --partitions 100 --record-size 100 --batch 1000 --producers 64 "${COMMON[@]}"
stop_server

# W1: 1 KiB records, 100 partitions, maximum rate.
repeated W1 local "${W1[@]}"
# W3: 100-byte records, 1000 per request (the same 100 KB requests as W1).
repeated W3 local --partitions 100 --record-size 100 --batch 1000 --producers 64 "${COMMON[@]}"
# W6: 1,000 partitions.
repeated W6 local --partitions 1000 --record-size 1024 --batch 100 --producers 64 "${COMMON[@]}"
# W7: the curl user's path: one partition, JSON bodies of 100 text values of 1 KiB, 16
# connections, maximum rate.
W7=(--partitions 1 --record-size 1024 --batch 100 --producers 16 --body json "${COMMON[@]}")
repeated W7 local "${W7[@]}"

# W2: the same fixed rates on both, as fractions of the faster system's W1 rate (its
# median run).
TOP=$(python3 -c "print(max($(rate_of W1 floe), $(rate_of W1 s2)))")
STEP_SECS=$(( SECS / 2 > 5 ? SECS / 2 : 5 ))
for fraction in 0.1 0.25 0.5 0.75 0.9 1.0 1.25; do
  rate=$(python3 -c "print(round($TOP * $fraction))")
  for run in $(seq 1 "$W2_RUNS"); do
    suffix=$([ "$W2_RUNS" = 1 ] || echo "-$run")
    for system in floe s2; do
      start_server "$system" "W2-$system"
      [ "$system" = floe ] && curl -sf "$URL/metrics" >"$WORK/metrics-before.txt"
      bench "$system" W2 --rate "$rate" --partitions 100 --record-size 1024 --batch 100 --producers 64 \
        --duration "${STEP_SECS}s" --warmup 2s
      if [ "$system" = floe ]; then
        # Which stage held the time: floe's histograms over this run (warm-up included).
        curl -sf "$URL/metrics" >"$WORK/metrics-after.txt"
        python3 scripts/stage_quantiles.py "$WORK/metrics-before.txt" "$WORK/metrics-after.txt" \
          >"$OUT/W2-$fraction$suffix.stages.txt"
      fi
      stop_server
      forget "W2-$system"
    done
  done
done

# W4: tail consumers on every partition while producing at half the slower system's
# W1 rate (below both knees).
W4_RATE=$(python3 -c "print(round(0.5 * min($(rate_of W1 floe), $(rate_of W1 s2))))")
W4=(--mode tail --rate "$W4_RATE" --partitions 100 --record-size 1024 --batch 100 --producers 64 "${COMMON[@]}")
side_by_side W4 local "${W4[@]}"

# W5: write HISTORY bytes, restart (cold caches), read it all back from the start.
w5() {
  local label=$1 store=$2 history=$3 system
  for system in floe s2; do
    start_server "$system" "$label-$system" "$store"
    bench "$system" "$label-write" --topic history --partitions 100 --record-size 1024 --batch 100 \
      --producers 64 --total-bytes "$history" --duration 3600s --warmup 0s $(store_counts_arg "$store")
    stop_server
    # Cold: floe's disk tier (on by default on S3) would otherwise keep what the writer
    # cached; the sequencer log and the store stay.
    forget "$label-$system/cache"
    start_server "$system" "$label-$system" "$store"
    bench "$system" "$label" --mode catch-up --existing --topic history --partitions 100 --readers 16 \
      $(store_counts_arg "$store")
    stop_server
    forget "$label-$system"
  done
}
w5 W5 local "$HISTORY"

if [ "$WITH_S3" = 1 ]; then
  MP=$(port)
  "$FLOE_MOTO_BIN" -H 127.0.0.1 -p "$MP" >"$OUT/moto.log" 2>&1 &
  PIDS+=($!)
  wait_http "http://127.0.0.1:$MP/"
  curl -sf -X PUT "http://127.0.0.1:$MP/floe-bench" >/dev/null
  curl -sf -X PUT "http://127.0.0.1:$MP/s2-bench" >/dev/null
  PP=$(port)
  "$BENCH" s3-proxy --listen "127.0.0.1:$PP" --upstream "http://127.0.0.1:$MP" >"$OUT/s3-proxy.log" 2>&1 &
  PIDS+=($!)
  S3_PROXY="http://127.0.0.1:$PP"
  wait_http "$S3_PROXY/_counts"
  export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_ALLOW_HTTP=true
  repeated W1-S3 s3 "${W1[@]}"
  side_by_side W4-S3 s3 "${W4[@]}"
  w5 W5-S3 s3 $(( HISTORY / 4 ))
fi

# Profiles of floe alone, after the side-by-side runs so they cannot skew them.
if [ "$WITH_PROFILE" = 1 ]; then
  profile() {
    local label=$1
    shift
    start_server floe "profile-$label"
    perf record -F 499 -g -p "$PID" -o "$OUT/perf-$label.data" -- sleep $(( SECS + WARM )) \
      >/dev/null 2>&1 &
    local perf_pid=$!
    "$BENCH" run --system floe --url "$URL" --label "$label" "$@" >/dev/null 2>&1 || true
    wait "$perf_pid" || true
    # Self time by symbol, then time including callees (which floe code the kernel's
    # work is done for); whitespace squeezed so the tables read in a terminal.
    {
      echo "## self"
      perf report -i "$OUT/perf-$label.data" --stdio --no-children --sort symbol -g none \
        --percent-limit 1.5 2>/dev/null | grep -v '^#' | grep -v '^$' | head -40
      echo "## children"
      perf report -i "$OUT/perf-$label.data" --stdio --children --sort symbol -g none \
        --percent-limit 4 2>/dev/null | grep -v '^#' | grep -v '^$' | head -80
    } | sed 's/  */ /g' >"$OUT/perf-$label.txt" || true
    rm -f "$OUT/perf-$label.data"
    stop_server
    forget "profile-$label"
  }
  profile W1 "${W1[@]}"
  profile W3 --partitions 100 --record-size 100 --batch 1000 --producers 64 "${COMMON[@]}"
  profile W4 "${W4[@]}"
  profile W6 --partitions 1000 --record-size 1024 --batch 100 --producers 64 "${COMMON[@]}"
  profile W7 "${W7[@]}"
fi

python3 scripts/bench_report.py "$RESULTS" >"$OUT/report.md"
cat "$OUT/report.md"
echo "bench: results in $OUT" >&2
