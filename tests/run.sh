#!/usr/bin/env bash
# Runs the whole test suite from a fresh clone: formatting, lints, unit and integration tests.
# Everything the tests need is built or started here; nothing is assumed installed beyond a
# Rust toolchain (later suites add their services to this script).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy (warnings are errors)"
cargo clippy --locked --all-targets -- -D warnings

echo "==> cargo test"
cargo test --locked --all-targets
