//! `weir bench agent`: the reconciler's cost per event as the cluster grows. The agent of
//! one node (1/50 of the pods local) is fed a generated cluster object by object, as the
//! Kubernetes source holds it, then single events; each reconcile is timed by stage. The
//! kernel is a fake (no root): `weir bench enforce` measures the dataplane.

use std::collections::HashSet;
use std::io::Write;
use std::net::IpAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use serde_json::Value;
use weir_agent::source::{Items, MemorySource};
use weir_agent::{Agent, Config, SourceSpec, Stages, Target};
use weir_gen::dump::{write_dump, DumpSpec};
use weir_nft::apply::FakeNft;

use crate::bench::{machine, ms};
use crate::exit::Failure;

#[derive(Args, Clone)]
pub struct AgentBench {
    /// Cluster sizes in pods (policies: a fifth of the pods; namespaces: a hundredth).
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,50000")]
    pods: Vec<usize>,
    /// Events of each kind timed per size.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    events: u64,
    /// Internal: be the agent alone in this process, fed the items in this file, and
    /// report its memory (what the parent cannot measure in its own process).
    #[arg(long, hide = true)]
    memory_of: Option<std::path::PathBuf>,
}

type Fed = Agent<MemorySource, FakeNft>;

/// The generated cluster's Namespaces, Pods and NetworkPolicies as items keyed
/// `Kind/namespace/name`, as the agent's watchers deliver them.
fn items(pods: usize) -> Result<Vec<(String, Value)>, Failure> {
    let spec = DumpSpec {
        pods,
        namespaces: (pods / 100).max(2),
        policies: (pods / 5).max(1),
        replicas: 5,
        seed: 1,
    };
    let mut json = Vec::new();
    write_dump(spec, &mut json).context("generating")?;
    let list: Value = serde_json::from_slice(&json).context("reading the dump")?;
    let items = list["items"].as_array().cloned().unwrap_or_default();
    // What the agent watches (weir_kube::enforced): no workloads, so no owner folding.
    Ok(items
        .into_iter()
        .filter(|o| {
            matches!(
                o["kind"].as_str(),
                Some("Namespace" | "Pod" | "NetworkPolicy")
            )
        })
        .map(|o| {
            let key = format!(
                "{}/{}/{}",
                o["kind"].as_str().unwrap_or(""),
                o["metadata"]["namespace"].as_str().unwrap_or(""),
                o["metadata"]["name"].as_str().unwrap_or("")
            );
            (key, o)
        })
        .collect())
}

fn reconcile<S: weir_agent::Source>(agent: &mut Agent<S, FakeNft>) -> Result<Stages, Failure> {
    agent.reconcile().map_err(|e| anyhow::anyhow!("{e}"))?;
    agent.enforcer().nft().scripts.lock().expect("fake").clear();
    Ok(agent.stages)
}

/// A copy of `pod` named `PREFIX-k` at address 100.SUBNET.x.y (outside the generated
/// pods' 10/8, so never one of theirs): its item key, address, text.
fn variant(pod: &Value, prefix: &str, k: u64, subnet: u8) -> (String, std::net::IpAddr, String) {
    let mut p = pod.clone();
    let name = format!("{prefix}-{k}");
    p["metadata"]["name"] = name.clone().into();
    let ip = format!("100.{subnet}.{}.{}", k / 250, k % 250 + 1);
    p["status"]["podIP"] = ip.clone().into();
    p["status"]["podIPs"] = serde_json::json!([{ "ip": ip }]);
    let key = format!(
        "Pod/{}/{name}",
        p["metadata"]["namespace"].as_str().unwrap_or("")
    );
    (key, ip.parse().expect("an address"), p.to_string())
}

/// This process's resident memory (VmRSS), MiB.
fn rss_mib() -> f64 {
    memory_mib().0
}

/// This process's CPU time (user + system), seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces, in parentheses).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    let ticks = weir_netns::process::clock_ticks() as f64;
    (f.get(11).copied().unwrap_or(0.0) + f.get(12).copied().unwrap_or(0.0)) / ticks
}

fn total(s: &Stages) -> Duration {
    s.read + s.model + s.compile + s.apply
}

/// The agent of node-0 over an in-memory source, drift checks off, a fake kernel.
fn node_agent(node_addresses: HashSet<IpAddr>) -> Fed {
    let mut config = Config::new(SourceSpec::Kubernetes, Target::Host);
    config.node_name = Some("node-0".into());
    config.drift_interval = None;
    let mut source = MemorySource::new(Items::new(Default::default()));
    source.node_addresses = Some(node_addresses);
    Agent::new(config, source, FakeNft::default())
}

/// This process's resident memory now and at its peak (VmRSS, VmHWM), MiB.
fn memory_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The child of [`agent_memory`]: reads the node's addresses (first line, JSON) and the
/// items (`key TAB text` per line) one line at a time, reconciles, takes every policy
/// event of the file's last policy (edited away, restored), then reports its memory.
fn memory_child(path: &std::path::Path, out: &mut dyn Write) -> Result<u8, Failure> {
    use std::io::BufRead;
    let mut lines =
        std::io::BufReader::new(std::fs::File::open(path).context("items file")?).lines();
    let first = lines
        .next()
        .context("an empty items file")?
        .context("reading")?;
    let addresses: HashSet<IpAddr> = serde_json::from_str(&first).context("node addresses")?;
    let mut agent = node_agent(addresses);
    let mut policy = None;
    for line in lines {
        let line = line.context("reading")?;
        let (key, text) = line.split_once('\t').context("a line without a tab")?;
        if key.starts_with("NetworkPolicy/") {
            policy = Some((key.to_string(), text.to_string()));
        }
        agent.source().set(key, text);
    }
    reconcile(&mut agent)?;
    if let Some((key, text)) = policy {
        let mut edited: Value = serde_json::from_str(&text).context("a policy")?;
        edited["spec"]["podSelector"]["matchLabels"]["bench"] = "x".into();
        agent.source().set(&key, edited.to_string());
        reconcile(&mut agent)?;
        agent.source().set(&key, text);
        reconcile(&mut agent)?;
    }
    // Let the allocator give back what it will.
    std::thread::sleep(Duration::from_millis(500));
    let (rss, peak) = memory_mib();
    writeln!(out, "{rss:.1} {peak:.1}")?;
    Ok(0)
}

/// The agent's memory in a process of its own, fed the same items from a file: the
/// resident set after the cold reconcile and a policy event, and the peak.
fn agent_memory(
    texts: &[(String, String)],
    node_addresses: &HashSet<IpAddr>,
) -> Result<(f64, f64), Failure> {
    let path = std::env::temp_dir().join(format!(
        "weir-bench-agent-{}-{}.items",
        std::process::id(),
        texts.len()
    ));
    let _removed = Removed(path.clone());
    {
        // create_new: never through a file (or link) someone else put there.
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .with_context(|| format!("creating {}", path.display()))?;
        let mut f = std::io::BufWriter::new(file);
        writeln!(
            f,
            "{}",
            serde_json::to_string(node_addresses).context("addresses")?
        )?;
        for (k, t) in texts {
            writeln!(f, "{k}\t{t}")?;
        }
        f.flush()?;
    }
    let exe = std::env::current_exe().context("this program's path")?;
    let child = std::process::Command::new(exe)
        .args(["bench", "agent", "--memory-of"])
        .arg(&path)
        .output()
        .context("running the agent's memory measurement")?;
    let text = String::from_utf8_lossy(&child.stdout);
    let numbers: Vec<f64> = text
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    match numbers.as_slice() {
        [rss, peak] if child.status.success() => Ok((*rss, *peak)),
        _ => Err(anyhow::anyhow!(
            "the memory measurement failed: {}",
            String::from_utf8_lossy(&child.stderr)
        )
        .into()),
    }
}

/// Removes a file or directory tree the bench made, however it ends.
struct Removed(std::path::PathBuf);

impl Drop for Removed {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0).or_else(|_| std::fs::remove_file(&self.0));
    }
}

/// The agent over the directory source: one file per object in a fresh directory, every
/// pod local (a directory has no notion of nodes); `events` times a pod's file written
/// (a replica of `pod`, joining a group of policies it has) and deleted. Returns the cold
/// reconcile and the events' stages.
fn directory_events(
    texts: &[(String, String)],
    pod: &Value,
    events: u64,
) -> Result<(Stages, Vec<Stages>, Vec<Stages>), Failure> {
    let root = std::env::temp_dir().join(format!("weir-bench-agent-{}", std::process::id()));
    // create_dir: never into a directory someone else put there.
    std::fs::create_dir(&root).with_context(|| format!("creating {}", root.display()))?;
    let _removed = Removed(root.clone());
    for (i, (_, text)) in texts.iter().enumerate() {
        std::fs::write(root.join(format!("{i}.json")), text)?;
    }
    // As a directory's files usually are: older than the second after which the source
    // trusts a file's stamp instead of reading it again.
    std::thread::sleep(Duration::from_millis(1100));
    let mut config = Config::new(SourceSpec::Dir(root.clone()), Target::Host);
    config.drift_interval = None;
    let source = weir_agent::source::DirSource::new(root.clone(), Items::new(Default::default()));
    let mut agent = Agent::new(config, source, FakeNft::default());
    let cold = reconcile(&mut agent)?;
    let (mut added, mut deleted) = (Vec::new(), Vec::new());
    for k in 0..events {
        let (_, _, text) = variant(pod, "bench-dir", k, 67);
        let file = root.join(format!("bench-dir-{k}.json"));
        std::fs::write(&file, text)?;
        added.push(reconcile(&mut agent)?);
        std::fs::remove_file(&file)?;
        deleted.push(reconcile(&mut agent)?);
    }
    Ok((cold, added, deleted))
}

/// One line: the median's stages and the p99 of `v`.
fn summary(label: &str, mut v: Vec<Stages>) -> String {
    v.sort_by_key(total);
    let median = v[v.len() / 2];
    let p99 = v[((v.len() - 1) as f64 * 0.99).round() as usize];
    let incremental = v.iter().filter(|s| s.incremental).count();
    format!(
        "  {label}: median {} (read {}, model {}, compile {}, apply {}), p99 {}; {incremental}/{} incremental",
        ms(total(&median)),
        ms(median.read),
        ms(median.model),
        ms(median.compile),
        ms(median.apply),
        ms(total(&p99)),
        v.len()
    )
}

pub(crate) fn run(args: AgentBench, out: &mut dyn Write) -> Result<u8, Failure> {
    if let Some(path) = &args.memory_of {
        return memory_child(path, out);
    }
    writeln!(out, "machine: {}", machine())?;
    let base = rss_mib();
    for &pods in &args.pods {
        // The generated objects as texts, and what the events need; the objects themselves
        // are dropped (and their memory given back) before the agent gets anything.
        let (texts, node_addresses, pod, local_pod, (policy_key, policy), (ns_key, namespace)) = {
            let items = items(pods)?;
            let on = |node: &'static str| {
                items
                    .iter()
                    .filter(move |(k, o)| k.starts_with("Pod/") && o["spec"]["nodeName"] == node)
            };
            let node_addresses: HashSet<IpAddr> = on("node-0")
                .filter_map(|(_, o)| o["status"]["podIP"].as_str()?.parse().ok())
                .collect();
            // A pod of node-0: another replica of it scheduled onto node-0 joins the group
            // of policies this pod already has here. A pod of node-1 for pods elsewhere.
            let local_pod = on("node-0").next().context("a pod on node-0")?.1.clone();
            let pod = on("node-1").next().context("a pod on node-1")?.1.clone();
            let policy = items
                .iter()
                .find(|(k, _)| k.starts_with("NetworkPolicy/"))
                .cloned()
                .context("a policy")?;
            // The namespace of node-1's pod: relabelled, its pods move between sets.
            let namespace = items
                .iter()
                .find(|(k, o)| {
                    k.starts_with("Namespace/")
                        && o["metadata"]["name"] == pod["metadata"]["namespace"]
                })
                .cloned()
                .context("a namespace")?;
            let texts: Vec<(String, String)> = items
                .iter()
                .map(|(k, o)| (k.clone(), o.to_string()))
                .collect();
            (texts, node_addresses, pod, local_pod, policy, namespace)
        };
        let (own_rss, own_peak) = agent_memory(&texts, &node_addresses)?;
        let (dir_cold, dir_added, dir_deleted) = directory_events(&texts, &local_pod, args.events)?;
        let before = rss_mib();
        let text_mib =
            texts.iter().map(|(k, t)| k.len() + t.len()).sum::<usize>() as f64 / 1048576.0;
        let mut agent = node_agent(node_addresses);
        for (k, t) in texts {
            agent.source().set(k, t);
        }
        let cold = reconcile(&mut agent)?;
        // The process's resident set: an upper bound of what the agent holds, since the
        // allocator (mimalloc) keeps pages from generating the cluster.
        let rss = rss_mib();
        let size = agent
            .enforcer()
            .current()
            .map(|r| r.size())
            .unwrap_or_default();
        writeln!(out, "{pods} pods / {} policies, node-0's share: cold reconcile {} ({} sets, {} elements, {} rules); item texts {text_mib:.0} MiB; process RSS {rss:.0} MiB ({before:.0} MiB before the agent got the cluster, {base:.0} MiB at start; an upper bound: the allocator keeps what generating the cluster used)",
            (pods / 5).max(1), ms(total(&cold)), size.sets, size.elements, size.rules)?;
        writeln!(out, "  the agent alone in its own process, fed the items from a file: resident {own_rss:.0} MiB after the cold reconcile and a policy edit, peak {own_peak:.0} MiB")?;

        // A pod of an existing Deployment on another node, added then deleted; a policy
        // edited (its podSelector narrowed to nothing: its chains and the sets only it used
        // go) and restored (they are made again, its selectors evaluated over the cluster).
        let policy_text = policy.to_string();
        let mut times: Vec<(&str, Vec<Stages>)> = vec![
            ("pod added (another node)", vec![]),
            ("pod deleted (another node)", vec![]),
            ("pod added (this node, a group it has)", vec![]),
            ("pod deleted (this node)", vec![]),
            ("policy edited", vec![]),
            ("policy restored (its sets made anew)", vec![]),
            ("namespace relabelled (its pods move)", vec![]),
        ];
        let namespace_text = namespace.to_string();
        for k in 0..args.events {
            let (key, _, extra) = variant(&pod, "bench-extra", k, 64);
            agent.source().set(&key, &extra);
            times[0].1.push(reconcile(&mut agent)?);
            agent.source().remove(&key);
            times[1].1.push(reconcile(&mut agent)?);
            // A replica scheduled onto node-0, then deleted.
            let (key, ip, extra) = variant(&local_pod, "bench-local", k, 65);
            agent.source().set(&key, &extra);
            agent
                .source()
                .node_addresses
                .as_mut()
                .expect("set above")
                .insert(ip);
            times[2].1.push(reconcile(&mut agent)?);
            agent.source().remove(&key);
            agent
                .source()
                .node_addresses
                .as_mut()
                .expect("set above")
                .remove(&ip);
            times[3].1.push(reconcile(&mut agent)?);
            // An edit that changes the ruleset: the policy now selects only pods labelled
            // bench=x (none), and back.
            let mut edited = policy.clone();
            edited["spec"]["podSelector"]["matchLabels"]["bench"] = "x".into();
            let edited = edited.to_string();
            agent.source().set(&policy_key, &edited);
            times[4].1.push(reconcile(&mut agent)?);
            agent.source().set(&policy_key, &policy_text);
            times[5].1.push(reconcile(&mut agent)?);
            // A namespace's labels changed, and back.
            let mut relabelled = namespace.clone();
            relabelled["metadata"]["labels"]["bench"] = format!("x{k}").into();
            agent.source().set(&ns_key, relabelled.to_string());
            times[6].1.push(reconcile(&mut agent)?);
            agent.source().set(&ns_key, &namespace_text);
            reconcile(&mut agent)?;
        }
        // Churn: pods on other nodes added and deleted back to back; process CPU per event.
        let churn = 200u64;
        let cpu0 = cpu_seconds();
        let t0 = std::time::Instant::now();
        for k in 0..churn {
            let (key, _, extra) = variant(&pod, "churn", k, 66);
            agent.source().set(&key, &extra);
            reconcile(&mut agent)?;
            agent.source().remove(&key);
            reconcile(&mut agent)?;
        }
        let per_event = (cpu_seconds() - cpu0) / (2 * churn) as f64;
        writeln!(
            out,
            "  churn: {} events in {}, CPU {:.2} ms per event: at 100 events/s {:.3} of a core",
            2 * churn,
            ms(t0.elapsed()),
            per_event * 1e3,
            per_event * 100.0
        )?;
        for (label, v) in times {
            writeln!(out, "{}", summary(label, v))?;
        }
        writeln!(
            out,
            "  directory source, one file per object, every pod local: cold reconcile {}",
            ms(total(&dir_cold))
        )?;
        writeln!(
            out,
            "{}",
            summary("pod file written (directory)", dir_added)
        )?;
        writeln!(
            out,
            "{}",
            summary("pod file deleted (directory)", dir_deleted)
        )?;
    }
    Ok(0)
}
