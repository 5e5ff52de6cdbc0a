#!/usr/bin/env bash
# Installs what building floe needs on a fresh Debian machine and points cargo at a target
# directory that survives between runs. Sourced by the other scripts.
set -euo pipefail

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/floe/target}"
mkdir -p "$CARGO_TARGET_DIR"

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "bootstrap: installing the Rust toolchain with rustup" >&2
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
fi

# Debian packages, installed only when missing.
apt_install() {
  local SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  if [ -z "${FLOE_APT_UPDATED:-}" ]; then
    $SUDO apt-get update -qq
    export FLOE_APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

# gcc builds the C parts of the zstd and lz4 codecs and aws-lc; protoc builds etcd-client's
# protobufs.
if ! command -v cc >/dev/null 2>&1; then
  echo "bootstrap: installing a C compiler" >&2
  apt_install build-essential
fi
if ! command -v protoc >/dev/null 2>&1; then
  echo "bootstrap: installing protoc" >&2
  apt_install protobuf-compiler
fi

# moto, the S3-compatible server the cluster tests and the benchmark's S3 runs use, in a
# virtualenv of its own.
ensure_moto() {
  local venv="$HOME/.cache/floe/venv"
  if [ ! -x "$venv/bin/moto_server" ]; then
    echo "bootstrap: installing moto into $venv" >&2
    if ! python3 -m venv "$venv" >/dev/null 2>&1; then
      apt_install python3-venv
      python3 -m venv "$venv"
    fi
    "$venv/bin/pip" install -q "moto[server]>=5.1,<6"
  fi
  export FLOE_MOTO_BIN="$venv/bin/moto_server"
}

# The Helm library (Helm itself, run offline) and the Kubernetes schemas, for the chart
# checks; in the same virtualenv as moto.
ensure_chart_tools() {
  ensure_moto
  local venv="$HOME/.cache/floe/venv"
  if ! "$venv/bin/python" -c 'import helm_python, kubernetes_validate, yaml, openapi_spec_validator, promql_parser' >/dev/null 2>&1; then
    echo "bootstrap: installing helm-python-sdk, kubernetes-validate, openapi-spec-validator and promql-parser into $venv" >&2
    "$venv/bin/pip" install -q "helm-python-sdk==0.2.2" "kubernetes-validate==1.37.0" "pyyaml>=6" \
      "openapi-spec-validator==0.9.0" "promql-parser==0.12.0"
  fi
  # DuckDB with its httpfs extension from PyPI (no download at run time: it reads s3:// on
  # moto), pyarrow and pytz (DuckDB's timestamps with a zone): the export checks.
  if ! "$venv/bin/python" -c 'import duckdb, duckdb_extension_httpfs, pyarrow, pytz' >/dev/null 2>&1; then
    echo "bootstrap: installing duckdb, its httpfs extension and pyarrow into $venv" >&2
    "$venv/bin/pip" install -q "duckdb==1.5.5" "duckdb-extension-httpfs==1.5.5" \
      "pyarrow==26.0.1" "pytz"
  fi
  export FLOE_PYTHON="$venv/bin/python"
  ensure_promtool
}

# promtool, Prometheus's own rule engine, for the alerts' unit tests
# (tests/alerts/floe_test.yaml), built from the Go module proxy once (~2 GB of modules and a
# few minutes) into a GOPATH of its own. Needs Go (>= 1.24).
PROMTOOL_VERSION="v0.316.0" # Prometheus 3.x's module version
ensure_promtool() {
  local gopath="$HOME/.cache/floe/go"
  local marker="$gopath/promtool-$PROMTOOL_VERSION"
  if [ ! -x "$gopath/bin/promtool" ] || [ ! -e "$marker" ]; then
    if ! command -v go >/dev/null 2>&1; then
      echo "bootstrap: promtool needs Go 1.24 or newer (https://go.dev/dl), and none is on PATH" >&2
      return 1
    fi
    echo "bootstrap: building promtool $PROMTOOL_VERSION into $gopath/bin" >&2
    GOPATH="$gopath" GOFLAGS=-mod=mod go install \
      "github.com/prometheus/prometheus/cmd/promtool@$PROMTOOL_VERSION" >/dev/null
    touch "$marker"
  fi
  export FLOE_PROMTOOL="$gopath/bin/promtool"
}
