#!/usr/bin/env bash
# Builds a real kube-apiserver (Kubernetes v1.37.2) and etcd (v3.6.16) from pinned Go modules
# (tools/kube/*: go.mod + go.sum) for the agent's Kubernetes tests. Built once per machine into
# /var/tmp/weir-kube (override with WEIR_KUBE_DIR); later runs find the binaries and return at
# once. Everything comes from the Go module proxy. First build: about 10 minutes on 2 cores.
set -euo pipefail
command -v go >/dev/null || { echo "kube-apiserver.sh: go is required (the machine image has it)" >&2; exit 1; }
cd "$(dirname "$0")/.."
out="${WEIR_KUBE_DIR:-/var/tmp/weir-kube}"
mkdir -p "$out"
build() { # name dir
  # Cached by the pinned module set: rebuilt only when go.sum changes.
  if [ -x "$out/$1" ] && cmp -s "$out/$1.go.sum" "tools/kube/$2/go.sum"; then return; fi
  echo "kube-apiserver.sh: building $1 (once per machine)" >&2
  (cd "tools/kube/$2" && GOFLAGS=-mod=mod go build -trimpath -o "$out/$1.tmp" . && mv "$out/$1.tmp" "$out/$1")
  cp "tools/kube/$2/go.sum" "$out/$1.go.sum"
}
build etcd etcd
build kube-apiserver apiserver
