//! `weir synth`'s output: each synthesised policy as a YAML manifest with a comment saying
//! what it admits and why, and the proof as text.

use std::fmt::Write;

use weir_engine::synth::{Proof, Synthesised};
use weir_engine::Engine;
use weir_model::{LabelSelector, Mode, NamespaceScope, Peer, Policy, PortRef, Rule};

/// A YAML scalar: a JSON string is a YAML double-quoted scalar, so nothing in it can end the
/// scalar or start a new node.
fn q(s: &str) -> String {
    serde_json::to_string(s).expect("a string serialises")
}

/// Comment text: one line, printable (a name cannot end the comment).
fn comment(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

fn selector(out: &mut String, indent: usize, key: &str, sel: &LabelSelector) {
    let pad = " ".repeat(indent);
    if sel.is_empty() {
        let _ = writeln!(out, "{pad}{key}: {{}}");
        return;
    }
    let _ = writeln!(out, "{pad}{key}:\n{pad}  matchLabels:");
    for (k, v) in &sel.match_labels {
        let _ = writeln!(out, "{pad}    {}: {}", q(k), q(v));
    }
    // Synthesis writes matchLabels only; expressions would need their own form.
    debug_assert!(sel.match_expressions.is_empty());
}

fn rules(out: &mut String, key: &str, peers_key: &str, rules: &[Rule]) {
    let _ = writeln!(out, "  {key}:");
    for r in rules {
        let mut first = true;
        let mut item = |out: &mut String| {
            let lead = if first { "  - " } else { "    " };
            first = false;
            out.push_str(lead);
        };
        if !r.peers.is_empty() {
            item(out);
            let _ = writeln!(out, "{peers_key}:");
            for p in &r.peers {
                match p {
                    Peer::Pods { namespaces, pods } => {
                        let mut lead = "    - ";
                        if let NamespaceScope::Selector(ns) = namespaces {
                            out.push_str(lead);
                            let mut s = String::new();
                            selector(&mut s, 6, "namespaceSelector", ns);
                            out.push_str(s.trim_start());
                            lead = "      ";
                        }
                        let pods = pods.clone().unwrap_or_default();
                        out.push_str(lead);
                        let mut s = String::new();
                        selector(&mut s, 6, "podSelector", &pods);
                        out.push_str(s.trim_start());
                    }
                    Peer::IpBlock { cidr, .. } => {
                        let _ = writeln!(
                            out,
                            "    - ipBlock:\n        cidr: {}",
                            q(&cidr.to_string())
                        );
                    }
                }
            }
        }
        if !r.ports.is_empty() {
            item(out);
            let _ = writeln!(out, "ports:");
            for p in &r.ports {
                let _ = writeln!(out, "    - protocol: {}", p.protocol);
                match &p.port {
                    Some(PortRef::Named(n)) => {
                        let _ = writeln!(out, "      port: {}", q(n));
                    }
                    Some(PortRef::Number { port, end }) => {
                        let _ = writeln!(out, "      port: {port}");
                        if end != port {
                            let _ = writeln!(out, "      endPort: {end}");
                        }
                    }
                    None => {}
                }
            }
        }
        if first {
            let _ = writeln!(out, "  - {{}}");
        }
    }
}

/// The policy as a manifest, headed by a comment saying what it is for and what it admits.
pub fn policy_yaml(s: &Synthesised) -> String {
    let p: &Policy = &s.policy;
    let mut out = String::new();
    let _ = writeln!(out, "# Synthesised by weir synth: {}", comment(&s.why));
    if !s.admits.is_empty() {
        let _ = writeln!(out, "# It admits these observed connections (and, by its selectors, what `weir synth` reports):");
        for a in &s.admits {
            let _ = writeln!(out, "#   {}", comment(a));
        }
    }
    let _ = writeln!(
        out,
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: {}\n  namespace: {}",
        q(&p.name),
        q(&p.namespace)
    );
    if p.mode == Mode::Audit {
        let _ = writeln!(
            out,
            "  annotations:\n    {}: \"audit\"",
            q(weir_model::MODE_ANNOTATION)
        );
    }
    out.push_str("spec:\n");
    selector(&mut out, 2, "podSelector", &p.pod_selector);
    out.push_str("  policyTypes:\n");
    if p.isolates_ingress {
        out.push_str("  - Ingress\n");
    }
    if p.isolates_egress {
        out.push_str("  - Egress\n");
    }
    if !p.ingress.is_empty() {
        rules(&mut out, "ingress", "from", &p.ingress);
    }
    if !p.egress.is_empty() {
        rules(&mut out, "egress", "to", &p.egress);
    }
    out
}

/// A file name for the policy: `namespace--name.yaml`, any character outside
/// `[a-z0-9.-]` replaced (names are validated, but a file name is no place to trust them).
pub fn file_name(p: &Policy) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect::<String>()
            .trim_start_matches('.')
            .to_string()
    };
    format!("{}--{}.yaml", clean(&p.namespace), clean(&p.name))
}

/// The proof in words: every observed connection allowed or not, and what more is allowed
/// between the sides involved.
pub fn proof_text(engine: &Engine, proof: &Proof, observed: usize) -> String {
    let mut out = String::new();
    if proof.missing.is_empty() {
        let _ = writeln!(
            out,
            "proof: all {observed} observed connection(s) are allowed"
        );
    } else {
        let _ = writeln!(
            out,
            "proof FAILED: {} of {observed} observed connection(s) would be refused:",
            proof.missing.len()
        );
        for f in &proof.missing {
            let _ = writeln!(
                out,
                "  {} → {} {}",
                engine.name(f.src),
                engine.name(f.dst),
                f.port
            );
        }
    }
    if proof.surplus.is_empty() {
        let _ = writeln!(out, "        and nothing else between the sides involved");
    } else {
        let _ = writeln!(
            out,
            "surplus: allowed between the sides involved though not observed (selectors that cannot tell the pods apart, or policies already there):"
        );
        for (a, b, ports) in &proof.surplus {
            let _ = writeln!(out, "  {} → {}: {ports}", engine.name(*a), engine.name(*b));
        }
    }
    out
}
