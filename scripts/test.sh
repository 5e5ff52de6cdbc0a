#!/usr/bin/env bash
# Runs every test: unit, property and the HTTP integration tests against real `floe serve`
# processes. Installs what is missing first.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh

# The cluster tests run real etcd and a real S3-compatible server (moto).
if ! command -v etcd >/dev/null 2>&1; then
  echo "test: installing etcd" >&2
  apt_install etcd-server
  # The package may start a system etcd on 2379; the tests use their own ports.
fi
if ! command -v curl >/dev/null 2>&1; then
  apt_install curl
fi
FLOE_VENV="$HOME/.cache/floe/venv"
if [ ! -x "$FLOE_VENV/bin/moto_server" ]; then
  echo "test: installing moto into $FLOE_VENV" >&2
  if ! python3 -m venv "$FLOE_VENV" >/dev/null 2>&1; then
    apt_install python3-venv
    python3 -m venv "$FLOE_VENV"
  fi
  "$FLOE_VENV/bin/pip" install -q "moto[server]>=5.1,<6"
fi
export FLOE_MOTO_BIN="$FLOE_VENV/bin/moto_server"

cargo build --bin floe
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi
