//! Traffic from outside the cluster: through a NodePort or LoadBalancer Service, or an
//! Ingress's controller, which pods the outside world reaches, on which port, after policy.
//!
//! Sources are what the pods see with kube-proxy (iptables or IPVS): `externalTrafficPolicy:
//! Local` keeps the client's address; `Cluster` masquerades it to the address of the node the
//! traffic arrived at; an Ingress's backends see the ingress controller's pods (the
//! controller connects to the pods, not to the Service's virtual IP). A load balancer admits
//! only its `loadBalancerSourceRanges`; a node port admits everyone.

use std::collections::HashMap;
use std::net::IpAddr;

use weir_model::{Direction, PortKey, PortTarget, RouteKind, Service, ServiceType};

use crate::exposure::{Addrs, Exposure, Term, TooComplex, Who};
use crate::{selector, Engine, Side};

/// Who the backend sees as the source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The outside clients themselves (`externalTrafficPolicy: Local`).
    Clients,
    /// The node the traffic arrived at (`externalTrafficPolicy: Cluster`).
    Nodes,
    /// The ingress controller's pods.
    Controller,
}

/// Whether the way in is open, and for whom.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Outside clients at these addresses get through (policy, and a load balancer's
    /// source ranges); none if empty.
    Clients(Addrs),
    /// The nodes' addresses (known from Node objects) the backend's policy admits, and
    /// those it refuses.
    Nodes {
        admitted: Vec<IpAddr>,
        refused: Vec<IpAddr>,
    },
    /// No Node objects in the input: traffic gets through from a node whose address is
    /// among these.
    NodesIn(Addrs),
    /// The controller's pods (given) that the policies of both sides let through, and the
    /// rest.
    Controllers {
        admitted: Vec<usize>,
        refused: Vec<usize>,
    },
    /// No controller given: the backend accepts on this port from these peers only, so the
    /// controller must be among them.
    ControllerAmong(Vec<Term>),
}

/// One way in to one backend pod on one port.
#[derive(Clone, Debug)]
pub struct Entry {
    /// `LoadBalancer production/todos port 80`, `node port 30080 of production/todos`,
    /// `Ingress production/web */api → todos:80`.
    pub via: String,
    /// The backend endpoint (index).
    pub backend: usize,
    /// The backend's port the traffic arrives on.
    pub port: PortKey,
    pub source: Source,
    pub verdict: Verdict,
}

impl Verdict {
    /// Whether anyone gets through.
    pub fn open(&self) -> bool {
        match self {
            Verdict::Clients(a) | Verdict::NodesIn(a) => !a.is_empty(),
            Verdict::Nodes { admitted, .. } => !admitted.is_empty(),
            Verdict::Controllers { admitted, .. } => !admitted.is_empty(),
            Verdict::ControllerAmong(terms) => !terms.is_empty(),
        }
    }
}

/// The backends of a Service port: (endpoint, its port) for each endpoint the selector
/// picks in the Service's namespace whose port the target resolves to.
fn backends(
    engine: &Engine,
    svc: &Service,
    port: &weir_model::ServicePort,
) -> Vec<(usize, PortKey)> {
    if svc.selector.is_empty() {
        return Vec::new(); // endpoints managed by hand: not in the input
    }
    let sel = weir_model::LabelSelector {
        match_labels: svc.selector.clone(),
        match_expressions: Vec::new(),
    };
    let mut out = Vec::new();
    for (i, ep) in engine.cluster().endpoints.iter().enumerate() {
        if ep.namespace != svc.namespace || !selector::matches(&sel, &ep.labels) {
            continue;
        }
        let target = match &port.target_port {
            None => Some(port.port),
            Some(PortTarget::Number(n)) => Some(*n),
            Some(PortTarget::Named(name)) => ep
                .ports
                .iter()
                .find(|c| c.name.as_deref() == Some(name) && c.protocol == port.protocol)
                .map(|c| c.port),
        };
        if let Some(t) = target {
            out.push((i, PortKey::new(port.protocol, t)));
        }
    }
    out
}

/// The ingress exposure of endpoint `i`, computed on first use.
fn cached<'m>(
    exposures: &'m mut HashMap<usize, Exposure>,
    engine: &Engine,
    i: usize,
) -> Result<&'m Exposure, TooComplex> {
    use std::collections::hash_map::Entry;
    Ok(match exposures.entry(i) {
        Entry::Occupied(e) => e.into_mut(),
        Entry::Vacant(e) => {
            e.insert(engine.exposure(&engine.cluster().endpoints[i], Direction::Ingress)?)
        }
    })
}

/// Addresses in the cluster that are no pod's own: the nodes' (Node objects) and those of
/// hostNetwork pods (their nodes'). Outside the cluster is every address that is neither
/// one of these nor a pod's: one meaning for exposure and for the ways in.
pub fn cluster_addresses(cluster: &weir_model::Cluster) -> Vec<IpAddr> {
    let mut all: Vec<IpAddr> = node_addresses(cluster)
        .chain(
            cluster
                .endpoints
                .iter()
                .filter(|e| e.host_network)
                .flat_map(|e| e.ips.iter().copied()),
        )
        .collect();
    all.sort_unstable();
    all.dedup();
    all
}

/// The nodes' addresses, as their Node objects give them.
fn node_addresses(cluster: &weir_model::Cluster) -> impl Iterator<Item = IpAddr> + '_ {
    cluster
        .nodes
        .iter()
        .flat_map(|n| n.addresses.iter().copied())
}

/// Every way in from outside, for every backend pod, with its verdict. `controllers`: the
/// ingress controller's pods, when known.
pub fn entries(engine: &Engine, controllers: Option<&[usize]>) -> Result<Vec<Entry>, TooComplex> {
    let cluster = engine.cluster();
    let nodes: Vec<IpAddr> = node_addresses(cluster).collect();
    let inside = Addrs::of_ips(&cluster_addresses(cluster));
    // Each backend's ingress exposure, computed once however many ways lead to it.
    let mut exposures: HashMap<usize, Exposure> = HashMap::new();
    // Addresses that are not pods the backend admits on the port.
    let admitted = |x: &Exposure, port: PortKey| -> Addrs {
        x.grants
            .iter()
            .filter(|g| g.peers.who == Who::NotPods && g.ports.contains(port.protocol, port.port))
            .fold(Addrs::none(), |acc, g| acc.union(&g.peers.addrs))
    };
    let mut out = Vec::new();
    for svc in &cluster.services {
        if !matches!(
            svc.service_type,
            ServiceType::NodePort | ServiceType::LoadBalancer
        ) {
            continue;
        }
        let id = format!("{}/{}", svc.namespace, svc.name);
        for sp in &svc.ports {
            let mut ways = Vec::new();
            if svc.service_type == ServiceType::LoadBalancer {
                ways.push((format!("LoadBalancer {id} port {}", sp.port), true));
            }
            ways.push((
                match sp.node_port {
                    Some(np) => format!("node port {np} of {id}"),
                    None => format!("node port (not allocated in the input) of {id}"),
                },
                false,
            ));
            for (i, port) in backends(engine, svc, sp) {
                let x = cached(&mut exposures, engine, i)?;
                let allowed = admitted(x, port);
                for (via, load_balancer) in &ways {
                    let (source, verdict) = if svc.external_local {
                        let mut clients = allowed.minus(&inside);
                        if *load_balancer && !svc.source_ranges.is_empty() {
                            clients = clients.and(&Addrs::of_nets(&svc.source_ranges));
                        }
                        (Source::Clients, Verdict::Clients(clients))
                    } else if nodes.is_empty() {
                        (Source::Nodes, Verdict::NodesIn(allowed.clone()))
                    } else {
                        let (admitted, refused) = nodes.iter().partition(|ip| allowed.contains(ip));
                        (Source::Nodes, Verdict::Nodes { admitted, refused })
                    };
                    out.push(Entry {
                        via: via.clone(),
                        backend: i,
                        port,
                        source,
                        verdict,
                    });
                }
            }
        }
    }
    for ing in &cluster.ingresses {
        for b in &ing.backends {
            let Some(svc) = cluster
                .services
                .iter()
                .find(|s| s.namespace == b.namespace && s.name == b.service)
            else {
                continue; // no such Service: nothing behind it
            };
            let Some(sp) = svc.ports.iter().find(|p| match &b.port {
                PortTarget::Number(n) => p.port == *n,
                PortTarget::Named(name) => p.name.as_deref() == Some(name),
            }) else {
                continue;
            };
            let port_text = match &b.port {
                PortTarget::Number(n) => n.to_string(),
                PortTarget::Named(n) => n.clone(),
            };
            let service = if b.namespace == ing.namespace {
                b.service.clone()
            } else {
                format!("{}/{}", b.namespace, b.service)
            };
            let by = match (ing.kind, ing.served_by.len()) {
                (_, 0) => String::new(),
                (RouteKind::Ingress, _) => {
                    format!(" (class {})", ing.served_by.join(", "))
                }
                (RouteKind::HttpRoute, 1) => format!(" (parent {})", ing.served_by[0]),
                (RouteKind::HttpRoute, _) => {
                    format!(" (parents {})", ing.served_by.join(", "))
                }
            };
            let via = format!(
                "{} {}/{}{by} {} → {service}:{port_text}",
                ing.kind, ing.namespace, ing.name, b.route
            );
            for (i, port) in backends(engine, svc, sp) {
                let verdict = match controllers {
                    Some(cs) => {
                        let (admitted, refused) = cs.iter().partition(|&&c| {
                            c == i
                                || engine
                                    .allowed(Side::Endpoint(c), Side::Endpoint(i))
                                    .contains(port.protocol, port.port)
                        });
                        Verdict::Controllers { admitted, refused }
                    }
                    None => {
                        let x = cached(&mut exposures, engine, i)?;
                        Verdict::ControllerAmong(
                            x.grants
                                .iter()
                                .filter(|g| {
                                    matches!(g.peers.who, Who::Pods { .. })
                                        && g.ports.contains(port.protocol, port.port)
                                })
                                .map(|g| g.peers.clone())
                                .collect(),
                        )
                    }
                };
                out.push(Entry {
                    via: via.clone(),
                    backend: i,
                    port,
                    source: Source::Controller,
                    verdict,
                });
            }
        }
    }
    Ok(out)
}
