#!/usr/bin/env bash
# The main job: the lesson for real. Installs what is missing (nftables, iproute2,
# redis-server), builds weir and the todos API, and runs `weir demo`: real pods (network
# namespaces), a real Redis, the three policies enforced by weir's nftables dataplane, real
# clients checking each claim of the lesson. Needs root. Extra arguments go to `weir demo`
# (e.g. --keep to explore the lab afterwards).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh demo
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/weir-target}"
if [ ! -x "$CARGO_TARGET_DIR/release/todos" ]; then
  echo "demo: building weir (with the lab) and the todos API in release mode; on a fresh" >&2
  echo "demo: 2-core machine the first build takes 10-30 minutes, later runs a few seconds." >&2
fi
cargo build --release --locked -p weir --features lab -p todos
exec "$CARGO_TARGET_DIR/release/weir" demo --todos "$CARGO_TARGET_DIR/release/todos" "$@"
