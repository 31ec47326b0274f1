//go:build tools

// The node's add-ons, pinned by this module: helm (the lesson's chart is installed with
// it) and CoreDNS (cluster DNS, so the lesson's pods find redis-<release> by name).
// scripts/kube-addons.sh builds both in one `go build`, cached per machine by go.sum.
package tools

import (
	_ "helm.sh/helm/v3/cmd/helm"
)
