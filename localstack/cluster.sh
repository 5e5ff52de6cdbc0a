#!/usr/bin/env bash
# A 3-broker floe cluster on one machine without containers: one etcd member, LocalStack S3
# (via start.sh) and three `floe serve` processes on 127.0.0.1:8081..8083.
#   localstack/cluster.sh [start]   start everything from empty state
#   localstack/cluster.sh stop      stop brokers, LocalStack and etcd
#   localstack/cluster.sh status    show what is running
# LocalStack's community edition loses its S3 objects when it stops, so `start` also wipes
# the etcd data and the broker data dirs: metadata never points at objects that are gone.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
# shellcheck source=SCRIPTDIR/common.sh
source "$HERE/common.sh"

BASE="$HOME/.cache/floe"
ETCD_DIR="${FLOE_ETCD_DIR:-$BASE/etcd}"
ETCD_PORT="${FLOE_ETCD_PORT:-2379}"
ETCD_PEER=$((ETCD_PORT + 1))
ETCD_URL="http://127.0.0.1:$ETCD_PORT"
CLUSTER_DIR="${FLOE_CLUSTER_DIR:-$BASE/cluster}"
BROKERS=(1 2 3)
broker_port() { echo $((8080 + $1)); }

# FLOE_BIN, else the release binary in ./target or in the shared CARGO_TARGET_DIR that
# scripts/bootstrap.sh sets up (~/.cache/floe/target).
find_floe() {
  local c
  for c in ${FLOE_BIN:+"$FLOE_BIN"} "$REPO/target/release/floe" \
    "${CARGO_TARGET_DIR:-$BASE/target}/release/floe"; do
    if [ -x "$c" ]; then echo "$c"; return 0; fi
  done
  echo "cluster: no floe binary; build one with" >&2
  echo "  (source scripts/bootstrap.sh && cargo build --release --bin floe)   or set FLOE_BIN" >&2
  return 1
}

start_etcd() {
  if ! command -v etcd >/dev/null 2>&1; then
    echo "cluster: installing etcd (Debian package etcd-server)"
    as_root apt-get update -qq
    as_root apt-get install -y -qq etcd-server >/dev/null
  fi
  # On a systemd machine the package may start its own etcd on 2379.
  if port_busy "127.0.0.1:$ETCD_PORT" || port_busy "127.0.0.1:$ETCD_PEER"; then
    echo "cluster: port $ETCD_PORT or $ETCD_PEER is taken (a system etcd? try" \
      "'sudo systemctl stop etcd'), or set FLOE_ETCD_PORT" >&2
    return 1
  fi
  mkdir -p "$ETCD_DIR"
  rm -rf "$ETCD_DIR/member"   # etcd's own state; see the header for why it starts empty
  nohup etcd --name floe-dev --data-dir "$ETCD_DIR" \
    --listen-client-urls "$ETCD_URL" --advertise-client-urls "$ETCD_URL" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER" \
    --initial-cluster "floe-dev=http://127.0.0.1:$ETCD_PEER" \
    >"$CLUSTER_DIR/etcd.log" 2>&1 </dev/null &
  echo $! >"$CLUSTER_DIR/etcd.pid"
  wait_until 30 "$CLUSTER_DIR/etcd.pid" "$CLUSTER_DIR/etcd.log" etcd http_ok "$ETCD_URL/health"
  echo "cluster: etcd up on $ETCD_URL"
}

start_broker() {
  local n=$1 floe=$2 port
  port=$(broker_port "$n")
  if port_busy "127.0.0.1:$port"; then
    echo "cluster: 127.0.0.1:$port is taken" >&2
    return 1
  fi
  rm -rf "$CLUSTER_DIR/b$n" && mkdir -p "$CLUSTER_DIR/b$n"
  AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 \
    AWS_ENDPOINT_URL="http://$LS_ADDR" \
    nohup "$floe" serve --listen "127.0.0.1:$port" --advertise "127.0.0.1:$port" \
    --broker-id "$n" --data-dir "$CLUSTER_DIR/b$n" --store "s3://$BUCKET/cluster1" \
    --etcd "$ETCD_URL" --cluster dev \
    >"$CLUSTER_DIR/b$n.log" 2>&1 </dev/null &
  echo $! >"$CLUSTER_DIR/b$n.pid"
}

cmd_start() {
  local floe n
  floe=$(find_floe)
  mkdir -p "$CLUSTER_DIR"
  if pid_alive "$CLUSTER_DIR/etcd.pid" etcd || pid_alive "$LS_PIDFILE" localstack; then
    echo "cluster: already (partly) running; run '$0 stop' first" >&2
    exit 1
  fi
  start_etcd
  "$HERE/start.sh" >/dev/null   # its instructions are for a single broker; ours follow
  echo "cluster: LocalStack S3 up on http://$LS_ADDR, bucket $BUCKET"
  for n in "${BROKERS[@]}"; do start_broker "$n" "$floe"; done
  for n in "${BROKERS[@]}"; do
    wait_until 60 "$CLUSTER_DIR/b$n.pid" "$CLUSTER_DIR/b$n.log" "broker $n" \
      http_ok "http://127.0.0.1:$(broker_port "$n")/healthz"
    echo "cluster: broker $n up on http://127.0.0.1:$(broker_port "$n")"
  done
  echo
  echo "Logs and pid files: $CLUSTER_DIR (LocalStack: $LS_LOG). Try:"
  echo "  $floe topics -s http://127.0.0.1:8081 create demo -p 6"
  echo "  curl -s http://127.0.0.1:8082/v1/cluster"
  echo "Stop everything with: $0 stop"
}

cmd_stop() {
  local n
  for n in "${BROKERS[@]}"; do
    stop_pidfile "$CLUSTER_DIR/b$n.pid" "broker $n" serve
  done
  "$HERE/stop.sh"
  stop_pidfile "$CLUSTER_DIR/etcd.pid" etcd etcd
}

cmd_status() {
  local n
  for n in "${BROKERS[@]}"; do
    pid_alive "$CLUSTER_DIR/b$n.pid" serve && echo "broker $n: up" || echo "broker $n: down"
  done
  pid_alive "$LS_PIDFILE" localstack && echo "localstack: up" || echo "localstack: down"
  pid_alive "$CLUSTER_DIR/etcd.pid" etcd && echo "etcd: up" || echo "etcd: down"
}

case "${1:-start}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *) echo "usage: $0 [start|stop|status]" >&2; exit 2 ;;
esac
