use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};
use clap::{Args, Parser, Subcommand};
use weir_engine::{Engine, Node, Options};
use weir_manifest::{LoadError, LoadOptions};
use weir_report::Format;

/// Exit codes, documented in `--help` and the README.
pub mod exit {
    /// Success (for `explain`: the connection is allowed).
    pub const OK: u8 = 0;
    /// A failure while running (IO, internal error).
    pub const FAILURE: u8 = 1;
    /// Invalid input: bad manifests, bad arguments.
    pub const INVALID: u8 = 2;
    /// `explain`: the connection is denied.
    pub const DENIED: u8 = 3;
    /// `probe --compare`: the dataplane disagreed with the engine (or a probe failed).
    pub const DISAGREE: u8 = 4;
}

const EXIT_CODES: &str = "Exit codes:
  0  success (explain: the connection is allowed)
  1  failure while running (IO, internal error)
  2  invalid input: manifests that fail validation (file:line:col, field, message), bad arguments
  3  the answer is no: explain: denied; lint --deny: findings at that level; diff:
     connectivity changed; test: an intent failed
  4  probe --compare: observed traffic disagrees with the engine, or a probe failed";

#[derive(Parser)]
#[command(name = "weir", version, about = "Kubernetes NetworkPolicy engine: who can talk to whom, and why.", after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
pub(crate) struct Input {
    /// Manifest files or directories (recursive; *.yaml, *.yml, *.json), or - for stdin.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Report unknown fields as warnings instead of errors.
    #[arg(long)]
    allow_unknown_fields: bool,
    /// Do not match ipBlock peers against pod IPs (Cilium / np-guard behaviour).
    #[arg(long)]
    no_ipblock_pods: bool,
    /// Do not print load warnings on stderr.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Allowed connections per endpoint pair, with their port sets (external ipBlock peers included).
    #[command(after_help = EXIT_CODES)]
    Analyze {
        #[command(flatten)]
        input: Input,
        /// table | json | csv | md | dot | mermaid (json groups equivalent endpoints).
        #[arg(short, long, default_value = "table")]
        output: Format,
        /// Counts per class instead of one line per connection (for large inputs).
        #[arg(long)]
        summary: bool,
    },
    /// The per-endpoint truth table for the given probes (CSV header src,dst,protocol,port,verdict).
    #[command(after_help = EXIT_CODES)]
    Matrix {
        #[command(flatten)]
        input: Input,
        /// Probes, e.g. TCP/80,UDP/53,SCTP/80.
        #[arg(long, value_parser = weir_report::parse_probes)]
        ports: std::vec::Vec<weir_report::Probe>,
        /// csv | table
        #[arg(short, long, default_value = "csv")]
        output: Format,
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
        #[arg(long, value_parser = weir_report::parse_probe)]
        port: weir_report::Probe,
        /// text | json
        #[arg(short, long, default_value = "text")]
        output: Format,
    },
    /// The lesson for real: the todos API on Redis in a lab, secured by the three policies,
    /// checked by real clients (needs root; exit 0 only when every check passed).
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
    /// One self-contained HTML page: heatmap, flow graph, policies, lint findings.
    #[command(after_help = EXIT_CODES)]
    Report(crate::hygiene::ReportArgs),
    /// The node agent: watch a manifest directory, keep nftables equal to it, fail closed,
    /// serve /metrics, /healthz, /readyz.
    Agent(crate::agent::AgentArgs),
    /// Follows the agent's dropped packets: who, to whom, on what, and which policies isolated it.
    Drops(crate::agent::DropsArgs),
    /// A lab of real pods: one network namespace per endpoint, routed like a CNI.
    #[command(subcommand)]
    Lab(crate::lab::LabCommand),
    /// Programs the policy into nftables (table `inet weir`) of a lab's nodes or a namespace.
    #[command(after_help = EXIT_CODES)]
    Enforce(crate::lab::EnforceArgs),
    /// Real TCP/UDP/SCTP connections between every pair of endpoints in a lab, under weir's
    /// dataplane; prints the matrix CSV contract (or a table).
    #[command(after_help = EXIT_CODES)]
    Probe(crate::lab::ProbeArgs),
    /// Benchmarks on synthetic clusters.
    #[command(subcommand)]
    Bench(crate::bench::BenchCommand),
}

/// Loads the input, printing warnings; validation errors become exit code 2.
pub(crate) fn load(input: &Input) -> Result<weir_manifest::Loaded, Failure> {
    let options = LoadOptions {
        allow_unknown_fields: input.allow_unknown_fields,
    };
    match weir_manifest::load_paths(&input.paths, options) {
        Ok(loaded) => {
            if !input.quiet {
                for w in &loaded.warnings {
                    eprintln!("{w}");
                }
                if !loaded.skipped.is_empty() {
                    let kinds: Vec<String> = loaded
                        .skipped
                        .iter()
                        .map(|(kind, n)| format!("{n} {}", weir_manifest::shown(kind)))
                        .collect();
                    eprintln!(
                        "note: skipped kinds weir does not model: {}",
                        kinds.join(", ")
                    );
                }
            }
            Ok(loaded)
        }
        Err(LoadError::Invalid(diags)) => {
            for d in &diags {
                eprintln!("{d}");
            }
            Err(Failure::Invalid(format!(
                "{} error(s) in the input; nothing was analysed",
                diags.len()
            )))
        }
        Err(e) => Err(Failure::Other(anyhow!(e))),
    }
}

impl Input {
    /// The input paths, for titles.
    pub(crate) fn describe(&self) -> String {
        self.paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

pub(crate) fn engine_options(input: &Input) -> Options {
    Options {
        ipblock_matches_pods: !input.no_ipblock_pods,
    }
}

pub(crate) enum Failure {
    Invalid(String),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Other(e)
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::InvalidInput {
            Failure::Invalid(e.to_string())
        } else {
            Failure::Other(e.into())
        }
    }
}

fn resolve(engine: &Engine, text: &str) -> Result<Node, Failure> {
    engine.resolve(text).ok_or_else(|| {
        Failure::Invalid(format!(
            "{text:?}: no such endpoint (expected namespace/name or an IP address)"
        ))
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
        } => {
            let loaded = load(&input)?;
            let engine = Engine::with_options(&loaded.cluster, engine_options(&input));
            let flows = engine.flows();
            if summary {
                weir_report::render_summary(&engine, &flows, output, &mut out)?;
            } else {
                weir_report::render_analyze(&engine, &flows, output, &mut out)?;
            }
            exit::OK
        }
        Command::Matrix {
            input,
            ports,
            output,
        } => {
            if ports.is_empty() {
                return Err(Failure::Invalid(
                    "--ports needs at least one PROTOCOL/PORT".into(),
                ));
            }
            let loaded = load(&input)?;
            let engine = Engine::with_options(&loaded.cluster, engine_options(&input));
            weir_report::render_matrix(&engine, &ports, output, &mut out)?;
            exit::OK
        }
        Command::Explain {
            input,
            from,
            to,
            port,
            output,
        } => {
            let loaded = load(&input)?;
            let engine = Engine::with_options(&loaded.cluster, engine_options(&input));
            let (src, dst) = (resolve(&engine, &from)?, resolve(&engine, &to)?);
            // An address named on the command line fixes the family (a dual-stack pod's
            // second address is matched as the dataplane matches it); else the primary one.
            let named_family = [&to, &from]
                .into_iter()
                .find_map(|t| t.parse::<std::net::IpAddr>().ok())
                .map(|ip| ip.is_ipv6());
            let e = match named_family {
                Some(v6) => engine.explain_in_family(src, dst, port.protocol, port.port, v6),
                None => engine.explain(src, dst, port.protocol, port.port),
            };
            weir_report::render_explain(&e, output, &mut out)?;
            if e.allowed {
                exit::OK
            } else {
                exit::DENIED
            }
        }
        Command::Demo(args) => crate::demo::demo(args, &mut out)?,
        Command::Agent(args) => crate::agent::agent(args)?,
        Command::Drops(args) => crate::agent::drops(args, &mut out)?,
        Command::Lint(args) => crate::hygiene::lint_cmd(args, &mut out)?,
        Command::Diff(args) => crate::hygiene::diff_cmd(args, &mut out)?,
        Command::Test(args) => crate::hygiene::test_cmd(args, &mut out)?,
        Command::Report(args) => crate::hygiene::report_cmd(args, &mut out)?,
        Command::Lab(cmd) => crate::lab::lab(cmd, &mut out)?,
        Command::Enforce(args) => crate::lab::enforce(args, &mut out)?,
        Command::Probe(args) => crate::lab::probe(args, &mut out)?,
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
