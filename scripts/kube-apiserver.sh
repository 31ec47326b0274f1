#!/usr/bin/env bash
# A real kube-apiserver (Kubernetes v1.37.2) and etcd (v3.6.16) for the agent's Kubernetes
# tests, from pinned Go modules: etcd from tools/kube/etcd, kube-apiserver from the node's
# one build (scripts/kube-node.sh), so it is compiled once. Built once per machine into
# /var/tmp/weir-kube (override with WEIR_KUBE_DIR); later runs return at once.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${WEIR_KUBE_DIR:-/var/tmp/weir-kube}"
bash scripts/go-build.sh "etcd (~3 min on 2 cores)" tools/kube/etcd "$out/etcd.d" "" .
bash scripts/kube-node.sh
ln -sfn etcd.d/etcd "$out/etcd"
ln -sfn node/kube-apiserver "$out/kube-apiserver"
