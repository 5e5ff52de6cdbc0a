#!/usr/bin/env bash
# Installs LocalStack (community edition, host mode: no container engine needed) into a
# private Python venv at $FLOE_LOCALSTACK_VENV (default ~/.cache/floe/localstack-venv).
# Does nothing when the pinned version is already there.
set -euo pipefail
# shellcheck source=SCRIPTDIR/common.sh
source "$(dirname "$0")/common.sh"

# Newer LocalStack releases need Python 3.12 or an auth token, so the version is pinned; the
# other pins keep its dependencies on versions that work with it (see ../shared/TOOLING.md).
PACKAGES=(
  "localstack-core[runtime]==$LOCALSTACK_VERSION"
  "cbor2<5.7"
  "cryptography==44.0.3"
  "pyopenssl==24.3.0"
  "service_identity<25"
)

installed_version() {
  "$VENV/bin/python" -c \
    'import importlib.metadata as m, localstack; print(m.version("localstack-core"))' \
    2>/dev/null || true
}

if [ -x "$VENV/bin/python" ] && [ "$(installed_version)" = "$LOCALSTACK_VERSION" ]; then
  echo "install: LocalStack $LOCALSTACK_VERSION already in $VENV"
  exit 0
fi

# Debian splits venv support (ensurepip) into python3-venv; a bare `python3 -m venv` then
# fails half-way, so test for ensurepip itself.
if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
  echo "install: installing python3 and python3-venv with apt-get" >&2
  as_root apt-get update -qq
  as_root apt-get install -y -qq python3 python3-venv >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "install: creating venv $VENV"
  mkdir -p "$(dirname "$VENV")"
  python3 -m venv "$VENV"
fi

echo "install: pip-installing LocalStack $LOCALSTACK_VERSION (a minute or two)"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "${PACKAGES[@]}"

# start.sh creates the bucket with boto3; localstack-core depends on it, but make sure.
if ! "$VENV/bin/python" -c 'import boto3' 2>/dev/null; then
  "$VENV/bin/python" -m pip install -q boto3
fi

echo "install: LocalStack $(installed_version) ready in $VENV"
