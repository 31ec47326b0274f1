#!/usr/bin/env bash
# A real kube-apiserver (Kubernetes v1.37.2) and etcd (v3.6.16) for the agent's Kubernetes
# tests, from pinned Go modules: etcd from tools/kube/etcd, kube-apiserver from the node's
# one build (scripts/kube-node.sh, tools/kube/node), so it is compiled once. Built once per
# machine into /var/tmp/weir-kube (override with WEIR_KUBE_DIR); later runs find the
# binaries and return at once. Everything comes from the Go module proxy.
set -euo pipefail
command -v go >/dev/null || { echo "kube-apiserver.sh: go is required (the machine image has it)" >&2; exit 1; }
cd "$(dirname "$0")/.."
out="${WEIR_KUBE_DIR:-/var/tmp/weir-kube}"
mkdir -p "$out"
# Cached by the pinned module set: rebuilt only when go.sum changes.
if ! [ -x "$out/etcd" ] || ! cmp -s "$out/etcd.go.sum" tools/kube/etcd/go.sum; then
  echo "kube-apiserver.sh: building etcd (once per machine, ~3 min)" >&2
  (cd tools/kube/etcd && GOFLAGS=-mod=mod go build -trimpath -o "$out/etcd.tmp" . && mv "$out/etcd.tmp" "$out/etcd")
  cp tools/kube/etcd/go.sum "$out/etcd.go.sum"
fi
bash scripts/kube-node.sh
ln -sf node/kube-apiserver "$out/kube-apiserver"
