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

use weir_engine::{
    peer_matches_endpoint, pod_selector_selects, pods_in_matches, selects_endpoint, Options,
    Selectors,
};
use weir_model::{
    Cluster, Direction, Endpoint, Labels, Namespace, Peer, Policy, NAMESPACE_NAME_LABEL,
};

use crate::compile::{
    compile_namespace, compile_recorded, dispatch_to, group_key, is_audited, named_port_elements,
    Existing, Family, Names, Part, SetDef,
};
use crate::{CompileOptions, Delta, ElementChanges, Ruleset, Scope};

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
    /// The ids of each namespace's endpoints, and of those on this node (not
    /// hostNetwork): what a namespace's labels and a policy's change touch.
    by_ns: HashMap<String, BTreeSet<String>>,
    local_by_ns: HashMap<String, BTreeSet<String>>,
    /// How many endpoints hold each address.
    addresses: HashMap<IpAddr, usize>,
    /// How many endpoints have an address of each family (v4, v6).
    family_count: [usize; 2],
    namespaces: HashMap<String, Labels>,
    /// Whether every policy's `namespace/name` is distinct (else every event is refused).
    unique_policies: bool,
    /// Policies by namespace: name → index in `cluster.policies`.
    by_namespace: HashMap<String, BTreeMap<String, usize>>,
    /// Dispatch entries pointing at each group chain.
    group_refs: HashMap<String, usize>,
    /// The names the chains and sets were given.
    names: Names,
    /// What each group and policy chain refers to (policy chains, sets).
    uses: HashMap<String, BTreeSet<String>>,
    /// How many policy chains refer to each set.
    set_refs: HashMap<String, usize>,
    options: CompileOptions,
}

const MAPS: [&str; 4] = ["egress4", "egress6", "ingress4", "ingress6"];

/// The chain a dispatch entry (`ADDRESS : jump CHAIN`) jumps to.
fn jump_target(element: &str) -> Option<&str> {
    element.rsplit_once(" : jump ").map(|(_, c)| c)
}

/// How many dispatch entries for each group chain `changes` add (positive) or remove.
fn jumps(changes: &ElementChanges) -> HashMap<&str, isize> {
    let mut refs: HashMap<&str, isize> = HashMap::new();
    for (sign, sets) in [(-1, &changes.removed), (1, &changes.added)] {
        for map in MAPS {
            for chain in sets
                .get(map)
                .into_iter()
                .flatten()
                .filter_map(|e| jump_target(e))
            {
                *refs.entry(chain).or_insert(0) += sign;
            }
        }
    }
    refs
}

/// The labels every namespace has: its name.
fn name_label(ns: &str) -> Labels {
    [(NAMESPACE_NAME_LABEL.to_string(), ns.to_string())].into()
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
        let compiled = {
            let e = Selectors::new(&cluster, engine);
            let scope = match &local {
                Some(ips) => Scope::Addresses(ips),
                None => Scope::All,
            };
            compile_recorded(&e, scope, &options)
        };
        let mut set_refs: HashMap<String, usize> = HashMap::new();
        for (chain, used) in &compiled.uses {
            if compiled.rs.chains[chain].kind == crate::ChainKind::Policy {
                for set in used {
                    *set_refs.entry(set.clone()).or_insert(0) += 1;
                }
            }
        }
        let mut inc = Incremental {
            engine,
            local,
            ruleset: compiled.rs,
            defs: compiled.defs,
            names: compiled.names,
            uses: compiled.uses.into_iter().collect(),
            set_refs,
            options,
            unique_policies: true,
            unique_ids: true,
            by_ns: HashMap::new(),
            local_by_ns: HashMap::new(),
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
            let by_name = inc.by_namespace.entry(p.namespace.clone()).or_default();
            if by_name.insert(p.name.clone(), i).is_some() {
                inc.unique_policies = false;
            }
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
            inc.by_ns
                .entry(e.namespace.clone())
                .or_default()
                .insert(e.id());
            if !e.host_network && Self::is_local(inc.local.as_ref(), e) {
                inc.local_by_ns
                    .entry(e.namespace.clone())
                    .or_default()
                    .insert(e.id());
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
        self.comparable()?;
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
        let refs = jumps(&changes);
        for (chain, delta) in &refs {
            let now = self.group_refs.get(*chain).copied().unwrap_or(0) as isize;
            if now + delta <= 0 {
                return Err(NeedsFull("the last pod of a group leaves this node"));
            }
        }
        self.count_jumps(refs);
        let applied = self.ruleset.apply_elements(&changes);
        debug_assert!(applied, "recorded sets exist");
        self.local = local_after;
        self.replace(id, new);
        Ok(changes)
    }

    /// The labels of namespace `ns` as the model completes them: a namespace without an
    /// object (its pods seen first) has its name label alone.
    fn namespace_labels(&self, ns: &str) -> std::borrow::Cow<'_, Labels> {
        match self.namespaces.get(ns) {
            Some(labels) => std::borrow::Cow::Borrowed(labels),
            None => std::borrow::Cow::Owned(name_label(ns)),
        }
    }

    /// The elements `e` puts into each recorded set.
    fn contributions(
        &self,
        e: &Endpoint,
        local: Option<&HashSet<IpAddr>>,
    ) -> Result<Elements, NeedsFull> {
        let labels = self.namespace_labels(&e.namespace);
        let labels = Some(labels.as_ref());
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
                    namespace,
                    pod_selector,
                    named,
                    family,
                } => {
                    if !on_node || !pod_selector_selects(namespace, pod_selector, e) {
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
                SetDef::NamedSubject {
                    subject,
                    named,
                    family,
                } => {
                    if !on_node || !pods_in_matches(subject, e, labels) {
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
            let policies: Vec<&Policy> = in_ns
                .into_iter()
                .flat_map(|by_name| by_name.values())
                .map(|&p| &self.cluster.policies[p])
                .filter(|policy| policy.isolates(dir) && selects_endpoint(policy, e))
                .collect();
            let Some((audit, policies)) =
                dispatch_to(&policies, |p| is_audited(p, self.options.audit))
            else {
                continue;
            };
            let (prefix, key) = group_key(dir, audit, policies.into_iter());
            let Some(chain) = self
                .names
                .find(prefix, &key)
                .filter(|c| self.ruleset.chains.contains_key(c))
            else {
                return Err(NeedsFull("a group of policies no pod of this node had"));
            };
            for ip in &here {
                out.entry(format!("{dir}{}", Family::of(ip).suffix()))
                    .or_default()
                    .insert(format!("{ip} : jump {chain}"));
            }
        }
        Ok(())
    }

    /// Takes dispatch entries added and removed into the count of entries per group chain
    /// (a chain no entry points at any more leaves the count).
    fn count_jumps(&mut self, refs: HashMap<&str, isize>) {
        for (chain, delta) in refs {
            let n = self.group_refs.entry(chain.to_string()).or_insert(0);
            *n = (*n as isize + delta) as usize;
            if *n == 0 {
                self.group_refs.remove(chain);
            }
        }
    }

    /// Refuses every event when cluster-wide policies exist, or when names are ambiguous: endpoints or policies with one
    /// `namespace/name`, or chain and set names whose hashes met.
    fn comparable(&self) -> Result<(), NeedsFull> {
        if !self.cluster.cluster_policies.is_empty() {
            // Their chains and sets depend on every pod a subject or peer selects.
            return Err(NeedsFull("cluster-wide policies are compiled in full"));
        }
        if !self.unique_ids {
            return Err(NeedsFull("two endpoints with one namespace/name"));
        }
        if !self.unique_policies {
            return Err(NeedsFull("two policies with one namespace/name"));
        }
        if self.names.collided {
            return Err(NeedsFull("two chain or set names with one hash"));
        }
        Ok(())
    }

    /// Namespace `name`'s object added or relabelled (`Some`: its labels) or removed
    /// (`None`). Its labels decide only whether its own pods match namespace selectors, so
    /// the elements of those pods move, and nothing else: work in proportion to the
    /// namespace's pods.
    pub fn namespace(
        &mut self,
        name: &str,
        labels: Option<Labels>,
    ) -> Result<ElementChanges, NeedsFull> {
        self.comparable()?;
        let now = match labels {
            Some(mut l) => {
                l.insert(NAMESPACE_NAME_LABEL.to_string(), name.to_string());
                l
            }
            None => name_label(name),
        };
        if *self.namespace_labels(name) == now {
            return Ok(ElementChanges::default());
        }
        let members = self.indexes(&self.by_ns, name);
        let contributions = |inc: &Self| -> Result<Elements, NeedsFull> {
            let mut all = Elements::new();
            for &i in &members {
                for (set, els) in
                    inc.contributions(&inc.cluster.endpoints[i], inc.local.as_ref())?
                {
                    all.entry(set).or_default().extend(els);
                }
            }
            Ok(all)
        };
        let before = contributions(self)?;
        let old = self.namespaces.insert(name.to_string(), now.clone());
        let after = match contributions(self) {
            Ok(after) => after,
            Err(e) => {
                match old {
                    Some(labels) => self.namespaces.insert(name.to_string(), labels),
                    None => self.namespaces.remove(name),
                };
                return Err(e);
            }
        };
        let changes = ElementChanges {
            removed: minus(&before, &after),
            added: minus(&after, &before),
        };
        let applied = self.ruleset.apply_elements(&changes);
        debug_assert!(applied, "recorded sets exist");
        match self.cluster.namespaces.iter_mut().find(|n| n.name == name) {
            Some(n) => n.labels = now,
            None => self.cluster.namespaces.push(Namespace {
                name: name.to_string(),
                labels: now,
                origin: None,
            }),
        }
        Ok(changes)
    }

    /// Policy `id` (`namespace/name`) added or replaced (`Some`) or removed (`None`).
    /// Recompiles only its namespace's part of the table — the dispatch entries of the
    /// namespace's pods on this node, their group chains, the policy chains of those and
    /// the sets these use — taking selector and ipBlock sets the table has as they are,
    /// and returns the difference to what the table held. Refused, with nothing changed,
    /// when names are ambiguous ([`NeedsFull`]).
    pub fn policy(&mut self, id: &str, new: Option<Policy>) -> Result<Delta, NeedsFull> {
        self.comparable()?;
        let Some((ns, name)) = id.split_once('/') else {
            return Err(NeedsFull("a policy id without a namespace"));
        };
        if new
            .as_ref()
            .is_some_and(|p| p.namespace != ns || p.name != name)
        {
            return Err(NeedsFull("the policy's id differs from its key"));
        }
        let old_index = self.by_namespace.get(ns).and_then(|m| m.get(name)).copied();
        if old_index.is_none() && new.is_none() {
            return Ok(Delta::default());
        }
        // What the namespace's local pods dispatch to, and the chains behind that.
        let before = self.namespace_dispatch(ns)?;
        let old = self.put_policy(ns, name, new);
        let families: Vec<Family> = [Family::V4, Family::V6]
            .into_iter()
            .filter(|f| self.family_count[family_index(*f)] > 0)
            .collect();
        let endpoints = self.indexes(&self.local_by_ns, ns);
        let policies: Vec<usize> = self
            .by_namespace
            .get(ns)
            .into_iter()
            .flat_map(|m| m.values().copied())
            .collect();
        let compiled = compile_namespace(
            &Selectors::new(&self.cluster, self.engine),
            Part {
                endpoints: &endpoints,
                policies: &policies,
            },
            self.local.as_ref(),
            families,
            &self.options,
            Existing {
                ruleset: &self.ruleset,
                defs: &self.defs,
            },
            std::mem::take(&mut self.names),
        );
        self.names = compiled.names;
        if self.names.collided {
            self.put_policy(ns, name, old);
            return Err(NeedsFull("two chain or set names with one hash"));
        }

        let mut delta = Delta::default();
        // Dispatch entries.
        for map in MAPS {
            let empty = BTreeSet::new();
            let now = compiled.rs.sets.get(map).map_or(&empty, |s| &s.elements);
            delta
                .elements
                .between(map, before.get(map).unwrap_or(&empty), now);
        }
        // Chains: the group chains jumped to before and the policy chains they jump to.
        let mut old_chains = BTreeSet::new();
        for chain in before.values().flatten().filter_map(|e| jump_target(e)) {
            if old_chains.insert(chain.to_string()) {
                // A group chain uses policy chains; an audit chain uses sets, not chains.
                let used = self.uses.get(chain).into_iter().flatten();
                old_chains.extend(
                    used.filter(|c| self.ruleset.chains.contains_key(*c))
                        .cloned(),
                );
            }
        }
        let mut refs: HashMap<String, isize> = HashMap::new();
        let is_policy = |c: &crate::Chain| c.kind == crate::ChainKind::Policy;
        for chain in &old_chains {
            if !compiled.rs.chains.contains_key(chain) {
                delta.removed_chains.insert(chain.clone());
            }
            if self.ruleset.chains.get(chain).is_some_and(is_policy) {
                for set in self.uses.get(chain).into_iter().flatten() {
                    *refs.entry(set.clone()).or_insert(0) -= 1;
                }
            }
        }
        for (name, chain) in &compiled.rs.chains {
            if self.ruleset.chains.get(name).map(|c| &c.rules) != Some(&chain.rules) {
                delta.chains.insert(name.clone(), chain.clone());
            }
            if is_policy(chain) {
                for set in compiled.uses.get(name).into_iter().flatten() {
                    *refs.entry(set.clone()).or_insert(0) += 1;
                }
            }
        }
        // Sets: made anew (added, or their elements moved), or used by nothing any more.
        for (name, set) in compiled
            .rs
            .sets
            .iter()
            .filter(|(n, _)| !MAPS.contains(&n.as_str()))
        {
            delta.set(name, set, self.ruleset.sets.get(name));
        }
        for (set, d) in &refs {
            let n = self.set_refs.get(set).copied().unwrap_or(0) as isize + d;
            if n <= 0 && self.ruleset.sets.contains_key(set) {
                delta.removed_sets.insert(set.clone());
            }
        }

        // Take it in.
        let applied = self.ruleset.apply_delta(&delta);
        debug_assert!(applied, "the delta is made against this ruleset");
        for chain in &delta.removed_chains {
            self.uses.remove(chain);
        }
        for (chain, used) in compiled.uses {
            self.uses.insert(chain, used);
        }
        for (set, d) in refs {
            let n = self.set_refs.get(&set).copied().unwrap_or(0) as isize + d;
            if n > 0 {
                self.set_refs.insert(set, n as usize);
            } else {
                self.set_refs.remove(&set);
            }
        }
        for set in &delta.removed_sets {
            self.defs.remove(set);
        }
        self.defs.extend(compiled.defs);
        self.count_jumps(jumps(&delta.elements));
        Ok(delta)
    }

    /// Where the endpoints `index` lists for namespace `ns` are in `cluster.endpoints`.
    fn indexes(&self, index: &HashMap<String, BTreeSet<String>>, ns: &str) -> Vec<usize> {
        let ids = index.get(ns).into_iter().flatten();
        ids.filter_map(|id| self.by_id.get(id).copied()).collect()
    }

    /// The dispatch entries of namespace `ns`'s pods on this node, by map.
    fn namespace_dispatch(&self, ns: &str) -> Result<Elements, NeedsFull> {
        let mut out = Elements::new();
        for i in self.indexes(&self.local_by_ns, ns) {
            let e = &self.cluster.endpoints[i];
            for ip in e
                .ips
                .iter()
                .filter(|ip| self.local.as_ref().is_none_or(|l| l.contains(*ip)))
            {
                if self.addresses.get(ip) != Some(&1) {
                    return Err(NeedsFull("an address held by more than one endpoint"));
                }
                let prefix = format!("{ip} : jump ");
                for map in MAPS {
                    let Some(set) = self.ruleset.sets.get(map) else {
                        continue;
                    };
                    if let Some(el) = set.elements.range(prefix.clone()..).next() {
                        if el.starts_with(&prefix) {
                            out.entry(map.to_string()).or_default().insert(el.clone());
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// Puts `new` in the cluster as policy `ns/name` (or removes it); returns what it was.
    fn put_policy(&mut self, ns: &str, name: &str, new: Option<Policy>) -> Option<Policy> {
        let by_name = self.by_namespace.entry(ns.to_string()).or_default();
        match (by_name.get(name).copied(), new) {
            (Some(i), Some(p)) => Some(std::mem::replace(&mut self.cluster.policies[i], p)),
            (Some(i), None) => {
                by_name.remove(name);
                let old = self.cluster.policies.swap_remove(i);
                if let Some(moved) = self.cluster.policies.get(i) {
                    self.by_namespace
                        .entry(moved.namespace.clone())
                        .or_default()
                        .insert(moved.name.clone(), i);
                }
                Some(old)
            }
            (None, Some(p)) => {
                by_name.insert(name.to_string(), self.cluster.policies.len());
                self.cluster.policies.push(p);
                None
            }
            (None, None) => None,
        }
    }

    /// Puts `new` in the cluster in place of endpoint `id` (or removes it); `self.local`
    /// is the node's addresses with it.
    fn replace(&mut self, id: &str, new: Option<Endpoint>) {
        if let Some(i) = self.by_id.remove(id) {
            let old = self.cluster.endpoints.swap_remove(i);
            for index in [&mut self.by_ns, &mut self.local_by_ns] {
                if let Some(ids) = index.get_mut(&old.namespace) {
                    ids.remove(id);
                }
            }
            for ip in &old.ips {
                self.addresses.remove(ip);
            }
            count_families(&mut self.family_count, &old, -1);
            if let Some(moved) = self.cluster.endpoints.get(i) {
                self.by_id.insert(moved.id(), i);
            }
        }
        if let Some(e) = new {
            if !self.namespaces.contains_key(&e.namespace) {
                // As the model completes it (a full compile and selector sets made later
                // see it so).
                let labels = name_label(&e.namespace);
                self.namespaces.insert(e.namespace.clone(), labels.clone());
                self.cluster.namespaces.push(Namespace {
                    name: e.namespace.clone(),
                    labels,
                    origin: None,
                });
            }
            self.by_ns
                .entry(e.namespace.clone())
                .or_default()
                .insert(id.to_string());
            if !e.host_network && Self::is_local(self.local.as_ref(), &e) {
                self.local_by_ns
                    .entry(e.namespace.clone())
                    .or_default()
                    .insert(id.to_string());
            }
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
