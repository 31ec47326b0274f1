//! The cluster-wide tiers of `policy.networking.k8s.io`: ClusterNetworkPolicy (v1alpha2)
//! and AdminNetworkPolicy / BaselineAdminNetworkPolicy (v1alpha1), checked as the API
//! server checks them with the CRDs' schemas and CEL rules (network-policy-api v0.3.0 and
//! v0.1.8), and turned into one model: [`weir_model::ClusterPolicy`].
//!
//! Experimental fields (named ports, node and domain-name peers) are loaded like the
//! experimental CRDs load them; domain names cannot be enforced here and say so.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use serde::Deserialize;
use serde_json::Value;
use weir_model::{
    Action, ClusterKind, ClusterPeer, ClusterPolicy, ClusterPort, ClusterRule, Origin, PodsIn,
    Protocol, Tier,
};

use crate::path::FieldPath;
use crate::validate::{self, shown, NameRule, Problems};

/// Fields every object has beside its spec.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Object<S> {
    #[allow(dead_code)]
    api_version: Option<String>,
    #[allow(dead_code)]
    kind: Option<String>,
    #[serde(default)]
    pub(crate) metadata: ObjectMeta,
    pub(crate) spec: S,
    #[allow(dead_code)]
    status: Option<Value>,
}

/// v1alpha2 `spec`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CnpSpec {
    tier: String,
    priority: i64,
    subject: Subject,
    #[serde(default)]
    ingress: Vec<CnpIngress>,
    #[serde(default)]
    egress: Vec<CnpEgress>,
}

/// v1alpha1 AdminNetworkPolicy `spec`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct AnpSpec {
    priority: i64,
    subject: Subject,
    #[serde(default)]
    ingress: Vec<AnpIngress>,
    #[serde(default)]
    egress: Vec<AnpEgress>,
}

/// v1alpha1 BaselineAdminNetworkPolicy `spec`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct BanpSpec {
    subject: Subject,
    #[serde(default)]
    ingress: Vec<AnpIngress>,
    #[serde(default)]
    egress: Vec<AnpEgress>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Subject {
    namespaces: Option<LabelSelector>,
    pods: Option<NamespacedPod>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NamespacedPod {
    namespace_selector: Option<LabelSelector>,
    pod_selector: Option<LabelSelector>,
}

/// Every peer field of either version; which are allowed depends on the direction and kind.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PeerIn {
    namespaces: Option<LabelSelector>,
    pods: Option<NamespacedPod>,
    nodes: Option<LabelSelector>,
    networks: Option<Vec<String>>,
    domain_names: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CnpIngress {
    #[serde(default)]
    name: String,
    action: String,
    from: Vec<PeerIn>,
    protocols: Option<Vec<CnpProtocol>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CnpEgress {
    #[serde(default)]
    name: String,
    action: String,
    to: Vec<PeerIn>,
    protocols: Option<Vec<CnpProtocol>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AnpIngress {
    #[serde(default)]
    name: String,
    action: String,
    from: Vec<PeerIn>,
    ports: Option<Vec<AnpPort>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AnpEgress {
    #[serde(default)]
    name: String,
    action: String,
    to: Vec<PeerIn>,
    ports: Option<Vec<AnpPort>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CnpProtocol {
    tcp: Option<CnpPorts>,
    udp: Option<CnpPorts>,
    sctp: Option<CnpPorts>,
    destination_named_port: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CnpPorts {
    destination_port: Option<CnpPort>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CnpPort {
    number: Option<i64>,
    range: Option<Range>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Range {
    protocol: Option<String>,
    start: i64,
    end: i64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AnpPort {
    port_number: Option<PortNumber>,
    named_port: Option<String>,
    port_range: Option<Range>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PortNumber {
    protocol: Option<String>,
    port: i64,
}

/// The limits and spellings that differ between the versions.
struct Dialect {
    kind: ClusterKind,
    /// Items of `ingress`/`egress`, of `from`/`to` and of `protocols`/`ports`.
    max_rules: usize,
    max_peers: usize,
    max_ports: usize,
    ports_field: &'static str,
    /// (spelling, action), in the order messages list them.
    actions: &'static [(&'static str, Action)],
    domain_names: bool,
}

const CNP: Dialect = Dialect {
    kind: ClusterKind::ClusterNetworkPolicy,
    max_rules: 25,
    max_peers: 25,
    max_ports: 25,
    ports_field: "protocols",
    actions: &[
        ("Accept", Action::Accept),
        ("Deny", Action::Deny),
        ("Pass", Action::Pass),
    ],
    domain_names: true,
};

const ANP: Dialect = Dialect {
    kind: ClusterKind::AdminNetworkPolicy,
    max_rules: 100,
    max_peers: 100,
    max_ports: 100,
    ports_field: "ports",
    actions: &[
        ("Allow", Action::Accept),
        ("Deny", Action::Deny),
        ("Pass", Action::Pass),
    ],
    domain_names: true,
};

const BANP: Dialect = Dialect {
    kind: ClusterKind::BaselineAdminNetworkPolicy,
    max_rules: 100,
    max_peers: 100,
    max_ports: 100,
    ports_field: "ports",
    actions: &[("Allow", Action::Accept), ("Deny", Action::Deny)],
    domain_names: false,
};

/// One rule before checking: what the versions have in common.
struct RuleIn<'a> {
    name: &'a str,
    action: &'a str,
    peers: &'a [PeerIn],
    ports: Ports<'a>,
}

enum Ports<'a> {
    Cnp(Option<&'a [CnpProtocol]>),
    Anp(Option<&'a [AnpPort]>),
}

pub(crate) fn cnp(
    o: Object<CnpSpec>,
    origin: Origin,
    problems: &mut Problems,
) -> Option<ClusterPolicy> {
    let spec = root().key("spec");
    let tier = match o.spec.tier.as_str() {
        "Admin" => Tier::Admin,
        "Baseline" => Tier::Baseline,
        other => {
            problems.error(
                spec.key("tier"),
                format!(
                    "unsupported tier {}: must be Admin or Baseline",
                    shown(other)
                ),
            );
            Tier::Admin
        }
    };
    let priority = priority(o.spec.priority, problems);
    let ingress: Vec<RuleIn> = o
        .spec
        .ingress
        .iter()
        .map(|r| RuleIn {
            name: &r.name,
            action: &r.action,
            peers: &r.from,
            ports: Ports::Cnp(r.protocols.as_deref()),
        })
        .collect();
    let egress: Vec<RuleIn> = o
        .spec
        .egress
        .iter()
        .map(|r| RuleIn {
            name: &r.name,
            action: &r.action,
            peers: &r.to,
            ports: Ports::Cnp(r.protocols.as_deref()),
        })
        .collect();
    build(
        &CNP,
        &o.metadata,
        tier,
        priority,
        &o.spec.subject,
        &ingress,
        &egress,
        origin,
        problems,
    )
}

pub(crate) fn anp(
    o: Object<AnpSpec>,
    origin: Origin,
    problems: &mut Problems,
) -> Option<ClusterPolicy> {
    let priority = priority(o.spec.priority, problems);
    let (ingress, egress) = anp_rules(&o.spec.ingress, &o.spec.egress);
    build(
        &ANP,
        &o.metadata,
        Tier::Admin,
        priority,
        &o.spec.subject,
        &ingress,
        &egress,
        origin,
        problems,
    )
}

pub(crate) fn banp(
    o: Object<BanpSpec>,
    origin: Origin,
    problems: &mut Problems,
) -> Option<ClusterPolicy> {
    if o.metadata.name.as_deref().is_some_and(|n| n != "default") {
        problems.error(
            root().key("metadata").key("name"),
            "Only one baseline admin network policy with metadata.name=\"default\" can be created in the cluster",
        );
    }
    let (ingress, egress) = anp_rules(&o.spec.ingress, &o.spec.egress);
    build(
        &BANP,
        &o.metadata,
        Tier::Baseline,
        0,
        &o.spec.subject,
        &ingress,
        &egress,
        origin,
        problems,
    )
}

fn anp_rules<'a>(
    ingress: &'a [AnpIngress],
    egress: &'a [AnpEgress],
) -> (Vec<RuleIn<'a>>, Vec<RuleIn<'a>>) {
    (
        ingress
            .iter()
            .map(|r| RuleIn {
                name: &r.name,
                action: &r.action,
                peers: &r.from,
                ports: Ports::Anp(r.ports.as_deref()),
            })
            .collect(),
        egress
            .iter()
            .map(|r| RuleIn {
                name: &r.name,
                action: &r.action,
                peers: &r.to,
                ports: Ports::Anp(r.ports.as_deref()),
            })
            .collect(),
    )
}

fn root() -> FieldPath {
    FieldPath::root()
}

fn priority(p: i64, problems: &mut Problems) -> u16 {
    if !(0..=1000).contains(&p) {
        problems.error(
            root().key("spec").key("priority"),
            format!("priority {p} must be between 0 and 1000"),
        );
    }
    p.clamp(0, 1000) as u16
}

#[allow(clippy::too_many_arguments)]
fn build(
    d: &Dialect,
    metadata: &ObjectMeta,
    tier: Tier,
    priority: u16,
    subject: &Subject,
    ingress: &[RuleIn],
    egress: &[RuleIn],
    origin: Origin,
    problems: &mut Problems,
) -> Option<ClusterPolicy> {
    let mpath = root().key("metadata");
    let Some(name) = metadata.name.clone().filter(|n| !n.is_empty()) else {
        problems.error(mpath.key("name"), "missing name");
        return None;
    };
    if let Some(why) = NameRule::Dns1123Subdomain.problem(&name) {
        problems.error(mpath.key("name"), why);
    }
    validate::check_labels(
        &metadata.labels.clone().unwrap_or_default(),
        &mpath.key("labels"),
        problems,
    );
    if crate::decode::mode(metadata, problems) == weir_model::Mode::Audit {
        // Auditing a tier's Deny exactly needs the verdict of every rule after it; until
        // weir can, an audited cluster policy would be enforced, which is an outage the
        // operator did not ask for. Refused instead (the last good version stays).
        problems.error(
            mpath.key("annotations").key(weir_model::MODE_ANNOTATION),
            format!(
                "{}: audit mode is for NetworkPolicies; a cluster-wide policy cannot be audited yet (the agent's --audit audits every policy)",
                weir_model::MODE_ANNOTATION
            ),
        );
    }
    let spec = root().key("spec");
    let subject = pods_in(
        subject.namespaces.as_ref(),
        subject.pods.as_ref(),
        &spec.key("subject"),
        problems,
    )
    .unwrap_or(PodsIn {
        namespaces: Default::default(),
        pods: None,
    });
    let ingress = rules(d, ingress, "ingress", "from", &spec, problems);
    let egress = rules(d, egress, "egress", "to", &spec, problems);
    Some(ClusterPolicy {
        kind: d.kind,
        name,
        tier,
        priority,
        subject,
        ingress,
        egress,
        origin,
    })
}

/// `namespaces` or `pods`: exactly one (a subject, or a pod peer).
fn pods_in(
    namespaces: Option<&LabelSelector>,
    pods: Option<&NamespacedPod>,
    path: &FieldPath,
    problems: &mut Problems,
) -> Option<PodsIn> {
    match (namespaces, pods) {
        (Some(n), None) => Some(PodsIn {
            namespaces: validate::selector(n, &path.key("namespaces"), problems),
            pods: None,
        }),
        (None, Some(p)) => {
            let ppath = path.key("pods");
            let namespaces = p
                .namespace_selector
                .as_ref()
                .map(|s| validate::selector(s, &ppath.key("namespaceSelector"), problems))
                .unwrap_or_default();
            let Some(pod_selector) = &p.pod_selector else {
                problems.error(ppath.key("podSelector"), "required");
                return None;
            };
            Some(PodsIn {
                namespaces,
                pods: Some(validate::selector(
                    pod_selector,
                    &ppath.key("podSelector"),
                    problems,
                )),
            })
        }
        (Some(_), Some(_)) => {
            problems.error(path.clone(), "exactly one of namespaces or pods, not both");
            None
        }
        (None, None) => {
            problems.error(
                path.clone(),
                "exactly one of namespaces or pods is required",
            );
            None
        }
    }
}

fn rules(
    d: &Dialect,
    list: &[RuleIn],
    direction: &str,
    peers_field: &str,
    spec: &FieldPath,
    problems: &mut Problems,
) -> Vec<ClusterRule> {
    let dpath = spec.key(direction);
    if list.len() > d.max_rules {
        problems.error(
            dpath.clone(),
            format!("{} rules; at most {} are allowed", list.len(), d.max_rules),
        );
    }
    list.iter()
        .enumerate()
        .filter_map(|(i, r)| {
            rule(
                d,
                r,
                direction == "egress",
                peers_field,
                &dpath.index(i),
                problems,
            )
        })
        .collect()
}

fn rule(
    d: &Dialect,
    r: &RuleIn,
    egress: bool,
    peers_field: &str,
    path: &FieldPath,
    problems: &mut Problems,
) -> Option<ClusterRule> {
    if r.name.len() > 100 {
        problems.error(
            path.key("name"),
            format!("{} bytes; at most 100 are allowed", r.name.len()),
        );
    }
    let action = match d.actions.iter().find(|(spelling, _)| *spelling == r.action) {
        Some(&(_, a)) => Some(a),
        None => {
            let allowed: Vec<&str> = d.actions.iter().map(|(s, _)| *s).collect();
            let hint = match (d.kind, r.action) {
                (ClusterKind::ClusterNetworkPolicy, "Allow") => " (v1alpha2 spells it Accept)",
                (_, "Accept") => " (v1alpha1 spells it Allow)",
                _ => "",
            };
            problems.error(
                path.key("action"),
                format!(
                    "unsupported action {}: must be {}{hint}",
                    shown(r.action),
                    allowed.join(", ")
                ),
            );
            None
        }
    };
    let ppath = path.key(peers_field);
    if r.peers.is_empty() {
        problems.error(ppath.clone(), "at least one peer is required");
    } else if r.peers.len() > d.max_peers {
        problems.error(
            ppath.clone(),
            format!(
                "{} peers; at most {} are allowed",
                r.peers.len(),
                d.max_peers
            ),
        );
    }
    let peers: Vec<ClusterPeer> = r
        .peers
        .iter()
        .enumerate()
        .filter_map(|(i, p)| peer(d, p, egress, &ppath.index(i), problems))
        .collect();
    let ports = ports(d, &r.ports, &path.key(d.ports_field), problems);
    let named = ports
        .iter()
        .flatten()
        .any(|p| matches!(p, ClusterPort::Named(_)));
    let addresses = peers.iter().any(|p| !matches!(p, ClusterPeer::Pods(_)));
    if named && addresses {
        problems.error(
            path.clone(),
            "networks/nodes/domainNames peer cannot be set with namedPorts since there are no namedPorts for networks/nodes/domainNames",
        );
    }
    if let Some(Action::Deny | Action::Pass) = action {
        if peers
            .iter()
            .any(|p| matches!(p, ClusterPeer::DomainNames(_)))
        {
            problems.error(
                ppath.clone(),
                "domainNames peers are only supported in Accept (Allow) rules",
            );
        }
    }
    for (i, p) in peers.iter().enumerate() {
        if matches!(p, ClusterPeer::DomainNames(_)) {
            problems.warn(
                ppath.index(i).key("domainNames"),
                "weir does not resolve domain names: this peer matches no traffic in analysis and is not enforced",
            );
        }
    }
    Some(ClusterRule {
        name: r.name.to_string(),
        action: action?,
        peers,
        ports,
    })
}

fn peer(
    d: &Dialect,
    p: &PeerIn,
    egress: bool,
    path: &FieldPath,
    problems: &mut Problems,
) -> Option<ClusterPeer> {
    let set: Vec<&str> = [
        ("namespaces", p.namespaces.is_some()),
        ("pods", p.pods.is_some()),
        ("nodes", p.nodes.is_some()),
        ("networks", p.networks.is_some()),
        ("domainNames", p.domain_names.is_some()),
    ]
    .into_iter()
    .filter_map(|(f, on)| on.then_some(f))
    .collect();
    match set.as_slice() {
        [] => {
            problems.error(
                path.clone(),
                "a peer must set exactly one of namespaces, pods, nodes, networks or domainNames",
            );
            return None;
        }
        [_] => {}
        [..] => {
            problems.error(
                path.clone(),
                format!("a peer sets exactly one field, not {}", set.join(" and ")),
            );
            return None;
        }
    }
    let field = set[0];
    let allowed = match field {
        "namespaces" | "pods" => true,
        "nodes" | "networks" => egress,
        _ => egress && d.domain_names,
    };
    if !allowed {
        let why = if egress {
            format!("{} has no domainNames peers", d.kind)
        } else {
            "ingress peers are namespaces or pods".to_string()
        };
        problems.error(path.key(field), format!("unknown field {field:?}: {why}"));
        return None;
    }
    if let Some(nodes) = &p.nodes {
        return Some(ClusterPeer::Nodes(validate::selector(
            nodes,
            &path.key("nodes"),
            problems,
        )));
    }
    if let Some(list) = &p.networks {
        let npath = path.key("networks");
        bounded_set(list, &npath, problems);
        let mut nets = Vec::new();
        for (i, text) in list.iter().enumerate() {
            if text.len() > 43 {
                problems.error(
                    npath.index(i),
                    format!("{} bytes; at most 43 are allowed", text.len()),
                );
                continue;
            }
            if let Some(net) = validate::cidr(text, &npath.index(i), problems) {
                nets.push(net);
            }
        }
        nets.sort();
        nets.dedup();
        return Some(ClusterPeer::Networks(nets));
    }
    if let Some(list) = &p.domain_names {
        let dpath = path.key("domainNames");
        bounded_set(list, &dpath, problems);
        for (i, name) in list.iter().enumerate() {
            if !is_domain_name(name) {
                problems.error(
                    dpath.index(i),
                    format!(
                        "{} is not a domain name (labels of letters, digits, '-' and '_', optionally after a leading \"*.\")",
                        shown(name)
                    ),
                );
            }
        }
        return Some(ClusterPeer::DomainNames(list.clone()));
    }
    pods_in(p.namespaces.as_ref(), p.pods.as_ref(), path, problems).map(ClusterPeer::Pods)
}

/// A `listType=set` of 1 to 25 items.
fn bounded_set(list: &[String], path: &FieldPath, problems: &mut Problems) {
    if list.is_empty() || list.len() > 25 {
        problems.error(
            path.clone(),
            format!("{} items; 1 to 25 are allowed", list.len()),
        );
    }
    for (i, item) in list.iter().enumerate() {
        if list[..i].contains(item) {
            problems.error(path.index(i), format!("duplicate value {}", shown(item)));
        }
    }
}

/// The CRD's pattern: `^(\*\.)?([a-zA-z0-9]([-a-zA-Z0-9_]*[a-zA-Z0-9])?\.)+[a-zA-z0-9]([-a-zA-Z0-9_]*[a-zA-Z0-9])?\.?$`
/// (its `A-z` also admits `[\]^_` and a backquote as a label's first character).
fn is_domain_name(name: &str) -> bool {
    fn label(l: &[u8]) -> bool {
        let first = |c: u8| c.is_ascii_alphanumeric() || (b'['..=b'`').contains(&c);
        match l {
            [] => false,
            [c] => first(*c),
            [c, middle @ .., last] => {
                first(*c)
                    && last.is_ascii_alphanumeric()
                    && middle
                        .iter()
                        .all(|&m| m.is_ascii_alphanumeric() || m == b'-' || m == b'_')
            }
        }
    }
    let name = name.strip_prefix("*.").unwrap_or(name);
    let name = name.strip_suffix('.').unwrap_or(name);
    let labels: Vec<&str> = name.split('.').collect();
    labels.len() >= 2 && labels.iter().all(|l| label(l.as_bytes()))
}

fn ports(
    d: &Dialect,
    ports: &Ports,
    path: &FieldPath,
    problems: &mut Problems,
) -> Option<Vec<ClusterPort>> {
    let len = match ports {
        Ports::Cnp(list) => list.map(<[_]>::len),
        Ports::Anp(list) => list.map(<[_]>::len),
    }?;
    if len == 0 || len > d.max_ports {
        problems.error(
            path.clone(),
            format!("{len} items; 1 to {} are allowed", d.max_ports),
        );
    }
    let mut out = Vec::new();
    match ports {
        Ports::Cnp(list) => {
            for (i, p) in list.iter().flat_map(|l| l.iter()).enumerate() {
                if let Some(port) = cnp_port(p, &path.index(i), problems) {
                    out.push(port);
                }
            }
        }
        Ports::Anp(list) => {
            for (i, p) in list.iter().flat_map(|l| l.iter()).enumerate() {
                if let Some(port) = anp_port(p, &path.index(i), problems) {
                    out.push(port);
                }
            }
        }
    }
    Some(out)
}

fn cnp_port(p: &CnpProtocol, path: &FieldPath, problems: &mut Problems) -> Option<ClusterPort> {
    let set: Vec<(&str, Option<Protocol>, Option<&CnpPorts>)> = [
        ("tcp", Some(Protocol::Tcp), p.tcp.as_ref()),
        ("udp", Some(Protocol::Udp), p.udp.as_ref()),
        ("sctp", Some(Protocol::Sctp), p.sctp.as_ref()),
    ]
    .into_iter()
    .filter(|(_, _, v)| v.is_some())
    .collect();
    let fields = set.len() + p.destination_named_port.is_some() as usize;
    if fields != 1 {
        problems.error(
            path.clone(),
            "exactly one of tcp, udp, sctp or destinationNamedPort",
        );
        return None;
    }
    if let Some(name) = &p.destination_named_port {
        return named_port(name, &path.key("destinationNamedPort"), problems);
    }
    let (field, protocol, ports) = set[0];
    let protocol = protocol.expect("a protocol field");
    let ppath = path.key(field);
    let Some(port) = ports.and_then(|p| p.destination_port.as_ref()) else {
        problems.error(ppath.key("destinationPort"), "required");
        return None;
    };
    let ppath = ppath.key("destinationPort");
    match (port.number, &port.range) {
        (Some(n), None) => {
            validate::port_number(n, "port", &ppath.key("number"), problems).map(|n| {
                ClusterPort::Range {
                    protocol,
                    start: n,
                    end: n,
                }
            })
        }
        (None, Some(r)) => {
            if r.protocol.is_some() {
                problems.error(
                    ppath.key("range").key("protocol"),
                    "unknown field \"protocol\"",
                );
            }
            range(protocol, r, true, &ppath.key("range"), problems)
        }
        _ => {
            problems.error(ppath, "exactly one of number or range");
            None
        }
    }
}

fn anp_port(p: &AnpPort, path: &FieldPath, problems: &mut Problems) -> Option<ClusterPort> {
    let fields = p.port_number.is_some() as usize
        + p.named_port.is_some() as usize
        + p.port_range.is_some() as usize;
    if fields != 1 {
        problems.error(
            path.clone(),
            "exactly one of portNumber, namedPort or portRange",
        );
        return None;
    }
    if let Some(n) = &p.port_number {
        let npath = path.key("portNumber");
        let protocol = validate::protocol(n.protocol.as_deref(), &npath.key("protocol"), problems);
        return validate::port_number(n.port, "port", &npath.key("port"), problems).map(|port| {
            ClusterPort::Range {
                protocol,
                start: port,
                end: port,
            }
        });
    }
    if let Some(name) = &p.named_port {
        return named_port(name, &path.key("namedPort"), problems);
    }
    let r = p.port_range.as_ref().expect("one field is set");
    let rpath = path.key("portRange");
    let protocol = validate::protocol(r.protocol.as_deref(), &rpath.key("protocol"), problems);
    range(protocol, r, false, &rpath, problems)
}

/// `strict`: v1alpha2's CEL rule `start < end`; v1alpha1 has none, so an empty range is
/// accepted there and matches no port (a warning says so).
fn range(
    protocol: Protocol,
    r: &Range,
    strict: bool,
    path: &FieldPath,
    problems: &mut Problems,
) -> Option<ClusterPort> {
    let start = validate::port_number(r.start, "port", &path.key("start"), problems)?;
    let end = validate::port_number(r.end, "port", &path.key("end"), problems)?;
    if strict && start >= end {
        problems.error(path.clone(), "Start port must be less than End port");
        return None;
    }
    if start > end {
        problems.warn(
            path.clone(),
            format!("start {start} is after end {end}: the range matches no port"),
        );
    }
    Some(ClusterPort::Range {
        protocol,
        start,
        end,
    })
}

fn named_port(name: &str, path: &FieldPath, problems: &mut Problems) -> Option<ClusterPort> {
    if !validate::is_port_name(name) {
        problems.error(
            path.clone(),
            format!("{} is not a valid port name", shown(name)),
        );
        return None;
    }
    Some(ClusterPort::Named(name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::is_domain_name;

    #[test]
    fn domain_names_follow_the_crd_pattern() {
        for ok in [
            "kubernetes.io",
            "*.kubernetes.io",
            "a.b.c.",
            "my_host.example.com",
        ] {
            assert!(is_domain_name(ok), "{ok}");
        }
        for bad in [
            "io",
            "*kubernetes.io",
            "a..b",
            "-a.b",
            "a-.b",
            "*.*.io",
            "a b.c",
            "",
        ] {
            assert!(!is_domain_name(bad), "{bad}");
        }
    }
}
