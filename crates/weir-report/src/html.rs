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
    let mut h = String::new();
    let _ = write!(
        h,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{t}</title>
<style>
body{{font:14px system-ui,sans-serif;margin:24px;color:#222}} h1{{font-size:22px}} h2{{font-size:17px;margin-top:28px}}
table{{border-collapse:collapse}} td,th{{border:1px solid #ccc;padding:3px 6px}}
#matrix td.c{{width:22px;height:22px;padding:0}} .all{{background:#2e9d57}} .some{{background:#f0c23b}} .none{{background:#d9534f}} .self{{background:#bbb}} .out{{background:#fff}}
#matrix th.ns{{background:#eef}} th.v{{writing-mode:vertical-rl;transform:rotate(180deg);font-weight:normal;white-space:nowrap}}
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
            let _ = write!(
                h,
                r#"<td class="c {class}" title="{} → {}: {}"></td>"#,
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

    // Graph: endpoints on a circle, namespaces together; an arrow per allowed pair that is
    // restricted by policy (all-allowed pairs would drown the picture).
    h.push_str("<h2>Allowed flows</h2>");
    if order.len() > GRAPH_LIMIT {
        let _ = write!(
            h,
            r#"<p id="graph">{} endpoints: the graph is left out above {GRAPH_LIMIT}.</p>"#,
            order.len()
        );
    } else {
        let n = order.len().max(1) as f64;
        let (w, cx, cy, rad) = (900.0, 450.0, 300.0, 240.0);
        let pos = |k: usize| {
            let t = k as f64 / n * std::f64::consts::TAU - std::f64::consts::FRAC_PI_2;
            (cx + rad * t.cos(), cy + rad * t.sin())
        };
        let _ = write!(
            h,
            r##"<svg id="graph" xmlns="http://www.w3.org/2000/svg" width="{w}" height="600" viewBox="0 0 {w} 600"><defs><marker id="arr" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0L10,5L0,10z" fill="#2e9d57"/></marker></defs>"##
        );
        for (ka, &a) in order.iter().enumerate() {
            for (kb, &b) in order.iter().enumerate() {
                if a == b || !kept(a, b) {
                    continue;
                }
                let allowed = allowed(a, b);
                if allowed.is_empty() {
                    continue;
                }
                let ((x1, y1), (x2, y2)) = (pos(ka), pos(kb));
                let (dx, dy) = (x2 - x1, y2 - y1);
                let len = (dx * dx + dy * dy).sqrt().max(1.0);
                let (ex, ey) = (x2 - dx / len * 12.0, y2 - dy / len * 12.0);
                let dash = if allowed.is_all() {
                    ""
                } else {
                    r#" stroke-dasharray="5 3""#
                };
                let _ = write!(
                    h,
                    r##"<line class="flow" x1="{x1:.1}" y1="{y1:.1}" x2="{ex:.1}" y2="{ey:.1}" stroke="#2e9d57" stroke-opacity="0.55"{dash} marker-end="url(#arr)"><title>{} → {}: {}</title></line>"##,
                    esc(&eps[a].id()),
                    esc(&eps[b].id()),
                    esc(&allowed.to_string())
                );
            }
        }
        for (k, &i) in order.iter().enumerate() {
            let (x, y) = pos(k);
            let isolated = cluster.policies.iter().any(|p| engine.selects(p, i));
            let fill = if isolated { "#345" } else { "#9ab" };
            let anchor = if x < cx - 1.0 { "end" } else { "start" };
            let tx = if x < cx - 1.0 { x - 12.0 } else { x + 12.0 };
            let _ = write!(
                h,
                r#"<circle class="node" cx="{x:.1}" cy="{y:.1}" r="9" fill="{fill}"><title>{id}</title></circle><text x="{tx:.1}" y="{ty:.1}" text-anchor="{anchor}" font-size="12">{id}</text>"#,
                id = esc(&eps[i].id()),
                ty = y + 4.0
            );
        }
        h.push_str(r#"</svg><p>Solid: every port allowed; dashed: some ports. Dark nodes are selected by at least one policy.</p>"#);
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
            let nodes = crate::exposure::node_addresses(engine);
            let open = crate::exposure::open_lines(&exposed, &nodes);
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
    h.push_str("</table></body></html>\n");
    out.write_all(h.as_bytes())
}
