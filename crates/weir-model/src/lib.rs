//! The cluster as weir sees it: namespaces, endpoints (pods and workloads), and
//! NetworkPolicies, already validated. Plain data: no YAML, no files, no clients.
//!
//! Every later stage (engine, renderers, dataplane) reads only these types, so a
//! manifest directory and a live cluster produce the same thing.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// Label keys to values, ordered so output and hashing are deterministic.
pub type Labels = BTreeMap<String, String>;

/// The label every namespace carries with its own name (Kubernetes ≥ 1.21).
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Where an object came from, for messages that point a human at the source.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Origin {
    pub file: String,
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Namespace {
    pub name: String,
    /// Includes [`NAMESPACE_NAME_LABEL`].
    pub labels: Labels,
    /// Where its object was read; `None` for a namespace only referred to.
    pub origin: Option<Origin>,
}

/// The transport protocols a NetworkPolicy port may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Protocol {
    #[serde(rename = "TCP")]
    Tcp,
    #[serde(rename = "UDP")]
    Udp,
    #[serde(rename = "SCTP")]
    Sctp,
}

/// A protocol and a port, written `TCP/80`: what a probe tests, a lab listener opens and an
/// intent names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortKey {
    pub protocol: Protocol,
    pub port: u16,
}

impl PortKey {
    pub fn new(protocol: Protocol, port: u16) -> PortKey {
        PortKey { protocol, port }
    }

    /// `TCP/80,UDP/53` → keys (empty entries skipped).
    pub fn parse_list(s: &str) -> Result<Vec<PortKey>, String> {
        s.split(',')
            .filter(|p| !p.trim().is_empty())
            .map(|p| p.trim().parse())
            .collect()
    }
}

impl fmt::Display for PortKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.protocol, self.port)
    }
}

impl std::str::FromStr for PortKey {
    type Err = String;
    /// `TCP/80` (protocol in any case; port 1–65535).
    fn from_str(s: &str) -> Result<PortKey, String> {
        let (proto, port) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?}: expected PROTOCOL/PORT, e.g. TCP/80"))?;
        let protocol = Protocol::parse(&proto.to_ascii_uppercase())
            .ok_or_else(|| format!("{s:?}: protocol must be TCP, UDP or SCTP"))?;
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("{s:?}: port must be a number from 1 to 65535"))?;
        Ok(PortKey { protocol, port })
    }
}

impl Protocol {
    pub const ALL: [Protocol; 3] = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp];

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }

    /// Parses the API spelling (upper case, as the API server requires).
    pub fn parse(s: &str) -> Option<Protocol> {
        match s {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A container port; `name` is what named ports in policies resolve against.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ContainerPort {
    pub name: Option<String>,
    pub protocol: Protocol,
    pub port: u16,
}

/// What an endpoint was built from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum EndpointKind {
    Pod,
    Deployment,
    StatefulSet,
    DaemonSet,
    ReplicaSet,
    ReplicationController,
    Job,
    CronJob,
}

impl EndpointKind {
    pub fn parse(kind: &str) -> Option<EndpointKind> {
        Some(match kind {
            "Pod" => EndpointKind::Pod,
            "Deployment" => EndpointKind::Deployment,
            "StatefulSet" => EndpointKind::StatefulSet,
            "DaemonSet" => EndpointKind::DaemonSet,
            "ReplicaSet" => EndpointKind::ReplicaSet,
            "ReplicationController" => EndpointKind::ReplicationController,
            "Job" => EndpointKind::Job,
            "CronJob" => EndpointKind::CronJob,
            _ => return None,
        })
    }
}

/// One thing that sends and receives traffic: a bare pod, or a workload with all
/// of its replicas folded in (they share the pod template's labels and ports).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Endpoint {
    pub namespace: String,
    pub name: String,
    pub kind: EndpointKind,
    pub labels: Labels,
    pub ports: Vec<ContainerPort>,
    /// Pod IPs, the primary first. Empty when the input had no status.
    pub ips: Vec<IpAddr>,
    /// hostNetwork pods are never selected by podSelector (in any CNI).
    pub host_network: bool,
    pub origin: Origin,
}

impl Endpoint {
    /// `namespace/name`, the spelling of the matrix CSV contract.
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The address a peer connects to, for the given family (`true` = IPv6).
    pub fn ip_of_family(&self, v6: bool) -> Option<IpAddr> {
        self.ips.iter().copied().find(|ip| ip.is_ipv6() == v6)
    }

    /// The address family connections to this endpoint use: its primary IP's, IPv4 when none.
    pub fn primary_is_v6(&self) -> bool {
        self.ips.first().is_some_and(|ip| ip.is_ipv6())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    /// Sorted and deduplicated.
    pub values: Vec<String>,
}

/// A `metav1.LabelSelector`. The empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct LabelSelector {
    pub match_labels: Labels,
    pub match_expressions: Vec<Requirement>,
}

impl LabelSelector {
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("{}");
        }
        let mut parts: Vec<String> = self
            .match_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        for r in &self.match_expressions {
            parts.push(match r.operator {
                Operator::In => format!("{} in ({})", r.key, r.values.join(",")),
                Operator::NotIn => format!("{} notin ({})", r.key, r.values.join(",")),
                Operator::Exists => r.key.clone(),
                Operator::DoesNotExist => format!("!{}", r.key),
            });
        }
        f.write_str(&parts.join(","))
    }
}

/// Which namespaces a selector peer looks in.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum NamespaceScope {
    /// No namespaceSelector: the policy's own namespace.
    PolicyNamespace,
    /// namespaceSelector (possibly `{}`: every namespace).
    Selector(LabelSelector),
}

/// One element of `from` / `to`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Peer {
    /// podSelector and/or namespaceSelector; both present means AND.
    /// `pods: None` means every pod of the selected namespaces.
    Pods {
        namespaces: NamespaceScope,
        pods: Option<LabelSelector>,
    },
    /// CIDR minus exceptions; matches external addresses and pod IPs alike.
    IpBlock { cidr: IpNet, except: Vec<IpNet> },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum PortRef {
    /// `port` alone, or `port`..=`end_port`.
    Number { port: u16, end: u16 },
    /// A containerPort name, resolved on the destination endpoint.
    Named(String),
}

/// One element of `ports`. `port: None` means every port of the protocol.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct PortRule {
    pub protocol: Protocol,
    pub port: Option<PortRef>,
}

/// An ingress or egress rule. Empty `peers` means every peer; empty `ports` every port.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize)]
pub struct Rule {
    pub peers: Vec<Peer>,
    pub ports: Vec<PortRule>,
    pub origin: Origin,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Direction {
    Ingress,
    Egress,
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        })
    }
}

/// A `networking.k8s.io/v1` NetworkPolicy with its defaults applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Policy {
    pub namespace: String,
    pub name: String,
    pub pod_selector: LabelSelector,
    /// policyTypes after defaulting: Ingress always when absent, Egress when egress rules exist.
    pub isolates_ingress: bool,
    pub isolates_egress: bool,
    pub ingress: Vec<Rule>,
    pub egress: Vec<Rule>,
    /// Enforced, or only audited ([`MODE_ANNOTATION`]).
    pub mode: Mode,
    pub origin: Origin,
}

/// Labels controllers add to the pods they create (per revision, per pod, per run): a
/// replica carrying them still matches its template, and a selector on them breaks at the
/// next rollout.
pub const CONTROLLER_LABELS: &[&str] = &[
    "pod-template-hash",
    "controller-revision-hash",
    "pod-template-generation",
    "statefulset.kubernetes.io/pod-name",
    "apps.kubernetes.io/pod-index",
    "controller-uid",
    "job-name",
    "batch.kubernetes.io/controller-uid",
    "batch.kubernetes.io/job-name",
    "batch.kubernetes.io/job-completion-index",
];

/// The annotation that puts a NetworkPolicy in audit mode: `weir.dev/mode: audit`.
pub const MODE_ANNOTATION: &str = "weir.dev/mode";

/// Whether a policy's drops happen. An audited policy is compiled and counted, but where it
/// would drop, the packet is logged as a would-drop and goes on as if the policy did not
/// exist: the safe first step before enforcing a default-deny on live traffic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Enforce,
    Audit,
}

impl Mode {
    /// The annotation's values.
    pub const VALUES: [&'static str; 2] = ["enforce", "audit"];

    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "enforce" => Some(Mode::Enforce),
            "audit" => Some(Mode::Audit),
            _ => None,
        }
    }
}

impl Policy {
    pub fn id(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    pub fn isolates(&self, direction: Direction) -> bool {
        match direction {
            Direction::Ingress => self.isolates_ingress,
            Direction::Egress => self.isolates_egress,
        }
    }

    /// The default-deny ingress baseline: every pod of the namespace, isolated for ingress,
    /// no ingress rules.
    pub fn is_default_deny_ingress(&self) -> bool {
        self.pod_selector.is_empty() && self.isolates_ingress && self.ingress.is_empty()
    }

    pub fn rules(&self, direction: Direction) -> &[Rule] {
        match direction {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }
}

/// The cluster-wide tiers of `policy.networking.k8s.io`: Admin policies are evaluated
/// before NetworkPolicies, Baseline policies after them (and before the default allow).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Tier {
    Admin,
    Baseline,
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Tier::Admin => "Admin",
            Tier::Baseline => "Baseline",
        })
    }
}

/// What a cluster policy's rule does with the traffic it matches. v1alpha1 spells
/// Accept `Allow`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Action {
    /// Allowed in this direction; no later tier is asked.
    Accept,
    /// Dropped; no later tier is asked.
    Deny,
    /// The rest of this tier is skipped: the next tier decides.
    Pass,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Accept => "Accept",
            Action::Deny => "Deny",
            Action::Pass => "Pass",
        })
    }
}

/// The kind a cluster policy was written as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum ClusterKind {
    /// `policy.networking.k8s.io/v1alpha2` ClusterNetworkPolicy (either tier).
    ClusterNetworkPolicy,
    /// `policy.networking.k8s.io/v1alpha1` AdminNetworkPolicy (Admin tier).
    AdminNetworkPolicy,
    /// `policy.networking.k8s.io/v1alpha1` BaselineAdminNetworkPolicy (Baseline tier, the
    /// singleton `default`).
    BaselineAdminNetworkPolicy,
}

impl fmt::Display for ClusterKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClusterKind::ClusterNetworkPolicy => "ClusterNetworkPolicy",
            ClusterKind::AdminNetworkPolicy => "AdminNetworkPolicy",
            ClusterKind::BaselineAdminNetworkPolicy => "BaselineAdminNetworkPolicy",
        })
    }
}

/// Pods of the namespaces a selector picks, optionally only those a pod selector picks:
/// a cluster policy's `subject`, and its `namespaces` and `pods` peers. Never hostNetwork pods.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct PodsIn {
    pub namespaces: LabelSelector,
    /// `None`: every pod of those namespaces (the `namespaces` form).
    pub pods: Option<LabelSelector>,
}

/// One element of a cluster policy rule's `from` / `to`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum ClusterPeer {
    Pods(PodsIn),
    /// CIDRs (egress only); they match pod addresses too.
    Networks(Vec<IpNet>),
    /// The addresses of the nodes a selector picks (egress only; experimental).
    Nodes(LabelSelector),
    /// Domain names (egress Accept only; experimental). weir cannot resolve them: such a
    /// peer matches no traffic, and loading it warns.
    DomainNames(Vec<String>),
}

/// One element of a cluster policy rule's `protocols` / `ports`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum ClusterPort {
    /// `start`..=`end` of one protocol (one port: `start == end`).
    Range {
        protocol: Protocol,
        start: u16,
        end: u16,
    },
    /// A containerPort name on the destination, of any protocol.
    Named(String),
}

/// A cluster policy rule: first match in its policy's order wins.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct ClusterRule {
    /// The rule's `name` (may be empty).
    pub name: String,
    pub action: Action,
    /// Never empty (the API requires at least one).
    pub peers: Vec<ClusterPeer>,
    /// `None`: every protocol and port, ICMP included.
    pub ports: Option<Vec<ClusterPort>>,
}

/// A cluster-wide policy of either API version, with its tier and priority.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClusterPolicy {
    pub kind: ClusterKind,
    pub name: String,
    pub tier: Tier,
    /// 0–1000, lower first. A BaselineAdminNetworkPolicy counts as 0.
    pub priority: u16,
    pub subject: PodsIn,
    pub ingress: Vec<ClusterRule>,
    pub egress: Vec<ClusterRule>,
    pub origin: Origin,
}

impl ClusterPolicy {
    /// `ClusterNetworkPolicy/name`: cluster-scoped, so the kind tells apart equal names.
    pub fn id(&self) -> String {
        format!("{}/{}", self.kind, self.name)
    }

    pub fn rules(&self, direction: Direction) -> &[ClusterRule] {
        match direction {
            Direction::Ingress => &self.ingress,
            Direction::Egress => &self.egress,
        }
    }

    /// The order of evaluation: the Admin tier before the Baseline tier, and within a tier
    /// priority, then name, then kind. The API leaves equal priorities to the
    /// implementation; this is weir's, and lint names overlapping equals.
    pub fn order_key(&self) -> (Tier, u16, &str, ClusterKind) {
        (self.tier, self.priority, &self.name, self.kind)
    }
}

/// A node: what `nodes` peers of cluster policies select, by its addresses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Node {
    pub name: String,
    pub labels: Labels,
    pub addresses: Vec<IpAddr>,
    pub origin: Origin,
}

/// A Service port: the lab's virtual IPs, and the ways in from outside the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ServicePort {
    pub name: Option<String>,
    pub protocol: Protocol,
    pub port: u16,
    /// A number, or a containerPort name on the backends.
    pub target_port: Option<PortTarget>,
    /// The port every node opens for it (NodePort and LoadBalancer Services; `None` when
    /// the server has not allocated one yet or allocation is off).
    pub node_port: Option<u16>,
}

/// `spec.type`: how far a Service reaches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum ServiceType {
    /// Inside the cluster only.
    #[default]
    ClusterIP,
    /// A port on every node.
    NodePort,
    /// An outside load balancer, and a port on every node.
    LoadBalancer,
    /// A DNS name; no backends.
    ExternalName,
}

impl fmt::Display for ServiceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ServiceType::ClusterIP => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
            ServiceType::ExternalName => "ExternalName",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum PortTarget {
    Number(u16),
    Named(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Service {
    pub namespace: String,
    pub name: String,
    pub selector: Labels,
    pub ports: Vec<ServicePort>,
    pub cluster_ip: Option<IpAddr>,
    pub service_type: ServiceType,
    /// `externalTrafficPolicy: Local`: outside clients' addresses reach the pods as they
    /// are. Otherwise (`Cluster`) kube-proxy masquerades them to the address of the node
    /// they arrived at.
    pub external_local: bool,
    /// `loadBalancerSourceRanges`: the load balancer admits only these clients (empty: all).
    pub source_ranges: Vec<IpNet>,
    pub origin: Origin,
}

/// A way in through a proxy: an Ingress (`networking.k8s.io/v1`) or a Gateway API
/// HTTPRoute (`gateway.networking.k8s.io`). The proxy's pods (the ingress controller, the
/// gateway's implementation) connect to these Services' pods themselves, so the backends
/// see the proxy as the source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Ingress {
    pub kind: RouteKind,
    pub namespace: String,
    pub name: String,
    /// What serves it: the IngressClass (`spec.ingressClassName`), or an HTTPRoute's parent
    /// Gateways (`namespace/name`).
    pub served_by: Vec<String>,
    pub backends: Vec<IngressBackend>,
    pub origin: Origin,
}

/// The object a proxy's way in comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum RouteKind {
    Ingress,
    #[serde(rename = "HTTPRoute")]
    HttpRoute,
}

impl std::fmt::Display for RouteKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RouteKind::Ingress => "Ingress",
            RouteKind::HttpRoute => "HTTPRoute",
        })
    }
}

/// One backend of an Ingress (`spec.defaultBackend` or a rule's path) or of an HTTPRoute
/// (a rule's `backendRefs`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IngressBackend {
    /// `host/path` in words (`*` for any host; `default` for an Ingress's default backend).
    pub route: String,
    /// The Service's namespace: the route's own, or (HTTPRoute) another one that a
    /// ReferenceGrant opens to it.
    pub namespace: String,
    /// The Service.
    pub service: String,
    /// The Service's port: its number or its name.
    pub port: PortTarget,
}

/// Everything the engine needs, in input order (namespaces sorted by name).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Cluster {
    pub namespaces: Vec<Namespace>,
    pub endpoints: Vec<Endpoint>,
    pub policies: Vec<Policy>,
    pub services: Vec<Service>,
    pub ingresses: Vec<Ingress>,
    /// ClusterNetworkPolicies, AdminNetworkPolicies and BaselineAdminNetworkPolicies.
    pub cluster_policies: Vec<ClusterPolicy>,
    pub nodes: Vec<Node>,
}

impl Cluster {
    /// The cluster as the dataplane enforces it: audited policies left out (they change
    /// nothing on the wire). The analyses answer for this unless asked "as if enforced".
    pub fn without_audited(mut self) -> Cluster {
        self.policies.retain(|p| p.mode == Mode::Enforce);
        self
    }

    /// How many policies are audited.
    pub fn audited(&self) -> usize {
        self.policies
            .iter()
            .filter(|p| p.mode == Mode::Audit)
            .count()
    }

    pub fn namespace(&self, name: &str) -> Option<&Namespace> {
        self.namespaces.iter().find(|n| n.name == name)
    }

    /// Finds an endpoint by `namespace/name`.
    pub fn endpoint_index(&self, id: &str) -> Option<usize> {
        let (ns, name) = id.split_once('/')?;
        self.endpoints
            .iter()
            .position(|e| e.namespace == ns && e.name == name)
    }
}

/// Which endpoints an intent speaks about: `namespace` and `name` globs (`*` matches any
/// run of characters) and labels the endpoint must carry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EndpointPattern {
    pub namespace: String,
    pub name: String,
    pub labels: Labels,
}

impl EndpointPattern {
    pub fn matches(&self, ep: &Endpoint) -> bool {
        glob(&self.namespace, &ep.namespace)
            && glob(&self.name, &ep.name)
            && self.labels.iter().all(|(k, v)| ep.labels.get(k) == Some(v))
    }
}

impl fmt::Display for EndpointPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)?;
        if !self.labels.is_empty() {
            let l: Vec<String> = self
                .labels
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            write!(f, " labelled {}", l.join(","))?;
        }
        Ok(())
    }
}

/// `*` matches any run of characters; everything else matches itself. Linear in the text
/// for each literal piece (greedy, no backtracking across pieces), so a pattern of many `*`
/// cannot take exponential time.
pub fn glob(pattern: &str, text: &str) -> bool {
    let mut pieces = pattern.split('*');
    let first = pieces.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let pieces: Vec<&str> = pieces.collect();
    let Some((last, middle)) = pieces.split_last() else {
        return rest.is_empty(); // no `*`: the whole text was the first piece
    };
    // Each middle piece at its leftmost match: leaving the most text for what follows is
    // always at least as good as any later match.
    for piece in middle {
        match rest.find(piece) {
            Some(i) => rest = &rest[i + piece.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// What must hold between the `from` and `to` endpoints of an intent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Expectation {
    /// Every pair allows every listed port.
    Allowed(Vec<PortKey>),
    /// Every pair denies every listed port (`None`: denies everything).
    Denied(Option<Vec<PortKey>>),
    /// Every pair allows nothing beyond the listed ports.
    Only(Vec<PortKey>),
    /// `to` accepts exactly the listed ports from endpoints matching `from`, and nothing
    /// from any other endpoint (the intent's own `from` is ignored).
    AcceptsOnlyFrom {
        from: EndpointPattern,
        ports: Vec<PortKey>,
    },
    /// Every namespace matched by `to` has a default-deny ingress policy, and every
    /// endpoint in it is isolated for ingress.
    DefaultDeny,
}

/// One intent of a `weir test` file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Intent {
    pub name: String,
    pub from: EndpointPattern,
    pub to: EndpointPattern,
    pub expect: Expectation,
    pub origin: Origin,
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary: how
/// every message and comment cuts text it did not write (hostile values stay bounded).
pub fn prefix(s: &str, max: usize) -> &str {
    let mut cut = max.min(s.len());
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    &s[..cut]
}

#[cfg(test)]
mod tests {
    #[test]
    fn prefix_cuts_on_a_character_boundary() {
        assert_eq!(super::prefix("abc", 10), "abc");
        assert_eq!(super::prefix("abc", 2), "ab");
        // 'é' is two bytes: a cut inside it backs off to before it.
        assert_eq!(super::prefix("aé", 2), "a");
        assert_eq!(super::prefix("éé", 3), "é");
        assert_eq!(super::prefix("", 0), "");
    }

    use super::glob;

    #[test]
    fn globs_match_like_shell_stars() {
        for (p, t, want) in [
            ("production/*", "production/redis", true),
            ("*/redis", "production/redis", true),
            ("*", "", true),
            ("a*b*c", "abc", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "acb", false),
            ("*ab", "aab", true),
            ("a*a", "a", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
            ("pro*", "per", false),
        ] {
            assert_eq!(glob(p, t), want, "{p} ~ {t}");
        }
    }

    #[test]
    fn many_stars_take_linear_time() {
        // With backtracking this is 2^30-ish steps; it must answer at once (the test would
        // not finish otherwise).
        let pattern = "a*".repeat(30) + "b";
        let text = "a".repeat(200);
        assert!(!glob(&pattern, &text));
        assert!(glob(&pattern, &(text + "b")));
    }
}
