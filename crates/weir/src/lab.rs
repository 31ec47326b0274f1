//! The lab's commands (the `lab` feature): `weir lab`, `weir enforce --lab`, `weir probe`,
//! `weir test --probe`, and the agent on a lab node.

use std::io::Write;
use std::time::Duration;

use anyhow::{anyhow, Context};
use clap::{Args, Subcommand};
use weir_engine::Engine;
use weir_lab::host::RealHost;
use weir_lab::probe::ProbeOptions;
use weir_lab::{Lab, LabOptions, Session};
use weir_model::PortKey;
use weir_report::MatrixFormat;

use crate::exit::{self, Failure};
use crate::input::Input;

#[derive(Subcommand)]
pub enum LabCommand {
    /// Builds the lab for the manifests: namespaces wl-NAME-*, listeners on every
    /// containerPort and --ports, pods spread over --nodes nodes.
    Up {
        #[command(flatten)]
        input: Input,
        #[command(flatten)]
        lab: LabArgs,
        /// Extra ports every pod listens on, e.g. TCP/80,UDP/53.
        #[arg(long, value_parser = PortKey::parse_list, default_value = "")]
        ports: std::vec::Vec<PortKey>,
    },
    /// Stops the listeners and deletes every namespace of the lab.
    Down {
        /// Lab name.
        #[arg(long, default_value = "weir")]
        name: String,
    },
    /// Runs the lab's listeners (started by `lab up`; not for direct use).
    #[command(hide = true)]
    Serve {
        #[arg(long)]
        name: String,
    },
}

#[derive(Args, Clone)]
pub struct LabArgs {
    /// Lab name: 1–12 lowercase letters and digits.
    #[arg(long, default_value = "weir")]
    name: String,
    /// Node namespaces to spread pods over (≥ 2 gives cross-node paths).
    #[arg(long, default_value_t = 2)]
    nodes: usize,
}

#[derive(Args)]
pub struct ProbeArgs {
    #[command(flatten)]
    input: Input,
    /// Probes, e.g. TCP/80,UDP/53,SCTP/80.
    #[arg(long, value_parser = PortKey::parse_list)]
    ports: std::vec::Vec<PortKey>,
    #[arg(short, long, value_enum, default_value = "csv")]
    output: MatrixFormat,
    /// Also compute the engine's matrix; print every disagreement and exit 4 if any.
    #[arg(long)]
    compare: bool,
    /// Node namespaces.
    #[arg(long, default_value_t = 2)]
    nodes: usize,
    /// Lab name (default: unique per run).
    #[arg(long)]
    name: Option<String>,
    /// Leave the lab up afterwards.
    #[arg(long)]
    keep: bool,
    /// Per-probe timeout in milliseconds (a timed-out probe is retried once with twice as long).
    #[arg(long, default_value_t = 600)]
    timeout_ms: u64,
}

/// How to run this very binary again, for hints: its path (it is often not on PATH: the
/// scripts run it from the target directory).
pub fn this_weir() -> String {
    std::env::current_exe().map_or_else(|_| "weir".into(), |p| p.display().to_string())
}

/// Lab commands create network namespaces and program nftables inside them: say so before
/// anything starts, rather than failing midway on the first mount or namespace.
pub fn require_root(command: &str) -> Result<(), Failure> {
    if weir_netns::process::is_root() {
        return Ok(());
    }
    Err(Failure::Other(anyhow!(
        "weir {command} needs root: it creates network namespaces and programs nftables inside \
         them (never in this machine's own namespace); run it with sudo"
    )))
}

pub fn lab(cmd: LabCommand, out: &mut dyn Write) -> Result<u8, Failure> {
    match cmd {
        LabCommand::Up { input, lab, ports } => {
            require_root("lab up")?;
            let loaded = input.load()?;
            let mut lab = up(&loaded.cluster, &lab, &ports)?;
            lab.keep(); // `lab up` is for exploring: it stays until `lab down`
            print_lab(&lab, out)?;
        }
        LabCommand::Down { name } => {
            require_root("lab down")?;
            if !Lab::exists(&name, &RealHost).map_err(|e| Failure::Invalid(e.to_string()))? {
                return Err(Failure::Invalid(format!("no lab named {name:?} is up")));
            }
            Lab::down(&name, &RealHost).map_err(|e| anyhow!(e))?;
            writeln!(out, "lab {name} is down")?;
        }
        LabCommand::Serve { name } => {
            let state = Lab::load_state(&name).map_err(|e| anyhow!(e))?;
            // The parent reads this one line and then lets go of the pipe.
            weir_lab::serve::serve(&state, || println!("ready")).context("serving")?;
        }
    }
    Ok(exit::OK)
}

/// A lab session: taken down when dropped or interrupted, unless kept.
fn up(
    cluster: &weir_model::Cluster,
    args: &LabArgs,
    ports: &[PortKey],
) -> Result<Session, Failure> {
    let options = LabOptions {
        name: args.name.clone(),
        nodes: args.nodes,
        listen: ports.to_vec(),
        exe: std::env::current_exe().context("locating the weir executable")?,
        no_listen: vec![],
    };
    Session::up(cluster, &options).map_err(|e| match e {
        weir_lab::LabError::BadName(_) => Failure::Invalid(e.to_string()),
        e => Failure::Other(anyhow!(e)),
    })
}

fn print_lab(lab: &Lab, out: &mut dyn Write) -> Result<(), Failure> {
    let s = &lab.state;
    writeln!(
        out,
        "lab {} is up: {} pods on {} nodes (fabric {})",
        s.name,
        s.pods.len(),
        s.nodes.len(),
        s.fabric
    )?;
    for p in &s.pods {
        let node = p
            .node
            .map_or("host".to_string(), |k| s.nodes[k].netns.clone());
        let ips: Vec<String> = p.ips.iter().map(|i| i.to_string()).collect();
        writeln!(
            out,
            "  {:<32} {:<20} {:<16} {}",
            p.id,
            p.netns,
            node,
            ips.join(", ")
        )?;
    }
    writeln!(
        out,
        "enter a pod:  ip netns exec {} bash",
        s.pods.first().map_or("NS", |p| p.netns.as_str())
    )?;
    writeln!(
        out,
        "tear down:    {} lab down --name {}",
        this_weir(),
        s.name
    )?;
    Ok(())
}

/// `weir enforce --lab NAME`: every node of the lab programmed with its own pods' policy.
pub fn enforce_lab(name: &str, input: &Input, out: &mut dyn Write) -> Result<u8, Failure> {
    require_root("enforce --lab")?;
    let loaded = input.load()?;
    let state = Lab::load_state(name).map_err(|e| anyhow!(e))?;
    let deployed = Lab::deploy(&loaded.cluster, &state);
    let engine = Engine::with_options(&deployed, input.engine_options());
    let mut enforcer = Lab::enforcers(&state);
    let applied = enforcer.apply(&engine).map_err(|e| anyhow!(e))?;
    for ((netns, _, _), a) in enforcer.nodes.iter().zip(applied) {
        writeln!(out, "{netns}: {a}")?;
    }
    Ok(exit::OK)
}

/// A lab node as the agent's target: its pods are local, with the lab's addresses.
#[derive(Debug)]
struct LabNode {
    name: String,
    index: usize,
}

impl weir_agent::Placement for LabNode {
    fn place(
        &self,
        cluster: weir_model::Cluster,
    ) -> Result<(weir_model::Cluster, Vec<usize>), String> {
        let state = Lab::load_state(&self.name).map_err(|e| e.to_string())?;
        let deployed = Lab::deploy(&cluster, &state);
        let here: std::collections::HashSet<&str> = state
            .pods
            .iter()
            .filter(|p| p.node == Some(self.index))
            .map(|p| p.id.as_str())
            .collect();
        let local = deployed
            .endpoints
            .iter()
            .enumerate()
            .filter(|(_, e)| here.contains(e.id().as_str()))
            .map(|(i, _)| i)
            .collect();
        Ok((deployed, local))
    }
}

/// `weir agent --lab NAME --node K`: the agent programs node K of the lab.
pub fn agent_target(name: &str, index: usize) -> Result<weir_agent::Target, Failure> {
    let state = Lab::load_state(name).map_err(|e| Failure::Invalid(e.to_string()))?;
    let node = state
        .nodes
        .get(index)
        .ok_or_else(|| Failure::Invalid(format!("lab {name} has no node {index}")))?;
    Ok(weir_agent::Target::Placed {
        netns: node.netns.clone(),
        placement: std::sync::Arc::new(LabNode {
            name: name.to_string(),
            index,
        }),
    })
}

pub fn probe(args: ProbeArgs, out: &mut dyn Write) -> Result<u8, Failure> {
    require_root("probe")?;
    if args.ports.is_empty() {
        return Err(Failure::Invalid(
            "--ports needs at least one PROTOCOL/PORT".into(),
        ));
    }
    let loaded = args.input.load()?;
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("pr{}", std::process::id() % 1_000_000));
    let mut lab = up(
        &loaded.cluster,
        &LabArgs {
            name: name.clone(),
            nodes: args.nodes,
        },
        &args.ports,
    )?;
    if args.keep {
        lab.keep();
    }
    run_probe(&args, &lab, out)
}

fn run_probe(args: &ProbeArgs, lab: &Lab, out: &mut dyn Write) -> Result<u8, Failure> {
    let engine = Engine::with_options(&lab.deployed, args.input.engine_options());
    Lab::enforcers(&lab.state)
        .apply(&engine)
        .map_err(|e| anyhow!(e))?;
    let n = lab.state.pods.len();
    let bar = indicatif::ProgressBar::new((n * n * args.ports.len()) as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("probing {bar:30} {pos}/{len} {elapsed}")
            .expect("valid template"),
    );
    let options = ProbeOptions {
        timeout: Duration::from_millis(args.timeout_ms),
        ..ProbeOptions::default()
    };
    let (observed, problems) =
        weir_lab::verify::probe_matrix(&lab.state, &args.ports, options, &|k| bar.inc(k as u64))
            .context("probing")?;
    bar.finish_and_clear();
    weir_report::render_verdicts(&observed, args.output, out)?;
    for p in &problems {
        eprintln!("probe problem: {p}");
    }
    if !args.compare {
        return Ok(if problems.is_empty() {
            exit::OK
        } else {
            exit::FAILURE
        });
    }
    let expected = engine.verdicts(&args.ports);
    let diff = expected.disagreements(&observed);
    for d in &diff {
        let word = |v: &Option<bool>| match v {
            Some(true) => "allow",
            Some(false) => "deny",
            None => "no verdict",
        };
        eprintln!(
            "disagreement: {} -> {} {}: engine {}, probe {}",
            d.src,
            d.dst,
            d.probe,
            word(&d.mine),
            word(&d.theirs)
        );
    }
    eprintln!(
        "{} probes: {} agree with the engine, {} disagree",
        expected.cells.len(),
        expected.cells.len() - diff.len(),
        diff.len()
    );
    Ok(if diff.is_empty() {
        exit::OK
    } else {
        exit::DISAGREE
    })
}

/// Checks intents with real traffic: a lab of the cluster, weir's dataplane, probes on every
/// port the intents name plus every containerPort.
pub fn probe_intents(
    cluster: &weir_model::Cluster,
    intents: &[weir_model::Intent],
    options: weir_engine::Options,
) -> Result<Vec<weir_engine::intents::IntentResult>, Failure> {
    require_root("test --probe")?;
    use weir_model::Expectation;
    let mut ports: Vec<PortKey> = cluster
        .endpoints
        .iter()
        .flat_map(|e| e.ports.iter().map(|c| PortKey::new(c.protocol, c.port)))
        .collect();
    for i in intents {
        match &i.expect {
            Expectation::Allowed(p) | Expectation::Only(p) | Expectation::Denied(Some(p)) => {
                ports.extend(p)
            }
            Expectation::AcceptsOnlyFrom { ports: p, .. } => ports.extend(p),
            _ => {}
        }
    }
    ports.sort();
    ports.dedup();
    let probes = ports;
    let name = format!("it{}", std::process::id() % 1_000_000);
    let lab = up(
        cluster,
        &LabArgs {
            name: name.clone(),
            nodes: 2,
        },
        &probes,
    )?;
    let engine = Engine::with_options(&lab.deployed, options);
    Lab::enforcers(&lab.state)
        .apply(&engine)
        .map_err(|e| anyhow!(e))?;
    let (observed, problems) =
        weir_lab::verify::probe_matrix(&lab.state, &probes, ProbeOptions::default(), &|_| {})
            .context("probing")?;
    for p in &problems {
        eprintln!("probe problem: {p}");
    }
    let results = weir_engine::intents::check_intents(&engine, &observed, intents);
    lab.down().map_err(|e| anyhow!(e))?;
    Ok(results)
}
