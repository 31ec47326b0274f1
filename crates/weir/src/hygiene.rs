//! `weir lint`, `weir diff`, `weir test`, `weir report`: wiring for the hygiene tools.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, Context};
use clap::Args;
use weir_engine::lint::{lint, lint_with, Severity};
use weir_engine::Engine;
use weir_report::{DiffFormat, LintFormat, TestFormat};

use crate::exit::{self, Failure};
use crate::input::{load_failure, Input};

#[derive(Args)]
pub struct LintArgs {
    #[command(flatten)]
    input: Input,
    #[arg(short, long, value_enum, default_value = "text")]
    output: LintFormat,
    /// Exit 3 when a finding is at least this severe (info | warning | error), for CI.
    #[arg(long)]
    deny: Option<Severity>,
    /// The agents' /metrics, saved to files (one per node; repeat the flag): each audited
    /// policy is then ready to enforce (no would-drop counted) or has would-drops to review.
    #[arg(long, value_name = "FILE")]
    would_drops: Vec<PathBuf>,
}

#[derive(Args)]
pub struct DiffArgs {
    /// OLD and NEW manifests (each a file or directory); with --base-ref/--head-ref, the
    /// paths inside the git repository to compare (default: all of it).
    paths: Vec<PathBuf>,
    /// Git ref of the old version (the current directory's repository, or --repo).
    #[arg(long, requires = "head_ref")]
    base_ref: Option<String>,
    /// Git ref of the new version.
    #[arg(long, requires = "base_ref")]
    head_ref: Option<String>,
    /// The git repository for --base-ref/--head-ref.
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// `md` is for pull-request comments.
    #[arg(short, long, value_enum, default_value = "text")]
    output: DiffFormat,
    #[arg(long, short)]
    quiet: bool,
    /// Compare as if audited policies (weir.dev/mode: audit) were enforced. By default they
    /// are left out on both sides: the diff is what the dataplane's change does.
    #[arg(long)]
    as_enforced: bool,
    #[command(flatten)]
    focus: crate::input::FocusArgs,
}

#[derive(Args)]
pub struct TestArgs {
    /// The intents file.
    intents: PathBuf,
    #[command(flatten)]
    input: Input,
    /// Also check the intents with real traffic in a lab (root).
    #[cfg(feature = "lab")]
    #[arg(long)]
    pub probe: bool,
    #[arg(short, long, value_enum, default_value = "text")]
    output: TestFormat,
}

#[derive(Args)]
pub struct ReportArgs {
    #[command(flatten)]
    input: Input,
    /// Write the page here instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    focus: crate::input::FocusArgs,
    /// Show only these ports: PROTOCOL/PORT or PROTOCOL/LOW-HIGH.
    #[arg(long, value_parser = weir_report::Focus::parse_ports)]
    port: Option<weir_engine::PortSet>,
}

pub fn lint_cmd(args: LintArgs, out: &mut dyn Write) -> Result<u8, Failure> {
    let loaded = args.input.load()?;
    let engine = Engine::with_options(&loaded.cluster, args.input.engine_options());
    let counted = if args.would_drops.is_empty() {
        None
    } else {
        let mut sum = std::collections::BTreeMap::new();
        for path in &args.would_drops {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Failure::Invalid(format!("reading {}: {e}", path.display())))?;
            for (policy, n) in would_drop_counters(&path.display().to_string(), &text)? {
                *sum.entry(policy).or_insert(0u64) += n;
            }
        }
        Some(sum)
    };
    let mut findings = lint_with(&engine, counted.as_ref());
    point_at_fields(&mut findings);
    weir_report::render_findings(&findings, args.output, out)?;
    let failing = args
        .deny
        .is_some_and(|d| findings.iter().any(|f| f.severity >= d));
    Ok(if failing { exit::FINDINGS } else { exit::OK })
}

/// `weir_audit_would_drop_total{policy="…"} N` of an agent's /metrics text, per policy.
/// Other lines are not read; a would-drop line that does not parse is an error at its line.
fn would_drop_counters(file: &str, text: &str) -> Result<Vec<(String, u64)>, Failure> {
    const SERIES: &str = "weir_audit_would_drop_total{policy=\"";
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let Some(rest) = line.strip_prefix(SERIES) else {
            continue;
        };
        let bad = || {
            Failure::Invalid(format!(
                "{file}:{}:1: not a would-drop counter: {line:?}",
                n + 1
            ))
        };
        // The label value, Prometheus-escaped (\\, \", \n), then `} N`.
        let mut policy = String::new();
        let mut chars = rest.chars();
        loop {
            match chars.next().ok_or_else(bad)? {
                '"' => break,
                '\\' => match chars.next().ok_or_else(bad)? {
                    'n' => policy.push('\n'),
                    c => policy.push(c),
                },
                c => policy.push(c),
            }
        }
        let value = chars.as_str().strip_prefix("} ").ok_or_else(bad)?;
        let value: f64 = value
            .split_whitespace()
            .next()
            .ok_or_else(bad)?
            .parse()
            .map_err(|_| bad())?;
        if !(value >= 0.0 && value.is_finite()) {
            return Err(bad());
        }
        out.push((policy, value as u64));
    }
    Ok(out)
}

/// A finding about one field of an object points at that field's line.
fn point_at_fields(findings: &mut [weir_engine::lint::Finding]) {
    let mut fields = crate::input::Fields::default();
    for f in findings.iter_mut().filter(|f| !f.field.is_empty()) {
        fields.point(&mut f.location, &f.field);
    }
}

/// Extracts `paths` of `reference` from a git repository into a fresh directory.
fn checkout(repo: &Path, reference: &str, paths: &[PathBuf], into: &Path) -> Result<(), Failure> {
    std::fs::create_dir_all(into).context("creating a temp dir")?;
    let archive = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["archive", "--format=tar", reference, "--"])
        .args(paths)
        .output()
        .context("running git archive")?;
    if !archive.status.success() {
        return Err(Failure::Invalid(format!(
            "git archive {reference}: {}",
            String::from_utf8_lossy(&archive.stderr).trim()
        )));
    }
    let mut tar = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(into)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .context("running tar")?;
    tar.stdin
        .take()
        .expect("piped")
        .write_all(&archive.stdout)
        .context("tar")?;
    if !tar.wait().context("tar")?.success() {
        return Err(Failure::Other(anyhow!("tar failed")));
    }
    Ok(())
}

fn load_side(path: &Path, quiet: bool) -> Result<weir_model::Cluster, Failure> {
    match weir_manifest::load_paths(&[path], Default::default()) {
        Ok(l) => {
            if !quiet {
                for w in &l.warnings {
                    eprintln!("{w}");
                }
            }
            Ok(l.cluster)
        }
        Err(e) => Err(load_failure(e, &path.display().to_string())),
    }
}

pub fn diff_cmd(args: DiffArgs, out: &mut dyn Write) -> Result<u8, Failure> {
    let tmp = std::env::temp_dir().join(format!("weir-diff-{}", std::process::id()));
    let result = (|| {
        let (old, new) = match (&args.base_ref, &args.head_ref) {
            (Some(base), Some(head)) => {
                let paths = if args.paths.is_empty() {
                    vec![PathBuf::from(".")]
                } else {
                    args.paths.clone()
                };
                let (a, b) = (tmp.join("old"), tmp.join("new"));
                checkout(&args.repo, base, &paths, &a)?;
                checkout(&args.repo, head, &paths, &b)?;
                (load_side(&a, args.quiet)?, load_side(&b, args.quiet)?)
            }
            _ => match args.paths.as_slice() {
                [a, b] => (load_side(a, args.quiet)?, load_side(b, args.quiet)?),
                _ => {
                    return Err(Failure::Invalid(
                        "give OLD and NEW paths, or --base-ref and --head-ref".into(),
                    ))
                }
            },
        };
        let (old, new) = if args.as_enforced {
            (old, new)
        } else {
            (old.without_audited(), new.without_audited())
        };
        let (before, after) = (Engine::new(&old), Engine::new(&new));
        let mut changes = weir_engine::diff::diff(&before, &after);
        // A side is an endpoint of either version (the new one first), or outside addresses.
        let focus = args.focus.focus(None);
        let (after, before) = (&after, &before);
        let side = |name: &str| {
            let found = [after, before].into_iter().find_map(|e| {
                e.cluster()
                    .endpoint_index(name)
                    .map(|i| (e, weir_report::Member::Endpoint(i)))
            });
            move |s: &weir_report::Selection| match found {
                Some((e, m)) => s.matches(e, m),
                None => s.matches(after, weir_report::Member::Outside),
            }
        };
        changes.retain(|c| focus.keeps_by(&side(&c.from), &side(&c.to)));
        weir_report::render_diff(&changes, args.output, out)?;
        Ok(if changes.is_empty() {
            exit::OK
        } else {
            exit::CHANGED
        })
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

/// Checks intents on real traffic (the lab's), for `--probe`.
pub type ProbeIntents = fn(
    &weir_model::Cluster,
    &[weir_model::Intent],
    weir_engine::Options,
) -> Result<Vec<weir_engine::intents::IntentResult>, Failure>;

/// `weir test`; with `probe`, the intents are also checked on real traffic.
pub fn test_cmd(
    args: TestArgs,
    probe: Option<ProbeIntents>,
    out: &mut dyn Write,
) -> Result<u8, Failure> {
    // The intents file is the user's input: unreadable (missing, a directory) is exit 2.
    let text = std::fs::read_to_string(&args.intents)
        .map_err(|e| Failure::Invalid(format!("reading {}: {e}", args.intents.display())))?;
    let intents = weir_manifest::intents::load_intents(&args.intents.display().to_string(), &text)
        .map_err(|e| load_failure(e, "the intents"))?;
    let cluster = args.input.cluster()?;
    let options = args.input.engine_options();
    let mut results = {
        let engine = Engine::with_options(&cluster, options);
        weir_engine::intents::check_intents(&engine, &engine, &intents)
    };
    if let Some(probe) = probe {
        let observed = probe(&cluster, &intents, options)?;
        for (r, o) in results.iter_mut().zip(observed) {
            r.failures
                .extend(o.failures.into_iter().map(|f| format!("probed: {f}")));
            r.passed = r.passed && o.passed;
        }
    }
    weir_report::render_intents(&results, args.output, out)?;
    Ok(if results.iter().all(|r| r.passed) {
        exit::OK
    } else {
        exit::INTENT_FAILED
    })
}

pub fn report_cmd(args: ReportArgs, out: &mut dyn Write) -> Result<u8, Failure> {
    let cluster = args.input.cluster()?;
    let engine = Engine::with_options(&cluster, args.input.engine_options());
    let findings = lint(&engine);
    let title = format!("weir report: {}", args.input.describe());
    let focus = args.focus.focus(args.port.clone());
    let mut fields = crate::input::Fields::default();
    let mut point = |r: &mut weir_engine::PortsExplanation| {
        crate::cli::point_rules(&mut fields, [&mut r.egress, &mut r.ingress])
    };
    match &args.out {
        Some(path) => {
            let mut f = std::io::BufWriter::new(
                std::fs::File::create(path)
                    .with_context(|| format!("creating {}", path.display()))?,
            );
            weir_report::render_html(&engine, &findings, &title, &focus, &mut point, &mut f)?;
            f.flush().context("writing the report")?;
        }
        None => weir_report::render_html(&engine, &findings, &title, &focus, &mut point, out)?,
    }
    Ok(exit::OK)
}
