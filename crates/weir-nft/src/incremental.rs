//! A node's ruleset kept current under pod churn without recompiling the cluster.
//!
//! Most events a node's agent sees are pods coming and going on *other* nodes. Such a pod
//! has no dispatch entry, chain or local set here; it only enters or leaves the sets that
//! hold peer addresses (selector sets, egress named-port sets). [`Incremental::endpoint`]
//! tests the changed pod against each of those sets' definitions, recorded by the full
//! compile, and changes exactly its elements: work in proportion to the sets of the node's
//! policies, however large the cluster. Anything it cannot do that way (a local pod, an
//! address another endpoint also holds, an address family appearing or disappearing, an
//! ipBlock that must cut pod addresses out) is refused with [`NeedsFull`] and nothing
//! changed; the caller compiles in full. Equal to [`crate::compile_with`] after every
//! step: a property test holds them to it over random event sequences.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

use weir_engine::ports::resolve_ports;
use weir_engine::{peer_matches_endpoint, Options, Selectors};
use weir_model::{Cluster, Endpoint, Labels, Peer, Protocol};

use crate::compile::{compile_recorded, proto_num, Family, SetDef};
use crate::{CompileOptions, ElementChanges, Ruleset, Scope};

/// Why an event needs the full compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("needs a full compile: {0}")]
pub struct NeedsFull(pub &'static str);

/// The ruleset of one node and what it was compiled from.
pub struct Incremental {
    cluster: Cluster,
    engine: Options,
    /// This node's pod addresses (`None`: every endpoint is local).
    local: Option<HashSet<IpAddr>>,
    options: CompileOptions,
    ruleset: Ruleset,
    defs: BTreeMap<String, SetDef>,
    /// Whether every endpoint's `namespace/name` is distinct (else every event is refused).
    unique_ids: bool,
    /// Endpoint `namespace/name` → index in `cluster.endpoints`.
    by_id: HashMap<String, usize>,
    /// How many endpoints hold each address.
    addresses: HashMap<IpAddr, usize>,
    /// How many endpoints have an address of each family (v4, v6).
    family_count: [usize; 2],
    namespaces: HashMap<String, Labels>,
}

fn family_index(f: Family) -> usize {
    match f {
        Family::V4 => 0,
        Family::V6 => 1,
    }
}

impl Incremental {
    /// The full compile of `cluster` for the node whose pods have the addresses `local`
    /// (`None`: every endpoint is local).
    pub fn new(
        cluster: Cluster,
        engine: Options,
        local: Option<HashSet<IpAddr>>,
        options: CompileOptions,
    ) -> Incremental {
        let (ruleset, recorded) = {
            let e = Selectors::new(&cluster, engine);
            let scope = match &local {
                Some(ips) => Scope::Addresses(ips),
                None => Scope::All,
            };
            compile_recorded(&e, scope, &options)
        };
        let mut inc = Incremental {
            engine,
            local,
            options,
            ruleset,
            defs: recorded.defs,
            unique_ids: true,
            by_id: HashMap::new(),
            addresses: HashMap::new(),
            family_count: [0, 0],
            namespaces: cluster
                .namespaces
                .iter()
                .map(|n| (n.name.clone(), n.labels.clone()))
                .collect(),
            cluster,
        };
        for (i, e) in inc.cluster.endpoints.iter().enumerate() {
            if inc.by_id.insert(e.id(), i).is_some() {
                inc.unique_ids = false;
            }
            for ip in &e.ips {
                *inc.addresses.entry(*ip).or_insert(0) += 1;
            }
            for f in [Family::V4, Family::V6] {
                if e.ips.iter().any(|ip| Family::of(ip) == f) {
                    inc.family_count[family_index(f)] += 1;
                }
            }
        }
        inc
    }

    pub fn ruleset(&self) -> &Ruleset {
        &self.ruleset
    }

    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// What the full compile is given: the cluster, engine options, local addresses, options.
    pub fn inputs(&self) -> (&Cluster, Options, Option<&HashSet<IpAddr>>, &CompileOptions) {
        (
            &self.cluster,
            self.engine,
            self.local.as_ref(),
            &self.options,
        )
    }

    fn is_local(&self, e: &Endpoint) -> bool {
        match &self.local {
            None => true,
            Some(ips) => e.ips.iter().any(|ip| ips.contains(ip)),
        }
    }

    /// Endpoint `id` (`namespace/name`) added or replaced (`Some`) or removed (`None`).
    /// Refused, with nothing changed, unless it is a pod on another node that shares no
    /// address with any other endpoint and changes no address family's presence.
    /// Returns the elements that changed.
    pub fn endpoint(
        &mut self,
        id: &str,
        new: Option<Endpoint>,
    ) -> Result<ElementChanges, NeedsFull> {
        if !self.unique_ids {
            return Err(NeedsFull("two endpoints with one namespace/name"));
        }
        let old = self.by_id.get(id).map(|&i| &self.cluster.endpoints[i]);
        if old.is_none() && new.is_none() {
            return Ok(ElementChanges::default());
        }
        if let Some(e) = &new {
            if e.id() != id {
                return Err(NeedsFull("the endpoint's id differs from its key"));
            }
        }
        if old.is_some_and(|e| self.is_local(e)) || new.as_ref().is_some_and(|e| self.is_local(e)) {
            return Err(NeedsFull("a pod of this node"));
        }
        // Addresses: each held by this endpoint alone, before and after.
        let old_ips: BTreeSet<IpAddr> = old
            .map(|e| e.ips.iter().copied().collect())
            .unwrap_or_default();
        if let Some(e) = old {
            if e.ips.len() != old_ips.len()
                || old_ips.iter().any(|ip| self.addresses.get(ip) != Some(&1))
            {
                return Err(NeedsFull("an address held by more than one endpoint"));
            }
        }
        if let Some(e) = &new {
            let mut seen = HashSet::new();
            for ip in &e.ips {
                if !seen.insert(ip) || (!old_ips.contains(ip) && self.addresses.contains_key(ip)) {
                    return Err(NeedsFull("an address held by more than one endpoint"));
                }
            }
        }
        // Families: sets exist per family some endpoint has; that must not change.
        for f in [Family::V4, Family::V6] {
            let had = old.is_some_and(|e| e.ips.iter().any(|ip| Family::of(ip) == f));
            let has = new
                .as_ref()
                .is_some_and(|e| e.ips.iter().any(|ip| Family::of(ip) == f));
            let count = self.family_count[family_index(f)];
            let after = count - usize::from(had) + usize::from(has);
            if (count == 0) != (after == 0) {
                return Err(NeedsFull("an address family appears or disappears"));
            }
        }
        // ipBlocks that cut pod addresses out change with every address inside them.
        if !self.engine.ipblock_matches_pods {
            let inside = |ip: &IpAddr| {
                self.defs.values().any(|d| match d {
                    SetDef::Block {
                        peer: Peer::IpBlock { cidr, .. },
                    } => cidr.contains(ip),
                    _ => false,
                })
            };
            let touched = old_ips.iter().any(inside)
                || new.as_ref().is_some_and(|e| e.ips.iter().any(inside));
            if touched {
                return Err(NeedsFull("an address inside an ipBlock that excludes pods"));
            }
        }

        // Accepted: move the elements, then the cluster.
        let before = match old {
            Some(e) => self.contributions(e),
            None => BTreeMap::new(),
        };
        let after = match &new {
            Some(e) => self.contributions(e),
            None => BTreeMap::new(),
        };
        let mut changes = ElementChanges::default();
        for (set, els) in &before {
            let now = after.get(set);
            let gone: BTreeSet<String> = els
                .iter()
                .filter(|e| now.is_none_or(|n| !n.contains(*e)))
                .cloned()
                .collect();
            if !gone.is_empty() {
                changes.removed.insert(set.clone(), gone);
            }
        }
        for (set, els) in &after {
            let was = before.get(set);
            let new: BTreeSet<String> = els
                .iter()
                .filter(|e| was.is_none_or(|w| !w.contains(*e)))
                .cloned()
                .collect();
            if !new.is_empty() {
                changes.added.insert(set.clone(), new);
            }
        }
        let applied = self.ruleset.apply_elements(&changes);
        debug_assert!(applied, "recorded sets exist");
        self.replace(id, new);
        Ok(changes)
    }

    /// The elements `e` puts into each recorded set.
    fn contributions(&self, e: &Endpoint) -> BTreeMap<String, BTreeSet<String>> {
        let labels = self.namespaces.get(&e.namespace);
        let mut out = BTreeMap::new();
        for (name, def) in &self.defs {
            let elements: BTreeSet<String> = match def {
                SetDef::Selector {
                    peer,
                    policy_ns,
                    family,
                } => {
                    if peer_matches_endpoint(peer, policy_ns, e, labels, false, self.engine) {
                        e.ips
                            .iter()
                            .filter(|ip| Family::of(ip) == *family)
                            .map(|ip| ip.to_string())
                            .collect()
                    } else {
                        continue;
                    }
                }
                SetDef::NamedEgress {
                    peer,
                    policy_ns,
                    named,
                    family,
                } => {
                    let matches = peer.as_ref().is_none_or(|peer| {
                        e.ips.iter().any(|ip| {
                            peer_matches_endpoint(
                                peer,
                                policy_ns,
                                e,
                                labels,
                                ip.is_ipv6(),
                                self.engine,
                            )
                        })
                    });
                    if !matches {
                        continue;
                    }
                    let ports = resolve_ports(named, &e.ports);
                    let mut elements = BTreeSet::new();
                    for ip in e.ips.iter().filter(|ip| Family::of(ip) == *family) {
                        for proto in Protocol::ALL {
                            for &(lo, hi) in ports.ranges(proto) {
                                for port in lo..=hi {
                                    elements
                                        .insert(format!("{ip} . {} . {port}", proto_num(proto)));
                                }
                            }
                        }
                    }
                    elements
                }
                // Pod addresses change a Block only when ipBlocks exclude pods (refused above).
                SetDef::Block { .. } => continue,
            };
            if !elements.is_empty() {
                out.insert(name.clone(), elements);
            }
        }
        out
    }

    /// Puts `new` in the cluster in place of endpoint `id` (or removes it).
    fn replace(&mut self, id: &str, new: Option<Endpoint>) {
        if let Some(&i) = self.by_id.get(id) {
            let old = &self.cluster.endpoints[i];
            for ip in &old.ips {
                self.addresses.remove(ip);
            }
            for f in [Family::V4, Family::V6] {
                if old.ips.iter().any(|ip| Family::of(ip) == f) {
                    self.family_count[family_index(f)] -= 1;
                }
            }
            self.by_id.remove(id);
            self.cluster.endpoints.swap_remove(i);
            if let Some(moved) = self.cluster.endpoints.get(i) {
                self.by_id.insert(moved.id(), i);
            }
        }
        if let Some(e) = new {
            for ip in &e.ips {
                self.addresses.insert(*ip, 1);
            }
            for f in [Family::V4, Family::V6] {
                if e.ips.iter().any(|ip| Family::of(ip) == f) {
                    self.family_count[family_index(f)] += 1;
                }
            }
            self.by_id
                .insert(id.to_string(), self.cluster.endpoints.len());
            self.cluster.endpoints.push(e);
        }
    }
}
