//! The per-endpoint truth table. Its CSV is a contract shared with the probes:
//! header `src,dst,protocol,port,verdict`, one row per ordered endpoint pair
//! (self included) and probe, endpoints as `namespace/name`, verdict `allow`/`deny`.

use std::io::{self, Write};

use weir_engine::{Engine, Node};
use weir_model::Protocol;

use crate::{csv_field, table, Format};

/// A (protocol, port) to test, written `TCP/80`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    pub protocol: Protocol,
    pub port: u16,
}

impl std::fmt::Display for Probe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.protocol, self.port)
    }
}

pub fn parse_probe(s: &str) -> Result<Probe, String> {
    let (proto, port) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?}: expected PROTOCOL/PORT, e.g. TCP/80"))?;
    let protocol = weir_model::Protocol::parse(&proto.to_ascii_uppercase())
        .ok_or_else(|| format!("{s:?}: protocol must be TCP, UDP or SCTP"))?;
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("{s:?}: port must be a number from 1 to 65535"))?;
    Ok(Probe { protocol, port })
}

/// `TCP/80,UDP/53` → probes.
pub fn parse_probes(s: &str) -> Result<Vec<Probe>, String> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| parse_probe(p.trim()))
        .collect()
}

pub fn render_matrix(
    engine: &Engine,
    probes: &[Probe],
    format: Format,
    out: &mut dyn Write,
) -> io::Result<()> {
    let eps = &engine.cluster().endpoints;
    let n = eps.len();
    match format {
        Format::Csv => {
            writeln!(out, "src,dst,protocol,port,verdict")?;
            for (a, src) in eps.iter().enumerate() {
                let src = csv_field(&src.id());
                for (b, dst) in eps.iter().enumerate() {
                    let allowed = engine.allowed(Node::Endpoint(a), Node::Endpoint(b));
                    let dst = csv_field(&dst.id());
                    for p in probes {
                        let v = if allowed.contains(p.protocol, p.port) {
                            "allow"
                        } else {
                            "deny"
                        };
                        writeln!(out, "{src},{dst},{},{},{v}", p.protocol, p.port)?;
                    }
                }
            }
        }
        Format::Table => {
            let mut t = table();
            let mut header = vec!["from \\ to".to_string()];
            header.extend(eps.iter().map(|e| e.id()));
            t.set_header(header);
            for (a, src) in eps.iter().enumerate() {
                let mut row = vec![src.id()];
                for b in 0..n {
                    let allowed = engine.allowed(Node::Endpoint(a), Node::Endpoint(b));
                    let cell: Vec<String> = probes
                        .iter()
                        .map(|p| {
                            format!(
                                "{}{p}",
                                if allowed.contains(p.protocol, p.port) {
                                    "✔ "
                                } else {
                                    "✘ "
                                }
                            )
                        })
                        .collect();
                    row.push(cell.join("\n"));
                }
                t.add_row(row);
            }
            writeln!(out, "{t}")?;
        }
        other => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("matrix supports -o csv|table, not {other}"),
            ))
        }
    }
    Ok(())
}
