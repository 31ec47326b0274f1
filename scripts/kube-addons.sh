#!/usr/bin/env bash
# Builds the real node's add-ons from one pinned Go module (tools/kube/addons: go.mod +
# go.sum): helm v3.22.0 (installs the lesson's chart) and CoreDNS v1.15.0 with only the
# kubernetes, cache, errors, health and ready plugins (cluster DNS: the lesson's pods
# reach redis-<release> by name). One `go build`, once per machine into
# /var/tmp/weir-kube/addons (override with WEIR_KUBE_DIR), cached by go.sum. First build:
# about 5 minutes on 2 cores.
set -euo pipefail
command -v go >/dev/null || { echo "kube-addons.sh: go is required (the machine image has it)" >&2; exit 1; }
cd "$(dirname "$0")/.."
out="${WEIR_KUBE_DIR:-/var/tmp/weir-kube}/addons"
ldflags="-X helm.sh/helm/v3/internal/version.version=v3.22.0"
key=$(printf '%s\n%s\n' "$(sha256sum < tools/kube/addons/go.sum)" "$ldflags" | sha256sum | cut -d' ' -f1)
if [ "$(cat "$out/build.key" 2>/dev/null)" = "$key" ] && [ -x "$out/helm" ] && [ -x "$out/coredns" ]; then
  exit 0
fi
echo "kube-addons.sh: building helm and CoreDNS (once per machine, ~5 min on 2 cores)" >&2
tmp="$out.tmp"
rm -rf "$tmp" && mkdir -p "$tmp"
(cd tools/kube/addons && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "$ldflags" -o "$tmp/" \
  helm.sh/helm/v3/cmd/helm ./coredns)
echo "$key" > "$tmp/build.key"
rm -rf "$out" && mv "$tmp" "$out"
ls "$out"
