//! `weir explain`: one connection's verdict, and the reasons.

use std::io::{self, Write};

use weir_engine::{DirectionReport, Explanation, RuleCheck};

use crate::ExplainFormat as Format;

fn rule_line(c: &RuleCheck) -> String {
    format!("{} {}: {} ({})", c.policy, c.rule, c.admits, c.origin)
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
    if d.isolating_policies.is_empty() {
        return writeln!(
            out,
            "  {word} at {ep}: not isolated (no policy selects it for {word}) → allowed"
        );
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
