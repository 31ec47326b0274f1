//! Input written by an attacker or by a careless tool: names that would be syntax elsewhere,
//! objects the API server could never hold twice, alias bombs, and the shapes real API
//! servers and dumps produce (typed lists, empty status, JSON followed by YAML).

use weir_manifest::{load, load_str, Diagnostic, LoadError, LoadOptions, NamedText};

fn errors(name: &str, text: &str) -> Vec<Diagnostic> {
    match load_str(name, text, LoadOptions::default()) {
        Err(LoadError::Invalid(d)) => d,
        Err(e) => panic!("unexpected error kind: {e}"),
        Ok(_) => panic!("input loaded, but it is invalid:\n{text}"),
    }
}

fn policy(name: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: {name}\n  namespace: production\nspec:\n  podSelector: {{}}\n"
    )
}

#[test]
fn object_names_follow_the_api_servers_rules() {
    // A policy name that is nft syntax; a name with a newline; an upper-case pod.
    for (name, text) in [
        ("np", policy("\"z;insert rule inet weir ingress accept\"")),
        ("np", policy("\"a\\nb\"")),
        ("np", policy(&"a".repeat(254))),
        (
            "pod",
            "kind: Pod\napiVersion: v1\nmetadata:\n  name: Web\n".to_string(),
        ),
        (
            "deploy",
            "kind: Deployment\napiVersion: apps/v1\nmetadata:\n  name: web_1\nspec:\n  selector: {}\n  template: {}\n"
                .to_string(),
        ),
    ] {
        let errs = errors(name, &text);
        assert!(
            errs.iter()
                .any(|e| e.field == "metadata.name" && e.line == 4 && e.col == 3
                    && e.message.contains("is not an RFC 1123")),
            "{name}: {errs:#?}"
        );
    }
    // Services are RFC 1035 labels: no leading digit, no dots; namespaces RFC 1123 labels.
    let svc = "kind: Service\napiVersion: v1\nmetadata:\n  name: 1redis\n";
    let e = &errors("svc", svc)[0];
    assert!(e.message.contains("RFC 1035"), "{e}");
    let ns = "kind: Namespace\napiVersion: v1\nmetadata:\n  name: a.b\n";
    assert!(errors("ns", ns)[0].message.contains("RFC 1123 label"));
    // Valid names of each rule load.
    load_str("ok", &policy("data.from-logic"), LoadOptions::default()).unwrap();
}

#[test]
fn a_10_kb_name_is_cut_in_the_message() {
    let errs = errors("np", &policy(&"x;".repeat(5000)));
    let e = &errs[0];
    assert!(e.to_string().len() < 600, "{} bytes", e.to_string().len());
    assert!(e.message.contains("(10000 bytes)"), "{}", e.message);
}

#[test]
fn duplicate_objects_are_rejected_naming_both_places() {
    let ns = "kind: Namespace\napiVersion: v1\nmetadata:\n  name: a\n";
    let deploy = "kind: Deployment\napiVersion: apps/v1\nmetadata:\n  name: web\nspec:\n  selector: {matchLabels: {app: web}}\n  template: {metadata: {labels: {app: web}}}\n";
    for text in [policy("np"), ns.to_string(), deploy.to_string()] {
        let sources = [
            NamedText {
                name: "one.yaml".into(),
                text: text.clone(),
            },
            NamedText {
                name: "two.yaml".into(),
                text: format!("# moved down\n{text}"),
            },
        ];
        let Err(LoadError::Invalid(errs)) = load(&sources, LoadOptions::default()) else {
            panic!("duplicates loaded:\n{text}");
        };
        assert_eq!(errs.len(), 1, "{errs:#?}");
        let e = &errs[0];
        assert_eq!((e.file.as_str(), e.line), ("two.yaml", 2), "{e}");
        assert!(e.message.contains("duplicate"), "{e}");
        assert!(e.message.contains("also defined at one.yaml:1:1"), "{e}");
    }
    // The same name in two namespaces, or of two kinds, is no duplicate.
    let other = policy("np").replace("production", "staging");
    load(
        &[
            NamedText {
                name: "a".into(),
                text: policy("np"),
            },
            NamedText {
                name: "b".into(),
                text: other,
            },
        ],
        LoadOptions::default(),
    )
    .unwrap();
}

#[test]
fn a_billion_laughs_fails_fast_with_a_location() {
    let mut text = String::from("kind: ConfigMap\napiVersion: v1\nmetadata: {name: lol}\ndata:\n  a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for i in 1..9 {
        text.push_str(&format!(
            "  a{i}: &a{i} [{}]\n",
            vec![format!("*a{}", i - 1); 9].join(", ")
        ));
    }
    let errs = errors("lol.yaml", &text);
    assert!(errs[0].message.contains("alias bomb"), "{errs:#?}");
    assert!(errs[0].line > 5, "{}", errs[0]);
}

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    for text in [
        "- ".repeat(10_000) + "x\n",
        "[".repeat(10_000),
        "{\"a\":".repeat(10_000),
    ] {
        let errs = errors("deep.yaml", &text);
        assert_eq!(errs[0].file, "deep.yaml");
    }
}

#[test]
fn typed_lists_from_the_api_have_items_without_kind() {
    let yaml = "apiVersion: v1\nkind: PodList\nitems:\n- metadata: {name: a, namespace: x}\n- metadata: {name: b, namespace: x}\n";
    let json = r#"{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicyList","items":[{"metadata":{"name":"np","namespace":"x"},"spec":{"podSelector":{}}}]}"#;
    let loaded = load_str("pods.yaml", yaml, LoadOptions::default()).unwrap();
    assert_eq!(loaded.cluster.endpoints.len(), 2);
    let loaded = load_str("nps.json", json, LoadOptions::default()).unwrap();
    assert_eq!(loaded.cluster.policies.len(), 1);
    // A plain List still needs each item's kind.
    let list = "apiVersion: v1\nkind: List\nitems:\n- metadata: {name: a}\n";
    assert!(errors("list.yaml", list)[0]
        .message
        .contains("missing kind"));
}

#[test]
fn json_document_then_yaml_in_one_file() {
    let text = "{\"apiVersion\": \"v1\", \"kind\": \"Namespace\", \"metadata\": {\"name\": \"a\"}}\n---\nkind: Namespace\napiVersion: v1\nmetadata:\n  name: b\n";
    let loaded = load_str("mixed.yaml", text, LoadOptions::default()).unwrap();
    let names: Vec<_> = loaded.cluster.namespaces.iter().map(|n| &n.name).collect();
    assert_eq!(names, ["a", "b"]);
}

#[test]
fn an_empty_status_on_a_network_policy_is_accepted() {
    let ok = policy("np") + "status: {}\n";
    load_str("np.yaml", &ok, LoadOptions::default()).unwrap();
    let bad = policy("np") + "status: {conditions: []}\n";
    let errs = errors("np.yaml", &bad);
    assert!(
        errs[0].message.contains("unknown field \"status\""),
        "{errs:#?}"
    );
}
