//! `weir agent`: argument parsing and logging set-up for the node agent.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use clap::Args;
use weir_agent::{Config, Node};

use crate::cli::{exit, Failure};

#[derive(Args)]
pub struct AgentArgs {
    /// `dir:PATH` — a directory of manifests, watched with inotify. (`kubernetes` is not
    /// built yet.)
    #[arg(long)]
    source: String,
    /// Program this network namespace instead of the node the agent runs on.
    #[arg(long, conflicts_with = "lab")]
    netns: Option<String>,
    /// Program node NODE of this lab (its pods are the local ones; addresses come from the lab).
    #[arg(long, requires = "node")]
    lab: Option<String>,
    /// The lab node index, with --lab.
    #[arg(long)]
    node: Option<usize>,
    /// Serve /metrics, /healthz and /readyz here.
    #[arg(long, default_value = "127.0.0.1:9595")]
    listen: SocketAddr,
    /// nft pattern of local pod interfaces for the fail-closed catch-all (`wp*` in a lab,
    /// `cali*` on Calico-style nodes); `none` disables it.
    #[arg(long, default_value = "wp*")]
    pod_interfaces: String,
    /// Quiet time after a change before re-reading the source.
    #[arg(long, default_value_t = 20)]
    debounce_ms: u64,
    /// Log as JSON lines.
    #[arg(long)]
    log_json: bool,
}

pub(crate) fn agent(args: AgentArgs) -> Result<u8, Failure> {
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false);
    if args.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
    let dir = match args.source.split_once(':') {
        Some(("dir", path)) => PathBuf::from(path),
        _ if args.source == "kubernetes" => {
            return Err(Failure::Invalid(
                "--source kubernetes is not built yet; use dir:PATH".into(),
            ))
        }
        _ => {
            return Err(Failure::Invalid(format!(
                "--source {:?}: expected dir:PATH",
                args.source
            )))
        }
    };
    if !dir.is_dir() {
        return Err(Failure::Invalid(format!(
            "{}: not a directory",
            dir.display()
        )));
    }
    let node = match (args.lab, args.node, args.netns) {
        (Some(name), Some(index), _) => Node::Lab { name, index },
        (_, _, Some(ns)) => Node::Netns(ns),
        _ => Node::Host,
    };
    let config = Config {
        dir,
        node,
        listen: Some(args.listen),
        pod_interfaces: (args.pod_interfaces != "none").then_some(args.pod_interfaces),
        debounce: Duration::from_millis(args.debounce_ms),
        engine: Default::default(),
        load: Default::default(),
    };
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        let _ = ctrlc::set_handler(move || stop.store(true, std::sync::atomic::Ordering::Relaxed));
    }
    weir_agent::run(config, stop).map_err(|e| anyhow!(e))?;
    Ok(exit::OK)
}
