//! Renderers: engine results → text for people and machines. No evaluation here;
//! everything comes from `weir-engine`.

mod analyze;
mod explain;
mod html;
mod hygiene;
mod matrix;

use std::fmt;
use std::str::FromStr;

pub use analyze::{connections, render_analyze, render_summary, Connection};
pub use explain::render_explain;
pub use html::render_html;
pub use hygiene::{render_diff, render_findings, render_intents};
pub use matrix::{
    engine_verdicts, parse_probe, parse_probes, render_matrix, Disagreement, Probe, Verdicts,
};

/// Output formats; each command accepts the subset that makes sense for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Csv,
    Md,
    Dot,
    Mermaid,
    Text,
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "table" => Format::Table,
            "json" => Format::Json,
            "csv" => Format::Csv,
            "md" | "markdown" => Format::Md,
            "dot" => Format::Dot,
            "mermaid" => Format::Mermaid,
            "text" => Format::Text,
            other => return Err(format!("unknown output format {other:?}")),
        })
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Table => "table",
            Format::Json => "json",
            Format::Csv => "csv",
            Format::Md => "md",
            Format::Dot => "dot",
            Format::Mermaid => "mermaid",
            Format::Text => "text",
        })
    }
}

/// A CSV field, quoted when it must be.
pub(crate) fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

pub(crate) fn table() -> comfy_table::Table {
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    t
}
