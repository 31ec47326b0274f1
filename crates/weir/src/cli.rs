//! Arguments and dispatch: one enum of commands, each handed to its module.

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use weir_engine::{Engine, PortSet};
use weir_model::PortKey;
use weir_report::{AnalyzeFormat, ExplainFormat, Focus, MatrixFormat};

use crate::exit::{self, Failure};
use crate::input::{resolve, FocusArgs, Input};

const EXIT_CODES: &str = exit::HELP;

#[derive(Parser)]
#[command(name = "weir", version, about = "Kubernetes NetworkPolicy engine: who can talk to whom, and why.", after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Allowed connections per endpoint pair, with their port sets (external ipBlock peers included).
    #[command(after_help = EXIT_CODES)]
    Analyze {
        #[command(flatten)]
        input: Input,
        /// json groups equivalent endpoints (`from` × `to` all allowed on `ports`).
        #[arg(short, long, value_enum, default_value = "table")]
        output: AnalyzeFormat,
        /// Counts per class instead of one line per connection (for large inputs).
        #[arg(long, conflicts_with_all = ["focus", "port"])]
        summary: bool,
        /// Per workload, every peer that could ever reach it (ingress) or that it could ever
        /// reach (egress) — pods and namespaces that do not exist yet included — after every
        /// tier; and who is open to every namespace or to the outside. Its own side only: the
        /// peer's policies also apply.
        #[arg(long, conflicts_with = "summary")]
        exposure: bool,
        /// The same for a pod that need not exist: NAMESPACE/k=v,k2=v2 (its labels; none
        /// after the `/` for a pod without labels). Repeatable; implies --exposure.
        #[arg(long, value_name = "NAMESPACE/LABELS", value_parser = hypothetical_pod, conflicts_with = "summary")]
        exposure_of: Vec<weir_model::Endpoint>,
        /// Every connection explained at once: per pair of endpoints (and outside addresses),
        /// its TCP/UDP/SCTP ports in ranges decided alike, each with the verdict and the
        /// reasons `explain` gives (allowing rules; isolating policies and nearest misses;
        /// deciding tiers). -o table (text) or json.
        #[arg(long, conflicts_with_all = ["summary", "exposure", "exposure_of"])]
        explain: bool,
        /// Traffic from outside the cluster: per NodePort or LoadBalancer Service, Ingress and
        /// HTTPRoute, each backend pod and port, and who gets through after policy (the source
        /// the pod sees: the client with externalTrafficPolicy Local, the node with Cluster,
        /// the proxy's pods for an Ingress or HTTPRoute).
        #[arg(long, conflicts_with_all = ["summary", "exposure", "exposure_of", "explain"])]
        outside: bool,
        /// The pods of the ingress controller or gateway (namespace/name, namespace/* or
        /// k=v,…), for --outside: whether the policies of both sides let them through.
        /// Without it, the backends' policies say which pods the proxy must be among.
        #[arg(long, value_name = "SELECTION", value_parser = weir_report::Selection::parse, requires = "outside")]
        ingress_controller: Option<weir_report::Selection>,
        #[command(flatten)]
        focus: FocusArgs,
        /// Show only these ports: PROTOCOL/PORT or PROTOCOL/LOW-HIGH.
        #[arg(long, value_parser = Focus::parse_ports)]
        port: Option<PortSet>,
    },
    /// The per-endpoint truth table for the given probes (CSV header src,dst,protocol,port,verdict).
    #[command(after_help = EXIT_CODES)]
    Matrix {
        #[command(flatten)]
        input: Input,
        /// Probes, e.g. TCP/80,UDP/53,SCTP/80.
        #[arg(long, value_parser = PortKey::parse_list)]
        ports: std::vec::Vec<PortKey>,
        #[arg(short, long, value_enum, default_value = "csv")]
        output: MatrixFormat,
        #[command(flatten)]
        focus: FocusArgs,
    },
    /// Why one connection is allowed or denied.
    #[command(after_help = EXIT_CODES)]
    Explain {
        #[command(flatten)]
        input: Input,
        /// Source: namespace/name of an endpoint, or an IP address.
        #[arg(long)]
        from: String,
        /// Destination: namespace/name of an endpoint, or an IP address.
        #[arg(long)]
        to: String,
        /// PROTOCOL/PORT, e.g. TCP/6379.
        #[arg(long)]
        port: PortKey,
        #[arg(short, long, value_enum, default_value = "text")]
        output: ExplainFormat,
    },
    /// The lesson for real: the todos API on Redis in a lab, secured by the three policies,
    /// checked by real clients (needs root; exit 0 only when every check passed).
    #[cfg(feature = "lab")]
    Demo(crate::demo::DemoArgs),
    /// Findings about the policy set: severity, stable code, location, fix hint.
    #[command(after_help = EXIT_CODES)]
    Lint(crate::hygiene::LintArgs),
    /// Connections added, removed and changed between two policy sets (exit 3 if any).
    #[command(after_help = EXIT_CODES)]
    Diff(crate::hygiene::DiffArgs),
    /// Checks an intents file against the policy (and with --probe, real traffic); exit 3 on failure.
    #[command(after_help = EXIT_CODES)]
    Test(crate::hygiene::TestArgs),
    /// NetworkPolicies from observed connections, per workload, proven with the engine
    /// before they are written (exit 3 if an observed connection would be refused).
    #[command(after_help = EXIT_CODES)]
    Synth(crate::synth::SynthArgs),
    /// One self-contained HTML page: heatmap, flow graph, exposure, policies, lint findings.
    #[command(after_help = EXIT_CODES)]
    Report(crate::hygiene::ReportArgs),
    /// The node agent: keeps this node's nftables equal to a manifest directory or the
    /// Kubernetes API, fails closed, repairs drift; serves /metrics, /healthz, /readyz, /revision.
    Agent(crate::agent::AgentArgs),
    /// Follows the agent's dropped packets: who, to whom, on what, and which policies isolated it.
    Drops(crate::agent::DropsArgs),
    /// The revision of the policy objects a cluster holds — what an agent's /revision says
    /// once its node enforces exactly them; with --agent, whether those agents do (exit 3
    /// if one does not).
    #[command(after_help = EXIT_CODES)]
    Revision(crate::agent::RevisionArgs),
    /// Programs the policy into nftables (table `inet weir`) of a namespace (or a lab's
    /// nodes), or prints the transaction.
    #[command(after_help = EXIT_CODES)]
    Enforce(crate::enforce::EnforceArgs),
    /// A lab of real pods: one network namespace per endpoint, routed like a CNI.
    #[cfg(feature = "lab")]
    #[command(subcommand)]
    Lab(crate::lab::LabCommand),
    /// Real TCP/UDP/SCTP connections between every pair of endpoints in a lab, under weir's
    /// dataplane; prints the matrix CSV contract (or a table).
    #[cfg(feature = "lab")]
    #[command(after_help = EXIT_CODES)]
    Probe(crate::lab::ProbeArgs),
    /// Benchmarks on synthetic clusters.
    #[cfg(feature = "lab")]
    #[command(subcommand)]
    Bench(crate::bench::BenchCommand),
}

/// Points each rule an explanation names at its own line, not its policy's first.
pub(crate) fn point_rules<'a>(
    fields: &mut crate::input::Fields,
    reports: impl IntoIterator<Item = &'a mut weir_engine::DirectionReport>,
) {
    for d in reports {
        for r in d.allowing.iter_mut().chain(d.near_misses.iter_mut()) {
            fields.point(&mut r.origin, &format!("spec.{}", r.rule));
        }
        for t in [&mut d.admin, &mut d.baseline].into_iter().flatten() {
            let rule = t.rule.split(' ').next().unwrap_or_default().to_string();
            fields.point(&mut t.origin, &format!("spec.{rule}"));
        }
    }
}

/// `NAMESPACE/k=v,k2=v2`: a pod of these labels in that namespace, which need not exist.
fn hypothetical_pod(text: &str) -> Result<weir_model::Endpoint, String> {
    let (namespace, labels) = text
        .split_once('/')
        .filter(|(ns, _)| !ns.is_empty())
        .ok_or_else(|| format!("{text:?}: expected NAMESPACE/k=v,k2=v2"))?;
    let mut set = weir_model::Labels::new();
    for term in labels.split(',').filter(|t| !t.is_empty()) {
        let (k, v) = term
            .split_once('=')
            .filter(|(k, _)| !k.is_empty())
            .ok_or_else(|| format!("{text:?}: {term:?} is not k=v"))?;
        set.insert(k.to_string(), v.to_string());
    }
    Ok(weir_model::Endpoint {
        namespace: namespace.to_string(),
        name: format!("[{labels}]"),
        kind: weir_model::EndpointKind::Pod,
        labels: set,
        ports: Vec::new(),
        ips: Vec::new(),
        host_network: false,
        origin: Default::default(),
    })
}

fn execute(cli: Cli) -> Result<u8, Failure> {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let code = match cli.command {
        Command::Analyze {
            input,
            output,
            summary,
            exposure,
            exposure_of,
            explain,
            outside,
            ingress_controller,
            focus,
            port,
        } => {
            let cluster = input.cluster()?;
            let engine = Engine::with_options(&cluster, input.engine_options());
            if outside {
                if matches!(output, AnalyzeFormat::Dot | AnalyzeFormat::Mermaid) {
                    return Err(Failure::Invalid(
                        "--outside is written as -o table, json, csv or md".into(),
                    ));
                }
                let controllers: Option<Vec<usize>> = ingress_controller.map(|sel| {
                    (0..cluster.endpoints.len())
                        .filter(|&i| sel.matches(&engine, weir_report::Member::Endpoint(i)))
                        .collect()
                });
                if controllers.as_ref().is_some_and(|c| c.is_empty()) {
                    return Err(Failure::Invalid(
                        "--ingress-controller: no endpoint of the input matches".into(),
                    ));
                }
                let focus = focus.focus(port);
                let mut entries = weir_engine::outside::entries(&engine, controllers.as_deref())
                    .map_err(|e| Failure::Other(anyhow::anyhow!("--outside: {e}")))?;
                entries.retain(|e| {
                    focus.keeps(
                        &engine,
                        weir_report::Member::Outside,
                        weir_report::Member::Endpoint(e.backend),
                    ) && focus
                        .ports
                        .as_ref()
                        .is_none_or(|p| p.contains(e.port.protocol, e.port.port))
                });
                weir_report::render_outside(&engine, &entries, output, &mut out)?;
                return Ok(exit::OK);
            }
            if explain {
                let format = match output {
                    AnalyzeFormat::Table => ExplainFormat::Text,
                    AnalyzeFormat::Json => ExplainFormat::Json,
                    _ => {
                        return Err(Failure::Invalid(
                            "--explain is written as -o table (text) or json".into(),
                        ))
                    }
                };
                let mut fields = crate::input::Fields::default();
                let mut point = |r: &mut weir_engine::PortsExplanation| {
                    point_rules(&mut fields, [&mut r.egress, &mut r.ingress])
                };
                weir_report::render_explain_all(
                    &engine,
                    &focus.focus(port),
                    format,
                    &mut point,
                    &mut out,
                )?;
                return Ok(exit::OK);
            }
            if exposure || !exposure_of.is_empty() {
                if matches!(output, AnalyzeFormat::Dot | AnalyzeFormat::Mermaid) {
                    return Err(Failure::Invalid(
                        "--exposure is written as -o table, json, csv or md".into(),
                    ));
                }
                let focus = focus.focus(port);
                let exposed = weir_report::exposures(&engine, &focus, &exposure_of)
                    .map_err(|e| Failure::Other(anyhow::anyhow!("--exposure: {e}")))?;
                weir_report::render_exposure(&engine, &exposed, output, &mut out)?;
                return Ok(exit::OK);
            }
            let flows = engine.flows();
            if summary {
                weir_report::render_summary(&engine, &flows, output, &mut out)?;
            } else {
                let focus = focus.focus(port);
                weir_report::render_analyze(&engine, &flows, output, &focus, &mut out)?;
            }
            exit::OK
        }
        Command::Matrix {
            input,
            ports,
            output,
            focus,
        } => {
            if ports.is_empty() {
                return Err(Failure::Invalid(
                    "--ports needs at least one PROTOCOL/PORT".into(),
                ));
            }
            let cluster = input.cluster()?;
            let engine = Engine::with_options(&cluster, input.engine_options());
            weir_report::render_matrix(&engine, &ports, output, &focus.focus(None), &mut out)?;
            exit::OK
        }
        Command::Explain {
            input,
            from,
            to,
            port,
            output,
        } => {
            let cluster = input.cluster()?;
            let engine = Engine::with_options(&cluster, input.engine_options());
            let (src, dst) = (resolve(&engine, &from)?, resolve(&engine, &to)?);
            // An address named on the command line fixes the family (a dual-stack pod's
            // second address is matched as the dataplane matches it); else the primary one.
            let named_family = [&to, &from]
                .into_iter()
                .find_map(|t| t.parse::<std::net::IpAddr>().ok())
                .map(|ip| ip.is_ipv6());
            let mut e = match named_family {
                Some(v6) => engine.explain_in_family(src, dst, port.protocol, port.port, v6),
                None => engine.explain(src, dst, port.protocol, port.port),
            };
            // Each rule named points at its own line, not its policy's first.
            let mut fields = crate::input::Fields::default();
            point_rules(&mut fields, [&mut e.egress, &mut e.ingress]);
            weir_report::render_explain(&e, output, &mut out)?;
            if e.allowed {
                exit::OK
            } else {
                exit::DENIED
            }
        }
        Command::Agent(args) => {
            #[cfg(feature = "lab")]
            let target = match (&args.lab, args.node) {
                (Some(name), Some(index)) => Some(crate::lab::agent_target(name, index)?),
                _ => None,
            };
            #[cfg(not(feature = "lab"))]
            let target = None;
            crate::agent::agent(args, target)?
        }
        Command::Drops(args) => crate::agent::drops(args, &mut out)?,
        Command::Revision(args) => crate::agent::revision(args, &mut out)?,
        Command::Lint(args) => crate::hygiene::lint_cmd(args, &mut out)?,
        Command::Diff(args) => crate::hygiene::diff_cmd(args, &mut out)?,
        Command::Test(args) => {
            #[cfg(feature = "lab")]
            let probe: Option<crate::hygiene::ProbeIntents> =
                args.probe.then_some(crate::lab::probe_intents);
            #[cfg(not(feature = "lab"))]
            let probe = None;
            crate::hygiene::test_cmd(args, probe, &mut out)?
        }
        Command::Report(args) => crate::hygiene::report_cmd(args, &mut out)?,
        Command::Synth(args) => crate::synth::synth(args, &mut out)?,
        Command::Enforce(args) => {
            #[cfg(feature = "lab")]
            if let Some(name) = &args.lab {
                return crate::lab::enforce_lab(name, &args.input, &mut out);
            }
            crate::enforce::enforce(args, &mut out)?
        }
        #[cfg(feature = "lab")]
        Command::Demo(args) => crate::demo::demo(args, &mut out)?,
        #[cfg(feature = "lab")]
        Command::Lab(cmd) => crate::lab::lab(cmd, &mut out)?,
        #[cfg(feature = "lab")]
        Command::Probe(args) => crate::lab::probe(args, &mut out)?,
        #[cfg(feature = "lab")]
        Command::Bench(cmd) => crate::bench::run(cmd, &mut out)?,
    };
    out.flush().context("writing output")?;
    Ok(code)
}

/// Parses arguments, runs the command, maps failures to exit codes.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    match execute(cli) {
        Ok(code) => ExitCode::from(code),
        Err(Failure::Invalid(msg)) => {
            eprintln!("error: {msg}");
            ExitCode::from(exit::INVALID)
        }
        Err(Failure::Other(e)) => {
            // A closed pipe (`weir analyze … | head`) is not a failure.
            if e.downcast_ref::<io::Error>()
                .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
            {
                return ExitCode::from(exit::OK);
            }
            eprintln!("error: {e:#}");
            ExitCode::from(exit::FAILURE)
        }
    }
}
