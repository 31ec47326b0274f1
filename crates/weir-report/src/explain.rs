//! `weir explain`: one connection's verdict, and the reasons.

use std::io::{self, Write};

use weir_engine::{DirectionReport, Explanation, RuleCheck, TierDecision};
use weir_model::Action;

use crate::ExplainFormat as Format;

fn rule_line(c: &RuleCheck) -> String {
    format!("{} {}: {} ({})", c.policy, c.rule, c.admits, c.origin)
}

fn decision_line(t: &TierDecision) -> String {
    format!(
        "{} tier: {} (priority {}) {}: {} ({})",
        t.tier, t.policy, t.priority, t.rule, t.matches, t.origin
    )
}

fn direction(out: &mut dyn Write, d: &DirectionReport) -> io::Result<()> {
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
            direction(out, &e.egress)?;
            direction(out, &e.ingress)
        }
    }
}
