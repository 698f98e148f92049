#!/usr/bin/env bash
# Sets up a fresh machine and runs the whole test suite: unit, property, storage-conformance and
# multi-node integration tests, then a smoke test of the local stack through the console. Every
# test starts what it needs on loopback and cleans up.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
cargo test --workspace --locked --all-targets "$@"
deploy/local/smoke.sh
