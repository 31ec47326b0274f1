#!/usr/bin/env bash
# The seed demo: the lesson's todos app (examples/todos) under its three policies,
# analysed by weir — the matrix, the flows, and why one connection is allowed and one denied.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/weir-target}"
cargo build --release --locked -q -p weir
weir="$CARGO_TARGET_DIR/release/weir"
step() { printf '\n\033[1m== %s\033[0m\n$ %s\n' "$1" "${*:2}"; "${@:2}" || true; }
step "Who reaches whom on HTTP and Redis (the per-endpoint truth table)" \
  "$weir" matrix examples/todos --ports TCP/80,TCP/6379 -o table
step "Allowed connections with their ports" "$weir" analyze examples/todos
step "Why the logic-tier client reaches Redis" \
  "$weir" explain examples/todos --from production/ubuntu --to production/redis --port TCP/6379
step "Why the personal client does not" \
  "$weir" explain examples/todos --from personal/ubuntu --to production/redis --port TCP/6379
