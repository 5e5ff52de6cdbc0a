# shellcheck shell=bash disable=SC2034  # the variables are used by the scripts that source this
# Defaults and helpers shared by the scripts in this directory (sourced, not run).
# Every FLOE_LOCALSTACK_* / FLOE_BUCKET variable is read by these scripts only; none of them
# is a `floe serve` config key, so they can stay exported while brokers run.

VENV="${FLOE_LOCALSTACK_VENV:-$HOME/.cache/floe/localstack-venv}"
LS_ADDR="${FLOE_LOCALSTACK_ADDR:-127.0.0.1:4566}"
LS_DIR="${FLOE_LOCALSTACK_DIR:-$HOME/.cache/floe/localstack}"
LS_PIDFILE="$LS_DIR/localstack.pid"
LS_LOG="$LS_DIR/localstack.log"
BUCKET="${FLOE_BUCKET:-floe}"
LOCALSTACK_VERSION=4.9.2

# as_root CMD...: runs CMD directly when we are root, through sudo otherwise.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# pid_alive FILE [WORD]: true when FILE holds the pid of a live process. With WORD, the
# process's command line must also contain WORD, so a stale pid file whose pid the kernel
# has since handed to another program is not mistaken for ours.
pid_alive() {
  local pid
  [ -f "$1" ] || return 1
  pid=$(cat "$1")
  kill -0 "$pid" 2>/dev/null || return 1
  [ -z "${2:-}" ] || [ ! -r "/proc/$pid/cmdline" ] || tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$2"
}

# stop_pidfile FILE NAME [WORD]: TERM the process, KILL it if still up after 20 s.
stop_pidfile() {
  local file=$1 name=$2 pid _
  if ! pid_alive "$file" "${3:-}"; then
    echo "$name: not running"
    rm -f "$file"
    return 0
  fi
  pid=$(cat "$file")
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 40); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "$name: still up after 20 s, sending KILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
  echo "$name: stopped (pid $pid)"
}

# port_busy HOST:PORT: true when something already accepts connections there.
port_busy() {
  (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null
}

# http_ok URL: true when URL answers 2xx within 2 s. Python rather than curl: a fresh
# Debian machine may have no curl, and LocalStack needs Python anyway.
http_ok() {
  python3 - "$1" <<'PY'
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=2) as r:
        sys.exit(0 if 200 <= r.status < 300 else 1)
except Exception:
    sys.exit(1)
PY
}

# wait_until SECONDS PIDFILE LOG NAME CMD...: polls CMD every half second until it succeeds.
# Gives up early, showing the end of LOG, when the process in PIDFILE dies.
wait_until() {
  local secs=$1 pidfile=$2 log=$3 name=$4 _
  shift 4
  for _ in $(seq 1 $((secs * 2))); do
    if "$@"; then return 0; fi
    if ! pid_alive "$pidfile"; then
      echo "$name exited during startup; last lines of $log:" >&2
      tail -n 30 "$log" >&2 || true
      return 1
    fi
    sleep 0.5
  done
  echo "$name not ready after ${secs} s; see $log" >&2
  return 1
}
