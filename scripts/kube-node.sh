#!/usr/bin/env bash
# Builds the binaries of a single-node Kubernetes v1.37.2 from pinned Go modules
# (tools/kube/node: go.mod + go.sum): kube-apiserver, kube-controller-manager,
# kube-scheduler, kubelet, kube-proxy, kubectl and agnhost (the upstream e2e suite's pod
# image binary), in one `go build`. Built once per machine into /var/tmp/weir-kube/node
# (override with WEIR_KUBE_DIR), cached by the pinned go.sum; everything comes from the Go
# module proxy. First build: 12-20 minutes on 2 cores (peak ~3 GB RSS).
set -euo pipefail
command -v go >/dev/null || { echo "kube-node.sh: go is required (the machine image has it)" >&2; exit 1; }
cd "$(dirname "$0")/.."
out="${WEIR_KUBE_DIR:-/var/tmp/weir-kube}/node"
mkdir -p "$out"
version=v1.37.2
# Binaries built from modules carry no version unless told (they would say v0.0.0-master).
ldflags="-X k8s.io/component-base/version.gitVersion=$version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37 -X k8s.io/client-go/pkg/version.gitVersion=$version"
# Cached by what decides the build: the pinned go.sum and the flags.
key=$(printf '%s\n%s\n' "$(sha256sum < tools/kube/node/go.sum)" "$ldflags" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$out/build.key" 2>/dev/null)" = "$key" ] && [ -x "$out/kubelet" ] && [ -x "$out/agnhost" ]; then
  exit 0
fi
echo "kube-node.sh: building the Kubernetes node binaries (once per machine, ~12-20 min on 2 cores)" >&2
tmp="$out.tmp"
rm -rf "$tmp" && mkdir -p "$tmp"
(cd tools/kube/node && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "$ldflags" -o "$tmp/" \
  k8s.io/kubernetes/cmd/kube-apiserver \
  k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler \
  k8s.io/kubernetes/cmd/kubelet \
  k8s.io/kubernetes/cmd/kube-proxy \
  k8s.io/kubernetes/cmd/kubectl \
  k8s.io/kubernetes/test/images/agnhost)
echo "$key" > "$tmp/build.key"
rm -rf "$out" && mv "$tmp" "$out"
ls "$out"
