//! Engine model → [`Ruleset`]. Selector and port semantics are asked of the engine
//! (`peer_matches`, `selects`, `resolve_ports`); this module only decides the shape.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::net::IpAddr;

use ipnet::IpNet;
use rustc_hash::{FxHashMap, FxHasher};
use weir_engine::ipspace::{from_int, net_range, subtract, to_int};
use weir_engine::ports::resolve_ports;
use weir_engine::{Selectors, Side};
use weir_model::{
    Action, Cluster, ClusterPeer, ClusterPolicy, ClusterPort, Direction, LabelSelector, Labels,
    Mode, NamespaceScope, Peer, PodsIn, PortRef, PortRule, Protocol, Rule, Tier,
};

use crate::{quote, Chain, ChainKind, Ruleset, Set};

/// Which endpoints this node programs: their dispatch entries, the chains of the policies
/// that select them, named-port sets of their ports. Peers are always the whole cluster.
#[derive(Clone, Copy, Debug)]
pub enum Scope<'a> {
    All,
    /// Indexes into `cluster.endpoints`.
    Endpoints(&'a [usize]),
    /// Pod addresses on this node (a workload's replicas spread over nodes: only its
    /// local replicas' addresses are dispatched here).
    Addresses(&'a std::collections::HashSet<IpAddr>),
}

/// Choices about the table beyond the policy itself.
#[derive(Clone, Debug, Default)]
pub struct CompileOptions {
    /// The interfaces of local pods (e.g. `wp*` in a lab; `veth*` with the ptp or bridge
    /// CNI, `cali*`, `lxc*`). With them the table
    /// - drops packets from such an interface whose source address is not routed back
    ///   through that same interface (anti-spoofing: a pod cannot borrow another pod's
    ///   address), before anything is accepted;
    /// - fails closed for local pods weir does not know yet: traffic from or to such an
    ///   interface whose pod address is not one of the scope's endpoints is dropped. The
    ///   rules live in the kernel, so they hold while the agent is down.
    pub pod_interfaces: Option<PodInterfaces>,
    /// Log dropped packets (rate limited) to this NFLOG group with the prefix `weir CHAIN`,
    /// so an agent can say which policy isolated the endpoint.
    pub log_group: Option<u16>,
    /// Audit every policy (the agent's `--audit`): nothing is dropped but spoofed sources;
    /// what policy would drop is counted, logged as a would-drop, and accepted.
    pub audit: bool,
}

/// Interface name patterns of local pods, checked when parsed (they are the operator's
/// text, so never trusted): each 1–15 of `[A-Za-z0-9_.-]`, optionally ending in `*` (a
/// prefix match). Parsed from a comma-separated list (`veth*,cali*`), because which CNI
/// names the host side of a pod's link how is the one thing a DaemonSet cannot know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodInterfaces(Vec<String>);

impl PodInterfaces {
    /// As an nft expression right of `iifname`/`oifname`: one quoted pattern or a set.
    fn to_nft(&self) -> String {
        let quoted: Vec<String> = self.0.iter().map(|p| format!("\"{p}\"")).collect();
        match quoted.as_slice() {
            [one] => one.clone(),
            many => format!("{{ {} }}", many.join(", ")),
        }
    }
}

impl std::str::FromStr for PodInterfaces {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut out: Vec<String> = Vec::new();
        for p in s.split(',') {
            let name = p.strip_suffix('*').unwrap_or(p);
            let ok = !name.is_empty()
                && name.len() <= 15
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
            if !ok {
                return Err(format!(
                    "pod interface pattern {p:?}: expected 1-15 of [A-Za-z0-9_.-], optionally ending in '*'"
                ));
            }
            if !out.iter().any(|q| q == p) {
                out.push(p.to_string());
            }
        }
        if out.len() > 16 {
            return Err("pod interface patterns: at most 16".into());
        }
        Ok(PodInterfaces(out))
    }
}

impl std::fmt::Display for PodInterfaces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join(","))
    }
}

/// Log statement for a drop, rate limited so a flood cannot swamp the reader.
fn log_rule(group: u16, tag: &str) -> String {
    format!("limit rate 50/second burst 20 packets log prefix \"weir {tag}\" group {group}")
}

/// Compiles the policy of the endpoints in `scope` into one table.
pub fn compile(engine: &Selectors, scope: Scope) -> Ruleset {
    compile_with(engine, scope, &CompileOptions::default())
}

/// [`compile`] with options.
pub fn compile_with(engine: &Selectors, scope: Scope, options: &CompileOptions) -> Ruleset {
    compile_recorded(engine, scope, options).rs
}

/// A compile's ruleset and what [`crate::Incremental`] keeps it current by.
pub(crate) struct Compiled {
    pub rs: Ruleset,
    /// What each set holding endpoint addresses stands for.
    pub defs: BTreeMap<String, SetDef>,
    pub names: Names,
    /// What each group and policy chain refers to: policy chains, sets.
    pub uses: BTreeMap<String, BTreeSet<String>>,
}

/// [`compile_with`], also returning what each set holding endpoint addresses stands for
/// and what each chain refers to.
pub(crate) fn compile_recorded(
    engine: &Selectors,
    scope: Scope,
    options: &CompileOptions,
) -> Compiled {
    let cluster = engine.cluster();
    let mut local = vec![matches!(scope, Scope::All); cluster.endpoints.len()];
    match scope {
        Scope::Endpoints(list) => {
            for &i in list {
                if let Some(slot) = local.get_mut(i) {
                    *slot = true;
                }
            }
        }
        Scope::Addresses(ips) => {
            for (slot, e) in local.iter_mut().zip(&cluster.endpoints) {
                *slot = e.ips.iter().any(|ip| ips.contains(ip));
            }
        }
        Scope::All => {}
    }
    let mut c = Compiler::new(engine, local, None);
    if let Scope::Addresses(ips) = scope {
        c.local_addresses = Some(ips.clone());
    }
    c.log_group = options.log_group;
    c.audit_all = options.audit;
    c.base_chains(
        options
            .pod_interfaces
            .as_ref()
            .map(PodInterfaces::to_nft)
            .as_deref(),
    );
    c.dispatch();
    c.tier_dispatch();
    c.finish()
}

/// The part of a node's table that namespace `ns`'s policies make — its local pods'
/// dispatch entries, their group chains, those chains' policy chains and the sets these
/// use — as the full compile makes it, given `existing`, the whole table it is part of:
/// sets it already has with the same definition are referred to as they are (`reused`),
/// not recomputed. Names come from `names`, the ones the table was made with.
pub(crate) fn compile_namespace(
    engine: &Selectors,
    part: Part,
    local_addresses: Option<&std::collections::HashSet<IpAddr>>,
    families: Vec<Family>,
    options: &CompileOptions,
    existing: Existing,
    names: Names,
) -> Compiled {
    let mut local = vec![false; engine.cluster().endpoints.len()];
    for &i in part.endpoints {
        local[i] = true;
    }
    let mut c = Compiler::new(engine, local, Some(part));
    c.local_addresses = local_addresses.cloned();
    c.families = families;
    c.log_group = options.log_group;
    c.audit_all = options.audit;
    c.names = names;
    c.existing = Some(existing);
    for dir in [Direction::Egress, Direction::Ingress] {
        for f in FAMILIES {
            c.rs.sets
                .insert(format!("{dir}{}", f.suffix()), dispatch_map(f));
        }
    }
    c.dispatch();
    c.finish()
}

/// An empty dispatch map (address → verdict) of family `f`.
fn dispatch_map(f: Family) -> Set {
    Set {
        spec: format!("type {} : verdict;", f.addr_type()),
        comment: None,
        elements: BTreeSet::new(),
    }
}

/// One namespace's part of a node's table, by index into the cluster: its endpoints on
/// the node (not hostNetwork) and its policies. Given, so a partial compile never scans
/// the cluster for them.
#[derive(Clone, Copy)]
pub(crate) struct Part<'a> {
    pub endpoints: &'a [usize],
    pub policies: &'a [usize],
}

/// What a partial compile ([`compile_namespace`]) may take as it is.
pub(crate) struct Existing<'a> {
    pub ruleset: &'a Ruleset,
    pub defs: &'a BTreeMap<String, SetDef>,
}

const FAMILIES: [Family; 2] = [Family::V4, Family::V6];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Family {
    V4,
    V6,
}

impl Family {
    pub(crate) fn of(ip: &IpAddr) -> Family {
        if ip.is_ipv6() {
            Family::V6
        } else {
            Family::V4
        }
    }
    /// The nft payload keyword: `ip` or `ip6`.
    fn kw(self) -> &'static str {
        match self {
            Family::V4 => "ip",
            Family::V6 => "ip6",
        }
    }
    pub(crate) fn suffix(self) -> &'static str {
        match self {
            Family::V4 => "4",
            Family::V6 => "6",
        }
    }
    fn addr_type(self) -> &'static str {
        match self {
            Family::V4 => "ipv4_addr",
            Family::V6 => "ipv6_addr",
        }
    }
}

fn proto_kw(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::Sctp => "sctp",
    }
}

/// IANA numbers: set elements use them so nothing depends on /etc/protocols.
fn proto_num(p: Protocol) -> u8 {
    match p {
        Protocol::Tcp => 6,
        Protocol::Udp => 17,
        Protocol::Sctp => 132,
    }
}

fn hash_of(value: &impl Hash) -> u64 {
    let mut h = FxHasher::default();
    value.hash(&mut h);
    h.finish()
}

/// The name prefix and key of the chain shared by endpoints isolated in `dir` by exactly
/// these policies (in name order, all of one namespace), all enforced or all audited.
pub(crate) fn group_key<'p>(
    dir: Direction,
    audit: bool,
    policies: impl Iterator<Item = &'p weir_model::Policy>,
) -> (&'static str, String) {
    let prefix = match (dir, audit) {
        (Direction::Ingress, false) => "ig",
        (Direction::Egress, false) => "eg",
        (Direction::Ingress, true) => "ia",
        (Direction::Egress, true) => "ea",
    };
    let mut key = String::new();
    for p in policies {
        key.push_str(&p.namespace);
        key.push('\0');
        key.push_str(&p.name);
        key.push('\0');
    }
    (prefix, key)
}

/// What a local pod's packets in one direction go to, given the policies that select it and
/// isolate that direction (name order): the group chain of the enforced ones, else, when all
/// are audited, their audit chain (`true`). Audited policies beside an enforced one change
/// nothing that could be dropped: they can only allow more.
pub(crate) fn dispatch_to<T: Copy>(
    policies: &[T],
    audited: impl Fn(T) -> bool,
) -> Option<(bool, Vec<T>)> {
    let enforced: Vec<T> = policies.iter().copied().filter(|&p| !audited(p)).collect();
    if !enforced.is_empty() {
        Some((false, enforced))
    } else if policies.is_empty() {
        None
    } else {
        Some((true, policies.to_vec()))
    }
}

/// Whether a policy's drops are only audited: by its mode, or because every policy is.
pub(crate) fn is_audited(policy: &weir_model::Policy, audit_all: bool) -> bool {
    audit_all || policy.mode == Mode::Audit
}

/// Names of chains and sets are generated, never user text: `prefix-<hash of key>`, where
/// `key` is what the object stands for (a policy's namespace and name, a selector). Two
/// keys with one hash get distinct names (`-1`, `-2`, … in compile order), so a crafted
/// collision can never merge two policies' rules.
#[derive(Clone, Default)]
pub(crate) struct Names {
    taken: FxHashMap<String, String>,
    /// Whether two keys met on one hash: then names depend on the order things were named
    /// in, which only a full compile reproduces.
    pub collided: bool,
}

impl Names {
    fn name(&mut self, prefix: &str, key: &str) -> String {
        let base = format!("{prefix}-{:016x}", hash_of(&key));
        match self.walk(&base, key) {
            Ok(name) => name,
            Err(name) => {
                self.collided |= name != base;
                self.taken.insert(name.clone(), key.to_string());
                name
            }
        }
    }

    /// The name `key` has been given, if any.
    pub(crate) fn find(&self, prefix: &str, key: &str) -> Option<String> {
        self.walk(&format!("{prefix}-{:016x}", hash_of(&key)), key)
            .ok()
    }

    /// `Ok(name)` given to `key` already, or `Err(name)` it would get: `base`, or `base-N`
    /// past names other keys took.
    fn walk(&self, base: &str, key: &str) -> Result<String, String> {
        let mut name = base.to_string();
        let mut n = 0;
        loop {
            match self.taken.get(&name) {
                Some(k) if k == key => return Ok(name),
                Some(_) => {
                    n += 1;
                    name = format!("{base}-{n}");
                }
                None => return Err(name),
            }
        }
    }
}

/// How one peer of a rule is matched on the far side's address.
enum PeerMatch {
    /// No `from`/`to`: every address.
    Any,
    /// A named set per family (`{base}-4`, `{base}-6`), present for these families.
    Set { base: String, families: Vec<Family> },
}

/// Where one policy rule's nft rules go and what they do.
struct Line<'a> {
    dir: Direction,
    /// The namespace a peer without namespaceSelector means.
    policy_ns: &'a str,
    /// Named-port sets of the rule are `{set_base}-…`.
    set_base: String,
    /// Quoted: which policy and rule.
    comment: String,
    /// `accept`, `drop`, `return`.
    verdict: &'a str,
    selected: Selected<'a>,
}

/// Who a rule's policy applies to: the destinations of its ingress named ports.
#[derive(Clone, Copy)]
enum Selected<'a> {
    Policy(&'a weir_model::Policy),
    Subject(&'a ClusterPolicy),
}

impl Selected<'_> {
    fn selects(self, engine: &Selectors, i: usize) -> bool {
        match self {
            Selected::Policy(p) => engine.selects(p, i),
            Selected::Subject(p) => engine.subject_selects(p, i),
        }
    }

    fn named_ingress(self, named: Vec<PortRule>, family: Family) -> SetDef {
        match self {
            Selected::Policy(p) => SetDef::NamedIngress {
                namespace: p.namespace.clone(),
                pod_selector: p.pod_selector.clone(),
                named,
                family,
            },
            Selected::Subject(p) => SetDef::NamedSubject {
                subject: p.subject.clone(),
                named,
                family,
            },
        }
    }
}

struct Compiler<'e, 'c> {
    engine: &'e Selectors<'c>,
    cluster: &'c Cluster,
    local: Vec<bool>,
    /// Address families some endpoint has: selector sets exist only for these.
    families: Vec<Family>,
    /// Non-hostNetwork endpoints grouped by (namespace, labels): selectors are evaluated
    /// once per group.
    groups: Vec<(&'c str, &'c Labels, Vec<usize>)>,
    /// Policies by namespace, in input order.
    by_namespace: FxHashMap<&'c str, Vec<usize>>,
    log_group: Option<u16>,
    /// Every policy audited ([`CompileOptions::audit`]).
    audit_all: bool,
    /// With [`Scope::Addresses`]: only these addresses of local endpoints are dispatched.
    local_addresses: Option<std::collections::HashSet<IpAddr>>,
    names: Names,
    rs: Ruleset,
    /// What each set that holds addresses of any endpoint in the cluster stands for, so a
    /// single pod's change can be applied to it ([`crate::Incremental`]).
    defs: BTreeMap<String, SetDef>,
    /// What each chain made refers to (policy chains, sets).
    uses: BTreeMap<String, BTreeSet<String>>,
    /// A partial compile's table, and the sets taken from it as they are.
    existing: Option<Existing<'e>>,
    reused: BTreeSet<String>,
}

/// A set whose elements depend on endpoints, and how ([`crate::Incremental`] moves one
/// endpoint's elements by these).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum SetDef {
    /// Addresses of family `family` of the endpoints a pod-selector peer matches.
    Selector {
        peer: Peer,
        policy_ns: String,
        family: Family,
    },
    /// An ipBlock peer's ranges (pod addresses cut out when ipBlocks do not match pods).
    Block { peer: Peer },
    /// (address . protocol . port) of the local endpoints a policy of `namespace` with
    /// `pod_selector` selects, for an ingress rule's named ports.
    NamedIngress {
        namespace: String,
        pod_selector: LabelSelector,
        named: Vec<PortRule>,
        family: Family,
    },
    /// (address . protocol . port) of the local endpoints a cluster policy's subject
    /// selects, for an ingress rule's named ports.
    NamedSubject {
        subject: PodsIn,
        named: Vec<PortRule>,
        family: Family,
    },
    /// (address . protocol . port) of the endpoints an egress peer (`None`: every endpoint)
    /// matches, for the rule's named ports.
    NamedEgress {
        peer: Option<Peer>,
        policy_ns: String,
        named: Vec<PortRule>,
        family: Family,
    },
}

impl<'e, 'c> Compiler<'e, 'c> {
    /// `part`: a partial compile of one namespace's part alone.
    fn new(engine: &'e Selectors<'c>, local: Vec<bool>, part: Option<Part>) -> Self {
        let cluster = engine.cluster();
        let mut index: FxHashMap<(&str, &Labels), usize> = FxHashMap::default();
        let mut groups: Vec<(&str, &Labels, Vec<usize>)> = Vec::new();
        let mut families = Vec::new();
        let all: Vec<usize>;
        let endpoints = match part {
            Some(part) => part.endpoints,
            None => {
                all = (0..cluster.endpoints.len()).collect();
                &all
            }
        };
        for &i in endpoints {
            let ep = &cluster.endpoints[i];
            for f in FAMILIES {
                if !families.contains(&f) && ep.ips.iter().any(|ip| Family::of(ip) == f) {
                    families.push(f);
                }
            }
            if ep.host_network {
                continue;
            }
            let g = *index
                .entry((ep.namespace.as_str(), &ep.labels))
                .or_insert_with(|| {
                    groups.push((ep.namespace.as_str(), &ep.labels, Vec::new()));
                    groups.len() - 1
                });
            groups[g].2.push(i);
        }
        families.sort_by_key(|f| *f == Family::V6);
        let mut by_namespace: FxHashMap<&str, Vec<usize>> = FxHashMap::default();
        let policies = match part {
            Some(part) => part.policies.to_vec(),
            None => (0..cluster.policies.len()).collect(),
        };
        for i in policies {
            by_namespace
                .entry(cluster.policies[i].namespace.as_str())
                .or_default()
                .push(i);
        }
        // Name order, so that a group's chain does not depend on the input's order.
        for list in by_namespace.values_mut() {
            list.sort_by(|&a, &b| cluster.policies[a].name.cmp(&cluster.policies[b].name));
        }
        Compiler {
            engine,
            cluster,
            local,
            families,
            groups,
            by_namespace,
            log_group: None,
            audit_all: false,
            local_addresses: None,
            names: Names::default(),
            rs: Ruleset::default(),
            defs: BTreeMap::new(),
            uses: BTreeMap::new(),
            existing: None,
            reused: BTreeSet::new(),
        }
    }

    /// Adds a chain that base chains or other chains jump to (no hook header).
    fn chain(&mut self, name: &str, kind: ChainKind, rules: Vec<String>) {
        self.rs.chains.insert(
            name.to_string(),
            Chain {
                kind,
                header: None,
                rules,
                would_drop: Vec::new(),
                why: None,
            },
        );
    }

    fn finish(self) -> Compiled {
        Compiled {
            rs: self.rs,
            defs: self.defs,
            names: self.names,
            uses: self.uses,
        }
    }

    /// In a partial compile, whether the sets `sets` are taken from the table as they are
    /// (then recorded as reused): all exist there and, with a definition given (the name
    /// of a named-port set does not say it all), were made by it.
    fn reuse(&mut self, sets: &[(String, Option<SetDef>)]) -> bool {
        let Some(existing) = &self.existing else {
            return false;
        };
        let fits = sets.iter().all(|(name, def)| {
            existing.ruleset.sets.contains_key(name)
                && def
                    .as_ref()
                    .is_none_or(|d| existing.defs.get(name) == Some(d))
        });
        if fits {
            self.reused.extend(sets.iter().map(|(n, _)| n.clone()));
        }
        fits
    }

    /// `{base}-4`, `{base}-6` for the families endpoints have.
    fn family_sets(&self, base: &str) -> Vec<(Family, String)> {
        self.families
            .iter()
            .map(|f| (*f, format!("{base}-{}", f.suffix())))
            .collect()
    }

    fn is_local_address(&self, ip: &IpAddr) -> bool {
        self.local_addresses
            .as_ref()
            .is_none_or(|set| set.contains(ip))
    }

    /// `fail_closed`: the pod interfaces as nft syntax ([`PodInterfaces::to_nft`]).
    fn base_chains(&mut self, fail_closed: Option<&str>) {
        if fail_closed.is_some() {
            for f in FAMILIES {
                let elements = self
                    .cluster
                    .endpoints
                    .iter()
                    .enumerate()
                    .filter(|(i, e)| self.local[*i] && !e.host_network)
                    .flat_map(|(_, e)| {
                        e.ips
                            .iter()
                            .filter(|ip| Family::of(ip) == f && self.is_local_address(ip))
                    })
                    .map(|ip| ip.to_string())
                    .collect();
                self.rs.sets.insert(
                    format!("local{}", f.suffix()),
                    Set {
                        spec: format!("type {};", f.addr_type()),
                        comment: Some("pods this node knows".into()),
                        elements,
                    },
                );
            }
        }
        // A pod's packets to its own node's addresses are delivered, not forwarded: the
        // input hook sees them. Its egress policy applies there too (as it does to every
        // other node), or a `nodes` Deny and an egress default-deny would depend on where the
        // pod is scheduled. The node reaching its pods (output hook) stays unfiltered: the
        // kubelet's probes must always get through, as NetworkPolicy documents.
        for (dir, name, hook, priority, key, iface) in [
            (
                Direction::Egress,
                "egress",
                "forward",
                -1,
                "saddr",
                "iifname",
            ),
            (
                Direction::Egress,
                crate::EGRESS_TO_NODE,
                "input",
                -1,
                "saddr",
                "iifname",
            ),
            (
                Direction::Ingress,
                "ingress",
                "forward",
                0,
                "daddr",
                "oifname",
            ),
        ] {
            let mut rules = Vec::new();
            if let (Some(pattern), Direction::Egress) = (fail_closed, dir) {
                // Before any accept (a spoofed packet may claim to belong to a connection):
                // the source must be routed back through the interface it came in on. The
                // node routes each pod address to that pod's interface, so another local
                // pod's address fails; both families.
                let spoofed = format!("iifname {pattern} fib saddr . iif oif missing");
                if let Some(group) = self.log_group {
                    rules.push(format!("{spoofed} {}", log_rule(group, "spoofed-source")));
                }
                rules.push(format!(
                    "{spoofed} counter drop comment \"source address not of this pod interface\""
                ));
            }
            if hook == "input" {
                // Neighbour discovery, often from a link-local address no pod is known by:
                // the node must answer it for the pod to reach anything over IPv6.
                for kind in [
                    "nd-neighbor-solicit",
                    "nd-neighbor-advert",
                    "nd-router-solicit",
                ] {
                    rules.push(format!("icmpv6 type {kind} accept"));
                }
            }
            rules.push("ct state established,related accept".to_string());
            // On the input hook the node's own traffic passes too, and it is not weir's to
            // judge: there only local pods' packets are (by source address, below).
            if hook != "input" {
                rules.push("ct state invalid drop".to_string());
            }
            if let Some(pattern) = fail_closed {
                for f in FAMILIES {
                    let unknown =
                        format!("{iface} {pattern} {} {key} != @local{}", f.kw(), f.suffix());
                    if let Some(group) = self.log_group {
                        rules.push(format!(
                            "{unknown} {}",
                            log_rule(group, "unknown-local-pod")
                        ));
                    }
                    rules.push(if self.audit_all {
                        format!("{unknown} counter accept comment \"would drop: unknown local pod (audit)\"")
                    } else {
                        format!("{unknown} counter drop comment \"unknown local pod\"")
                    });
                }
            }
            // Admin tier, NetworkPolicies, Baseline tier: a tier's chain accepts, drops, or
            // returns here for the next (Pass, or no rule matched).
            let tiers = !self.cluster.cluster_policies.is_empty();
            for layer in ["admin-", "", "baseline-"] {
                if !layer.is_empty() && !tiers {
                    continue;
                }
                for f in FAMILIES {
                    let map = format!("{layer}{dir}{}", f.suffix());
                    rules.push(format!("{} {key} vmap @{map}", f.kw()));
                    self.rs.sets.insert(map, dispatch_map(f));
                }
            }
            self.rs.chains.insert(
                name.to_string(),
                Chain {
                    kind: ChainKind::Base,
                    header: Some(format!(
                        "type filter hook {hook} priority {priority}; policy accept;"
                    )),
                    rules,
                    would_drop: Vec::new(),
                    why: None,
                },
            );
        }
    }

    /// Map elements for every local endpoint some policy isolates, and the chains they need.
    fn dispatch(&mut self) {
        for g in 0..self.groups.len() {
            let (ns, _, ref members) = self.groups[g];
            let local: Vec<usize> = members.iter().copied().filter(|&i| self.local[i]).collect();
            if local.is_empty() {
                continue;
            }
            let representative = local[0];
            for dir in [Direction::Egress, Direction::Ingress] {
                let policies: Vec<usize> = self
                    .by_namespace
                    .get(ns)
                    .map(|ps| {
                        ps.iter()
                            .copied()
                            .filter(|&p| {
                                let policy = &self.cluster.policies[p];
                                policy.isolates(dir) && self.engine.selects(policy, representative)
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let audit_all = self.audit_all;
                let cluster = self.cluster;
                let Some((audit, policies)) =
                    dispatch_to(&policies, |p| is_audited(&cluster.policies[p], audit_all))
                else {
                    continue;
                };
                let group = if audit {
                    self.audit_chain(dir, &policies)
                } else {
                    self.group_chain(dir, &policies)
                };
                for &i in &local {
                    let ips: Vec<IpAddr> = self.cluster.endpoints[i]
                        .ips
                        .iter()
                        .copied()
                        .filter(|ip| self.is_local_address(ip))
                        .collect();
                    for ip in ips {
                        let map = format!("{dir}{}", Family::of(&ip).suffix());
                        self.rs
                            .sets
                            .get_mut(&map)
                            .expect("base chains declare the maps")
                            .elements
                            .insert(format!("{ip} : jump {group}"));
                    }
                }
            }
        }
    }

    /// Map elements for every local endpoint that cluster policies select, and their tier
    /// chains.
    fn tier_dispatch(&mut self) {
        if self.cluster.cluster_policies.is_empty() {
            return;
        }
        let cluster = self.cluster;
        let mut order: Vec<usize> = (0..cluster.cluster_policies.len()).collect();
        order.sort_by_key(|&p| cluster.cluster_policies[p].order_key());
        for g in 0..self.groups.len() {
            let local: Vec<usize> = self.groups[g]
                .2
                .iter()
                .copied()
                .filter(|&i| self.local[i])
                .collect();
            let Some(&representative) = local.first() else {
                continue;
            };
            let selecting: Vec<usize> = order
                .iter()
                .copied()
                .filter(|&p| {
                    self.engine
                        .subject_selects(&self.cluster.cluster_policies[p], representative)
                })
                .collect();
            for tier in [Tier::Admin, Tier::Baseline] {
                for dir in [Direction::Egress, Direction::Ingress] {
                    let list: Vec<usize> = selecting
                        .iter()
                        .copied()
                        .filter(|&p| {
                            let p = &self.cluster.cluster_policies[p];
                            p.tier == tier && !p.rules(dir).is_empty()
                        })
                        .collect();
                    if list.is_empty() {
                        continue;
                    }
                    let chain = self.tier_chain(tier, dir, &list);
                    let layer = match tier {
                        Tier::Admin => "admin",
                        Tier::Baseline => "baseline",
                    };
                    for &i in &local {
                        for ip in &self.cluster.endpoints[i].ips {
                            if !self.is_local_address(ip) {
                                continue;
                            }
                            let map = format!("{layer}-{dir}{}", Family::of(ip).suffix());
                            self.rs
                                .sets
                                .get_mut(&map)
                                .expect("base chains declare the tier maps")
                                .elements
                                .insert(format!("{ip} : jump {chain}"));
                        }
                    }
                }
            }
        }
    }

    /// The chain of one tier and direction shared by endpoints that exactly these cluster
    /// policies select (in evaluation order): their rules inline, in order, so that the
    /// first match decides — Accept accepts, Deny drops, Pass returns to the next tier (in
    /// the Baseline tier, whose next is the default, it accepts). With a drop log, a Deny
    /// jumps to a chain of its rule that logs (rate limited) and drops: a rule cannot do
    /// both, since a limit over its rate would end the rule before its drop.
    fn tier_chain(&mut self, tier: Tier, dir: Direction, list: &[usize]) -> String {
        let prefix = match (tier, dir) {
            (Tier::Admin, Direction::Ingress) => "tai",
            (Tier::Admin, Direction::Egress) => "tae",
            (Tier::Baseline, Direction::Ingress) => "tbi",
            (Tier::Baseline, Direction::Egress) => "tbe",
        };
        let key: String = list
            .iter()
            .map(|&p| format!("{}\0", self.cluster.cluster_policies[p].id()))
            .collect();
        let name = self.names.name(prefix, &key);
        if self.rs.chains.contains_key(&name) {
            return name;
        }
        let cluster = self.cluster;
        let mut rules = Vec::new();
        let mut used = BTreeSet::new();
        for &p in list {
            let policy = &cluster.cluster_policies[p];
            let sets = self
                .names
                .name(&format!("{prefix}n"), &format!("{}\0", policy.id()));
            for (n, rule) in policy.rules(dir).iter().enumerate() {
                let Some((rule, action)) = self.as_rule(rule) else {
                    continue; // matches no traffic (domain names, empty ranges)
                };
                let logged_deny;
                let verdict = match (action, tier) {
                    (Action::Accept, Tier::Admin) => "accept",
                    // The Baseline tier is the last: what it allows goes on to the end of the
                    // base chain, which accepts. Returning (not accepting) lets an audit chain
                    // that consults this tier count what it would drop.
                    (Action::Accept | Action::Pass, Tier::Baseline) => "return",
                    (Action::Deny, _) if self.log_group.is_none() && !self.audit_all => "drop",
                    (Action::Deny, _) => {
                        let deny = format!("{sets}-{n}d");
                        // Shared by every tier chain holding the policy: made once.
                        if !self.rs.chains.contains_key(&deny) {
                            let why = format!(
                                "{dir} denied by {} (tier {tier}, priority {}) rule {dir}[{n}]",
                                policy.id(),
                                policy.priority
                            );
                            let audited = if self.audit_all {
                                vec![policy.id()]
                            } else {
                                Vec::new()
                            };
                            self.close_chain(&deny, ChainKind::Group, Vec::new(), why, audited);
                        }
                        used.insert(deny.clone());
                        logged_deny = format!("jump {deny}");
                        &logged_deny
                    }
                    (Action::Pass, Tier::Admin) => "return",
                };
                let line = Line {
                    dir,
                    policy_ns: "",
                    set_base: format!("{sets}-{n}"),
                    comment: quote(&format!("{} {dir}[{n}] {action}", policy.id())),
                    verdict,
                    selected: Selected::Subject(policy),
                };
                self.rule_lines(&rule, &line, &mut rules, &mut used);
            }
        }
        self.chain(&name, ChainKind::Group, rules);
        self.uses.insert(name.clone(), used);
        name
    }

    /// A cluster policy rule as a NetworkPolicy rule (peers and ports) with its action, or
    /// `None` when it matches no traffic. Pods and namespaces are selector peers, networks
    /// and the nodes' addresses are ipBlocks; a named port of any protocol is one per
    /// protocol.
    fn as_rule(&self, rule: &weir_model::ClusterRule) -> Option<(Rule, Action)> {
        let mut peers = Vec::new();
        for peer in &rule.peers {
            match peer {
                ClusterPeer::Pods(sel) => peers.push(Peer::Pods {
                    namespaces: NamespaceScope::Selector(sel.namespaces.clone()),
                    pods: sel.pods.clone(),
                }),
                ClusterPeer::Networks(nets) => peers.extend(nets.iter().map(|n| Peer::IpBlock {
                    cidr: *n,
                    except: Vec::new(),
                })),
                ClusterPeer::Nodes(sel) => {
                    for node in &self.cluster.nodes {
                        if weir_engine::selector::matches(sel, &node.labels) {
                            peers.extend(node.addresses.iter().map(|a| Peer::IpBlock {
                                cidr: IpNet::from(*a),
                                except: Vec::new(),
                            }));
                        }
                    }
                }
                ClusterPeer::DomainNames(_) => {}
            }
        }
        peers.sort();
        peers.dedup();
        if peers.is_empty() {
            return None;
        }
        let ports = match &rule.ports {
            None => Vec::new(),
            Some(list) => {
                let mut ports = Vec::new();
                for p in list {
                    match p {
                        ClusterPort::Range {
                            protocol,
                            start,
                            end,
                        } if start <= end => ports.push(PortRule {
                            protocol: *protocol,
                            port: Some(PortRef::Number {
                                port: *start,
                                end: *end,
                            }),
                        }),
                        ClusterPort::Range { .. } => {}
                        ClusterPort::Named(name) => {
                            ports.extend(Protocol::ALL.map(|protocol| PortRule {
                                protocol,
                                port: Some(PortRef::Named(name.clone())),
                            }))
                        }
                    }
                }
                if ports.is_empty() {
                    return None;
                }
                ports
            }
        };
        Some((
            Rule {
                peers,
                ports,
                origin: Default::default(),
            },
            rule.action,
        ))
    }

    /// The chain shared by endpoints isolated in `dir` by exactly these policies.
    fn group_chain(&mut self, dir: Direction, policies: &[usize]) -> String {
        let (prefix, key) = group_key(
            dir,
            false,
            policies.iter().map(|&p| &self.cluster.policies[p]),
        );
        let name = self.names.name(prefix, &key);
        if self.rs.chains.contains_key(&name) {
            return name;
        }
        let mut rules = Vec::with_capacity(policies.len() + 1);
        let mut ids = Vec::new();
        for &p in policies {
            // Chain names are generated; the comment says which policy each one is.
            let chain = self.policy_chain(dir, p);
            self.uses
                .entry(name.clone())
                .or_default()
                .insert(chain.clone());
            let id = self.cluster.policies[p].id();
            rules.push(format!("jump {chain} comment {}", quote(&id)));
            ids.push(id);
        }
        let why = format!("{dir} isolated by {}", ids.join(", "));
        self.close_chain(&name, ChainKind::Group, rules, why, Vec::new());
        name
    }

    /// The chain shared by endpoints isolated in `dir` by exactly these policies, all
    /// audited: on the wire it must behave as if they did not exist, and count and log what
    /// they would drop. Their rules are inline (their own chains accept, which would end the
    /// evaluation), with the sets their own chains use. What they admit goes on as the
    /// enforced policy would: to the Baseline tier when one is enforced (`return`), else
    /// accepted. What they do not admit is a would-drop — unless the Baseline tier, consulted
    /// here, drops it anyway — then accepted.
    fn audit_chain(&mut self, dir: Direction, policies: &[usize]) -> String {
        let cluster = self.cluster;
        let (prefix, key) = group_key(dir, true, policies.iter().map(|&p| &cluster.policies[p]));
        let name = self.names.name(prefix, &key);
        if self.rs.chains.contains_key(&name) {
            return name;
        }
        let baseline = !self.audit_all
            && cluster
                .cluster_policies
                .iter()
                .any(|p| p.tier == Tier::Baseline);
        let verdict = if baseline { "return" } else { "accept" };
        let mut rules = Vec::new();
        let mut used = BTreeSet::new();
        let mut ids = Vec::new();
        for &p in policies {
            let policy = &cluster.policies[p];
            self.policy_rules(dir, policy, verdict, " (audit)", &mut rules, &mut used);
            ids.push(policy.id());
        }
        if baseline {
            let key = match dir {
                Direction::Ingress => "daddr",
                Direction::Egress => "saddr",
            };
            for f in FAMILIES {
                rules.push(format!(
                    "{} {key} vmap @baseline-{dir}{}",
                    f.kw(),
                    f.suffix()
                ));
            }
        }
        let why = format!("{dir} isolated by {}", ids.join(", "));
        self.close_chain(&name, ChainKind::Policy, rules, why, ids);
        self.uses.insert(name.clone(), used);
        name
    }

    /// Ends chain `name` (its `rules` so far) with what becomes of what nothing before
    /// admitted: a drop, or — for audited policies (`would_drop` names them) — a counted
    /// accept, a would-drop. Logged first under the chain's name when there is a drop log (in
    /// a rule of its own, since a limit over its rate ends the rule it stands in). The
    /// rule's comment says why, cut to fit; [`Chain::why`] keeps it whole for the drop log.
    fn close_chain(
        &mut self,
        name: &str,
        kind: ChainKind,
        mut rules: Vec<String>,
        why: String,
        would_drop: Vec<String>,
    ) {
        if let Some(group) = self.log_group {
            rules.push(log_rule(group, name));
        }
        let why = if would_drop.is_empty() {
            rules.push(format!("counter drop comment {}", quote(&why)));
            why
        } else {
            let why = format!("{why} (audit)");
            let comment = quote(&format!("would drop: {why}"));
            rules.push(format!("counter accept comment {comment}"));
            why
        };
        self.rs.chains.insert(
            name.to_string(),
            Chain {
                kind,
                header: None,
                rules,
                would_drop,
                why: Some(why),
            },
        );
    }

    /// One chain per policy and direction: every rule accepts what it admits.
    fn policy_chain(&mut self, dir: Direction, p: usize) -> String {
        let policy = &self.cluster.policies[p];
        let name = self.policy_chain_name(dir, policy);
        if self.rs.chains.contains_key(&name) {
            return name;
        }
        let mut rules = Vec::new();
        let mut used = BTreeSet::new();
        self.policy_rules(dir, policy, "accept", "", &mut rules, &mut used);
        self.chain(&name, ChainKind::Policy, rules);
        self.uses.insert(name.clone(), used);
        name
    }

    /// A policy's rules in `dir`, each ending in `verdict`, commented with the policy, the
    /// rule and `note`; their sets are named after the policy's own chain (shared with it).
    fn policy_rules(
        &mut self,
        dir: Direction,
        policy: &weir_model::Policy,
        verdict: &str,
        note: &str,
        rules: &mut Vec<String>,
        used: &mut BTreeSet<String>,
    ) {
        let own = self.policy_chain_name(dir, policy);
        for (n, rule) in policy.rules(dir).iter().enumerate() {
            let line = Line {
                dir,
                policy_ns: &policy.namespace,
                set_base: format!("np{}-{n}", &own[1..]),
                comment: quote(&format!("{} {dir}[{n}]{note}", policy.id())),
                verdict,
                selected: Selected::Policy(policy),
            };
            self.rule_lines(rule, &line, rules, used);
        }
    }

    /// The name of a policy's chain in `dir`; its sets are named after it.
    fn policy_chain_name(&mut self, dir: Direction, policy: &weir_model::Policy) -> String {
        let prefix = match dir {
            Direction::Ingress => "pin",
            Direction::Egress => "peg",
        };
        self.names
            .name(prefix, &format!("{}\0{}", policy.namespace, policy.name))
    }

    /// The nft rules of one policy rule: for each peer and port it admits, a match ending
    /// in `line.verdict`; named ports through (address . protocol . port) sets.
    fn rule_lines(
        &mut self,
        rule: &Rule,
        line: &Line,
        rules: &mut Vec<String>,
        used: &mut BTreeSet<String>,
    ) {
        let dir = line.dir;
        let key = match dir {
            Direction::Ingress => "saddr",
            Direction::Egress => "daddr",
        };
        let comment = &line.comment;
        let action = format!("counter {} comment", line.verdict);
        let action = action.as_str();
        let peers: Vec<(Option<&Peer>, PeerMatch)> = if rule.peers.is_empty() {
            vec![(None, PeerMatch::Any)]
        } else {
            rule.peers
                .iter()
                .map(|peer| (Some(peer), self.peer_set(peer, line.policy_ns)))
                .collect()
        };
        for (_, m) in &peers {
            if let PeerMatch::Set { base, families } = m {
                used.extend(families.iter().map(|f| format!("{base}-{}", f.suffix())));
            }
        }
        let (numbered, named) = split_ports(&rule.ports);
        for (_, m) in &peers {
            for ports in &numbered {
                match m {
                    PeerMatch::Any => rules.push(join(&[ports, action, comment])),
                    PeerMatch::Set { base, families } => {
                        for f in families {
                            let addr = format!("{} {key} @{base}-{}", f.kw(), f.suffix());
                            rules.push(join(&[&addr, ports, action, comment]));
                        }
                    }
                }
            }
        }
        if named.is_empty() {
            return;
        }
        let set_base = &line.set_base;
        match dir {
            // The destination is the selected (local) endpoint: one set per rule,
            // with each peer's address matched as for numbered ports.
            Direction::Ingress => {
                let def = |family| line.selected.named_ingress(named.clone(), family);
                let sets = self.family_sets(set_base);
                used.extend(sets.iter().map(|(_, n)| n.clone()));
                let defs: Vec<_> = sets.into_iter().map(|(f, n)| (n, Some(def(f)))).collect();
                if !self.reuse(&defs) {
                    let dsts: Vec<usize> = (0..self.cluster.endpoints.len())
                        .filter(|&i| self.local[i] && line.selected.selects(self.engine, i))
                        .collect();
                    self.named_port_set(set_base, &dsts, &named, def);
                }
                for (_, m) in &peers {
                    for f in self.families.clone() {
                        let dport = format!(
                            "{} daddr . meta l4proto . th dport @{set_base}-{}",
                            f.kw(),
                            f.suffix()
                        );
                        match m {
                            PeerMatch::Any => rules.push(join(&[&dport, action, comment])),
                            PeerMatch::Set { base, families } if families.contains(&f) => {
                                let addr = format!("{} saddr @{base}-{}", f.kw(), f.suffix());
                                rules.push(join(&[&addr, &dport, action, comment]));
                            }
                            PeerMatch::Set { .. } => {}
                        }
                    }
                }
            }
            // The destination is the peer: one set per peer holds the peer's own
            // addresses with its resolved ports, so it matches peer and port at once.
            Direction::Egress => {
                for (k, (peer, _)) in peers.iter().enumerate() {
                    let base = format!("{set_base}-{k}");
                    let def = |family| SetDef::NamedEgress {
                        peer: peer.cloned(),
                        policy_ns: line.policy_ns.to_string(),
                        named: named.clone(),
                        family,
                    };
                    let sets = self.family_sets(&base);
                    used.extend(sets.iter().map(|(_, n)| n.clone()));
                    let defs: Vec<_> = sets.into_iter().map(|(f, n)| (n, Some(def(f)))).collect();
                    if !self.reuse(&defs) {
                        let dsts: Vec<usize> = (0..self.cluster.endpoints.len())
                            .filter(|&i| {
                                peer.is_none_or(|peer| {
                                    let ep = &self.cluster.endpoints[i];
                                    ep.ips.iter().any(|ip| {
                                        self.engine.peer_matches(
                                            peer,
                                            line.policy_ns,
                                            Side::Endpoint(i),
                                            ip.is_ipv6(),
                                        )
                                    })
                                })
                            })
                            .collect();
                        self.named_port_set(&base, &dsts, &named, def);
                    }
                    for f in self.families.clone() {
                        let dport = format!(
                            "{} daddr . meta l4proto . th dport @{base}-{}",
                            f.kw(),
                            f.suffix()
                        );
                        rules.push(join(&[&dport, action, comment]));
                    }
                }
            }
        }
    }

    /// `{base}-4` / `{base}-6`: (address . protocol . port) for each endpoint's
    /// containerPorts that a named port of the rule resolves to (by name and protocol);
    /// `def` says what each stands for.
    fn named_port_set(
        &mut self,
        base: &str,
        endpoints: &[usize],
        named: &[PortRule],
        def: impl Fn(Family) -> SetDef,
    ) {
        for f in self.families.clone() {
            let elements = endpoints
                .iter()
                .flat_map(|&i| named_port_elements(&self.cluster.endpoints[i], named, f))
                .collect();
            let name = format!("{base}-{}", f.suffix());
            self.defs.insert(name.clone(), def(f));
            self.rs.sets.insert(
                name,
                Set {
                    spec: format!("type {} . inet_proto . inet_service;", f.addr_type()),
                    comment: None,
                    elements,
                },
            );
        }
    }

    /// The named set(s) matching one peer: shared by every rule with the same selector
    /// (in the same namespace scope) or the same ipBlock.
    fn peer_set(&mut self, peer: &Peer, policy_ns: &str) -> PeerMatch {
        match peer {
            Peer::Pods { namespaces, .. } => {
                let scope_ns = match namespaces {
                    weir_model::NamespaceScope::PolicyNamespace => policy_ns,
                    weir_model::NamespaceScope::Selector(_) => "",
                };
                let base = self.names.name("sel", &format!("{scope_ns}\0{peer:?}"));
                let families = self.families.clone();
                let sets: Vec<_> = self
                    .family_sets(&base)
                    .into_iter()
                    .map(|(_, n)| (n, None))
                    .collect();
                let made = sets
                    .iter()
                    .any(|(n, _)| self.rs.sets.contains_key(n) || self.reused.contains(n));
                if !made && !self.reuse(&sets) {
                    let mut members: Vec<&IpAddr> = Vec::new();
                    if self.existing.is_some() {
                        // A partial compile's groups are its namespace's local pods only.
                        for (i, e) in self.cluster.endpoints.iter().enumerate() {
                            if self
                                .engine
                                .peer_matches(peer, policy_ns, Side::Endpoint(i), false)
                            {
                                members.extend(&e.ips);
                            }
                        }
                    } else {
                        for (_, _, eps) in &self.groups {
                            let rep = Side::Endpoint(eps[0]);
                            if self.engine.peer_matches(peer, policy_ns, rep, false) {
                                members.extend(
                                    eps.iter().flat_map(|&i| &self.cluster.endpoints[i].ips),
                                );
                            }
                        }
                    }
                    let comment = describe_peer(peer, policy_ns);
                    for &f in &families {
                        let elements = members
                            .iter()
                            .filter(|ip| Family::of(ip) == f)
                            .map(|ip| ip.to_string())
                            .collect();
                        self.rs.sets.insert(
                            format!("{base}-{}", f.suffix()),
                            Set {
                                spec: format!("type {};", f.addr_type()),
                                comment: Some(comment.clone()),
                                elements,
                            },
                        );
                        self.defs.insert(
                            format!("{base}-{}", f.suffix()),
                            SetDef::Selector {
                                peer: peer.clone(),
                                policy_ns: policy_ns.to_string(),
                                family: f,
                            },
                        );
                    }
                }
                PeerMatch::Set { base, families }
            }
            Peer::IpBlock { cidr, except } => {
                let f = if matches!(cidr, IpNet::V6(_)) {
                    Family::V6
                } else {
                    Family::V4
                };
                let base = self.names.name("blk", &format!("{peer:?}"));
                let name = format!("{base}-{}", f.suffix());
                let made = self.rs.sets.contains_key(&name) || self.reused.contains(&name);
                if !made && !self.reuse(&[(name.clone(), None)]) {
                    let mut ranges = vec![net_range(cidr)];
                    for e in except {
                        ranges = subtract(&ranges, net_range(e));
                    }
                    if !self.engine.options().ipblock_matches_pods {
                        for ip in self.cluster.endpoints.iter().flat_map(|e| &e.ips) {
                            let x = to_int(ip);
                            ranges = subtract(&ranges, (x, x));
                        }
                    }
                    let elements = ranges.iter().map(|&r| render_range(f, r)).collect();
                    self.defs
                        .insert(name.clone(), SetDef::Block { peer: peer.clone() });
                    self.rs.sets.insert(
                        name,
                        Set {
                            spec: format!("type {}; flags interval;", f.addr_type()),
                            comment: Some(describe_peer(peer, policy_ns)),
                            elements,
                        },
                    );
                }
                PeerMatch::Set {
                    base,
                    families: vec![f],
                }
            }
        }
    }
}

/// (address . protocol . port) of `e`'s addresses of `family`, for the named ports it
/// resolves: the elements `e` puts into a named-port set.
pub(crate) fn named_port_elements(
    e: &weir_model::Endpoint,
    named: &[PortRule],
    family: Family,
) -> Vec<String> {
    let ports = resolve_ports(named, &e.ports);
    let mut out = Vec::new();
    for ip in e.ips.iter().filter(|ip| Family::of(ip) == family) {
        for proto in Protocol::ALL {
            for &(lo, hi) in ports.ranges(proto) {
                for port in lo..=hi {
                    out.push(format!("{ip} . {} . {port}", proto_num(proto)));
                }
            }
        }
    }
    out
}

fn join(parts: &[&str]) -> String {
    parts
        .iter()
        .filter(|p| !p.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ")
}

/// A rule's `ports` as nft port matches for the numbered entries (one string each; `""`
/// when the rule has no ports and so admits everything), and the named entries, which
/// resolve per destination endpoint.
fn split_ports(ports: &[PortRule]) -> (Vec<String>, Vec<PortRule>) {
    if ports.is_empty() {
        return (vec![String::new()], Vec::new());
    }
    let (named, numbered): (Vec<PortRule>, Vec<PortRule>) = ports
        .iter()
        .cloned()
        .partition(|p| matches!(p.port, Some(PortRef::Named(_))));
    let mut out = Vec::new();
    if !numbered.is_empty() {
        let set = resolve_ports(&numbered, &[]);
        for proto in Protocol::ALL {
            for &(lo, hi) in set.ranges(proto) {
                let kw = proto_kw(proto);
                out.push(match (lo, hi) {
                    (1, 65535) => format!("meta l4proto {kw}"),
                    (lo, hi) if lo == hi => format!("meta l4proto {kw} th dport {lo}"),
                    (lo, hi) => format!("meta l4proto {kw} th dport {lo}-{hi}"),
                });
            }
        }
    }
    (out, named)
}

fn describe_peer(peer: &Peer, policy_ns: &str) -> String {
    let rule = weir_model::Rule {
        peers: vec![peer.clone()],
        ..Default::default()
    };
    let text = weir_engine::describe_rule(Direction::Ingress, &rule);
    let text = text
        .trim_start_matches("from ")
        .trim_end_matches(" on all ports");
    text.replace("the policy's namespace", policy_ns)
}

fn render_range(f: Family, (lo, hi): (u128, u128)) -> String {
    let show = |x: u128| from_int(x, f == Family::V6).to_string();
    if lo == hi {
        show(lo)
    } else {
        format!("{}-{}", show(lo), show(hi))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_split_into_matches_and_names() {
        let rule = |protocol, port| PortRule { protocol, port };
        let (numbered, named) = split_ports(&[
            rule(Protocol::Tcp, Some(PortRef::Number { port: 80, end: 80 })),
            rule(Protocol::Tcp, Some(PortRef::Number { port: 81, end: 90 })),
            rule(Protocol::Udp, None),
            rule(Protocol::Sctp, Some(PortRef::Named("http".into()))),
        ]);
        assert_eq!(
            numbered,
            vec!["meta l4proto tcp th dport 80-90", "meta l4proto udp"]
        );
        assert_eq!(named.len(), 1);
        assert_eq!(split_ports(&[]).0, vec![String::new()]);
    }
}
