//! What changed between two policy sets: connections added, removed and changed, per
//! endpoint pair (matched by `namespace/name`) and outside representative address.

use std::net::IpAddr;

use serde::Serialize;
use weir_model::{Cluster, Policy};

use crate::ipspace::outside_representatives;
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
    let changed: Vec<(&Policy, Option<&Policy>)> = nc
        .policies
        .iter()
        .map(|p| (p, oc.policies.iter().find(|o| o.id() == p.id())))
        .filter(|(p, o)| o.is_none_or(|o| !same(p, o)))
        .chain(
            oc.policies
                .iter()
                .filter(|o| !nc.policies.iter().any(|p| p.id() == o.id()))
                .map(|o| (o, None)),
        )
        .collect();
    let mut sides: Vec<Named> = ids.iter().map(|id| Named::Endpoint(id)).collect();
    sides.extend(
        outside_representatives(&[oc, nc])
            .into_iter()
            .map(Named::Address),
    );
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
            let mut policies: Vec<String> = changed
                .iter()
                .filter(|(p, o)| {
                    [(new, Some(*p)), (old, *o), (old, Some(*p))]
                        .iter()
                        .any(|(e, pol)| {
                            pol.is_some_and(|pol| {
                                selects(e, pol, a, true) || selects(e, pol, b, false)
                            })
                        })
                })
                .map(|(p, _)| p.id())
                .collect();
            policies.sort();
            policies.dedup();
            let show = |s: Named| match s {
                Named::Endpoint(id) => id.to_string(),
                Named::Address(ip) => ip.to_string(),
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
