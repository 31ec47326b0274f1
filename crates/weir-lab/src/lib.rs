//! weir's lab: the pods of a cluster as Linux network namespaces, wired like a CNI
//! (see [`plan`] for the topology), a listener answering with each pod's name, the
//! dataplane programmed per node, and real TCP/UDP/SCTP probes between pods.
//!
//! Safety: everything a lab creates is a namespace named `wl-<lab>-…` (veth pairs are
//! created directly inside them), nftables is only ever programmed inside lab node
//! namespaces, probe traffic only goes to lab pod addresses, and [`Lab::down`] removes
//! every namespace with the lab's prefix even when the saved state is missing.

pub mod host;
pub mod plan;
pub mod probe;
pub mod sctp;
pub mod serve;
pub mod session;
pub mod verify;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use weir_engine::Engine;
use weir_model::{Cluster, PortKey};
use weir_nft::apply::{Applied, Enforcer, NftCli, NftError};
use weir_nft::{compile, Scope};

use host::Host;
pub use plan::{LabState, PodState};
pub use session::Session;

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("lab name {0:?}: use 1 to 12 lowercase letters and digits")]
    BadName(String),
    #[error("{0}")]
    Command(String),
    #[error("lab {0:?} is not up (no state in {1})")]
    NotUp(String, String),
    #[error("lab state {0}: {1}")]
    State(String, String),
    #[error("listener: {0}")]
    Listener(String),
    #[error("nftables in {0}: {1}")]
    Nft(String, NftError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// How to build a lab.
#[derive(Clone, Debug)]
pub struct LabOptions {
    pub name: String,
    pub nodes: usize,
    /// Ports every pod listens on besides its containerPorts (the probed ones).
    pub listen: Vec<PortKey>,
    /// The `weir` executable, whose `lab serve` runs the listeners.
    pub exe: PathBuf,
    /// Endpoints (`namespace/name`) whose ports real programs will serve: no listener there.
    pub no_listen: Vec<String>,
}

fn check_name(name: &str) -> Result<(), LabError> {
    let ok = !name.is_empty()
        && name.len() <= 12
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(LabError::BadName(name.to_string()))
    }
}

/// Where a lab keeps its state.
pub fn state_dir(name: &str) -> PathBuf {
    PathBuf::from("/run/weir/lab").join(name)
}

fn state_file(name: &str) -> PathBuf {
    state_dir(name).join("state.json")
}

/// A lab that is up.
pub struct Lab {
    pub state: LabState,
    /// The cluster as deployed: every endpoint with the addresses the lab gave it.
    pub deployed: Cluster,
}

impl Lab {
    /// Builds the lab for `cluster` (tearing down a previous lab of the same name first)
    /// and starts its listeners. On any failure, whatever was created is removed.
    pub fn up(cluster: &Cluster, options: &LabOptions, host: &dyn Host) -> Result<Lab, LabError> {
        check_name(&options.name)?;
        Lab::down(&options.name, host)?;
        let (mut state, deployed) =
            plan::plan(cluster, &options.name, options.nodes, &options.listen);
        for pod in &mut state.pods {
            if options.no_listen.contains(&pod.id) {
                pod.listen.clear();
            }
        }
        let built = (|| {
            for step in plan::steps(&state) {
                match step {
                    plan::Step::Batch(ns, lines) => host.ip_batch(ns.as_deref(), &lines)?,
                    plan::Step::Sysctl(ns, settings) => host.sysctl(&ns, &settings)?,
                    plan::Step::Nft(ns, script) => host.nft(&ns, &script)?,
                    plan::Step::File(path, content) => host.write_file(&path, &content)?,
                }
            }
            std::fs::create_dir_all(state_dir(&state.name))?;
            save(&state)?;
            state.serve_pid = Some(start_listeners(&state.name, &options.exe)?);
            save(&state)
        })();
        if let Err(e) = built {
            let _ = Lab::down(&options.name, host);
            return Err(e);
        }
        Ok(Lab { state, deployed })
    }

    /// Loads the state of a lab that is up.
    pub fn load_state(name: &str) -> Result<LabState, LabError> {
        check_name(name)?;
        let path = state_file(name);
        let text = std::fs::read_to_string(&path)
            .map_err(|_| LabError::NotUp(name.to_string(), path.display().to_string()))?;
        serde_json::from_str(&text)
            .map_err(|e| LabError::State(path.display().to_string(), e.to_string()))
    }

    /// Gives a loaded cluster the addresses its lab deployed it with (by endpoint id).
    pub fn deploy(cluster: &Cluster, state: &LabState) -> Cluster {
        let mut deployed = cluster.clone();
        for ep in &mut deployed.endpoints {
            if let Some(pod) = state.pods.iter().find(|p| p.id == ep.id()) {
                ep.ips = pod.ips.clone();
            }
        }
        deployed
    }

    /// Stops the listeners and deletes every namespace of lab `name` (found by prefix, so
    /// leftovers of a crashed run go too). Idempotent.
    /// Whether anything of lab `name` is there: its state or one of its namespaces.
    pub fn exists(name: &str, host: &dyn Host) -> Result<bool, LabError> {
        check_name(name)?;
        let prefix = plan::prefix(name);
        Ok(state_dir(name).exists() || host.namespaces().iter().any(|n| n.starts_with(&prefix)))
    }

    pub fn down(name: &str, host: &dyn Host) -> Result<(), LabError> {
        check_name(name)?;
        if let Ok(state) = Lab::load_state(name) {
            if let Some(pid) = state.serve_pid {
                stop_process(pid, &format!("lab serve --name {name}"));
            }
        }
        let prefix = plan::prefix(name);
        let ours: Vec<String> = host
            .namespaces()
            .into_iter()
            .filter(|n| n.starts_with(&prefix))
            .collect();
        // Apps started inside pods (redis-server, todos) outlive a deleted namespace: stop them.
        for ns in &ours {
            host.kill_all_in(ns);
        }
        let doomed: Vec<String> = ours.iter().map(|n| format!("netns del {n}")).collect();
        host.ip_batch(None, &doomed)?;
        if let Ok(entries) = std::fs::read_dir("/etc/netns") {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(&prefix) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let _ = std::fs::remove_dir_all(state_dir(name));
        Ok(())
    }

    /// One enforcer per node, each programming that node's pods into its namespace.
    pub fn enforcers(state: &LabState) -> LabEnforcer {
        LabEnforcer {
            ids: state.pods.iter().map(|p| p.id.clone()).collect(),
            nodes: state
                .nodes
                .iter()
                .enumerate()
                .map(|(k, node)| {
                    let local = state
                        .pods
                        .iter()
                        .enumerate()
                        .filter(|(_, p)| p.node == Some(k))
                        .map(|(i, _)| i)
                        .collect();
                    let mut enforcer = Enforcer::new(NftCli {
                        netns: Some(node.netns.clone()),
                    });
                    enforcer.verify = true; // lab tables are small: read each full replace back
                    (node.netns.clone(), local, enforcer)
                })
                .collect(),
        }
    }
}

/// Starts `program` inside pod `pod_id` through `ip netns exec`, which also mounts the pod's
/// hosts file (Service names) over /etc/hosts; output goes to `<state dir>/<file>.log`.
/// The lab stops it on `down` (every process inside a lab namespace is stopped).
pub fn spawn_in(
    state: &LabState,
    pod_id: &str,
    program: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> Result<std::process::Child, LabError> {
    let pod = state
        .pods
        .iter()
        .find(|p| p.id == pod_id)
        .ok_or_else(|| LabError::State(pod_id.into(), "no such pod in the lab".into()))?;
    let log_name = pod_id.replace('/', "_");
    let log = std::fs::File::create(state_dir(&state.name).join(format!("{log_name}.log")))?;
    use std::os::unix::process::CommandExt;
    Command::new("ip")
        .args(["netns", "exec", &pod.netns])
        .arg(program)
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .map_err(|e| LabError::Command(format!("{} in {pod_id}: {e}", program.display())))
}

/// The dataplane of every node of a lab.
pub struct LabEnforcer {
    /// Endpoint ids in lab order: the engine's cluster must list the same, in that order.
    ids: Vec<String>,
    /// (node namespace, its endpoints, its enforcer)
    pub nodes: Vec<(String, Vec<usize>, Enforcer<NftCli>)>,
}

impl LabEnforcer {
    /// Compiles each node's table from the engine (built on the deployed cluster, whose
    /// endpoint order is the lab's) and applies it: a full replace the first time, deltas
    /// afterwards.
    pub fn apply(&mut self, engine: &Engine) -> Result<Vec<Applied>, LabError> {
        let eps = &engine.cluster().endpoints;
        if eps.len() != self.ids.len() || eps.iter().zip(&self.ids).any(|(e, id)| e.id() != *id) {
            return Err(LabError::State(
                "endpoints".into(),
                "the cluster's endpoints are not the lab's (use Lab::deploy on the same manifests)"
                    .into(),
            ));
        }
        let mut out = Vec::new();
        for (netns, local, enforcer) in &mut self.nodes {
            let ruleset = compile(engine, Scope::Endpoints(local));
            out.push(
                enforcer
                    .apply(ruleset)
                    .map_err(|e| LabError::Nft(netns.clone(), e))?,
            );
        }
        Ok(out)
    }

    /// Removes weir's table from every node (pods become unisolated).
    pub fn remove(&mut self) -> Result<(), LabError> {
        for (netns, _, enforcer) in &mut self.nodes {
            enforcer
                .remove()
                .map_err(|e| LabError::Nft(netns.clone(), e))?;
        }
        Ok(())
    }
}

fn save(state: &LabState) -> Result<(), LabError> {
    let path = state_file(&state.name);
    let text = serde_json::to_string_pretty(state).expect("state serialises");
    std::fs::write(&path, text)?;
    Ok(())
}

/// Starts `weir lab serve` in its own process group and waits until every socket is open.
fn start_listeners(name: &str, exe: &Path) -> Result<u32, LabError> {
    let log = std::fs::File::create(state_dir(name).join("serve.log"))?;
    let mut child = {
        use std::os::unix::process::CommandExt;
        Command::new(exe)
            .args(["lab", "serve", "--name", name])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .process_group(0)
            .spawn()
            .map_err(|e| LabError::Listener(format!("{}: {e}", exe.display())))?
    };
    let mut line = String::new();
    let stdout = child.stdout.take().expect("stdout is piped");
    BufReader::new(stdout).read_line(&mut line)?;
    if line.trim() != "ready" {
        let _ = child.kill();
        let _ = child.wait();
        let log = std::fs::read_to_string(state_dir(name).join("serve.log")).unwrap_or_default();
        return Err(LabError::Listener(format!("did not start: {}", log.trim())));
    }
    Ok(child.id())
}

/// Terminates a lab process, but only if it still is that process (pids get reused).
fn stop_process(pid: u32, expected_args: &str) {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    if !cmdline.contains(expected_args) {
        return;
    }
    let pid = pid as i32;
    let _ = weir_netns::process::kill(pid, weir_netns::process::SIGTERM);
    for _ in 0..50 {
        if !Path::new(&format!("/proc/{pid}")).exists() {
            return;
        }
        weir_netns::process::try_reap(pid); // if it is our child
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let _ = weir_netns::process::kill(pid, weir_netns::process::SIGKILL);
}
