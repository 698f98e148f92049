#!/usr/bin/env bash
# Sets up a fresh machine, checks that every crate uses each dependency it declares
# (cargo-machete; a false positive goes in that crate's [package.metadata.cargo-machete] with the
# reason), and runs the whole test suite: unit, property, storage-conformance and multi-node
# integration tests, then a smoke test of the local stack through the console. Every test starts
# what it needs on loopback and cleans up.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
# The transfer tests keep a GiB in the store; a failure on a nearly full disk shows here first.
df -h "${TMPDIR:-/tmp}" .
cargo machete
cargo test --workspace --locked --all-targets "$@"
# The cluster's timing is tested optimised too: a race hidden by slow code shows here.
cargo test -p cluster --release --locked --all-targets "$@"
deploy/local/smoke.sh
