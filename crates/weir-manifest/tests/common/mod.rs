//! What the error tests share: load text that must fail, and assert where it failed.

use weir_manifest::{load_str, Diagnostic, LoadError, LoadOptions};

/// The errors of `text` loaded as `bad.yaml`; panics if it loads.
pub fn errors(text: &str) -> Vec<Diagnostic> {
    match load_str("bad.yaml", text, LoadOptions::default()) {
        Err(LoadError::Invalid(d)) => d,
        Err(e) => panic!("unexpected error kind: {e}"),
        Ok(_) => panic!("input loaded, but it is invalid:\n{text}"),
    }
}

/// Asserts exactly one error, at `line:col`, on `field`, whose message contains `needle`.
#[track_caller]
pub fn single(text: &str, line: usize, col: usize, field: &str, needle: &str) {
    let errs = errors(text);
    assert_eq!(errs.len(), 1, "expected one error, got {errs:#?}");
    let e = &errs[0];
    assert_eq!((e.line, e.col, e.field.as_str()), (line, col, field), "{e}");
    assert!(
        e.message.contains(needle),
        "message {:?} lacks {needle:?}",
        e.message
    );
    assert_eq!(e.file, "bad.yaml");
}
