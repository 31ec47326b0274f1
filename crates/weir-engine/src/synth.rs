//! Least-privilege NetworkPolicies from observed connections (`weir synth`), and the proof
//! that they allow every observed connection and what else they allow.
//!
//! Per workload, not per pod (the model folds replicas into their workload); selectors by
//! the workload's stable labels (never `pod-template-hash` and the like), the fewest that
//! select what all of them select; other namespaces by `kubernetes.io/metadata.name`;
//! ports by name where the destination names them. Each namespace involved gets a
//! default-deny, so that between the workloads involved nothing but what was observed is
//! allowed (what selectors cannot tell apart is reported, not hidden).

use std::collections::{BTreeMap, BTreeSet};

use weir_model::{
    LabelSelector, Labels, Mode, NamespaceScope, Origin, Peer, Policy, PortKey, PortRef, PortRule,
    Protocol, Rule, CONTROLLER_LABELS, NAMESPACE_NAME_LABEL,
};

use crate::ports::PortSet;
use crate::{Engine, Side};

/// One observed connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Observed {
    pub src: Side,
    pub dst: Side,
    pub port: PortKey,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct SynthOptions {
    /// Also egress policies (and a default-deny for egress that keeps DNS).
    pub egress: bool,
    /// The mode the policies are written in (audit first, to see what they would drop).
    pub mode: Mode,
}

/// One synthesised policy and why it is there.
#[derive(Clone, Debug)]
pub struct Synthesised {
    pub policy: Policy,
    /// What it is for, in a sentence.
    pub why: String,
    /// The observed connections it admits (`a → b TCP/80`), empty for a default-deny.
    pub admits: Vec<String>,
}

/// What synthesis made, and the observed connections it could not express.
#[derive(Clone, Debug, Default)]
pub struct Synthesis {
    pub policies: Vec<Synthesised>,
    /// (connection, why it is left out).
    pub ignored: Vec<(String, String)>,
}

/// Labels that change with every release, and labels of the tool that deployed it: with
/// [`CONTROLLER_LABELS`], no selector is made of them (it would break at the next upgrade,
/// or say nothing about the workload).
const UNSTABLE: [&str; 6] = [
    "app.kubernetes.io/version",
    "version",
    "helm.sh/chart",
    "chart",
    "heritage",
    "app.kubernetes.io/managed-by",
];

/// Keys tried first, in this order: the conventional names of a workload.
const PREFERRED: [&str; 9] = [
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app",
    "k8s-app",
    "name",
    "component",
    "tier",
    "role",
];

/// The pod selector for endpoint `i` within its namespace: of its stable labels, the first
/// single one in [`PREFERRED`] order (then by key) that selects what all of them select,
/// else the fewest in that order that do; at least one when it has any (an empty selector
/// would also take every future pod of the namespace).
pub fn selector_for(engine: &Engine, i: usize) -> LabelSelector {
    let cluster = engine.cluster();
    let e = &cluster.endpoints[i];
    let stable: Labels = e
        .labels
        .iter()
        .filter(|(k, _)| {
            !UNSTABLE.contains(&k.as_str()) && !CONTROLLER_LABELS.contains(&k.as_str())
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let peers: Vec<&weir_model::Endpoint> = cluster
        .endpoints
        .iter()
        .filter(|o| o.namespace == e.namespace && !o.host_network)
        .collect();
    let selected = |labels: &Labels| -> usize {
        peers
            .iter()
            .filter(|o| labels.iter().all(|(k, v)| o.labels.get(k) == Some(v)))
            .count()
    };
    let best = selected(&stable);
    let mut keys: Vec<&String> = stable.keys().collect();
    keys.sort_by_key(|k| {
        (
            PREFERRED
                .iter()
                .position(|p| p == k)
                .unwrap_or(PREFERRED.len()),
            (*k).clone(),
        )
    });
    if let Some(k) = keys
        .iter()
        .find(|k| selected(&[((**k).clone(), stable[**k].clone())].into()) == best)
    {
        return LabelSelector {
            match_labels: [((*k).clone(), stable[*k].clone())].into(),
            match_expressions: Vec::new(),
        };
    }
    let mut chosen = Labels::new();
    for k in keys {
        if !chosen.is_empty() && selected(&chosen) == best {
            break;
        }
        chosen.insert(k.clone(), stable[k].clone());
    }
    LabelSelector {
        match_labels: chosen,
        match_expressions: Vec::new(),
    }
}

/// How a policy of namespace `policy_ns` names `side` as a peer: by selectors, or by its
/// addresses (an address; a hostNetwork pod, which no selector matches).
fn peers(engine: &Engine, policy_ns: &str, side: Side) -> Vec<Peer> {
    let block = |ip: std::net::IpAddr| Peer::IpBlock {
        cidr: ipnet::IpNet::from(ip),
        except: Vec::new(),
    };
    match side {
        Side::Endpoint(i) if engine.cluster().endpoints[i].host_network => {
            engine.cluster().endpoints[i]
                .ips
                .iter()
                .map(|ip| block(*ip))
                .collect()
        }
        Side::Endpoint(i) => {
            let e = &engine.cluster().endpoints[i];
            let pods = Some(selector_for(engine, i));
            let namespaces = if e.namespace == policy_ns {
                NamespaceScope::PolicyNamespace
            } else {
                NamespaceScope::Selector(name_selector(&e.namespace))
            };
            vec![Peer::Pods { namespaces, pods }]
        }
        Side::Address(ip) => vec![block(ip)],
    }
}

fn name_selector(ns: &str) -> LabelSelector {
    LabelSelector {
        match_labels: [(NAMESPACE_NAME_LABEL.to_string(), ns.to_string())].into(),
        match_expressions: Vec::new(),
    }
}

/// A port as the destination `dst` names it, if it does.
fn port_rule(engine: &Engine, dst: Side, key: PortKey) -> PortRule {
    let named = match dst {
        Side::Endpoint(i) => engine.cluster().endpoints[i]
            .ports
            .iter()
            .find(|p| p.port == key.port && p.protocol == key.protocol)
            .and_then(|p| p.name.clone()),
        Side::Address(_) => None,
    };
    PortRule {
        protocol: key.protocol,
        port: Some(match named {
            Some(name) => PortRef::Named(name),
            None => PortRef::Number {
                port: key.port,
                end: key.port,
            },
        }),
    }
}

/// The rules admitting `by_peer` (the far side → the ports seen with it): one rule per
/// set of ports, its peers those seen on exactly those ports; `ports_of` names the ports
/// (on the destination).
fn rules(
    engine: &Engine,
    policy_ns: &str,
    by_peer: &BTreeMap<Side, BTreeSet<PortKey>>,
    ports_of: impl Fn(Side, PortKey) -> PortRule,
) -> Vec<Rule> {
    let mut by_ports: BTreeMap<Vec<PortRule>, Vec<Peer>> = BTreeMap::new();
    for (side, keys) in by_peer {
        let mut ports: Vec<PortRule> = keys.iter().map(|k| ports_of(*side, *k)).collect();
        ports.sort();
        ports.dedup();
        let list = by_ports.entry(ports).or_default();
        for p in peers(engine, policy_ns, *side) {
            if !list.contains(&p) {
                list.push(p);
            }
        }
    }
    by_ports
        .into_iter()
        // A rule without peers admits everyone: never made by accident.
        .filter(|(_, peers)| !peers.is_empty())
        .map(|(ports, peers)| Rule {
            peers: fewest(engine, policy_ns, peers),
            ports,
            origin: Origin::default(),
        })
        .collect()
}

/// `peers` without those whose pods another one's include (the tighter rule admits the
/// same pods today, and fewer future ones).
fn fewest(engine: &Engine, policy_ns: &str, peers: Vec<Peer>) -> Vec<Peer> {
    let n = engine.cluster().endpoints.len();
    let pods = |p: &Peer| -> Option<BTreeSet<usize>> {
        matches!(p, Peer::Pods { .. }).then(|| {
            (0..n)
                .filter(|&i| {
                    let v6 = engine.cluster().endpoints[i].primary_is_v6();
                    engine.peer_matches(p, policy_ns, Side::Endpoint(i), v6)
                })
                .collect()
        })
    };
    let sets: Vec<Option<BTreeSet<usize>>> = peers.iter().map(pods).collect();
    peers
        .iter()
        .enumerate()
        .filter(|(i, _)| {
            let Some(mine) = &sets[*i] else {
                return true;
            };
            !sets.iter().enumerate().any(|(j, other)| {
                j != *i
                    && other
                        .as_ref()
                        .is_some_and(|o| mine.is_subset(o) && (mine.len() < o.len() || j < *i))
            })
        })
        .map(|(_, p)| p.clone())
        .collect()
}

/// A name for a new policy of namespace `ns`, not taken there: `base`, else `base-2`, …
/// (cut to fit the API server's 253).
fn fresh_name(taken: &mut BTreeSet<(String, String)>, ns: &str, base: &str) -> String {
    // A DNS subdomain whatever the endpoint's name was (the loader validates names; this
    // does not rely on it).
    let base: String = base
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' | '.' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '-',
        })
        .take(240)
        .collect();
    let base = base.trim_end_matches(['-', '.']).to_string();
    let mut name = base.clone();
    let mut n = 1;
    while taken.contains(&(ns.to_string(), name.clone())) {
        n += 1;
        name = format!("{base}-{n}");
    }
    taken.insert((ns.to_string(), name.clone()));
    name
}

/// The DNS peer for egress: the cluster's kube-dns pods if it has them, else where they
/// conventionally are.
fn dns_peer(engine: &Engine) -> Peer {
    let dns = engine
        .cluster()
        .endpoints
        .iter()
        .find(|e| e.labels.get("k8s-app").map(String::as_str) == Some("kube-dns"));
    let ns = dns.map_or("kube-system", |e| e.namespace.as_str());
    Peer::Pods {
        namespaces: NamespaceScope::Selector(name_selector(ns)),
        pods: Some(LabelSelector {
            match_labels: [("k8s-app".to_string(), "kube-dns".to_string())].into(),
            match_expressions: Vec::new(),
        }),
    }
}

fn dns_rule(engine: &Engine) -> Rule {
    Rule {
        peers: vec![dns_peer(engine)],
        ports: [Protocol::Udp, Protocol::Tcp]
            .map(|protocol| PortRule {
                protocol,
                port: Some(PortRef::Number { port: 53, end: 53 }),
            })
            .to_vec(),
        origin: Origin::default(),
    }
}

/// A policy isolating the directions given rules for (`Some`, possibly none).
fn policy(
    namespace: &str,
    name: String,
    pod_selector: LabelSelector,
    ingress: Option<Vec<Rule>>,
    egress: Option<Vec<Rule>>,
    mode: Mode,
) -> Policy {
    Policy {
        namespace: namespace.to_string(),
        name,
        pod_selector,
        isolates_ingress: ingress.is_some(),
        isolates_egress: egress.is_some(),
        ingress: ingress.unwrap_or_default(),
        egress: egress.unwrap_or_default(),
        mode,
        origin: Origin::default(),
    }
}

/// Policies that admit exactly the observed connections between workloads, per workload.
pub fn synthesise(engine: &Engine, flows: &[Observed], options: SynthOptions) -> Synthesis {
    let cluster = engine.cluster();
    let mut out = Synthesis::default();
    let mut taken: BTreeSet<(String, String)> = cluster
        .policies
        .iter()
        .map(|p| (p.namespace.clone(), p.name.clone()))
        .collect();
    let name = |s: Side| engine.name(s);
    let line = |f: &Observed| format!("{} → {} {}", name(f.src), name(f.dst), f.port);
    // Ingress by destination, egress by source: the far side → its ports.
    let mut inbound: BTreeMap<usize, BTreeMap<Side, BTreeSet<PortKey>>> = BTreeMap::new();
    let mut outbound: BTreeMap<usize, BTreeMap<Side, BTreeSet<PortKey>>> = BTreeMap::new();
    let mut namespaces: BTreeSet<String> = BTreeSet::new();
    let mut seen = BTreeSet::new();
    let host = |s: Side| matches!(s, Side::Endpoint(i) if cluster.endpoints[i].host_network);
    for f in flows {
        if !seen.insert(*f) {
            continue;
        }
        let why = match (f.src, f.dst) {
            (a, b) if a == b => Some("a pod's traffic to itself is never filtered"),
            (Side::Address(_), Side::Address(_)) => Some("neither side is a pod of the input"),
            (Side::Endpoint(a), _) if host(f.src) && cluster.endpoints[a].ips.is_empty() => {
                Some("from a hostNetwork pod without addresses: nothing can name it")
            }
            (_, b) if host(b) => Some(
                "to a hostNetwork pod: NetworkPolicy cannot select it (its ingress is the node's)",
            ),
            _ => None,
        };
        if let Some(why) = why {
            out.ignored.push((line(f), why.to_string()));
            continue;
        }
        for s in [f.src, f.dst] {
            if let Side::Endpoint(i) = s {
                namespaces.insert(cluster.endpoints[i].namespace.clone());
            }
        }
        if let Side::Endpoint(d) = f.dst {
            inbound
                .entry(d)
                .or_default()
                .entry(f.src)
                .or_default()
                .insert(f.port);
        }
        if let (true, Side::Endpoint(s)) = (options.egress && !host(f.src), f.src) {
            outbound
                .entry(s)
                .or_default()
                .entry(f.dst)
                .or_default()
                .insert(f.port);
        }
    }
    let admitted = |by: &BTreeMap<Side, BTreeSet<PortKey>>, this: Side, inbound: bool| {
        let mut v = Vec::new();
        for (other, keys) in by {
            for k in keys {
                let (a, b) = if inbound {
                    (*other, this)
                } else {
                    (this, *other)
                };
                v.push(format!("{} → {} {k}", name(a), name(b)));
            }
        }
        v
    };
    for ns in &namespaces {
        let has_default_deny = cluster
            .policies
            .iter()
            .any(|p| p.namespace == *ns && p.mode == Mode::Enforce && p.is_default_deny_ingress());
        if !has_default_deny {
            let n = fresh_name(&mut taken, ns, "default-deny-ingress");
            out.policies.push(Synthesised {
                policy: policy(ns, n, LabelSelector::default(), Some(vec![]), None, options.mode),
                why: format!("isolates every pod of {ns} for ingress: what the policies beside it admit is all it may receive"),
                admits: Vec::new(),
            });
        }
        if options.egress {
            let n = fresh_name(&mut taken, ns, "default-deny-egress");
            out.policies.push(Synthesised {
                policy: policy(ns, n, LabelSelector::default(), None, Some(vec![dns_rule(engine)]), options.mode),
                why: format!("isolates every pod of {ns} for egress but DNS (UDP and TCP 53 to kube-dns): what the policies beside it admit is all it may send"),
                admits: Vec::new(),
            });
        }
    }
    for (d, by_src) in &inbound {
        let e = &cluster.endpoints[*d];
        let n = fresh_name(&mut taken, &e.namespace, &format!("allow-to-{}", e.name));
        let ingress = rules(engine, &e.namespace, by_src, |_, k| {
            port_rule(engine, Side::Endpoint(*d), k)
        });
        out.policies.push(Synthesised {
            policy: policy(
                &e.namespace,
                n,
                selector_for(engine, *d),
                Some(ingress),
                None,
                options.mode,
            ),
            why: format!("admits what {} was observed receiving", e.id()),
            admits: admitted(by_src, Side::Endpoint(*d), true),
        });
    }
    for (s, by_dst) in &outbound {
        let e = &cluster.endpoints[*s];
        let n = fresh_name(&mut taken, &e.namespace, &format!("allow-from-{}", e.name));
        let egress = rules(engine, &e.namespace, by_dst, |dst, k| {
            port_rule(engine, dst, k)
        });
        out.policies.push(Synthesised {
            policy: policy(
                &e.namespace,
                n,
                selector_for(engine, *s),
                None,
                Some(egress),
                options.mode,
            ),
            why: format!("admits what {} was observed sending", e.id()),
            admits: admitted(by_dst, Side::Endpoint(*s), false),
        });
    }
    out
}

/// What the policies allow against what was observed, between the sides involved.
#[derive(Clone, Debug, Default)]
pub struct Proof {
    /// Observed connections not allowed (an existing policy denies them, or selectors
    /// could not express them): each one would be refused once enforced.
    pub missing: Vec<Observed>,
    /// (source, destination, what is allowed beyond what was observed) between sides
    /// involved: what the selectors could not avoid (or existing policies allow).
    pub surplus: Vec<(Side, Side, PortSet)>,
}

/// Checks `after` (the cluster with the synthesised policies) against the observed flows:
/// for every ordered pair of sides involved (not both addresses), what is allowed minus
/// what was observed, and the reverse.
pub fn prove(after: &Engine, flows: &[Observed]) -> Proof {
    let mut observed: BTreeMap<(Side, Side), PortSet> = BTreeMap::new();
    let mut sides = BTreeSet::new();
    for f in flows {
        if f.src == f.dst {
            continue;
        }
        let one = PortSet::range(f.port.protocol, f.port.port, f.port.port);
        let e = observed.entry((f.src, f.dst)).or_default();
        *e = e.union(&one);
        sides.insert(f.src);
        sides.insert(f.dst);
    }
    let mut proof = Proof::default();
    // What is allowed between the observed pairs, for the missing connections below.
    let mut allowed_observed: BTreeMap<(Side, Side), PortSet> = BTreeMap::new();
    for &a in &sides {
        for &b in &sides {
            if a == b || matches!((a, b), (Side::Address(_), Side::Address(_))) {
                continue;
            }
            let allowed = after.allowed(a, b);
            let seen = observed.get(&(a, b)).cloned().unwrap_or_default();
            let more = allowed.difference(&seen);
            if !more.is_empty() {
                proof.surplus.push((a, b, more));
            }
            if observed.contains_key(&(a, b)) {
                allowed_observed.insert((a, b), allowed);
            }
        }
    }
    for f in flows {
        let refused = allowed_observed
            .get(&(f.src, f.dst))
            .is_some_and(|allowed| !allowed.contains(f.port.protocol, f.port.port));
        if refused && !proof.missing.contains(f) {
            proof.missing.push(*f);
        }
    }
    proof
}
