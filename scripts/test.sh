#!/usr/bin/env bash
# Runs every test: unit, property and the HTTP integration tests against real `floe serve`
# processes. Installs what is missing first.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh
cargo build --bin floe
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi
