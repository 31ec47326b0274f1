#!/usr/bin/env bash
# The test command of the README and of CI: formatting, lints, every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Dependencies build once per machine: keep the target dir outside the clone.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/weir-target}"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
