// The network-policy-api conformance suite for ClusterNetworkPolicy (policy.networking.k8s.io/v1beta1, the same schema as v1alpha2), at the module version go.mod pins
// (v0.3.0), built as one test binary (`go test -c`) that scripts/netpol-api.sh runs against
// weir on the real node. The tests are the suite's own; this file only connects them to
// the cluster of the kubeconfig, as the module's conformance_test.go does.
package conformance

import (
	"flag"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/config"

	api "sigs.k8s.io/network-policy-api/apis/v1beta1"
	"sigs.k8s.io/network-policy-api/conformance/tests"
	timeouts "sigs.k8s.io/network-policy-api/conformance/utils/config"
	"sigs.k8s.io/network-policy-api/conformance/utils/flags"
	"sigs.k8s.io/network-policy-api/conformance/utils/suite"
)

// How long one probe waits for its connection. The suite's default (3 s) is for real
// networks; every pod here is on one machine, where an allowed connection answers within
// milliseconds, and a dropped probe waits this long twice (PokeServer checks again
// after the expected result is seen): 1 s keeps the run inside CI's budget.
var requestTimeout = flag.Duration("request-timeout", time.Second, "one probe's connection timeout")

// How often a probe is retried until it gives the expected result (the suite's default:
// 500 ms, which every probe waits at least once). A shorter wait polls more often; what
// passes does not change.
var pokeInterval = flag.Duration("poke-interval", 100*time.Millisecond, "retry interval of a probe")

func TestConformance(t *testing.T) {
	cfg, err := config.GetConfig()
	if err != nil {
		t.Fatalf("kubeconfig: %v", err)
	}
	c, err := client.New(cfg, client.Options{})
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	if err := api.Install(c.Scheme()); err != nil {
		t.Fatalf("scheme: %v", err)
	}
	clientset, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("clientset: %v", err)
	}
	s := suite.New(suite.Options{
		Client:                     c,
		ClientSet:                  clientset,
		KubeConfig:                 *cfg,
		Debug:                      *flags.ShowDebug,
		CleanupBaseResources:       *flags.CleanupBaseResources,
		SupportedFeatures:          suite.ParseSupportedFeatures(*flags.SupportedFeatures),
		ExemptFeatures:             suite.ParseSupportedFeatures(*flags.ExemptFeatures),
		EnableAllSupportedFeatures: *flags.EnableAllSupportedFeatures,
		TimeoutConfig:              timeouts.TimeoutConfig{RequestTimeout: *requestTimeout, PokeInterval: *pokeInterval},
	})
	s.Setup(t)
	s.Run(t, tests.ConformanceTests)
}
