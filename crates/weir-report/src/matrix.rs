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

/// The engine's verdicts as a [`Verdicts`] grid.
pub fn engine_verdicts(engine: &Engine, probes: &[Probe]) -> Verdicts {
    let eps = &engine.cluster().endpoints;
    let mut cells = Vec::with_capacity(eps.len() * eps.len() * probes.len());
    for a in 0..eps.len() {
        for b in 0..eps.len() {
            let allowed = engine.allowed(Node::Endpoint(a), Node::Endpoint(b));
            cells.extend(
                probes
                    .iter()
                    .map(|p| Some(allowed.contains(p.protocol, p.port))),
            );
        }
    }
    Verdicts {
        endpoints: eps.iter().map(|e| e.id()).collect(),
        probes: probes.to_vec(),
        cells,
    }
}

pub fn render_matrix(
    engine: &Engine,
    probes: &[Probe],
    format: Format,
    out: &mut dyn Write,
) -> io::Result<()> {
    engine_verdicts(engine, probes).render(format, out)
}

/// One cell where two verdict grids differ.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disagreement {
    pub src: String,
    pub dst: String,
    pub probe: Probe,
    pub mine: Option<bool>,
    pub theirs: Option<bool>,
}

/// Verdicts for every ordered endpoint pair (self included) and probe, whoever decided
/// them (the engine, or real probes in the lab). `None`: no verdict could be observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdicts {
    pub endpoints: Vec<String>,
    pub probes: Vec<Probe>,
    /// Row-major: `[(src * n + dst) * probes + probe]`.
    pub cells: Vec<Option<bool>>,
}

fn verdict_word(v: Option<bool>) -> &'static str {
    match v {
        Some(true) => "allow",
        Some(false) => "deny",
        None => "error",
    }
}

impl Verdicts {
    pub fn get(&self, src: usize, dst: usize, probe: usize) -> Option<bool> {
        self.cells[(src * self.endpoints.len() + dst) * self.probes.len() + probe]
    }

    /// Every cell where the two grids differ.
    pub fn disagreements(&self, other: &Verdicts) -> Vec<Disagreement> {
        let n = self.endpoints.len();
        let mut out = Vec::new();
        for a in 0..n {
            for b in 0..n {
                for (k, p) in self.probes.iter().enumerate() {
                    let (x, y) = (self.get(a, b, k), other.get(a, b, k));
                    if x != y {
                        out.push(Disagreement {
                            src: self.endpoints[a].clone(),
                            dst: self.endpoints[b].clone(),
                            probe: *p,
                            mine: x,
                            theirs: y,
                        });
                    }
                }
            }
        }
        out
    }

    /// `csv` (the contract: `src,dst,protocol,port,verdict`) or `table`.
    pub fn render(&self, format: Format, out: &mut dyn Write) -> io::Result<()> {
        let n = self.endpoints.len();
        match format {
            Format::Csv => {
                writeln!(out, "src,dst,protocol,port,verdict")?;
                for a in 0..n {
                    let src = csv_field(&self.endpoints[a]);
                    for b in 0..n {
                        let dst = csv_field(&self.endpoints[b]);
                        for (k, p) in self.probes.iter().enumerate() {
                            let v = verdict_word(self.get(a, b, k));
                            writeln!(out, "{src},{dst},{},{},{v}", p.protocol, p.port)?;
                        }
                    }
                }
            }
            Format::Table => {
                let mut t = table();
                let mut header = vec!["from \\ to".to_string()];
                header.extend(self.endpoints.iter().cloned());
                t.set_header(header);
                for a in 0..n {
                    let mut row = vec![self.endpoints[a].clone()];
                    for b in 0..n {
                        let cell: Vec<String> = self
                            .probes
                            .iter()
                            .enumerate()
                            .map(|(k, p)| {
                                let mark = match self.get(a, b, k) {
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
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("matrix supports -o csv|table, not {other}"),
                ))
            }
        }
        Ok(())
    }
}

/// Observed traffic as a connectivity view for intents: only the probed ports are known.
impl weir_engine::intents::Connectivity for Verdicts {
    fn allows(
        &self,
        src: usize,
        dst: usize,
        protocol: weir_model::Protocol,
        port: u16,
    ) -> Option<bool> {
        let k = self
            .probes
            .iter()
            .position(|p| p.protocol == protocol && p.port == port)?;
        self.get(src, dst, k)
    }
    fn beyond(&self, src: usize, dst: usize, listed: &weir_engine::PortSet) -> Option<String> {
        let extra: Vec<String> = self
            .probes
            .iter()
            .enumerate()
            .filter(|(k, p)| {
                !listed.contains(p.protocol, p.port) && self.get(src, dst, *k) == Some(true)
            })
            .map(|(_, p)| p.to_string())
            .collect();
        (!extra.is_empty()).then(|| format!("allows {} (probed)", extra.join(",")))
    }
}
