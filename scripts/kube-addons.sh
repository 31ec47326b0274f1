#!/usr/bin/env bash
# Builds the real node's add-ons from one pinned Go module (tools/kube/addons: go.mod +
# go.sum): helm v3.22.0 (installs the lesson's chart) and CoreDNS v1.15.0 with only the
# kubernetes, cache, errors, health and ready plugins (cluster DNS: the lesson's pods
# reach redis-<release> by name). One `go build`, once per machine into
# /var/tmp/weir-kube/addons (override with WEIR_KUBE_DIR), cached by go.sum. First build:
# about 5 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/go-build.sh "helm and CoreDNS (~5 min on 2 cores)" \
  tools/kube/addons "${WEIR_KUBE_DIR:-/var/tmp/weir-kube}/addons" \
  "-X helm.sh/helm/v3/internal/version.version=v3.22.0" \
  helm.sh/helm/v3/cmd/helm ./coredns
