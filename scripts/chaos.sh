#!/usr/bin/env bash
# The fault-injection checker for MINUTES minutes (default 30): three brokers on a
# three-member etcd and moto, idempotent producers behind a proxy that cuts and delays
# answers, and a nemesis killing and pausing brokers, the sequencer leader and etcd members
# on a schedule drawn from the seed. Prints the report (faults by kind, records checked,
# lost / duplicated / out of order / inconsistent) and fails if anything was wrong.
#   scripts/chaos.sh 30                      # a new seed, printed
#   FLOE_TEST_SEED=123 scripts/chaos.sh 5    # replay a run's schedule
set -euo pipefail
cd "$(dirname "$0")/.."
minutes="${1:-30}"
source scripts/bootstrap.sh
if ! command -v etcd >/dev/null 2>&1; then
  apt_install etcd-server
fi
if ! command -v curl >/dev/null 2>&1; then
  apt_install curl
fi
ensure_moto
cargo build --bin floe --bin floe-bench --features floe-cli/failpoints
log="$(mktemp -t floe-chaos.XXXXXX)"
status=0
FLOE_CHAOS_SECONDS=$((minutes * 60)) cargo test -p floe-tests --test chaos -- --nocapture \
  >"$log" 2>&1 || status=$?
grep -E '^FLOE_TEST_SEED=|^chaos:|panicked|assertion' "$log" || true
echo "chaos: the full output is in $log" >&2
exit "$status"
