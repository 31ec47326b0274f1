#!/usr/bin/env bash
# The test command of the README and of CI: formatting, lints, every test.
#   bash scripts/test.sh          the full tier (CI): installs what the tests need, builds the
#                                 real kube-apiserver, runs the privileged lab tests (root)
#   bash scripts/test.sh --fast   everyday work: no installs, no Go builds, no root tests
set -euo pipefail
cd "$(dirname "$0")/.."
fast=false
[ "${1:-}" = "--fast" ] && fast=true
if ! $fast; then
  bash scripts/setup.sh
  # A real kube-apiserver and etcd for the agent's Kubernetes test (built once per machine).
  bash scripts/kube-apiserver.sh
else
  # The privileged tests say they were skipped, by name.
  export WEIR_FAST=1
fi
# Dependencies build once per machine: keep the target dir outside the clone.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/weir-target}"
cargo fmt --all -- --check
# The product binary alone (no lab), then everything with the lab.
cargo clippy -p weir --locked -- -D warnings
cargo clippy --workspace --all-targets --all-features --locked -- -D warnings
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --all-features --locked 2>&1 | tee "$log" || status=$?
# cargo prints one result line per test binary, the last often a crate's empty doc-tests;
# close with the totals over all of them.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;?$/) p += $i; if ($(i+1) ~ /^failed;?$/) f += $i } }
     END { printf "total: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
