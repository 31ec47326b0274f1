//! A node's ruleset kept current under pod churn without recompiling the cluster.
//!
//! A pod's change moves only its own elements: the peer sets whose selectors match it
//! (selector sets, egress named-port sets) wherever it runs, and — when it runs on this
//! node — its dispatch entries (into group chains that already exist), the local-pod
//! sets and the ingress named-port sets of the policies selecting it.
//! [`Incremental::endpoint`] tests the pod against each set's definition, recorded by the
//! full compile: work in proportion to the sets of the node's policies, however large the
//! cluster. What it cannot do that way (a group of policies no local pod had before, the
//! last pod of a group leaving, an address another endpoint also holds, an address family
//! appearing or disappearing, an ipBlock that must cut pod addresses out) is refused with
//! [`NeedsFull`] and nothing changed; the caller compiles in full. Equal to
//! [`crate::compile_with`] after every step: a property test holds them to it over random
//! event sequences.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

use weir_engine::{peer_matches_endpoint, selects_endpoint, Options, Selectors};
use weir_model::{Cluster, Direction, Endpoint, Labels, Peer};

use crate::compile::{compile_recorded, group_chain_name, named_port_elements, Family, SetDef};
use crate::{CompileOptions, ElementChanges, Ruleset, Scope};

type Elements = BTreeMap<String, BTreeSet<String>>;

/// The elements of `a` that `b` does not have, set by set.
fn minus(a: &Elements, b: &Elements) -> Elements {
    let mut out = Elements::new();
    for (set, els) in a {
        let other = b.get(set);
        let only: BTreeSet<String> = els
            .iter()
            .filter(|e| other.is_none_or(|o| !o.contains(*e)))
            .cloned()
            .collect();
        if !only.is_empty() {
            out.insert(set.clone(), only);
        }
    }
    out
}

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
    /// Policies (indexes) by namespace, in input order.
    by_namespace: HashMap<String, Vec<usize>>,
    /// Dispatch entries pointing at each group chain.
    group_refs: HashMap<String, usize>,
}

const MAPS: [&str; 4] = ["egress4", "egress6", "ingress4", "ingress6"];

/// The chain a dispatch entry (`ADDRESS : jump CHAIN`) jumps to.
fn jump_target(element: &str) -> Option<&str> {
    element.rsplit_once(" : jump ").map(|(_, c)| c)
}

/// Whether `e` has an address of family `f`.
fn has_family(e: &Endpoint, f: Family) -> bool {
    e.ips.iter().any(|ip| Family::of(ip) == f)
}

/// Counts `e` in (`sign` 1) or out (-1) of the endpoints having each family.
fn count_families(counts: &mut [usize; 2], e: &Endpoint, sign: isize) {
    for f in [Family::V4, Family::V6] {
        if has_family(e, f) {
            let n = &mut counts[family_index(f)];
            *n = n.checked_add_signed(sign).expect("counted in before out");
        }
    }
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
        let (ruleset, defs) = {
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
            ruleset,
            defs,
            unique_ids: true,
            by_id: HashMap::new(),
            addresses: HashMap::new(),
            family_count: [0, 0],
            namespaces: cluster
                .namespaces
                .iter()
                .map(|n| (n.name.clone(), n.labels.clone()))
                .collect(),
            by_namespace: HashMap::new(),
            group_refs: HashMap::new(),
            cluster,
        };
        for (i, p) in inc.cluster.policies.iter().enumerate() {
            inc.by_namespace
                .entry(p.namespace.clone())
                .or_default()
                .push(i);
        }
        for map in MAPS {
            for el in inc
                .ruleset
                .sets
                .get(map)
                .into_iter()
                .flat_map(|s| &s.elements)
            {
                if let Some(chain) = jump_target(el) {
                    *inc.group_refs.entry(chain.to_string()).or_insert(0) += 1;
                }
            }
        }
        for (i, e) in inc.cluster.endpoints.iter().enumerate() {
            if inc.by_id.insert(e.id(), i).is_some() {
                inc.unique_ids = false;
            }
            for ip in &e.ips {
                *inc.addresses.entry(*ip).or_insert(0) += 1;
            }
            count_families(&mut inc.family_count, e, 1);
        }
        inc
    }

    pub fn ruleset(&self) -> &Ruleset {
        &self.ruleset
    }

    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// This node's pod addresses (`None`: every endpoint is local).
    pub fn local(&self) -> Option<&HashSet<IpAddr>> {
        self.local.as_ref()
    }

    /// Whether `e` runs on this node, given the node's addresses (`None`: every endpoint).
    fn is_local(local: Option<&HashSet<IpAddr>>, e: &Endpoint) -> bool {
        local.is_none_or(|ips| e.ips.iter().any(|ip| ips.contains(ip)))
    }

    /// Endpoint `id` (`namespace/name`) added or replaced (`Some`) or removed (`None`); the
    /// node's pod addresses unchanged. Returns the elements that changed; refused, with
    /// nothing changed, when it needs the full compile (see the module's doc).
    pub fn endpoint(
        &mut self,
        id: &str,
        new: Option<Endpoint>,
    ) -> Result<ElementChanges, NeedsFull> {
        let local = self.local.clone();
        self.change(id, new, local)
    }

    /// [`Incremental::endpoint`] when the node's pod addresses are `local` after it (they
    /// may differ from before only by this endpoint's addresses).
    pub fn endpoint_on_node(
        &mut self,
        id: &str,
        new: Option<Endpoint>,
        local: HashSet<IpAddr>,
    ) -> Result<ElementChanges, NeedsFull> {
        self.change(id, new, Some(local))
    }

    fn change(
        &mut self,
        id: &str,
        new: Option<Endpoint>,
        local_after: Option<HashSet<IpAddr>>,
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
        // The node's addresses change by this endpoint's, or not at all.
        match (&self.local, &local_after) {
            (None, None) => {}
            (Some(before), Some(after)) => {
                let own = |ip: &IpAddr| {
                    old.is_some_and(|e| e.ips.contains(ip))
                        || new.as_ref().is_some_and(|e| e.ips.contains(ip))
                };
                if before.symmetric_difference(after).any(|ip| !own(ip)) {
                    return Err(NeedsFull("the node's addresses changed beyond this pod"));
                }
            }
            _ => return Err(NeedsFull("the node's scope changed")),
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
            let had = old.is_some_and(|e| has_family(e, f));
            let has = new.as_ref().is_some_and(|e| has_family(e, f));
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

        // Move the elements, then the cluster.
        let before = match old {
            Some(e) => self.contributions(e, self.local.as_ref())?,
            None => BTreeMap::new(),
        };
        let after = match &new {
            Some(e) => self.contributions(e, local_after.as_ref())?,
            None => BTreeMap::new(),
        };
        let changes = ElementChanges {
            removed: minus(&before, &after),
            added: minus(&after, &before),
        };
        // A group chain nothing jumps to any more is removed by the full compile.
        let mut refs: HashMap<&str, isize> = HashMap::new();
        for (sign, sets) in [(-1, &changes.removed), (1, &changes.added)] {
            for map in MAPS {
                for el in sets.get(map).into_iter().flatten() {
                    if let Some(chain) = jump_target(el) {
                        *refs.entry(chain).or_insert(0) += sign;
                    }
                }
            }
        }
        for (chain, delta) in &refs {
            let now = self.group_refs.get(*chain).copied().unwrap_or(0) as isize;
            if now + delta <= 0 {
                return Err(NeedsFull("the last pod of a group leaves this node"));
            }
        }
        for (chain, delta) in refs {
            let n = self.group_refs.entry(chain.to_string()).or_insert(0);
            *n = (*n as isize + delta) as usize;
        }
        let applied = self.ruleset.apply_elements(&changes);
        debug_assert!(applied, "recorded sets exist");
        self.replace(id, new);
        self.local = local_after;
        Ok(changes)
    }

    /// The elements `e` puts into each recorded set.
    fn contributions(
        &self,
        e: &Endpoint,
        local: Option<&HashSet<IpAddr>>,
    ) -> Result<Elements, NeedsFull> {
        let labels = self.namespaces.get(&e.namespace);
        let mut out = BTreeMap::new();
        let on_node = Self::is_local(local, e);
        if on_node {
            self.dispatch(e, local, &mut out)?;
        }
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
                SetDef::NamedIngress {
                    policy,
                    named,
                    family,
                } => {
                    if !on_node || !selects_endpoint(&self.cluster.policies[*policy], e) {
                        continue;
                    }
                    named_port_elements(e, named, *family).into_iter().collect()
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
                    named_port_elements(e, named, *family).into_iter().collect()
                }
                // Pod addresses change a Block only when ipBlocks exclude pods (refused above).
                SetDef::Block { .. } => continue,
            };
            if !elements.is_empty() {
                out.insert(name.clone(), elements);
            }
        }
        Ok(out)
    }

    /// A local endpoint's dispatch entries and local-set elements. Its group chains must
    /// exist already.
    fn dispatch(
        &self,
        e: &Endpoint,
        local: Option<&HashSet<IpAddr>>,
        out: &mut Elements,
    ) -> Result<(), NeedsFull> {
        if e.host_network {
            return Ok(());
        }
        let here: Vec<&IpAddr> = e
            .ips
            .iter()
            .filter(|ip| local.is_none_or(|l| l.contains(*ip)))
            .collect();
        for ip in &here {
            let set = format!("local{}", Family::of(ip).suffix());
            if self.ruleset.sets.contains_key(&set) {
                out.entry(set).or_default().insert(ip.to_string());
            }
        }
        let in_ns = self.by_namespace.get(&e.namespace);
        for dir in [Direction::Egress, Direction::Ingress] {
            let policies: Vec<usize> = in_ns
                .into_iter()
                .flatten()
                .copied()
                .filter(|&p| {
                    let policy = &self.cluster.policies[p];
                    policy.isolates(dir) && selects_endpoint(policy, e)
                })
                .collect();
            if policies.is_empty() {
                continue;
            }
            let chain = group_chain_name(dir, &policies);
            if !self.ruleset.chains.contains_key(&chain) {
                return Err(NeedsFull("a group of policies no pod of this node had"));
            }
            for ip in &here {
                out.entry(format!("{dir}{}", Family::of(ip).suffix()))
                    .or_default()
                    .insert(format!("{ip} : jump {chain}"));
            }
        }
        Ok(())
    }

    /// Puts `new` in the cluster in place of endpoint `id` (or removes it).
    fn replace(&mut self, id: &str, new: Option<Endpoint>) {
        if let Some(i) = self.by_id.remove(id) {
            let old = self.cluster.endpoints.swap_remove(i);
            for ip in &old.ips {
                self.addresses.remove(ip);
            }
            count_families(&mut self.family_count, &old, -1);
            if let Some(moved) = self.cluster.endpoints.get(i) {
                self.by_id.insert(moved.id(), i);
            }
        }
        if let Some(e) = new {
            for ip in &e.ips {
                self.addresses.insert(*ip, 1);
            }
            count_families(&mut self.family_count, &e, 1);
            self.by_id
                .insert(id.to_string(), self.cluster.endpoints.len());
            self.cluster.endpoints.push(e);
        }
    }
}
