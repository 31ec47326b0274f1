//! Policy hygiene: findings a platform engineer wants before a policy set ships. Every
//! finding has a stable code, a severity, where it comes from and a fix hint.

use std::net::IpAddr;

use serde::Serialize;
use weir_model::{Cluster, Direction, Peer, PortRef, Protocol, Rule};

use crate::ipspace::outside_representatives;
use crate::ports::{resolve_ports, PortSet};
use crate::{Engine, Side};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        })
    }
}

impl std::str::FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "info" => Ok(Severity::Info),
            "warning" => Ok(Severity::Warning),
            "error" => Ok(Severity::Error),
            _ => Err(format!("{s:?}: expected info, warning or error")),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable code, e.g. `W001`.
    pub code: &'static str,
    /// Stable name, e.g. `policy-selects-nothing`.
    pub name: &'static str,
    pub severity: Severity,
    /// `file:line:col` of the object concerned.
    pub location: String,
    /// The field of that object it is about (`spec.ingress[1].from[0]`), or empty: where
    /// a caller with the file can point more precisely.
    pub field: String,
    /// `namespace/name` of the policy (or namespace / endpoint) concerned.
    pub subject: String,
    pub message: String,
    pub hint: String,
}

/// Every check weir's lint runs. Adding one is one variant, one row in [`Check::spec`],
/// and the code that finds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    PolicySelectsNothing,
    PeerMatchesNothing,
    NamedPortUnresolved,
    RuleShadowed,
    PolicyRedundant,
    EgressWithoutDns,
    IpblockCoversPods,
    RulesIgnoredByPolicyTypes,
    AllowAllRule,
    NamespaceWithoutDefaultDeny,
    DenyAllDirection,
    TierRuleShadowed,
    TierPriorityTie,
    PassToNothing,
    AuditedPolicy,
    AuditReadyToEnforce,
    AuditWouldDrop,
}

/// What a check is called and what to do about its findings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckSpec {
    /// Stable code, e.g. `W001`.
    pub code: &'static str,
    /// Stable name, e.g. `policy-selects-nothing`.
    pub name: &'static str,
    pub severity: Severity,
    pub hint: &'static str,
}

impl Check {
    pub const ALL: [Check; 17] = [
        Check::PolicySelectsNothing,
        Check::PeerMatchesNothing,
        Check::NamedPortUnresolved,
        Check::RuleShadowed,
        Check::PolicyRedundant,
        Check::EgressWithoutDns,
        Check::IpblockCoversPods,
        Check::RulesIgnoredByPolicyTypes,
        Check::AllowAllRule,
        Check::NamespaceWithoutDefaultDeny,
        Check::DenyAllDirection,
        Check::TierRuleShadowed,
        Check::TierPriorityTie,
        Check::PassToNothing,
        Check::AuditedPolicy,
        Check::AuditReadyToEnforce,
        Check::AuditWouldDrop,
    ];

    pub const fn spec(self) -> CheckSpec {
        use Severity::{Info, Warning};
        let (code, name, severity, hint) = match self {
            Check::PolicySelectsNothing => ("W001", "policy-selects-nothing", Warning,
                "check the labels against the pods, or delete the policy"),
            Check::PeerMatchesNothing => ("W002", "peer-matches-nothing", Warning,
                "check the selector's labels (pods and namespaces), or remove the peer"),
            Check::NamedPortUnresolved => ("W003", "named-port-unresolved", Warning,
                "fix the name or protocol, or use the port number"),
            Check::RuleShadowed => ("W004", "rule-shadowed", Warning,
                "delete the rule, or narrow the other one"),
            Check::PolicyRedundant => ("W005", "policy-redundant", Warning,
                "delete it, or merge it with the policies that cover it (when not checked: lint a smaller slice, one namespace)"),
            Check::EgressWithoutDns => ("W006", "egress-without-dns", Warning,
                "add an egress rule to kube-dns (namespaceSelector kubernetes.io/metadata.name=kube-system, podSelector k8s-app=kube-dns) on UDP and TCP 53"),
            Check::IpblockCoversPods => ("W007", "ipblock-covers-pods", Warning,
                "select pods with podSelector/namespaceSelector and keep ipBlock for addresses outside the cluster (or add the pod CIDR to except)"),
            Check::RulesIgnoredByPolicyTypes => ("W008", "rules-ignored-by-policy-types", Warning,
                "add the direction to policyTypes, or delete the rules"),
            Check::AllowAllRule => ("W009", "allow-all-rule", Warning,
                "`ingress: [{}]` (or `egress: [{}]`) is allow-all; `[]` (or no rules) is deny-all — pick the one you mean"),
            Check::NamespaceWithoutDefaultDeny => ("I001", "namespace-without-default-deny", Info,
                "add a NetworkPolicy with podSelector: {} and policyTypes: [Ingress] and no rules"),
            Check::DenyAllDirection => ("I002", "deny-all-direction", Info,
                "intended as default-deny? fine; otherwise add rules"),
            Check::TierRuleShadowed => ("W010", "tier-rule-shadowed", Warning,
                "delete the rule, move it before the rule that takes its traffic, or narrow that one"),
            Check::TierPriorityTie => ("W011", "tier-priority-tie", Warning,
                "give the policies distinct priorities: with equal ones, which decides is up to the implementation (weir: by name)"),
            Check::PassToNothing => ("W012", "pass-to-nothing", Warning,
                "nothing below decides, so the traffic is allowed by default: write Accept if that is meant, or add the NetworkPolicy or Baseline rule it should reach"),
            Check::AuditedPolicy => ("I003", "audited-policy", Info,
                "`weir analyze --as-enforced` or `weir diff` shows what enforcing it changes; `weir lint --would-drops` with the agents' /metrics says whether they saw traffic it would drop"),
            Check::AuditReadyToEnforce => ("I004", "audit-ready-to-enforce", Info,
                "set weir.dev/mode: enforce (counters restart when the policy's chain is remade: an edit of it, or of another policy selecting the same pods)"),
            Check::AuditWouldDrop => ("W013", "audit-would-drop", Warning,
                "`weir drops` lists them as `would drop` (who, to whom, port): allow the flows that must stay, then enforce"),
        };
        CheckSpec {
            code,
            name,
            severity,
            hint,
        }
    }
}

/// How many (policy × endpoint) evaluations the redundancy check may cost before it is
/// skipped (and said so): it rebuilds the engine once per policy.
const REDUNDANCY_BUDGET: usize = 2_000_000;

struct Linter<'e, 'c> {
    engine: &'e Engine<'c>,
    cluster: &'c Cluster,
    out: Vec<Finding>,
}

impl Linter<'_, '_> {
    fn push(&mut self, check: Check, location: String, subject: String, message: String) {
        self.push_at(check, location, String::new(), subject, message);
    }

    /// [`Linter::push`] about one field of the object.
    fn push_at(
        &mut self,
        check: Check,
        location: String,
        field: String,
        subject: String,
        message: String,
    ) {
        let spec = check.spec();
        self.out.push(Finding {
            code: spec.code,
            name: spec.name,
            severity: spec.severity,
            location,
            field,
            subject,
            message,
            hint: spec.hint.to_string(),
        });
    }
}

fn rule_path(direction: Direction, n: usize) -> String {
    format!("spec.{direction}[{n}]")
}

/// Every finding for the cluster, ordered by location then code.
pub fn lint(engine: &Engine) -> Vec<Finding> {
    lint_with(engine, None)
}

/// [`lint`], with what the agents counted audited policies would drop (packets per
/// `namespace/name`, summed over nodes): then each audited policy is either ready to
/// enforce or has would-drops to look at.
pub fn lint_with(
    engine: &Engine,
    would_drop: Option<&std::collections::BTreeMap<String, u64>>,
) -> Vec<Finding> {
    let cluster = engine.cluster();
    let mut l = Linter {
        engine,
        cluster,
        out: Vec::new(),
    };
    let n = cluster.endpoints.len();
    let outside = outside_representatives(&[cluster]);
    for (pi, policy) in cluster.policies.iter().enumerate() {
        let loc = policy.origin.to_string();
        let id = policy.id();
        let targets: Vec<usize> = (0..n).filter(|&i| engine.selects(policy, i)).collect();
        if targets.is_empty() {
            l.push_at(
                Check::PolicySelectsNothing,
                loc.clone(),
                "spec.podSelector".into(),
                id.clone(),
                format!(
                    "podSelector {{{}}} selects no endpoint in namespace {}",
                    policy.pod_selector, policy.namespace
                ),
            );
        }
        for direction in [Direction::Ingress, Direction::Egress] {
            let rules = policy.rules(direction);
            if !policy.isolates(direction) && !rules.is_empty() {
                l.push_at(
                    Check::RulesIgnoredByPolicyTypes,
                    loc.clone(),
                    format!("spec.{direction}"),
                    id.clone(),
                    format!(
                        "{} {direction} rule(s) are ignored: policyTypes does not list {}",
                        rules.len(),
                        if direction == Direction::Ingress {
                            "Ingress"
                        } else {
                            "Egress"
                        }
                    ),
                );
                continue;
            }
            // A default-deny (every pod, no rules) is the baseline it looks like; only a
            // deny-all on a narrower selector is worth a note.
            if policy.isolates(direction)
                && rules.is_empty()
                && !targets.is_empty()
                && !policy.pod_selector.is_empty()
            {
                l.push(Check::DenyAllDirection, loc.clone(), id.clone(), format!("denies all {direction} of the {} endpoint(s) it selects (no {direction} rules)", targets.len()));
            }
            if !policy.isolates(direction) {
                continue;
            }
            for (k, rule) in rules.iter().enumerate() {
                lint_rule(&mut l, pi, direction, k, rule, &targets, &outside);
            }
            for k in 0..rules.len() {
                if let Some(by) = (0..rules.len()).find(|&j| {
                    j != k
                        && covers(
                            l.engine, pi, direction, &rules[j], &rules[k], &targets, &outside,
                        )
                        && (j < k
                            || !covers(
                                l.engine, pi, direction, &rules[k], &rules[j], &targets, &outside,
                            ))
                }) {
                    l.push_at(
                        Check::RuleShadowed,
                        loc.clone(),
                        rule_path(direction, k),
                        id.clone(),
                        format!(
                            "{} adds nothing: {} admits everything it admits",
                            rule_path(direction, k),
                            rule_path(direction, by)
                        ),
                    );
                }
            }
        }
    }
    tiers(&mut l, &outside);
    redundant_policies(&mut l, &outside);
    egress_dns(&mut l, &outside);
    default_deny(&mut l);
    audited(&mut l, would_drop);
    l.out
        .sort_by(|a, b| (&a.location, a.code).cmp(&(&b.location, b.code)));
    l.out
}

/// Audited policies: said as such, and with the agents' counters, ready or not.
fn audited(l: &mut Linter, would_drop: Option<&std::collections::BTreeMap<String, u64>>) {
    let field = format!("metadata.annotations[\"{}\"]", weir_model::MODE_ANNOTATION);
    for policy in &l.cluster.policies {
        if policy.mode != weir_model::Mode::Audit {
            continue;
        }
        let (loc, id) = (policy.origin.to_string(), policy.id());
        let counted = would_drop.and_then(|m| m.get(&id).copied());
        let (check, message) = match (would_drop, counted) {
            (None, _) => (
                Check::AuditedPolicy,
                "audited: it drops nothing; the agents count and log what it would drop".into(),
            ),
            (Some(_), None) => (
                Check::AuditedPolicy,
                "audited, and not counted by the agents given: none of them programs a pod it isolates alone".into(),
            ),
            (Some(_), Some(0)) => (
                Check::AuditReadyToEnforce,
                "audited, and the agents counted no packet it would drop: enforcing it would have changed nothing they saw".into(),
            ),
            (Some(_), Some(n)) => (
                Check::AuditWouldDrop,
                format!("audited, and the agents counted {n} packet(s) it would drop: enforcing it now would drop them"),
            ),
        };
        l.push_at(check, loc, field.clone(), id, message);
    }
}

fn lint_rule(
    l: &mut Linter,
    pi: usize,
    direction: Direction,
    k: usize,
    rule: &Rule,
    targets: &[usize],
    outside: &[IpAddr],
) {
    let policy = &l.cluster.policies[pi];
    let (loc, id) = (policy.origin.to_string(), policy.id());
    let path = rule_path(direction, k);
    let word = if direction == Direction::Ingress {
        "from"
    } else {
        "to"
    };
    if rule.peers.is_empty() && rule.ports.is_empty() {
        l.push_at(Check::AllowAllRule, loc.clone(), path.clone(), id.clone(), format!("{path} is `{{}}`: it allows all {direction} traffic, from every peer on every port"));
    }
    for (j, peer) in rule.peers.iter().enumerate() {
        let members: Vec<usize> = (0..l.cluster.endpoints.len())
            .filter(|&i| {
                l.engine.peer_matches(
                    peer,
                    &policy.namespace,
                    Side::Endpoint(i),
                    l.cluster.endpoints[i].primary_is_v6(),
                )
            })
            .collect();
        match peer {
            Peer::Pods { .. } if members.is_empty() => l.push_at(
                Check::PeerMatchesNothing,
                loc.clone(),
                format!("{path}.{word}[{j}]"),
                id.clone(),
                format!("{path}.{word}[{j}] matches no endpoint"),
            ),
            Peer::IpBlock { cidr, .. } if !members.is_empty() => {
                let names: Vec<String> = members
                    .iter()
                    .take(3)
                    .map(|&i| l.cluster.endpoints[i].id())
                    .collect();
                l.push_at(Check::IpblockCoversPods, loc.clone(), format!("{path}.{word}[{j}]"), id.clone(), format!("{path}.{word}[{j}] ipBlock {cidr} covers the IPs of {} endpoint(s) ({}{}): CNIs differ on whether ipBlock matches pod IPs",
                        members.len(), names.join(", "), if members.len() > 3 { ", …" } else { "" }));
            }
            _ => {}
        }
    }
    // Named ports resolve on the destination: the selected pods (ingress) or the peers (egress).
    let dsts: Vec<Side> = match direction {
        Direction::Ingress => targets.iter().map(|&i| Side::Endpoint(i)).collect(),
        Direction::Egress => destinations(l, pi, rule, outside),
    };
    for (j, p) in rule.ports.iter().enumerate() {
        if let Some(PortRef::Named(name)) = &p.port {
            let resolved = dsts.iter().any(|d| match d {
                Side::Endpoint(i) => {
                    !resolve_ports(std::slice::from_ref(p), &l.cluster.endpoints[*i].ports)
                        .is_empty()
                }
                Side::Address(_) => false,
            });
            if !resolved {
                l.push_at(
                    Check::NamedPortUnresolved,
                    loc.clone(),
                    format!("{path}.ports[{j}]"),
                    id.clone(),
                    format!(
                        "{path}.ports[{j}]: no destination has a {} containerPort named {name:?}",
                        p.protocol
                    ),
                );
            }
        }
    }
}

/// The destinations an egress rule can admit: matching endpoints and outside addresses.
fn destinations(l: &Linter, pi: usize, rule: &Rule, outside: &[IpAddr]) -> Vec<Side> {
    let policy = &l.cluster.policies[pi];
    let mut out: Vec<Side> = Vec::new();
    for i in 0..l.cluster.endpoints.len() {
        let node = Side::Endpoint(i);
        let v6 = l.cluster.endpoints[i].primary_is_v6();
        if rule.peers.is_empty()
            || rule
                .peers
                .iter()
                .any(|p| l.engine.peer_matches(p, &policy.namespace, node, v6))
        {
            out.push(node);
        }
    }
    for &ip in outside {
        let node = Side::Address(ip);
        if rule.peers.is_empty()
            || rule.peers.iter().any(|p| {
                l.engine
                    .peer_matches(p, &policy.namespace, node, ip.is_ipv6())
            })
        {
            out.push(node);
        }
    }
    out
}

/// Does rule `a` admit everything rule `b` admits (same policy and direction)?
fn covers(
    engine: &Engine,
    pi: usize,
    direction: Direction,
    a: &Rule,
    b: &Rule,
    targets: &[usize],
    outside: &[IpAddr],
) -> bool {
    let cluster = engine.cluster();
    let policy = &cluster.policies[pi];
    let peers: Vec<Side> = (0..cluster.endpoints.len())
        .map(Side::Endpoint)
        .chain(outside.iter().map(|&ip| Side::Address(ip)))
        .collect();
    let admits = |rule: &Rule, peer: Side| {
        let v6 = match peer {
            Side::Endpoint(i) => cluster.endpoints[i].primary_is_v6(),
            Side::Address(ip) => ip.is_ipv6(),
        };
        rule.peers.is_empty()
            || rule
                .peers
                .iter()
                .any(|p| engine.peer_matches(p, &policy.namespace, peer, v6))
    };
    let ports_of = |rule: &Rule, dst: Side| -> PortSet {
        match dst {
            Side::Endpoint(i) => resolve_ports(&rule.ports, &cluster.endpoints[i].ports),
            Side::Address(_) => resolve_ports(&rule.ports, &[]),
        }
    };
    let subset = |x: &PortSet, y: &PortSet| x.union(y) == *y;
    for &peer in &peers {
        if !admits(b, peer) {
            continue;
        }
        if !admits(a, peer) {
            return false;
        }
        let dsts: Vec<Side> = match direction {
            Direction::Ingress => targets.iter().map(|&i| Side::Endpoint(i)).collect(),
            Direction::Egress => vec![peer],
        };
        if dsts
            .iter()
            .any(|&d| !subset(&ports_of(b, d), &ports_of(a, d)))
        {
            return false;
        }
    }
    true
}

/// A policy whose removal changes no verdict between any endpoint and any endpoint or
/// outside representative.
fn redundant_policies(l: &mut Linter, outside: &[IpAddr]) {
    let n = l.cluster.endpoints.len();
    let cost = l.cluster.policies.len() * (n + outside.len()) * n;
    if cost > REDUNDANCY_BUDGET {
        l.push(
            Check::PolicyRedundant,
            String::new(),
            "(all policies)".into(),
            format!(
                "redundancy not checked: {} policies × {n} endpoints is over the budget",
                l.cluster.policies.len()
            ),
        );
        l.out.last_mut().expect("just pushed").severity = Severity::Info;
        return;
    }
    let nodes: Vec<Side> = (0..n)
        .map(Side::Endpoint)
        .chain(outside.iter().map(|&ip| Side::Address(ip)))
        .collect();
    for pi in 0..l.cluster.policies.len() {
        let policy = &l.cluster.policies[pi];
        let targets: Vec<usize> = (0..n).filter(|&i| l.engine.selects(policy, i)).collect();
        if targets.is_empty() || is_default_deny(policy) {
            continue; // already W001; a default-deny protects pods that are not there yet
        }
        let mut without = l.cluster.clone();
        without.policies.remove(pi);
        let other = Engine::with_options(&without, l.engine.options());
        let same = targets.iter().all(|&t| {
            let t = Side::Endpoint(t);
            nodes.iter().all(|&x| {
                l.engine.allowed(x, t) == other.allowed(x, t)
                    && l.engine.allowed(t, x) == other.allowed(t, x)
            })
        });
        if same {
            l.push_at(Check::PolicyRedundant, policy.origin.to_string(), "metadata.name".into(), policy.id(), "removing this policy changes no connection: other policies already isolate and allow exactly the same".into());
        }
    }
}

/// Every pod of the namespace, no rules: the baseline of a namespace, never redundant.
fn is_default_deny(p: &weir_model::Policy) -> bool {
    p.pod_selector.is_empty() && p.ingress.is_empty() && p.egress.is_empty()
}

/// Endpoints isolated for egress that can resolve no name: no UDP/53 and no TCP/53 anywhere.
fn egress_dns(l: &mut Linter, outside: &[IpAddr]) {
    let n = l.cluster.endpoints.len();
    for i in 0..n {
        let isolating: Vec<&weir_model::Policy> = l
            .cluster
            .policies
            .iter()
            .filter(|p| p.isolates_egress && l.engine.selects(p, i))
            .collect();
        let Some(first) = isolating.first() else {
            continue;
        };
        let src = Side::Endpoint(i);
        let dns = |proto| {
            (0..n)
                .filter(|&d| d != i)
                .map(Side::Endpoint)
                .chain(outside.iter().map(|&ip| Side::Address(ip)))
                .any(|d| l.engine.allowed(src, d).contains(proto, 53))
        };
        for (proto, name) in [(Protocol::Udp, "UDP"), (Protocol::Tcp, "TCP")] {
            if !dns(proto) {
                let ids: Vec<String> = isolating.iter().map(|p| p.id()).collect();
                l.push(Check::EgressWithoutDns, first.origin.to_string(), l.cluster.endpoints[i].id(), format!("egress is isolated (by {}) and {name} 53 is allowed to no destination: DNS lookups will fail", ids.join(", ")));
            }
        }
    }
}

/// Namespaces with endpoints but no policy that selects all pods and isolates ingress with
/// no rules (the default-deny baseline).
fn default_deny(l: &mut Linter) {
    for ns in &l.cluster.namespaces {
        let has_endpoints = l
            .cluster
            .endpoints
            .iter()
            .any(|e| e.namespace == ns.name && !e.host_network);
        let deny = l
            .cluster
            .policies
            .iter()
            .any(|p| p.namespace == ns.name && p.is_default_deny_ingress());
        if has_endpoints && !deny {
            // Its Namespace object's name, when the input had one.
            let (at, field) = match &ns.origin {
                Some(o) => (o.to_string(), "metadata.name".to_string()),
                None => (String::new(), String::new()),
            };
            l.push_at(Check::NamespaceWithoutDefaultDeny, at, field, ns.name.clone(), format!("namespace {} has endpoints but no default-deny ingress policy: anything not isolated by another policy accepts all traffic", ns.name));
        }
    }
}

/// How many (rule × subject × peer) evaluations the tier checks may cost before the
/// shadowing check is skipped.
const TIER_BUDGET: usize = 4_000_000;

/// Findings about cluster policies: shadowed rules, priority ties, Pass with nothing below.
fn tiers(l: &mut Linter, outside: &[IpAddr]) {
    use weir_model::{Action, Tier};
    let cluster = l.cluster;
    let n = cluster.endpoints.len();
    let subjects: Vec<Vec<usize>> = cluster
        .cluster_policies
        .iter()
        .map(|p| (0..n).filter(|&i| l.engine.subject_selects(p, i)).collect())
        .collect();
    let peers: Vec<Side> = (0..n)
        .map(Side::Endpoint)
        .chain(outside.iter().map(|&ip| Side::Address(ip)))
        .collect();
    let rules: usize = cluster
        .cluster_policies
        .iter()
        .map(|p| p.ingress.len() + p.egress.len())
        .sum();
    let affordable = rules * n * peers.len() <= TIER_BUDGET;
    for (pi, policy) in cluster.cluster_policies.iter().enumerate() {
        let (loc, id) = (policy.origin.to_string(), policy.id());
        for direction in [Direction::Ingress, Direction::Egress] {
            let list = policy.rules(direction);
            // What each rule matches, per (subject, peer): a rule whose matches the rules
            // before it always took first never decides anything.
            if affordable && !subjects[pi].is_empty() {
                let mut taken: Vec<PortSet> =
                    vec![PortSet::none(); subjects[pi].len() * peers.len()];
                for (k, rule) in list.iter().enumerate() {
                    let mut fresh = false;
                    let mut any = false;
                    for (si, &s) in subjects[pi].iter().enumerate() {
                        for (pj, &peer) in peers.iter().enumerate() {
                            let m = tier_rule_matches(l.engine, direction, rule, s, peer);
                            if m.is_empty() {
                                continue;
                            }
                            any = true;
                            let slot = &mut taken[si * peers.len() + pj];
                            if !m.difference(slot).is_empty() {
                                fresh = true;
                                *slot = slot.union(&m);
                            }
                        }
                    }
                    if any && !fresh {
                        l.push_at(
                            Check::TierRuleShadowed,
                            loc.clone(),
                            rule_path(direction, k),
                            id.clone(),
                            format!(
                                "{} ({}) never decides: the rules before it in this policy match all its traffic first",
                                rule_path(direction, k),
                                rule.action
                            ),
                        );
                    }
                }
            }
            let word = if direction == Direction::Ingress {
                "from"
            } else {
                "to"
            };
            for (k, rule) in list.iter().enumerate() {
                for (j, peer) in rule.peers.iter().enumerate() {
                    let weir_model::ClusterPeer::Pods(_) = peer else {
                        continue;
                    };
                    let none = (0..n).all(|i| {
                        !l.engine.cluster_peer_matches(
                            peer,
                            Side::Endpoint(i),
                            cluster.endpoints[i].primary_is_v6(),
                        )
                    });
                    if none {
                        l.push_at(
                            Check::PeerMatchesNothing,
                            loc.clone(),
                            format!("{}.{word}[{j}]", rule_path(direction, k)),
                            id.clone(),
                            format!(
                                "{}.{word}[{j}] matches no endpoint",
                                rule_path(direction, k)
                            ),
                        );
                    }
                }
            }
            // Pass: the NetworkPolicies and the Baseline tier decide; if neither applies to
            // any pod the policy selects, the Pass is an Accept in disguise.
            if policy.tier == Tier::Admin {
                for (k, rule) in list.iter().enumerate() {
                    if rule.action != Action::Pass || subjects[pi].is_empty() {
                        continue;
                    }
                    let below = subjects[pi].iter().any(|&s| {
                        cluster
                            .policies
                            .iter()
                            .any(|np| np.isolates(direction) && l.engine.selects(np, s))
                            || cluster.cluster_policies.iter().any(|b| {
                                b.tier == Tier::Baseline
                                    && !b.rules(direction).is_empty()
                                    && l.engine.subject_selects(b, s)
                            })
                    });
                    if !below {
                        l.push_at(
                            Check::PassToNothing,
                            loc.clone(),
                            rule_path(direction, k),
                            id.clone(),
                            format!(
                                "{} passes to NetworkPolicies and the Baseline tier, but neither has {direction} rules for the {} pod(s) this policy selects",
                                rule_path(direction, k),
                                subjects[pi].len()
                            ),
                        );
                    }
                }
            }
        }
        // Equal priorities in one tier over common pods, both with rules in one direction.
        for (qi, other) in cluster.cluster_policies.iter().enumerate().skip(pi + 1) {
            if other.tier != policy.tier || other.priority != policy.priority {
                continue;
            }
            let common = subjects[pi]
                .iter()
                .filter(|s| subjects[qi].contains(s))
                .count();
            let both = [Direction::Ingress, Direction::Egress]
                .into_iter()
                .find(|&d| !policy.rules(d).is_empty() && !other.rules(d).is_empty());
            if let (true, Some(d)) = (common > 0, both) {
                l.push_at(
                    Check::TierPriorityTie,
                    loc.clone(),
                    "spec.priority".into(),
                    id.clone(),
                    format!(
                        "{} priority {} is also {}'s ({}), and both have {d} rules for {common} common pod(s)",
                        policy.tier,
                        policy.priority,
                        other.id(),
                        other.origin
                    ),
                );
            }
        }
    }
}

/// The ports a cluster policy rule matches between subject `s` and `peer` (none if the
/// peer does not match), resolved on the destination.
fn tier_rule_matches(
    engine: &Engine,
    direction: Direction,
    rule: &weir_model::ClusterRule,
    s: usize,
    peer: Side,
) -> PortSet {
    let (dst, v6) = match direction {
        Direction::Ingress => (
            Side::Endpoint(s),
            engine.cluster().endpoints[s].primary_is_v6(),
        ),
        Direction::Egress => (peer, crate::family_of(engine.cluster(), peer)),
    };
    if peer == Side::Endpoint(s)
        || !rule
            .peers
            .iter()
            .any(|p| engine.cluster_peer_matches(p, peer, v6))
    {
        return PortSet::none();
    }
    let dst_ports: &[weir_model::ContainerPort] = match dst {
        Side::Endpoint(i) => &engine.cluster().endpoints[i].ports,
        Side::Address(_) => &[],
    };
    crate::ports::resolve_cluster_ports(rule.ports.as_deref(), dst_ports)
}
