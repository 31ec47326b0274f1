//! `skip_invalid`: what fails validation is left out and reported (located), the rest loads;
//! without it, nothing loads.

use std::path::PathBuf;

use weir_manifest::{decode, load_paths, LoadError, LoadOptions, NamedText};

const SKIP: LoadOptions = LoadOptions {
    allow_unknown_fields: false,
    skip_invalid: true,
};

/// A scratch directory, removed when dropped.
struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn messy_repository(name: &str) -> Dir {
    let dir = std::env::temp_dir().join(format!("weir-skip-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let write = |f: &str, text: &[u8]| std::fs::write(dir.join(f), text).unwrap();
    write(
        "a-good.yaml",
        b"apiVersion: v1\nkind: Pod\nmetadata: {name: api, namespace: shop, labels: {app: api}}\nspec: {containers: [{name: c, image: i}]}\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny, namespace: shop}\nspec: {podSelector: {}}\n",
    );
    // One bad policy (port out of range) beside a good pod in the same file.
    write(
        "b-mixed.yaml",
        b"apiVersion: v1\nkind: Pod\nmetadata: {name: db, namespace: shop, labels: {app: db}}\nspec: {containers: [{name: c, image: i}]}\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: bad, namespace: shop}\nspec:\n  podSelector: {}\n  ingress: [{ports: [{port: 70000}]}]\n",
    );
    // Not YAML at all, not text at all, and the first file's policy again.
    write("c-broken.yaml", b"kind: [unclosed\n");
    write("d-binary.yaml", b"\xff\xfe\x00garbage");
    write(
        "e-repeat.yaml",
        b"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny, namespace: shop}\nspec: {podSelector: {matchLabels: {app: other}}}\n",
    );
    Dir(dir)
}

#[test]
fn strict_by_default_nothing_loads() {
    let dir = messy_repository("strict");
    match load_paths(&[&dir.0], LoadOptions::default()) {
        Err(LoadError::Invalid(errors)) => {
            // The first problem stops nothing: every file's errors are reported together.
            assert!(
                errors.iter().any(|e| e.file.ends_with("d-binary.yaml")),
                "{errors:#?}"
            );
        }
        other => panic!("expected invalid input, got {other:?}"),
    }
}

#[test]
fn skip_invalid_leaves_out_exactly_what_fails_and_says_where() {
    let dir = messy_repository("skip");
    let loaded = load_paths(&[&dir.0], SKIP).expect("the rest loads");
    let c = &loaded.cluster;
    let pods: Vec<String> = c.endpoints.iter().map(|e| e.id()).collect();
    assert_eq!(
        pods,
        ["shop/api", "shop/db"],
        "both good pods, the mixed file's too"
    );
    let policies: Vec<String> = c.policies.iter().map(|p| p.id()).collect();
    assert_eq!(
        policies,
        ["shop/deny"],
        "the bad policy left out, the repeat too"
    );
    // The first definition is the one kept: it selects every pod.
    assert!(c.policies[0].pod_selector.is_empty(), "{:?}", c.policies[0]);
    // Left out: the bad policy, the unparsable file, the binary file, the repeat.
    assert_eq!(loaded.left_out, 4, "{:#?}", loaded.invalid);
    let at = |file: &str| {
        loaded
            .invalid
            .iter()
            .find(|d| d.file.ends_with(file))
            .unwrap_or_else(|| panic!("nothing reported for {file}: {:#?}", loaded.invalid))
    };
    let bad = at("b-mixed.yaml");
    assert_eq!(
        (bad.line, bad.field.as_str()),
        (11, "spec.ingress[0].ports[0].port"),
        "{bad}"
    );
    assert!(at("c-broken.yaml").line >= 1);
    assert_eq!(at("d-binary.yaml").field, "(file)");
    assert!(at("e-repeat.yaml")
        .message
        .contains("duplicate NetworkPolicy shop/deny"));
}

#[test]
fn what_enforces_never_skips() {
    let source = NamedText {
        name: "p.yaml".into(),
        text: "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: bad, namespace: shop}\nspec:\n  podSelector: {}\n  ingress: [{ports: [{port: 0}]}]\n".into(),
    };
    assert!(matches!(decode(&source, SKIP), Err(LoadError::Invalid(_))));
}
