//! The scalable evaluator. Endpoints that every selector, ipBlock and named port
//! treats alike are one class; outside addresses are classes of the IP space.
//! For each isolated destination (ingress) and source (egress) a sparse *row*
//! maps the peer classes its rules admit to the ports they admit; a verdict is
//! two row lookups and an intersection.

use std::collections::HashMap;

use ipnet::IpNet;
use serde::Serialize;
use weir_model::{
    Cluster, ContainerPort, Direction, LabelSelector, NamespaceScope, Peer, PortRule,
};

use crate::ipspace::{Block, IpSpace};
use crate::ports::{resolve_ports, PortSet};
use crate::{selector, Node, Options};

/// Index of a class: endpoint classes first, then one per IP-space class.
pub type ClassId = u32;

const NONE: u32 = 0;
const ALL: u32 = 1;

/// An allowed class pair and what it allows.
#[derive(Clone, Debug)]
pub struct Flow {
    pub src: ClassId,
    pub dst: ClassId,
    pub ports: PortSet,
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
    pub row_entries: usize,
    pub port_sets: usize,
}

struct Class {
    members: Vec<usize>,
    /// Named containerPorts: all that named-port resolution looks at.
    named: Vec<ContainerPort>,
    /// Primary family: the family of connections *to* this class.
    v6: bool,
    /// The IP-space class of the endpoint's address per family, or the external class itself.
    ipc: [Option<u32>; 2],
    external: bool,
}

/// Peer classes a rule admits → ports. Sorted by class.
struct Row {
    base: u32,
    /// Rules that admit every peer but whose ports are named (resolved per destination).
    base_named: Vec<u32>,
    entries: Vec<(ClassId, u32)>,
}

struct FlatRule<'c> {
    ports: &'c [PortRule],
    has_named: bool,
    all_peers: bool,
}

/// Interned port sets, so rows hold small ids and unions are memoised.
#[derive(Default)]
struct PortSets {
    sets: Vec<PortSet>,
    ids: HashMap<PortSet, u32>,
    unions: HashMap<(u32, u32), u32>,
}

impl PortSets {
    fn new() -> Self {
        let mut p = PortSets::default();
        p.intern(PortSet::none());
        p.intern(PortSet::all());
        p
    }
    fn intern(&mut self, s: PortSet) -> u32 {
        if let Some(&id) = self.ids.get(&s) {
            return id;
        }
        let id = self.sets.len() as u32;
        self.ids.insert(s.clone(), id);
        self.sets.push(s);
        id
    }
    fn union(&mut self, a: u32, b: u32) -> u32 {
        if a == b || b == NONE || a == ALL {
            return a;
        }
        if a == NONE || b == ALL {
            return b;
        }
        let key = (a.min(b), a.max(b));
        if let Some(&u) = self.unions.get(&key) {
            return u;
        }
        let u = self.sets[a as usize].union(&self.sets[b as usize]);
        let id = self.intern(u);
        self.unions.insert(key, id);
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
    rows: Vec<Row>,
    ingress_row: Vec<Option<u32>>,
    egress_row: Vec<Option<u32>>,
    port_sets: PortSets,
    /// Whether anything in the input is IPv6; if not, IPv6 outside addresses are noise in listings.
    has_v6: bool,
}

/// What makes endpoints equivalent: predicates matched, named ports, family, address classes.
type ClassKey<'a> = (&'a Vec<u32>, Vec<ContainerPort>, bool, [Option<u32>; 2]);

/// A selector peer with its namespace made explicit: the unit selectors are evaluated in.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Scope<'c> {
    Namespace(usize),
    Selector(&'c LabelSelector),
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

        // 1. Label groups: endpoints with the same namespace, labels and hostNetwork.
        let mut group_ids: HashMap<(usize, &weir_model::Labels, bool), u32> = HashMap::new();
        let mut group_of = Vec::with_capacity(cluster.endpoints.len());
        let mut groups: Vec<(usize, &weir_model::Labels, bool)> = Vec::new();
        for e in &cluster.endpoints {
            let key = (ns_of(&e.namespace), &e.labels, e.host_network);
            let next = groups.len() as u32;
            let g = *group_ids.entry(key).or_insert(next);
            if g == next {
                groups.push(key);
            }
            group_of.push(g);
        }
        let mut groups_in_ns: Vec<Vec<u32>> = vec![Vec::new(); cluster.namespaces.len()];
        for (g, &(ns, _, host)) in groups.iter().enumerate() {
            if !host && ns != usize::MAX {
                groups_in_ns[ns].push(g as u32);
            }
        }

        // 2. Distinct selector predicates and ipBlocks, evaluated once each.
        let mut ns_selector_cache: HashMap<&LabelSelector, Vec<usize>> = HashMap::new();
        let mut pred_ids: HashMap<(Scope, Option<&LabelSelector>), u32> = HashMap::new();
        let mut group_preds: Vec<Vec<u32>> = vec![Vec::new(); groups.len()];
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
                for &g in &groups_in_ns[ns] {
                    if pods.is_none_or(|s| selector::matches(s, groups[g as usize].1)) {
                        group_preds[g as usize].push(id);
                    }
                }
            }
            id
        };

        let mut rules: Vec<FlatRule<'c>> = Vec::new();
        let mut pred_rules: Vec<Vec<u32>> = Vec::new();
        let mut blocks: Vec<Block> = Vec::new();
        let mut block_ids: HashMap<Block, u32> = HashMap::new();
        let mut block_rules: Vec<Vec<u32>> = Vec::new();
        // Per policy: its target predicate, and its ingress / egress rule ids.
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
                    rules.push(FlatRule {
                        ports: &r.ports,
                        has_named: r
                            .ports
                            .iter()
                            .any(|pr| matches!(pr.port, Some(weir_model::PortRef::Named(_)))),
                        all_peers: r.peers.is_empty(),
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
                                let block = Block {
                                    cidr: *cidr,
                                    except: except.clone(),
                                };
                                let next = blocks.len() as u32;
                                let bid = *block_ids.entry(block.clone()).or_insert(next);
                                if bid == next {
                                    blocks.push(block);
                                    block_rules.push(Vec::new());
                                }
                                block_rules[bid as usize].push(id);
                            }
                        }
                    }
                    per_dir[d].push(id);
                }
            }
            let [ing, eg] = per_dir;
            policy_rules.push((target, ing, eg));
        }
        let n_preds = pred_ids.len();
        pred_rules.resize(n_preds, Vec::new());
        let mut target_policies: Vec<Vec<u32>> = vec![Vec::new(); n_preds];
        for (pi, (t, _, _)) in policy_rules.iter().enumerate() {
            target_policies[*t as usize].push(pi as u32);
        }
        let ip = IpSpace::new(blocks);

        // 3. Endpoint classes: same predicates, named ports and address classes.
        let mut classes: Vec<Class> = Vec::new();
        let mut class_preds: Vec<&Vec<u32>> = Vec::new();
        let mut class_ids: HashMap<ClassKey, u32> = HashMap::new();
        for preds in group_preds.iter_mut() {
            preds.sort_unstable();
            preds.dedup();
        }
        let mut endpoint_class = Vec::with_capacity(cluster.endpoints.len());
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
            let preds = &group_preds[group_of[i] as usize];
            let next = classes.len() as u32;
            let c = *class_ids
                .entry((preds, named.clone(), v6, ipc))
                .or_insert(next);
            if c == next {
                classes.push(Class {
                    members: Vec::new(),
                    named,
                    v6,
                    ipc,
                    external: false,
                });
                class_preds.push(preds);
            }
            classes[c as usize].members.push(i);
            endpoint_class.push(c);
        }
        let n_endpoint_classes = classes.len();
        for (k, ipclass) in ip.classes.iter().enumerate() {
            let mut ipc = [None, None];
            ipc[ipclass.v6 as usize] = Some(k as u32);
            classes.push(Class {
                members: Vec::new(),
                named: Vec::new(),
                v6: ipclass.v6,
                ipc,
                external: true,
            });
        }

        // 4. Which peer classes each rule admits, per family of the connection.
        let mut members: Vec<[Vec<ClassId>; 2]> = vec![[Vec::new(), Vec::new()]; rules.len()];
        for (c, class) in classes.iter().enumerate() {
            if !class.external {
                for &p in class_preds[c] {
                    for &r in &pred_rules[p as usize] {
                        members[r as usize][0].push(c as u32);
                        members[r as usize][1].push(c as u32);
                    }
                }
            }
            for (fam, ipc) in class.ipc.iter().enumerate() {
                if let Some(k) = ipc {
                    for &b in &ip.classes[*k as usize].blocks {
                        for &r in &block_rules[b as usize] {
                            members[r as usize][fam].push(c as u32);
                        }
                    }
                }
            }
        }
        for m in members.iter_mut().flatten() {
            m.sort_unstable();
            m.dedup();
        }

        // 5. Rows: one per distinct (rules, family, named ports) for ingress, per rule list for egress.
        let mut index = Index {
            cluster,
            classes,
            n_endpoint_classes,
            endpoint_class,
            ip,
            rules,
            rows: Vec::new(),
            ingress_row: Vec::new(),
            egress_row: Vec::new(),
            port_sets: PortSets::new(),
            has_v6: false,
        };
        index.has_v6 = cluster
            .endpoints
            .iter()
            .any(|e| e.ips.iter().any(|ip| ip.is_ipv6()))
            || index.ip.blocks.iter().any(|b| b.cidr.addr().is_ipv6());
        let mut ingress_keys: HashMap<(Vec<u32>, bool, Vec<ContainerPort>), u32> = HashMap::new();
        let mut egress_keys: HashMap<Vec<u32>, u32> = HashMap::new();
        let mut ingress_row = vec![None; index.classes.len()];
        let mut egress_row = vec![None; index.classes.len()];
        for c in 0..n_endpoint_classes {
            let mut isolated = [false, false];
            let mut dir_rules = [Vec::new(), Vec::new()];
            for &p in class_preds[c] {
                for &pi in &target_policies[p as usize] {
                    let policy = &cluster.policies[pi as usize];
                    let (_, ing, eg) = &policy_rules[pi as usize];
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
                let class = &index.classes[c];
                let named = if ing.iter().any(|&r| index.rules[r as usize].has_named) {
                    class.named.clone()
                } else {
                    Vec::new()
                };
                let key = (ing, class.v6, named);
                let row = match ingress_keys.get(&key) {
                    Some(&row) => row,
                    None => {
                        let row = index.ingress_row_for(&key.0, c as u32, &members);
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
                        let row = index.egress_row_for(&eg, &members);
                        egress_keys.insert(eg, row);
                        row
                    }
                };
                egress_row[c] = Some(row);
            }
        }
        index.ingress_row = ingress_row;
        index.egress_row = egress_row;
        index
    }

    fn resolve(&mut self, rule: u32, dst: ClassId) -> u32 {
        let r = &self.rules[rule as usize];
        if r.ports.is_empty() {
            return ALL;
        }
        let set = resolve_ports(r.ports, &self.classes[dst as usize].named);
        self.port_sets.intern(set)
    }

    fn push_row(&mut self, base: u32, base_named: Vec<u32>, mut raw: Vec<(ClassId, u32)>) -> u32 {
        raw.sort_unstable();
        let mut entries: Vec<(ClassId, u32)> = Vec::with_capacity(raw.len());
        for (c, ps) in raw {
            match entries.last_mut() {
                Some(last) if last.0 == c => last.1 = self.port_sets.union(last.1, ps),
                _ => {
                    let with_base = self.port_sets.union(base, ps);
                    entries.push((c, with_base));
                }
            }
        }
        self.rows.push(Row {
            base,
            base_named,
            entries,
        });
        (self.rows.len() - 1) as u32
    }

    /// Sources admitted into destination class `dst` by ingress rules `rules`.
    fn ingress_row_for(
        &mut self,
        rules: &[u32],
        dst: ClassId,
        members: &[[Vec<ClassId>; 2]],
    ) -> u32 {
        let fam = self.classes[dst as usize].v6 as usize;
        let mut base = NONE;
        let mut raw = Vec::new();
        for &r in rules {
            let ps = self.resolve(r, dst);
            if ps == NONE {
                continue;
            }
            if self.rules[r as usize].all_peers {
                base = self.port_sets.union(base, ps);
            } else {
                raw.extend(members[r as usize][fam].iter().map(|&s| (s, ps)));
            }
        }
        self.push_row(base, Vec::new(), raw)
    }

    /// Destinations source classes may reach under egress rules `rules`.
    fn egress_row_for(&mut self, rules: &[u32], members: &[[Vec<ClassId>; 2]]) -> u32 {
        let mut base = NONE;
        let mut base_named = Vec::new();
        let mut raw = Vec::new();
        for &r in rules {
            let rule = &self.rules[r as usize];
            if rule.all_peers {
                if rule.has_named {
                    base_named.push(r);
                } else {
                    let ps = self.resolve(r, 0);
                    base = self.port_sets.union(base, ps);
                }
                continue;
            }
            for (fam, admitted) in members[r as usize].iter().enumerate() {
                for &d in admitted {
                    // The family of a connection is the destination's.
                    if self.classes[d as usize].v6 as usize != fam {
                        continue;
                    }
                    let ps = self.resolve(r, d);
                    if ps != NONE {
                        raw.push((d, ps));
                    }
                }
            }
        }
        self.push_row(base, base_named, raw)
    }

    fn lookup(&self, row: u32, peer: ClassId, named_dst: ClassId) -> PortSet {
        let row = &self.rows[row as usize];
        let id = match row.entries.binary_search_by_key(&peer, |e| e.0) {
            Ok(i) => row.entries[i].1,
            Err(_) => row.base,
        };
        let mut set = self.port_sets.sets[id as usize].clone();
        for &r in &row.base_named {
            let rule = &self.rules[r as usize];
            set = set.union(&resolve_ports(
                rule.ports,
                &self.classes[named_dst as usize].named,
            ));
        }
        set
    }

    /// Ports allowed from class `a` to class `b` (two distinct endpoints, or an address).
    pub fn pair(&self, a: ClassId, b: ClassId) -> PortSet {
        let (ca, cb) = (&self.classes[a as usize], &self.classes[b as usize]);
        if ca.external && (cb.external || ca.v6 != cb.v6) {
            return PortSet::none();
        }
        let ingress = match self.ingress_row[b as usize] {
            None => PortSet::all(),
            Some(row) => self.lookup(row, a, b),
        };
        if ingress.is_empty() {
            return ingress;
        }
        let egress = match self.egress_row[a as usize] {
            None => PortSet::all(),
            Some(row) => self.lookup(row, b, b),
        };
        ingress.intersect(&egress)
    }

    pub fn class_of(&self, node: Node) -> Option<ClassId> {
        match node {
            Node::Endpoint(i) => self.endpoint_class.get(i).copied(),
            Node::Address(ip) => Some(self.n_endpoint_classes as u32 + self.ip.class_of(&ip)),
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

    /// Candidate sources for a destination: the row's entries when nothing is
    /// admitted by default, every class otherwise.
    fn sources_for(&self, b: ClassId) -> Vec<ClassId> {
        match self.ingress_row[b as usize] {
            Some(row) => {
                let row = &self.rows[row as usize];
                if row.base == NONE && row.base_named.is_empty() {
                    return row.entries.iter().map(|e| e.0).collect();
                }
                (0..self.classes.len() as u32).collect()
            }
            None => (0..self.classes.len() as u32).collect(),
        }
    }

    pub fn flows(&self) -> Vec<Flow> {
        let mut out = Vec::new();
        let listed = |c: u32| {
            let class = &self.classes[c as usize];
            !(class.external && class.v6 && !self.has_v6)
        };
        for b in (0..self.classes.len() as u32).filter(|&b| listed(b)) {
            for a in self.sources_for(b) {
                if !listed(a)
                    || (self.classes[a as usize].external && self.classes[b as usize].external)
                {
                    continue;
                }
                if a == b && self.classes[a as usize].members.len() < 2 {
                    continue; // only self-traffic, which is not a flow between endpoints
                }
                let ports = self.pair(a, b);
                if !ports.is_empty() {
                    out.push(Flow {
                        src: a,
                        dst: b,
                        ports,
                    });
                }
            }
        }
        out
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
            row_entries: self.rows.iter().map(|r| r.entries.len()).sum(),
            port_sets: self.port_sets.sets.len(),
        }
    }
}
