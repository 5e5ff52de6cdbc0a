# Shared by scripts/bench-*.sh (sourced from the repository root, with WORK set to a
# scratch folder): release binaries, a free port, and one fresh `floe serve` at a time.
source scripts/bootstrap.sh
cargo build --release --bin floe --bin floe-bench
FLOE="$CARGO_TARGET_DIR/release/floe"
BENCH="$CARGO_TARGET_DIR/release/floe-bench"
PID=""

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_floe PORT [serve flags...]: serves from an empty $WORK/data; sets PID once
# /healthz answers (or after 10 s).
start_floe() {
  local p="$1"
  shift
  rm -rf "$WORK/data"
  "$FLOE" serve --data-dir "$WORK/data" --listen "127.0.0.1:$p" "$@" >"$WORK/serve.log" 2>&1 &
  PID=$!
  for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$p/healthz" >/dev/null 2>&1 && break
    sleep 0.1
  done
}

stop_floe() {
  kill "$PID"
  wait "$PID" 2>/dev/null || true
  PID=""
}
