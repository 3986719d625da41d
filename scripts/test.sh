#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit, integration and end-to-end tests.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked --all-targets
