//! `weir synth`: policies from observed connections, proven with the engine before they are
//! written.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use weir_engine::synth::{prove, synthesise, Observed, SynthOptions};
use weir_engine::Engine;
use weir_model::Mode;
use weir_report::DiffFormat;

use crate::exit::{self, Failure};
use crate::input::{load_failure, Input};

#[derive(Args)]
pub struct SynthArgs {
    #[command(flatten)]
    input: Input,
    /// Observed connections: CSV with src,dst,protocol,port (e.g. `weir matrix` or `weir
    /// probe` output, whose verdict column picks what happened) or what `weir drops` printed
    /// (its would-drops); `-` for stdin. Repeat for several files.
    #[arg(long, value_name = "FILE", required = true)]
    flows: Vec<PathBuf>,
    /// Write one manifest per policy into this directory (created; files of the same
    /// names are replaced).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Also egress policies, and per namespace a default-deny for egress that keeps DNS.
    #[arg(long)]
    egress: bool,
    /// Write the policies audited (weir.dev/mode: audit): they drop nothing until switched
    /// to enforce, and the agents count what they would drop meanwhile.
    #[arg(long)]
    audit: bool,
}

pub fn synth(args: SynthArgs, out: &mut dyn Write) -> Result<u8, Failure> {
    let loaded = args.input.load()?;
    // An agent that cannot read the workloads names their pods: those resolve to the
    // workload they are folded into.
    let replicas = loaded.replicas;
    let cluster = args.input.enforced(loaded.cluster);
    let engine = Engine::with_options(&cluster, args.input.engine_options());
    let mut observed = Vec::new();
    for path in &args.flows {
        let (name, text) = if path.as_os_str() == "-" {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .map_err(|e| Failure::Invalid(format!("reading stdin: {e}")))?;
            ("(stdin)".to_string(), text)
        } else {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Failure::Invalid(format!("reading {}: {e}", path.display())))?;
            (path.display().to_string(), text)
        };
        let flows = weir_manifest::flows::parse_flows(&name, &text)
            .map_err(|e| load_failure(e, "the flows"))?;
        let mut unknown = Vec::new();
        for f in flows {
            let mut side = |text: &str| {
                let s = engine.resolve(text).or_else(|| {
                    replicas
                        .get(text)
                        .and_then(|workload| engine.resolve(workload))
                });
                if s.is_none() {
                    unknown.push(format!(
                        "{}: {text:?}: no such endpoint in {} (expected namespace/name or an address)",
                        f.origin,
                        args.input.describe()
                    ));
                }
                s
            };
            if let (Some(src), Some(dst)) = (side(&f.src), side(&f.dst)) {
                observed.push(Observed {
                    src,
                    dst,
                    port: f.port,
                });
            }
        }
        if !unknown.is_empty() {
            for u in &unknown {
                eprintln!("{u}");
            }
            return Err(Failure::Invalid(format!(
                "{} flow(s) name what the input does not have; nothing was written",
                unknown.len()
            )));
        }
    }
    let mode = if args.audit {
        Mode::Audit
    } else {
        Mode::Enforce
    };
    let synthesis = synthesise(
        &engine,
        &observed,
        SynthOptions {
            egress: args.egress,
            mode,
        },
    );
    // The proof is about the policies enforced: as they will be once switched on.
    let mut after = cluster.clone();
    after.policies.extend(synthesis.policies.iter().map(|s| {
        let mut p = s.policy.clone();
        p.mode = Mode::Enforce;
        p
    }));
    let after_engine = Engine::with_options(&after, args.input.engine_options());
    let proof = prove(&after_engine, &observed);

    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    for s in &synthesis.policies {
        let path = args.out.join(weir_report::synth::file_name(&s.policy));
        std::fs::write(&path, weir_report::synth::policy_yaml(s))
            .with_context(|| format!("writing {}", path.display()))?;
        writeln!(out, "wrote {} ({})", path.display(), s.policy.id()).context("output")?;
    }
    for (flow, why) in &synthesis.ignored {
        writeln!(out, "left out {flow}: {why}").context("output")?;
    }
    let mut distinct = observed.clone();
    distinct.sort();
    distinct.dedup();
    write!(
        out,
        "{}",
        weir_report::synth::proof_text(&after_engine, &proof, distinct.len())
    )
    .context("output")?;
    writeln!(
        out,
        "\nweir diff (before → with the synthesised policies enforced):"
    )
    .context("output")?;
    let changes = weir_engine::diff::diff(&engine, &after_engine);
    weir_report::render_diff(&changes, DiffFormat::Text, out).context("output")?;
    Ok(if proof.missing.is_empty() {
        exit::OK
    } else {
        exit::INTENT_FAILED
    })
}
