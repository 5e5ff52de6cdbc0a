#!/usr/bin/env bash
# Mutation testing of the core (cargo-mutants): every function body, operator and
# constant in floe-core and in the sequencer's state machine is broken in turn, and the
# unit tests must notice. Prints each missed mutant; docs/testing.md lists the score and the
# mutants that are equivalent (no test can tell them apart), with why.
#   scripts/mutants.sh            # floe-core and the state machine (about an hour here)
#   scripts/mutants.sh core       # floe-core only (about 20 minutes)
#   scripts/mutants.sh state      # the sequencer's state machine only
#   scripts/mutants.sh diff REF   # only mutants in lines changed since REF (quick)
# Builds in its own target directory ($CARGO_TARGET_DIR-mutants), so it neither waits on
# nor disturbs other builds. Not part of CI's default path: too slow for it.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/bootstrap.sh
if ! cargo mutants --version >/dev/null 2>&1; then
  cargo install --locked cargo-mutants@27.1.0
fi
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR}-mutants"
out="${FLOE_MUTANTS_OUT:-mutants-out}"
what="${1:-all}"
mkdir -p "$out"
status=0

core() {
  cargo mutants --no-shuffle --timeout 120 -p floe-core -o "$out/core" "$@" || status=$?
}
# The state machine's own tests: the sequencer's unit tests, without those that need a
# real etcd (cluster::), which test the log around the state, not the state.
state() {
  cargo mutants --no-shuffle --timeout 180 -p floe-sequencer \
    -f 'crates/floe-sequencer/src/state.rs' -f 'crates/floe-sequencer/src/state/*.rs' \
    -o "$out/state" "$@" -- --lib -- --skip cluster:: || status=$?
}

case "$what" in
  core) core ;;
  state) state ;;
  all) core; state ;;
  diff)
    base="${2:?usage: scripts/mutants.sh diff REF}"
    git diff "$base" >"$out.diff"
    core --in-diff "$out.diff"
    state --in-diff "$out.diff"
    ;;
  *) echo "usage: $0 [all|core|state|diff REF]" >&2; exit 2 ;;
esac
for missed in "$out"/*/mutants.out/missed.txt; do
  [ -s "$missed" ] && { echo "missed ($missed):"; cat "$missed"; }
done
exit "$status"
