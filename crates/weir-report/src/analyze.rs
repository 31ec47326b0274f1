//! `weir analyze`: who can talk to whom, on which ports.

use std::collections::BTreeMap;
use std::io::{self, Write};

use serde::Serialize;
use weir_engine::{ClassId, Engine, Flows, PortSet, PortSetId};

use crate::focus::{Focus, Member};
use crate::{csv_field, table, AnalyzeFormat as Format};

/// One allowed connection between two named peers.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Connection {
    pub from: String,
    pub to: String,
    pub ports: String,
}

/// The peers of a class: endpoint ids, or the CIDRs of an outside address class.
pub(crate) fn peers(engine: &Engine, class: ClassId) -> Vec<(String, Member)> {
    match engine.class_cidrs(class) {
        Some(cidrs) => vec![(weir_engine::ipspace::describe(&cidrs), Member::Outside)],
        None => engine
            .class_members(class)
            .iter()
            .map(|&i| (engine.cluster().endpoints[i].id(), Member::Endpoint(i)))
            .collect(),
    }
}

/// Flows expanded to endpoint pairs (self-pairs left out), those `focus` shows, sorted.
pub fn connections(engine: &Engine, flows: &Flows, focus: &Focus) -> Vec<Connection> {
    let mut out = Vec::new();
    for f in &flows.list {
        let ports = focus.ports(flows.ports(f));
        if ports.is_empty() {
            continue;
        }
        let ports = ports.to_string();
        let (src, dst) = (peers(engine, f.src), peers(engine, f.dst));
        // Self-pairs of one endpoint are left out; an address class never equals an endpoint.
        for (s, a) in &src {
            for (d, b) in &dst {
                if s != d && focus.keeps(engine, *a, *b) {
                    out.push(Connection {
                        from: s.clone(),
                        to: d.clone(),
                        ports: ports.clone(),
                    });
                }
            }
        }
    }
    out.sort();
    out
}

/// Flows merged into rectangles: every source in `.0` reaches every destination in
/// `.1` on `.2`. Sources sharing (destinations, ports) are merged after destinations
/// sharing (source, ports), which keeps output small where policies select tiers.
pub fn rectangles(flows: &Flows) -> Vec<(Vec<ClassId>, Vec<ClassId>, &PortSet)> {
    use std::collections::HashMap;
    // Port sets are interned: equal sets have equal ids, so the ids are the keys.
    let mut by_src: HashMap<(ClassId, PortSetId), Vec<ClassId>> = HashMap::new();
    for f in &flows.list {
        by_src.entry((f.src, f.ports)).or_default().push(f.dst);
    }
    let mut by_dsts: HashMap<(Vec<ClassId>, PortSetId), Vec<ClassId>> = HashMap::new();
    for ((src, ports), mut dsts) in by_src {
        dsts.sort_unstable();
        by_dsts.entry((dsts, ports)).or_default().push(src);
    }
    let mut out: Vec<(Vec<ClassId>, Vec<ClassId>, &PortSet)> = by_dsts
        .into_iter()
        .map(|((dsts, ports), mut srcs)| {
            srcs.sort_unstable();
            (srcs, dsts, flows.port_set(ports))
        })
        .collect();
    out.sort();
    out
}

/// JSON arrays' contents (`"ns/a","ns/b"`) per class, rendered once.
fn json_members(engine: &Engine, classes: usize) -> Vec<String> {
    (0..classes as ClassId)
        .map(|c| {
            peers(engine, c)
                .iter()
                .map(|(p, _)| serde_json::to_string(p).expect("strings serialize"))
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect()
}

fn write_json(
    engine: &Engine,
    flows: &Flows,
    focus: &Focus,
    out: &mut dyn Write,
) -> io::Result<()> {
    let classes = flows
        .list
        .iter()
        .map(|f| f.src.max(f.dst) as usize + 1)
        .max()
        .unwrap_or(0);
    let members = json_members(engine, classes);
    let join = |ids: &[ClassId]| {
        ids.iter()
            .map(|&c| members[c as usize].as_str())
            .filter(|m| !m.is_empty())
            .collect::<Vec<_>>()
            .join(",")
    };
    write!(
        out,
        "{{\"stats\":{},\"flows\":[",
        serde_json::to_string(&engine.stats())?
    )?;
    let mut first = true;
    let mut flow = |from: String, to: String, ports: &PortSet| -> io::Result<()> {
        if !std::mem::take(&mut first) {
            out.write_all(b",")?;
        }
        write!(
            out,
            "\n{{\"from\":[{from}],\"to\":[{to}],\"ports\":{}}}",
            serde_json::to_string(&ports.to_string())?
        )
    };
    for (srcs, dsts, ports) in rectangles(flows) {
        if focus.is_all() {
            flow(join(&srcs), join(&dsts), ports)?;
            continue;
        }
        let ports = focus.ports(ports);
        if ports.is_empty() {
            continue;
        }
        // Classes are cut by the focus: the shown members, as one or two rectangles.
        let members = |classes: &[ClassId]| -> Vec<(String, Member)> {
            classes
                .iter()
                .flat_map(|&c| peers(engine, c))
                .map(|(name, m)| (serde_json::to_string(&name).expect("strings serialize"), m))
                .collect()
        };
        for (from, to) in focus.split(engine, &members(&srcs), &members(&dsts)) {
            flow(from.join(","), to.join(","), &ports)?;
        }
    }
    writeln!(out, "\n]}}")
}

/// Renders allowed connections. JSON keeps equivalence classes grouped (`from` ×
/// `to` are all allowed on `ports`), so it stays small on large clusters.
pub fn render_analyze(
    engine: &Engine,
    flows: &Flows,
    format: Format,
    focus: &Focus,
    out: &mut dyn Write,
) -> io::Result<()> {
    match format {
        Format::Json => write_json(engine, flows, focus, out)?,
        Format::Csv => {
            writeln!(out, "from,to,ports")?;
            for c in connections(engine, flows, focus) {
                writeln!(
                    out,
                    "{},{},{}",
                    csv_field(&c.from),
                    csv_field(&c.to),
                    csv_field(&c.ports)
                )?;
            }
        }
        Format::Table => {
            let mut t = table();
            t.set_header(vec!["from", "to", "ports"]);
            for c in connections(engine, flows, focus) {
                t.add_row(vec![c.from, c.to, c.ports]);
            }
            writeln!(out, "{t}")?;
        }
        Format::Md => {
            writeln!(out, "| from | to | ports |\n|---|---|---|")?;
            for c in connections(engine, flows, focus) {
                writeln!(out, "| `{}` | `{}` | {} |", c.from, c.to, c.ports)?;
            }
        }
        Format::Dot | Format::Mermaid => {
            render_graph(engine, flows, focus, format == Format::Dot, out)?
        }
    }
    Ok(())
}

fn render_graph(
    engine: &Engine,
    flows: &Flows,
    focus: &Focus,
    dot: bool,
    out: &mut dyn Write,
) -> io::Result<()> {
    let conns = connections(engine, flows, focus);
    let mut ids: BTreeMap<String, String> = BTreeMap::new();
    for c in &conns {
        for name in [&c.from, &c.to] {
            let next = format!("n{}", ids.len());
            ids.entry(name.clone()).or_insert(next);
        }
    }
    // Every endpoint is drawn, connected or not — unless a focus narrowed the answer.
    for e in engine.cluster().endpoints.iter().filter(|_| focus.is_all()) {
        let next = format!("n{}", ids.len());
        ids.entry(e.id()).or_insert(next);
    }
    // Group endpoint nodes by namespace; outside addresses stand alone.
    let mut by_ns: BTreeMap<String, Vec<(&String, &String)>> = BTreeMap::new();
    for (name, id) in &ids {
        let ns = match name.split_once('/') {
            Some((ns, rest))
                if !ns.contains('.')
                    && !ns.contains(':')
                    && !rest.is_empty()
                    && !rest.chars().all(|c| c.is_ascii_digit()) =>
            {
                ns.to_string()
            }
            _ => String::new(),
        };
        by_ns.entry(ns).or_default().push((name, id));
    }
    if dot {
        writeln!(
            out,
            "digraph weir {{\n  rankdir=LR;\n  node [shape=box, fontname=\"monospace\"];"
        )?;
        for (i, (ns, nodes)) in by_ns.iter().enumerate() {
            if ns.is_empty() {
                for (name, id) in nodes {
                    writeln!(out, "  {id} [label={name:?}, shape=ellipse];")?;
                }
                continue;
            }
            writeln!(
                out,
                "  subgraph cluster_{i} {{\n    label={:?};",
                format!("namespace {ns}")
            )?;
            for (name, id) in nodes {
                let short = name.split_once('/').map_or(name.as_str(), |x| x.1);
                writeln!(out, "    {id} [label={short:?}];")?;
            }
            writeln!(out, "  }}")?;
        }
        for c in &conns {
            writeln!(
                out,
                "  {} -> {} [label={:?}];",
                ids[&c.from], ids[&c.to], c.ports
            )?;
        }
        writeln!(out, "}}")?;
    } else {
        writeln!(out, "flowchart LR")?;
        for (ns, nodes) in &by_ns {
            if !ns.is_empty() {
                writeln!(
                    out,
                    "  subgraph ns_{} [\"namespace {ns}\"]",
                    ns.replace(['-', '.'], "_")
                )?;
            }
            for (name, id) in nodes {
                let short = if ns.is_empty() {
                    name.as_str()
                } else {
                    name.split_once('/').map_or(name.as_str(), |x| x.1)
                };
                writeln!(out, "    {id}[\"{}\"]", short.replace('"', "'"))?;
            }
            if !ns.is_empty() {
                writeln!(out, "  end")?;
            }
        }
        for c in &conns {
            writeln!(
                out,
                "  {} -->|\"{}\"| {}",
                ids[&c.from],
                c.ports.replace('"', "'"),
                ids[&c.to]
            )?;
        }
    }
    Ok(())
}

/// Counts instead of lines, for inputs too large to list.
pub fn render_summary(
    engine: &Engine,
    flows: &Flows,
    format: Format,
    out: &mut dyn Write,
) -> io::Result<()> {
    let stats = engine.stats();
    let mut endpoint_pairs: u64 = 0;
    let mut all_port_pairs: u64 = 0;
    let mut external_flows = 0usize;
    let mut by_ports: BTreeMap<PortSetId, u64> = BTreeMap::new();
    for f in &flows.list {
        let ports = flows.ports(f);
        let (a, b) = (
            engine.class_members(f.src).len() as u64,
            engine.class_members(f.dst).len() as u64,
        );
        if a == 0 || b == 0 {
            external_flows += 1;
            continue;
        }
        let pairs = if f.src == f.dst { a * (a - 1) } else { a * b };
        endpoint_pairs += pairs;
        if ports.is_all() {
            all_port_pairs += pairs;
        }
        *by_ports.entry(f.ports).or_default() += pairs;
    }
    let n = stats.endpoints as u64;
    let possible = n * n.saturating_sub(1);
    let mut top: Vec<(String, u64)> = by_ports
        .into_iter()
        .map(|(id, pairs)| (flows.port_set(id).to_string(), pairs))
        .collect();
    top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    top.truncate(10);
    let doc = serde_json::json!({
        "stats": stats,
        "class_flows": flows.list.len(),
        "external_flows": external_flows,
        "allowed_endpoint_pairs": endpoint_pairs,
        "possible_endpoint_pairs": possible,
        "all_ports_endpoint_pairs": all_port_pairs,
        "top_port_sets": top.iter().map(|(p, c)| serde_json::json!({"ports": p, "endpoint_pairs": c})).collect::<Vec<_>>(),
    });
    if format == Format::Json {
        serde_json::to_writer_pretty(&mut *out, &doc)?;
        return writeln!(out);
    }
    let mut t = table();
    t.set_header(vec!["measure", "count"]);
    let s = &doc["stats"];
    for key in [
        "namespaces",
        "endpoints",
        "policies",
        "rules",
        "endpoint_classes",
        "external_classes",
        "ingress_isolated_classes",
        "egress_isolated_classes",
    ] {
        t.add_row(vec![key.replace('_', " "), s[key].to_string()]);
    }
    t.add_row(vec![
        "allowed endpoint pairs".to_string(),
        format!("{endpoint_pairs} of {possible}"),
    ]);
    t.add_row(vec![
        "…of which on all ports".to_string(),
        all_port_pairs.to_string(),
    ]);
    t.add_row(vec![
        "class flows".to_string(),
        flows.list.len().to_string(),
    ]);
    t.add_row(vec![
        "flows with outside addresses".to_string(),
        external_flows.to_string(),
    ]);
    writeln!(out, "{t}")?;
    if !top.is_empty() {
        let mut t = table();
        t.set_header(vec!["ports", "endpoint pairs"]);
        for (p, c) in top {
            t.add_row(vec![p, c.to_string()]);
        }
        writeln!(out, "{t}")?;
    }
    Ok(())
}
