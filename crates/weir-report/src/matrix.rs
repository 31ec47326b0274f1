//! The per-endpoint truth table. Its CSV is a contract shared with the probes:
//! header `src,dst,protocol,port,verdict`, one row per ordered endpoint pair
//! (self included) and probe, endpoints as `namespace/name`, verdict `allow`/`deny`.

use std::io::{self, Write};

use weir_engine::matrix::Verdicts;
use weir_engine::Engine;
use weir_model::PortKey;

use crate::{csv_field, table, MatrixFormat};

pub fn render_matrix(
    engine: &Engine,
    probes: &[PortKey],
    format: MatrixFormat,
    out: &mut dyn Write,
) -> io::Result<()> {
    render_verdicts(&engine.verdicts(probes), format, out)
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
    let n = grid.endpoints.len();
    match format {
        MatrixFormat::Csv => {
            writeln!(out, "src,dst,protocol,port,verdict")?;
            for a in 0..n {
                let src = csv_field(&grid.endpoints[a]);
                for b in 0..n {
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
            header.extend(grid.endpoints.iter().cloned());
            t.set_header(header);
            for a in 0..n {
                let mut row = vec![grid.endpoints[a].clone()];
                for b in 0..n {
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
