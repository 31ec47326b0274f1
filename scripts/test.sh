#!/usr/bin/env bash
# The test command of the README and of CI: formatting, lints, every test, then weir on a
# real Kubernetes node.
#   bash scripts/test.sh            the full tier (CI): installs what the tests need, builds
#                                   the Kubernetes binaries (cached per machine), runs the
#                                   privileged lab tests, then scripts/real-node.sh (root)
#   bash scripts/test.sh --no-node  the same without the real node stage (says so)
#   bash scripts/test.sh --fast     everyday work: no installs, no Go builds, no root tests
set -euo pipefail
cd "$(dirname "$0")/.."
fast=false node=true
case "${1:-}" in
  --fast) fast=true node=false ;;
  --no-node) node=false ;;
esac
if ! $fast; then
  bash scripts/setup.sh
  # A real kube-apiserver and etcd for the agent's Kubernetes test (built once per machine).
  echo "test.sh: Go builds of the Kubernetes binaries, cached per machine (the first takes 15-25 min on 2 cores)" >&2
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
# --no-fail-fast: a failing test binary does not hide the results of the ones after it.
cargo test --workspace --all-features --locked --no-fail-fast 2>&1 | tee "$log" || status=$?
# cargo prints one result line per test binary, the last often a crate's empty doc-tests;
# close with the totals over all of them.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed;?$/) p += $i; if ($(i+1) ~ /^failed;?$/) f += $i } }
     END { printf "total: %d passed, %d failed\n", p, f }' "$log"
if $node; then
  bash scripts/real-node.sh || status=1
else
  echo "real node: not run (${1:-})" >&2
fi
exit "$status"
