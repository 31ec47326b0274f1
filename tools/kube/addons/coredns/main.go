// CoreDNS with only the plugins a test node needs: cluster DNS from the Kubernetes API,
// answered from cache, with health and readiness endpoints. Every other plugin (and
// every forwarder: the node's namespace cannot reach the outside) is left out.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/ready"
)

func init() {
	// The order the server runs them in (CoreDNS's plugin.cfg order).
	dnsserver.Directives = []string{"errors", "health", "ready", "cache", "kubernetes"}
}

func main() {
	coremain.Run()
}
