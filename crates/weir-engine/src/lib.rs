//! weir's policy brain: exact `networking.k8s.io/v1` NetworkPolicy semantics.
//!
//! Pure computation over a [`weir_model::Cluster`]: no IO, no async, no kube. The one
//! place that spawns threads is [`Engine::flows`] (scoped, one per core), because
//! enumerating allowed pairs is the cost that grows with the square of the cluster.
//!
//! Two evaluators live here, sharing only selector matching and port resolution:
//! - [`Engine::allowed`] and [`Engine::flows`] work on equivalence classes, rule
//!   bitsets and rows, so a 10k-pod cluster is analysed in well under a second;
//! - [`Engine::explain`] walks the policies of one connection directly and says
//!   why. Tests hold the two to the same answers, and both to a naive oracle.

mod classes;
pub mod diff;
mod explain;
pub mod exposure;
pub mod intents;
pub mod ipspace;
pub mod lint;
pub mod matrix;
pub mod outside;
pub mod ports;
pub mod selector;
pub mod synth;

use std::collections::HashMap;
use std::net::IpAddr;

pub use classes::{ClassId, Flow, Flows, PortSetId, Stats};
pub use explain::{
    describe_cluster_rule, describe_rule, DirectionReport, Explanation, Layer, PortsExplanation,
    RuleCheck, TierDecision,
};
pub use ports::PortSet;
use weir_model::{Cluster, ClusterPeer, Endpoint, Peer};

/// Switches for semantics that differ between implementations.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// ipBlock peers also match pod IPs (upstream e2e tests, Cyclonus, KNP). Cilium
    /// and np-guard never match pod IPs with ipBlock; set false to model them.
    pub ipblock_matches_pods: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            ipblock_matches_pods: true,
        }
    }
}

/// One side of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    /// An endpoint of the cluster, by index in `cluster.endpoints`.
    Endpoint(usize),
    /// An address outside the cluster's endpoints.
    Address(IpAddr),
}

/// Selector semantics over one cluster without the class index: which endpoints a policy
/// selects and which a peer matches, one endpoint at a time. What the dataplane compiler
/// asks; cheap to build (a namespace lookup). An [`Engine`] is one of these plus its
/// classes, and dereferences to it.
pub struct Selectors<'c> {
    cluster: &'c Cluster,
    options: Options,
    /// Namespace name → index in `cluster.namespaces`.
    namespaces: HashMap<&'c str, usize>,
}

impl<'c> Selectors<'c> {
    pub fn new(cluster: &'c Cluster, options: Options) -> Self {
        Selectors {
            cluster,
            options,
            namespaces: cluster
                .namespaces
                .iter()
                .enumerate()
                .map(|(i, ns)| (ns.name.as_str(), i))
                .collect(),
        }
    }

    pub fn cluster(&self) -> &'c Cluster {
        self.cluster
    }

    pub fn options(&self) -> Options {
        self.options
    }

    /// Whether `policy` selects endpoint `i` (its namespace, its podSelector; never hostNetwork).
    pub fn selects(&self, policy: &weir_model::Policy, i: usize) -> bool {
        selects_endpoint(policy, &self.cluster.endpoints[i])
    }

    fn namespace_labels(&self, namespace: &str) -> Option<&'c weir_model::Labels> {
        self.namespaces
            .get(namespace)
            .map(|&i| &self.cluster.namespaces[i].labels)
    }

    /// Whether a peer matches `other` (the far side of the connection) in a policy of
    /// `policy_ns`, for a connection of family `v6`. The dataplane compiler asks this too,
    /// so that selector semantics live in one place.
    pub fn peer_matches(&self, peer: &Peer, policy_ns: &str, other: Side, v6: bool) -> bool {
        match other {
            Side::Endpoint(i) => {
                let ep = &self.cluster.endpoints[i];
                peer_matches_endpoint(
                    peer,
                    policy_ns,
                    ep,
                    self.namespace_labels(&ep.namespace),
                    v6,
                    self.options,
                )
            }
            Side::Address(ip) => match peer {
                Peer::Pods { .. } => false,
                Peer::IpBlock { cidr, except } => {
                    ip.is_ipv6() == v6 && ipblock_contains(cidr, except, ip)
                }
            },
        }
    }
}

impl Selectors<'_> {
    /// Whether a cluster policy's subject selects endpoint `i` (never hostNetwork; the
    /// namespace must be known).
    pub fn subject_selects(&self, policy: &weir_model::ClusterPolicy, i: usize) -> bool {
        let ep = &self.cluster.endpoints[i];
        pods_in_matches(&policy.subject, ep, self.namespace_labels(&ep.namespace))
    }

    /// Whether a cluster policy peer matches `other` in a connection of family `v6`.
    pub fn cluster_peer_matches(&self, peer: &ClusterPeer, other: Side, v6: bool) -> bool {
        let address = match other {
            Side::Endpoint(i) => {
                let ep = &self.cluster.endpoints[i];
                if let ClusterPeer::Pods(sel) = peer {
                    return pods_in_matches(sel, ep, self.namespace_labels(&ep.namespace));
                }
                if !self.options.ipblock_matches_pods {
                    return false;
                }
                ep.ip_of_family(v6)
            }
            Side::Address(ip) => (ip.is_ipv6() == v6).then_some(ip),
        };
        let Some(ip) = address else { return false };
        match peer {
            ClusterPeer::Pods(_) | ClusterPeer::DomainNames(_) => false,
            ClusterPeer::Networks(nets) => nets.iter().any(|n| n.contains(&ip)),
            ClusterPeer::Nodes(sel) => self
                .cluster
                .nodes
                .iter()
                .any(|n| selector::matches(sel, &n.labels) && n.addresses.contains(&ip)),
        }
    }
}

/// Whether `ep` is among the pods a cluster policy's subject or pod peer describes, given
/// its namespace's labels (`None`: the namespace is unknown).
pub fn pods_in_matches(
    sel: &weir_model::PodsIn,
    ep: &Endpoint,
    namespace_labels: Option<&weir_model::Labels>,
) -> bool {
    !ep.host_network
        && namespace_labels.is_some_and(|l| selector::matches(&sel.namespaces, l))
        && sel
            .pods
            .as_ref()
            .is_none_or(|s| selector::matches(s, &ep.labels))
}

/// The compiled policy set of one cluster.
pub struct Engine<'c> {
    selectors: Selectors<'c>,
    index: classes::Index<'c>,
    /// Namespace name → the policies in it (indexes; known namespaces only): explain's
    /// lookups.
    policies_by_ns: HashMap<&'c str, Vec<usize>>,
    /// Each policy's id, origin and rules in words, made on explain's first use so that
    /// a query formats nothing it can copy.
    described: std::sync::OnceLock<Vec<explain::Described>>,
}

impl<'c> std::ops::Deref for Engine<'c> {
    type Target = Selectors<'c>;
    fn deref(&self) -> &Selectors<'c> {
        &self.selectors
    }
}

impl<'c> Engine<'c> {
    pub fn new(cluster: &'c Cluster) -> Self {
        Self::with_options(cluster, Options::default())
    }

    pub fn with_options(cluster: &'c Cluster, options: Options) -> Self {
        let mut policies_by_ns: HashMap<&str, Vec<usize>> = cluster
            .namespaces
            .iter()
            .map(|ns| (ns.name.as_str(), Vec::new()))
            .collect();
        for (i, p) in cluster.policies.iter().enumerate() {
            if let Some(ids) = policies_by_ns.get_mut(p.namespace.as_str()) {
                ids.push(i);
            }
        }
        Engine {
            selectors: Selectors::new(cluster, options),
            index: classes::Index::build(cluster, options),
            policies_by_ns,
            described: std::sync::OnceLock::new(),
        }
    }

    /// Every (protocol, port) allowed from `src` to `dst` (the class evaluator).
    pub fn allowed(&self, src: Side, dst: Side) -> PortSet {
        if src == dst {
            return PortSet::all(); // traffic to itself is never filtered
        }
        let (Some(a), Some(b)) = (self.index.class_of(src), self.index.class_of(dst)) else {
            return PortSet::none();
        };
        self.index.pair(a, b)
    }

    /// Allowed class pairs, each with its port set (self-pairs of one endpoint excluded by renderers).
    pub fn flows(&self) -> Flows {
        self.index.flows()
    }

    /// Endpoints (indexes) of an endpoint class; empty for an external class.
    pub fn class_members(&self, class: ClassId) -> &[usize] {
        self.index.members(class)
    }

    /// CIDRs of an external class, or `None` for an endpoint class.
    pub fn class_cidrs(&self, class: ClassId) -> Option<Vec<ipnet::IpNet>> {
        self.index.cidrs(class)
    }

    pub fn class_of_endpoint(&self, endpoint: usize) -> ClassId {
        self.index.endpoint_class(endpoint)
    }

    /// The class of an endpoint or of an address (an outside class: the engine has no
    /// other for it).
    pub fn class_of(&self, side: Side) -> Option<ClassId> {
        self.index.class_of(side)
    }

    pub fn stats(&self) -> Stats {
        self.index.stats()
    }

    /// Finds an endpoint by `namespace/name`, or one whose IP is this address.
    pub fn resolve(&self, text: &str) -> Option<Side> {
        if let Ok(ip) = text.parse::<IpAddr>() {
            let found = self
                .cluster()
                .endpoints
                .iter()
                .position(|e| e.ips.contains(&ip));
            return Some(found.map_or(Side::Address(ip), Side::Endpoint));
        }
        self.cluster().endpoint_index(text).map(Side::Endpoint)
    }

    /// A human name for a node.
    pub fn name(&self, node: Side) -> String {
        match node {
            Side::Endpoint(i) => self.cluster().endpoints[i].id(),
            Side::Address(ip) => ip.to_string(),
        }
    }

    pub(crate) fn endpoint(&self, i: usize) -> &'c Endpoint {
        &self.cluster().endpoints[i]
    }
}

/// The address family of a connection to `dst` (`true` = IPv6).
pub(crate) fn family_of(cluster: &Cluster, dst: Side) -> bool {
    match dst {
        Side::Endpoint(i) => cluster.endpoints[i].primary_is_v6(),
        Side::Address(ip) => ip.is_ipv6(),
    }
}

impl Engine<'_> {
    /// Policies of a namespace (with their indexes), in input order.
    pub(crate) fn policies_in(
        &self,
        namespace: &str,
    ) -> impl Iterator<Item = (usize, &weir_model::Policy)> + '_ {
        let ids = self
            .policies_by_ns
            .get(namespace)
            .map_or(&[][..], |ids| &ids[..]);
        ids.iter().map(|&i| (i, &self.cluster().policies[i]))
    }
}

/// [`Selectors::selects`] for one endpoint given on its own.
pub fn selects_endpoint(policy: &weir_model::Policy, ep: &Endpoint) -> bool {
    pod_selector_selects(&policy.namespace, &policy.pod_selector, ep)
}

/// Whether a policy of namespace `namespace` with this podSelector selects `ep`.
pub fn pod_selector_selects(
    namespace: &str,
    pod_selector: &weir_model::LabelSelector,
    ep: &Endpoint,
) -> bool {
    !ep.host_network && ep.namespace == namespace && selector::matches(pod_selector, &ep.labels)
}

fn ipblock_contains(cidr: &ipnet::IpNet, except: &[ipnet::IpNet], ip: IpAddr) -> bool {
    cidr.contains(&ip) && !except.iter().any(|e| e.contains(&ip))
}

/// [`Selectors::peer_matches`] for one endpoint given on its own, with its namespace's labels
/// (`None`: the namespace is unknown): what the dataplane asks of a single changed pod
/// without an engine over the whole cluster.
pub fn peer_matches_endpoint(
    peer: &Peer,
    policy_ns: &str,
    ep: &Endpoint,
    namespace_labels: Option<&weir_model::Labels>,
    v6: bool,
    options: Options,
) -> bool {
    match peer {
        Peer::Pods { namespaces, pods } => {
            if ep.host_network {
                return false;
            }
            let ns_ok = match namespaces {
                weir_model::NamespaceScope::PolicyNamespace => ep.namespace == policy_ns,
                weir_model::NamespaceScope::Selector(s) => {
                    namespace_labels.is_some_and(|labels| selector::matches(s, labels))
                }
            };
            ns_ok
                && pods
                    .as_ref()
                    .is_none_or(|s| selector::matches(s, &ep.labels))
        }
        Peer::IpBlock { cidr, except } => {
            options.ipblock_matches_pods
                && ep
                    .ip_of_family(v6)
                    .is_some_and(|ip| ip.is_ipv6() == v6 && ipblock_contains(cidr, except, ip))
        }
    }
}
