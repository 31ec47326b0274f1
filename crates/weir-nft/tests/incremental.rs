//! The incremental ruleset against the full compile: after every event of random sequences
//! (pods added, removed, relabelled, moved between addresses, on this node or others, in
//! namespaces with or without an object; policies added, edited, removed; namespaces
//! relabelled, their objects removed), the ruleset kept by [`Incremental`] equals compiling
//! the resulting cluster from scratch, and the change it reports is exactly the difference.

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use weir_engine::{Engine, Options};
use weir_gen::scenario;
use weir_model::{Cluster, Endpoint, Policy, NAMESPACE_NAME_LABEL};
use weir_nft::{compile_with, CompileOptions, Incremental, Scope};

static ACCEPTED: AtomicUsize = AtomicUsize::new(0);
static REFUSED: AtomicUsize = AtomicUsize::new(0);
static POLICY_EVENTS: AtomicUsize = AtomicUsize::new(0);

fn full(
    cluster: &Cluster,
    engine: Options,
    local: &HashSet<IpAddr>,
    o: &CompileOptions,
) -> weir_nft::Ruleset {
    compile_with(
        &Engine::with_options(cluster, engine),
        Scope::Addresses(local),
        o,
    )
}

/// What one event does to the cluster: (endpoint id, its new version or None).
fn event(
    cluster: &Cluster,
    k: usize,
    kind: u8,
    mut ep: Endpoint,
    target: usize,
) -> (String, Option<Endpoint>) {
    let existing = (!cluster.endpoints.is_empty())
        .then(|| &cluster.endpoints[target % cluster.endpoints.len()]);
    match (kind, existing) {
        (1, Some(e)) => (e.id(), None),
        (2, Some(e)) => {
            // Same pod, new labels, ports and addresses.
            ep.namespace = e.namespace.clone();
            ep.name = e.name.clone();
            (e.id(), Some(ep))
        }
        (3, Some(e)) => {
            let mut relabelled = e.clone();
            relabelled.labels = ep.labels;
            (e.id(), Some(relabelled))
        }
        _ => {
            ep.name = format!("new{k}");
            (ep.id(), Some(ep))
        }
    }
}

fn apply(cluster: &mut Cluster, id: &str, new: Option<Endpoint>) {
    cluster.endpoints.retain(|e| e.id() != id);
    cluster.endpoints.extend(new);
}

/// What one policy event does: kind 0 edits policy `target` (same namespace and name),
/// 1 removes it, anything else (or no policy to pick) adds `p` as a new policy.
fn policy_event(
    cluster: &Cluster,
    k: usize,
    kind: u8,
    mut p: Policy,
    target: usize,
) -> (String, Option<Policy>) {
    let existing =
        (!cluster.policies.is_empty()).then(|| &cluster.policies[target % cluster.policies.len()]);
    match (kind, existing) {
        (0, Some(old)) => {
            p.namespace = old.namespace.clone();
            p.name = old.name.clone();
            (old.id(), Some(p))
        }
        (1, Some(old)) => (old.id(), None),
        _ => {
            p.name = format!("new{k}");
            (p.id(), Some(p))
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]
    #[test]
    fn incremental_equals_the_full_compile_after_every_event(
        cluster in scenario::cluster(),
        local_pick in proptest::collection::vec(proptest::bool::weighted(0.3), 8),
        events in proptest::collection::vec((0u8..12, scenario::endpoint(), scenario::policy(), 0usize..8), 1..20),
        ipblock_matches_pods in proptest::bool::weighted(0.8),
        fail_closed in any::<bool>(),
        audit in proptest::bool::weighted(0.2),
    ) {
        let engine = Options { ipblock_matches_pods };
        let options = CompileOptions {
            pod_interfaces: fail_closed.then(|| "wp*".parse().unwrap()),
            log_group: fail_closed.then_some(3),
            audit,
        };
        let local: HashSet<IpAddr> = cluster
            .endpoints
            .iter()
            .zip(&local_pick)
            .filter(|(_, pick)| **pick)
            .flat_map(|(e, _)| e.ips.iter().copied())
            .collect();
        let mut local = local;
        let mut truth = cluster.clone();
        let mut inc = Incremental::new(cluster, engine, Some(local.clone()), options.clone());
        prop_assert_eq!(inc.ruleset(), &full(&truth, engine, &local, &options));
        for (k, (kind, (mut ep, _), policy, target)) in events.into_iter().enumerate() {
            let previous = inc.ruleset().clone();
            // Each event: applied to the truth and to `inc`, which reports the change as
            // the nft script that makes it (or refuses).
            let (what, result) = match kind {
                9 | 10 => {
                    // A namespace relabelled (9) or its object removed (10): as the model
                    // completes it, the name label stays.
                    let count = truth.namespaces.len();
                    let ns = &mut truth.namespaces[target % count];
                    let name = ns.name.clone();
                    let labels = (kind == 9).then(|| ep.labels.clone());
                    ns.labels = labels.clone().unwrap_or_default();
                    ns.labels.insert(NAMESPACE_NAME_LABEL.to_string(), name.clone());
                    (name.clone(), inc.namespace(&name, labels).map(|c| c.render()))
                }
                6..=8 => {
                    // A policy edited, removed, added.
                    let (id, new) = policy_event(&truth, k, kind - 6, policy, target);
                    truth.policies.retain(|p| p.id() != id);
                    truth.policies.extend(new.clone());
                    let result = inc.policy(&id, new);
                    if let Ok(delta) = &result {
                        POLICY_EVENTS.fetch_add(1, Ordering::Relaxed);
                        // Exactly the difference to what it held.
                        prop_assert_eq!(delta, &inc.ruleset().diff(&previous).unwrap());
                    }
                    (id, result.map(|d| d.render(&previous)))
                }
                _ => {
                    // Kinds 4 and 5: a pod scheduled onto this node, a pod of this node
                    // deleted; the node's addresses change with them. Kind 11: a pod in a
                    // namespace no object describes (yet): the model completes it.
                    if kind == 11 {
                        ep.namespace = "extra".into();
                        if !truth.namespaces.iter().any(|n| n.name == "extra") {
                            truth.namespaces.push(weir_model::Namespace {
                                name: "extra".into(),
                                labels: [(NAMESPACE_NAME_LABEL.to_string(), "extra".to_string())].into(),
                                origin: None,
                            });
                        }
                    }
                    let base = match kind {
                        4 | 11 => 0, // added
                        5 => 1, // removed
                        other => other,
                    };
                    let (id, new) = event(&truth, k, base, ep, target);
                    let old_ips: Vec<IpAddr> = truth.endpoints.iter().filter(|e| e.id() == id).flat_map(|e| e.ips.clone()).collect();
                    let node_change = kind >= 4;
                    if node_change {
                        for ip in &old_ips {
                            local.remove(ip);
                        }
                        if kind != 5 {
                            local.extend(new.iter().flat_map(|e| e.ips.iter().copied()));
                        }
                    }
                    apply(&mut truth, &id, new.clone());
                    let result = if node_change {
                        inc.endpoint_on_node(&id, new, local.clone())
                    } else {
                        inc.endpoint(&id, new)
                    };
                    (id, result.map(|c| c.render()))
                }
            };
            match result {
                Ok(script) => {
                    ACCEPTED.fetch_add(1, Ordering::Relaxed);
                    // The change it reports is exactly the delta to what it held.
                    prop_assert_eq!(script, inc.ruleset().delta(&previous).unwrap());
                }
                Err(_) => {
                    REFUSED.fetch_add(1, Ordering::Relaxed);
                    inc = Incremental::new(truth.clone(), engine, Some(local.clone()), options.clone());
                }
            }
            prop_assert_eq!(inc.ruleset(), &full(&truth, engine, &local, &options), "after event {} (kind {}) on {}", k, kind, what);
        }
    }
}

/// The property above must not hold vacuously: most generated events are accepted.
#[test]
fn most_generated_events_are_taken_incrementally() {
    incremental_equals_the_full_compile_after_every_event();
    let (a, r, p) = (
        ACCEPTED.load(Ordering::Relaxed),
        REFUSED.load(Ordering::Relaxed),
        POLICY_EVENTS.load(Ordering::Relaxed),
    );
    assert!(a > r, "accepted {a}, refused {r}");
    assert!(p > 1000, "policy events accepted: {p}");
}

#[test]
fn a_pod_moves_only_its_own_elements_and_the_last_of_a_group_is_refused() {
    let text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: prod}\n---\n\
        apiVersion: v1\nkind: Pod\nmetadata: {name: redis, namespace: prod, labels: {tier: data}}\nspec: {containers: [{name: c, image: x}]}\nstatus: {podIP: 10.0.0.2}\n---\n\
        apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: prod}\n\
        spec:\n  podSelector: {matchLabels: {tier: data}}\n  ingress: [{from: [{podSelector: {matchLabels: {tier: logic}}}]}]\n";
    let cluster = weir_manifest::load_str("t.yaml", text, Default::default())
        .unwrap()
        .cluster;
    let local: HashSet<IpAddr> = ["10.0.0.2".parse().unwrap()].into();
    let mut inc = Incremental::new(
        cluster,
        Options::default(),
        Some(local),
        CompileOptions::default(),
    );
    let before = inc.ruleset().clone();
    let mut api = inc.cluster().endpoints[0].clone();
    api.name = "api".into();
    api.labels = [("tier".to_string(), "logic".to_string())].into();
    api.ips = vec!["10.0.0.9".parse().unwrap()];
    let changes = inc.endpoint("prod/api", Some(api.clone())).unwrap();
    let delta = inc.ruleset().delta(&before).unwrap();
    assert_eq!(changes.render(), delta);
    assert!(
        delta.starts_with("add element inet weir sel-") && delta.contains("10.0.0.9"),
        "{delta}"
    );
    assert_eq!(delta.lines().count(), 1, "{delta}");
    // This node's own pod: refused, nothing changed.
    let after = inc.ruleset().clone();
    let mut redis = inc.cluster().endpoints[0].clone();
    redis.labels.clear();
    assert!(inc.endpoint("prod/redis", Some(redis)).is_err());
    assert_eq!(inc.ruleset(), &after);
    // The remote pod leaves again.
    inc.endpoint("prod/api", None).unwrap();
    assert_eq!(inc.ruleset(), &before);
    // A second replica scheduled onto this node joins the group chain the first one has:
    // one dispatch entry, taken incrementally.
    let mut redis2 = inc.cluster().endpoints[0].clone();
    redis2.name = "redis2".into();
    redis2.ips = vec!["10.0.0.3".parse().unwrap()];
    let node: HashSet<IpAddr> = ["10.0.0.2".parse().unwrap(), "10.0.0.3".parse().unwrap()].into();
    let changes = inc
        .endpoint_on_node("prod/redis2", Some(redis2), node)
        .unwrap();
    let entry = changes.added["ingress4"].iter().next().unwrap().clone();
    assert!(entry.starts_with("10.0.0.3 : jump ig-"), "{entry}");
    assert!(before.sets["ingress4"]
        .elements
        .iter()
        .any(|e| e.starts_with("10.0.0.2 : jump ig-")
            && e.ends_with(entry.rsplit_once(' ').unwrap().1)));
}

/// A policy's edit recompiles its namespace's part of the table: a named-port set whose
/// name stays (same rule, same ports) holds the pods the edited selector picks, and what
/// the edit leaves unused goes.
#[test]
fn a_policy_edit_moves_its_named_port_set_and_removes_what_nothing_uses() {
    let pod = |name: &str, tier: &str, ip: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: prod, labels: {{tier: {tier}}}}}\n\
             spec: {{containers: [{{name: c, image: x, ports: [{{name: db, containerPort: 6379}}]}}]}}\nstatus: {{podIP: {ip}}}\n---\n"
        )
    };
    let policy = |tier: &str| {
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p, namespace: prod}}\n\
             spec:\n  podSelector: {{matchLabels: {{tier: {tier}}}}}\n  ingress: [{{from: [{{podSelector: {{matchLabels: {{tier: {tier}}}}}}}], ports: [{{port: db}}]}}]\n"
        )
    };
    let load = |p: &str| {
        let text = format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: prod}}\n---\n{}{}{p}",
            pod("redis", "data", "10.0.0.2"),
            pod("cache", "cache", "10.0.0.3")
        );
        weir_manifest::load_str("t.yaml", &text, Default::default())
            .unwrap()
            .cluster
    };
    let local: HashSet<IpAddr> = ["10.0.0.2".parse().unwrap(), "10.0.0.3".parse().unwrap()].into();
    let options = CompileOptions::default();
    let mut inc = Incremental::new(
        load(&policy("data")),
        Options::default(),
        Some(local.clone()),
        options.clone(),
    );
    let before = inc.ruleset().clone();
    let edited = load(&policy("cache"));
    let delta = inc
        .policy("prod/p", Some(edited.policies[0].clone()))
        .unwrap();
    assert_eq!(
        inc.ruleset(),
        &full(&edited, Options::default(), &local, &options)
    );
    let script = delta.render(&before);
    // The named-port set keeps its name and swaps redis's element for cache's.
    assert!(
        script.contains("delete element inet weir npin-") && script.contains("10.0.0.2 . 6 . 6379"),
        "{script}"
    );
    assert!(script.contains("10.0.0.3 . 6 . 6379"), "{script}");
    // The old selector's set is used by nothing now.
    assert!(script.contains("delete set inet weir sel-"), "{script}");
    // Removed, then added back: the table is what it was.
    inc.policy("prod/p", None).unwrap();
    assert_eq!(
        inc.ruleset(),
        &full(&load(""), Options::default(), &local, &options)
    );
    inc.policy("prod/p", Some(load(&policy("data")).policies[0].clone()))
        .unwrap();
    assert_eq!(inc.ruleset(), &before);
}
