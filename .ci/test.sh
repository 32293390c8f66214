#!/usr/bin/env bash
# The whole test suite, runnable on a fresh Debian machine that has only
# the Rust toolchain: installs what the tests need, then runs formatting,
# lints, the Rust tests (real redis-server processes on free ports), the
# JavaScript client's unit tests, the end-to-end tests of the demo page in
# Debian's headless Chromium, and the packaging checks.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# Debian packages the tests use; the package lists are refreshed first
# because a fresh machine's lists are stale.
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
# The load-balancer test runs two redcast processes behind a real haproxy.
command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
command -v node >/dev/null 2>&1 || need+=(nodejs)
# Debian's nodejs comes without npm (the e2e tests install playwright-core).
command -v npm >/dev/null 2>&1 || need+=(npm)
# The e2e tests drive Debian's Chromium; no browser is ever downloaded.
[ -x /usr/bin/chromium ] || need+=(chromium)
# promtool lints a live /metrics scrape; lintian checks the .deb.
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v lintian >/dev/null 2>&1 || need+=(lintian)
# The conformance run: python3 (summary, free ports), openssl (the TLS
# agent's certificate); wstest itself runs on pyenv's Python 2.7.
command -v python3 >/dev/null 2>&1 || need+=(python3)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
# cargo-fuzz builds libFuzzer (C++) through libfuzzer-sys.
command -v c++ >/dev/null 2>&1 || need+=(g++)
if [ "${#need[@]}" -gt 0 ]; then
  echo "== installing: ${need[*]}"
  $SUDO apt-get update
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}"
  # Only promtool is wanted from the prometheus package: on a machine with
  # systemd, stop the server it starts (it would hold port 9090).
  if [[ " ${need[*]} " == *" prometheus "* ]] && [ -d /run/systemd/system ]; then
    $SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
fi
# A system Redis started by the package is not used by the tests (each
# test starts its own on a free port), but it must not be required either.

echo "== cargo fmt"
cargo fmt --all -- --check

echo "== cargo clippy"
cargo clippy --locked --workspace --all-targets -- -D warnings

echo "== cargo test"
cargo test --locked --workspace --all-targets

echo "== dependency policy (deny.toml: bans, licenses, sources)"
command -v cargo-deny >/dev/null 2>&1 || cargo install cargo-deny --locked --version 0.20.2
cargo deny --locked check bans licenses sources

echo "== client unit tests"
node --test client/test/

echo "== release build"
cargo build --locked --release

echo "== WebSocket conformance (Autobahn TestSuite sections 1-7 and 10, both write paths)"
SECTIONS="1 2 3 4 5 6 7 10" REDCAST_BIN=target/release/redcast bash conformance/run.sh

echo "== fuzzing (every cargo-fuzz target for 30 seconds)"
bash fuzz/run.sh 30

echo "== client end-to-end tests (headless Chromium, real redcast and Redis)"
(cd client/e2e && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund)
# The backend examples run in client/e2e/examples.test.mjs, against the real gateway.
python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -r examples/python/requirements.txt
(cd examples/node && npm ci --no-audit --no-fund)
REDCAST_BIN=target/release/redcast node --test client/e2e/

echo "== packaging checks"
REDCAST_BIN=target/release/redcast bash packaging/check.sh

echo "== debian package: build, lintian, install, check-config as the service user"
command -v cargo-deb >/dev/null 2>&1 || cargo install cargo-deb --locked --version 3.6.2
deb=$(cargo deb --locked --no-build | tail -n 1)
lintian --fail-on error "$deb"
$SUDO dpkg -i "$deb"
$SUDO runuser -u redcast -- /usr/bin/redcast check-config --config /etc/redcast/redcast.toml >/dev/null
# Leave the machine as it was: the package was only under test.
$SUDO dpkg --purge redcast

echo "== all checks passed"
