#!/usr/bin/env bash
# Installs what weir and its tests need on a fresh machine; does nothing when it is all there.
set -euo pipefail
missing=()
command -v cargo >/dev/null || { echo "setup: cargo (Rust stable) is required" >&2; exit 1; }
for tool in rustfmt clippy-driver; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ] && command -v rustup >/dev/null; then
  rustup component add rustfmt clippy
fi
# Debian packages, per tier (`setup.sh demo` for the demo, no argument for the tests):
# nft and ip for the lab and the dataplane, redis-server for the todos demo; the tests add
# iperf3 for the throughput benchmark, chromium to render the HTML report in a test (the
# largest: ~150 packages), git for `weir diff --base-ref`, conntrack for the agent's
# --cut-established, curl and openssl for the real kube-apiserver test.
packages=(nftables iproute2 redis-server)
if [ "${1:-}" != demo ]; then
  packages+=(conntrack iperf3 chromium git curl openssl)
fi
need=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
