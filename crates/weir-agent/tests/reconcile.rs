//! The reconciler without root: sequences of source events → what reaches the kernel,
//! through a fake kernel that records every script.

use std::time::Duration;

use weir_agent::source::{Items, MemorySource, SourceError};
use weir_agent::{Agent, Config, SourceSpec, SyncError, Target};
use weir_nft::apply::{FakeNft, Mode};

fn pod(name: &str, ns: &str, labels: &str, ip: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}, labels: {{{labels}}}}}\n\
         spec: {{containers: [{{name: c, image: x}}]}}\nstatus: {{podIP: {ip}}}\n"
    )
}

const NAMESPACES: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: prod}\n---\n\
    apiVersion: v1\nkind: Namespace\nmetadata: {name: dev}\n";

const DATA_FROM_LOGIC: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
    metadata: {name: data-from-logic, namespace: prod}\n\
    spec:\n  podSelector: {matchLabels: {tier: data}}\n  ingress:\n  - from: [{podSelector: {matchLabels: {tier: logic}}}]\n    ports: [{protocol: TCP, port: 6379}]\n";

type Fed = Agent<MemorySource, FakeNft>;

/// An agent over an empty in-memory source and `nft`, drift checks off; with `node`, the
/// agent of node `node-a`, whose pods have these addresses.
fn fed(node: Option<&[&str]>, nft: FakeNft) -> Fed {
    let mut config = Config::new(SourceSpec::Kubernetes, Target::Host);
    config.drift_interval = None;
    let mut source = MemorySource::new(Items::new(Default::default()));
    if let Some(ips) = node {
        config.node_name = Some("node-a".into());
        source.node_addresses = Some(ips.iter().map(|ip| ip.parse().unwrap()).collect());
    }
    Agent::new(config, source, nft)
}

/// The fake kernel, refusing every script that contains `text`.
fn refusing(text: &str) -> FakeNft {
    FakeNft {
        reject_containing: Some(text.into()),
        ..Default::default()
    }
}

fn agent() -> Fed {
    let mut a = fed(None, FakeNft::default());
    let source = a.source();
    source.set("namespaces", NAMESPACES);
    source.set("redis", pod("redis", "prod", "tier: data", "10.0.0.2"));
    source.set("api", pod("api", "prod", "tier: logic", "10.0.0.3"));
    source.set(
        "intruder",
        pod("intruder", "dev", "tier: logic", "10.0.0.4"),
    );
    source.set("policy", DATA_FROM_LOGIC);
    a
}

/// Scripts sent since the last call: (script, check only).
fn sent(agent: &Fed) -> Vec<(String, bool)> {
    std::mem::take(&mut *agent.enforcer().nft().scripts.lock().unwrap())
}

#[test]
fn first_reconcile_checks_then_replaces_the_table_and_later_ones_send_deltas() {
    let mut a = agent();
    let applied = a.reconcile().unwrap();
    assert_eq!(applied.mode, Mode::Full);
    let scripts = sent(&a);
    assert_eq!(scripts.len(), 2, "a check, then the transaction");
    assert!(scripts[0].1 && !scripts[1].1);
    assert!(scripts[1].0.contains("delete table inet weir"));
    assert!(
        scripts[1].0.contains("10.0.0.2 : jump ig-"),
        "redis is isolated"
    );
    assert!(scripts[1].0.contains("10.0.0.3"), "api is the allowed peer");

    // Nothing changed: nothing sent.
    assert_eq!(a.reconcile().unwrap().mode, Mode::Unchanged);
    assert!(sent(&a).is_empty());

    // A second logic pod joins the peer set: one element added, the table kept.
    a.source()
        .set("api2", pod("api2", "prod", "tier: logic", "10.0.0.5"));
    assert_eq!(a.reconcile().unwrap().mode, Mode::Delta);
    let scripts = sent(&a);
    assert_eq!(scripts.len(), 1);
    let delta = &scripts[0].0;
    assert!(!delta.contains("delete table"), "{delta}");
    assert!(
        delta.contains("add element inet weir sel-") && delta.contains("10.0.0.5"),
        "{delta}"
    );

    // The policy goes: redis is no longer isolated, its map element is deleted.
    a.source().remove("policy");
    assert_eq!(a.reconcile().unwrap().mode, Mode::Delta);
    let delta = sent(&a).remove(0).0;
    assert!(
        delta.contains("delete element inet weir ingress4 { 10.0.0.2"),
        "{delta}"
    );
}

#[test]
fn an_invalid_item_keeps_its_last_good_version_and_sends_nothing() {
    let mut a = agent();
    a.reconcile().unwrap();
    sent(&a);
    // `protocol: TCPX` is invalid: the policy's last good version stays enforced.
    a.source().set(
        "policy",
        DATA_FROM_LOGIC.replace("protocol: TCP", "protocol: TCPX"),
    );
    assert_eq!(a.reconcile().unwrap().mode, Mode::Unchanged);
    assert!(sent(&a).is_empty());
    let items = a.source().items.invalid.clone();
    assert_eq!(items.keys().collect::<Vec<_>>(), ["policy"]);
    // Fixed: a delta again (the port changed).
    a.source().set(
        "policy",
        DATA_FROM_LOGIC.replace("port: 6379", "port: 6380"),
    );
    assert_eq!(a.reconcile().unwrap().mode, Mode::Delta);
    assert!(sent(&a)[0].0.contains("6380"));
}

#[test]
fn an_invalid_item_with_no_last_good_version_programs_nothing() {
    let mut a = agent();
    a.source().set(
        "policy",
        DATA_FROM_LOGIC.replace("protocol: TCP", "protocol: TCPX"),
    );
    match a.reconcile() {
        Err(SyncError::Source(SourceError::NoLastGood { item, .. })) => assert_eq!(item, "policy"),
        other => panic!("expected NoLastGood, got {other:?}"),
    }
    assert!(sent(&a).is_empty(), "nothing reached the kernel");
}

#[test]
fn a_refused_delta_falls_back_to_a_whole_table_and_is_counted() {
    // The kernel refuses any script adding an element (as if the table had been changed
    // behind weir's back) but takes whole tables. The new item holds two pods, so the
    // table is recompiled and the difference sent.
    let mut a = fed(None, refusing("add element"));
    let source = a.source();
    source.set("namespaces", NAMESPACES);
    source.set("redis", pod("redis", "prod", "tier: data", "10.0.0.2"));
    source.set("policy", DATA_FROM_LOGIC);
    assert_eq!(a.reconcile().unwrap().mode, Mode::Full);
    sent(&a);
    a.source().set(
        "api",
        format!(
            "{}---\n{}",
            pod("api", "prod", "tier: logic", "10.0.0.3"),
            pod("api2", "prod", "tier: logic", "10.0.0.5")
        ),
    );
    let applied = a.reconcile().unwrap();
    assert_eq!(applied.mode, Mode::Full);
    assert!(applied.delta_refused.is_some());
    assert!(a
        .metrics()
        .render(&[], &[])
        .contains("weir_deltas_refused_total 1"));
}

#[test]
fn only_the_addresses_of_this_nodes_pods_are_dispatched() {
    let mut a = fed(Some(&["10.0.0.6"]), FakeNft::default());
    let source = a.source();
    source.set("namespaces", NAMESPACES);
    source.set("redis", pod("redis", "prod", "tier: data", "10.0.0.2"));
    source.set("redis2", pod("redis2", "prod", "tier: data", "10.0.0.6"));
    source.set("policy", DATA_FROM_LOGIC);
    a.reconcile().unwrap();
    let full = sent(&a).remove(1).0;
    assert!(full.contains("10.0.0.6 : jump"), "{full}");
    assert!(!full.contains("10.0.0.2 : jump"), "{full}");
}

/// A node's agent fed like the Kubernetes source (items `Pod/namespace/name`): pod events
/// are taken incrementally where they can be (pods elsewhere; this node's pods joining or
/// leaving a group another local pod keeps), the rest recompiles; after every step the
/// kernel holds what a fresh agent compiling everything would program.
#[test]
fn pod_and_policy_events_are_taken_incrementally_and_equal_a_full_compile() {
    let node = |local: &[&str]| fed(Some(local), FakeNft::default());
    let mut world: Vec<(String, Option<String>)> = vec![
        (
            "Namespace//prod".into(),
            Some("apiVersion: v1\nkind: Namespace\nmetadata: {name: prod}\n".into()),
        ),
        (
            "Namespace//dev".into(),
            Some("apiVersion: v1\nkind: Namespace\nmetadata: {name: dev}\n".into()),
        ),
        (
            "Pod/prod/redis".into(),
            Some(pod("redis", "prod", "tier: data", "10.0.0.2")),
        ),
        (
            "NetworkPolicy/prod/data-from-logic".into(),
            Some(DATA_FROM_LOGIC.into()),
        ),
    ];
    let here = ["10.0.0.2"];
    let with_redis2 = ["10.0.0.2", "10.0.0.6"];
    // (item, new text, this node's addresses after, expected incremental)
    let steps: Vec<(&str, Option<String>, &[&str], bool)> = vec![
        (
            "Pod/prod/api",
            Some(pod("api", "prod", "tier: logic", "10.0.0.3")),
            &here,
            true,
        ),
        (
            "Pod/dev/intruder",
            Some(pod("intruder", "dev", "tier: logic", "10.0.0.4")),
            &here,
            true,
        ),
        (
            "Pod/prod/api",
            Some(pod("api", "prod", "tier: web", "10.0.0.3")),
            &here,
            true,
        ),
        (
            "Pod/prod/api",
            Some(pod("api", "prod", "tier: logic", "10.0.0.7")),
            &here,
            true,
        ),
        ("Pod/prod/api", None, &here, true),
        // This node's only data pod changes group: its group chain goes, recompiled.
        (
            "Pod/prod/redis",
            Some(pod("redis", "prod", "tier: cache", "10.0.0.2")),
            &here,
            false,
        ),
        (
            "Pod/prod/redis",
            Some(pod("redis", "prod", "tier: data", "10.0.0.2")),
            &here,
            false,
        ),
        // A second replica scheduled here joins the group redis keeps: incremental.
        (
            "Pod/prod/redis2",
            Some(pod("redis2", "prod", "tier: data", "10.0.0.6")),
            &with_redis2,
            true,
        ),
        ("Pod/prod/redis2", None, &here, true),
        // Policies edited, removed, added back, added elsewhere: their namespace's part.
        (
            "NetworkPolicy/prod/data-from-logic",
            Some(DATA_FROM_LOGIC.replace("6379", "6380")),
            &here,
            true,
        ),
        ("NetworkPolicy/prod/data-from-logic", None, &here, true),
        (
            "NetworkPolicy/prod/data-from-logic",
            Some(DATA_FROM_LOGIC.into()),
            &here,
            true,
        ),
        (
            "NetworkPolicy/dev/deny",
            Some(
                DATA_FROM_LOGIC
                    .replace("namespace: prod", "namespace: dev")
                    .replace("data-from-logic", "deny"),
            ),
            &here,
            true,
        ),
        // A policy under any key (a file's name): taken as that policy, which no other
        // item holds.
        (
            "NetworkPolicy/dev/other",
            Some(
                DATA_FROM_LOGIC
                    .replace("namespace: prod", "namespace: dev")
                    .replace("data-from-logic", "x"),
            ),
            &here,
            true,
        ),
        ("NetworkPolicy/dev/other", None, &here, true),
        // A namespace's labels: its pods' elements move (intruder, in dev, enters the
        // set of a policy admitting namespaces labelled env=dev).
        (
            "NetworkPolicy/prod/from-dev",
            Some(
                "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n\
                 metadata: {name: from-dev, namespace: prod}\n\
                 spec:\n  podSelector: {matchLabels: {tier: data}}\n  ingress: [{from: [{namespaceSelector: {matchLabels: {env: dev}}}]}]\n"
                    .into(),
            ),
            &here,
            true,
        ),
        (
            "Namespace//dev",
            Some("apiVersion: v1\nkind: Namespace\nmetadata: {name: dev, labels: {env: dev}}\n".into()),
            &here,
            true,
        ),
        ("Namespace//dev", None, &here, true),
        // An item holding two namespaces: recompiled.
        ("Namespace//prod", Some(NAMESPACES.into()), &here, false),
        (
            "Pod/prod/api2",
            Some(pod("api2", "prod", "tier: logic", "10.0.0.8")),
            &here,
            true,
        ),
        // An address another pod already holds: recompiled.
        (
            "Pod/prod/api3",
            Some(pod("api3", "prod", "tier: logic", "10.0.0.8")),
            &here,
            false,
        ),
    ];
    let mut a = node(&here);
    for (k, t) in &world {
        a.source().set(k, t.as_deref().unwrap());
    }
    a.reconcile().unwrap();
    assert!(
        !a.stages.incremental,
        "the first reconcile compiles in full"
    );
    for (i, (item, text, local, incremental)) in steps.into_iter().enumerate() {
        match &text {
            Some(t) => a.source().set(item, t),
            None => a.source().remove(item),
        }
        a.source().node_addresses = Some(local.iter().map(|ip| ip.parse().unwrap()).collect());
        world.retain(|(k, _)| k != item);
        world.push((item.to_string(), text));
        a.reconcile().unwrap();
        assert_eq!(a.stages.incremental, incremental, "step {i}: {item}");
        let mut fresh = node(local);
        for (k, t) in &world {
            if let Some(t) = t {
                fresh.source().set(k, t);
            }
        }
        fresh.reconcile().unwrap();
        assert_eq!(
            a.enforcer().current(),
            fresh.enforcer().current(),
            "step {i}: {item}"
        );
    }
}

/// The drift baseline is not listed per event: once applies pause, one listing is taken;
/// a table found changed at that moment (here: gone) is replaced whole, and counted.
#[test]
fn the_drift_baseline_is_listed_once_applies_settle_and_a_changed_table_is_repaired() {
    let mut config = Config::new(SourceSpec::Kubernetes, Target::Host);
    config.drift_interval = Some(Duration::from_secs(3600));
    let mut source = MemorySource::new(Items::new(Default::default()));
    source.set("namespaces", NAMESPACES);
    source.set("redis", pod("redis", "prod", "tier: data", "10.0.0.2"));
    source.set("policy", DATA_FROM_LOGIC);
    let mut a = Agent::new(config, source, FakeNft::default());
    assert_eq!(a.reconcile().unwrap().mode, Mode::Full);
    a.source()
        .set("api", pod("api", "prod", "tier: logic", "10.0.0.3"));
    assert_eq!(a.reconcile().unwrap().mode, Mode::Delta);
    assert!(a.enforcer().baseline_stale());
    a.tick();
    assert!(
        a.enforcer().baseline_stale(),
        "applies have not settled yet"
    );
    sent(&a);
    std::thread::sleep(Duration::from_millis(250));
    // The fake kernel lists nothing: the table is gone.
    a.tick();
    let scripts = sent(&a);
    assert!(
        scripts
            .iter()
            .any(|(s, check)| !check && s.contains("delete table inet weir")),
        "replaced whole: {scripts:?}"
    );
    assert!(a
        .metrics()
        .render(&[], &[])
        .contains("weir_drift_repairs_total 1"));
}

/// An element change the kernel refuses falls back to the difference of whole rulesets,
/// then to a whole table; what is programmed stays what a fresh agent would program.
#[test]
fn a_refused_element_change_falls_back_and_stays_equal_to_a_full_compile() {
    let agent = |nft: FakeNft| {
        let mut a = fed(Some(&["10.0.0.2"]), nft);
        let source = a.source();
        source.set("Namespace//all", NAMESPACES);
        source.set(
            "Pod/prod/redis",
            pod("redis", "prod", "tier: data", "10.0.0.2"),
        );
        source.set("NetworkPolicy/prod/p", DATA_FROM_LOGIC);
        a
    };
    let mut a = agent(refusing("add element inet weir sel-"));
    a.reconcile().unwrap();
    let api = pod("api", "prod", "tier: logic", "10.0.0.9");
    a.source().set("Pod/prod/api", &api);
    let applied = a.reconcile().unwrap();
    assert!(a.stages.incremental);
    assert_eq!(
        applied.mode,
        Mode::Full,
        "replaced whole after the refusals"
    );
    assert!(
        a.metrics()
            .render(&[], &[])
            .contains("weir_deltas_refused_total 1"),
        "a refused incremental change is counted"
    );
    let mut fresh = agent(FakeNft::default());
    fresh.source().set("Pod/prod/api", &api);
    fresh.reconcile().unwrap();
    assert_eq!(a.enforcer().current(), fresh.enforcer().current());
}

/// Items named as files are (the directory source) are taken incrementally when each holds
/// one object; an object two items hold is refused as the whole cluster is.
#[test]
fn items_named_as_files_are_incremental_and_a_duplicate_is_not() {
    let mut a = fed(None, FakeNft::default());
    let source = a.source();
    source.set("ns.yaml", NAMESPACES);
    source.set("redis.yaml", pod("redis", "prod", "tier: data", "10.0.0.2"));
    source.set("policy.yaml", DATA_FROM_LOGIC);
    a.reconcile().unwrap();
    a.source()
        .set("api.yaml", pod("api", "prod", "tier: logic", "10.0.0.3"));
    a.reconcile().unwrap();
    assert!(a.stages.incremental, "one pod in one file");
    // The same pod in a second file: the cluster is invalid, nothing new is applied.
    sent(&a);
    a.source().set(
        "api-copy.yaml",
        pod("api", "prod", "tier: logic", "10.0.0.3"),
    );
    assert!(a.reconcile().is_err(), "a duplicate fails as a whole");
    assert!(sent(&a).is_empty(), "nothing reached the kernel");
    // The copy goes: the original is what holds, taken in full once, then incrementally.
    a.source().remove("api-copy.yaml");
    a.reconcile().unwrap();
    assert!(!a.stages.incremental);
    a.source()
        .set("api.yaml", pod("api", "prod", "tier: web", "10.0.0.3"));
    a.reconcile().unwrap();
    assert!(a.stages.incremental);
    let mut fresh = fed(None, FakeNft::default());
    for (k, t) in [
        ("ns.yaml", NAMESPACES.to_string()),
        ("redis.yaml", pod("redis", "prod", "tier: data", "10.0.0.2")),
        ("policy.yaml", DATA_FROM_LOGIC.to_string()),
        ("api.yaml", pod("api", "prod", "tier: web", "10.0.0.3")),
    ] {
        fresh.source().set(k, t);
    }
    fresh.reconcile().unwrap();
    assert_eq!(a.enforcer().current(), fresh.enforcer().current());
}
