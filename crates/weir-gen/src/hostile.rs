//! A cluster as an attacker would write it, for tests that feed it past validation straight
//! into the compiler: every name and label is nft syntax, quotes, newlines, braces, comment
//! marks, unicode or 10 KB long.

use weir_model::{
    Cluster, ContainerPort, Endpoint, EndpointKind, LabelSelector, Mode, Namespace, NamespaceScope,
    Operator, Origin, Peer, Policy, PortRef, PortRule, Protocol, Requirement, Rule,
    NAMESPACE_NAME_LABEL,
};

/// The hostile strings, one namespace, pod, label and policy each.
pub fn names() -> Vec<String> {
    vec![
        "z;insert rule inet weir ingress accept".into(),
        "x;add table ip injected".into(),
        "q\"; add table ip injected2; #".into(),
        "nl\nadd table ip injected3\n".into(),
        "brace} chain x { accept".into(),
        "hash # comment".into(),
        "back\\slash\\\"".into(),
        "ünïcødé ☃ \u{202e}".into(),
        "long-".repeat(2000),
    ]
}

/// Per hostile name: a namespace, a dual-stack pod (10.9.0.k, fd00:9::k) with a named port,
/// and a policy isolating both directions whose rule has a selector peer, an ipBlock peer, a
/// named port and a numbered one — so every kind of table object carries hostile text.
pub fn cluster() -> Cluster {
    let origin = Origin {
        file: "hostile".into(),
        line: 1,
        col: 1,
    };
    let mut c = Cluster::default();
    for (i, n) in names().into_iter().enumerate() {
        c.namespaces.push(Namespace {
            name: n.clone(),
            labels: [(NAMESPACE_NAME_LABEL.to_string(), n.clone())].into(),
            origin: None,
        });
        c.endpoints.push(Endpoint {
            namespace: n.clone(),
            name: n.clone(),
            kind: EndpointKind::Pod,
            labels: [(n.clone(), n.clone())].into(),
            ports: vec![ContainerPort {
                name: Some(n.clone()),
                protocol: Protocol::Tcp,
                port: 80,
            }],
            ips: vec![
                format!("10.9.0.{}", i + 1).parse().expect("an address"),
                format!("fd00:9::{}", i + 1).parse().expect("an address"),
            ],
            host_network: false,
            origin: origin.clone(),
        });
        let selector = LabelSelector {
            match_labels: [(n.clone(), n.clone())].into(),
            match_expressions: vec![Requirement {
                key: n.clone(),
                operator: Operator::In,
                values: vec![n.clone()],
            }],
        };
        let rule = Rule {
            peers: vec![
                Peer::Pods {
                    namespaces: NamespaceScope::Selector(selector.clone()),
                    pods: Some(selector),
                },
                Peer::IpBlock {
                    cidr: "192.0.2.0/24".parse().expect("a CIDR"),
                    except: vec![],
                },
            ],
            ports: vec![
                PortRule {
                    protocol: Protocol::Tcp,
                    port: Some(PortRef::Named(n.clone())),
                },
                PortRule {
                    protocol: Protocol::Udp,
                    port: Some(PortRef::Number { port: 53, end: 53 }),
                },
            ],
            origin: origin.clone(),
        };
        c.policies.push(Policy {
            namespace: n.clone(),
            name: n,
            pod_selector: LabelSelector::default(),
            isolates_ingress: true,
            isolates_egress: true,
            ingress: vec![rule.clone()],
            egress: vec![rule],
            // Every other one audited: its name then also reaches an audit chain's comments.
            mode: if i % 2 == 0 {
                Mode::Enforce
            } else {
                Mode::Audit
            },
            origin: origin.clone(),
        });
    }
    c
}
