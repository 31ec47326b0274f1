//! `weir analyze --exposure`: per workload, every peer that could ever reach it, or that it
//! could ever reach — pods that may not exist yet included — in a table, JSON, CSV or
//! Markdown; and which workloads are open to every namespace or to the outside world.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::net::IpAddr;

use serde::Serialize;
use weir_engine::exposure::{describe_addrs, Exposure, TooComplex, Who};
use weir_engine::{Engine, PortSet};
use weir_model::{Direction, Endpoint};

use crate::{csv_field, table, AnalyzeFormat as Format, Focus, Member};

/// The endpoints one exposure holds for (a workload's replicas share their labels), and it.
pub struct Exposed {
    pub endpoints: Vec<String>,
    /// One per direction asked, ingress first.
    pub exposures: Vec<Exposure>,
    /// Whether these are pods that do not exist (asked about by labels).
    pub hypothetical: bool,
}

/// The exposures of the focused endpoints (every one without a focus), grouped by what
/// decides them (namespace, labels, ports), then of each hypothetical pod given.
pub fn exposures(
    engine: &Engine,
    focus: &Focus,
    hypothetical: &[Endpoint],
) -> Result<Vec<Exposed>, TooComplex> {
    let cluster = engine.cluster();
    let directions: Vec<Direction> = match focus.direction {
        Some(d) => vec![d],
        None => vec![Direction::Ingress, Direction::Egress],
    };
    let mut groups: BTreeMap<_, Vec<usize>> = BTreeMap::new();
    for (i, e) in cluster.endpoints.iter().enumerate() {
        let kept = focus
            .focus
            .as_ref()
            .is_none_or(|s| s.matches(engine, Member::Endpoint(i)));
        if kept {
            groups
                .entry((&e.namespace, &e.labels, &e.ports, e.host_network))
                .or_default()
                .push(i);
        }
    }
    let one = |e: &Endpoint| -> Result<Vec<Exposure>, TooComplex> {
        directions
            .iter()
            .map(|&d| {
                let mut x = engine.exposure(e, d)?;
                if focus.ports.is_some() {
                    for g in &mut x.grants {
                        g.ports = focus.ports(&g.ports);
                    }
                    x.grants.retain(|g| !g.ports.is_empty());
                }
                Ok(x)
            })
            .collect()
    };
    let mut out = Vec::new();
    for members in groups.into_values() {
        out.push(Exposed {
            endpoints: members.iter().map(|&i| cluster.endpoints[i].id()).collect(),
            exposures: one(&cluster.endpoints[members[0]])?,
            hypothetical: false,
        });
    }
    for e in hypothetical {
        out.push(Exposed {
            endpoints: vec![e.id()],
            exposures: one(e)?,
            hypothetical: true,
        });
    }
    Ok(out)
}

#[derive(Serialize)]
struct GrantJson {
    /// The peers in words.
    peers: String,
    /// `pods` or `addresses` (that are not pods).
    kind: &'static str,
    /// Selectors in kubectl's syntax, with `kubernetes.io/metadata.name` for names; `null`
    /// for addresses.
    namespaces: Option<String>,
    pods: Option<String>,
    /// `any address`, or CIDRs.
    addresses: String,
    ports: String,
    allowed_by: String,
}

#[derive(Serialize)]
struct DirectionJson {
    grants: Vec<GrantJson>,
    /// Ports open to any pod of any namespace, future ones included ("none" if none).
    every_pod: String,
    /// Ports open to some pods of every namespace, future ones included.
    every_namespace: String,
    /// Addresses outside the cluster (not pods, not nodes or hostNetwork pods) allowed on some port.
    outside: String,
    /// Where the answer is not exact, and why.
    inexact: Vec<String>,
}

#[derive(Serialize)]
struct ExposedJson {
    endpoints: Vec<String>,
    hypothetical: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    ingress: Option<DirectionJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    egress: Option<DirectionJson>,
}

/// Addresses in words: `any address`, `nobody`, or CIDRs.
pub(crate) fn addresses(a: &weir_engine::exposure::Addrs) -> String {
    if a.is_all() {
        "any address".into()
    } else if a.is_empty() {
        "nobody".into()
    } else {
        describe_addrs(a)
    }
}

fn direction_json(x: &Exposure, inside: &[IpAddr]) -> DirectionJson {
    let outside = x.outside(inside);
    DirectionJson {
        grants: x
            .grants
            .iter()
            .map(|g| {
                let (kind, namespaces, pods) = match &g.peers.who {
                    Who::Pods { namespaces, pods } => {
                        ("pods", Some(namespaces.to_string()), Some(pods.to_string()))
                    }
                    Who::NotPods => ("addresses", None, None),
                };
                GrantJson {
                    peers: g.peers.to_string(),
                    kind,
                    namespaces,
                    pods,
                    addresses: addresses(&g.peers.addrs),
                    ports: g.ports.to_string(),
                    allowed_by: g.by.to_string(),
                }
            })
            .collect(),
        every_pod: x.every_pod().to_string(),
        every_namespace: x.every_namespace().to_string(),
        outside: if outside.is_empty() {
            "none".into()
        } else {
            addresses(&outside)
        },
        inexact: x.inexact.clone(),
    }
}

/// Who the endpoints are, in one cell: the first, and how many more.
pub(crate) fn who(x: &Exposed) -> String {
    let more = match x.endpoints.len() {
        1 => String::new(),
        n => format!(" (+{} alike)", n - 1),
    };
    let any = if x.hypothetical {
        " (any such pod)"
    } else {
        ""
    };
    format!("{}{more}{any}", x.endpoints[0])
}

/// The grants as (peers, ports, allowed by) in words; any pod and any other address on the
/// same ports by the same rule read as one row: `anyone`.
pub(crate) fn in_words(e: &Exposure) -> Vec<(String, String, String)> {
    let everyone = |g: &weir_engine::exposure::Grant| match &g.peers.who {
        Who::Pods { namespaces, pods } => {
            g.peers.addrs.is_all() && pods.is_any() && namespaces.is_any_namespace()
        }
        Who::NotPods => g.peers.addrs.is_all(),
    };
    let mut out = Vec::new();
    let mut merged = vec![false; e.grants.len()];
    for (i, g) in e.grants.iter().enumerate() {
        if merged[i] {
            continue;
        }
        let twin = everyone(g).then(|| {
            e.grants.iter().enumerate().skip(i + 1).find(|(_, h)| {
                everyone(h) && h.peers.who != g.peers.who && h.ports == g.ports && h.by == g.by
            })
        });
        let peers = match twin.flatten() {
            Some((j, _)) => {
                merged[j] = true;
                "anyone (any pod of any namespace, any other address)".to_string()
            }
            None => g.peers.to_string(),
        };
        out.push((peers, g.ports.to_string(), g.by.to_string()));
    }
    out
}

/// Renders exposures. Every format has the same rows: endpoint, direction, peers, ports,
/// what allowed them; then (table, Markdown) who is open to every namespace or the outside.
pub fn render_exposure(
    engine: &Engine,
    exposed: &[Exposed],
    format: Format,
    out: &mut dyn Write,
) -> io::Result<()> {
    let inside = weir_engine::outside::cluster_addresses(engine.cluster());
    let rows = || {
        exposed.iter().flat_map(|x| {
            x.exposures.iter().flat_map(move |e| {
                in_words(e).into_iter().map(move |(peers, ports, by)| {
                    [
                        who(x),
                        e.direction.to_string().to_lowercase(),
                        peers,
                        ports,
                        by,
                    ]
                })
            })
        })
    };
    let header = ["endpoint", "direction", "peers", "ports", "allowed by"];
    match format {
        Format::Json => {
            let items: Vec<ExposedJson> = exposed
                .iter()
                .map(|x| {
                    let pick = |d| {
                        x.exposures
                            .iter()
                            .find(|e| e.direction == d)
                            .map(|e| direction_json(e, &inside))
                    };
                    ExposedJson {
                        endpoints: x.endpoints.clone(),
                        hypothetical: x.hypothetical,
                        ingress: pick(Direction::Ingress),
                        egress: pick(Direction::Egress),
                    }
                })
                .collect();
            serde_json::to_writer_pretty(&mut *out, &serde_json::json!({ "exposure": items }))?;
            writeln!(out)?;
            return Ok(());
        }
        Format::Csv => {
            writeln!(out, "endpoint,direction,peers,ports,allowed_by")?;
            for r in rows() {
                let r: Vec<String> = r.iter().map(|f| csv_field(f)).collect();
                writeln!(out, "{}", r.join(","))?;
            }
            return Ok(());
        }
        Format::Table => {
            let mut t = table();
            t.set_header(header.to_vec());
            for r in rows() {
                t.add_row(r.to_vec());
            }
            writeln!(out, "{t}")?;
        }
        Format::Md => {
            writeln!(out, "| {} |\n|---|---|---|---|---|", header.join(" | "))?;
            for r in rows() {
                writeln!(
                    out,
                    "| `{}` | {} | {} | {} | {} |",
                    r[0],
                    r[1],
                    r[2].replace('|', "\\|"),
                    r[3],
                    r[4].replace('|', "\\|")
                )?;
            }
        }
        Format::Dot | Format::Mermaid => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "--exposure is written as table, json, csv or md",
            ))
        }
    }
    let open = open_lines(exposed, &inside);
    if !open.is_empty() {
        writeln!(out)?;
        for line in open {
            match format {
                Format::Md => writeln!(out, "- {line}")?,
                _ => writeln!(out, "{line}")?,
            }
        }
    }
    Ok(())
}

/// What a reviewer asks first: who accepts from any pod of every namespace, or from outside
/// the cluster, and where an answer is not exact. One line each.
pub(crate) fn open_lines(exposed: &[Exposed], inside: &[IpAddr]) -> Vec<String> {
    let mut open = Vec::new();
    for x in exposed {
        for e in &x.exposures {
            if e.direction == Direction::Egress {
                for why in &e.inexact {
                    open.push(format!("{} egress: not exact: {why}", who(x)));
                }
                continue; // an open egress is the default, not a finding
            }
            let (every_pod, every_ns, outside) =
                (e.every_pod(), e.every_namespace(), e.outside(inside));
            if !every_pod.is_empty() {
                open.push(format!(
                    "{} accepts from any pod of any namespace, future ones included, on {every_pod}",
                    who(x)
                ));
            }
            let some = every_ns.difference(&every_pod);
            if !some.is_empty() {
                open.push(format!(
                    "{} accepts from pods of every namespace, future ones included, on {some}",
                    who(x)
                ));
            }
            if !outside.is_empty() {
                let ports = e
                    .grants
                    .iter()
                    .filter(|g| g.peers.who == Who::NotPods)
                    .fold(PortSet::none(), |acc, g| acc.union(&g.ports));
                open.push(format!(
                    "{} accepts from outside the cluster ({}) on {ports}",
                    who(x),
                    addresses(&outside)
                ));
            }
        }
    }
    open
}
