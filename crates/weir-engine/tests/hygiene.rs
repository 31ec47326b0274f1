//! lint, diff and intents on small clusters, in the engine crate (the binary's tests check
//! the wiring; these check the answers).

use std::path::Path;

use weir_engine::diff::{diff, ChangeKind};
use weir_engine::intents::check_intents;
use weir_engine::lint::{lint, Check, Severity};
use weir_engine::Engine;
use weir_model::Cluster;

fn seed() -> Cluster {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/todos");
    weir_manifest::load_paths(&[dir], Default::default())
        .unwrap()
        .cluster
}

fn with(extra: &str) -> Cluster {
    let mut c = seed();
    let more = weir_manifest::load_str("extra.yaml", extra, Default::default())
        .unwrap()
        .cluster;
    c.policies.extend(more.policies);
    c.cluster_policies.extend(more.cluster_policies);
    c
}

#[test]
fn every_check_has_a_unique_code_name_and_a_hint() {
    let mut codes: Vec<&str> = Check::ALL.iter().map(|c| c.spec().code).collect();
    let mut names: Vec<&str> = Check::ALL.iter().map(|c| c.spec().name).collect();
    codes.sort();
    codes.dedup();
    names.sort();
    names.dedup();
    assert_eq!(codes.len(), Check::ALL.len());
    assert_eq!(names.len(), Check::ALL.len());
    for c in Check::ALL {
        let s = c.spec();
        assert!(
            !s.hint.is_empty() && !s.hint.contains("{direction}"),
            "{s:?}"
        );
        assert_eq!(
            s.severity == Severity::Info,
            s.code.starts_with('I'),
            "{s:?}"
        );
    }
}

#[test]
fn lint_finds_what_it_says() {
    // The seed: only the personal namespace lacks a default deny.
    let f = lint(&Engine::new(&seed()));
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!((f[0].code, f[0].subject.as_str()), ("I001", "personal"));
    let c = with("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: nobody, namespace: production}\nspec:\n  podSelector: {matchLabels: {app: ghost}}\n  ingress: [{}]\n");
    let f = lint(&Engine::new(&c));
    let w001 = f
        .iter()
        .find(|x| x.code == "W001")
        .expect("W001 for a policy selecting nothing");
    assert_eq!(w001.subject, "production/nobody");
    assert_eq!(w001.hint, Check::PolicySelectsNothing.spec().hint);
    assert!(
        w001.message.contains("selects no endpoint"),
        "{}",
        w001.message
    );
    assert!(
        w001.location.starts_with("extra.yaml:1:1"),
        "{}",
        w001.location
    );
}

/// A cluster policy added or edited is named in the changes it makes, as `Kind/name`;
/// one that changes nothing a connection sees is not.
#[test]
fn diff_names_the_cluster_policies_that_changed_a_connection() {
    let before = seed();
    let guard = |priority: u16| {
        with(&format!(
            "apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata: {{name: guard}}\nspec:\n  tier: Admin\n  priority: {priority}\n  subject: {{namespaces: {{matchLabels: {{kubernetes.io/metadata.name: production}}}}}}\n  ingress:\n  - name: no-personal\n    action: Deny\n    from: [{{namespaces: {{matchLabels: {{kubernetes.io/metadata.name: personal}}}}}}]\n"
        ))
    };
    let after = guard(10);
    let changes = diff(&Engine::new(&before), &Engine::new(&after));
    let todos = changes
        .iter()
        .find(|c| c.from == "personal/ubuntu" && c.to == "production/todos")
        .expect("personal loses todos");
    assert_eq!(todos.kind, ChangeKind::Removed);
    assert_eq!(
        todos.policies,
        vec!["ClusterNetworkPolicy/guard".to_string()]
    );
    assert!(
        changes.iter().all(|c| c.from.starts_with("personal/")
            && c.policies
                .contains(&"ClusterNetworkPolicy/guard".to_string())),
        "{changes:#?}"
    );
    // Its priority alone changes no connection: no change, so nothing named.
    assert!(diff(&Engine::new(&after), &Engine::new(&guard(20))).is_empty());
    // Removed: named again, in the old version's terms.
    let back = diff(&Engine::new(&after), &Engine::new(&before));
    assert!(
        back.iter()
            .any(|c| c.to == "production/todos" && c.policies == ["ClusterNetworkPolicy/guard"]),
        "{back:#?}"
    );
}

#[test]
fn diff_names_the_connections_a_change_opens() {
    let before = seed();
    let mut after = seed();
    after.policies.retain(|p| p.name != "data-from-logic-redis");
    let changes = diff(&Engine::new(&before), &Engine::new(&after));
    // Without its allow, redis keeps the default deny: the logic tier loses TCP 6379.
    assert!(!changes.is_empty());
    assert!(
        changes.iter().all(|c| c.to == "production/redis"),
        "{changes:#?}"
    );
    assert!(changes
        .iter()
        .any(|c| c.from == "production/todos" && c.kind == ChangeKind::Removed));
    assert!(changes.iter().all(|c| c
        .policies
        .iter()
        .any(|p| p.contains("data-from-logic-redis"))));
    assert!(diff(&Engine::new(&before), &Engine::new(&before)).is_empty());
}

/// Outside traffic is named as `analyze` names it — the range of addresses the change holds
/// for — never by the address the engine happened to evaluate (`192.0.2.1`).
#[test]
fn diff_names_outside_addresses_by_the_range_they_stand_for() {
    let before = seed();
    let after = with("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: office, namespace: production}\nspec:\n  podSelector: {matchLabels: {networking/data: \"true\"}}\n  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}}]}]\n");
    let changes = diff(&Engine::new(&before), &Engine::new(&after));
    let outside: Vec<&str> = changes
        .iter()
        .filter(|c| c.from.starts_with(|ch: char| ch.is_ascii_digit()))
        .map(|c| c.from.as_str())
        .collect();
    assert_eq!(outside, ["10.0.0.0/8 except 10.1.0.0/16"], "{changes:#?}");
    assert!(
        changes
            .iter()
            .all(|c| !c.from.starts_with("192.0.2.") && !c.to.starts_with("192.0.2.")),
        "{changes:#?}"
    );
}

#[test]
fn intents_pass_on_the_seed_and_fail_when_redis_opens() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/todos/intents.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    let intents = weir_manifest::intents::load_intents("intents.yaml", &text).unwrap();
    let c = seed();
    let e = Engine::new(&c);
    let results = check_intents(&e, &e, &intents);
    assert!(results.iter().all(|r| r.passed), "{results:#?}");
    let open = with("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: open, namespace: production}\nspec:\n  podSelector: {matchLabels: {networking/data: \"true\"}}\n  ingress: [{from: [{namespaceSelector: {}}]}]\n");
    let e = Engine::new(&open);
    let failed: Vec<_> = check_intents(&e, &e, &intents)
        .into_iter()
        .filter(|r| !r.passed)
        .collect();
    assert!(!failed.is_empty());
    assert!(
        failed
            .iter()
            .flat_map(|r| &r.failures)
            .any(|f| f.contains("personal/ubuntu → production/redis")),
        "{failed:#?}"
    );
}
