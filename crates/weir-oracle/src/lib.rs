//! A deliberately naive NetworkPolicy evaluator for tests.
//!
//! Written straight from the `networking.k8s.io/v1` API reference, sharing no
//! code with `weir-engine`: one connection at a time, every policy looked at,
//! no indexes, no classes, no caches. Slow and obvious on purpose.
//!
//! From the reference:
//! - A pod is isolated for ingress (egress) if any NetworkPolicy in its namespace
//!   selects it and has "Ingress" ("Egress") in policyTypes.
//! - Traffic is allowed into an isolated pod if some rule of some such policy
//!   matches it: `from` empty or any peer matches, and `ports` empty or any port matches.
//! - A connection needs egress allowed at the source and ingress at the destination.
//! - podSelector alone = pods in the policy's namespace; namespaceSelector alone =
//!   all pods in those namespaces; both = pods matching both; ipBlock = addresses.
//! - Traffic of a pod to itself is always allowed (upstream e2e).
//!
//! And from `policy.networking.k8s.io` (ClusterNetworkPolicy, AdminNetworkPolicy,
//! BaselineAdminNetworkPolicy), per direction at the subject pod:
//! - The Admin tier first: its policies selecting the pod in priority order (then name,
//!   then kind), each one's rules in order; the first rule whose peer and port match
//!   decides: Accept allows, Deny denies, Pass skips to the NetworkPolicy tier.
//! - Then NetworkPolicies: an isolated pod's verdict is theirs, final.
//! - Then the Baseline tier the same way (Pass there: on to the default), then allow.
//! - Subjects and pod peers are never hostNetwork pods; `networks` match any address,
//!   pod addresses too; `nodes` match the addresses of the nodes selected; `domainNames`
//!   match nothing (weir cannot resolve them).

use std::net::IpAddr;

use weir_model::{
    Action, Cluster, ClusterPeer, ClusterPolicy, ClusterPort, ClusterRule, ContainerPort,
    Direction, Endpoint, LabelSelector, Labels, NamespaceScope, Operator, Peer, PodsIn, Policy,
    PortRef, PortRule, Protocol, Rule, Tier,
};

/// One side of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Pod(usize),
    Ip(IpAddr),
}

fn label_selector_matches(sel: &LabelSelector, labels: &Labels) -> bool {
    for (key, value) in &sel.match_labels {
        if labels.get(key) != Some(value) {
            return false;
        }
    }
    for req in &sel.match_expressions {
        let present = labels.get(&req.key);
        let ok = match req.operator {
            Operator::In => match present {
                Some(v) => req.values.iter().any(|x| x == v),
                None => false,
            },
            Operator::NotIn => match present {
                Some(v) => !req.values.iter().any(|x| x == v),
                None => true,
            },
            Operator::Exists => present.is_some(),
            Operator::DoesNotExist => present.is_none(),
        };
        if !ok {
            return false;
        }
    }
    true
}

fn namespace_labels<'a>(cluster: &'a Cluster, name: &str) -> Option<&'a Labels> {
    for ns in &cluster.namespaces {
        if ns.name == name {
            return Some(&ns.labels);
        }
    }
    None
}

fn address_of(cluster: &Cluster, side: Side, want_v6: bool) -> Option<IpAddr> {
    match side {
        Side::Ip(ip) => Some(ip),
        Side::Pod(i) => {
            for ip in &cluster.endpoints[i].ips {
                if ip.is_ipv6() == want_v6 {
                    return Some(*ip);
                }
            }
            None
        }
    }
}

fn peer_matches(cluster: &Cluster, policy: &Policy, peer: &Peer, side: Side, v6: bool) -> bool {
    match peer {
        Peer::IpBlock { cidr, except } => {
            let Some(ip) = address_of(cluster, side, v6) else {
                return false;
            };
            if ip.is_ipv6() != v6 || !cidr.contains(&ip) {
                return false;
            }
            for e in except {
                if e.contains(&ip) {
                    return false;
                }
            }
            true
        }
        Peer::Pods { namespaces, pods } => {
            let Side::Pod(i) = side else { return false };
            let pod = &cluster.endpoints[i];
            if pod.host_network {
                return false;
            }
            let namespace_ok = match namespaces {
                NamespaceScope::PolicyNamespace => pod.namespace == policy.namespace,
                NamespaceScope::Selector(sel) => match namespace_labels(cluster, &pod.namespace) {
                    Some(labels) => label_selector_matches(sel, labels),
                    None => false,
                },
            };
            let pod_ok = match pods {
                None => true,
                Some(sel) => label_selector_matches(sel, &pod.labels),
            };
            namespace_ok && pod_ok
        }
    }
}

fn port_matches(
    rule_port: &PortRule,
    protocol: Protocol,
    port: u16,
    dst_ports: &[ContainerPort],
) -> bool {
    if rule_port.protocol != protocol {
        return false;
    }
    match &rule_port.port {
        None => true,
        Some(PortRef::Number { port: lo, end }) => *lo <= port && port <= *end,
        Some(PortRef::Named(name)) => dst_ports.iter().any(|cp| {
            cp.name.as_deref() == Some(name.as_str()) && cp.protocol == protocol && cp.port == port
        }),
    }
}

/// What is being asked of a rule: the protocol and port, at a destination with these
/// container ports, over this address family.
struct Question<'a> {
    protocol: Protocol,
    port: u16,
    dst_ports: &'a [ContainerPort],
    v6: bool,
}

fn rule_matches(cluster: &Cluster, policy: &Policy, rule: &Rule, peer: Side, q: &Question) -> bool {
    let peer_ok = rule.peers.is_empty()
        || rule
            .peers
            .iter()
            .any(|p| peer_matches(cluster, policy, p, peer, q.v6));
    let port_ok = rule.ports.is_empty()
        || rule
            .ports
            .iter()
            .any(|p| port_matches(p, q.protocol, q.port, q.dst_ports));
    peer_ok && port_ok
}

fn selects(policy: &Policy, pod: &Endpoint) -> bool {
    policy.namespace == pod.namespace
        && !pod.host_network
        && label_selector_matches(&policy.pod_selector, &pod.labels)
}

/// Whether pod `pod` is among the pods `sel` describes.
fn pods_in_matches(cluster: &Cluster, sel: &PodsIn, pod: &Endpoint) -> bool {
    if pod.host_network {
        return false;
    }
    let Some(ns_labels) = namespace_labels(cluster, &pod.namespace) else {
        return false;
    };
    if !label_selector_matches(&sel.namespaces, ns_labels) {
        return false;
    }
    match &sel.pods {
        None => true,
        Some(s) => label_selector_matches(s, &pod.labels),
    }
}

fn cluster_peer_matches(cluster: &Cluster, peer: &ClusterPeer, side: Side, v6: bool) -> bool {
    match peer {
        ClusterPeer::Pods(sel) => match side {
            Side::Pod(i) => pods_in_matches(cluster, sel, &cluster.endpoints[i]),
            Side::Ip(_) => false,
        },
        ClusterPeer::Networks(nets) => match address_of(cluster, side, v6) {
            Some(ip) => nets.iter().any(|n| n.contains(&ip)),
            None => false,
        },
        ClusterPeer::Nodes(sel) => match address_of(cluster, side, v6) {
            Some(ip) => cluster
                .nodes
                .iter()
                .any(|n| label_selector_matches(sel, &n.labels) && n.addresses.contains(&ip)),
            None => false,
        },
        ClusterPeer::DomainNames(_) => false,
    }
}

fn cluster_port_matches(p: &ClusterPort, q: &Question) -> bool {
    match p {
        ClusterPort::Range {
            protocol,
            start,
            end,
        } => *protocol == q.protocol && *start <= q.port && q.port <= *end,
        ClusterPort::Named(name) => q.dst_ports.iter().any(|cp| {
            cp.name.as_deref() == Some(name.as_str())
                && cp.protocol == q.protocol
                && cp.port == q.port
        }),
    }
}

fn cluster_rule_matches(cluster: &Cluster, rule: &ClusterRule, other: Side, q: &Question) -> bool {
    let peer_ok = rule
        .peers
        .iter()
        .any(|p| cluster_peer_matches(cluster, p, other, q.v6));
    let port_ok = match &rule.ports {
        None => true,
        Some(ports) => ports.iter().any(|p| cluster_port_matches(p, q)),
    };
    peer_ok && port_ok
}

/// The action of the first rule of `tier` that matches, at pod `i` in `direction`.
fn tier_action(
    cluster: &Cluster,
    tier: Tier,
    i: usize,
    direction: Direction,
    other: Side,
    q: &Question,
) -> Option<Action> {
    let pod = &cluster.endpoints[i];
    let mut policies: Vec<&ClusterPolicy> = Vec::new();
    for p in &cluster.cluster_policies {
        if p.tier == tier && pods_in_matches(cluster, &p.subject, pod) {
            policies.push(p);
        }
    }
    policies.sort_by(|a, b| (a.priority, &a.name, a.kind).cmp(&(b.priority, &b.name, b.kind)));
    for p in policies {
        let rules = match direction {
            Direction::Ingress => &p.ingress,
            Direction::Egress => &p.egress,
        };
        for rule in rules {
            if cluster_rule_matches(cluster, rule, other, q) {
                return Some(rule.action);
            }
        }
    }
    None
}

/// Whether pod `i` lets the connection through in `direction`, `other` being the far side:
/// the Admin tier, NetworkPolicies, the Baseline tier, in that order.
fn direction_allows(
    cluster: &Cluster,
    i: usize,
    direction: Direction,
    other: Side,
    q: &Question,
) -> bool {
    match tier_action(cluster, Tier::Admin, i, direction, other, q) {
        Some(Action::Accept) => return true,
        Some(Action::Deny) => return false,
        Some(Action::Pass) | None => {}
    }
    if let Some(verdict) = network_policies_allow(cluster, i, direction, other, q) {
        return verdict;
    }
    !matches!(
        tier_action(cluster, Tier::Baseline, i, direction, other, q),
        Some(Action::Deny)
    )
}

/// The NetworkPolicies' verdict at pod `i` in `direction`, or `None` when none isolates it:
/// allowed if some rule of an isolating policy matches.
fn network_policies_allow(
    cluster: &Cluster,
    i: usize,
    direction: Direction,
    other: Side,
    q: &Question,
) -> Option<bool> {
    let pod = &cluster.endpoints[i];
    let mut isolated = false;
    for policy in &cluster.policies {
        let (isolates, rules) = match direction {
            Direction::Ingress => (policy.isolates_ingress, &policy.ingress),
            Direction::Egress => (policy.isolates_egress, &policy.egress),
        };
        if selects(policy, pod) && isolates {
            isolated = true;
            for rule in rules {
                if rule_matches(cluster, policy, rule, other, q) {
                    return Some(true);
                }
            }
        }
    }
    if isolated {
        Some(false)
    } else {
        None
    }
}

/// Is a connection from `from` to `to` on `protocol`/`port` allowed?
pub fn allowed(cluster: &Cluster, from: Side, to: Side, protocol: Protocol, port: u16) -> bool {
    if let (Side::Pod(a), Side::Pod(b)) = (from, to) {
        if a == b {
            return true;
        }
    }
    let v6 = match to {
        Side::Ip(ip) => ip.is_ipv6(),
        Side::Pod(i) => matches!(cluster.endpoints[i].ips.first(), Some(IpAddr::V6(_))),
    };
    let dst_ports: Vec<ContainerPort> = match to {
        Side::Pod(i) => cluster.endpoints[i].ports.clone(),
        Side::Ip(_) => Vec::new(),
    };
    let q = Question {
        protocol,
        port,
        dst_ports: &dst_ports,
        v6,
    };
    // Egress at the source, then ingress at the destination.
    if let Side::Pod(i) = from {
        if !direction_allows(cluster, i, Direction::Egress, to, &q) {
            return false;
        }
    }
    if let Side::Pod(i) = to {
        if !direction_allows(cluster, i, Direction::Ingress, from, &q) {
            return false;
        }
    }
    true
}
