//! `weir report`: one self-contained HTML page (no scripts, no network): the matrix as a
//! heatmap grouped by namespace, a graph of allowed flows, the policies, lint findings.

use std::fmt::Write as _;
use std::io::{self, Write};

use weir_engine::lint::Finding;
use weir_engine::{describe_cluster_rule, describe_rule, Engine, Side};
use weir_model::Direction;

use crate::{Focus, Member};

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Above this many endpoints the graph is left out (it would be unreadable).
const GRAPH_LIMIT: usize = 150;

/// Endpoints by namespace, then name.
fn by_namespace(engine: &Engine, mut list: Vec<usize>) -> Vec<usize> {
    let eps = &engine.cluster().endpoints;
    list.sort_by(|&a, &b| {
        (&eps[a].namespace, &eps[a].name).cmp(&(&eps[b].namespace, &eps[b].name))
    });
    list
}

/// Above this many pairs of classes the reasons are left out (`weir analyze --explain`
/// has them); each is a block of text.
const WHY_LIMIT: usize = 2500;

/// The reasons section (`weir analyze --explain`'s, one block per pair of classes, pairs
/// nothing bears on in one list) and the anchor of each pair it explains.
fn reasons(
    engine: &Engine,
    focus: &Focus,
    point: &mut dyn FnMut(&mut weir_engine::PortsExplanation),
) -> io::Result<(
    String,
    std::collections::HashSet<(weir_engine::ClassId, weir_engine::ClassId)>,
)> {
    let mut blocks = String::new();
    let mut defaults = String::new();
    let mut anchored = std::collections::HashSet::new();
    crate::explain::each_explained(engine, focus, point, &mut |x| {
        anchored.insert((x.from, x.to));
        let pairs: Vec<String> = x
            .shown
            .iter()
            .map(|(f, t)| esc(&format!("{} → {}", f.join(", "), t.join(", "))))
            .collect();
        if x.by_default() {
            let _ = write!(
                defaults,
                r#"<li class="why" id="why-{}-{}">{}</li>"#,
                x.from,
                x.to,
                pairs.join("<br>")
            );
            return Ok(());
        }
        let mut text = Vec::new();
        crate::explain::write_ranges(&mut text, x.ranges)?;
        let _ = write!(
            blocks,
            r#"<div class="why" id="why-{}-{}"><p><b>{}</b></p><pre>{}</pre></div>"#,
            x.from,
            x.to,
            pairs.join("<br>"),
            esc(&String::from_utf8_lossy(&text))
        );
        Ok(())
    })?;
    if !defaults.is_empty() {
        let _ = write!(
            blocks,
            r#"<p>Allowed on every port by default (no policy or tier selects either side):</p><ul id="why-default">{defaults}</ul>"#
        );
    }
    Ok((blocks, anchored))
}

/// Arrows drawn one per connection up to this many; above, one per pair of namespaces.
const LABEL_LIMIT: usize = 120;

/// The flow graph: one column per namespace (outside address ranges in a column of their
/// own, first), endpoints stacked in it; an arrow per allowed connection, solid when every
/// port is allowed, dashed and labelled with the ports otherwise; arrows within a column
/// bow out to its left, clear of the names. Above [`LABEL_LIMIT`] arrows, which no layout
/// keeps readable, [`namespace_graph`] draws one arrow per pair of namespaces.
fn graph(
    engine: &Engine,
    order: &[usize],
    kept: &dyn Fn(usize, usize) -> bool,
    allowed: &dyn Fn(usize, usize) -> weir_engine::PortSet,
    focus: &Focus,
    why: &dyn Fn(Side, Side) -> Option<String>,
    h: &mut String,
) {
    let cluster = engine.cluster();
    let eps = &cluster.endpoints;
    // Outside address ranges (the engine's classes) with a connection to a shown endpoint,
    // and those connections' arrows.
    let stats = engine.stats();
    let first_external = stats.endpoint_classes as weir_engine::ClassId;
    let mut outside: Vec<(String, std::net::IpAddr)> = Vec::new();
    let mut outside_arrows: Vec<(Node, Node, weir_engine::PortSet)> = Vec::new();
    for c in first_external..first_external + stats.external_classes as weir_engine::ClassId {
        let Some(cidrs) = engine.class_cidrs(c) else {
            continue;
        };
        let Some(rep) = cidrs.first().map(|n| n.addr()) else {
            continue;
        };
        let name = weir_engine::ipspace::describe(&cidrs);
        let before = outside_arrows.len();
        for &b in order {
            if !focus.keeps(engine, Member::Outside, Member::Endpoint(b)) {
                continue;
            }
            let p = focus.ports(&engine.allowed(Side::Address(rep), Side::Endpoint(b)));
            if !p.is_empty() {
                outside_arrows.push((Node::Outside(name.clone(), rep), Node::Endpoint(b), p));
            }
        }
        if outside_arrows.len() > before {
            outside.push((name, rep));
        }
    }
    // Columns: outside first, then each namespace.
    let mut columns: Vec<(String, Vec<Node>)> = Vec::new();
    if !outside.is_empty() {
        columns.push((
            "outside the cluster".into(),
            outside
                .iter()
                .map(|(name, ip)| Node::Outside(name.clone(), *ip))
                .collect(),
        ));
    }
    for &i in order {
        match columns.last_mut() {
            Some((ns, nodes))
                if *ns == eps[i].namespace && !matches!(nodes[0], Node::Outside(..)) =>
            {
                nodes.push(Node::Endpoint(i))
            }
            _ => columns.push((eps[i].namespace.clone(), vec![Node::Endpoint(i)])),
        }
    }
    let short = |n: &Node| -> String {
        let full = match n {
            Node::Endpoint(i) => eps[*i].name.clone(),
            Node::Outside(name, _) => name.clone(),
        };
        let mut s: String = full.chars().take(34).collect();
        if full.chars().count() > 34 {
            s.push('…');
        }
        s
    };
    let (row, top) = (44.0, 56.0);
    let mut x = 70.0;
    let mut at: std::collections::HashMap<Node, (f64, f64)> = std::collections::HashMap::new();
    let mut heads = String::new();
    for (name, nodes) in &columns {
        let longest = nodes
            .iter()
            .map(|n| short(n).chars().count())
            .max()
            .unwrap_or(0);
        let width = (longest.max(name.chars().count()) as f64 * 7.2 + 170.0).max(230.0);
        let _ = write!(
            heads,
            r#"<text x="{:.1}" y="24" font-size="13" font-weight="bold">{}</text>"#,
            x - 8.0,
            esc(name)
        );
        for (k, n) in nodes.iter().enumerate() {
            at.insert(n.clone(), (x + 8.0, top + k as f64 * row));
        }
        x += width;
    }
    let rows = columns.iter().map(|(_, n)| n.len()).max().unwrap_or(1);
    let (w, ht) = (x + 20.0, top + rows as f64 * row + 20.0);
    // Arrows: (from, to, ports).
    let mut arrows: Vec<(Node, Node, weir_engine::PortSet)> = Vec::new();
    for &a in order {
        for &b in order {
            if a != b && kept(a, b) {
                let p = allowed(a, b);
                if !p.is_empty() {
                    arrows.push((Node::Endpoint(a), Node::Endpoint(b), p));
                }
            }
        }
    }
    arrows.extend(outside_arrows);
    if arrows.len() > LABEL_LIMIT {
        // Too many arrows to follow one by one: one per pair of columns instead.
        let col_of: std::collections::HashMap<&Node, usize> = columns
            .iter()
            .enumerate()
            .flat_map(|(k, (_, nodes))| nodes.iter().map(move |n| (n, k)))
            .collect();
        let mut pairs: std::collections::BTreeMap<(usize, usize), (usize, weir_engine::PortSet)> =
            std::collections::BTreeMap::new();
        for (a, b, p) in &arrows {
            let e = pairs
                .entry((col_of[a], col_of[b]))
                .or_insert((0, weir_engine::PortSet::none()));
            e.0 += 1;
            e.1 = e.1.union(p);
        }
        let names: Vec<&str> = columns.iter().map(|(n, _)| n.as_str()).collect();
        namespace_graph(&names, &pairs, arrows.len(), h);
        return;
    }
    let _ = write!(
        h,
        r##"<svg id="graph" xmlns="http://www.w3.org/2000/svg" width="{w:.0}" height="{ht:.0}" viewBox="0 0 {w:.0} {ht:.0}"><defs><marker id="arr" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0L10,5L0,10z" fill="#2e9d57"/></marker></defs>{heads}"##
    );
    let name_of = |n: &Node| match n {
        Node::Endpoint(i) => eps[*i].id(),
        Node::Outside(name, _) => name.clone(),
    };
    let side_of = |n: &Node| match n {
        Node::Endpoint(i) => Side::Endpoint(*i),
        Node::Outside(_, ip) => Side::Address(*ip),
    };
    let mut labels = String::new();
    // Labels written so far: centre and half width.
    let mut placed: Vec<(f64, f64, f64)> = Vec::new();
    for (a, b, ports) in &arrows {
        let ((x0, y1), (x2, y2)) = (at[a], at[b]);
        // Across columns: from the end of the source's name to the left of the target;
        // within one: a bow out to the left, clear of the names.
        let (x1, c1, c2, end) = if (x0 - x2).abs() < 1.0 {
            let bow = 30.0 + (y2 - y1).abs() * 0.3;
            let x1 = x0 - 9.0;
            (x1, (x1 - bow, y1), (x2 - 9.0 - bow, y2), (x2 - 10.0, y2))
        } else if x2 > x0 {
            let x1 = x0 + 16.0 + short(a).chars().count() as f64 * 7.2;
            let dx = ((x2 - x1).abs() * 0.45).max(40.0);
            (x1, (x1 + dx, y1), (x2 - dx, y2), (x2 - 10.0, y2))
        } else {
            // Leftwards: from the left of the source to the end of the target's name.
            let x1 = x0 - 9.0;
            let x3 = x2 + 18.0 + short(b).chars().count() as f64 * 7.2;
            let dx = ((x1 - x3).abs() * 0.45).max(40.0);
            (
                x1,
                (x1 - dx, y1 + 10.0),
                (x3 + dx, y2 + 10.0),
                (x3, y2 + 4.0),
            )
        };
        let dash = if ports.is_all() {
            ""
        } else {
            r#" stroke-dasharray="5 3""#
        };
        let text = ports.to_string();
        // Each arrow links to its reasons, where the page has them.
        let link = why(side_of(a), side_of(b));
        if let Some(href) = &link {
            let _ = write!(h, r##"<a href="{href}">"##);
        }
        let _ = write!(
            h,
            r##"<path class="flow" d="M{x1:.1},{y1:.1} C{:.1},{:.1} {:.1},{:.1} {:.1},{:.1}" fill="none" stroke="#2e9d57" stroke-opacity="0.6"{dash} marker-end="url(#arr)"><title>{} → {}: {}</title></path>"##,
            c1.0,
            c1.1,
            c2.0,
            c2.1,
            end.0,
            end.1,
            esc(&name_of(a)),
            esc(&name_of(b)),
            esc(&text)
        );
        if link.is_some() {
            h.push_str("</a>");
        }
        if !ports.is_all() {
            // The curve's midpoint, (P0 + 3·C1 + 3·C2 + P3) / 8, moved down until it
            // overlaps no earlier label (a few tries).
            let mx = (x1 + 3.0 * c1.0 + 3.0 * c2.0 + end.0) / 8.0;
            let mut my = (y1 + 3.0 * c1.1 + 3.0 * c2.1 + end.1) / 8.0;
            let half = text.chars().count() as f64 * 3.0 + 4.0;
            for _ in 0..6 {
                let clash = placed.iter().any(|&(px, py, ph): &(f64, f64, f64)| {
                    (px - mx).abs() < ph + half && (py - my).abs() < 11.0
                });
                if !clash {
                    break;
                }
                my += 11.0;
            }
            placed.push((mx, my, half));
            let _ = write!(
                labels,
                r##"<text class="ports" x="{mx:.1}" y="{:.1}" text-anchor="middle" font-size="10" fill="#1d6b3a" stroke="#fff" stroke-width="3" paint-order="stroke">{}</text>"##,
                my - 3.0,
                esc(&text)
            );
        }
    }
    h.push_str(&labels);
    for n in columns.iter().flat_map(|(_, nodes)| nodes) {
        let (x, y) = at[n];
        let label = short(n);
        match n {
            Node::Endpoint(i) => {
                let isolated = cluster.policies.iter().any(|p| engine.selects(p, *i));
                let fill = if isolated { "#345" } else { "#9ab" };
                let _ = write!(
                    h,
                    r#"<circle class="node" cx="{x:.1}" cy="{y:.1}" r="8" fill="{fill}"><title>{}</title></circle>"#,
                    esc(&eps[*i].id())
                );
            }
            Node::Outside(name, _) => {
                let _ = write!(
                    h,
                    r##"<rect class="outside" x="{:.1}" y="{:.1}" width="16" height="16" fill="#c96"><title>{}</title></rect>"##,
                    x - 8.0,
                    y - 8.0,
                    esc(name)
                );
            }
        }
        let _ = write!(
            h,
            r#"<text x="{:.1}" y="{:.1}" font-size="12">{}</text>"#,
            x + 13.0,
            y + 4.0,
            esc(&label)
        );
    }
    h.push_str(r#"</svg><p>One column per namespace; squares are outside address ranges. Solid: every port allowed; dashed: some ports, written beside the arrow. Dark nodes are selected by at least one policy.</p>"#);
}

/// The flow graph above [`LABEL_LIMIT`] arrows, one arrow per pair of columns
/// (namespaces, or the outside ranges) in two columns: sources on the left, destinations
/// on the right, each box as tall as it has arrows so every arrow has its own place at
/// both ends (ordered to cross little), and each arrow's label — how many connections, all
/// their ports — written right of its destination, where no line runs.
fn namespace_graph(
    names: &[&str],
    pairs: &std::collections::BTreeMap<(usize, usize), (usize, weir_engine::PortSet)>,
    total: usize,
    h: &mut String,
) {
    let (slot, gap, top) = (18.0, 16.0, 40.0);
    let (left, right, width) = (20.0, 560.0, 150.0);
    // Each side's boxes: the columns with arrows on that side, and per box its arrows in
    // the order of the other side (pairs are sorted by source, then destination).
    let mut outgoing: Vec<Vec<(usize, usize)>> = vec![Vec::new(); names.len()];
    let mut incoming: Vec<Vec<(usize, usize)>> = vec![Vec::new(); names.len()];
    for &(a, b) in pairs.keys() {
        outgoing[a].push((a, b));
        incoming[b].push((a, b));
    }
    // Where each arrow leaves and arrives, and each box's extent.
    let place = |lists: &[Vec<(usize, usize)>]| {
        let mut at = std::collections::HashMap::new();
        let mut boxes = Vec::new();
        let mut y = top;
        for (k, list) in lists.iter().enumerate() {
            if list.is_empty() {
                continue;
            }
            let height = (list.len() as f64 * slot).max(28.0);
            let first = y + (height - list.len() as f64 * slot) / 2.0 + slot / 2.0;
            for (n, pair) in list.iter().enumerate() {
                at.insert(*pair, first + n as f64 * slot);
            }
            boxes.push((k, y, height));
            y += height + gap;
        }
        (at, boxes, y)
    };
    let (from_at, from_boxes, h1) = place(&outgoing);
    let (to_at, to_boxes, h2) = place(&incoming);
    let label_x = right + width + 10.0;
    let longest = pairs
        .iter()
        .map(|(&(a, _), (count, ports))| {
            format!("← {}: {count} × {ports}", names[a]).chars().count()
        })
        .max()
        .unwrap_or(0);
    let (w, ht) = (label_x + longest as f64 * 6.2 + 20.0, h1.max(h2) + 10.0);
    let _ = write!(
        h,
        r##"<svg id="graph" xmlns="http://www.w3.org/2000/svg" width="{w:.0}" height="{ht:.0}" viewBox="0 0 {w:.0} {ht:.0}"><defs><marker id="arr" viewBox="0 0 10 10" refX="10" refY="5" markerUnits="userSpaceOnUse" markerWidth="9" markerHeight="9" orient="auto"><path d="M0,0L10,5L0,10z" fill="#2e9d57"/></marker></defs><text x="{left:.1}" y="22" font-size="13" font-weight="bold">from</text><text x="{right:.1}" y="22" font-size="13" font-weight="bold">to</text>"##
    );
    for (k, y, height, x) in from_boxes
        .iter()
        .map(|&(k, y, ht)| (k, y, ht, left))
        .chain(to_boxes.iter().map(|&(k, y, ht)| (k, y, ht, right)))
    {
        let _ = write!(
            h,
            r##"<rect class="namespace" x="{x:.1}" y="{y:.1}" width="{width:.0}" height="{height:.1}" rx="5" fill="#eef" stroke="#99a"/><text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="12" font-weight="bold">{}</text>"##,
            x + width / 2.0,
            y + height / 2.0 + 4.0,
            esc(names[k])
        );
    }
    for (&(a, b), (count, ports)) in pairs {
        let (y1, y2) = (from_at[&(a, b)], to_at[&(a, b)]);
        let (x1, x2) = (left + width, right);
        let mid = (x1 + x2) / 2.0;
        let text = format!("{count} × {ports}");
        let _ = write!(
            h,
            r##"<path class="flow" d="M{x1:.1},{y1:.1} C{mid:.1},{y1:.1} {mid:.1},{y2:.1} {x2:.1},{y2:.1}" fill="none" stroke="#2e9d57" stroke-opacity="0.55" stroke-width="{:.1}" marker-end="url(#arr)"><title>{} → {}: {}</title></path><text class="ports" x="{label_x:.1}" y="{:.1}" font-size="11" fill="#1d6b3a">← {}: {}</text>"##,
            1.0 + (*count as f64).log2().max(0.0) * 0.5,
            esc(names[a]),
            esc(names[b]),
            esc(&text),
            y2 + 4.0,
            esc(names[a]),
            esc(&text)
        );
    }
    let _ = write!(
        h,
        r#"</svg><p>{total} connections between endpoints are too many to draw one by one: one arrow per pair of namespaces, from the left column to the right one, labelled beside its destination with where it comes from, how many connections it stands for and all their ports; the heatmap has each pair.</p>"#
    );
}

/// A node of the flow graph.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Node {
    Endpoint(usize),
    /// An outside address range: its name and an address in it.
    Outside(String, std::net::IpAddr),
}

/// Runs of one namespace in `order`: (namespace, how many).
fn namespace_runs<'c>(engine: &Engine<'c>, order: &[usize]) -> Vec<(&'c str, usize)> {
    let eps = &engine.cluster().endpoints;
    let mut groups: Vec<(&str, usize)> = Vec::new();
    for &i in order {
        match groups.last_mut() {
            Some((ns, n)) if *ns == eps[i].namespace => *n += 1,
            _ => groups.push((&eps[i].namespace, 1)),
        }
    }
    groups
}

/// The page; with a `focus` (not [`Focus::is_all`]) only the connections it keeps: the
/// heatmap's rows are their sources and its columns their destinations, the graph their
/// endpoints, the policies those selecting one of them.
pub fn render_html(
    engine: &Engine,
    findings: &[Finding],
    title: &str,
    focus: &Focus,
    point: &mut dyn FnMut(&mut weir_engine::PortsExplanation),
    out: &mut dyn Write,
) -> io::Result<()> {
    let cluster = engine.cluster();
    let eps = &cluster.endpoints;
    let n = eps.len();
    let kept = |a: usize, b: usize| {
        focus.is_all() || focus.keeps(engine, Member::Endpoint(a), Member::Endpoint(b))
    };
    let allowed =
        |a: usize, b: usize| focus.ports(&engine.allowed(Side::Endpoint(a), Side::Endpoint(b)));
    let (rows, cols) = if focus.is_all() {
        (
            by_namespace(engine, (0..n).collect()),
            by_namespace(engine, (0..n).collect()),
        )
    } else {
        let rows = (0..n).filter(|&a| (0..n).any(|b| kept(a, b))).collect();
        let cols = (0..n).filter(|&b| (0..n).any(|a| kept(a, b))).collect();
        (by_namespace(engine, rows), by_namespace(engine, cols))
    };
    // The graph's nodes and the policies shown: every endpoint of a kept connection.
    let mut order: Vec<usize> = rows.iter().chain(&cols).copied().collect();
    order.sort_unstable();
    order.dedup();
    let order = by_namespace(engine, order);
    let shown: std::collections::HashSet<usize> = order.iter().copied().collect();
    // The reasons, when the pairs of classes to explain are few enough to print: each
    // heatmap cell and graph arrow links to its pair's.
    let mut classes: Vec<weir_engine::ClassId> =
        order.iter().map(|&i| engine.class_of_endpoint(i)).collect();
    classes.sort_unstable();
    classes.dedup();
    let candidates = (classes.len() + engine.stats().external_classes).pow(2);
    let (why_section, anchored) = if candidates <= WHY_LIMIT {
        let (section, anchored) = reasons(engine, focus, point)?;
        (Some(section), anchored)
    } else {
        (None, Default::default())
    };
    let why = |a: Side, b: Side| -> Option<String> {
        let pair = (engine.class_of(a)?, engine.class_of(b)?);
        anchored
            .contains(&pair)
            .then(|| format!("#why-{}-{}", pair.0, pair.1))
    };
    let mut h = String::new();
    let _ = write!(
        h,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{t}</title>
<style>
body{{font:14px system-ui,sans-serif;margin:24px;color:#222}} h1{{font-size:22px}} h2{{font-size:17px;margin-top:28px}}
table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:3px 6px}}
#matrix td.c{{width:22px;height:22px;padding:0}} #matrix td.c a{{display:block;width:22px;height:22px}}
.why:target{{background:#fff6d5;outline:2px solid #f0c23b}} .why pre{{margin:4px 0 14px 12px;font-size:12px;white-space:pre-wrap}} .all{{background:#2e9d57}} .some{{background:#f0c23b}} .none{{background:#d9534f}} .self{{background:#bbb}} .out{{background:#fff}}
#matrix th{{white-space:nowrap}} #matrix th.ns{{background:#eef}} th.v{{writing-mode:vertical-rl;transform:rotate(180deg);font-weight:normal;white-space:nowrap}}
.legend span{{display:inline-block;width:14px;height:14px;margin:0 4px 0 12px;vertical-align:middle}}
.sev-warning{{color:#b35c00}} .sev-error{{color:#c00}} .sev-info{{color:#555}} code{{font-size:12px}}
</style></head><body>
<h1>{t}</h1>
<p id="summary">{ns} namespaces, {ne} endpoints, {np} policies, {ncp} cluster-wide policies, {nf} lint findings.{shown}</p>
"#,
        t = esc(title),
        ns = cluster.namespaces.len(),
        ne = eps.len(),
        np = cluster.policies.len(),
        ncp = cluster.cluster_policies.len(),
        nf = findings.len(),
        shown = if focus.is_all() {
            String::new()
        } else {
            format!(
                " Focused: {} source(s) × {} destination(s) shown, the connections the focus keeps.",
                rows.len(),
                cols.len()
            )
        }
    );

    // Heatmap.
    let _ = write!(
        h,
        r#"<h2>Connectivity</h2><p class="legend">rows: from, columns: to.<span class="all"></span>all ports<span class="some"></span>some ports<span class="none"></span>nothing<span class="self"></span>itself</p><table id="matrix"><tr><th></th><th></th>"#
    );
    for (ns, n) in &namespace_runs(engine, &cols) {
        let _ = write!(h, r#"<th class="ns" colspan="{n}">{}</th>"#, esc(ns));
    }
    h.push_str("</tr><tr><th></th><th></th>");
    for &i in &cols {
        let _ = write!(h, r#"<th class="v">{}</th>"#, esc(&eps[i].name));
    }
    h.push_str("</tr>");
    let groups = namespace_runs(engine, &rows);
    let mut row_group = 0;
    let mut left_in_group = groups.first().map_or(0, |g| g.1);
    for (r, &a) in rows.iter().enumerate() {
        h.push_str("<tr>");
        if left_in_group == groups[row_group].1 {
            let _ = write!(
                h,
                r#"<th class="ns" rowspan="{}">{}</th>"#,
                groups[row_group].1,
                esc(groups[row_group].0)
            );
        }
        let _ = write!(h, "<th>{}</th>", esc(&eps[a].name));
        for &b in &cols {
            if !kept(a, b) {
                h.push_str(r#"<td class="c out"></td>"#);
                continue;
            }
            let allowed = allowed(a, b);
            let class = if a == b {
                "self"
            } else if allowed.is_all() {
                "all"
            } else if allowed.is_empty() {
                "none"
            } else {
                "some"
            };
            let link = match why(Side::Endpoint(a), Side::Endpoint(b)) {
                Some(href) if a != b => format!(r#"<a href="{href}"></a>"#),
                _ => String::new(),
            };
            let _ = write!(
                h,
                r#"<td class="c {class}" title="{} → {}: {}">{link}</td>"#,
                esc(&eps[a].id()),
                esc(&eps[b].id()),
                esc(&allowed.to_string())
            );
        }
        h.push_str("</tr>");
        left_in_group -= 1;
        if left_in_group == 0 && r + 1 < rows.len() {
            row_group += 1;
            left_in_group = groups[row_group].1;
        }
    }
    h.push_str("</table>");

    // Graph: namespaces as columns (outside addresses first), each connection an arrow
    // labelled with its ports.
    h.push_str("<h2>Allowed flows</h2>");
    if order.len() > GRAPH_LIMIT {
        let _ = write!(
            h,
            r#"<p id="graph">{} endpoints: the graph is left out above {GRAPH_LIMIT}.</p>"#,
            order.len()
        );
    } else {
        graph(engine, &order, &kept, &allowed, focus, &why, &mut h);
    }

    // Exposure: who could ever reach each shown workload.
    h.push_str(r#"<h2>Exposure</h2><p>Who could ever reach each workload — pods and namespaces that do not exist yet included — after every tier (its own side: the peer's egress also applies).</p>"#);
    match crate::exposure::exposures(
        engine,
        &Focus {
            direction: Some(weir_model::Direction::Ingress),
            ..focus.clone()
        },
        &[],
    ) {
        Err(e) => {
            let _ = write!(h, r#"<p id="exposure">{}</p>"#, esc(&e.to_string()));
        }
        Ok(exposed) => {
            let inside = weir_engine::outside::cluster_addresses(engine.cluster());
            let open = crate::exposure::open_lines(&exposed, &inside);
            if !open.is_empty() {
                h.push_str(r#"<ul id="open">"#);
                for line in open {
                    let _ = write!(h, "<li>{}</li>", esc(&line));
                }
                h.push_str("</ul>");
            }
            h.push_str(r#"<table id="exposure"><tr><th>workload</th><th>accepts from</th><th>ports</th><th>allowed by</th></tr>"#);
            for x in &exposed {
                let rows: Vec<_> = x
                    .exposures
                    .iter()
                    .flat_map(crate::exposure::in_words)
                    .collect();
                for (k, (peers, ports, by)) in rows.iter().enumerate() {
                    let who = if k == 0 {
                        format!(
                            r#"<td rowspan="{}"><code>{}</code></td>"#,
                            rows.len(),
                            esc(&crate::exposure::who(x))
                        )
                    } else {
                        String::new()
                    };
                    let _ = write!(
                        h,
                        "<tr>{who}<td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
                        esc(peers),
                        esc(ports),
                        esc(by)
                    );
                }
                if rows.is_empty() {
                    let _ = write!(
                        h,
                        "<tr><td><code>{}</code></td><td>nothing</td><td></td><td></td></tr>",
                        esc(&crate::exposure::who(x))
                    );
                }
            }
            h.push_str("</table>");
        }
    }

    // Traffic from outside: the ways in and who gets through.
    h.push_str(r#"<h2>Traffic from outside</h2>"#);
    match weir_engine::outside::entries(engine, None) {
        Err(e) => {
            let _ = write!(h, r#"<p id="outside">{}</p>"#, esc(&e.to_string()));
        }
        Ok(entries) => {
            let entries: Vec<_> = entries
                .into_iter()
                .filter(|e| shown.contains(&e.backend))
                .collect();
            if entries.is_empty() {
                h.push_str(r#"<p id="outside">No way in from outside: no NodePort or LoadBalancer Service, no Ingress or HTTPRoute with a backend.</p>"#);
            } else {
                h.push_str(r#"<p>Sources as the pods see them with kube-proxy: the client (externalTrafficPolicy Local), the node (Cluster), the proxy's pods (Ingress, HTTPRoute).</p><table id="outside"><tr><th>via</th><th>backend</th><th>port</th><th>gets through</th></tr>"#);
                for e in &entries {
                    let _ = write!(
                        h,
                        "<tr><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                        esc(&e.via),
                        esc(&eps[e.backend].id()),
                        esc(&e.port.to_string()),
                        esc(&crate::outside::gets_through(engine, e))
                    );
                }
                h.push_str("</table>");
            }
        }
    }

    // Policies.
    h.push_str(r#"<h2>Policies</h2><table id="policies"><tr><th>policy</th><th>selects</th><th>isolates</th><th>rules</th><th>source</th></tr>"#);
    for p in &cluster.policies {
        let selecting: Vec<usize> = (0..eps.len()).filter(|&i| engine.selects(p, i)).collect();
        if !focus.is_all() && !selecting.iter().any(|i| shown.contains(i)) {
            continue;
        }
        let selected: Vec<String> = selecting.iter().map(|&i| eps[i].id()).collect();
        let mut dirs = Vec::new();
        if p.isolates_ingress {
            dirs.push("ingress");
        }
        if p.isolates_egress {
            dirs.push("egress");
        }
        let mut rules = String::new();
        for (d, list) in [
            (Direction::Ingress, &p.ingress),
            (Direction::Egress, &p.egress),
        ] {
            for r in list.iter() {
                let _ = write!(rules, "{} {}<br>", d, esc(&describe_rule(d, r)));
            }
        }
        if rules.is_empty() {
            rules.push_str("<em>none: denies all it isolates</em>");
        }
        let _ = write!(
            h,
            r#"<tr class="policy"><td>{}</td><td>{} ({})</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>"#,
            esc(&p.id()),
            selected.len(),
            esc(&selected.join(", ")),
            dirs.join(", "),
            rules,
            esc(&p.origin.to_string())
        );
    }
    h.push_str("</table>");

    // Cluster-wide tiers, in evaluation order.
    if !cluster.cluster_policies.is_empty() {
        h.push_str(r#"<h2>Cluster-wide policies</h2><p>Admin tier first (lower priority first), then NetworkPolicies, then the Baseline tier; in a policy, the first matching rule decides.</p><table id="cluster-policies"><tr><th>tier</th><th>priority</th><th>policy</th><th>selects</th><th>rules, in order</th><th>source</th></tr>"#);
        let mut ordered: Vec<&weir_model::ClusterPolicy> =
            cluster.cluster_policies.iter().collect();
        ordered.sort_by(|a, b| a.order_key().cmp(&b.order_key()));
        for p in ordered {
            let selected: Vec<String> = (0..eps.len())
                .filter(|&i| engine.subject_selects(p, i))
                .map(|i| eps[i].id())
                .collect();
            let mut rules = String::new();
            for d in [Direction::Ingress, Direction::Egress] {
                for (n, r) in p.rules(d).iter().enumerate() {
                    let name = if r.name.is_empty() {
                        String::new()
                    } else {
                        format!(" <em>{}</em>", esc(&r.name))
                    };
                    let _ = write!(
                        rules,
                        "{d}[{n}]{name}: {}<br>",
                        esc(&describe_cluster_rule(d, r))
                    );
                }
            }
            let _ = write!(
                h,
                r#"<tr class="cluster-policy"><td>{}</td><td>{}</td><td>{}</td><td>{} ({})</td><td>{}</td><td><code>{}</code></td></tr>"#,
                p.tier,
                p.priority,
                esc(&p.id()),
                selected.len(),
                esc(&selected.join(", ")),
                rules,
                esc(&p.origin.to_string())
            );
        }
        h.push_str("</table>");
    }

    // Findings.
    h.push_str(r#"<h2>Lint findings</h2><table id="findings"><tr><th>severity</th><th>code</th><th>where</th><th>subject</th><th>finding</th><th>fix</th></tr>"#);
    for f in findings {
        let _ = write!(
            h,
            r#"<tr class="finding"><td class="sev-{s}">{s}</td><td>{} {}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            f.code,
            f.name,
            esc(&f.location),
            esc(&f.subject),
            esc(&f.message),
            esc(&f.hint),
            s = f.severity
        );
    }
    h.push_str("</table>");

    // Reasons: every connection explained.
    h.push_str(r#"<h2>Why</h2>"#);
    match why_section {
        Some(section) => {
            h.push_str(r#"<p>Every connection explained (a cell of the heatmap or an arrow of the graph leads here): its ports cut into ranges every rule and tier decides alike, each with the deciding rules as <code>weir analyze --explain</code> gives them. Equivalent endpoints are explained together.</p><div id="reasons">"#);
            h.push_str(&section);
            h.push_str("</div>");
        }
        None => {
            let _ = write!(
                h,
                r#"<p id="reasons">Above {WHY_LIMIT} pairs of equivalent endpoints the reasons are left out: <code>weir analyze --explain</code> has them, for the whole cluster or a focus.</p>"#
            );
        }
    }
    h.push_str("</body></html>\n");
    out.write_all(h.as_bytes())
}
