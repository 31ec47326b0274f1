//! weir's node agent (what Calico's Felix is in the lesson): keeps one node's nftables equal
//! to the policies, pods and namespaces of its source, level-triggered.
//!
//! - Sources: a manifest directory (inotify) or the Kubernetes API (kube-rs watchers).
//! - Events only mark the state dirty; after a short debounce the source says what changed
//!   (only those items are decoded). A pod's change moves only its own set elements, a
//!   policy's recompiles its namespace's part of the table, a namespace's labels move its
//!   pods' elements ([`weir_nft::Incremental`]); each is sent as that change alone. What
//!   that cannot take (the first or last pod of a group on this node, an address held
//!   twice, items that are not one object each, …) recompiles the node's table and the
//!   *difference* to what was programmed is applied ([`weir_nft::apply::Enforcer`]). Either
//!   way one transaction, through libnftables (the `nft` command where the library is
//!   missing).
//! - No kernel writes until the source has been read successfully once; the first write is
//!   a full atomic replace of weir's own table (adopting or replacing what a previous agent
//!   left), never anything else.
//! - Fail closed: a catch-all in the table drops traffic of local pod interfaces whose
//!   address the agent does not know, and packets whose source address is not their pod
//!   interface's; both stay in the kernel when the agent is not running.
//! - The last good state holds: an invalid, unreadable or half-written source item keeps
//!   its last good version (persisted with `--state-dir`); a missing source, or an invalid
//!   item with no known last good version, programs nothing new. Each is reported in logs,
//!   metrics and `/readyz`.
//! - Drift: the table is read back periodically (the baseline once applies settle, never
//!   per event) and replaced whole when someone changed it.
//! - Established connections are kept when a policy starts denying them (conntrack accepts
//!   them first, as Calico and Antrea do).
//! - `/metrics` (Prometheus text), `/healthz`, `/readyz`, `/revision` (the policy objects
//!   the kernel holds, as one value a client can compute from the API too), and optionally
//!   `/drops` ([`http`]).

pub mod http;
pub mod kube_source;
pub mod metrics;
pub mod nflog;
pub mod source;
pub mod throttle;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use weir_engine::{Options, Selectors};
use weir_manifest::Lone;
use weir_model::Endpoint;
use weir_nft::apply::{Applied, Enforcer, Kernel, Nft, NftCli, NftError};
use weir_nft::{compile_with, CompileOptions, Delta, Incremental, NeedsFull, Scope};

use metrics::Metrics;
use source::{Change, DirSource, Items, SourceError};
use throttle::Throttle;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Where a harness (a lab) puts the cluster: the addresses it gives endpoints, and which of
/// them are on this node. Asked on every sync; the agent itself knows nothing of labs.
pub trait Placement: Send + Sync + std::fmt::Debug {
    /// The cluster as deployed here, and the indexes of its local endpoints.
    fn place(
        &self,
        cluster: weir_model::Cluster,
    ) -> Result<(weir_model::Cluster, Vec<usize>), String>;
}

/// Which network namespace the agent programs, and how it knows its local endpoints.
#[derive(Clone, Debug)]
pub enum Target {
    /// The namespace the agent runs in (a real node); local pods by `--node-name`.
    Host,
    /// A network namespace by name; every endpoint is local.
    Netns(String),
    /// A namespace whose endpoints a [`Placement`] places (a lab node).
    Placed {
        netns: String,
        placement: std::sync::Arc<dyn Placement>,
    },
}

/// Where policies, pods and namespaces come from.
#[derive(Clone, Debug)]
pub enum SourceSpec {
    /// A directory of manifests, watched with inotify.
    Dir(PathBuf),
    /// The Kubernetes API (kubeconfig or in-cluster), watched with kube-rs.
    Kubernetes,
}

/// What the agent reconciles from. Sources keep each item's last good version
/// ([`Items`]); the agent never sees an invalid item.
pub trait Source {
    /// Reads the source: the items whose good version changed since the last call (the
    /// first call: every item).
    fn changes(&mut self) -> Result<Vec<Change>, SourceError>;
    /// Every item's good version, with the invalid ones and why.
    fn items(&self) -> &Items;
    fn items_mut(&mut self) -> &mut Items;
    /// Addresses of the pods placed on `node`, for sources that know placement.
    fn local_addresses(&self, _node: &str) -> Option<HashSet<IpAddr>> {
        None
    }
    /// `Some(why)` while the source cannot be watched (its last state stays enforced).
    fn trouble(&self) -> Option<String> {
        None
    }
    /// What the last read's good policy objects were, as one value a client can compute
    /// from the API's objects too (`/revision`); `None` for sources without versions.
    fn revision(&self) -> Option<String> {
        None
    }
}

impl<S: Source + ?Sized> Source for Box<S> {
    fn changes(&mut self) -> Result<Vec<Change>, SourceError> {
        (**self).changes()
    }
    fn items(&self) -> &Items {
        (**self).items()
    }
    fn items_mut(&mut self) -> &mut Items {
        (**self).items_mut()
    }
    fn local_addresses(&self, node: &str) -> Option<HashSet<IpAddr>> {
        (**self).local_addresses(node)
    }
    fn trouble(&self) -> Option<String> {
        (**self).trouble()
    }
    fn revision(&self) -> Option<String> {
        (**self).revision()
    }
}

impl Source for DirSource {
    fn changes(&mut self) -> Result<Vec<Change>, SourceError> {
        DirSource::changes(self)
    }
    fn items(&self) -> &Items {
        &self.items
    }
    fn items_mut(&mut self) -> &mut Items {
        &mut self.items
    }
}

impl Source for kube_source::KubeSource {
    fn changes(&mut self) -> Result<Vec<Change>, SourceError> {
        kube_source::KubeSource::changes(self)
    }
    fn items(&self) -> &Items {
        &self.items
    }
    fn items_mut(&mut self) -> &mut Items {
        &mut self.items
    }
    fn local_addresses(&self, node: &str) -> Option<HashSet<IpAddr>> {
        Some(kube_source::KubeSource::local_addresses(self, node))
    }
    fn trouble(&self) -> Option<String> {
        kube_source::KubeSource::trouble(self)
    }
    fn revision(&self) -> Option<String> {
        kube_source::KubeSource::revision(self)
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub source: SourceSpec,
    pub target: Target,
    /// `/metrics`, `/healthz`, `/readyz`, `/revision` listen here.
    pub listen: Option<SocketAddr>,
    /// Interfaces of local pods, for anti-spoofing and the fail-closed catch-all.
    pub pod_interfaces: Option<weir_nft::PodInterfaces>,
    /// Quiet time after an event before reading the source: lets a burst of file writes
    /// (an editor, a git checkout) settle. The Kubernetes source gets none by default: each
    /// event is a whole object, events that arrive during a sync are taken together by the
    /// next, and every millisecond here is a millisecond a new policy is not enforced.
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
    /// Where the last good version of every source item is persisted, so it survives
    /// restarts. `None`: kept in memory; at start, an invalid item blocks programming.
    pub state_dir: Option<PathBuf>,
    /// How often the kernel's table is read back and compared (`None`: never).
    pub drift_interval: Option<Duration>,
    /// Serve `/drops` (off by default: it tells who talks to whom).
    pub serve_drops: bool,
    /// Audit every policy: nothing is dropped but spoofed sources; would-drops are counted
    /// and logged ([`CompileOptions::audit`]).
    pub audit: bool,
}

impl Config {
    /// Defaults for everything but where to read and what to program.
    pub fn new(source: SourceSpec, target: Target) -> Config {
        let debounce = match source {
            SourceSpec::Dir(_) => Duration::from_millis(20),
            SourceSpec::Kubernetes => Duration::ZERO,
        };
        Config {
            source,
            target,
            listen: None,
            pod_interfaces: None,
            debounce,
            engine: Options::default(),
            load: weir_manifest::LoadOptions::default(),
            log_group: None,
            cut_established: false,
            node_name: None,
            state_dir: None,
            drift_interval: Some(Duration::from_secs(10)),
            serve_drops: false,
            audit: false,
        }
    }
}

/// What the drop log needs to name things: addresses → endpoints, group chains → the
/// policies that isolate their endpoints. Refreshed on every sync.
#[derive(Default)]
pub struct Attribution {
    endpoints: HashMap<IpAddr, String>,
    chains: HashMap<String, String>,
    /// Audit chains → the audited policies whose would-drops they count.
    would_drop: HashMap<String, Vec<String>>,
    /// Every policy audited: the fail-closed catch-all only counts would-drops too.
    pub audit_all: bool,
    /// Live `/drops` subscribers (bounded: a slow one loses lines, never memory).
    subscribers: Vec<mpsc::SyncSender<String>>,
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
            .filter_map(|(name, c)| Some((name.clone(), Self::why(c)?)))
            .collect();
        self.would_drop = ruleset
            .chains
            .iter()
            .filter(|(_, c)| !c.would_drop.is_empty())
            .map(|(name, c)| (name.clone(), c.would_drop.clone()))
            .collect();
    }

    /// Would-drop packets per audited policy, from packets per audit chain: a packet an audit
    /// chain counts is one every policy of the chain would drop. Under `--audit`, what the
    /// fail-closed catch-all would drop is under policy `""`.
    pub fn would_drop_by_policy(&self, chains: &[(String, u64)]) -> Vec<(String, u64)> {
        let mut out: std::collections::BTreeMap<String, u64> = Default::default();
        for (chain, packets) in chains {
            match self.would_drop.get(chain) {
                Some(policies) => {
                    for p in policies {
                        *out.entry(p.clone()).or_insert(0) += packets;
                    }
                }
                None => *out.entry(String::new()).or_insert(0) += packets,
            }
        }
        out.into_iter().collect()
    }

    /// Why a chain's closing rule drops (or would drop), whole.
    fn why(chain: &weir_nft::Chain) -> Option<String> {
        chain.why.clone()
    }

    /// Chains made, remade or removed incrementally.
    fn chains_changed(&mut self, delta: &Delta) {
        for name in &delta.removed_chains {
            self.chains.remove(name);
            self.would_drop.remove(name);
        }
        for (name, chain) in &delta.chains {
            match Self::why(chain) {
                Some(why) => self.chains.insert(name.clone(), why),
                None => self.chains.remove(name),
            };
            if chain.would_drop.is_empty() {
                self.would_drop.remove(name);
            } else {
                self.would_drop
                    .insert(name.clone(), chain.would_drop.clone());
            }
        }
    }

    /// One endpoint added, changed or removed incrementally (no chain appears or goes then).
    fn endpoint_changed(&mut self, old: Option<&Endpoint>, new: Option<&Endpoint>) {
        for ip in old.iter().flat_map(|e| &e.ips) {
            self.endpoints.remove(ip);
        }
        if let Some(e) = new {
            for ip in &e.ips {
                self.endpoints.insert(*ip, e.id());
            }
        }
    }

    /// One line per dropped packet: who, to whom, on what, and why; `would drop …` for what
    /// an audited policy would have dropped (the packet went on).
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
        let audited =
            self.would_drop.contains_key(chain) || (self.audit_all && chain == "unknown-local-pod");
        let why = match self.chains.get(chain) {
            Some(reason) => reason.clone(),
            None if chain == "unknown-local-pod" && audited => {
                "a local pod the agent does not know yet (audit)".into()
            }
            None if chain == "unknown-local-pod" => {
                "a local pod the agent does not know yet (fail closed)".into()
            }
            None if chain == "spoofed-source" => {
                "source address not of the sending pod's interface (spoofed)".into()
            }
            None => format!("chain {chain}"),
        };
        format!(
            "{} {} → {} {proto}{port}: {why}",
            if audited { "would drop" } else { "dropped" },
            name(&l.src),
            name(&l.dst)
        )
    }
}

fn nft_for(target: &Target) -> NftCli {
    NftCli {
        netns: match target {
            Target::Host => None,
            Target::Netns(ns) | Target::Placed { netns: ns, .. } => Some(ns.clone()),
        },
    }
}

/// Why a reconcile did not reach the kernel.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("{0}")]
    Other(String),
}

/// The reconciler: a source, what it compiles to, and the kernel it programs — the whole
/// of the agent's logic, with the loop, watchers and servers left to [`run`]. Over any
/// [`Source`] and [`Nft`], so it is tested with fakes and without root.
pub struct Agent<S, N: Nft> {
    config: Config,
    source: S,
    enforcer: Enforcer<N>,
    /// Where conntrack is flushed (`--cut-established`).
    tools: NftCli,
    metrics: Arc<Metrics>,
    attribution: Arc<Mutex<Attribution>>,
    /// Where the last reconcile spent its time.
    pub stages: Stages,
    /// The ruleset and what it was compiled from, kept for pod events.
    incremental: Option<Incremental>,
    /// Whether the kernel holds what was last computed (an apply failed since: no).
    in_sync: bool,
    /// When the last apply reached the kernel, and since when the drift baseline is stale.
    applied_at: Option<Instant>,
    stale_since: Option<Instant>,
}

/// The drift baseline is listed once applies pause this long, or at the latest after
/// [`SETTLE_MAX`] of continuous applies.
const SETTLE: Duration = Duration::from_millis(200);
const SETTLE_MAX: Duration = Duration::from_secs(1);

/// Time per stage of one reconcile (`weir bench agent` reports them).
#[derive(Clone, Copy, Debug, Default)]
pub struct Stages {
    /// Reading what changed from the source (decoding changed items).
    pub read: Duration,
    /// Assembling the cluster from every item (full compiles only).
    pub model: Duration,
    /// This node's ruleset: compiled in full, or the changed pods' elements moved.
    pub compile: Duration,
    /// The difference to what was programmed, into the kernel.
    pub apply: Duration,
    /// Whether the changes were applied incrementally.
    pub incremental: bool,
}

impl<S: Source, N: Nft> Agent<S, N> {
    pub fn new(config: Config, source: S, nft: N) -> Self {
        let tools = nft_for(&config.target);
        let audit_all = config.audit;
        let mut enforcer = Enforcer::new(nft);
        enforcer.track_drift = config.drift_interval.is_some();
        Agent {
            config,
            source,
            enforcer,
            tools,
            metrics: Arc::new(Metrics::default()),
            attribution: Arc::new(Mutex::new(Attribution {
                audit_all,
                ..Attribution::default()
            })),
            stages: Stages::default(),
            incremental: None,
            in_sync: false,
            applied_at: None,
            stale_since: None,
        }
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn source(&mut self) -> &mut S {
        &mut self.source
    }

    pub fn enforcer(&self) -> &Enforcer<N> {
        &self.enforcer
    }

    /// One reconcile: read what changed, bring the ruleset up to date, apply the difference.
    /// A pod's, policy's or namespace's change is taken incrementally ([`Incremental`])
    /// where it can be; anything else recompiles from every item's good version.
    pub fn reconcile(&mut self) -> Result<Applied, SyncError> {
        let start = Instant::now();
        let changes = self.source.changes();
        let items = self.source.items();
        self.metrics.source(items.invalid.len());
        for item in &items.newly_invalid {
            let why = &items.invalid[item];
            tracing::warn!(item = %item, error = %why, "invalid source item: keeping its last good version");
        }
        let changes = match changes {
            Ok(c) => c,
            Err(e) => {
                // What was read is in the items but not in the ruleset: start afresh.
                self.incremental = None;
                return Err(e.into());
            }
        };
        let t_read = Instant::now();
        let node_addresses = match (&self.config.node_name, &self.config.target) {
            (Some(node), Target::Host | Target::Netns(_)) => self.source.local_addresses(node),
            _ => None,
        };
        let step = self.incremental_step(&changes, node_addresses.as_ref());
        let incremental = step.is_some();
        let (model, placed) = if incremental {
            (Duration::ZERO, None)
        } else {
            match self.full(node_addresses) {
                Ok(done) => done,
                Err(e) => {
                    self.incremental = None;
                    return Err(e);
                }
            }
        };
        let t_compile = Instant::now();
        // The changes alone when the kernel holds what the kept ruleset held before them;
        // otherwise (or if the kernel refuses them) the difference of whole rulesets.
        let deltas = match step {
            Some(deltas) if self.in_sync => match self.enforcer.apply_deltas(&deltas) {
                Ok(applied) => Some(applied),
                Err(e) => {
                    self.metrics.delta_refused();
                    tracing::warn!(error = %e, "the kernel refused incremental changes (was the table changed behind weir's back?); replacing the whole table");
                    None
                }
            },
            _ => None,
        };
        let applied = match deltas {
            Some(applied) => applied,
            None => {
                // A full compile kept a ruleset, or returned the placed one.
                let ruleset = placed
                    .or_else(|| self.incremental.as_ref().map(|i| i.ruleset().clone()))
                    .ok_or_else(|| SyncError::Other("no ruleset was compiled".into()))?;
                self.in_sync = false;
                self.enforcer
                    .apply(ruleset)
                    .map_err(|e| SyncError::Other(e.to_string()))?
            }
        };
        self.in_sync = true;
        if let Some(why) = &applied.delta_refused {
            self.metrics.delta_refused();
            tracing::warn!(error = %why, "the kernel refused a delta (was the table changed behind weir's back?); replaced the whole table instead");
        }
        if self.config.cut_established && applied.mode == weir_nft::apply::Mode::Delta {
            flush_conntrack(&self.tools)
                .map_err(|e| SyncError::Other(format!("conntrack flush: {e}")))?;
        }
        if applied.mode != weir_nft::apply::Mode::Unchanged {
            self.applied_at = Some(Instant::now());
            self.stale_since.get_or_insert_with(Instant::now);
        }
        let took = start.elapsed();
        self.stages = Stages {
            read: t_read - start,
            model,
            compile: (t_compile - t_read).saturating_sub(model),
            apply: t_compile.elapsed(),
            incremental,
        };
        self.metrics
            .synced(took, applied.size, self.source.revision());
        tracing::info!(mode = ?applied.mode, incremental, rules = applied.size.rules, sets = applied.size.sets, elements = applied.size.elements,
            script_bytes = applied.script_bytes, took_ms = took.as_secs_f64() * 1e3, "synced");
        Ok(applied)
    }

    /// Applies `changes` to the kept ruleset when each is one pod's, policy's or
    /// namespace's ([`Incremental`]), returning what each changed, in order; `None` (and the
    /// kept ruleset dropped) when a full compile is needed.
    fn incremental_step(
        &mut self,
        changes: &[Change],
        node_addresses: Option<&HashSet<IpAddr>>,
    ) -> Option<Vec<Delta>> {
        let inc = self.incremental.as_mut()?;
        let mut attribution = self.attribution.lock().expect("attribution");
        let step = take_changes(
            inc,
            self.source.items(),
            &mut attribution,
            changes,
            node_addresses,
        );
        if step.is_none() {
            self.incremental = None;
        }
        step
    }

    /// Compiles from every item's good version and keeps the result for later increments;
    /// with a placement (a lab node) returns the ruleset instead. Also returns how long
    /// assembling the cluster took.
    fn full(
        &mut self,
        node_addresses: Option<HashSet<IpAddr>>,
    ) -> Result<(Duration, Option<weir_nft::Ruleset>), SyncError> {
        let config = &self.config;
        let start = Instant::now();
        let cluster = self.source.items_mut().cluster()?;
        let model = start.elapsed();
        let options = CompileOptions {
            pod_interfaces: config.pod_interfaces.clone(),
            log_group: config.log_group,
            audit: config.audit,
        };
        let mut attribution = self.attribution.lock().expect("attribution");
        match &config.target {
            Target::Placed { placement, .. } => {
                let (placed, local) = placement.place(cluster).map_err(SyncError::Other)?;
                let engine = Selectors::new(&placed, config.engine);
                let ruleset = compile_with(&engine, Scope::Endpoints(&local), &options);
                attribution.refresh(&placed, &ruleset);
                self.incremental = None;
                Ok((model, Some(ruleset)))
            }
            Target::Host | Target::Netns(_) => {
                let inc = Incremental::new(cluster, config.engine, node_addresses, options);
                attribution.refresh(inc.cluster(), inc.ruleset());
                self.incremental = Some(inc);
                Ok((model, None))
            }
        }
    }

    /// Work kept out of the per-event path, done when events pause (at the latest once a
    /// second): listing the table as the drift baseline (one listing per burst, not per
    /// event; a table already changed by then is repaired), and the state file.
    pub fn tick(&mut self) {
        let due = self.enforcer.baseline_stale()
            && (self.applied_at.is_some_and(|t| t.elapsed() >= SETTLE)
                || self.stale_since.is_some_and(|t| t.elapsed() >= SETTLE_MAX));
        if due {
            self.stale_since = None;
            match self.enforcer.refresh_baseline() {
                Ok(()) => {}
                Err(NftError::Verify(what)) => self.repair(&what),
                Err(e) => {
                    self.metrics.drift_check_failed();
                    tracing::error!(error = %e, "could not read the table back after applying");
                }
            }
        }
        self.source.items_mut().save_if_due();
    }

    fn repair(&mut self, what: &str) {
        tracing::error!(found = %what, "the kernel's table differs from what weir programmed; replacing it");
        match self.enforcer.repair() {
            Ok(applied) => {
                self.metrics.drift_repaired();
                tracing::warn!(%applied, "drift repaired");
            }
            Err(e) => {
                self.metrics.sync_failed(&format!("drift repair: {e}"));
                tracing::error!(error = %e, "drift repair failed; retrying at the next check");
            }
        }
    }

    /// Reads the table back; when it is not what was programmed, says what differs and
    /// replaces it whole.
    pub fn check_drift(&mut self) {
        match self.enforcer.drift() {
            Ok(None) => {}
            Ok(Some(what)) => self.repair(&what),
            Err(e) => {
                self.metrics.drift_check_failed();
                tracing::error!(error = %e, "could not read the table back to check for drift");
            }
        }
    }
}

/// [`Agent::incremental_step`] over the parts of the agent it uses: `None` as soon as a
/// change needs the full compile.
fn take_changes(
    inc: &mut Incremental,
    items: &Items,
    attribution: &mut Attribution,
    changes: &[Change],
    node_addresses: Option<&HashSet<IpAddr>>,
) -> Option<Vec<Delta>> {
    if items.has_workloads() {
        return None;
    }
    // The node's addresses, change by change: a pod's leave with it, its new version's
    // join when they are among the node's addresses now.
    let mut local = inc.local().cloned();
    let mut all = Vec::new();
    for c in changes {
        // Items holding one object each; an item now holding another object than
        // before is that one gone and this one's version.
        let lone = |d: Option<&weir_manifest::Decoded>| match d {
            None => Some(None),
            Some(d) => d.lone().map(Some),
        };
        let after = c.after.then(|| items.decoded(&c.name)).flatten();
        let (Some(old), Some(new)) = (lone(c.before.as_ref()), lone(after)) else {
            return None;
        };
        let pairs = match (old, new) {
            (Some(o), Some(n)) if o.identity() != n.identity() => {
                vec![(Some(o), None), (None, Some(n))]
            }
            pair => vec![pair],
        };
        for (old, new) in pairs {
            let Some(object) = new.as_ref().or(old.as_ref()) else {
                continue;
            };
            // No other item may hold the object: a duplicate fails the whole cluster.
            if items.holders(&object.identity()) != usize::from(new.is_some()) {
                return None;
            }
            let result = match Step::of(old, new) {
                Some(Step::Namespace(name, labels)) => {
                    inc.namespace(&name, labels).map(Delta::from)
                }
                Some(Step::Policy(id, new)) => inc.policy(&id, new).inspect(|delta| {
                    attribution.chains_changed(delta);
                }),
                Some(Step::Pod(id, old, new)) => {
                    // Named before the ruleset takes `new`; refused, the full compile
                    // renames all.
                    attribution.endpoint_changed(old.as_ref(), new.as_ref());
                    match (local.as_mut(), node_addresses) {
                        (Some(here), Some(now)) => {
                            for ip in old.iter().flat_map(|e| &e.ips) {
                                here.remove(ip);
                            }
                            here.extend(
                                new.iter()
                                    .flat_map(|e| &e.ips)
                                    .filter(|ip| now.contains(*ip)),
                            );
                            inc.endpoint_on_node(&id, new, here.clone())
                        }
                        (None, None) => inc.endpoint(&id, new),
                        _ => Err(NeedsFull("the node's scope changed")),
                    }
                    .map(Delta::from)
                }
                None => Err(NeedsFull("an object changed kind")),
            };
            all.push(result.ok()?);
        }
    }
    if local.as_ref() != node_addresses {
        // The node's addresses changed beyond these pods (e.g. a pod's IP appeared).
        return None;
    }
    Some(all)
}

/// One object's change, as [`Incremental`] takes it.
enum Step {
    /// Endpoint id, its version before and now.
    Pod(String, Option<Endpoint>, Option<Endpoint>),
    /// Policy id, its version now.
    Policy(String, Option<weir_model::Policy>),
    /// Namespace name, its labels now.
    Namespace(String, Option<weir_model::Labels>),
}

impl Step {
    /// The change from `old` to `new`, one object of one identity (or either absent).
    fn of(old: Option<Lone>, new: Option<Lone>) -> Option<Step> {
        Some(match (old, new) {
            (old @ (None | Some(Lone::Pod(_))), Some(Lone::Pod(n))) => {
                let old = match old {
                    Some(Lone::Pod(o)) => Some(o),
                    _ => None,
                };
                Step::Pod(n.id(), old, Some(n))
            }
            (Some(Lone::Pod(o)), None) => Step::Pod(o.id(), Some(o), None),
            (None | Some(Lone::Policy(_)), Some(Lone::Policy(p))) => Step::Policy(p.id(), Some(p)),
            (Some(Lone::Policy(p)), None) => Step::Policy(p.id(), None),
            (None | Some(Lone::Namespace { .. }), Some(Lone::Namespace { name, labels })) => {
                Step::Namespace(name, Some(labels))
            }
            (Some(Lone::Namespace { name, .. }), None) => Step::Namespace(name, None),
            _ => return None,
        })
    }
}

/// `conntrack -F` in the node's namespace (the conntrack tool, Debian package `conntrack`).
fn flush_conntrack(nft: &NftCli) -> Result<(), String> {
    let out = nft
        .run_tool("conntrack", &["-F"], Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// Reads NFLOG in the node's namespace and turns each dropped packet into a log line and a
/// `/drops` line (the rule's rate limit bounds how many arrive).
fn start_drop_log(
    nft: &NftCli,
    group: u16,
    attribution: Arc<Mutex<Attribution>>,
) -> Result<(), AgentError> {
    let socket = match &nft.netns {
        Some(ns) => weir_netns::netns::run_in(ns, || nflog::NflogSocket::bind(group))?,
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
                a.subscribers.retain(|tx| {
                    !matches!(
                        tx.try_send(line.clone()),
                        Err(mpsc::TrySendError::Disconnected(_))
                    )
                });
            }
        })?;
    Ok(())
}

/// Runs until `stop` is set. Persistent failures are logged (throttled) and retried with
/// backoff; the kernel keeps the last good table meanwhile.
pub fn run(config: Config, stop: Arc<AtomicBool>) -> Result<(), AgentError> {
    let nft = nft_for(&config.target);
    let (kernel, fallback) = Kernel::open(nft.netns.clone());
    match &fallback {
        None => tracing::info!(via = kernel.name(), "programming nftables"),
        Some(why) => {
            tracing::warn!(via = kernel.name(), error = %why, "libnftables unavailable: programming through the nft command (a process per change)")
        }
    }
    let items = |name: &str| -> Result<Items, AgentError> {
        Ok(match &config.state_dir {
            Some(dir) => Items::with_state(config.load, dir, name)?,
            None => Items::new(config.load),
        })
    };
    let (tx, rx) = mpsc::channel();
    let source: Box<dyn Source> = match &config.source {
        SourceSpec::Dir(dir) => {
            let d = DirSource::new(dir.clone(), items("dir.json")?);
            source::watch(dir, d.in_progress.clone(), tx)?;
            Box::new(d)
        }
        SourceSpec::Kubernetes => Box::new(kube_source::KubeSource::start(
            items("kubernetes.json")?,
            tx,
        )?),
    };
    let drift_interval = config.drift_interval;
    let debounce = config.debounce;
    let (log_group, listen, serve_drops) = (config.log_group, config.listen, config.serve_drops);
    let mut agent = Agent::new(config, source, kernel);
    let metrics = agent.metrics.clone();
    let attribution = agent.attribution.clone();
    if let Some(group) = log_group {
        // A drop log that cannot bind is loud (log, metric, /readyz), never fatal.
        match start_drop_log(&nft, group, attribution.clone()) {
            Ok(()) => metrics.drop_log(Some(Ok(()))),
            Err(e) => {
                tracing::error!(group, error = %e, "cannot read NFLOG: dropped packets will not be attributed");
                metrics.drop_log(Some(Err(e.to_string())));
            }
        }
    }
    if let Some(addr) = listen {
        let listener = TcpListener::bind(addr)?;
        let state = Arc::new(http::Http::new(
            metrics.clone(),
            nft.clone(),
            attribution.clone(),
            serve_drops,
        ));
        let addr = http::serve(listener, state, stop.clone())?;
        tracing::info!(%addr, drops = serve_drops, "serving /metrics, /healthz, /readyz, /revision");
    }
    let mut dirty = true;
    let mut retry_at: Option<Instant> = None;
    let mut backoff = Duration::from_millis(250);
    let mut throttle = Throttle::new();
    let mut last_error = String::new();
    let mut source_error: Option<String> = None;
    let mut next_drift = Instant::now() + drift_interval.unwrap_or(Duration::MAX / 4);
    while !stop.load(Ordering::Relaxed) {
        // The watch's own trouble, else why the source could not be used at the last try.
        metrics.source_trouble(agent.source().trouble().or_else(|| source_error.clone()));
        if dirty && retry_at.is_none_or(|t| Instant::now() >= t) {
            // Debounce: let a burst of writes (an editor, a git checkout) settle.
            std::thread::sleep(debounce);
            while rx.try_recv().is_ok() {}
            match agent.reconcile() {
                Ok(_) => {
                    dirty = false;
                    retry_at = None;
                    backoff = Duration::from_millis(250);
                    throttle.reset();
                    last_error.clear();
                    source_error = None;
                }
                Err(SyncError::Source(SourceError::NotYet)) => {
                    // Waiting for the first list is not a failure; a list event wakes us.
                    dirty = false;
                }
                Err(e) => {
                    let why = e.to_string();
                    match &e {
                        SyncError::Source(
                            SourceError::Unavailable(_) | SourceError::NoLastGood { .. },
                        ) => {
                            source_error = Some(why.clone());
                            metrics.source_trouble(source_error.clone());
                        }
                        _ => metrics.sync_failed(&why),
                    }
                    if why != last_error {
                        throttle.reset();
                    }
                    if let Some(held) = throttle.admit() {
                        tracing::error!(error = %why, held_back = held, retry_in_ms = backoff.as_millis() as u64,
                            "sync failed; the kernel keeps the last good table");
                    }
                    last_error = why;
                    retry_at = Some(Instant::now() + backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        agent.tick();
        if let Some(every) = drift_interval {
            if Instant::now() >= next_drift {
                agent.check_drift();
                next_drift = Instant::now() + every;
            }
        }
        match rx.recv_timeout(Duration::from_millis(100)) {
            // Something changed: try again now, whatever the backoff said.
            Ok(()) => {
                dirty = true;
                retry_at = None;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(AgentError::Config("the watcher stopped".into()))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seed with its default-deny audited and the allows gone: redis and todos are
    /// isolated by the audited policy alone.
    fn seed_audited() -> weir_model::Cluster {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/todos");
        let mut c = weir_manifest::load_paths(&[root], Default::default())
            .expect("the seed loads")
            .cluster;
        c.policies.retain(|p| p.name == "any-from-any-none");
        c.policies[0].mode = weir_model::Mode::Audit;
        for (i, e) in c.endpoints.iter_mut().enumerate() {
            e.ips = vec![format!("10.244.0.{}", i + 1).parse().unwrap()];
        }
        c
    }

    /// The name of the ruleset's (one) audit chain.
    fn audit_chain(rs: &weir_nft::Ruleset) -> String {
        let found = rs.chains.iter().find(|(_, ch)| !ch.would_drop.is_empty());
        found.map(|(n, _)| n.clone()).expect("an audit chain")
    }

    fn logged(c: &weir_model::Cluster, prefix: &str, from: &str, to: &str) -> nflog::Logged {
        let ip = |id: &str| c.endpoints[c.endpoint_index(id).unwrap()].ips[0];
        nflog::Logged {
            prefix: format!("weir {prefix}"),
            src: ip(from),
            dst: ip(to),
            protocol: 6,
            dport: Some(6379),
        }
    }

    /// An audit chain's log line says `would drop` and which audited policies; its counter is
    /// every one of them's; under `--audit` the fail-closed catch-all's too (policy "").
    #[test]
    fn would_drops_are_described_and_counted_per_policy() {
        let c = seed_audited();
        for audit_all in [false, true] {
            let options = CompileOptions {
                log_group: Some(7),
                pod_interfaces: Some("wp*".parse().unwrap()),
                audit: audit_all,
            };
            // The table of `cluster` and the agent's attribution of it.
            let attributed = |cluster: &weir_model::Cluster| {
                let rs = weir_nft::compile_with(
                    &Selectors::new(cluster, Default::default()),
                    Scope::All,
                    &options,
                );
                let mut a = Attribution {
                    audit_all,
                    ..Attribution::default()
                };
                a.refresh(cluster, &rs);
                (rs, a)
            };
            let (rs, a) = attributed(&c);
            let chain = audit_chain(&rs);
            assert_eq!(
                a.describe(&logged(&c, &chain, "personal/ubuntu", "production/redis")),
                "would drop personal/ubuntu → production/redis TCP 6379: ingress isolated by production/any-from-any-none (audit)"
            );
            let unknown = a.describe(&logged(
                &c,
                "unknown-local-pod",
                "personal/ubuntu",
                "production/redis",
            ));
            assert_eq!(unknown.starts_with("would drop "), audit_all, "{unknown}");
            // A name too long for the rule's comment (cut to fit nft) is whole in the log.
            let mut long = c.clone();
            long.policies[0].name = format!("deny-{}", "x".repeat(200));
            let (rs, b) = attributed(&long);
            let line = b.describe(&logged(
                &long,
                &audit_chain(&rs),
                "personal/ubuntu",
                "production/redis",
            ));
            assert!(
                line.ends_with(&format!("{} (audit)", long.policies[0].id())),
                "{line}"
            );
            assert_eq!(
                a.would_drop_by_policy(&[(chain, 3), ("egress".into(), 1)]),
                vec![
                    (String::new(), 1),
                    ("production/any-from-any-none".to_string(), 3)
                ]
            );
        }
    }
}
