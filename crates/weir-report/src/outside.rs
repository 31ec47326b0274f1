//! `weir analyze --outside`: the ways in from outside the cluster (NodePort and LoadBalancer
//! Services, Ingresses) and, per backend pod and port, who gets through after policy.

use std::io::{self, Write};

use serde::Serialize;
use weir_engine::outside::{Entry, Source, Verdict};
use weir_engine::Engine;

use crate::exposure::addresses;
use crate::{csv_field, table, AnalyzeFormat as Format};

/// Who gets through, in words.
pub(crate) fn gets_through(engine: &Engine, e: &Entry) -> String {
    let names = |l: &[usize]| {
        l.iter()
            .map(|&i| engine.cluster().endpoints[i].id())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let ips = |l: &[std::net::IpAddr]| {
        l.iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match &e.verdict {
        Verdict::Clients(a) if a.is_empty() => "nobody: no outside address is admitted".into(),
        Verdict::Clients(a) => format!("clients at {}", addresses(a)),
        Verdict::Nodes { admitted, refused } if refused.is_empty() => {
            format!("everyone, as every node ({})", ips(admitted))
        }
        Verdict::Nodes { admitted, .. } if admitted.is_empty() => {
            "nobody: no node's address is admitted".into()
        }
        Verdict::Nodes { admitted, refused } => format!(
            "what arrives at nodes {} (not {})",
            ips(admitted),
            ips(refused)
        ),
        Verdict::NodesIn(a) if a.is_all() => {
            "everyone, as any node (no Node objects: their addresses are not known)".into()
        }
        Verdict::NodesIn(a) if a.is_empty() => {
            "nobody: no address that is not a pod is admitted".into()
        }
        Verdict::NodesIn(a) => format!(
            "what arrives at a node whose address is in {} (no Node objects in the input)",
            addresses(a)
        ),
        Verdict::Controllers { admitted, refused } if refused.is_empty() => {
            format!("through the controller ({})", names(admitted))
        }
        Verdict::Controllers { admitted, .. } if admitted.is_empty() => {
            "nobody: the policies refuse the controller's pods".into()
        }
        Verdict::Controllers { admitted, refused } => format!(
            "through controller pods {} (not {})",
            names(admitted),
            names(refused)
        ),
        Verdict::ControllerAmong(terms) if terms.is_empty() => {
            "nobody: the backend admits no pod on this port".into()
        }
        Verdict::ControllerAmong(terms) => format!(
            "only if the ingress controller is among: {}",
            terms
                .iter()
                .map(|t| t.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        ),
    }
}

fn source(s: &Source) -> &'static str {
    match s {
        Source::Clients => "client address (externalTrafficPolicy: Local)",
        Source::Nodes => "node address (externalTrafficPolicy: Cluster masquerades)",
        Source::Controller => "ingress controller pods",
    }
}

#[derive(Serialize)]
struct EntryJson<'a> {
    via: &'a str,
    backend: String,
    port: String,
    /// `clients`, `nodes` or `controller`: who the backend sees as the source.
    source: &'static str,
    /// Whether anyone gets through.
    open: bool,
    gets_through: String,
}

/// Renders the ways in: one row per way, backend pod and port.
pub fn render_outside(
    engine: &Engine,
    entries: &[Entry],
    format: Format,
    out: &mut dyn Write,
) -> io::Result<()> {
    let rows: Vec<[String; 5]> = entries
        .iter()
        .map(|e| {
            [
                e.via.clone(),
                engine.cluster().endpoints[e.backend].id(),
                e.port.to_string(),
                source(&e.source).to_string(),
                gets_through(engine, e),
            ]
        })
        .collect();
    match format {
        Format::Json => {
            let items: Vec<EntryJson> = entries
                .iter()
                .zip(&rows)
                .map(|(e, r)| EntryJson {
                    via: &e.via,
                    backend: r[1].clone(),
                    port: r[2].clone(),
                    source: match e.source {
                        Source::Clients => "clients",
                        Source::Nodes => "nodes",
                        Source::Controller => "controller",
                    },
                    open: e.verdict.open(),
                    gets_through: r[4].clone(),
                })
                .collect();
            serde_json::to_writer_pretty(&mut *out, &serde_json::json!({ "outside": items }))?;
            writeln!(out)
        }
        Format::Csv => {
            writeln!(out, "via,backend,port,source,gets_through")?;
            for r in rows {
                let r: Vec<String> = r.iter().map(|f| csv_field(f)).collect();
                writeln!(out, "{}", r.join(","))?;
            }
            Ok(())
        }
        Format::Table => {
            if rows.is_empty() {
                return writeln!(
                    out,
                    "no way in from outside: no NodePort or LoadBalancer Service, no Ingress or HTTPRoute with a backend"
                );
            }
            let mut t = table();
            t.set_header(vec![
                "via",
                "backend",
                "port",
                "source seen",
                "gets through",
            ]);
            for r in rows {
                t.add_row(r.to_vec());
            }
            writeln!(out, "{t}")
        }
        Format::Md => {
            writeln!(
                out,
                "| via | backend | port | source seen | gets through |\n|---|---|---|---|---|"
            )?;
            for r in rows {
                writeln!(
                    out,
                    "| {} | `{}` | {} | {} | {} |",
                    r[0].replace('|', "\\|"),
                    r[1],
                    r[2],
                    r[3],
                    r[4].replace('|', "\\|")
                )?;
            }
            Ok(())
        }
        Format::Dot | Format::Mermaid => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "--outside is written as table, json, csv or md",
        )),
    }
}
