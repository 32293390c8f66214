#!/usr/bin/env bash
# The whole test suite, runnable on a fresh Debian machine that has only
# the Rust toolchain: installs what the tests need, then runs formatting,
# lints, the Rust tests (real redis-server processes on free ports), the
# JavaScript client's unit tests and the packaging checks.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# Debian packages the tests use; the package lists are refreshed first
# because a fresh machine's lists are stale.
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v node >/dev/null 2>&1 || need+=(nodejs)
if [ "${#need[@]}" -gt 0 ]; then
  echo "== installing: ${need[*]}"
  $SUDO apt-get update
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}"
fi
# A system Redis started by the package is not used by the tests (each
# test starts its own on a free port), but it must not be required either.

echo "== cargo fmt"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --locked --all-targets -- -D warnings

echo "== cargo test"
cargo test --locked --all-targets

echo "== client unit tests"
node --test client/test/

echo "== packaging checks"
cargo build --locked --release
REDCAST_BIN=target/release/redcast bash packaging/check.sh

echo "== all checks passed"
