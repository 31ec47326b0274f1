//! Renderers: engine results → text for people and machines. No evaluation here;
//! everything comes from `weir-engine`.

mod analyze;
mod explain;
mod exposure;
mod focus;
mod html;
mod hygiene;
mod matrix;
mod outside;
pub mod synth;

pub use analyze::{connections, render_analyze, render_summary, Connection};
pub use explain::{render_explain, render_explain_all};
pub use exposure::{exposures, render_exposure, Exposed};
pub use focus::{Focus, Member, Selection};
pub use html::render_html;
pub use hygiene::{render_diff, render_findings, render_intents};
pub use matrix::{render_matrix, render_verdicts};
pub use outside::render_outside;

/// Declares one command's output formats: each command accepts exactly the formats its
/// renderer writes (a clap `ValueEnum` with the `clap` feature), so an unsupported `-o`
/// is a usage error before anything runs.
macro_rules! formats {
    ($($(#[$doc:meta])* $name:ident { $($variant:ident = $word:literal),+ $(,)? })+) => {$(
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
        pub enum $name {
            $(#[cfg_attr(feature = "clap", value(name = $word))] $variant),+
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(match self {
                    $($name::$variant => $word),+
                })
            }
        }
    )+};
}

formats! {
    /// `weir analyze -o`.
    AnalyzeFormat { Table = "table", Json = "json", Csv = "csv", Md = "md", Dot = "dot", Mermaid = "mermaid" }
    /// `weir matrix -o`, `weir probe -o`: the CSV contract or a table.
    MatrixFormat { Csv = "csv", Table = "table" }
    /// `weir explain -o`.
    ExplainFormat { Text = "text", Json = "json" }
    /// `weir lint -o`.
    LintFormat { Text = "text", Json = "json" }
    /// `weir diff -o` (`md` for pull-request comments).
    DiffFormat { Text = "text", Json = "json", Md = "md" }
    /// `weir test -o`.
    TestFormat { Text = "text", Json = "json", Junit = "junit" }
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
