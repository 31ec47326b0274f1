//! `weir explain`: one connection's verdict, and the reasons.

use std::io::{self, Write};

use weir_engine::{
    ClassId, DirectionReport, Engine, Explanation, Layer, PortsExplanation, RuleCheck, Side,
    TierDecision,
};
use weir_model::Action;

use crate::{ExplainFormat as Format, Focus, Member};

fn rule_line(c: &RuleCheck) -> String {
    format!("{} {}: {} ({})", c.policy, c.rule, c.admits, c.origin)
}

fn decision_line(t: &TierDecision) -> String {
    format!(
        "{} tier: {} (priority {}) {}: {} ({})",
        t.tier, t.policy, t.priority, t.rule, t.matches, t.origin
    )
}

/// [`direction_text`] with every line indented by `indent`.
fn direction_indented(out: &mut dyn Write, d: &DirectionReport, indent: &str) -> io::Result<()> {
    let mut text = Vec::new();
    direction_text(&mut text, d)?;
    for line in String::from_utf8_lossy(&text).lines() {
        writeln!(out, "{indent}{line}")?;
    }
    Ok(())
}

fn direction_text(out: &mut dyn Write, d: &DirectionReport) -> io::Result<()> {
    let word = match d.direction {
        weir_model::Direction::Ingress => "ingress",
        weir_model::Direction::Egress => "egress",
    };
    let Some(ep) = &d.endpoint else {
        return writeln!(
            out,
            "  {word}: an outside address; no policy applies → allowed"
        );
    };
    if let Some(a) = &d.admin {
        let outcome = match a.action {
            Action::Accept => "→ allowed (NetworkPolicies are not consulted)",
            Action::Deny => "→ denied (NetworkPolicies are not consulted)",
            Action::Pass => "→ passed on to NetworkPolicies",
        };
        writeln!(out, "  {word} at {ep}: {} {outcome}", decision_line(a))?;
        if a.action != Action::Pass {
            return Ok(());
        }
    }
    if d.isolating_policies.is_empty() {
        return match &d.baseline {
            None => writeln!(
                out,
                "  {word} at {ep}: not isolated (no policy selects it for {word}) → allowed"
            ),
            Some(b) => {
                let outcome = match b.action {
                    Action::Deny => "denied",
                    Action::Accept => "allowed",
                    Action::Pass => "allowed (Pass in the last tier: the default)",
                };
                writeln!(
                    out,
                    "  {word} at {ep}: not isolated by NetworkPolicies; {} → {outcome}",
                    decision_line(b)
                )
            }
        };
    }
    writeln!(
        out,
        "  {word} at {ep}: isolated by {}",
        d.isolating_policies.join(", ")
    )?;
    if d.allowed {
        for c in &d.allowing {
            writeln!(out, "    ✔ allowed by {}", rule_line(c))?;
        }
    } else {
        writeln!(out, "    ✘ no rule admits this connection → denied")?;
        if !d.near_misses.is_empty() {
            writeln!(out, "    nearest misses:")?;
        }
        for c in &d.near_misses {
            let why = if c.peer_matched {
                "peer matches, port does not"
            } else {
                "port matches, peer does not"
            };
            writeln!(out, "    - {why}: {}", rule_line(c))?;
        }
    }
    Ok(())
}

pub fn render_explain(e: &Explanation, format: Format, out: &mut dyn Write) -> io::Result<()> {
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, e)?;
            writeln!(out)
        }
        Format::Text => {
            let verdict = if e.allowed { "ALLOWED" } else { "DENIED" };
            writeln!(
                out,
                "{} → {} {}/{}: {verdict}",
                e.from, e.to, e.protocol, e.port
            )?;
            if e.self_traffic {
                return writeln!(
                    out,
                    "  traffic from an endpoint to itself is always allowed"
                );
            }
            direction_text(out, &e.egress)?;
            direction_text(out, &e.ingress)
        }
    }
}

/// Whether no policy and no tier bears on either direction: allowed by default.
fn by_default(r: &PortsExplanation) -> bool {
    [&r.egress, &r.ingress]
        .iter()
        .all(|d| d.decided_by == Layer::Default && d.isolating_policies.is_empty())
}

/// A pair of classes [`each_explained`] visits: the shown rectangles of its members
/// (`from × to`, endpoint ids or an outside range) and its port ranges, what is allowed
/// first.
pub(crate) struct Explained<'a> {
    pub from: ClassId,
    pub to: ClassId,
    pub shown: Vec<(Vec<String>, Vec<String>)>,
    pub ranges: &'a [PortsExplanation],
}

impl Explained<'_> {
    /// Whether no policy and no tier bears on either direction on any port.
    pub fn by_default(&self) -> bool {
        self.ranges.len() == 1 && by_default(&self.ranges[0])
    }
}

/// Calls `visit` for every pair of classes (endpoints, and outside addresses to and from
/// them) with a connection the focus keeps, in class order: the one walk behind
/// `analyze --explain` and the report's reasons. `point` may rewrite each range's
/// locations (the command line points rules at their own lines).
pub(crate) fn each_explained(
    engine: &Engine,
    focus: &Focus,
    point: &mut dyn FnMut(&mut PortsExplanation),
    visit: &mut dyn FnMut(Explained) -> io::Result<()>,
) -> io::Result<()> {
    let stats = engine.stats();
    let classes = (stats.endpoint_classes + stats.external_classes) as ClassId;
    let v6 = |c: ClassId| match engine.class_cidrs(c) {
        Some(cidrs) => cidrs.first().is_some_and(|n| n.addr().is_ipv6()),
        None => engine.cluster().endpoints[engine.class_members(c)[0]].primary_is_v6(),
    };
    let side = |c: ClassId| match engine.class_cidrs(c) {
        Some(cidrs) => Side::Address(cidrs[0].addr()),
        None => Side::Endpoint(engine.class_members(c)[0]),
    };
    // Each class's members, its family, and whether any is focused or a peer, once.
    let peers: Vec<Vec<(String, Member)>> = (0..classes)
        .map(|c| crate::analyze::peers(engine, c))
        .collect();
    let external: Vec<bool> = (0..classes)
        .map(|c| engine.class_cidrs(c).is_some())
        .collect();
    let families: Vec<bool> = (0..classes).map(v6).collect();
    let any = |sel: &Option<crate::Selection>, c: usize| {
        sel.as_ref()
            .is_none_or(|s| peers[c].iter().any(|(_, m)| s.matches(engine, *m)))
    };
    let focused: Vec<bool> = (0..classes as usize)
        .map(|c| any(&focus.focus, c))
        .collect();
    let peer: Vec<bool> = (0..classes as usize).map(|c| any(&focus.peer, c)).collect();
    for a in 0..classes {
        for b in 0..classes {
            let (i, j) = (a as usize, b as usize);
            if (external[i] && external[j])
                || ((external[i] || external[j]) && families[i] != families[j])
            {
                continue; // no such connection: analyze's model
            }
            let may_show = match focus.direction {
                Some(weir_model::Direction::Egress) => focused[i] && peer[j],
                Some(weir_model::Direction::Ingress) => peer[i] && focused[j],
                None => (focused[i] && peer[j]) || (peer[i] && focused[j]),
            };
            if !may_show {
                continue;
            }
            // Each shown rectangle, self-pairs of one endpoint left out.
            let shown: Vec<(Vec<String>, Vec<String>)> = focus
                .split(engine, &peers[i], &peers[j])
                .into_iter()
                .filter(|(f, t)| {
                    let only_itself = a == b && f.len() == 1 && f == t;
                    !(f.is_empty() || t.is_empty() || only_itself)
                })
                .collect();
            if shown.is_empty() {
                continue;
            }
            let mut ranges = engine.explain_ports(side(a), side(b));
            if let Some(only) = &focus.ports {
                ranges.retain_mut(|r| {
                    r.ports = r.ports.intersect(only);
                    !r.ports.is_empty()
                });
            }
            ranges.sort_by_key(|r| !r.allowed); // what is allowed first
            ranges.iter_mut().for_each(&mut *point);
            visit(Explained {
                from: a,
                to: b,
                shown,
                ranges: &ranges,
            })?;
        }
    }
    Ok(())
}

/// Each port range's verdict and reasons, as `analyze --explain` writes them.
pub(crate) fn write_ranges(out: &mut dyn Write, ranges: &[PortsExplanation]) -> io::Result<()> {
    for r in ranges {
        let verdict = if r.allowed { "allowed" } else { "denied" };
        writeln!(out, "  {}: {verdict}", r.ports)?;
        direction_indented(out, &r.egress, "  ")?;
        direction_indented(out, &r.ingress, "  ")?;
    }
    Ok(())
}

/// `weir analyze --explain`: every connection the focus keeps (every pair of endpoints, and
/// outside addresses to and from them, without one), its TCP/UDP/SCTP ports cut into ranges
/// decided alike, each with its verdict and reasons as `explain` gives them. Equivalent
/// endpoints (the engine's classes) are explained once and listed together; pairs no policy
/// or tier bears on are listed at the end. `point` may rewrite each range's locations
/// (the command line points rules at their own lines).
pub fn render_explain_all(
    engine: &Engine,
    focus: &Focus,
    format: Format,
    point: &mut dyn FnMut(&mut PortsExplanation),
    out: &mut dyn Write,
) -> io::Result<()> {
    let mut defaults: Vec<(String, String)> = Vec::new();
    let mut first = true;
    if format == Format::Json {
        write!(out, "{{\"connections\":[")?;
    }
    each_explained(engine, focus, point, &mut |x| {
        for (from, to) in x.shown.iter() {
            if format == Format::Text && x.by_default() {
                defaults.push((from.join(", "), to.join(", ")));
                continue;
            }
            match format {
                Format::Json => {
                    if !std::mem::take(&mut first) {
                        out.write_all(b",")?;
                    }
                    write!(
                        out,
                        "\n{}",
                        serde_json::json!({
                            "from": from,
                            "to": to,
                            "ports": x.ranges,
                        })
                    )?;
                }
                Format::Text => {
                    writeln!(out, "{} → {}", from.join(", "), to.join(", "))?;
                    write_ranges(out, x.ranges)?;
                    writeln!(out)?;
                }
            }
        }
        Ok(())
    })?;
    if format == Format::Json {
        writeln!(out, "\n]}}")?;
    } else if !defaults.is_empty() {
        writeln!(
            out,
            "Allowed on every port by default (no policy or tier selects either side):"
        )?;
        for (from, to) in defaults {
            writeln!(out, "  {from} → {to}")?;
        }
    }
    Ok(())
}
