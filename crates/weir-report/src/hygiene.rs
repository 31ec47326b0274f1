//! Renderers for lint findings, semantic diffs and intent results.

use std::io::{self, Write};

use weir_engine::diff::{Change, ChangeKind};
use weir_engine::intents::IntentResult;
use weir_engine::lint::Finding;

use crate::{DiffFormat, LintFormat, TestFormat};

fn json<T: serde::Serialize + ?Sized>(value: &T, out: &mut dyn Write) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)
}

pub fn render_findings(
    findings: &[Finding],
    format: LintFormat,
    out: &mut dyn Write,
) -> io::Result<()> {
    match format {
        LintFormat::Json => json(findings, out),
        LintFormat::Text => {
            for f in findings {
                let at = if f.location.is_empty() {
                    f.subject.clone()
                } else {
                    format!("{} ({})", f.location, f.subject)
                };
                writeln!(
                    out,
                    "{at}: {}[{} {}]: {}\n  hint: {}",
                    f.severity, f.code, f.name, f.message, f.hint
                )?;
            }
            writeln!(out, "{} finding(s)", findings.len())
        }
    }
}

fn kind_word(k: &ChangeKind) -> &'static str {
    match k {
        ChangeKind::Added => "added",
        ChangeKind::Removed => "removed",
        ChangeKind::Changed => "changed",
    }
}

pub fn render_diff(changes: &[Change], format: DiffFormat, out: &mut dyn Write) -> io::Result<()> {
    let by = |c: &Change| {
        if c.policies.is_empty() {
            "endpoints changed".to_string()
        } else {
            c.policies.join(", ")
        }
    };
    match format {
        DiffFormat::Json => json(changes, out),
        DiffFormat::Text => {
            for c in changes {
                let sign = match c.kind {
                    ChangeKind::Added => '+',
                    ChangeKind::Removed => '-',
                    ChangeKind::Changed => '~',
                };
                writeln!(
                    out,
                    "{sign} {} → {}: {} → {}  ({})",
                    c.from,
                    c.to,
                    c.before,
                    c.after,
                    by(c)
                )?;
            }
            writeln!(out, "{} connection(s) changed", changes.len())
        }
        DiffFormat::Md => {
            if changes.is_empty() {
                return writeln!(out, "**Connectivity unchanged.**");
            }
            writeln!(out, "**{} connection(s) changed**\n\n| | from | to | before | after | policies |\n|---|---|---|---|---|---|", changes.len())?;
            for c in changes {
                writeln!(
                    out,
                    "| {} | `{}` | `{}` | {} | {} | {} |",
                    kind_word(&c.kind),
                    c.from,
                    c.to,
                    c.before,
                    c.after,
                    by(c)
                )?;
            }
            Ok(())
        }
    }
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub fn render_intents(
    results: &[IntentResult],
    format: TestFormat,
    out: &mut dyn Write,
) -> io::Result<()> {
    let failed = results.iter().filter(|r| !r.passed).count();
    if format == TestFormat::Junit {
        writeln!(out, r#"<?xml version="1.0" encoding="UTF-8"?>"#)?;
        writeln!(
            out,
            r#"<testsuite name="weir intents" tests="{}" failures="{failed}">"#,
            results.len()
        )?;
        for r in results {
            write!(
                out,
                r#"  <testcase classname="{}" name="{}""#,
                xml(&r.origin),
                xml(&r.name)
            )?;
            if r.passed {
                writeln!(out, "/>")?;
            } else {
                writeln!(
                    out,
                    ">\n    <failure message=\"{}\">{}</failure>\n  </testcase>",
                    xml(&r.failures[0]),
                    xml(&r.failures.join("\n"))
                )?;
            }
        }
        return writeln!(out, "</testsuite>");
    }
    match format {
        TestFormat::Json => json(results, out),
        TestFormat::Text | TestFormat::Junit => {
            for r in results {
                let mark = if r.passed { "✔" } else { "✘" };
                writeln!(
                    out,
                    "{mark} {} ({}; {} checked)",
                    r.name, r.origin, r.checked
                )?;
                for f in &r.failures {
                    writeln!(out, "    {f}")?;
                }
            }
            writeln!(out, "{} passed, {failed} failed", results.len() - failed)
        }
    }
}
