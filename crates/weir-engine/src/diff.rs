//! What changed between two policy sets: connections added, removed and changed, per
//! endpoint pair (matched by `namespace/name`) and per range of outside addresses that both
//! versions treat alike (named as `analyze` names them: `0.0.0.0/0 except 10.0.0.0/8`).

use std::net::IpAddr;

use serde::Serialize;
use weir_model::{Cluster, ClusterPolicy, Direction, Policy};

use crate::ipspace::{describe, intersect, outside_representatives};
use crate::ports::PortSet;
use crate::{Engine, Side};

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum ChangeKind {
    Added,
    Removed,
    Changed,
}

#[derive(Clone, Debug, Serialize)]
pub struct Change {
    pub kind: ChangeKind,
    pub from: String,
    pub to: String,
    /// `none`, `all`, or e.g. `TCP 80; UDP 53`.
    pub before: String,
    pub after: String,
    /// Changed policies (added, removed or edited) that select the source for egress or the
    /// destination for ingress, in either version; empty when only endpoints changed.
    /// NetworkPolicies as `namespace/name`, cluster policies as `Kind/name`.
    pub policies: Vec<String>,
}

/// A policy's meaning, without where it was written.
fn same(a: &Policy, b: &Policy) -> bool {
    let rules = |p: &Policy| -> Vec<(Vec<weir_model::Peer>, Vec<weir_model::PortRule>)> {
        p.ingress
            .iter()
            .chain(&p.egress)
            .map(|r| (r.peers.clone(), r.ports.clone()))
            .collect()
    };
    a.pod_selector == b.pod_selector
        && a.isolates_ingress == b.isolates_ingress
        && a.isolates_egress == b.isolates_egress
        && a.ingress.len() == b.ingress.len()
        && rules(a) == rules(b)
}

/// A cluster policy's meaning, without where it was written.
fn same_cluster(a: &ClusterPolicy, b: &ClusterPolicy) -> bool {
    let mut a = a.clone();
    a.origin = b.origin.clone();
    a == *b
}

/// Policies of `new` that are not in `old` with the same meaning, with their old version;
/// then those of `old` that `new` lacks.
fn changed_between<'p, P>(
    new: &'p [P],
    old: &'p [P],
    id: impl Fn(&P) -> String,
    same: impl Fn(&P, &P) -> bool,
) -> Vec<(&'p P, Option<&'p P>)> {
    new.iter()
        .map(|p| (p, old.iter().find(|o| id(o) == id(p))))
        .filter(|(p, o)| o.is_none_or(|o| !same(p, o)))
        .chain(
            old.iter()
                .filter(|o| !new.iter().any(|p| id(p) == id(o)))
                .map(|o| (o, None)),
        )
        .collect()
}

/// The changed policies that bear on a connection (`bears`) in either version.
fn touched<'p, P>(
    changed: &'p [(&'p P, Option<&'p P>)],
    old: &'p Engine,
    new: &'p Engine,
    bears: impl Fn(&Engine, &P) -> bool + 'p,
) -> impl Iterator<Item = &'p P> + 'p {
    changed
        .iter()
        .filter(move |(p, o)| bears(new, p) || bears(old, p) || o.is_some_and(|o| bears(old, o)))
        .map(|(p, _)| *p)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Named<'a> {
    Endpoint(&'a str),
    Address(IpAddr),
}

fn node(engine: &Engine, side: Named) -> Option<Side> {
    match side {
        Named::Endpoint(id) => engine.cluster().endpoint_index(id).map(Side::Endpoint),
        Named::Address(ip) => Some(Side::Address(ip)),
    }
}

fn allowed(engine: &Engine, a: Named, b: Named) -> PortSet {
    match (node(engine, a), node(engine, b)) {
        (Some(x), Some(y)) => engine.allowed(x, y),
        _ => PortSet::none(),
    }
}

/// Every connection whose allowed ports differ between `old` and `new`.
pub fn diff(old: &Engine, new: &Engine) -> Vec<Change> {
    let (oc, nc): (&Cluster, &Cluster) = (old.cluster(), new.cluster());
    let mut ids: Vec<String> = oc
        .endpoints
        .iter()
        .chain(&nc.endpoints)
        .map(|e| e.id())
        .collect();
    ids.sort();
    ids.dedup();
    let changed = changed_between(&nc.policies, &oc.policies, Policy::id, same);
    let changed_cluster = changed_between(
        &nc.cluster_policies,
        &oc.cluster_policies,
        ClusterPolicy::id,
        same_cluster,
    );
    let mut sides: Vec<Named> = ids.iter().map(|id| Named::Endpoint(id)).collect();
    // Outside addresses: one representative per pair of (old, new) address classes, named by
    // the addresses in both, so a change is stated for exactly the addresses it holds for.
    let mut outside: Vec<(IpAddr, String)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for ip in outside_representatives(&[oc, nc]) {
        let side = Side::Address(ip);
        let (Some(a), Some(b)) = (old.index.class_of(side), new.index.class_of(side)) else {
            continue;
        };
        if seen.insert((a, b)) {
            let (Some(x), Some(y)) = (old.class_cidrs(a), new.class_cidrs(b)) else {
                continue;
            };
            outside.push((ip, describe(&intersect(&x, &y))));
        }
    }
    sides.extend(outside.iter().map(|(ip, _)| Named::Address(*ip)));
    let selects = |engine: &Engine, p: &Policy, side: Named, egress: bool| -> bool {
        let Some(Side::Endpoint(i)) = node(engine, side) else {
            return false;
        };
        (if egress {
            p.isolates_egress
        } else {
            p.isolates_ingress
        }) && engine.selects(p, i)
    };
    // A cluster policy bears on the side its subject selects, in a direction it has rules for.
    let subject = |engine: &Engine, p: &ClusterPolicy, side: Named, dir: Direction| -> bool {
        let Some(Side::Endpoint(i)) = node(engine, side) else {
            return false;
        };
        !p.rules(dir).is_empty() && engine.subject_selects(p, i)
    };
    let mut out = Vec::new();
    for &a in &sides {
        for &b in &sides {
            if a == b || (matches!(a, Named::Address(_)) && matches!(b, Named::Address(_))) {
                continue;
            }
            let (before, after) = (allowed(old, a, b), allowed(new, a, b));
            if before == after {
                continue;
            }
            let kind = if before.is_empty() {
                ChangeKind::Added
            } else if after.is_empty() {
                ChangeKind::Removed
            } else {
                ChangeKind::Changed
            };
            let bears = |e: &Engine, p: &Policy| selects(e, p, a, true) || selects(e, p, b, false);
            let bears_cluster = |e: &Engine, p: &ClusterPolicy| {
                subject(e, p, a, Direction::Egress) || subject(e, p, b, Direction::Ingress)
            };
            let mut policies: Vec<String> = touched(&changed, old, new, bears)
                .map(Policy::id)
                .chain(touched(&changed_cluster, old, new, bears_cluster).map(ClusterPolicy::id))
                .collect();
            policies.sort();
            policies.dedup();
            let show = |s: Named| match s {
                Named::Endpoint(id) => id.to_string(),
                Named::Address(ip) => outside
                    .iter()
                    .find(|(o, _)| *o == ip)
                    .map_or_else(|| ip.to_string(), |(_, name)| name.clone()),
            };
            out.push(Change {
                kind,
                from: show(a),
                to: show(b),
                before: before.to_string(),
                after: after.to_string(),
                policies,
            });
        }
    }
    out
}
