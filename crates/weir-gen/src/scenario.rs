//! Random small clusters as a proptest strategy.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use proptest::prelude::*;
use proptest::sample::{select, subsequence};
use weir_model::{
    Action, Cluster, ClusterKind, ClusterPeer, ClusterPolicy, ClusterPort, ClusterRule,
    ContainerPort, Endpoint, EndpointKind, LabelSelector, Labels, Mode, Namespace, NamespaceScope,
    Node, Operator, Peer, PodsIn, Policy, PortKey, PortRef, PortRule, Protocol, Requirement, Rule,
    Tier, NAMESPACE_NAME_LABEL,
};

pub const NAMESPACES: [&str; 3] = ["x", "y", "z"];
const KEYS: [&str; 3] = ["app", "tier", "role"];
const VALUES: [&str; 3] = ["a", "b", "c"];
const PORT_NAMES: [&str; 3] = ["http", "dns", "metrics"];
const PORTS: [u16; 5] = [53, 80, 81, 443, 9090];

/// The probes worth asking about in generated scenarios: every port the generator uses.
pub fn probes() -> Vec<PortKey> {
    let mut out = Vec::new();
    for p in Protocol::ALL {
        for port in PORTS {
            out.push(PortKey::new(p, port));
        }
    }
    out
}

/// Outside addresses worth probing (some inside generated ipBlocks, some not).
pub fn outside_addresses() -> Vec<IpAddr> {
    [
        "10.0.0.250",
        "10.0.1.250",
        "10.1.0.1",
        "192.168.1.1",
        "fd00::99",
        "2001:db8::1",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect()
}

fn protocol() -> impl Strategy<Value = Protocol> {
    prop_oneof![
        Just(Protocol::Tcp),
        Just(Protocol::Udp),
        Just(Protocol::Sctp)
    ]
}

fn labels() -> impl Strategy<Value = Labels> {
    proptest::collection::btree_map(select(&KEYS[..]), select(&VALUES[..]), 0..3).prop_map(|m| {
        m.into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    })
}

fn requirement(keys: &'static [&'static str]) -> impl Strategy<Value = Requirement> {
    let op = prop_oneof![
        Just(Operator::In),
        Just(Operator::NotIn),
        Just(Operator::Exists),
        Just(Operator::DoesNotExist)
    ];
    (select(keys), op, subsequence(&VALUES[..], 1..3)).prop_map(|(key, operator, values)| {
        Requirement {
            key: key.to_string(),
            operator,
            values: match operator {
                Operator::In | Operator::NotIn => values.iter().map(|s| s.to_string()).collect(),
                _ => Vec::new(),
            },
        }
    })
}

fn selector() -> impl Strategy<Value = LabelSelector> {
    (
        labels().prop_map(|l| l.into_iter().take(1).collect()),
        proptest::collection::vec(requirement(&KEYS), 0..2),
    )
        .prop_map(|(match_labels, match_expressions)| LabelSelector {
            match_labels,
            match_expressions,
        })
}

/// Namespace selectors look at the namespace labels the generator sets, and the name label.
fn namespace_selector() -> impl Strategy<Value = LabelSelector> {
    prop_oneof![
        Just(LabelSelector::default()),
        select(&NAMESPACES[..]).prop_map(|n| LabelSelector {
            match_labels: [(NAMESPACE_NAME_LABEL.to_string(), n.to_string())].into(),
            match_expressions: vec![],
        }),
        select(&NAMESPACES[..]).prop_map(|n| LabelSelector {
            match_labels: Labels::new(),
            match_expressions: vec![Requirement {
                key: NAMESPACE_NAME_LABEL.to_string(),
                operator: Operator::NotIn,
                values: vec![n.to_string()],
            }],
        }),
        selector(),
    ]
}

fn ip_block() -> impl Strategy<Value = Peer> {
    let blocks: Vec<(&str, Vec<&str>)> = vec![
        ("10.0.0.0/16", vec![]),
        ("10.0.0.0/16", vec!["10.0.1.0/24"]),
        ("10.0.0.0/24", vec!["10.0.0.0/28", "10.0.0.128/25"]),
        ("10.0.1.0/24", vec![]),
        ("0.0.0.0/0", vec!["10.0.0.0/8"]),
        ("0.0.0.0/0", vec![]),
        ("10.0.0.4/30", vec![]),
        ("fd00::/64", vec![]),
        ("fd00::/64", vec!["fd00::/120"]),
    ];
    select(blocks).prop_map(|(cidr, except)| Peer::IpBlock {
        cidr: cidr.parse::<IpNet>().unwrap(),
        except: except.iter().map(|e| e.parse().unwrap()).collect(),
    })
}

fn peer() -> impl Strategy<Value = Peer> {
    prop_oneof![
        3 => selector().prop_map(|s| Peer::Pods { namespaces: NamespaceScope::PolicyNamespace, pods: Some(s) }),
        2 => namespace_selector().prop_map(|n| Peer::Pods { namespaces: NamespaceScope::Selector(n), pods: None }),
        2 => (namespace_selector(), selector())
            .prop_map(|(n, s)| Peer::Pods { namespaces: NamespaceScope::Selector(n), pods: Some(s) }),
        2 => ip_block(),
    ]
}

fn port_rule() -> impl Strategy<Value = PortRule> {
    let port = prop_oneof![
        1 => Just(None),
        3 => select(&PORTS[..]).prop_map(|p| Some(PortRef::Number { port: p, end: p })),
        1 => (select(&PORTS[..]), 0u16..400).prop_map(|(p, len)| Some(PortRef::Number { port: p, end: p.saturating_add(len) })),
        2 => select(&PORT_NAMES[..]).prop_map(|n| Some(PortRef::Named(n.to_string()))),
    ];
    (protocol(), port).prop_map(|(protocol, port)| PortRule { protocol, port })
}

fn rule() -> impl Strategy<Value = Rule> {
    (
        proptest::collection::vec(peer(), 0..3),
        proptest::collection::vec(port_rule(), 0..3),
    )
        .prop_map(|(peers, ports)| Rule {
            peers,
            ports,
            origin: Default::default(),
        })
}

/// One policy (its name left empty).
pub fn policy() -> impl Strategy<Value = Policy> {
    // policyTypes: absent (defaulted), [Ingress], [Egress], or both.
    let types = prop_oneof![
        Just(None),
        Just(Some((true, false))),
        Just(Some((false, true))),
        Just(Some((true, true)))
    ];
    (
        select(&NAMESPACES[..]),
        selector(),
        types,
        proptest::collection::vec(rule(), 0..3),
        proptest::collection::vec(rule(), 0..3),
        // One in five audited: the dataplane must then do what the rest alone would.
        proptest::bool::weighted(0.2),
    )
        .prop_map(|(ns, pod_selector, types, ingress, egress, audit)| {
            let (isolates_ingress, isolates_egress) = types.unwrap_or((true, !egress.is_empty()));
            Policy {
                namespace: ns.to_string(),
                name: String::new(),
                pod_selector,
                isolates_ingress,
                isolates_egress,
                ingress,
                egress,
                mode: if audit { Mode::Audit } else { Mode::Enforce },
                origin: Default::default(),
            }
        })
}

fn container_port() -> impl Strategy<Value = ContainerPort> {
    (
        proptest::option::of(select(&PORT_NAMES[..])),
        protocol(),
        select(&PORTS[..]),
    )
        .prop_map(|(name, protocol, port)| ContainerPort {
            name: name.map(str::to_string),
            protocol,
            port,
        })
}

/// One endpoint (its name left empty) and the host number its addresses derive from.
pub fn endpoint() -> impl Strategy<Value = (Endpoint, u8)> {
    (
        select(&NAMESPACES[..]),
        labels(),
        proptest::collection::vec(container_port(), 0..3),
        0u8..4, // 0: no IP, 1: IPv4, 2: dual-stack, 3: IPv6 only
        1u8..40,
        proptest::bool::weighted(0.08),
    )
        .prop_map(|(ns, labels, mut ports, stack, host, host_network)| {
            ports.sort();
            ports.dedup_by(|a, b| a.name.is_some() && a.name == b.name && a.protocol == b.protocol);
            let v4: IpAddr = format!("10.0.{}.{}", host % 2, host).parse().unwrap();
            let v6: IpAddr = format!("fd00::{host}").parse().unwrap();
            let ips = match stack {
                0 => vec![],
                1 => vec![v4],
                2 => vec![v4, v6],
                _ => vec![v6],
            };
            let e = Endpoint {
                namespace: ns.to_string(),
                name: String::new(),
                kind: EndpointKind::Pod,
                labels,
                ports,
                ips,
                host_network,
                origin: Default::default(),
            };
            (e, host)
        })
}

/// A random cluster: up to 3 namespaces, 1–7 endpoints, 0–5 policies.
pub fn cluster() -> impl Strategy<Value = Cluster> {
    (
        proptest::collection::vec(labels(), 3),
        proptest::collection::vec(endpoint(), 1..8),
        proptest::collection::vec(policy(), 0..6),
    )
        .prop_map(|(ns_labels, endpoints, policies)| {
            let namespaces = NAMESPACES
                .iter()
                .zip(ns_labels)
                .map(|(n, mut labels)| {
                    labels.insert(NAMESPACE_NAME_LABEL.to_string(), n.to_string());
                    Namespace {
                        name: n.to_string(),
                        labels,
                        origin: None,
                    }
                })
                .collect();
            // Distinct names and distinct addresses, as a real cluster has.
            let mut seen_hosts = BTreeMap::new();
            let mut eps = Vec::new();
            for (i, (mut e, host)) in endpoints.into_iter().enumerate() {
                if seen_hosts.insert(host, ()).is_some() {
                    e.ips.clear();
                }
                e.name = format!("pod{i}");
                eps.push(e);
            }
            let policies = policies
                .into_iter()
                .enumerate()
                .map(|(i, mut p)| {
                    p.name = format!("np{i}");
                    p
                })
                .collect();
            Cluster {
                namespaces,
                endpoints: eps,
                policies,
                ..Default::default()
            }
        })
}

/// Nodes whose addresses are among [`outside_addresses`] (and one pod address), for
/// `nodes` peers.
pub fn nodes() -> Vec<Node> {
    [
        ("node-a", "a", vec!["10.1.0.1", "fd00::99"]),
        ("node-b", "b", vec!["192.168.1.1"]),
        ("node-c", "c", vec!["10.0.1.3"]),
    ]
    .into_iter()
    .map(|(name, role, addrs)| Node {
        name: name.to_string(),
        labels: [("role".to_string(), role.to_string())].into(),
        addresses: addrs.iter().map(|a| a.parse().unwrap()).collect(),
        origin: Default::default(),
    })
    .collect()
}

/// Every pod often (so that tiers and NetworkPolicies meet), else any selection.
fn pods_in() -> impl Strategy<Value = PodsIn> {
    prop_oneof![
        2 => Just(PodsIn { namespaces: LabelSelector::default(), pods: None }),
        3 => (namespace_selector(), proptest::option::of(selector()))
            .prop_map(|(namespaces, pods)| PodsIn { namespaces, pods }),
    ]
}

fn cluster_peer(egress: bool) -> BoxedStrategy<ClusterPeer> {
    let networks: Vec<Vec<&str>> = vec![
        vec!["10.0.0.0/16"],
        vec!["10.0.1.0/24", "fd00::/64"],
        vec!["0.0.0.0/0"],
        vec!["10.0.0.4/30"],
        vec!["fd00::/120"],
        vec!["192.168.0.0/16", "10.1.0.0/16"],
    ];
    let pods = pods_in().prop_map(ClusterPeer::Pods);
    if !egress {
        return pods.boxed();
    }
    prop_oneof![
        4 => pods,
        2 => select(networks).prop_map(|n| ClusterPeer::Networks(n.iter().map(|c| c.parse().unwrap()).collect())),
        1 => prop_oneof![
            Just(LabelSelector::default()),
            select(&VALUES[..]).prop_map(|v| LabelSelector {
                match_labels: [("role".to_string(), v.to_string())].into(),
                match_expressions: vec![],
            }),
        ].prop_map(ClusterPeer::Nodes),
        1 => Just(ClusterPeer::DomainNames(vec!["example.com".into()])),
    ]
    .boxed()
}

fn cluster_port() -> impl Strategy<Value = ClusterPort> {
    prop_oneof![
        3 => (protocol(), select(&PORTS[..])).prop_map(|(protocol, p)| ClusterPort::Range { protocol, start: p, end: p }),
        1 => (protocol(), select(&PORTS[..]), 1u16..400).prop_map(|(protocol, p, len)| ClusterPort::Range { protocol, start: p, end: p.saturating_add(len) }),
        2 => select(&PORT_NAMES[..]).prop_map(|n| ClusterPort::Named(n.to_string())),
    ]
}

fn cluster_rule(tier: Tier, egress: bool) -> impl Strategy<Value = ClusterRule> {
    let action = match tier {
        Tier::Admin => {
            prop_oneof![Just(Action::Accept), Just(Action::Deny), Just(Action::Pass)].boxed()
        }
        Tier::Baseline => prop_oneof![
            2 => Just(Action::Accept),
            2 => Just(Action::Deny),
            1 => Just(Action::Pass)
        ]
        .boxed(),
    };
    (
        action,
        proptest::collection::vec(cluster_peer(egress), 1..3),
        proptest::option::weighted(0.6, proptest::collection::vec(cluster_port(), 1..3)),
    )
        .prop_map(|(action, peers, ports)| ClusterRule {
            name: String::new(),
            action,
            peers,
            ports,
        })
}

/// One cluster policy (named `cp{priority}` by [`cluster_with_tiers`]): either tier, a
/// narrow band of priorities so that equal ones happen, rules of every action.
pub fn cluster_policy() -> impl Strategy<Value = ClusterPolicy> {
    (
        prop_oneof![Just(Tier::Admin), Just(Tier::Baseline)],
        0u16..4,
        pods_in(),
        prop_oneof![
            Just(ClusterKind::ClusterNetworkPolicy),
            Just(ClusterKind::AdminNetworkPolicy)
        ],
    )
        .prop_flat_map(|(tier, priority, subject, kind)| {
            (
                proptest::collection::vec(cluster_rule(tier, false), 0..4),
                proptest::collection::vec(cluster_rule(tier, true), 0..4),
            )
                .prop_map(move |(ingress, egress)| ClusterPolicy {
                    kind: match (tier, kind) {
                        (Tier::Baseline, ClusterKind::AdminNetworkPolicy) => {
                            ClusterKind::BaselineAdminNetworkPolicy
                        }
                        _ => kind,
                    },
                    name: String::new(),
                    tier,
                    priority,
                    subject: subject.clone(),
                    ingress,
                    egress,
                    origin: Default::default(),
                })
        })
}

/// A random cluster with cluster-wide tiers: [`cluster`], [`nodes`] and 0–4 cluster policies.
pub fn cluster_with_tiers() -> impl Strategy<Value = Cluster> {
    (cluster(), proptest::collection::vec(cluster_policy(), 0..5)).prop_map(
        |(mut cluster, tiers)| {
            cluster.nodes = nodes();
            cluster.cluster_policies = tiers
                .into_iter()
                .enumerate()
                .map(|(i, mut p)| {
                    // Names decide ties of priority: give some the same priority and
                    // names out of input order.
                    p.name = format!("cp{}", 9 - i);
                    p
                })
                .collect();
            cluster
        },
    )
}
