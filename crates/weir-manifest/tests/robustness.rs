//! The loader never panics: arbitrary text and mutated real manifests either load
//! or fail with located errors. (A coverage-guided target lives in `fuzz/`; this
//! runs on stable in every CI run.)

use proptest::prelude::*;
use weir_manifest::{load_str, LoadError, LoadOptions};

fn examples() -> Vec<String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut out = Vec::new();
    for dir in [
        "examples/todos",
        "examples/todos/policies",
        "tests/e2e/cases/pod-and-namespace-selector",
        "tests/e2e/cases/cidr-with-except",
    ] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                out.push(std::fs::read_to_string(path).unwrap());
            }
        }
    }
    out
}

fn check(text: &str) {
    // YAML also breaks lines at CR, NEL and the Unicode separators.
    let lines = 1 + text
        .chars()
        .filter(|c| matches!(c, '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}'))
        .count();
    match load_str("f.yaml", text, LoadOptions::default()) {
        Ok(_) => {}
        Err(LoadError::Invalid(diags)) => {
            assert!(!diags.is_empty());
            for d in diags {
                // End-of-input errors may point one line past the last.
                assert!(
                    d.line >= 1 && d.line <= lines + 1,
                    "{d} (text has {lines} lines)"
                );
                assert!(d.col >= 1, "{d}");
            }
        }
        Err(e) => panic!("unexpected error kind {e}"),
    }
}

/// Pieces that make mutations likely to stay YAML-ish and reach deep code paths.
const PIECES: &[&str] = &[
    "\n",
    " ",
    "  ",
    ": ",
    "- ",
    "{",
    "}",
    "[",
    "]",
    ",",
    "\"",
    "'",
    "#",
    "&a ",
    "*a",
    "<<: ",
    "---\n",
    "~",
    "null",
    "port: ",
    "80",
    "65536",
    "-1",
    "http",
    "cidr: ",
    "10.0.0.0/8",
    "::/0",
    "except: ",
    "podSelector: ",
    "{}",
    "namespaceSelector: ",
    "ipBlock: ",
    "matchExpressions: ",
    "operator: ",
    "In",
    "values: ",
    "endPort: ",
    "protocol: ",
    "SCTP",
    "kind: ",
    "List",
    "items: ",
    "Pod",
    "NetworkPolicy",
    "\t",
    "\u{feff}",
    "é",
    "\\u0000",
];

/// Replaces `cut` bytes at each edit's position with the edit's piece.
fn mutate(mut text: String, edits: Vec<(prop::sample::Index, usize, &str)>) -> String {
    for (at, cut, piece) in edits {
        let mut pos = at.index(text.len() + 1);
        while !text.is_char_boundary(pos) {
            pos -= 1;
        }
        let mut end = (pos + cut).min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.replace_range(pos..end, piece);
    }
    text
}

/// A JSON List, the loader's other path (decoded straight from the text).
const JSON_LIST: &str = r#"{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"p","namespace":"x"},"spec":{"podSelector":{},"ingress":[{"from":[{"ipBlock":{"cidr":"10.0.0.0/8","except":["10.1.0.0/16"]}}],"ports":[{"port":80,"endPort":90}]}]}}]}"#;

proptest! {
    #![proptest_config(ProptestConfig { cases: 600, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        check(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn mutated_manifests_never_panic(
        which in any::<prop::sample::Index>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 0usize..12, proptest::sample::select(PIECES)), 1..6),
    ) {
        let docs = examples();
        check(&mutate(docs[which.index(docs.len())].clone(), edits));
    }

    #[test]
    fn mutated_json_never_panics(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 0usize..6, proptest::sample::select(PIECES)), 1..4),
    ) {
        check(&mutate(JSON_LIST.to_string(), edits));
    }
}
