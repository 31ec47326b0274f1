//! The scalable evaluator. Endpoints that every selector, ipBlock and named port
//! treats alike are one class; outside addresses are classes of the IP space.
//! Each rule admits a set of peer classes (a bitset). Each isolated destination
//! (ingress) and source (egress) has a *row*: the rules that apply to it with the
//! ports they admit there. A verdict is two row walks (a bit test per rule) and an
//! intersection of interned port sets; nothing grows as classes × classes.

use std::sync::Mutex;

// FxHash: the engine hashes small integer keys millions of times; SipHash's DoS
// resistance buys nothing here and costs several times the time.
use rustc_hash::FxHashMap as HashMap;

use ipnet::IpNet;
use serde::Serialize;
use weir_model::{
    Action, Cluster, ClusterPeer, ClusterPort, ContainerPort, Direction, LabelSelector,
    NamespaceScope, Peer, PortRef, PortRule, Tier,
};

use crate::ipspace::{Block, IpSpace};
use crate::ports::{resolve_cluster_ports, resolve_ports, PortSet};
use crate::{selector, Options, Side};

/// Index of a class: endpoint classes first, then one per IP-space class.
pub type ClassId = u32;

/// An interned port set: equal sets have equal ids. The empty and the full set are
/// interned first, so set algebra can short-cut them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortSetId(u32);

impl PortSetId {
    /// Nothing allowed.
    pub const NONE: PortSetId = PortSetId(0);
    /// Every protocol and port.
    pub const ALL: PortSetId = PortSetId(1);

    fn index(self) -> usize {
        self.0 as usize
    }
}

const NONE: PortSetId = PortSetId::NONE;
const ALL: PortSetId = PortSetId::ALL;

/// An allowed class pair and what it allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flow {
    pub src: ClassId,
    pub dst: ClassId,
    pub ports: PortSetId,
}

/// All allowed class pairs, with the port sets they refer to.
pub struct Flows {
    pub list: Vec<Flow>,
    sets: Vec<PortSet>,
}

impl Flows {
    pub fn ports(&self, flow: &Flow) -> &PortSet {
        self.port_set(flow.ports)
    }

    /// An interned port set; equal sets have equal ids.
    pub fn port_set(&self, id: PortSetId) -> &PortSet {
        &self.sets[id.index()]
    }
}

/// Sizes of the compiled model, for `--summary` and benchmarks.
#[derive(Clone, Debug, Serialize)]
pub struct Stats {
    pub namespaces: usize,
    pub endpoints: usize,
    pub policies: usize,
    pub rules: usize,
    pub endpoint_classes: usize,
    pub external_classes: usize,
    pub ingress_isolated_classes: usize,
    pub egress_isolated_classes: usize,
    pub rows: usize,
    pub row_rules: usize,
    pub port_sets: usize,
}

struct Class {
    members: Vec<usize>,
    /// Named containerPorts: all that named-port resolution looks at.
    named: Vec<ContainerPort>,
    /// Interned `named`, the key of per-destination port resolution.
    named_id: u32,
    /// Primary family: the family of connections *to* this class.
    v6: bool,
    /// The IP-space class of the endpoint's address per family, or the external class itself.
    ipc: [Option<u32>; 2],
    external: bool,
}

/// A fixed-size set of classes.
struct Bits(Vec<u64>);

impl Bits {
    fn new(n: usize) -> Self {
        Bits(vec![0; n.div_ceil(64)])
    }
    fn set(&mut self, i: u32) {
        self.0[i as usize >> 6] |= 1 << (i & 63);
    }
    fn get(&self, i: u32) -> bool {
        self.0[i as usize >> 6] >> (i & 63) & 1 == 1
    }
    fn or_into(&self, acc: &mut [u64]) {
        for (a, b) in acc.iter_mut().zip(&self.0) {
            *a |= b;
        }
    }
}

fn ones(words: &[u64]) -> impl Iterator<Item = u32> + '_ {
    words.iter().enumerate().flat_map(|(w, &bits)| {
        let mut bits = bits;
        std::iter::from_fn(move || {
            if bits == 0 {
                return None;
            }
            let t = bits.trailing_zeros();
            bits &= bits - 1;
            Some((w as u32) * 64 + t)
        })
    })
}

/// A rule's ports: a NetworkPolicy's `ports`, or a cluster policy's `protocols`/`ports`.
#[derive(Clone, Copy)]
enum RulePorts<'c> {
    Np(&'c [PortRule]),
    Cluster(Option<&'c [ClusterPort]>),
}

impl RulePorts<'_> {
    fn resolve(self, named: &[ContainerPort]) -> PortSet {
        match self {
            RulePorts::Np(ports) => resolve_ports(ports, named),
            RulePorts::Cluster(ports) => resolve_cluster_ports(ports, named),
        }
    }

    fn has_named(self) -> bool {
        match self {
            RulePorts::Np(ports) => ports
                .iter()
                .any(|pr| matches!(pr.port, Some(PortRef::Named(_)))),
            RulePorts::Cluster(ports) => ports
                .into_iter()
                .flatten()
                .any(|p| matches!(p, ClusterPort::Named(_))),
        }
    }
}

struct FlatRule<'c> {
    ports: RulePorts<'c>,
    has_named: bool,
    all_peers: bool,
    /// The port set when it does not depend on the destination (no named ports).
    fixed: Option<PortSetId>,
    /// Bitsets (indexes into `bits`) of admitted peer classes, per family of the
    /// connection; `None` for rules that admit every peer.
    members: Option<[u32; 2]>,
}

/// The rules that apply to one isolated class in one direction.
struct Row {
    /// Ports admitted from/to every peer (rules without `from`/`to`).
    base: PortSetId,
    /// Every-peer rules whose ports are named: resolved per destination (egress only).
    base_named: Vec<u32>,
    /// (rule, ports): ingress rows hold ports resolved on their destination; egress rows
    /// hold `None` for rules with named ports, resolved per destination on lookup.
    rules: Vec<(u32, Option<PortSetId>)>,
    /// The family of connections into the row's class (ingress rows).
    v6: bool,
}

/// The cluster policy rules that apply to one class in one direction, in evaluation order
/// (policies by priority, then name, then kind; rules in order), per tier.
#[derive(Clone, PartialEq, Eq, Hash)]
struct TierRow {
    admin: Vec<(u32, Action)>,
    baseline: Vec<(u32, Action)>,
}

/// Interned port sets, so rows hold small ids and set algebra is memoised.
#[derive(Clone, Default)]
struct PortSets {
    sets: Vec<PortSet>,
    ids: HashMap<PortSet, PortSetId>,
    /// (smaller id, larger id, is union) → result: set algebra is commutative.
    combined: HashMap<(PortSetId, PortSetId, bool), PortSetId>,
    /// (a, b) → a ∖ b.
    differences: HashMap<(PortSetId, PortSetId), PortSetId>,
    /// (rule, named ports id) → resolved ports.
    resolved: HashMap<(u32, u32), PortSetId>,
}

impl PortSets {
    fn new() -> Self {
        let mut p = PortSets::default();
        p.intern(PortSet::none());
        p.intern(PortSet::all());
        p
    }
    fn intern(&mut self, s: PortSet) -> PortSetId {
        if let Some(&id) = self.ids.get(&s) {
            return id;
        }
        let id = PortSetId(self.sets.len() as u32);
        self.ids.insert(s.clone(), id);
        self.sets.push(s);
        id
    }
    fn union(&mut self, a: PortSetId, b: PortSetId) -> PortSetId {
        if a == b || b == NONE || a == ALL {
            return a;
        }
        if a == NONE || b == ALL {
            return b;
        }
        self.combine(a, b, true)
    }
    fn intersect(&mut self, a: PortSetId, b: PortSetId) -> PortSetId {
        if a == b || b == ALL || a == NONE {
            return a;
        }
        if a == ALL || b == NONE {
            return b;
        }
        self.combine(a, b, false)
    }
    /// What `a` has and `b` has not.
    fn difference(&mut self, a: PortSetId, b: PortSetId) -> PortSetId {
        if a == NONE || b == NONE {
            return a;
        }
        if a == b || b == ALL {
            return NONE;
        }
        if let Some(&id) = self.differences.get(&(a, b)) {
            return id;
        }
        let set = self.sets[a.index()].difference(&self.sets[b.index()]);
        let id = self.intern(set);
        self.differences.insert((a, b), id);
        id
    }
    /// The memoised union (`is_union`) or intersection of two interned sets.
    fn combine(&mut self, a: PortSetId, b: PortSetId, is_union: bool) -> PortSetId {
        let key = (a.min(b), a.max(b), is_union);
        if let Some(&id) = self.combined.get(&key) {
            return id;
        }
        let (x, y) = (&self.sets[a.index()], &self.sets[b.index()]);
        let set = if is_union { x.union(y) } else { x.intersect(y) };
        let id = self.intern(set);
        self.combined.insert(key, id);
        id
    }
}

pub struct Index<'c> {
    cluster: &'c Cluster,
    classes: Vec<Class>,
    n_endpoint_classes: usize,
    endpoint_class: Vec<ClassId>,
    ip: IpSpace,
    rules: Vec<FlatRule<'c>>,
    bits: Vec<Bits>,
    rows: Vec<Row>,
    ingress_row: Vec<Option<u32>>,
    egress_row: Vec<Option<u32>>,
    tier_rows: Vec<TierRow>,
    /// Per direction (ingress, egress): each class's tier row, if cluster policies select it.
    tier_row: [Vec<Option<u32>>; 2],
    /// Lookups intern the results of set algebra. Single queries share this one;
    /// `flows()` gives each worker thread a copy and merges them after.
    port_sets: Mutex<PortSets>,
    /// Whether anything in the input is IPv6; if not, IPv6 outside addresses are noise in listings.
    has_v6: bool,
}

/// The flows into one chunk of destinations, with the chunk's number.
type Chunk = (u32, Vec<Flow>);

/// What makes endpoints equivalent: predicates matched, named ports, family, address classes.
type ClassKey<'a> = (&'a Vec<u32>, Vec<ContainerPort>, bool, [Option<u32>; 2]);

/// A selector peer with its namespace made explicit: the unit selectors are evaluated in.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Scope<'c> {
    Namespace(usize),
    Selector(&'c LabelSelector),
}

/// Phase 1: endpoints with the same namespace, labels and hostNetwork are one label group;
/// selectors are evaluated once per group.
struct LabelGroups<'c> {
    /// Each endpoint's group.
    of: Vec<u32>,
    /// (namespace index, labels, hostNetwork) per group; namespace `usize::MAX`: unknown.
    list: Vec<(usize, &'c weir_model::Labels, bool)>,
    /// Non-hostNetwork groups per namespace: what selectors can select.
    in_ns: Vec<Vec<u32>>,
}

impl<'c> LabelGroups<'c> {
    fn of(cluster: &'c Cluster, ns_of: &dyn Fn(&str) -> usize) -> Self {
        let mut ids: HashMap<(usize, &weir_model::Labels, bool), u32> = HashMap::default();
        let mut of = Vec::with_capacity(cluster.endpoints.len());
        let mut list: Vec<(usize, &weir_model::Labels, bool)> = Vec::new();
        for e in &cluster.endpoints {
            let key = (ns_of(&e.namespace), &e.labels, e.host_network);
            let next = list.len() as u32;
            let g = *ids.entry(key).or_insert(next);
            if g == next {
                list.push(key);
            }
            of.push(g);
        }
        let mut in_ns: Vec<Vec<u32>> = vec![Vec::new(); cluster.namespaces.len()];
        for (g, &(ns, _, host)) in list.iter().enumerate() {
            if !host && ns != usize::MAX {
                in_ns[ns].push(g as u32);
            }
        }
        LabelGroups { of, list, in_ns }
    }
}

/// Phase 2: every policy's rules flattened, with the distinct selector predicates and
/// ipBlocks they use, each evaluated once.
struct PolicyRules<'c> {
    rules: Vec<FlatRule<'c>>,
    /// The predicates each label group satisfies (sorted).
    group_preds: Vec<Vec<u32>>,
    /// The rules each predicate is a peer of.
    pred_rules: Vec<Vec<u32>>,
    blocks: Vec<Block>,
    /// The rules each ipBlock is a peer of.
    block_rules: Vec<Vec<u32>>,
    /// Per policy: its target predicate, and its ingress / egress rule ids.
    policy_rules: Vec<(u32, Vec<u32>, Vec<u32>)>,
    /// The policies whose podSelector each predicate is.
    target_policies: Vec<Vec<u32>>,
    /// Per cluster policy: its subject predicate, and its ingress / egress rules with actions.
    cluster_rules: Vec<ClusterRules>,
    /// The cluster policies whose subject each predicate is.
    target_cluster: Vec<Vec<u32>>,
}

type ClusterRules = (u32, Vec<(u32, Action)>, Vec<(u32, Action)>);

impl<'c> PolicyRules<'c> {
    fn flatten(
        cluster: &'c Cluster,
        groups: &LabelGroups<'c>,
        ns_of: &dyn Fn(&str) -> usize,
    ) -> Self {
        let mut ns_selector_cache: HashMap<&LabelSelector, Vec<usize>> = HashMap::default();
        let mut pred_ids: HashMap<(Scope, Option<&LabelSelector>), u32> = HashMap::default();
        let mut group_preds: Vec<Vec<u32>> = vec![Vec::new(); groups.list.len()];
        let mut eval_pred = |scope: Scope<'c>,
                             pods: Option<&'c LabelSelector>,
                             group_preds: &mut Vec<Vec<u32>>|
         -> u32 {
            let next = pred_ids.len() as u32;
            let id = *pred_ids.entry((scope.clone(), pods)).or_insert(next);
            if id != next {
                return id;
            }
            let namespaces: Vec<usize> = match scope {
                Scope::Namespace(ns) => vec![ns],
                Scope::Selector(s) => ns_selector_cache
                    .entry(s)
                    .or_insert_with(|| {
                        cluster
                            .namespaces
                            .iter()
                            .enumerate()
                            .filter(|(_, n)| selector::matches(s, &n.labels))
                            .map(|(i, _)| i)
                            .collect()
                    })
                    .clone(),
            };
            for ns in namespaces {
                if ns == usize::MAX {
                    continue;
                }
                for &g in &groups.in_ns[ns] {
                    if pods.is_none_or(|s| selector::matches(s, groups.list[g as usize].1)) {
                        group_preds[g as usize].push(id);
                    }
                }
            }
            id
        };

        let mut rules: Vec<FlatRule<'c>> = Vec::new();
        let mut pred_rules: Vec<Vec<u32>> = Vec::new();
        let mut blocks: Vec<Block> = Vec::new();
        let mut block_ids: HashMap<Block, u32> = HashMap::default();
        let mut block_rules: Vec<Vec<u32>> = Vec::new();
        let mut add_block = |block: Block, rule: u32| {
            let next = blocks.len() as u32;
            let bid = *block_ids.entry(block.clone()).or_insert(next);
            if bid == next {
                blocks.push(block);
                block_rules.push(Vec::new());
            }
            block_rules[bid as usize].push(rule);
        };
        let mut policy_rules: Vec<(u32, Vec<u32>, Vec<u32>)> = Vec::new();
        for p in &cluster.policies {
            let ns = ns_of(&p.namespace);
            let target = eval_pred(
                Scope::Namespace(ns),
                Some(&p.pod_selector),
                &mut group_preds,
            );
            let mut per_dir = [Vec::new(), Vec::new()];
            for (d, dir) in [Direction::Ingress, Direction::Egress]
                .into_iter()
                .enumerate()
            {
                if !p.isolates(dir) {
                    continue; // rules of a direction the policy does not isolate are ignored
                }
                for r in p.rules(dir) {
                    let id = rules.len() as u32;
                    let ports = RulePorts::Np(&r.ports);
                    rules.push(FlatRule {
                        ports,
                        has_named: ports.has_named(),
                        all_peers: r.peers.is_empty(),
                        fixed: None,
                        members: None,
                    });
                    for peer in &r.peers {
                        match peer {
                            Peer::Pods { namespaces, pods } => {
                                let scope = match namespaces {
                                    NamespaceScope::PolicyNamespace => Scope::Namespace(ns),
                                    NamespaceScope::Selector(s) => Scope::Selector(s),
                                };
                                let pid =
                                    eval_pred(scope, pods.as_ref(), &mut group_preds) as usize;
                                if pred_rules.len() <= pid {
                                    pred_rules.resize(pid + 1, Vec::new());
                                }
                                pred_rules[pid].push(id);
                            }
                            Peer::IpBlock { cidr, except } => {
                                add_block(
                                    Block {
                                        cidr: *cidr,
                                        except: except.clone(),
                                    },
                                    id,
                                );
                            }
                        }
                    }
                    per_dir[d].push(id);
                }
            }
            let [ing, eg] = per_dir;
            policy_rules.push((target, ing, eg));
        }
        let mut cluster_rules: Vec<ClusterRules> = Vec::new();
        for p in &cluster.cluster_policies {
            let target = eval_pred(
                Scope::Selector(&p.subject.namespaces),
                p.subject.pods.as_ref(),
                &mut group_preds,
            );
            let mut per_dir = [Vec::new(), Vec::new()];
            for (d, dir) in [Direction::Ingress, Direction::Egress]
                .into_iter()
                .enumerate()
            {
                for r in p.rules(dir) {
                    let id = rules.len() as u32;
                    let ports = RulePorts::Cluster(r.ports.as_deref());
                    rules.push(FlatRule {
                        ports,
                        has_named: ports.has_named(),
                        all_peers: false,
                        fixed: None,
                        members: None,
                    });
                    for peer in &r.peers {
                        match peer {
                            ClusterPeer::Pods(sel) => {
                                let pid = eval_pred(
                                    Scope::Selector(&sel.namespaces),
                                    sel.pods.as_ref(),
                                    &mut group_preds,
                                ) as usize;
                                if pred_rules.len() <= pid {
                                    pred_rules.resize(pid + 1, Vec::new());
                                }
                                pred_rules[pid].push(id);
                            }
                            ClusterPeer::Networks(nets) => {
                                for net in nets {
                                    add_block(
                                        Block {
                                            cidr: *net,
                                            except: Vec::new(),
                                        },
                                        id,
                                    );
                                }
                            }
                            ClusterPeer::Nodes(sel) => {
                                for node in &cluster.nodes {
                                    if selector::matches(sel, &node.labels) {
                                        for addr in &node.addresses {
                                            add_block(
                                                Block {
                                                    cidr: IpNet::from(*addr),
                                                    except: Vec::new(),
                                                },
                                                id,
                                            );
                                        }
                                    }
                                }
                            }
                            // Not resolvable here: the rule matches no traffic.
                            ClusterPeer::DomainNames(_) => {}
                        }
                    }
                    per_dir[d].push((id, r.action));
                }
            }
            let [ing, eg] = per_dir;
            cluster_rules.push((target, ing, eg));
        }
        let n_preds = pred_ids.len();
        pred_rules.resize(n_preds, Vec::new());
        let mut target_policies: Vec<Vec<u32>> = vec![Vec::new(); n_preds];
        for (pi, (t, _, _)) in policy_rules.iter().enumerate() {
            target_policies[*t as usize].push(pi as u32);
        }
        let mut target_cluster: Vec<Vec<u32>> = vec![Vec::new(); n_preds];
        for (pi, (t, _, _)) in cluster_rules.iter().enumerate() {
            target_cluster[*t as usize].push(pi as u32);
        }
        for preds in group_preds.iter_mut() {
            preds.sort_unstable();
            preds.dedup();
        }
        PolicyRules {
            rules,
            group_preds,
            pred_rules,
            blocks,
            block_rules,
            policy_rules,
            target_policies,
            cluster_rules,
            target_cluster,
        }
    }
}

/// Phase 3: endpoints with the same predicates, named ports, family and address classes are
/// one class; then one class per IP-space class (outside addresses).
struct Classes {
    list: Vec<Class>,
    /// A label group of each endpoint class's members (they all satisfy the same predicates).
    group: Vec<u32>,
    endpoint_class: Vec<ClassId>,
    n_endpoint_classes: usize,
}

impl Classes {
    fn of(
        cluster: &Cluster,
        options: Options,
        groups: &LabelGroups,
        group_preds: &[Vec<u32>],
        ip: &IpSpace,
    ) -> Self {
        let mut list: Vec<Class> = Vec::new();
        let mut group: Vec<u32> = Vec::new();
        let mut ids: HashMap<ClassKey, u32> = HashMap::default();
        let mut endpoint_class = Vec::with_capacity(cluster.endpoints.len());
        // Named-port lists, interned; 0 is the empty list (outside addresses).
        let mut named_ids: HashMap<Vec<ContainerPort>, u32> = HashMap::from_iter([(Vec::new(), 0)]);
        for (i, e) in cluster.endpoints.iter().enumerate() {
            let named: Vec<ContainerPort> = e
                .ports
                .iter()
                .filter(|p| p.name.is_some())
                .cloned()
                .collect();
            let ipc = [false, true].map(|v6| {
                options
                    .ipblock_matches_pods
                    .then(|| e.ip_of_family(v6))
                    .flatten()
                    .map(|addr| ip.class_of(&addr))
            });
            let v6 = e.primary_is_v6();
            let g = groups.of[i];
            let preds = &group_preds[g as usize];
            let next = list.len() as u32;
            let c = *ids.entry((preds, named.clone(), v6, ipc)).or_insert(next);
            if c == next {
                let next_named = named_ids.len() as u32;
                let named_id = *named_ids.entry(named.clone()).or_insert(next_named);
                list.push(Class {
                    members: Vec::new(),
                    named,
                    named_id,
                    v6,
                    ipc,
                    external: false,
                });
                group.push(g);
            }
            list[c as usize].members.push(i);
            endpoint_class.push(c);
        }
        let n_endpoint_classes = list.len();
        for (k, ipclass) in ip.classes.iter().enumerate() {
            let mut ipc = [None, None];
            ipc[ipclass.v6 as usize] = Some(k as u32);
            list.push(Class {
                members: Vec::new(),
                named: Vec::new(),
                named_id: 0,
                v6: ipclass.v6,
                ipc,
                external: true,
            });
        }
        Classes {
            list,
            group,
            endpoint_class,
            n_endpoint_classes,
        }
    }
}

/// Phase 4: which peer classes each rule admits, per family of the connection, as bitsets.
fn peer_bitsets(
    rules: &mut [FlatRule],
    classes: &Classes,
    policies: &PolicyRules,
    ip: &IpSpace,
) -> Vec<Bits> {
    let n_classes = classes.list.len();
    let mut bits: Vec<Bits> = Vec::new();
    let mut rule_has_block = vec![false; rules.len()];
    for list in &policies.block_rules {
        for &r in list {
            rule_has_block[r as usize] = true;
        }
    }
    for (r, rule) in rules.iter_mut().enumerate() {
        if rule.all_peers {
            continue;
        }
        let first = bits.len() as u32;
        bits.push(Bits::new(n_classes));
        rule.members = Some(if rule_has_block[r] {
            bits.push(Bits::new(n_classes));
            [first, first + 1]
        } else {
            [first, first]
        });
    }
    for (c, class) in classes.list.iter().enumerate() {
        if !class.external {
            for &p in &policies.group_preds[classes.group[c] as usize] {
                for &r in &policies.pred_rules[p as usize] {
                    let [m0, m1] = rules[r as usize].members.expect("peer rules have bitsets");
                    bits[m0 as usize].set(c as u32);
                    bits[m1 as usize].set(c as u32);
                }
            }
        }
        for (fam, ipc) in class.ipc.iter().enumerate() {
            if let Some(k) = ipc {
                for &b in &ip.classes[*k as usize].blocks {
                    for &r in &policies.block_rules[b as usize] {
                        let m = rules[r as usize].members.expect("peer rules have bitsets");
                        bits[m[fam] as usize].set(c as u32);
                    }
                }
            }
        }
    }
    bits
}

impl<'c> Index<'c> {
    pub fn build(cluster: &'c Cluster, options: Options) -> Index<'c> {
        let ns_index: HashMap<&str, usize> = cluster
            .namespaces
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.as_str(), i))
            .collect();
        let ns_of = |name: &str| ns_index.get(name).copied().unwrap_or(usize::MAX);
        let groups = LabelGroups::of(cluster, &ns_of);
        let mut policies = PolicyRules::flatten(cluster, &groups, &ns_of);
        let ip = IpSpace::new(std::mem::take(&mut policies.blocks));
        let classes = Classes::of(cluster, options, &groups, &policies.group_preds, &ip);
        let mut rules = std::mem::take(&mut policies.rules);
        let bits = peer_bitsets(&mut rules, &classes, &policies, &ip);
        let has_v6 = cluster
            .endpoints
            .iter()
            .any(|e| e.ips.iter().any(|ip| ip.is_ipv6()))
            || ip.blocks.iter().any(|b| b.cidr.addr().is_ipv6());
        let mut index = Index {
            cluster,
            classes: classes.list,
            n_endpoint_classes: classes.n_endpoint_classes,
            endpoint_class: classes.endpoint_class,
            ip,
            rules,
            bits,
            rows: Vec::new(),
            ingress_row: Vec::new(),
            egress_row: Vec::new(),
            tier_rows: Vec::new(),
            tier_row: [Vec::new(), Vec::new()],
            port_sets: Mutex::new(PortSets::new()),
            has_v6,
        };
        index.intern_fixed_ports();
        index.build_rows(&classes.group, &policies);
        index.build_tier_rows(&classes.group, &policies);
        index
    }

    /// Rules without named ports admit the same ports everywhere: intern them once.
    fn intern_fixed_ports(&mut self) {
        for r in 0..self.rules.len() {
            if !self.rules[r].has_named {
                let set = self.rules[r].ports.resolve(&[]);
                self.rules[r].fixed = Some(self.sets_mut().intern(set));
            }
        }
    }

    /// Phase 5: rows, one per distinct (rules, family, named ports) for ingress and per rule
    /// list for egress, shared by every class isolated alike.
    fn build_rows(&mut self, class_group: &[u32], policies: &PolicyRules) {
        let mut ingress_keys: HashMap<(Vec<u32>, bool, u32), u32> = HashMap::default();
        let mut egress_keys: HashMap<Vec<u32>, u32> = HashMap::default();
        let mut ingress_row = vec![None; self.classes.len()];
        let mut egress_row = vec![None; self.classes.len()];
        for c in 0..self.n_endpoint_classes {
            let mut isolated = [false, false];
            let mut dir_rules = [Vec::new(), Vec::new()];
            for &p in &policies.group_preds[class_group[c] as usize] {
                for &pi in &policies.target_policies[p as usize] {
                    let policy = &self.cluster.policies[pi as usize];
                    let (_, ing, eg) = &policies.policy_rules[pi as usize];
                    isolated[0] |= policy.isolates_ingress;
                    isolated[1] |= policy.isolates_egress;
                    dir_rules[0].extend_from_slice(ing);
                    dir_rules[1].extend_from_slice(eg);
                }
            }
            for r in dir_rules.iter_mut() {
                r.sort_unstable();
                r.dedup();
            }
            let [ing, eg] = dir_rules;
            if isolated[0] {
                let class = &self.classes[c];
                let named = if ing.iter().any(|&r| self.rules[r as usize].has_named) {
                    class.named_id
                } else {
                    0
                };
                let key = (ing, class.v6, named);
                let row = match ingress_keys.get(&key) {
                    Some(&row) => row,
                    None => {
                        let row = self.ingress_row_for(&key.0, c as u32);
                        ingress_keys.insert(key, row);
                        row
                    }
                };
                ingress_row[c] = Some(row);
            }
            if isolated[1] {
                let row = match egress_keys.get(&eg) {
                    Some(&row) => row,
                    None => {
                        let row = self.egress_row_for(&eg);
                        egress_keys.insert(eg, row);
                        row
                    }
                };
                egress_row[c] = Some(row);
            }
        }
        self.ingress_row = ingress_row;
        self.egress_row = egress_row;
    }

    /// Phase 6: tier rows, one per distinct ordered list of cluster policy rules, for the
    /// classes that cluster policies select.
    fn build_tier_rows(&mut self, class_group: &[u32], policies: &PolicyRules) {
        let cluster = self.cluster;
        let mut keys: HashMap<TierRow, u32> = HashMap::default();
        let mut tier_row = [
            vec![None; self.classes.len()],
            vec![None; self.classes.len()],
        ];
        for c in 0..self.n_endpoint_classes {
            let mut selecting: Vec<u32> = policies.group_preds[class_group[c] as usize]
                .iter()
                .flat_map(|&p| policies.target_cluster[p as usize].iter().copied())
                .collect();
            if selecting.is_empty() {
                continue;
            }
            // Each policy once: its subject is one predicate, and a group's are distinct.
            selecting.sort_unstable_by_key(|&pi| cluster.cluster_policies[pi as usize].order_key());
            for (d, row_of) in tier_row.iter_mut().enumerate() {
                let mut row = TierRow {
                    admin: Vec::new(),
                    baseline: Vec::new(),
                };
                for &pi in &selecting {
                    let (_, ing, eg) = &policies.cluster_rules[pi as usize];
                    let list = if d == 0 { ing } else { eg };
                    match cluster.cluster_policies[pi as usize].tier {
                        Tier::Admin => row.admin.extend_from_slice(list),
                        Tier::Baseline => row.baseline.extend_from_slice(list),
                    }
                }
                if row.admin.is_empty() && row.baseline.is_empty() {
                    continue;
                }
                let next = self.tier_rows.len() as u32;
                let id = *keys.entry(row.clone()).or_insert(next);
                if id == next {
                    self.tier_rows.push(row);
                }
                row_of[c] = Some(id);
            }
        }
        self.tier_row = tier_row;
    }

    /// The ports allowed in one direction at a class that cluster policies select: the
    /// Admin tier's first matching rules, then what NetworkPolicies allow (`np`: `None` when
    /// none isolates the class), else the Baseline tier's, else everything. `peer` is the
    /// far side, `dst` the destination (named ports resolve there), `fam` the family.
    fn tiered(
        &self,
        sets: &mut PortSets,
        row: u32,
        fam: usize,
        peer: ClassId,
        dst: ClassId,
        np: Option<PortSetId>,
    ) -> PortSetId {
        let row = &self.tier_rows[row as usize];
        let (accepted, passed, undecided) = self.walk(sets, &row.admin, fam, peer, dst, ALL);
        let rest = sets.union(undecided, passed);
        if rest == NONE {
            return accepted;
        }
        if let Some(np) = np {
            let ps = sets.intersect(rest, np);
            return sets.union(accepted, ps);
        }
        // The Baseline tier; what it passes or leaves undecided reaches the default: allowed.
        let (b_accepted, b_passed, b_rest) = self.walk(sets, &row.baseline, fam, peer, dst, rest);
        let allowed = sets.union(accepted, b_accepted);
        let allowed = sets.union(allowed, b_passed);
        sets.union(allowed, b_rest)
    }

    /// One tier's first-match walk over the `undecided` ports: what its rules accept, what
    /// they pass, and what none matches (denied ports are in none of the three).
    fn walk(
        &self,
        sets: &mut PortSets,
        rules: &[(u32, Action)],
        fam: usize,
        peer: ClassId,
        dst: ClassId,
        mut undecided: PortSetId,
    ) -> (PortSetId, PortSetId, PortSetId) {
        let (mut accepted, mut passed) = (NONE, NONE);
        for &(r, action) in rules {
            if undecided == NONE {
                break;
            }
            if !self.admits(r, fam, peer) {
                continue;
            }
            let ps = self.resolve(sets, r, dst);
            let ps = sets.intersect(ps, undecided);
            match action {
                Action::Accept => accepted = sets.union(accepted, ps),
                Action::Pass => passed = sets.union(passed, ps),
                Action::Deny => {}
            }
            undecided = sets.difference(undecided, ps);
        }
        (accepted, passed, undecided)
    }

    /// The ports rule `rule` admits at destination class `dst`.
    fn sets_mut(&mut self) -> &mut PortSets {
        self.port_sets
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The shared port sets (for single queries).
    fn sets(&self) -> std::sync::MutexGuard<'_, PortSets> {
        self.port_sets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn resolve(&self, sets: &mut PortSets, rule: u32, dst: ClassId) -> PortSetId {
        let r = &self.rules[rule as usize];
        if let Some(fixed) = r.fixed {
            return fixed;
        }
        let class = &self.classes[dst as usize];
        if let Some(&id) = sets.resolved.get(&(rule, class.named_id)) {
            return id;
        }
        let id = sets.intern(r.ports.resolve(&class.named));
        sets.resolved.insert((rule, class.named_id), id);
        id
    }

    /// Sources admitted into destination class `dst` by ingress rules `rules`.
    fn ingress_row_for(&mut self, rules: &[u32], dst: ClassId) -> u32 {
        let mut sets = std::mem::take(self.sets_mut());
        let mut row = Row {
            base: NONE,
            base_named: Vec::new(),
            rules: Vec::new(),
            v6: self.classes[dst as usize].v6,
        };
        for &r in rules {
            let ps = self.resolve(&mut sets, r, dst);
            if ps == NONE {
                continue;
            }
            if self.rules[r as usize].all_peers {
                row.base = sets.union(row.base, ps);
            } else {
                row.rules.push((r, Some(ps)));
            }
        }
        *self.sets_mut() = sets;
        self.rows.push(row);
        (self.rows.len() - 1) as u32
    }

    /// Destinations a source may reach under egress rules `rules`.
    fn egress_row_for(&mut self, rules: &[u32]) -> u32 {
        let mut row = Row {
            base: NONE,
            base_named: Vec::new(),
            rules: Vec::new(),
            v6: false,
        };
        for &r in rules {
            let rule = &self.rules[r as usize];
            match (rule.all_peers, rule.fixed) {
                (true, Some(ps)) => row.base = self.sets_mut().union(row.base, ps),
                (true, None) => row.base_named.push(r),
                (false, fixed) => row.rules.push((r, fixed)),
            }
        }
        self.rows.push(row);
        (self.rows.len() - 1) as u32
    }

    /// Ports the ingress row admits from class `src`.
    fn ingress_lookup(&self, sets: &mut PortSets, row: u32, src: ClassId) -> PortSetId {
        let row = &self.rows[row as usize];
        let fam = row.v6 as usize;
        let mut acc = row.base;
        for &(r, ps) in &row.rules {
            if acc == ALL {
                break;
            }
            if self.admits(r, fam, src) {
                let ps = ps.expect("ingress rows hold resolved ports");
                acc = sets.union(acc, ps);
            }
        }
        acc
    }

    /// Whether peer rule `r` admits class `c` in family `fam`.
    fn admits(&self, r: u32, fam: usize, c: ClassId) -> bool {
        let m = self.rules[r as usize]
            .members
            .expect("row rules are peer rules");
        self.bits[m[fam] as usize].get(c)
    }

    /// Ports the egress row admits to class `dst`.
    fn egress_lookup(&self, sets: &mut PortSets, row: u32, dst: ClassId) -> PortSetId {
        let row = &self.rows[row as usize];
        let fam = self.classes[dst as usize].v6 as usize;
        let mut acc = row.base;
        for &r in &row.base_named {
            let ps = self.resolve(sets, r, dst);
            acc = sets.union(acc, ps);
        }
        for &(r, ps) in &row.rules {
            if acc == ALL {
                break;
            }
            if self.admits(r, fam, dst) {
                let ps = ps.unwrap_or_else(|| self.resolve(sets, r, dst));
                acc = sets.union(acc, ps);
            }
        }
        acc
    }

    /// Ports allowed from class `a` to class `b` (two distinct endpoints, or an address), interned.
    fn pair_id(&self, sets: &mut PortSets, a: ClassId, b: ClassId) -> PortSetId {
        let (ca, cb) = (&self.classes[a as usize], &self.classes[b as usize]);
        if ca.external && (cb.external || ca.v6 != cb.v6) {
            return NONE;
        }
        let np_in = self.ingress_row[b as usize].map(|row| self.ingress_lookup(sets, row, a));
        let ingress = match self.tier_row[0][b as usize] {
            None => np_in.unwrap_or(ALL),
            Some(t) => self.tiered(sets, t, cb.v6 as usize, a, b, np_in),
        };
        if ingress == NONE {
            return NONE;
        }
        let np_out = self.egress_row[a as usize].map(|row| self.egress_lookup(sets, row, b));
        let egress = match self.tier_row[1][a as usize] {
            None => np_out.unwrap_or(ALL),
            Some(t) => self.tiered(sets, t, cb.v6 as usize, b, b, np_out),
        };
        sets.intersect(ingress, egress)
    }

    pub fn pair(&self, a: ClassId, b: ClassId) -> PortSet {
        let mut sets = self.sets();
        let id = self.pair_id(&mut sets, a, b);
        sets.sets[id.index()].clone()
    }

    pub fn class_of(&self, node: Side) -> Option<ClassId> {
        match node {
            Side::Endpoint(i) => self.endpoint_class.get(i).copied(),
            Side::Address(ip) => Some(self.n_endpoint_classes as u32 + self.ip.class_of(&ip)),
        }
    }

    pub fn endpoint_class(&self, endpoint: usize) -> ClassId {
        self.endpoint_class[endpoint]
    }

    pub fn members(&self, class: ClassId) -> &[usize] {
        &self.classes[class as usize].members
    }

    pub fn cidrs(&self, class: ClassId) -> Option<Vec<IpNet>> {
        let c = &self.classes[class as usize];
        c.external
            .then(|| self.ip.classes[class as usize - self.n_endpoint_classes].cidrs())
    }

    /// Candidate sources for a destination: the union of its rules' peers when
    /// nothing is admitted from everyone, every class otherwise.
    fn sources_for(&self, b: ClassId, scratch: &mut Vec<u64>) -> Option<()> {
        if self.tier_row[0][b as usize].is_some() {
            return None; // an Admin or Baseline rule may admit anyone
        }
        let row = &self.rows[self.ingress_row[b as usize]? as usize];
        if row.base != NONE {
            return None;
        }
        scratch.clear();
        scratch.resize(self.classes.len().div_ceil(64), 0);
        for &(r, _) in &row.rules {
            let m = self.rules[r as usize]
                .members
                .expect("row rules are peer rules");
            self.bits[m[row.v6 as usize] as usize].or_into(scratch);
        }
        Some(())
    }

    /// Every allowed class pair. Destinations are cut into chunks that worker threads
    /// (one per core) take in turn, each with its own copy of the port-set interner;
    /// the copies' ids are mapped into one after, and chunks keep destination order.
    pub fn flows(&self) -> Flows {
        use std::sync::atomic::{AtomicU32, Ordering};
        let n = self.classes.len() as u32;
        let threads = std::thread::available_parallelism()
            .map_or(1, |t| t.get())
            .clamp(1, 8) as u32;
        let threads = if n < 256 { 1 } else { threads };
        let chunk = (n / (threads * 16)).max(16);
        let chunks = n.div_ceil(chunk);
        let next = AtomicU32::new(0);
        let base = self.sets().clone();
        let work = |mut sets: PortSets| {
            let mut done: Vec<Chunk> = Vec::new();
            loop {
                let c = next.fetch_add(1, Ordering::Relaxed);
                if c >= chunks {
                    return (done, sets);
                }
                let (list, back) = self.flows_in((c * chunk, ((c + 1) * chunk).min(n)), sets);
                sets = back;
                done.push((c, list));
            }
        };
        let parts: Vec<(Vec<Chunk>, PortSets)> = if threads < 2 {
            vec![work(base.clone())]
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = (0..threads)
                    .map(|_| {
                        let sets = base.clone();
                        scope.spawn(|| work(sets))
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join()
                            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                    })
                    .collect()
            })
        };
        let mut parts = parts.into_iter();
        let (first, mut sets) = parts.next().unwrap_or_else(|| (Vec::new(), base));
        let mut ordered: Vec<Chunk> = first;
        for (done, theirs) in parts {
            // Their ids → ours, interned on first use.
            let mut map: Vec<Option<PortSetId>> = vec![None; theirs.sets.len()];
            for (c, mut flows) in done {
                for f in &mut flows {
                    let theirs_id = f.ports;
                    f.ports = *map[theirs_id.index()]
                        .get_or_insert_with(|| sets.intern(theirs.sets[theirs_id.index()].clone()));
                }
                ordered.push((c, flows));
            }
        }
        ordered.sort_unstable_by_key(|(c, _)| *c);
        let list = ordered.into_iter().flat_map(|(_, flows)| flows).collect();
        Flows {
            list,
            sets: sets.sets,
        }
    }

    /// Allowed pairs into destinations `lo..hi`.
    fn flows_in(&self, (lo, hi): (u32, u32), mut sets: PortSets) -> (Vec<Flow>, PortSets) {
        let listed = |c: u32| {
            let class = &self.classes[c as usize];
            !(class.external && class.v6 && !self.has_v6)
        };
        let mut list = Vec::new();
        let mut scratch = Vec::new();
        let n = self.classes.len() as u32;
        for b in (lo..hi).filter(|&b| listed(b)) {
            let mut visit = |a: u32| {
                if !listed(a)
                    || (self.classes[a as usize].external && self.classes[b as usize].external)
                {
                    return;
                }
                if a == b && self.classes[a as usize].members.len() < 2 {
                    return; // only self-traffic, which is not a flow between endpoints
                }
                let ports = self.pair_id(&mut sets, a, b);
                if ports != NONE {
                    list.push(Flow {
                        src: a,
                        dst: b,
                        ports,
                    });
                }
            };
            match self.sources_for(b, &mut scratch) {
                Some(()) => ones(&scratch).for_each(&mut visit),
                None => (0..n).for_each(&mut visit),
            }
        }
        (list, sets)
    }

    pub fn stats(&self) -> Stats {
        Stats {
            namespaces: self.cluster.namespaces.len(),
            endpoints: self.cluster.endpoints.len(),
            policies: self.cluster.policies.len(),
            rules: self.rules.len(),
            endpoint_classes: self.n_endpoint_classes,
            external_classes: self.classes.len() - self.n_endpoint_classes,
            ingress_isolated_classes: self.ingress_row.iter().filter(|r| r.is_some()).count(),
            egress_isolated_classes: self.egress_row.iter().filter(|r| r.is_some()).count(),
            rows: self.rows.len(),
            row_rules: self.rows.iter().map(|r| r.rules.len()).sum(),
            port_sets: self.sets().sets.len(),
        }
    }
}
