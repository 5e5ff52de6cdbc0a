#!/usr/bin/env bash
# Runs floe on its embedded default: 127.0.0.1:8080, data under ./floe-data.
# Extra arguments go to `floe serve`, e.g. scripts/run.sh --listen 0.0.0.0:8080
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh
cargo build --release --bin floe --bin floe-bench
exec "$CARGO_TARGET_DIR/release/floe" serve "$@"
