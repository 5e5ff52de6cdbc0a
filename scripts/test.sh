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
ensure_moto
# The chart checks (Helm itself, offline, and the Kubernetes 1.31 schemas); the process
# test that runs the chart's rendered broker finds this python through FLOE_PYTHON.
ensure_chart_tools
"$FLOE_PYTHON" scripts/chart_check.py
# The HTTP API's description is valid OpenAPI 3.1 (its routes are checked against the
# router by a unit test).
"$FLOE_PYTHON" -c 'from openapi_spec_validator import validate
from openapi_spec_validator.readers import read_from_filename
validate(read_from_filename("crates/floe-server/openapi.json")[0])
print("openapi.json: valid OpenAPI 3.1")'

# The process tests drive the floe binary; the crash-between-upload-and-commit test needs
# its test-only failpoints, which release builds never have.
cargo build --bin floe --bin floe-bench --features floe-cli/failpoints
# The container image: built offline with podman around that binary (stripped), run
# read-only as uid 10001, produced to and fetched from, stopped with SIGTERM.
FLOE_BIN="$CARGO_TARGET_DIR/debug/floe" scripts/image_check.sh
# The README's tours, read from README.md and run as a new user would: the curl and CLI
# tours and the consumer-group tour on the embedded default, and "A cluster on one
# machine" (localstack/cluster.sh: etcd, LocalStack's S3 and three brokers on
# :8081-:8083; it installs LocalStack into a venv the first time).
FLOE_BIN="$CARGO_TARGET_DIR/debug/floe" "$FLOE_PYTHON" scripts/readme_check.py --cluster
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi
