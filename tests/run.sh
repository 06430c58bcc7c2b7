#!/usr/bin/env bash
# Runs the whole test suite from a fresh clone: formatting, lints, unit and integration tests.
# Everything the tests need is installed or started here; nothing is assumed beyond a Rust
# toolchain, python3 and apt (the tests start moto_server themselves, on a free loopback port).
set -euo pipefail
cd "$(dirname "$0")/.."

# A real AWS API for the AWS provider's tests: moto, in a project-local virtualenv.
if [ ! -x .venv/bin/moto_server ]; then
  echo "==> installing moto[server] into .venv (PyPI)"
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check 'moto[server]>=5.1,<6'
fi

# Debian's prometheus package: promtool checks the daemon's /metrics exposition, and the
# metric-source tests start a real Prometheus (on a free loopback port, with data they write).
if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then
  echo "==> installing prometheus and promtool (Debian package prometheus)"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null \
    || { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
fi

# Debian's postgresql package: the postgres state backend's and HA enforce's tests start a
# throwaway cluster from its binaries (initdb + postgres under /usr/lib/postgresql/*/bin, on a
# free loopback port, as the `postgres` user when run as root).
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "==> installing PostgreSQL (Debian package postgresql)"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends postgresql >/dev/null \
    || { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends postgresql >/dev/null; }
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy (warnings are errors)"
cargo clippy --locked --all-targets -- -D warnings

echo "==> cargo test"
cargo test --locked --all-targets
