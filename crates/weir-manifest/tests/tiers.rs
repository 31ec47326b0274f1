//! ClusterNetworkPolicy (v1alpha2), AdminNetworkPolicy and BaselineAdminNetworkPolicy
//! (v1alpha1): loaded into one model, and refused like the API server refuses them, with
//! every error located.

use weir_manifest::{load_str, Diagnostic, LoadOptions};
use weir_model::{Action, ClusterKind, ClusterPeer, ClusterPort, PodsIn, Protocol, Tier};

fn load(text: &str) -> weir_manifest::Loaded {
    load_str("tiers.yaml", text, LoadOptions::default()).unwrap_or_else(|e| panic!("{e}"))
}

mod common;
use common::single;

const ALL_KINDS: &str = r#"
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata:
  name: guard
spec:
  tier: Admin
  priority: 10
  subject:
    pods:
      namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: x}}
      podSelector: {matchLabels: {pod: a}}
  ingress:
  - name: pass-monitoring
    action: Pass
    from:
    - namespaces: {matchLabels: {role: monitoring}}
  - action: Deny
    from:
    - pods: {podSelector: {}}
    protocols:
    - tcp: {destinationPort: {number: 80}}
    - udp: {destinationPort: {range: {start: 5000, end: 5010}}}
    - destinationNamedPort: http
  egress:
  - action: Accept
    to:
    - networks: ["10.0.0.0/8", "fd00::/8"]
    - nodes: {matchLabels: {role: infra}}
---
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata:
  name: floor
spec:
  tier: Baseline
  priority: 0
  subject: {namespaces: {}}
  ingress:
  - action: Deny
    from: [{namespaces: {}}]
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: AdminNetworkPolicy
metadata:
  name: legacy
spec:
  priority: 3
  subject: {namespaces: {matchLabels: {env: prod}}}
  egress:
  - name: dns
    action: Allow
    to: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {k8s-app: kube-dns}}}}]
    ports:
    - portNumber: {protocol: UDP, port: 53}
    - portRange: {start: 8000, end: 8080}
    - namedPort: metrics
---
apiVersion: policy.networking.k8s.io/v1alpha1
kind: BaselineAdminNetworkPolicy
metadata:
  name: default
spec:
  subject: {namespaces: {}}
  ingress:
  - action: Deny
    from: [{namespaces: {}}]
"#;

#[test]
fn both_versions_load_into_one_model() {
    let loaded = load(ALL_KINDS);
    let c = &loaded.cluster.cluster_policies;
    assert_eq!(c.len(), 4);
    assert!(loaded.skipped.is_empty(), "{:?}", loaded.skipped);

    let guard = &c[0];
    assert_eq!(
        (guard.kind, guard.tier, guard.priority, guard.id().as_str()),
        (
            ClusterKind::ClusterNetworkPolicy,
            Tier::Admin,
            10,
            "ClusterNetworkPolicy/guard"
        )
    );
    assert_eq!(guard.origin.line, 2);
    let subject_pods = guard.subject.pods.as_ref().expect("a pods subject");
    assert_eq!(subject_pods.match_labels["pod"], "a");
    assert_eq!(guard.ingress.len(), 2);
    assert_eq!(
        (guard.ingress[0].name.as_str(), guard.ingress[0].action),
        ("pass-monitoring", Action::Pass)
    );
    assert_eq!(guard.ingress[0].ports, None, "no protocols: every port");
    assert_eq!(
        guard.ingress[1].ports.as_deref(),
        Some(
            &[
                ClusterPort::Range {
                    protocol: Protocol::Tcp,
                    start: 80,
                    end: 80
                },
                ClusterPort::Range {
                    protocol: Protocol::Udp,
                    start: 5000,
                    end: 5010
                },
                ClusterPort::Named("http".into()),
            ][..]
        )
    );
    assert_eq!(
        guard.ingress[1].peers,
        vec![ClusterPeer::Pods(PodsIn {
            namespaces: Default::default(),
            pods: Some(Default::default())
        })],
        "a pods peer without namespaceSelector means every namespace"
    );
    match &guard.egress[0].peers[..] {
        [ClusterPeer::Networks(nets), ClusterPeer::Nodes(sel)] => {
            assert_eq!(nets.len(), 2);
            assert_eq!(sel.match_labels["role"], "infra");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(guard.egress[0].action, Action::Accept);

    let floor = &c[1];
    assert_eq!((floor.tier, floor.priority), (Tier::Baseline, 0));
    assert_eq!(floor.subject.pods, None);

    let legacy = &c[2];
    assert_eq!(
        (legacy.kind, legacy.tier, legacy.egress[0].action),
        (ClusterKind::AdminNetworkPolicy, Tier::Admin, Action::Accept),
        "v1alpha1 Allow is Accept"
    );
    assert_eq!(
        legacy.egress[0].ports.as_deref().unwrap()[1],
        ClusterPort::Range {
            protocol: Protocol::Tcp,
            start: 8000,
            end: 8080
        },
        "portRange's protocol defaults to TCP"
    );
    let banp = &c[3];
    assert_eq!(
        (banp.kind, banp.tier),
        (ClusterKind::BaselineAdminNetworkPolicy, Tier::Baseline)
    );
}

const CNP_HEAD: &str = "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata:\n  name: p\nspec:\n  tier: Admin\n  priority: 1\n  subject: {namespaces: {}}\n";

#[test]
fn cluster_network_policy_errors_are_located() {
    // Audit mode is for NetworkPolicies: an audited cluster policy would be enforced, so it
    // is refused (enforce, the default, is fine).
    single(
        &CNP_HEAD.replace(
            "  name: p\n",
            "  name: p\n  annotations: {weir.dev/mode: audit}\n",
        ),
        5,
        17,
        "metadata.annotations[\"weir.dev/mode\"]",
        "a cluster-wide policy cannot be audited yet",
    );
    load(&CNP_HEAD.replace(
        "  name: p\n",
        "  name: p\n  annotations: {weir.dev/mode: enforce}\n",
    ));
    // v1alpha1's spelling in v1alpha2.
    single(
        &format!("{CNP_HEAD}  ingress:\n  - action: Allow\n    from: [{{namespaces: {{}}}}]\n"),
        10,
        5,
        "spec.ingress[0].action",
        "v1alpha2 spells it Accept",
    );
    single(
        &CNP_HEAD.replace("priority: 1", "priority: 1001"),
        7,
        3,
        "spec.priority",
        "between 0 and 1000",
    );
    single(
        &CNP_HEAD.replace("tier: Admin", "tier: admin"),
        6,
        3,
        "spec.tier",
        "must be Admin or Baseline",
    );
    single(
        &CNP_HEAD.replace(
            "subject: {namespaces: {}}",
            "subject: {namespaces: {}, pods: {podSelector: {}}}",
        ),
        8,
        3,
        "spec.subject",
        "not both",
    );
    // A peer with two fields, an ingress peer that only egress has, an empty range.
    single(
        &format!("{CNP_HEAD}  ingress:\n  - action: Deny\n    from:\n    - {{namespaces: {{}}, pods: {{podSelector: {{}}}}}}\n"),
        12,
        7,
        "spec.ingress[0].from[0]",
        "exactly one field, not namespaces and pods",
    );
    single(
        &format!(
            "{CNP_HEAD}  ingress:\n  - action: Deny\n    from:\n    - networks: [10.0.0.0/8]\n"
        ),
        12,
        7,
        "spec.ingress[0].from[0].networks",
        "ingress peers are namespaces or pods",
    );
    single(
        &format!("{CNP_HEAD}  egress:\n  - action: Deny\n    to: [{{networks: [10.0.0.0/8]}}]\n    protocols:\n    - tcp: {{destinationPort: {{range: {{start: 90, end: 90}}}}}}\n"),
        13,
        31,
        "spec.egress[0].protocols[0].tcp.destinationPort.range",
        "Start port must be less than End port",
    );
    single(
        &format!("{CNP_HEAD}  egress:\n  - action: Deny\n    to: [{{networks: [10.0.0.0/8]}}]\n    protocols:\n    - tcp: {{}}\n"),
        13,
        7,
        "spec.egress[0].protocols[0].tcp.destinationPort",
        "required",
    );
    // The CEL rule: no named ports towards addresses.
    single(
        &format!("{CNP_HEAD}  egress:\n  - action: Accept\n    to: [{{networks: [10.0.0.0/8]}}]\n    protocols: [{{destinationNamedPort: http}}]\n"),
        10,
        5,
        "spec.egress[0]",
        "cannot be set with namedPorts",
    );
    single(
        &format!("{CNP_HEAD}  egress:\n  - action: Accept\n    to: [{{networks: [not-a-cidr]}}]\n"),
        11,
        22,
        "spec.egress[0].to[0].networks[0]",
        "invalid CIDR",
    );
    single(
        &format!("{CNP_HEAD}  egress:\n  - action: Deny\n    to: []\n"),
        11,
        5,
        "spec.egress[0].to",
        "at least one peer",
    );
    // An unknown field is an error, as for every kind.
    single(
        &format!("{CNP_HEAD}  ingres: []\n"),
        9,
        3,
        "spec.ingres",
        "did you mean \"ingress\"",
    );
}

#[test]
fn version_one_alpha_one_errors_are_located() {
    let anp = "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\nmetadata:\n  name: p\nspec:\n  priority: 1\n  subject: {namespaces: {}}\n";
    single(
        &format!("{anp}  ingress:\n  - action: Accept\n    from: [{{namespaces: {{}}}}]\n"),
        9,
        5,
        "spec.ingress[0].action",
        "v1alpha1 spells it Allow",
    );
    single(
        &format!("{anp}  egress:\n  - action: Allow\n    to: [{{namespaces: {{}}}}]\n    ports: [{{portNumber: {{protocol: ICMP, port: 1}}}}]\n"),
        11,
        27,
        "spec.egress[0].ports[0].portNumber.protocol",
        "must be TCP, UDP or SCTP",
    );
    let banp = "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: BaselineAdminNetworkPolicy\nmetadata:\n  name: other\nspec:\n  subject: {namespaces: {}}\n";
    single(banp, 4, 3, "metadata.name", "metadata.name=\"default\"");
    let banp = banp.replace("name: other", "name: default");
    single(
        &format!("{banp}  ingress:\n  - action: Pass\n    from: [{{namespaces: {{}}}}]\n"),
        8,
        5,
        "spec.ingress[0].action",
        "must be Allow, Deny",
    );
}

#[test]
fn domain_names_load_with_a_warning_that_they_are_not_enforced() {
    let text = format!(
        "{CNP_HEAD}  egress:\n  - action: Accept\n    to: [{{domainNames: [\"*.example.com\"]}}]\n"
    );
    let loaded = load(&text);
    let w: Vec<&Diagnostic> = loaded
        .warnings
        .iter()
        .filter(|d| d.field == "spec.egress[0].to[0].domainNames")
        .collect();
    assert_eq!(w.len(), 1, "{:#?}", loaded.warnings);
    assert!(w[0].message.contains("not enforced"), "{}", w[0].message);
    // Only Accept rules may name domains.
    single(
        &text.replace("action: Accept", "action: Deny"),
        11,
        5,
        "spec.egress[0].to",
        "only supported in Accept",
    );
}

#[test]
fn nodes_load_with_their_addresses() {
    let loaded = load(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: node-0\n  labels: {role: infra}\nstatus:\n  addresses:\n  - {type: InternalIP, address: 192.168.1.10}\n  - {type: Hostname, address: node-0}\n  - {type: InternalIP, address: fd00::10}\n",
    );
    let n = &loaded.cluster.nodes[0];
    assert_eq!(n.name, "node-0");
    assert_eq!(n.labels["role"], "infra");
    assert_eq!(
        n.addresses,
        vec![
            "192.168.1.10".parse::<std::net::IpAddr>().unwrap(),
            "fd00::10".parse().unwrap()
        ]
    );
}
