//! The per-endpoint truth table. Its CSV is a contract shared with the probes:
//! header `src,dst,protocol,port,verdict`, one row per ordered endpoint pair
//! (self included) and probe, endpoints as `namespace/name`, verdict `allow`/`deny`.

use std::io::{self, Write};

use weir_engine::matrix::Verdicts;
use weir_engine::Engine;
use weir_model::PortKey;

use crate::focus::{Focus, Member};
use crate::{csv_field, table, MatrixFormat};

/// The engine's truth table for `probes`, the pairs `focus` shows (rows of the CSV; rows
/// and columns of the table that have one).
pub fn render_matrix(
    engine: &Engine,
    probes: &[PortKey],
    format: MatrixFormat,
    focus: &Focus,
    out: &mut dyn Write,
) -> io::Result<()> {
    let keep = |a, b| focus.keeps(engine, Member::Endpoint(a), Member::Endpoint(b));
    write_verdicts(&engine.verdicts(probes), format, &keep, out)
}

fn verdict_word(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "allow",
        Some(false) => "deny",
        None => "error",
    }
}

/// `csv` (the contract: `src,dst,protocol,port,verdict`) or `table`.
pub fn render_verdicts(
    grid: &Verdicts,
    format: MatrixFormat,
    out: &mut dyn Write,
) -> io::Result<()> {
    write_verdicts(grid, format, &|_, _| true, out)
}

/// [`render_verdicts`] of the pairs `keep` shows.
fn write_verdicts(
    grid: &Verdicts,
    format: MatrixFormat,
    keep: &dyn Fn(usize, usize) -> bool,
    out: &mut dyn Write,
) -> io::Result<()> {
    let n = grid.endpoints.len();
    let rows: Vec<usize> = (0..n).filter(|&a| (0..n).any(|b| keep(a, b))).collect();
    let cols: Vec<usize> = (0..n).filter(|&b| (0..n).any(|a| keep(a, b))).collect();
    match format {
        MatrixFormat::Csv => {
            writeln!(out, "src,dst,protocol,port,verdict")?;
            for &a in &rows {
                let src = csv_field(&grid.endpoints[a]);
                for b in (0..n).filter(|&b| keep(a, b)) {
                    let dst = csv_field(&grid.endpoints[b]);
                    for (k, p) in grid.probes.iter().enumerate() {
                        let v = verdict_word(grid.get(a, b, k));
                        writeln!(out, "{src},{dst},{},{},{v}", p.protocol, p.port)?;
                    }
                }
            }
        }
        MatrixFormat::Table => {
            let mut t = table();
            let mut header = vec!["from \\ to".to_string()];
            header.extend(cols.iter().map(|&b| grid.endpoints[b].clone()));
            t.set_header(header);
            for &a in &rows {
                let mut row = vec![grid.endpoints[a].clone()];
                for &b in &cols {
                    if !keep(a, b) {
                        row.push(String::new());
                        continue;
                    }
                    let cell: Vec<String> = grid
                        .probes
                        .iter()
                        .enumerate()
                        .map(|(k, p)| {
                            let mark = match grid.get(a, b, k) {
                                Some(true) => "✔",
                                Some(false) => "✘",
                                None => "?",
                            };
                            format!("{mark} {p}")
                        })
                        .collect();
                    row.push(cell.join("\n"));
                }
                t.add_row(row);
            }
            writeln!(out, "{t}")?;
        }
    }
    Ok(())
}
