#!/usr/bin/env bash
# Stops the LocalStack that start.sh started, via its pid file.
set -euo pipefail
# shellcheck source=SCRIPTDIR/common.sh
source "$(dirname "$0")/common.sh"
stop_pidfile "$LS_PIDFILE" LocalStack localstack
