//! Kubernetes manifests → [`weir_model::Cluster`].
//!
//! Reads files, directories (recursively) and stdin; YAML streams and JSON;
//! `kind: List` wrappers. Each object is decoded with k8s-openapi (unknown
//! fields are caught, which k8s-openapi alone would drop silently), validated
//! like the API server would, and every problem is reported with
//! `file:line:col` and the field path. Either the whole input loads or nothing does —
//! unless [`LoadOptions::skip_invalid`] asks to leave out what the API server would reject.

mod build;
mod decode;
pub mod flows;
mod gateway;
pub mod intents;
pub mod path;
pub mod suggest;
mod tiers;
mod validate;
pub mod yaml;

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use weir_model::Cluster;

pub use validate::{
    is_dns_label, is_port_name, label_key_problem, label_value_problem, shown, NameRule,
};

/// A named text: a file's contents or stdin (`-`).
#[derive(Clone, Debug)]
pub struct NamedText {
    pub name: String,
    pub text: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

/// One problem, pointing at the source.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: String,
    pub line: usize,
    pub col: usize,
    /// Field path inside the object, e.g. `spec.ingress[0].from[1].ipBlock.cidr`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        write!(
            f,
            "{}:{}:{}: {sev}: {}: {}",
            self.file, self.line, self.col, self.field, self.message
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A path that cannot be read (missing, unreadable): the user's input, so exit 2.
    #[error("{path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("{} error(s) in the input:\n{}", .0.len(), .0.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Diagnostic>),
}

#[derive(Clone, Copy, Debug, Default)]
pub struct LoadOptions {
    /// Report unknown fields as warnings instead of errors.
    pub allow_unknown_fields: bool,
    /// Leave out what fails validation — each object with an error, each file that is not
    /// YAML or not text, each repeat of an object — and load the rest, reporting what was
    /// left out ([`Loaded::invalid`]). For analysing messy repositories: an object the API
    /// server would reject never exists in a cluster. Never for enforcement: [`decode`]
    /// ignores it.
    pub skip_invalid: bool,
}

/// A loaded input: the model, what was skipped, and non-fatal findings.
#[derive(Debug)]
pub struct Loaded {
    pub cluster: Cluster,
    /// Kinds weir does not model, with how many objects of each were seen.
    pub skipped: BTreeMap<String, usize>,
    pub warnings: Vec<Diagnostic>,
    /// Under [`LoadOptions::skip_invalid`]: the errors of what was left out.
    pub invalid: Vec<Diagnostic>,
    /// Under [`LoadOptions::skip_invalid`]: how many objects and files were left out.
    pub left_out: usize,
    /// Pods folded into their workload: pod `namespace/name` → the workload's endpoint id
    /// (an agent without the workloads' objects names endpoints by their pods).
    pub replicas: BTreeMap<String, String>,
}

fn is_manifest_file(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

fn collect_files(path: &Path, out: &mut Vec<PathBuf>) -> Result<(), LoadError> {
    let io = |error| LoadError::Io {
        path: path.display().to_string(),
        error,
    };
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(io)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .map_err(io)?;
        entries.sort();
        // Hidden entries are editors' and atomic writers' temporary files, and the `..data`
        // directories of ConfigMap mounts, whose files are also linked at the top.
        entries.retain(|e| {
            e.file_name()
                .is_none_or(|n| !n.to_string_lossy().starts_with('.'))
        });
        for entry in entries {
            if entry.is_dir() {
                collect_files(&entry, out)?;
            } else if is_manifest_file(&entry) {
                out.push(entry);
            }
        }
    } else {
        // Named explicitly: read it whatever its extension.
        std::fs::metadata(path).map_err(io)?;
        out.push(path.to_path_buf());
    }
    Ok(())
}

/// A file that is not UTF-8 text: located at its first invalid byte.
fn not_utf8(name: &str, e: std::string::FromUtf8Error) -> Diagnostic {
    let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
    let line = 1 + valid.iter().filter(|&&b| b == b'\n').count();
    let col = 1 + valid.len() - valid.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    Diagnostic {
        severity: Severity::Error,
        file: name.to_string(),
        line,
        col,
        field: "(file)".into(),
        message: format!(
            "not UTF-8 text (byte 0x{:02x}); manifests are YAML or JSON",
            e.as_bytes()[valid.len()]
        ),
    }
}

/// Reads files, directories (recursively: `*.yaml`, `*.yml`, `*.json`) and `-` for stdin.
pub fn read_paths<P: AsRef<Path>>(paths: &[P]) -> Result<Vec<NamedText>, LoadError> {
    let (sources, not_text) = read_texts(paths)?;
    match not_text.is_empty() {
        true => Ok(sources),
        false => Err(LoadError::Invalid(not_text)),
    }
}

/// [`read_paths`], with files that are not UTF-8 text reported (located) instead of failing.
fn read_texts<P: AsRef<Path>>(paths: &[P]) -> Result<(Vec<NamedText>, Vec<Diagnostic>), LoadError> {
    let mut sources = Vec::new();
    let mut not_text = Vec::new();
    for p in paths {
        let p = p.as_ref();
        if p == Path::new("-") {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|error| LoadError::Io {
                    path: "<stdin>".into(),
                    error,
                })?;
            sources.push(NamedText {
                name: "<stdin>".into(),
                text,
            });
            continue;
        }
        let mut files = Vec::new();
        collect_files(p, &mut files)?;
        for f in files {
            let name = f.display().to_string();
            let bytes = std::fs::read(&f).map_err(|error| LoadError::Io {
                path: name.clone(),
                error,
            })?;
            match String::from_utf8(bytes) {
                Ok(text) => sources.push(NamedText { name, text }),
                Err(e) => not_text.push(not_utf8(&name, e)),
            }
        }
    }
    Ok((sources, not_text))
}

/// Decodes, validates and assembles sources into one cluster model.
pub fn load(sources: &[NamedText], options: LoadOptions) -> Result<Loaded, LoadError> {
    load_with(sources, Vec::new(), options)
}

/// [`load`], with the errors of files already left out (`unread`: not text).
fn load_with(
    sources: &[NamedText],
    unread: Vec<Diagnostic>,
    options: LoadOptions,
) -> Result<Loaded, LoadError> {
    let mut left_out = unread.len();
    let (mut objects, skipped, mut diagnostics, invalid) = decode_sources(sources, options);
    diagnostics.splice(0..0, unread);
    left_out += invalid;
    if options.skip_invalid {
        // A repeat is left out, the first definition kept (and reported).
        let repeats = build::duplicates(&objects);
        left_out += repeats.len();
        let doomed: std::collections::HashSet<usize> = repeats.iter().map(|(i, _)| *i).collect();
        objects = (objects.into_iter().enumerate())
            .filter(|(i, _)| !doomed.contains(i))
            .map(|(_, o)| o)
            .collect();
        diagnostics.extend(repeats.into_iter().map(|(_, d)| d));
    }
    let built = build::assemble(objects);
    diagnostics.extend(built.diagnostics);
    let (errors, warnings) = split(sources, diagnostics);
    if !errors.is_empty() && !options.skip_invalid {
        return Err(LoadError::Invalid(errors));
    }
    Ok(Loaded {
        cluster: built.cluster,
        skipped,
        warnings,
        invalid: errors,
        left_out,
        replicas: built.replicas,
    })
}

/// Every source's objects, the kinds skipped (with counts), the diagnostics in order, and
/// how many objects and files [`LoadOptions::skip_invalid`] left out.
fn decode_sources(
    sources: &[NamedText],
    options: LoadOptions,
) -> (
    Vec<decode::Object>,
    BTreeMap<String, usize>,
    Vec<Diagnostic>,
    usize,
) {
    let mut diagnostics = Vec::new();
    let mut objects = Vec::new();
    let mut skipped = BTreeMap::new();
    let mut left_out = 0;
    for source in sources {
        left_out += decode::decode_source(
            source,
            options,
            &mut objects,
            &mut skipped,
            &mut diagnostics,
        );
    }
    (objects, skipped, diagnostics, left_out)
}

/// The errors (Helm hints added for `sources`) and the warnings.
fn split(
    sources: &[NamedText],
    mut diagnostics: Vec<Diagnostic>,
) -> (Vec<Diagnostic>, Vec<Diagnostic>) {
    // Reading order: by source, then position (checks find problems in their own order).
    let order: std::collections::HashMap<&str, usize> = sources
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    diagnostics.sort_by(|a, b| {
        let key = |d: &Diagnostic| (order.get(d.file.as_str()).copied(), d.line, d.col);
        (key(a), &a.file).cmp(&(key(b), &b.file))
    });
    let (errors, warnings): (Vec<Diagnostic>, Vec<Diagnostic>) = diagnostics
        .into_iter()
        .partition(|d| d.severity == Severity::Error);
    (helm_hints(sources, errors), warnings)
}

/// The warnings, or the errors when there are any.
fn warnings_or_errors(
    sources: &[NamedText],
    diagnostics: Vec<Diagnostic>,
) -> Result<Vec<Diagnostic>, LoadError> {
    match split(sources, diagnostics) {
        (errors, warnings) if errors.is_empty() => Ok(warnings),
        (errors, _) => Err(LoadError::Invalid(errors)),
    }
}

/// One object a source holds alone ([`Decoded::lone`]).
#[derive(Clone, Debug)]
pub enum Lone {
    Pod(weir_model::Endpoint),
    Policy(weir_model::Policy),
    /// Its labels as written (the model adds the name label).
    Namespace {
        name: String,
        labels: weir_model::Labels,
    },
}

impl Lone {
    /// As [`Decoded::identities`] names it.
    pub fn identity(&self) -> String {
        match self {
            Lone::Pod(e) => format!("Pod/{}", e.id()),
            Lone::Policy(p) => format!("NetworkPolicy/{}", p.id()),
            Lone::Namespace { name, .. } => format!("Namespace//{name}"),
        }
    }
}

/// One source decoded and validated on its own, kept so that sources changing one at a time
/// (the agent's files and API objects) are reassembled without decoding the others again.
#[derive(Clone, Debug)]
pub struct Decoded {
    objects: Vec<decode::Object>,
    skipped: BTreeMap<String, usize>,
    warnings: Vec<Diagnostic>,
}

impl Decoded {
    /// The object, when this source holds exactly one Pod, NetworkPolicy or Namespace
    /// and nothing else: what the agent can take as a change of that object alone.
    pub fn lone(&self) -> Option<Lone> {
        match self.objects.as_slice() {
            [pod @ decode::Object::Pod { .. }] => build::assemble(vec![pod.clone()])
                .cluster
                .endpoints
                .pop()
                .map(Lone::Pod),
            [decode::Object::Policy(p)] => Some(Lone::Policy(p.clone())),
            [decode::Object::Namespace { name, labels, .. }] => Some(Lone::Namespace {
                name: name.clone(),
                labels: labels.clone(),
            }),
            _ => None,
        }
    }

    /// What the API server would call each object (`Kind/namespace/name`, the namespace
    /// empty for Namespaces): no two objects of a cluster have the same.
    pub fn identities(&self) -> impl Iterator<Item = String> + '_ {
        self.objects.iter().map(|o| {
            let (kind, namespace, name, _) = build::identity(o);
            format!("{kind}/{namespace}/{name}")
        })
    }

    /// Whether it holds workloads (Deployments, …): their pods fold into them across sources.
    pub fn has_workloads(&self) -> bool {
        self.objects
            .iter()
            .any(|o| matches!(o, decode::Object::Workload { .. }))
    }
}

/// [`load`]'s checks for one source alone: the errors it would report for this source.
/// Strict whatever the options say: what enforces policy never leaves out an invalid object
/// (it keeps that item's last good version instead).
pub fn decode(source: &NamedText, options: LoadOptions) -> Result<Decoded, LoadError> {
    let options = LoadOptions {
        skip_invalid: false,
        ..options
    };
    let sources = std::slice::from_ref(source);
    let (objects, skipped, mut diagnostics, _) = decode_sources(sources, options);
    diagnostics.extend(build::duplicates(&objects).into_iter().map(|(_, d)| d));
    let warnings = warnings_or_errors(sources, diagnostics)?;
    Ok(Decoded {
        objects,
        skipped,
        warnings,
    })
}

/// The cluster of sources decoded one by one ([`decode`]); what [`load`] of their texts
/// gives, without decoding anything again. Errors are those between sources (the same
/// object in two of them).
pub fn assemble<'a>(parts: impl IntoIterator<Item = &'a Decoded>) -> Result<Loaded, LoadError> {
    let mut objects = Vec::new();
    let mut skipped = BTreeMap::new();
    let mut warnings = Vec::new();
    for d in parts {
        objects.extend(d.objects.iter().cloned());
        for (kind, n) in &d.skipped {
            *skipped.entry(kind.clone()).or_insert(0) += n;
        }
        warnings.extend(d.warnings.iter().cloned());
    }
    let built = build::assemble(objects);
    warnings.extend(warnings_or_errors(&[], built.diagnostics)?);
    Ok(Loaded {
        cluster: built.cluster,
        skipped,
        warnings,
        invalid: Vec::new(),
        left_out: 0,
        replicas: built.replicas,
    })
}

/// A file with errors that holds `{{` is most likely a Helm template nobody rendered: its
/// first error says so (once per file), with what to run instead.
fn helm_hints(sources: &[NamedText], mut errors: Vec<Diagnostic>) -> Vec<Diagnostic> {
    let mut hinted = std::collections::BTreeSet::new();
    for d in &mut errors {
        let template = sources
            .iter()
            .any(|s| s.name == d.file && s.text.contains("{{"));
        if template && hinted.insert(d.file.clone()) {
            d.message.push_str(
                " (this file looks like an unrendered Helm template: render it first, e.g. `helm template RELEASE CHART | weir analyze -`)",
            );
        }
    }
    errors
}

/// [`read_paths`] then [`load`].
pub fn load_paths<P: AsRef<Path>>(paths: &[P], options: LoadOptions) -> Result<Loaded, LoadError> {
    let (sources, not_text) = read_texts(paths)?;
    if !not_text.is_empty() && !options.skip_invalid {
        return Err(LoadError::Invalid(not_text));
    }
    load_with(&sources, not_text, options)
}

/// Loads one in-memory text (tests, fuzzing, stdin-like callers).
pub fn load_str(name: &str, text: &str, options: LoadOptions) -> Result<Loaded, LoadError> {
    load(
        &[NamedText {
            name: name.into(),
            text: text.into(),
        }],
        options,
    )
}
