//! The direct evaluator: one connection, every policy that bears on it, and why.

use serde::Serialize;
use weir_model::{Action, Direction, Protocol, Tier};

use crate::ports::{resolve_cluster_ports, resolve_ports};
use crate::{family_of, selector, Engine, PortSet, Side};

/// How one rule of a selecting policy judged the connection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleCheck {
    pub policy: String,
    /// `ingress[0]`, `egress[2]`, …
    pub rule: String,
    pub origin: String,
    pub peer_matched: bool,
    pub port_matched: bool,
    /// What the rule admits, in words (`from podSelector networking/logic=true on TCP 6379`).
    pub admits: String,
}

/// A cluster policy rule that matched a connection first in its tier.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TierDecision {
    pub tier: Tier,
    /// `ClusterNetworkPolicy/name`, …
    pub policy: String,
    pub priority: u16,
    /// `ingress[0]`, with the rule's name when it has one: `ingress[0] "allow-dns"`.
    pub rule: String,
    pub action: Action,
    pub origin: String,
    /// What the rule matches, in words.
    pub matches: String,
}

/// Which layer decided a direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Layer {
    /// An Admin tier rule (Accept or Deny).
    Admin,
    /// The NetworkPolicies isolating the endpoint.
    NetworkPolicy,
    /// A Baseline tier rule.
    Baseline,
    /// Nothing: allowed by default.
    Default,
}

/// The verdict of one direction: egress at the source, or ingress at the destination.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DirectionReport {
    pub direction: Direction,
    /// The endpoint whose policies are checked, or `None` for an outside address (never isolated).
    pub endpoint: Option<String>,
    /// Policies selecting the endpoint that isolate this direction.
    pub isolating_policies: Vec<String>,
    pub allowed: bool,
    /// Rules that admit the connection.
    pub allowing: Vec<RuleCheck>,
    /// Rules that admit the peer or the port, but not both: the nearest misses.
    pub near_misses: Vec<RuleCheck>,
    /// The Admin tier's first matching rule (a Pass hands the decision on).
    pub admin: Option<TierDecision>,
    /// The Baseline tier's first matching rule, when the decision reached that tier.
    pub baseline: Option<TierDecision>,
    pub decided_by: Layer,
}

#[derive(Clone, Debug, Serialize)]
pub struct Explanation {
    pub from: String,
    pub to: String,
    pub protocol: Protocol,
    pub port: u16,
    pub allowed: bool,
    /// Traffic from an endpoint to itself is always allowed.
    pub self_traffic: bool,
    pub egress: DirectionReport,
    pub ingress: DirectionReport,
}

/// A range of ports of one connection that every policy and tier decides alike, and why.
#[derive(Clone, Debug, Serialize)]
pub struct PortsExplanation {
    #[serde(serialize_with = "as_text")]
    pub ports: PortSet,
    pub allowed: bool,
    pub egress: DirectionReport,
    pub ingress: DirectionReport,
}

fn as_text<S: serde::Serializer>(p: &PortSet, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&p.to_string())
}

/// One direction of one connection, as the tiers are asked about it: at endpoint `at`,
/// with `other` the far side, to a destination with `dst_ports`.
#[derive(Clone, Copy)]
struct Asked<'a> {
    direction: Direction,
    at: usize,
    other: Side,
    dst_ports: &'a [weir_model::ContainerPort],
    protocol: Protocol,
    port: u16,
    v6: bool,
}

/// What explain copies into its reports for one policy.
pub(crate) struct Described {
    id: String,
    origin: String,
    /// Per rule: its name (`ingress[0]`) and what it admits, in words.
    ingress: Vec<(String, String)>,
    egress: Vec<(String, String)>,
}

impl Engine<'_> {
    fn described(&self) -> &[Described] {
        self.described.get_or_init(|| {
            let words = |p: &weir_model::Policy, dir| {
                let rules = p.rules(dir).iter().enumerate();
                rules
                    .map(|(n, r)| (format!("{dir}[{n}]"), describe_rule(dir, r)))
                    .collect()
            };
            self.cluster()
                .policies
                .iter()
                .map(|p| Described {
                    id: p.id(),
                    origin: p.origin.to_string(),
                    ingress: words(p, Direction::Ingress),
                    egress: words(p, Direction::Egress),
                })
                .collect()
        })
    }

    /// Why a connection is allowed or denied, policy by policy, in the family a connection
    /// to `dst` uses (its primary address's).
    pub fn explain(&self, src: Side, dst: Side, protocol: Protocol, port: u16) -> Explanation {
        let v6 = family_of(self.cluster(), dst);
        self.explain_in_family(src, dst, protocol, port, v6)
    }

    /// [`Engine::explain`] for a connection in one address family: to a dual-stack pod's
    /// second address, ipBlocks are matched against addresses of that family, as the
    /// dataplane matches the packet.
    pub fn explain_in_family(
        &self,
        src: Side,
        dst: Side,
        protocol: Protocol,
        port: u16,
        v6: bool,
    ) -> Explanation {
        let self_traffic = src == dst && matches!(src, Side::Endpoint(_));
        let egress = self.direction(Direction::Egress, src, dst, protocol, port, v6);
        let ingress = self.direction(Direction::Ingress, dst, src, protocol, port, v6);
        Explanation {
            from: self.name(src),
            to: self.name(dst),
            protocol,
            port,
            allowed: self_traffic || (egress.allowed && ingress.allowed),
            self_traffic,
            egress,
            ingress,
        }
    }

    /// Every TCP, UDP and SCTP port of a connection (not to itself), cut into the fewest
    /// port sets each decided alike for the same reasons: [`Engine::explain_in_family`]
    /// asked once per range of ports that no rule's ports split. Other protocols (ICMP) are
    /// left out: no port to explain them by.
    pub fn explain_ports(&self, src: Side, dst: Side) -> Vec<PortsExplanation> {
        let v6 = match (src, dst) {
            (Side::Address(ip), _) | (_, Side::Address(ip)) => ip.is_ipv6(),
            _ => family_of(self.cluster(), dst),
        };
        let cuts = self.port_cuts(src, dst);
        let mut out: Vec<PortsExplanation> = Vec::new();
        for protocol in Protocol::ALL {
            let edges = &cuts[protocol as usize];
            for (k, &lo) in edges.iter().enumerate() {
                let hi = edges.get(k + 1).map_or(65535, |&next| (next - 1) as u16);
                let e = self.explain_in_family(src, dst, protocol, lo as u16, v6);
                let range = PortSet::range(protocol, lo as u16, hi);
                match out
                    .iter_mut()
                    .find(|r| r.egress == e.egress && r.ingress == e.ingress)
                {
                    Some(r) => r.ports = r.ports.union(&range),
                    None => out.push(PortsExplanation {
                        ports: range,
                        allowed: e.allowed,
                        egress: e.egress,
                        ingress: e.ingress,
                    }),
                }
            }
        }
        out
    }

    /// Per protocol, the sorted first ports of the ranges no rule bearing on the
    /// connection splits: the edges of every port range of the policies of both sides'
    /// namespaces and of every cluster policy, resolved on the destination.
    fn port_cuts(&self, src: Side, dst: Side) -> [Vec<u32>; 3] {
        let dst_ports: &[weir_model::ContainerPort] = match dst {
            Side::Endpoint(d) => &self.endpoint(d).ports,
            Side::Address(_) => &[],
        };
        let mut sets: Vec<PortSet> = Vec::new();
        for side in [src, dst] {
            let Side::Endpoint(i) = side else { continue };
            for (_, p) in self.policies_in(&self.endpoint(i).namespace) {
                for r in p.ingress.iter().chain(&p.egress) {
                    sets.push(resolve_ports(&r.ports, dst_ports));
                }
            }
        }
        for p in &self.cluster().cluster_policies {
            for r in p.ingress.iter().chain(&p.egress) {
                sets.push(resolve_cluster_ports(r.ports.as_deref(), dst_ports));
            }
        }
        let mut cuts: [Vec<u32>; 3] = Default::default();
        for protocol in Protocol::ALL {
            let c = &mut cuts[protocol as usize];
            c.push(1);
            for s in &sets {
                for &(lo, hi) in s.ranges(protocol) {
                    c.push(lo as u32);
                    c.push(hi as u32 + 1);
                }
            }
            c.retain(|&x| x <= 65535);
            c.sort_unstable();
            c.dedup();
        }
        cuts
    }

    /// Checks `direction` at `at`, with `other` the far side of the connection.
    fn direction(
        &self,
        direction: Direction,
        at: Side,
        other: Side,
        protocol: Protocol,
        port: u16,
        v6: bool,
    ) -> DirectionReport {
        let dst = match direction {
            Direction::Egress => other,
            Direction::Ingress => at,
        };
        let mut report = DirectionReport {
            direction,
            endpoint: None,
            isolating_policies: Vec::new(),
            allowed: true,
            allowing: Vec::new(),
            near_misses: Vec::new(),
            admin: None,
            baseline: None,
            decided_by: Layer::Default,
        };
        let Side::Endpoint(i) = at else { return report };
        let ep = self.endpoint(i);
        report.endpoint = Some(ep.id());
        if ep.host_network {
            return report; // podSelector never selects hostNetwork pods
        }
        let dst_ports: &[weir_model::ContainerPort] = match dst {
            Side::Endpoint(d) => &self.endpoint(d).ports,
            Side::Address(_) => &[],
        };
        let described = self.described();
        for (i, policy) in self.policies_in(&ep.namespace).filter(|(_, p)| {
            p.isolates(direction) && selector::matches(&p.pod_selector, &ep.labels)
        }) {
            let words = &described[i];
            report.isolating_policies.push(words.id.clone());
            let admits = match direction {
                Direction::Ingress => &words.ingress,
                Direction::Egress => &words.egress,
            };
            for (n, rule) in policy.rules(direction).iter().enumerate() {
                let peer_matched = rule.peers.is_empty()
                    || rule
                        .peers
                        .iter()
                        .any(|p| self.peer_matches(p, &policy.namespace, other, v6));
                let port_matched = resolve_ports(&rule.ports, dst_ports).contains(protocol, port);
                if !peer_matched && !port_matched {
                    continue; // neither admits nor nearly admits: nothing to describe
                }
                let check = RuleCheck {
                    policy: words.id.clone(),
                    rule: admits[n].0.clone(),
                    origin: words.origin.clone(),
                    peer_matched,
                    port_matched,
                    admits: admits[n].1.clone(),
                };
                if peer_matched && port_matched {
                    report.allowing.push(check);
                } else {
                    report.near_misses.push(check);
                }
            }
        }
        let asked = Asked {
            direction,
            at: i,
            other,
            dst_ports,
            protocol,
            port,
            v6,
        };
        report.admin = self.first_match(Tier::Admin, &asked);
        let isolated = !report.isolating_policies.is_empty();
        match report.admin.as_ref().map(|d| d.action) {
            Some(Action::Accept) => {
                report.decided_by = Layer::Admin;
                report.allowed = true;
            }
            Some(Action::Deny) => {
                report.decided_by = Layer::Admin;
                report.allowed = false;
            }
            Some(Action::Pass) | None if isolated => {
                report.decided_by = Layer::NetworkPolicy;
                report.allowed = !report.allowing.is_empty();
            }
            Some(Action::Pass) | None => {
                report.baseline = self.first_match(Tier::Baseline, &asked);
                match report.baseline.as_ref().map(|d| d.action) {
                    Some(action) => {
                        report.decided_by = Layer::Baseline;
                        report.allowed = action != Action::Deny;
                    }
                    None => {
                        report.decided_by = Layer::Default;
                        report.allowed = true;
                    }
                }
            }
        }
        report
    }

    /// The first rule of `tier` that matches, among the cluster policies selecting
    /// the endpoint asked about, in evaluation order.
    fn first_match(&self, tier: Tier, asked: &Asked) -> Option<TierDecision> {
        let Asked {
            direction,
            at,
            other,
            dst_ports,
            protocol,
            port,
            v6,
        } = *asked;
        let mut policies: Vec<&weir_model::ClusterPolicy> = self
            .cluster()
            .cluster_policies
            .iter()
            .filter(|p| p.tier == tier && self.subject_selects(p, at))
            .collect();
        policies.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
        for p in policies {
            for (n, rule) in p.rules(direction).iter().enumerate() {
                let peer = rule
                    .peers
                    .iter()
                    .any(|peer| self.cluster_peer_matches(peer, other, v6));
                if peer
                    && resolve_cluster_ports(rule.ports.as_deref(), dst_ports)
                        .contains(protocol, port)
                {
                    let name = if rule.name.is_empty() {
                        String::new()
                    } else {
                        format!(" {:?}", weir_model::prefix(&rule.name, 100))
                    };
                    return Some(TierDecision {
                        tier,
                        policy: p.id(),
                        priority: p.priority,
                        rule: format!("{direction}[{n}]{name}"),
                        action: rule.action,
                        origin: p.origin.to_string(),
                        matches: describe_cluster_rule(direction, rule),
                    });
                }
            }
        }
        None
    }
}

/// A cluster policy rule in words: `Deny from namespaces {…} on TCP 80`.
pub fn describe_cluster_rule(direction: Direction, rule: &weir_model::ClusterRule) -> String {
    use weir_model::{ClusterPeer, ClusterPort};
    let word = match direction {
        Direction::Ingress => "from",
        Direction::Egress => "to",
    };
    let list = |items: Vec<String>| items.join(",");
    let peers = rule
        .peers
        .iter()
        .map(|p| match p {
            ClusterPeer::Pods(sel) => {
                let ns = if sel.namespaces.is_empty() {
                    "every namespace".to_string()
                } else {
                    format!("namespaces {{{}}}", sel.namespaces)
                };
                match &sel.pods {
                    None => format!("all pods in {ns}"),
                    Some(pods) if pods.is_empty() => format!("all pods in {ns}"),
                    Some(pods) => format!("pods {{{pods}}} in {ns}"),
                }
            }
            ClusterPeer::Networks(nets) => {
                format!(
                    "networks {}",
                    list(nets.iter().map(|n| n.to_string()).collect())
                )
            }
            ClusterPeer::Nodes(sel) if sel.is_empty() => "every node".to_string(),
            ClusterPeer::Nodes(sel) => format!("nodes {{{sel}}}"),
            ClusterPeer::DomainNames(names) => format!(
                "domain names {} (not resolved by weir)",
                list(
                    names
                        .iter()
                        .map(|n| weir_model::prefix(n, 100).to_string())
                        .collect()
                )
            ),
        })
        .collect::<Vec<_>>()
        .join(" or ");
    let ports = match &rule.ports {
        None => "all ports".to_string(),
        Some(ports) => ports
            .iter()
            .map(|p| match p {
                ClusterPort::Range {
                    protocol,
                    start,
                    end,
                } if start == end => format!("{protocol} {start}"),
                ClusterPort::Range {
                    protocol,
                    start,
                    end,
                } => format!("{protocol} {start}-{end}"),
                ClusterPort::Named(n) => format!("port named {n:?}"),
            })
            .collect::<Vec<_>>()
            .join(", "),
    };
    format!("{} {word} {peers} on {ports}", rule.action)
}

/// A rule in words, for explanations and lint messages.
pub fn describe_rule(direction: Direction, rule: &weir_model::Rule) -> String {
    use weir_model::{NamespaceScope, Peer, PortRef};
    let word = match direction {
        Direction::Ingress => "from",
        Direction::Egress => "to",
    };
    let peers = if rule.peers.is_empty() {
        "anywhere".to_string()
    } else {
        rule.peers
            .iter()
            .map(|p| match p {
                Peer::Pods { namespaces, pods } => {
                    let ns = match namespaces {
                        NamespaceScope::PolicyNamespace => "the policy's namespace".to_string(),
                        NamespaceScope::Selector(s) => format!("namespaces {{{s}}}"),
                    };
                    match pods {
                        Some(s) => format!("pods {{{s}}} in {ns}"),
                        None => format!("all pods in {ns}"),
                    }
                }
                Peer::IpBlock { cidr, except } if except.is_empty() => format!("ipBlock {cidr}"),
                Peer::IpBlock { cidr, except } => format!(
                    "ipBlock {cidr} except {}",
                    except
                        .iter()
                        .map(|e| e.to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                ),
            })
            .collect::<Vec<_>>()
            .join(" or ")
    };
    let ports = if rule.ports.is_empty() {
        "all ports".to_string()
    } else {
        rule.ports
            .iter()
            .map(|p| match &p.port {
                None => format!("{} all ports", p.protocol),
                Some(PortRef::Number { port, end }) if port == end => {
                    format!("{} {port}", p.protocol)
                }
                Some(PortRef::Number { port, end }) => format!("{} {port}-{end}", p.protocol),
                Some(PortRef::Named(n)) => format!("{} port named {n:?}", p.protocol),
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!("{word} {peers} on {ports}")
}
