//! `weir test` intents files: a small YAML language, each error located like a manifest's.
//!
//! ```yaml
//! apiVersion: weir.dev/v1alpha1   # optional; the kind lets manifest loaders skip the file
//! kind: Intents
//! intents:
//! - name: redis accepts only the logic tier, on TCP 6379
//!   to: production/redis
//!   accepts-only-from: {namespace: production, labels: {networking/logic: "true"}}
//!   ports: [TCP/6379]
//! - name: personal reaches production only on TCP 80
//!   from: personal/*
//!   to: production/*
//!   only: [TCP/80]
//! - name: production is default-deny
//!   to: production/*
//!   default-deny: true
//! ```
//! Endpoints are `namespace/name` globs or `{namespace, name, labels}`; one expectation
//! per intent: `allowed`, `denied` (a list, or `all`), `only`, `accepts-only-from` (with
//! `ports`), `default-deny`.

use serde_json::Value;
use weir_model::{EndpointPattern, Expectation, Intent, Labels, Origin, PortKey};

use crate::path::FieldPath;
use crate::yaml::{locate_fields, parse_documents, Body, LineIndex};
use crate::{Diagnostic, LoadError, Severity};

struct Reader<'t> {
    file: String,
    text: &'t str,
    offset: usize,
    lines: LineIndex,
    problems: Vec<Diagnostic>,
}

impl Reader<'_> {
    fn problem(&mut self, path: &FieldPath, message: String) {
        let located = locate_fields(self.text, self.offset, &self.lines);
        let pos = path
            .prefixes()
            .find_map(|p| located.get(&p).copied())
            .unwrap_or(crate::yaml::Position { line: 1, col: 1 });
        self.problems.push(Diagnostic {
            severity: Severity::Error,
            file: self.file.clone(),
            line: pos.line,
            col: pos.col,
            field: path.to_string(),
            message,
        });
    }

    fn pattern(&mut self, v: Option<&Value>, path: &FieldPath) -> EndpointPattern {
        let any = || EndpointPattern {
            namespace: "*".into(),
            name: "*".into(),
            labels: Labels::new(),
        };
        match v {
            None => any(),
            Some(Value::String(s)) => match s.split_once('/') {
                Some((ns, name)) => EndpointPattern {
                    namespace: ns.into(),
                    name: name.into(),
                    labels: Labels::new(),
                },
                None => {
                    self.problem(
                        path,
                        format!(
                            "{s:?}: expected namespace/name (globs allowed, e.g. production/*)"
                        ),
                    );
                    any()
                }
            },
            Some(Value::Object(m)) => {
                let mut p = any();
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("namespace", Value::String(s)) => p.namespace = s.clone(),
                        ("name", Value::String(s)) => p.name = s.clone(),
                        ("labels", Value::Object(l)) => {
                            for (lk, lv) in l {
                                match lv {
                                    Value::String(s) => {
                                        p.labels.insert(lk.clone(), s.clone());
                                    }
                                    _ => self.problem(
                                        &path.key("labels").key(lk),
                                        "label values are strings (quote \"true\")".into(),
                                    ),
                                }
                            }
                        }
                        _ => self.problem(
                            &path.key(k),
                            format!("unknown or mistyped field {k:?} (namespace, name, labels)"),
                        ),
                    }
                }
                p
            }
            Some(_) => {
                self.problem(
                    path,
                    "expected namespace/name or {namespace, name, labels}".into(),
                );
                any()
            }
        }
    }

    fn ports(&mut self, v: Option<&Value>, path: &FieldPath) -> Vec<PortKey> {
        let Some(Value::Array(items)) = v else {
            self.problem(
                path,
                "expected a list of PROTOCOL/PORT, e.g. [TCP/80]".into(),
            );
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let parsed = item.as_str().and_then(|s| s.parse::<PortKey>().ok());
            match parsed {
                Some(p) => out.push(p),
                None => self.problem(
                    &path.index(i),
                    format!("{item}: expected PROTOCOL/PORT, e.g. TCP/80"),
                ),
            }
        }
        out
    }
}

const EXPECTATIONS: [&str; 5] = [
    "allowed",
    "denied",
    "only",
    "accepts-only-from",
    "default-deny",
];

/// Reads an intents file.
pub fn load_intents(file: &str, text: &str) -> Result<Vec<Intent>, LoadError> {
    let docs = parse_documents(text).map_err(|e| {
        LoadError::Invalid(vec![Diagnostic {
            severity: Severity::Error,
            file: file.into(),
            line: e.at.line,
            col: e.at.col,
            field: String::new(),
            message: e.message.clone(),
        }])
    })?;
    let mut r = Reader {
        file: file.into(),
        text,
        offset: 0,
        lines: LineIndex::new(text),
        problems: Vec::new(),
    };
    let mut out = Vec::new();
    for doc in docs {
        r.offset = doc.offset;
        let Body::Tree(root) = doc.body else { continue };
        let root_path = FieldPath::root();
        let Some(Value::Array(items)) = root.get("intents") else {
            r.problem(
                &root_path.key("intents"),
                "expected `intents:` with a list of intents".into(),
            );
            continue;
        };
        for (i, item) in items.iter().enumerate() {
            let path = root_path.key("intents").index(i);
            let Value::Object(m) = item else {
                r.problem(&path, "an intent is a mapping".into());
                continue;
            };
            for k in m.keys() {
                if !["name", "from", "to", "ports"].contains(&k.as_str())
                    && !EXPECTATIONS.contains(&k.as_str())
                {
                    r.problem(&path.key(k), format!("unknown field {k:?}"));
                }
            }
            let name = match m.get("name") {
                Some(Value::String(s)) => s.clone(),
                _ => {
                    r.problem(
                        &path.key("name"),
                        "every intent needs a name (a string)".into(),
                    );
                    String::new()
                }
            };
            let from = r.pattern(m.get("from"), &path.key("from"));
            let to = r.pattern(m.get("to"), &path.key("to"));
            let given: Vec<&str> = EXPECTATIONS
                .iter()
                .copied()
                .filter(|k| m.contains_key(*k))
                .collect();
            if given.len() != 1 {
                r.problem(
                    &path,
                    format!(
                        "exactly one of {} is needed, found {}",
                        EXPECTATIONS.join(", "),
                        given.len()
                    ),
                );
                continue;
            }
            let key = given[0];
            let expect = match key {
                "allowed" => Expectation::Allowed(r.ports(m.get(key), &path.key(key))),
                "only" => Expectation::Only(r.ports(m.get(key), &path.key(key))),
                "denied" => match m.get(key) {
                    Some(Value::String(s)) if s == "all" => Expectation::Denied(None),
                    v => Expectation::Denied(Some(r.ports(v, &path.key(key)))),
                },
                "accepts-only-from" => Expectation::AcceptsOnlyFrom {
                    from: r.pattern(m.get(key), &path.key(key)),
                    ports: r.ports(m.get("ports"), &path.key("ports")),
                },
                _ => match m.get(key) {
                    Some(Value::Bool(true)) => Expectation::DefaultDeny,
                    _ => {
                        r.problem(&path.key(key), "default-deny takes `true`".into());
                        continue;
                    }
                },
            };
            let located = locate_fields(text, doc.offset, &r.lines);
            let pos = located.get(&path).copied().unwrap_or(doc.start);
            out.push(Intent {
                name,
                from,
                to,
                expect,
                origin: Origin {
                    file: file.into(),
                    line: pos.line,
                    col: pos.col,
                },
            });
        }
    }
    if r.problems.is_empty() {
        Ok(out)
    } else {
        Err(LoadError::Invalid(r.problems))
    }
}
