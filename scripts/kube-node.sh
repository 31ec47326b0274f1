#!/usr/bin/env bash
# Builds the binaries of a single-node Kubernetes v1.37.2 from pinned Go modules
# (tools/kube/node: go.mod + go.sum): kube-apiserver, kube-controller-manager,
# kube-scheduler, kubelet, kube-proxy, kubectl and agnhost (the upstream e2e suite's pod
# image binary), in one `go build`. Built once per machine into /var/tmp/weir-kube/node
# (override with WEIR_KUBE_DIR), cached by the pinned go.sum. First build: 12-20 minutes on
# 2 cores (peak ~3 GB RSS).
set -euo pipefail
cd "$(dirname "$0")/.."
version=v1.37.2
# Binaries built from modules carry no version unless told (they would say v0.0.0-master).
ldflags="-X k8s.io/component-base/version.gitVersion=$version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37 -X k8s.io/client-go/pkg/version.gitVersion=$version"
bash scripts/go-build.sh "the Kubernetes node binaries (~12-20 min on 2 cores)" \
  tools/kube/node "${WEIR_KUBE_DIR:-/var/tmp/weir-kube}/node" "$ldflags" \
  k8s.io/kubernetes/cmd/kube-apiserver \
  k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler \
  k8s.io/kubernetes/cmd/kubelet \
  k8s.io/kubernetes/cmd/kube-proxy \
  k8s.io/kubernetes/cmd/kubectl \
  k8s.io/kubernetes/test/images/agnhost
