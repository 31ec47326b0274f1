//! Exposure: every peer that could ever reach an endpoint, and every peer it could ever
//! reach — any pod that could exist (by its labels and its namespace's labels) and any
//! address — after every tier. Computed on the selectors as sets, not on the pods that
//! happen to exist: "accepts TCP 6379 from pods labelled networking/logic=true in
//! production, and from nothing else that could ever exist".
//!
//! A peer is a pod (any labels, in any namespace, at any address) or an address that is
//! not a pod (outside the cluster, a node, a hostNetwork pod). A [`Term`] is a set of peers:
//! per label key, a finite or cofinite set of values with or without the key's absence; and
//! address ranges. Terms are closed under intersection and difference (as disjoint unions),
//! so the tiers' first-match order is followed exactly: what an earlier rule decided is taken
//! out before a later rule is asked, as [`crate::Engine::explain`] walks one connection.
//!
//! What it answers is one side's half of a connection: the endpoint's own policies and the
//! tiers selecting it. The peer's own egress (for ingress) or ingress (for egress) also
//! applies; for the pods that exist, `analyze` has the whole answer.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use weir_model::{
    Action, ClusterPeer, ClusterPort, Direction, Endpoint, LabelSelector, Labels, NamespaceScope,
    Operator, Peer, PortRef, Tier, NAMESPACE_NAME_LABEL,
};

use crate::ipspace::{net_range, range_to_cidrs, subtract, top};
use crate::ports::{resolve_cluster_ports, resolve_ports};
use crate::{selector, PortSet, Selectors};

/// Pieces a computation may hold before it gives up: the difference of terms can multiply
/// them, and an answer that never comes is worse than a clear refusal.
pub const MAX_PIECES: usize = 200_000;

/// A finite set of values, or the complement of one.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Values {
    In(BTreeSet<String>),
    NotIn(BTreeSet<String>),
}

impl Values {
    fn intersect(&self, o: &Values) -> Values {
        use Values::*;
        match (self, o) {
            (In(a), In(b)) => In(a.intersection(b).cloned().collect()),
            (In(a), NotIn(b)) | (NotIn(b), In(a)) => In(a.difference(b).cloned().collect()),
            (NotIn(a), NotIn(b)) => NotIn(a.union(b).cloned().collect()),
        }
    }

    fn union(&self, o: &Values) -> Values {
        self.complement().intersect(&o.complement()).complement()
    }

    fn complement(&self) -> Values {
        match self {
            Values::In(s) => Values::NotIn(s.clone()),
            Values::NotIn(s) => Values::In(s.clone()),
        }
    }

    fn contains(&self, v: &str) -> bool {
        match self {
            Values::In(s) => s.contains(v),
            Values::NotIn(s) => !s.contains(v),
        }
    }
}

/// What one label key may be on a peer: absent or not, and which values when present.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct KeyState {
    absent: bool,
    values: Values,
}

impl KeyState {
    fn of(absent: bool, values: Values) -> KeyState {
        KeyState { absent, values }
    }

    fn is_empty(&self) -> bool {
        !self.absent && self.values == Values::In(BTreeSet::new())
    }

    fn is_full(&self) -> bool {
        self.absent && self.values == Values::NotIn(BTreeSet::new())
    }

    fn intersect(&self, o: &KeyState) -> KeyState {
        KeyState::of(self.absent && o.absent, self.values.intersect(&o.values))
    }

    fn union(&self, o: &KeyState) -> KeyState {
        KeyState::of(self.absent || o.absent, self.values.union(&o.values))
    }

    fn complement(&self) -> KeyState {
        KeyState::of(!self.absent, self.values.complement())
    }

    fn contains(&self, value: Option<&String>) -> bool {
        value.map_or(self.absent, |v| self.values.contains(v))
    }
}

/// Label sets a conjunction of per-key constraints admits; a key not listed is free.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LabelSet(BTreeMap<String, KeyState>);

impl LabelSet {
    /// Every label set.
    pub fn any() -> LabelSet {
        LabelSet::default()
    }

    /// Every namespace: each carries its name label.
    fn any_namespace() -> LabelSet {
        let mut s = LabelSet::any();
        s.0.insert(
            NAMESPACE_NAME_LABEL.into(),
            KeyState::of(false, Values::NotIn(BTreeSet::new())),
        );
        s
    }

    /// The namespace of that name.
    fn namespace(name: &str) -> LabelSet {
        let mut s = LabelSet::any();
        s.0.insert(
            NAMESPACE_NAME_LABEL.into(),
            KeyState::of(false, Values::In([name.to_string()].into())),
        );
        s
    }

    /// What a label selector matches, exactly as [`selector::matches`] decides.
    pub fn of_selector(sel: &LabelSelector) -> Option<LabelSet> {
        let mut s = LabelSet::any();
        let set = |v: &[String]| v.iter().cloned().collect::<BTreeSet<_>>();
        for (k, v) in &sel.match_labels {
            s = s.and_key(k, &KeyState::of(false, Values::In([v.clone()].into())))?;
        }
        for r in &sel.match_expressions {
            let state = match r.operator {
                Operator::In => KeyState::of(false, Values::In(set(&r.values))),
                Operator::NotIn => KeyState::of(true, Values::NotIn(set(&r.values))),
                Operator::Exists => KeyState::of(false, Values::NotIn(BTreeSet::new())),
                Operator::DoesNotExist => KeyState::of(true, Values::In(BTreeSet::new())),
            };
            s = s.and_key(&r.key, &state)?;
        }
        Some(s)
    }

    /// The namespaces a namespace selector picks (each carries its name label).
    fn of_namespace_selector(sel: &LabelSelector) -> Option<LabelSet> {
        LabelSet::of_selector(sel).and_then(|n| n.and(&LabelSet::any_namespace()))
    }

    /// The pods a pod selector picks; every pod without one.
    fn of_pod_selector(sel: Option<&LabelSelector>) -> Option<LabelSet> {
        sel.map_or(Some(LabelSet::any()), LabelSet::of_selector)
    }

    fn and_key(mut self, key: &str, state: &KeyState) -> Option<LabelSet> {
        let merged = match self.0.get(key) {
            Some(s) => s.intersect(state),
            None => state.clone(),
        };
        if merged.is_empty() {
            return None;
        }
        if merged.is_full() {
            self.0.remove(key);
        } else {
            self.0.insert(key.to_string(), merged);
        }
        Some(self)
    }

    fn and(&self, o: &LabelSet) -> Option<LabelSet> {
        o.0.iter()
            .try_fold(self.clone(), |acc, (k, s)| acc.and_key(k, s))
    }

    pub fn contains(&self, labels: &Labels) -> bool {
        self.0.iter().all(|(k, s)| s.contains(labels.get(k)))
    }

    pub fn is_any(&self) -> bool {
        self.0.is_empty()
    }

    /// Every namespace: only the name label, which every namespace has, is constrained.
    pub fn is_any_namespace(&self) -> bool {
        *self == LabelSet::any_namespace()
    }
}

/// Address ranges of both families, sorted and disjoint.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Addrs {
    v4: Vec<(u128, u128)>,
    v6: Vec<(u128, u128)>,
}

impl Addrs {
    pub fn all() -> Addrs {
        Addrs {
            v4: vec![(0, top(false))],
            v6: vec![(0, top(true))],
        }
    }

    pub fn none() -> Addrs {
        Addrs {
            v4: Vec::new(),
            v6: Vec::new(),
        }
    }

    pub fn of_nets<'a>(nets: impl IntoIterator<Item = &'a IpNet>) -> Addrs {
        let mut a = Addrs::none();
        for n in nets {
            let r = net_range(n);
            let fam = if matches!(n, IpNet::V6(_)) {
                &mut a.v6
            } else {
                &mut a.v4
            };
            fam.push(r);
        }
        for fam in [&mut a.v4, &mut a.v6] {
            fam.sort_unstable();
            let mut out: Vec<(u128, u128)> = Vec::with_capacity(fam.len());
            for &(lo, hi) in fam.iter() {
                match out.last_mut() {
                    Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
                    _ => out.push((lo, hi)),
                }
            }
            *fam = out;
        }
        a
    }

    pub fn of_ips(ips: &[IpAddr]) -> Addrs {
        let nets: Vec<IpNet> = ips.iter().map(|&ip| IpNet::from(ip)).collect();
        Addrs::of_nets(&nets)
    }

    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }

    pub fn is_all(&self) -> bool {
        *self == Addrs::all()
    }

    pub fn and(&self, o: &Addrs) -> Addrs {
        let both = |a: &[(u128, u128)], b: &[(u128, u128)]| {
            let (mut i, mut j, mut out) = (0, 0, Vec::new());
            while i < a.len() && j < b.len() {
                let (lo, hi) = (a[i].0.max(b[j].0), a[i].1.min(b[j].1));
                if lo <= hi {
                    out.push((lo, hi));
                }
                if a[i].1 < b[j].1 {
                    i += 1;
                } else {
                    j += 1;
                }
            }
            out
        };
        Addrs {
            v4: both(&self.v4, &o.v4),
            v6: both(&self.v6, &o.v6),
        }
    }

    pub fn minus(&self, o: &Addrs) -> Addrs {
        let less = |a: &[(u128, u128)], b: &[(u128, u128)]| {
            b.iter().fold(a.to_vec(), |acc, &r| subtract(&acc, r))
        };
        Addrs {
            v4: less(&self.v4, &o.v4),
            v6: less(&self.v6, &o.v6),
        }
    }

    pub fn union(&self, o: &Addrs) -> Addrs {
        Addrs::all().minus(&Addrs::all().minus(self).and(&Addrs::all().minus(o)))
    }

    pub fn contains(&self, ip: &IpAddr) -> bool {
        let x = crate::ipspace::to_int(ip);
        let fam = if ip.is_ipv6() { &self.v6 } else { &self.v4 };
        fam.iter().any(|&(lo, hi)| lo <= x && x <= hi)
    }

    /// The ranges as the fewest CIDRs, IPv4 first.
    pub fn cidrs(&self) -> Vec<IpNet> {
        let fam = |r: &[(u128, u128)], v6: bool| {
            r.iter()
                .flat_map(move |&(lo, hi)| range_to_cidrs(lo, hi, v6))
                .collect::<Vec<_>>()
        };
        let mut out = fam(&self.v4, false);
        out.extend(fam(&self.v6, true));
        out
    }
}

/// Who a term is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Who {
    /// Pods (never hostNetwork) whose namespace's labels and own labels are in these sets.
    Pods {
        namespaces: LabelSet,
        pods: LabelSet,
    },
    /// Addresses that are not pods: outside the cluster, nodes, hostNetwork pods.
    NotPods,
}

impl Who {
    /// The namespace and pod label sets of pods; `None` for addresses that are not pods.
    fn as_pods(&self) -> Option<(&LabelSet, &LabelSet)> {
        match self {
            Who::Pods { namespaces, pods } => Some((namespaces, pods)),
            Who::NotPods => None,
        }
    }
}

/// A set of peers: who, at which addresses.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Term {
    pub who: Who,
    pub addrs: Addrs,
}

impl Term {
    fn pods(namespaces: LabelSet, pods: LabelSet) -> Term {
        Term {
            who: Who::Pods { namespaces, pods },
            addrs: Addrs::all(),
        }
    }

    /// Every peer there is.
    fn everyone() -> Vec<Term> {
        Term::at(Addrs::all(), true)
    }

    /// Whoever sends from or receives at these addresses; pods too when ipBlocks match pods.
    fn at(addrs: Addrs, pods_too: bool) -> Vec<Term> {
        let mut out = vec![Term {
            who: Who::NotPods,
            addrs: addrs.clone(),
        }];
        if pods_too {
            out.push(Term {
                addrs,
                ..Term::pods(LabelSet::any_namespace(), LabelSet::any())
            });
        }
        out
    }

    fn and(&self, o: &Term) -> Option<Term> {
        let who = match (self.who.as_pods(), o.who.as_pods()) {
            (None, None) => Who::NotPods,
            (Some((n1, p1)), Some((n2, p2))) => Who::Pods {
                namespaces: n1.and(n2)?,
                pods: p1.and(p2)?,
            },
            _ => return None,
        };
        let addrs = self.addrs.and(&o.addrs);
        (!addrs.is_empty()).then_some(Term { who, addrs })
    }

    /// `self` minus `o`, as disjoint terms.
    fn minus(&self, o: &Term) -> Vec<Term> {
        let Some(both) = self.and(o) else {
            return vec![self.clone()];
        };
        let mut out: Vec<Term> = who_minus(&self.who, &o.who)
            .into_iter()
            .map(|who| Term {
                who,
                addrs: self.addrs.clone(),
            })
            .collect();
        let addrs = self.addrs.minus(&o.addrs);
        if !addrs.is_empty() {
            out.push(Term {
                who: both.who,
                addrs,
            });
        }
        out
    }

    /// Whether a pod with these labels, in a namespace with these, at `ip`, is in the term.
    pub fn contains_pod(&self, namespace_labels: &Labels, labels: &Labels, ip: &IpAddr) -> bool {
        matches!(&self.who, Who::Pods { namespaces, pods }
            if namespaces.contains(namespace_labels) && pods.contains(labels))
            && self.addrs.contains(ip)
    }

    /// Whether an address that is not a pod is in the term.
    pub fn contains_address(&self, ip: &IpAddr) -> bool {
        self.who == Who::NotPods && self.addrs.contains(ip)
    }
}

/// `a` minus `b` (which intersect), as disjoint sets: with b's constraints c1…cn, the
/// pieces a∧¬c1, a∧c1∧¬c2, …
fn who_minus(a: &Who, b: &Who) -> Vec<Who> {
    let (Some((an, ap)), Some((bn, bp))) = (a.as_pods(), b.as_pods()) else {
        return Vec::new(); // NotPods minus NotPods
    };
    let mut out = Vec::new();
    let (mut n, mut p) = (an.clone(), ap.clone());
    let constraints =
        bn.0.iter()
            .map(|c| (true, c))
            .chain(bp.0.iter().map(|c| (false, c)));
    for (on_namespace, (key, state)) in constraints {
        let side = if on_namespace { &n } else { &p };
        if let Some(outside) = side.clone().and_key(key, &state.complement()) {
            out.push(if on_namespace {
                Who::Pods {
                    namespaces: outside,
                    pods: p.clone(),
                }
            } else {
                Who::Pods {
                    namespaces: n.clone(),
                    pods: outside,
                }
            });
        }
        let inside = side.clone().and_key(key, state);
        match (inside, on_namespace) {
            (Some(s), true) => n = s,
            (Some(s), false) => p = s,
            (None, _) => break,
        }
    }
    out
}

/// What a tier walk does with a rule's match: its action, the peers on ports, the rule.
type Decide<'a> = dyn FnMut(&mut Exposure, Action, Vec<Piece>, &Decision) + 'a;

/// Peers on ports.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Piece {
    term: Term,
    ports: PortSet,
}

/// What decided a grant.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Decision {
    /// A cluster policy's rule (Accept, or a Baseline Pass: the default allow).
    Tier {
        tier: Tier,
        policy: String,
        priority: u16,
        rule: String,
        action: Action,
    },
    /// A NetworkPolicy's rule.
    Policy { policy: String, rule: String },
    /// No policy isolates the endpoint in this direction and no tier decided.
    NotIsolated,
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Tier {
                tier,
                policy,
                priority,
                rule,
                action,
            } => write!(f, "{tier} {policy} (priority {priority}) {rule} {action}"),
            Decision::Policy { policy, rule } => write!(f, "{policy} {rule}"),
            Decision::NotIsolated => f.write_str("not isolated (default allow)"),
        }
    }
}

/// Peers allowed on ports, and what allowed them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant {
    pub peers: Term,
    pub ports: PortSet,
    pub by: Decision,
}

/// One endpoint's exposure in one direction.
#[derive(Clone, Debug)]
pub struct Exposure {
    pub direction: Direction,
    /// Disjoint: a peer on a port is in at most one grant.
    pub grants: Vec<Grant>,
    /// Where the answer is not exact, and why (empty: exact).
    pub inexact: Vec<String>,
}

/// The computation held more than [`MAX_PIECES`] pieces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TooComplex;

impl fmt::Display for TooComplex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "more than {MAX_PIECES} disjoint peer sets: too complex")
    }
}

impl std::error::Error for TooComplex {}

impl Exposure {
    /// Whether a pod with these labels, in a namespace with these, at `ip`, is allowed on
    /// (protocol, port).
    pub fn allows_pod(
        &self,
        namespace_labels: &Labels,
        labels: &Labels,
        ip: &IpAddr,
        protocol: weir_model::Protocol,
        port: u16,
    ) -> bool {
        self.grants.iter().any(|g| {
            g.ports.contains(protocol, port) && g.peers.contains_pod(namespace_labels, labels, ip)
        })
    }

    /// Whether an address that is not a pod is allowed on (protocol, port).
    pub fn allows_address(&self, ip: &IpAddr, protocol: weir_model::Protocol, port: u16) -> bool {
        self.grants
            .iter()
            .any(|g| g.ports.contains(protocol, port) && g.peers.contains_address(ip))
    }

    /// Ports on which any pod of any namespace — including namespaces and pods created
    /// later — is allowed.
    pub fn every_pod(&self) -> PortSet {
        self.for_all(|t| {
            matches!(&t.who, Who::Pods { namespaces, pods }
                if namespaces.is_any_namespace() && pods.is_any())
        })
    }

    /// Ports on which some pod of every namespace (those created later included) is allowed:
    /// a grant whose namespace side is free.
    pub fn every_namespace(&self) -> PortSet {
        self.for_all(
            |t| matches!(&t.who, Who::Pods { namespaces, .. } if namespaces.is_any_namespace()),
        )
    }

    /// Addresses that are not pods and not `inside` (the cluster's own:
    /// [`crate::outside::cluster_addresses`]), allowed on some port: the outside world.
    pub fn outside(&self, inside: &[IpAddr]) -> Addrs {
        let inside = Addrs::of_ips(inside);
        self.grants
            .iter()
            .filter(|g| g.peers.who == Who::NotPods)
            .fold(Addrs::none(), |acc, g| {
                acc.union(&g.peers.addrs.minus(&inside))
            })
    }

    fn for_all(&self, pick: impl Fn(&Term) -> bool) -> PortSet {
        self.grants
            .iter()
            .filter(|g| pick(&g.peers))
            .fold(PortSet::none(), |acc, g| acc.union(&g.ports))
    }
}

/// Splits `region` into what `terms` × `ports` covers and the rest.
fn split(
    region: Vec<Piece>,
    terms: &[Term],
    ports: &PortSet,
) -> Result<(Vec<Piece>, Vec<Piece>), TooComplex> {
    let mut inside = Vec::new();
    let mut rest = region;
    for t in terms {
        let mut next = Vec::with_capacity(rest.len());
        for p in rest {
            let Some(both) = p.term.and(t) else {
                next.push(p);
                continue;
            };
            let (on, off) = (p.ports.intersect(ports), p.ports.difference(ports));
            if !off.is_empty() {
                next.push(Piece {
                    term: both.clone(),
                    ports: off,
                });
            }
            if !on.is_empty() {
                inside.push(Piece {
                    term: both,
                    ports: on,
                });
            }
            for o in p.term.minus(t) {
                next.push(Piece {
                    term: o,
                    ports: p.ports.clone(),
                });
            }
            if next.len() + inside.len() > MAX_PIECES {
                return Err(TooComplex);
            }
        }
        rest = next;
    }
    Ok((inside, rest))
}

impl Selectors<'_> {
    /// The exposure of `ep` (which need not exist: any pod of its labels in its namespace)
    /// in `direction`: every peer allowed, on which ports, by what.
    pub fn exposure(&self, ep: &Endpoint, direction: Direction) -> Result<Exposure, TooComplex> {
        // The namespace's labels; one that does not exist (yet) has only its name label.
        let unknown;
        let namespace_labels = match self.namespace_labels(&ep.namespace) {
            Some(labels) => labels,
            None => {
                unknown = Labels::from([(NAMESPACE_NAME_LABEL.to_string(), ep.namespace.clone())]);
                &unknown
            }
        };
        let mut exposure = Exposure {
            direction,
            grants: Vec::new(),
            inexact: Vec::new(),
        };
        let pods_too = self.options().ipblock_matches_pods;
        let region: Vec<Piece> = Term::everyone()
            .into_iter()
            .map(|term| Piece {
                term,
                ports: PortSet::all(),
            })
            .collect();
        if ep.host_network {
            // Policies never select hostNetwork pods.
            grant(&mut exposure, region, &Decision::NotIsolated);
            return Ok(exposure);
        }
        // Named ports are resolved on the destination: known for ingress, each peer's own
        // for egress (not knowable for a pod that may not exist).
        let own_ports: &[weir_model::ContainerPort] = match direction {
            Direction::Ingress => &ep.ports,
            Direction::Egress => &[],
        };
        // Admin tier, then (with what it passed and left) the NetworkPolicies, then Baseline.
        let tier = |t: Tier| {
            let mut ps: Vec<&weir_model::ClusterPolicy> = self
                .cluster()
                .cluster_policies
                .iter()
                .filter(|p| {
                    p.tier == t && crate::pods_in_matches(&p.subject, ep, Some(namespace_labels))
                })
                .collect();
            ps.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
            ps
        };
        // Admin: Accept grants, Deny takes away, Pass hands on to the NetworkPolicies.
        let mut passed = Vec::new();
        let mut region = self.walk_tier(
            &tier(Tier::Admin),
            direction,
            own_ports,
            region,
            &mut exposure,
            &mut |exposure, action, matched, by| match action {
                Action::Accept => grant(exposure, matched, by),
                Action::Deny => {}
                Action::Pass => passed.extend(matched),
            },
        )?;
        region.extend(passed);
        let isolating: Vec<&weir_model::Policy> = self
            .cluster()
            .policies
            .iter()
            .filter(|p| {
                p.namespace == ep.namespace
                    && p.isolates(direction)
                    && selector::matches(&p.pod_selector, &ep.labels)
            })
            .collect();
        if !isolating.is_empty() {
            for p in isolating {
                for (n, rule) in p.rules(direction).iter().enumerate() {
                    let terms = if rule.peers.is_empty() {
                        Term::everyone()
                    } else {
                        rule.peers
                            .iter()
                            .flat_map(|peer| peer_terms(peer, &p.namespace, pods_too))
                            .collect()
                    };
                    if direction == Direction::Egress
                        && rule
                            .ports
                            .iter()
                            .any(|r| matches!(r.port, Some(PortRef::Named(_))))
                    {
                        exposure.inexact.push(format!(
                            "{} {direction}[{n}] names a port: it is resolved on each destination \
                             pod, so it is left out here",
                            p.id()
                        ));
                    }
                    let (matched, rest) =
                        split(region, &terms, &resolve_ports(&rule.ports, own_ports))?;
                    region = rest;
                    let by = Decision::Policy {
                        policy: p.id(),
                        rule: format!("{direction}[{n}]"),
                    };
                    grant(&mut exposure, matched, &by);
                }
            }
            return Ok(finish(exposure));
        }
        // Baseline: Deny takes away; Accept and Pass (to the default) grant.
        let region = self.walk_tier(
            &tier(Tier::Baseline),
            direction,
            own_ports,
            region,
            &mut exposure,
            &mut |exposure, action, matched, by| {
                if action != Action::Deny {
                    grant(exposure, matched, by)
                }
            },
        )?;
        grant(&mut exposure, region, &Decision::NotIsolated);
        Ok(finish(exposure))
    }

    /// One tier's rules in order over `region`: each rule's match is taken out and handed
    /// to `decide` with the rule's action; what no rule matched is returned.
    fn walk_tier(
        &self,
        policies: &[&weir_model::ClusterPolicy],
        direction: Direction,
        own_ports: &[weir_model::ContainerPort],
        mut region: Vec<Piece>,
        exposure: &mut Exposure,
        decide: &mut Decide<'_>,
    ) -> Result<Vec<Piece>, TooComplex> {
        for p in policies {
            for (n, rule) in p.rules(direction).iter().enumerate() {
                let (matched, rest) = split(
                    region,
                    &self.cluster_peer_terms(rule, direction, &mut exposure.inexact),
                    &resolve_cluster_ports(rule.ports.as_deref(), own_ports),
                )?;
                region = rest;
                note_named_cluster(rule.ports.as_deref(), direction, &p.id(), exposure);
                decide(
                    exposure,
                    rule.action,
                    matched,
                    &tier_decision(p, direction, n, rule),
                );
            }
        }
        Ok(region)
    }

    /// The peers of a cluster policy rule as terms.
    fn cluster_peer_terms(
        &self,
        rule: &weir_model::ClusterRule,
        direction: Direction,
        inexact: &mut Vec<String>,
    ) -> Vec<Term> {
        let pods_too = self.options().ipblock_matches_pods;
        let mut out = Vec::new();
        for peer in &rule.peers {
            match peer {
                ClusterPeer::Pods(sel) => {
                    let namespaces = LabelSet::of_namespace_selector(&sel.namespaces);
                    if let (Some(namespaces), Some(pods)) =
                        (namespaces, LabelSet::of_pod_selector(sel.pods.as_ref()))
                    {
                        out.push(Term::pods(namespaces, pods));
                    }
                }
                ClusterPeer::Networks(nets) => {
                    out.extend(Term::at(Addrs::of_nets(nets), pods_too));
                }
                ClusterPeer::Nodes(sel) => {
                    let ips: Vec<IpAddr> = self
                        .cluster()
                        .nodes
                        .iter()
                        .filter(|n| selector::matches(sel, &n.labels))
                        .flat_map(|n| n.addresses.iter().copied())
                        .collect();
                    if !ips.is_empty() {
                        out.extend(Term::at(Addrs::of_ips(&ips), pods_too));
                    }
                }
                ClusterPeer::DomainNames(names) => {
                    let msg = format!(
                        "{direction} rule {:?} names domains ({}): weir cannot resolve them, they \
                         match nothing here",
                        rule.name,
                        names.join(",")
                    );
                    if !inexact.contains(&msg) {
                        inexact.push(msg);
                    }
                }
            }
        }
        out
    }
}

/// The terms a NetworkPolicy peer of a policy in `policy_ns` stands for.
fn peer_terms(peer: &Peer, policy_ns: &str, pods_too: bool) -> Vec<Term> {
    match peer {
        Peer::Pods { namespaces, pods } => {
            let namespaces = match namespaces {
                NamespaceScope::PolicyNamespace => Some(LabelSet::namespace(policy_ns)),
                NamespaceScope::Selector(s) => LabelSet::of_namespace_selector(s),
            };
            match (namespaces, LabelSet::of_pod_selector(pods.as_ref())) {
                (Some(n), Some(p)) => vec![Term::pods(n, p)],
                _ => Vec::new(),
            }
        }
        Peer::IpBlock { cidr, except } => {
            let addrs = Addrs::of_nets([cidr]).minus(&Addrs::of_nets(except));
            Term::at(addrs, pods_too)
        }
    }
}

fn note_named_cluster(
    ports: Option<&[ClusterPort]>,
    direction: Direction,
    policy: &str,
    exposure: &mut Exposure,
) {
    if direction == Direction::Egress
        && ports.is_some_and(|ps| ps.iter().any(|p| matches!(p, ClusterPort::Named(_))))
    {
        let msg = format!(
            "{policy} has an egress rule naming a port: it is resolved on each destination pod, \
             so it is left out here"
        );
        if !exposure.inexact.contains(&msg) {
            exposure.inexact.push(msg);
        }
    }
}

fn tier_decision(
    p: &weir_model::ClusterPolicy,
    direction: Direction,
    n: usize,
    rule: &weir_model::ClusterRule,
) -> Decision {
    let name = if rule.name.is_empty() {
        String::new()
    } else {
        format!(" {:?}", weir_model::prefix(&rule.name, 100))
    };
    Decision::Tier {
        tier: p.tier,
        policy: p.id(),
        priority: p.priority,
        rule: format!("{direction}[{n}]{name}"),
        action: rule.action,
    }
}

fn grant(exposure: &mut Exposure, pieces: Vec<Piece>, by: &Decision) {
    exposure.grants.extend(pieces.into_iter().map(|p| Grant {
        peers: p.term,
        ports: p.ports,
        by: by.clone(),
    }));
}

/// Merges grants of one decision and one port set whose peers differ in one label key or
/// only in addresses, so the answer reads as the policies were written. Stays disjoint.
fn finish(mut exposure: Exposure) -> Exposure {
    let grants = std::mem::take(&mut exposure.grants);
    let mut groups: BTreeMap<(Decision, PortSet), Vec<Term>> = BTreeMap::new();
    for g in grants {
        groups.entry((g.by, g.ports)).or_default().push(g.peers);
    }
    for ((by, ports), mut terms) in groups {
        // Bounded: each merge removes a term.
        'again: loop {
            for i in 0..terms.len() {
                for j in i + 1..terms.len() {
                    if let Some(m) = merge(&terms[i], &terms[j]) {
                        terms[i] = m;
                        terms.swap_remove(j);
                        continue 'again;
                    }
                }
            }
            break;
        }
        terms.sort();
        exposure.grants.extend(terms.into_iter().map(|peers| Grant {
            peers,
            ports: ports.clone(),
            by: by.clone(),
        }));
    }
    exposure
}

/// The union of two terms when it is one term: same addresses and label sets differing in
/// one key, or same peers at other addresses.
fn merge(a: &Term, b: &Term) -> Option<Term> {
    if a.who == b.who {
        return Some(Term {
            who: a.who.clone(),
            addrs: a.addrs.union(&b.addrs),
        });
    }
    if a.addrs != b.addrs {
        return None;
    }
    let (Some((an, ap)), Some((bn, bp))) = (a.who.as_pods(), b.who.as_pods()) else {
        return None;
    };
    let one_key = |x: &LabelSet, y: &LabelSet| -> Option<LabelSet> {
        let keys: BTreeSet<&String> = x.0.keys().chain(y.0.keys()).collect();
        let differing: Vec<&&String> = keys
            .iter()
            .filter(|k| x.0.get(**k) != y.0.get(**k))
            .collect();
        let [k] = differing.as_slice() else {
            return None;
        };
        let full = KeyState::of(true, Values::NotIn(BTreeSet::new()));
        let u =
            x.0.get(**k)
                .unwrap_or(&full)
                .union(y.0.get(**k).unwrap_or(&full));
        let mut out = x.clone();
        if u.is_full() {
            out.0.remove(**k);
        } else {
            out.0.insert((**k).clone(), u);
        }
        Some(out)
    };
    let who = if an == bn {
        Who::Pods {
            namespaces: an.clone(),
            pods: one_key(ap, bp)?,
        }
    } else if ap == bp {
        Who::Pods {
            namespaces: one_key(an, bn)?,
            pods: ap.clone(),
        }
    } else {
        return None;
    };
    Some(Term {
        who,
        addrs: a.addrs.clone(),
    })
}

/// One key's constraint in kubectl's selector syntax.
fn key_text(key: &str, s: &KeyState) -> String {
    let list = |v: &BTreeSet<String>| v.iter().cloned().collect::<Vec<_>>().join(",");
    match (&s.values, s.absent) {
        (Values::In(v), false) if v.len() == 1 => format!("{key}={}", list(v)),
        (Values::In(v), false) => format!("{key} in ({})", list(v)),
        (Values::In(v), true) if v.is_empty() => format!("!{key}"),
        (Values::In(v), true) => format!("(!{key} or {key} in ({}))", list(v)),
        (Values::NotIn(v), false) if v.is_empty() => key.to_string(),
        (Values::NotIn(v), false) if v.len() == 1 => format!("{key},{key}!={}", list(v)),
        (Values::NotIn(v), false) => format!("{key},{key} notin ({})", list(v)),
        (Values::NotIn(v), true) if v.len() == 1 => format!("{key}!={}", list(v)),
        (Values::NotIn(v), true) => format!("{key} notin ({})", list(v)),
    }
}

impl fmt::Display for LabelSet {
    /// kubectl's selector syntax: `app=web,tier in (a,b),!debug`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(k, s)| key_text(k, s)).collect();
        f.write_str(&parts.join(","))
    }
}

impl fmt::Display for Term {
    /// `pods app=web in namespace production`, `any pod in any namespace at 10.0.0.0/8`,
    /// `addresses 0.0.0.0/0 that are not pods`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = if self.addrs.is_all() {
            String::new()
        } else {
            format!(" at {}", describe_addrs(&self.addrs))
        };
        match &self.who {
            Who::NotPods if self.addrs.is_all() => f.write_str("any address that is not a pod"),
            Who::NotPods => write!(
                f,
                "addresses {} that are not pods",
                describe_addrs(&self.addrs)
            ),
            Who::Pods { namespaces, pods } => {
                let pods = if pods.is_any() {
                    "any pod".to_string()
                } else {
                    format!("pods {pods}")
                };
                let mut rest = namespaces.clone();
                let name = rest.0.remove(NAMESPACE_NAME_LABEL);
                let names = match &name {
                    Some(KeyState {
                        absent: false,
                        values: Values::In(v),
                    }) => Some(v.iter().cloned().collect::<Vec<_>>().join(",")),
                    _ => None,
                };
                // Every namespace has its name label: only which names is worth saying.
                let others = match &name {
                    Some(KeyState {
                        absent: false,
                        values: Values::NotIn(v),
                    }) => Some(v.iter().cloned().collect::<Vec<_>>().join(",")),
                    _ => None,
                };
                let labelled = if rest.is_any() {
                    String::new()
                } else {
                    format!(" labelled {rest}")
                };
                let ns = match (names, others) {
                    (Some(n), _) if !n.contains(',') => format!("namespace {n}{labelled}"),
                    (Some(n), _) => format!("namespaces {n}{labelled}"),
                    (None, Some(o)) if o.is_empty() && rest.is_any() => "any namespace".into(),
                    (None, Some(o)) if o.is_empty() => format!("namespaces{labelled}"),
                    (None, Some(o)) if rest.is_any() => format!("any namespace but {o}"),
                    (None, Some(o)) => format!("namespaces but {o}{labelled}"),
                    (None, None) => format!("namespaces labelled {namespaces}"),
                };
                write!(f, "{pods} in {ns}{at}")
            }
        }
    }
}

/// Addresses as CIDRs per family, each family in [`crate::ipspace::describe`]'s words.
pub fn describe_addrs(a: &Addrs) -> String {
    let fam = |r: &[(u128, u128)], v6: bool| -> Option<String> {
        let cidrs: Vec<IpNet> = r
            .iter()
            .flat_map(|&(lo, hi)| range_to_cidrs(lo, hi, v6))
            .collect();
        (!cidrs.is_empty()).then(|| crate::ipspace::describe(&cidrs))
    };
    [fam(&a.v4, false), fam(&a.v6, true)]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" and ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn sel(text: &[(&str, Operator, &[&str])]) -> LabelSelector {
        LabelSelector {
            match_labels: Labels::new(),
            match_expressions: text
                .iter()
                .map(|(k, op, v)| weir_model::Requirement {
                    key: k.to_string(),
                    operator: *op,
                    values: v.iter().map(|s| s.to_string()).collect(),
                })
                .collect(),
        }
    }

    /// Differences are exact: every label set over a small universe is in `a − b` exactly
    /// when it is in `a` and not in `b`, and the pieces are disjoint.
    #[test]
    fn differences_partition_exactly() {
        use Operator::*;
        let selectors = [
            sel(&[("app", In, &["web", "db"])]),
            sel(&[("app", NotIn, &["web"]), ("tier", Exists, &[])]),
            sel(&[("tier", DoesNotExist, &[])]),
            sel(&[("app", In, &["db"]), ("tier", In, &["x"])]),
            sel(&[]),
        ];
        let values = [None, Some("web"), Some("db"), Some("x"), Some("other")];
        let mut universe = Vec::new();
        for a in values {
            for t in values {
                let mut l = Labels::new();
                if let Some(a) = a {
                    l.insert("app".into(), a.into());
                }
                if let Some(t) = t {
                    l.insert("tier".into(), t.into());
                }
                universe.push(l);
            }
        }
        for a in &selectors {
            for b in &selectors {
                let (sa, sb) = (
                    LabelSet::of_selector(a).unwrap(),
                    LabelSet::of_selector(b).unwrap(),
                );
                let ta = Term::pods(LabelSet::any_namespace(), sa);
                let tb = Term::pods(LabelSet::any_namespace(), sb);
                let diff = ta.minus(&tb);
                let ns = labels(&[(NAMESPACE_NAME_LABEL, "n")]);
                let ip: IpAddr = "10.0.0.1".parse().unwrap();
                for l in &universe {
                    let want = selector::matches(a, l) && !selector::matches(b, l);
                    let hits = diff.iter().filter(|t| t.contains_pod(&ns, l, &ip)).count();
                    assert_eq!(hits, usize::from(want), "{a:?} − {b:?} on {l:?}: {diff:?}");
                }
            }
        }
    }

    #[test]
    fn namespaces_always_carry_their_name() {
        let t = Term::pods(LabelSet::any_namespace(), LabelSet::any());
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(!t.contains_pod(&Labels::new(), &Labels::new(), &ip));
        assert!(t.contains_pod(&labels(&[(NAMESPACE_NAME_LABEL, "x")]), &Labels::new(), &ip));
        assert_eq!(t.to_string(), "any pod in any namespace");
        let t = Term::pods(
            LabelSet::namespace("production"),
            LabelSet::of_selector(&sel(&[("networking/logic", Operator::In, &["true"])])).unwrap(),
        );
        assert_eq!(
            t.to_string(),
            "pods networking/logic=true in namespace production"
        );
        let not_x = LabelSet::of_selector(&sel(&[(NAMESPACE_NAME_LABEL, Operator::NotIn, &["x"])]))
            .and_then(|n| n.and(&LabelSet::any_namespace()))
            .unwrap();
        let t = Term::pods(not_x.clone(), LabelSet::any());
        assert_eq!(t.to_string(), "any pod in any namespace but x");
        let env = LabelSet::of_selector(&sel(&[("env", Operator::In, &["prod"])])).unwrap();
        let t = Term::pods(not_x.and(&env).unwrap(), LabelSet::any());
        assert_eq!(
            t.to_string(),
            "any pod in namespaces but x labelled env=prod"
        );
    }

    #[test]
    fn addresses_subtract_and_describe() {
        let all = Addrs::all();
        let ten = Addrs::of_nets(&["10.0.0.0/8".parse::<IpNet>().unwrap()]);
        let rest = all.minus(&ten);
        assert!(!rest.contains(&"10.1.2.3".parse().unwrap()));
        assert!(rest.contains(&"11.0.0.0".parse().unwrap()));
        assert!(rest.contains(&"::1".parse().unwrap()));
        assert_eq!(rest.union(&ten), all);
        assert_eq!(
            describe_addrs(&rest),
            "0.0.0.0/0 except 10.0.0.0/8 and ::/0"
        );
    }
}
