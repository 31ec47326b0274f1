//! weir's node agent (what Calico's Felix is in the lesson): keeps one node's nftables equal
//! to the policies, pods and namespaces of its source, level-triggered.
//!
//! - Sources: a manifest directory (inotify) or the Kubernetes API (kube-rs watchers).
//! - Events only mark the state dirty; after a short debounce the whole source is
//!   re-read, recompiled, and the *difference* to what was programmed is applied
//!   ([`weir_nft::apply::Enforcer`]): set elements or single chains, one transaction.
//! - No kernel writes until the source has been read successfully once; the first write is
//!   a full atomic replace of weir's own table (adopting or replacing what a previous agent
//!   left), never anything else.
//! - Fail closed: a catch-all in the table drops traffic of local pod interfaces whose
//!   address the agent does not know; it stays in the kernel when the agent is not running.
//! - Established connections are kept when a policy starts denying them (conntrack accepts
//!   them first, as Calico and Antrea do).
//! - `/metrics` (Prometheus text), `/healthz`, `/readyz` on a small HTTP listener.

pub mod kube_source;
pub mod metrics;
pub mod nflog;
pub mod source;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use weir_engine::{Engine, Options};
use weir_nft::apply::{Enforcer, NftCli};
use weir_nft::{compile_with, CompileOptions, Scope};

use metrics::Metrics;
use source::{DirSource, Items};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Where the agent's endpoints are and which of them are local.
#[derive(Clone, Debug)]
pub enum Node {
    /// The namespace the agent runs in (a real node).
    Host,
    /// A network namespace by name; every endpoint is local.
    Netns(String),
    /// Node `index` of a lab: its pods are local, and endpoints get the lab's addresses.
    Lab { name: String, index: usize },
}

/// Where policies, pods and namespaces come from.
#[derive(Clone, Debug)]
pub enum SourceSpec {
    /// A directory of manifests, watched with inotify.
    Dir(PathBuf),
    /// The Kubernetes API (kubeconfig or in-cluster), watched with kube-rs.
    Kubernetes,
}

/// A running source.
enum Source {
    Dir(DirSource),
    Kube(kube_source::KubeSource),
}

impl Source {
    fn load(&mut self) -> Result<weir_model::Cluster, weir_manifest::LoadError> {
        match self {
            Source::Dir(d) => d.load(),
            Source::Kube(k) => k.load(),
        }
    }
    fn items(&self) -> &Items {
        match self {
            Source::Dir(d) => &d.items,
            Source::Kube(k) => &k.items,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub source: SourceSpec,
    pub node: Node,
    /// `/metrics`, `/healthz`, `/readyz` listen here.
    pub listen: Option<SocketAddr>,
    /// nft interface pattern of local pods for the fail-closed catch-all (`wp*` in a lab).
    pub pod_interfaces: Option<String>,
    pub debounce: Duration,
    pub engine: Options,
    pub load: weir_manifest::LoadOptions,
    /// NFLOG group for dropped packets (`None`: no drop log).
    pub log_group: Option<u16>,
    /// Cut established connections a change may now deny (Cilium's choice) instead of
    /// keeping them (Calico's, the default): conntrack is flushed after each change, so every
    /// packet of an existing flow meets the new policy (TCP is picked up mid-stream).
    pub cut_established: bool,
    /// With the Kubernetes source on a real node (or `--netns`): this node's name; only pods
    /// with this `spec.nodeName` are dispatched here. `None`: every pod.
    pub node_name: Option<String>,
}

/// What the drop log needs to name things: addresses → endpoints, group chains → the
/// policies that isolate their endpoints. Refreshed on every sync.
#[derive(Default)]
pub struct Attribution {
    endpoints: HashMap<IpAddr, String>,
    chains: HashMap<String, String>,
    /// Live `/drops` subscribers.
    subscribers: Vec<mpsc::Sender<String>>,
}

impl Attribution {
    fn refresh(&mut self, cluster: &weir_model::Cluster, ruleset: &weir_nft::Ruleset) {
        self.endpoints = cluster
            .endpoints
            .iter()
            .flat_map(|e| e.ips.iter().map(move |ip| (*ip, e.id())))
            .collect();
        self.chains = ruleset
            .chains
            .iter()
            .filter_map(|(name, c)| {
                let last = c.rules.last()?;
                let comment = last.split_once("comment \"")?.1.trim_end_matches('"');
                Some((name.clone(), comment.to_string()))
            })
            .collect();
    }

    /// One line per dropped packet: who, to whom, on what, and why.
    pub fn describe(&self, l: &nflog::Logged) -> String {
        let name = |ip: &IpAddr| {
            self.endpoints
                .get(ip)
                .cloned()
                .unwrap_or_else(|| ip.to_string())
        };
        let proto = match l.protocol {
            6 => "TCP".to_string(),
            17 => "UDP".to_string(),
            132 => "SCTP".to_string(),
            n => format!("protocol {n}"),
        };
        let port = l.dport.map_or(String::new(), |p| format!(" {p}"));
        let chain = l.prefix.trim_start_matches("weir ");
        let why = match self.chains.get(chain) {
            Some(reason) => reason.clone(),
            None if chain == "unknown-local-pod" => {
                "a local pod the agent does not know yet (fail closed)".into()
            }
            None => format!("chain {chain}"),
        };
        format!(
            "dropped {} → {} {proto}{port}: {why}",
            name(&l.src),
            name(&l.dst)
        )
    }
}

fn nft_for(node: &Node) -> Result<NftCli, AgentError> {
    Ok(match node {
        Node::Host => NftCli::default(),
        Node::Netns(ns) => NftCli {
            netns: Some(ns.clone()),
        },
        Node::Lab { name, index } => {
            let state =
                weir_lab::Lab::load_state(name).map_err(|e| AgentError::Config(e.to_string()))?;
            let node = state
                .nodes
                .get(*index)
                .ok_or_else(|| AgentError::Config(format!("lab {name} has no node {index}")))?;
            NftCli {
                netns: Some(node.netns.clone()),
            }
        }
    })
}

/// One reconcile: read the source, compile, apply the difference. Returns what was applied.
fn reconcile(
    config: &Config,
    source: &mut Source,
    enforcer: &mut Enforcer<NftCli>,
    metrics: &Metrics,
    attribution: &Mutex<Attribution>,
) -> Result<(), String> {
    let start = Instant::now();
    let cluster = source.load().map_err(|e| format!("source: {e}"))?;
    metrics.source(source.items().invalid.len());
    for (item, why) in &source.items().invalid {
        tracing::warn!(item = %item, error = %why, "invalid manifest: keeping its last good version");
    }
    let (cluster, local): (weir_model::Cluster, Option<Vec<usize>>) = match &config.node {
        Node::Lab { name, index } => {
            let state = weir_lab::Lab::load_state(name).map_err(|e| e.to_string())?;
            let deployed = weir_lab::Lab::deploy(&cluster, &state);
            let here: HashSet<&str> = state
                .pods
                .iter()
                .filter(|p| p.node == Some(*index))
                .map(|p| p.id.as_str())
                .collect();
            let local = deployed
                .endpoints
                .iter()
                .enumerate()
                .filter(|(_, e)| here.contains(e.id().as_str()))
                .map(|(i, _)| i)
                .collect();
            (deployed, Some(local))
        }
        _ => (cluster, None),
    };
    let engine = Engine::with_options(&cluster, config.engine);
    let node_addresses = match (source, &config.node_name) {
        (Source::Kube(k), Some(node)) if local.is_none() => Some(k.local_addresses(node)),
        _ => None,
    };
    let scope = match (&local, &node_addresses) {
        (Some(l), _) => Scope::Endpoints(l),
        (None, Some(ips)) => Scope::Addresses(ips),
        (None, None) => Scope::All,
    };
    let options = CompileOptions {
        fail_closed_interfaces: config.pod_interfaces.clone(),
        log_group: config.log_group,
    };
    let ruleset = compile_with(&engine, scope, &options);
    attribution
        .lock()
        .expect("attribution")
        .refresh(&cluster, &ruleset);
    let applied = enforcer.apply(ruleset).map_err(|e| e.to_string())?;
    if config.cut_established && applied.mode == weir_nft::apply::Mode::Delta {
        flush_conntrack(enforcer.nft()).map_err(|e| format!("conntrack flush: {e}"))?;
    }
    let took = start.elapsed();
    metrics.synced(took, applied.size);
    tracing::info!(mode = ?applied.mode, rules = applied.size.rules, sets = applied.size.sets, elements = applied.size.elements,
        script_bytes = applied.script_bytes, took_ms = took.as_secs_f64() * 1e3, "synced");
    Ok(())
}

/// `conntrack -F` in the node's namespace (the conntrack tool, Debian package `conntrack`).
fn flush_conntrack(nft: &NftCli) -> std::io::Result<()> {
    let out = nft.tool("conntrack").arg("-F").output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }
}

/// Streams drop lines to one `/drops` client until it goes away.
fn stream_drops(mut conn: std::net::TcpStream, attribution: Arc<Mutex<Attribution>>) {
    let (tx, rx) = mpsc::channel();
    attribution
        .lock()
        .expect("attribution")
        .subscribers
        .push(tx);
    if write!(
        conn,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
    )
    .is_err()
    {
        return;
    }
    for line in rx {
        if writeln!(conn, "{line}").and_then(|_| conn.flush()).is_err() {
            return;
        }
    }
}

fn serve_http(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    nft: NftCli,
    attribution: Arc<Mutex<Attribution>>,
    stop: Arc<AtomicBool>,
) {
    listener.set_nonblocking(true).ok();
    while !stop.load(Ordering::Relaxed) {
        let Ok((mut conn, _)) = listener.accept() else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        conn.set_nonblocking(false).ok();
        conn.set_read_timeout(Some(Duration::from_secs(2))).ok();
        let mut line = String::new();
        if BufReader::new(&conn).read_line(&mut line).is_err() {
            continue;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/");
        if path == "/drops" {
            let a = attribution.clone();
            std::thread::spawn(move || stream_drops(conn, a));
            continue;
        }
        let (status, body) = match path {
            "/healthz" => ("200 OK", "ok\n".to_string()),
            "/readyz" if metrics.ready() => ("200 OK", "ready\n".to_string()),
            "/readyz" => ("503 Service Unavailable", "not synced yet\n".to_string()),
            "/metrics" => {
                let listing = nft_json(&nft);
                (
                    "200 OK",
                    metrics.render(&metrics::denied_from_listing(&listing)),
                )
            }
            _ => ("404 Not Found", "not found\n".to_string()),
        };
        let _ = write!(conn, "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    }
}

/// `nft -j list table inet weir`, for drop counters (on scrape only: listing is not cheap).
fn nft_json(nft: &NftCli) -> String {
    nft.tool("nft")
        .args(["-j", "list", "table", "inet", "weir"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Reads NFLOG in the node's namespace and turns each dropped packet into a log line and a
/// `/drops` line (the rule's rate limit bounds how many arrive).
fn start_drop_log(
    nft: &NftCli,
    group: u16,
    attribution: Arc<Mutex<Attribution>>,
) -> Result<(), AgentError> {
    let socket = match &nft.netns {
        Some(ns) => weir_lab::netns::run_in(ns, || nflog::NflogSocket::bind(group))?,
        None => nflog::NflogSocket::bind(group)?,
    };
    std::thread::Builder::new()
        .name("weir-nflog".into())
        .spawn(move || loop {
            let Ok(packets) = socket.recv() else { continue };
            let mut a = attribution.lock().expect("attribution");
            for p in &packets {
                let line = a.describe(p);
                tracing::warn!(target: "drops", "{line}");
                a.subscribers.retain(|tx| tx.send(line.clone()).is_ok());
            }
        })?;
    Ok(())
}

/// Runs until `stop` is set. Persistent failures are logged and retried; the kernel keeps
/// the last good table meanwhile.
pub fn run(config: Config, stop: Arc<AtomicBool>) -> Result<(), AgentError> {
    let nft = nft_for(&config.node)?;
    let metrics = Arc::new(Metrics::default());
    let attribution = Arc::new(Mutex::new(Attribution::default()));
    if let Some(group) = config.log_group {
        start_drop_log(&nft, group, attribution.clone())?;
    }
    if let Some(addr) = config.listen {
        let listener = TcpListener::bind(addr)?;
        let (m, n, a, s) = (
            metrics.clone(),
            nft.clone(),
            attribution.clone(),
            stop.clone(),
        );
        std::thread::Builder::new()
            .name("weir-http".into())
            .spawn(move || serve_http(listener, m, n, a, s))?;
        tracing::info!(%addr, "serving /metrics, /healthz, /readyz");
    }
    let (tx, rx) = mpsc::channel();
    let mut source = match &config.source {
        SourceSpec::Dir(dir) => {
            source::watch(dir, tx)?;
            Source::Dir(DirSource::new(dir.clone(), config.load))
        }
        SourceSpec::Kubernetes => Source::Kube(kube_source::KubeSource::start(config.load, tx)?),
    };
    let mut enforcer = Enforcer::new(nft);
    let mut dirty = true;
    while !stop.load(Ordering::Relaxed) {
        if dirty {
            // Debounce: let a burst of writes (an editor, a git checkout) settle.
            std::thread::sleep(config.debounce);
            while rx.try_recv().is_ok() {}
            match reconcile(&config, &mut source, &mut enforcer, &metrics, &attribution) {
                Ok(()) => dirty = false,
                Err(e) => {
                    metrics.sync_failed();
                    tracing::error!(error = %e, "sync failed; the kernel keeps the last good table, retrying");
                    std::thread::sleep(Duration::from_millis(500));
                    continue;
                }
            }
        }
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(()) => dirty = true,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(AgentError::Config("the watcher stopped".into()))
            }
        }
    }
    Ok(())
}
