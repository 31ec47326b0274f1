// The network-policy-api conformance suite for AdminNetworkPolicy and BaselineAdminNetworkPolicy (policy.networking.k8s.io/v1alpha1), at the module version go.mod pins
// (v0.1.7), built as one test binary (`go test -c`) that scripts/netpol-api.sh runs against
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

	api "sigs.k8s.io/network-policy-api/apis/v1alpha1"
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
		TimeoutConfig:              timeouts.TimeoutConfig{RequestTimeout: *requestTimeout},
	})
	s.Setup(t)
	s.Run(t, tests.ConformanceTests)
}
