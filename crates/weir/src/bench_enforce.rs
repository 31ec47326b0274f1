//! `weir bench enforce`: the dataplane's figures, in a lab (needs root). Cold program time
//! at two sizes, change → enforced latency observed by a probe flipping, established-flow
//! throughput (iperf3) and first-packet (TCP connect) latency against policy count.

use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use clap::Args;
use weir_engine::Engine;
use weir_gen::dump::{write_dump, DumpSpec};
use weir_lab::{Lab, LabOptions, Session};
use weir_model::{Cluster, Protocol};
use weir_netns::netns::command_in;
use weir_nft::apply::{Enforcer, Kernel, NftCli, NftLib};
use weir_nft::{compile, Incremental, Scope};

use crate::bench::{machine, ms};
use crate::exit::Failure;

#[derive(Args, Clone)]
pub struct EnforceBench {
    /// Cold-program sizes as PODS:POLICIES.
    #[arg(long, default_value = "1000:500,10000:5000")]
    sizes: String,
    /// Policy changes timed at 1,000 pods / 500 policies (at least 1).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..))]
    changes: u64,
    /// Policy counts for the first-packet latency series.
    #[arg(long, default_value = "10,100,1000,5000")]
    latency_policies: String,
    /// TCP connects per point of the latency series.
    #[arg(long, default_value_t = 300)]
    connects: usize,
    /// Seconds per iperf3 run.
    #[arg(long, default_value_t = 3)]
    iperf_seconds: u32,
    /// Which measurements: any of cold, change, latency, throughput.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "cold,change,latency,throughput"
    )]
    only: Vec<Section>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Section {
    Cold,
    Change,
    Latency,
    Throughput,
}

const BENCH_PODS: &str = "
apiVersion: v1
kind: Namespace
metadata: {name: bench}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: bench, labels: {app: client}}
spec: {containers: [{name: c, image: x}]}
---
apiVersion: v1
kind: Pod
metadata: {name: server, namespace: bench, labels: {app: server}}
spec: {containers: [{name: s, image: x, ports: [{containerPort: 80, name: http}]}]}
";

const DENY_SERVER: &str = "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-server, namespace: bench}
spec: {podSelector: {matchLabels: {app: server}}, policyTypes: [Ingress]}
";

const ALLOW_CLIENT: &str = "
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-client, namespace: bench}
spec:
  podSelector: {matchLabels: {app: server}}
  ingress: [{from: [{podSelector: {matchLabels: {app: client}}}]}]
";

fn synthetic(pods: usize, policies: usize) -> Result<Cluster, Failure> {
    let mut json = Vec::new();
    let spec = DumpSpec {
        pods,
        namespaces: (pods / 50).max(2),
        policies,
        replicas: 5,
        seed: 1,
    };
    write_dump(spec, &mut json).context("generating")?;
    let text = String::from_utf8(json).context("utf-8")?;
    Ok(
        weir_manifest::load_str("synthetic.json", &text, Default::default())
            .map_err(|e| anyhow!("{e}"))?
            .cluster,
    )
}

/// The synthetic cluster plus the lab's two bench pods and the given bench policies.
fn with_bench(mut cluster: Cluster, lab: &Lab, policies: &[&str]) -> Result<Cluster, Failure> {
    let text = std::iter::once(BENCH_PODS)
        .chain(policies.iter().copied())
        .collect::<Vec<_>>()
        .join("---\n");
    let bench = weir_manifest::load_str("bench.yaml", &text, Default::default())
        .map_err(|e| anyhow!("{e}"))?;
    let bench = Lab::deploy(&bench.cluster, &lab.state);
    cluster.namespaces.extend(bench.namespaces);
    cluster.endpoints.extend(bench.endpoints);
    cluster.policies.extend(bench.policies);
    Ok(cluster)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

pub(crate) fn run(args: EnforceBench, out: &mut dyn Write) -> Result<u8, Failure> {
    let name = format!("bn{}", std::process::id() % 1_000_000);
    let bench = weir_manifest::load_str("bench.yaml", BENCH_PODS, Default::default())
        .map_err(|e| anyhow!("{e}"))?;
    let options = LabOptions {
        name: name.clone(),
        nodes: 1,
        listen: vec![weir_model::PortKey::new(Protocol::Tcp, 80)],
        exe: std::env::current_exe().context("locating weir")?,
        no_listen: vec![],
    };
    let lab = Session::up(&bench.cluster, &options).map_err(|e| anyhow!(e))?;
    let result = measure(&args, &lab, out);
    lab.down().map_err(|e| anyhow!(e))?;
    result.map(|_| 0)
}

fn measure(args: &EnforceBench, lab: &Lab, out: &mut dyn Write) -> Result<(), Failure> {
    let node = lab.state.nodes[0].netns.clone();
    let pod = |id: &str| {
        lab.state
            .pods
            .iter()
            .find(|p| p.id == id)
            .expect("bench pod")
    };
    let (client, server) = (pod("bench/client"), pod("bench/server"));
    let server_ip = server.ips[0];
    let client_ns = client.netns.clone();
    writeln!(out, "machine: {}", machine())?;

    // 1. Cold program, whole cluster local (worst case) and one node's share (1/50).
    let sizes = if args.only.contains(&Section::Cold) {
        args.sizes.as_str()
    } else {
        ""
    };
    for size in sizes.split(',').filter(|s| !s.is_empty()) {
        let (pods, policies) = size
            .split_once(':')
            .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)))
            .ok_or_else(|| Failure::Invalid(format!("--sizes: {size:?} is not PODS:POLICIES")))?;
        let cluster = with_bench(
            synthetic(pods, policies)?,
            lab,
            &[DENY_SERVER, ALLOW_CLIENT],
        )?;
        let engine = Engine::new(&cluster);
        let share: Vec<usize> = (0..cluster.endpoints.len()).step_by(50).collect();
        for (label, scope) in [
            ("all endpoints local", Scope::All),
            ("1/50 of endpoints local", Scope::Endpoints(&share)),
        ] {
            let t = Instant::now();
            let ruleset = compile(&engine, scope);
            let t_compile = t.elapsed();
            let t = Instant::now();
            let script = ruleset.render();
            let t_render = t.elapsed();
            let nft = NftCli {
                netns: Some(node.clone()),
            };
            let t = Instant::now();
            weir_nft::apply::Nft::run(&nft, &script, true).map_err(|e| anyhow!(e))?;
            let t_check = t.elapsed();
            let t = Instant::now();
            weir_nft::apply::Nft::run(&nft, &script, false).map_err(|e| anyhow!(e))?;
            let t_apply = t.elapsed();
            let s = ruleset.size();
            writeln!(out, "cold {pods} pods / {policies} policies, {label}: compile {}, render {}, nft -f {} (total {}; the enforcer's nft -c check adds {}); {} sets, {} elements, {} chains, {} rules, {:.1} MiB script",
                ms(t_compile), ms(t_render), ms(t_apply), ms(t_compile + t_render + t_apply), ms(t_check),
                s.sets, s.elements, s.chains, s.rules, script.len() as f64 / 1048576.0)?;
        }
    }

    if args.only.contains(&Section::Change) {
        // 2. Change → enforced at 1k pods / 500 policies: toggle allow-client, time until a
        //    probe from the client sees the new verdict.
        let base = synthetic(1000, 500)?;
        let variants = [
            with_bench(base.clone(), lab, &[DENY_SERVER])?,
            with_bench(base.clone(), lab, &[DENY_SERVER, ALLOW_CLIENT])?,
        ];
        let changes = args.changes;
        let node_for_thread = node.clone();
        // Blocks of changes through libnftables and through the nft command, alternated (this
        // box is noisy); each block starts with a full program of its own.
        let blocks = weir_netns::netns::run_in(&client_ns, move || {
            let mut blocks = Vec::new();
            for round in 0..4 {
                let kernel = if round % 2 == 0 {
                    Kernel::Lib(
                        NftLib::new(Some(node_for_thread.clone()))
                            .map_err(std::io::Error::other)?,
                    )
                } else {
                    Kernel::Cli(NftCli {
                        netns: Some(node_for_thread.clone()),
                    })
                };
                blocks.push((
                    kernel.name(),
                    change_block(kernel, &variants, changes, server_ip)?,
                ));
            }
            Ok(blocks)
        })
        .context("change latency")?;
        for via in ["libnftables", "nft"] {
            let mut sums = ChangeTimes::default();
            for (_, b) in blocks.iter().filter(|(name, _)| *name == via) {
                sums.to_allow.extend(&b.to_allow);
                sums.to_deny.extend(&b.to_deny);
                sums.compile.extend(&b.compile);
                sums.apply.extend(&b.apply);
            }
            for (label, mut v) in [
                ("deny → allow", sums.to_allow),
                ("allow → deny", sums.to_deny),
                ("incremental compile", sums.compile),
                ("delta apply", sums.apply),
            ] {
                v.sort();
                writeln!(
                    out,
                    "change at 1000 pods / 500 policies via {via}, {label}: p50 {}, p99 {}, max {} ({} changes)",
                    ms(percentile(&v, 0.5)),
                    ms(percentile(&v, 0.99)),
                    ms(*v.last().unwrap()),
                    v.len()
                )?;
            }
        }
    }

    // 3. First-packet latency (TCP connect) against policy count, and no weir table.
    let counts: Vec<usize> = args
        .latency_policies
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let nft = NftCli {
        netns: Some(node.clone()),
    };
    let table_for = |policies: Option<usize>| -> Result<(), Failure> {
        match policies {
            None => {
                weir_nft::apply::Nft::run(&nft, "table inet weir\ndelete table inet weir\n", false)
                    .map_err(|e| anyhow!(e))?
            }
            Some(n) => {
                let cluster = with_bench(synthetic(1000, n)?, lab, &[DENY_SERVER, ALLOW_CLIENT])?;
                let script = compile(&Engine::new(&cluster), Scope::All).render();
                weir_nft::apply::Nft::run(&nft, &script, false).map_err(|e| anyhow!(e))?;
            }
        }
        Ok(())
    };
    if args.only.contains(&Section::Latency) {
        for point in std::iter::once(None).chain(counts.iter().map(|&n| Some(n))) {
            table_for(point)?;
            let connects = args.connects;
            let mut v = weir_netns::netns::run_in(&client_ns, move || {
                let mut v = Vec::with_capacity(connects);
                for _ in 0..connects {
                    let t = Instant::now();
                    let s = TcpStream::connect_timeout(
                        &SocketAddr::new(server_ip, 80),
                        Duration::from_secs(1),
                    )?;
                    v.push(t.elapsed());
                    drop(s);
                }
                Ok(v)
            })
            .context("connect latency")?;
            v.sort();
            let label = point.map_or("no weir table".to_string(), |n| {
                format!("{n} policies (1000 pods)")
            });
            writeln!(
                out,
                "first packet (TCP connect), {label}: median {:.0} µs, p99 {:.0} µs",
                percentile(&v, 0.5).as_secs_f64() * 1e6,
                percentile(&v, 0.99).as_secs_f64() * 1e6
            )?;
        }
    }

    // 4. Established-flow throughput: iperf3 with 1,000 policies vs no weir table.
    if args.only.contains(&Section::Throughput) {
        let mut rates = Vec::new();
        for point in [None, Some(1000), None, Some(1000)] {
            table_for(point)?;
            rates.push((
                point,
                iperf(&server.netns, &client.netns, server_ip, args.iperf_seconds)?,
            ));
        }
        let avg = |with: bool| {
            let v: Vec<f64> = rates
                .iter()
                .filter(|(p, _)| p.is_some() == with)
                .map(|(_, r)| *r)
                .collect();
            v.iter().sum::<f64>() / v.len() as f64
        };
        let (base, with) = (avg(false), avg(true));
        writeln!(out, "iperf3 client → server, {} s × 2 each: no weir table {:.2} Gbit/s, 1000 policies {:.2} Gbit/s ({:.1} % of baseline)",
            args.iperf_seconds, base / 1e9, with / 1e9, with / base * 100.0)?;
    }
    Ok(())
}

#[derive(Default)]
struct ChangeTimes {
    to_allow: Vec<Duration>,
    to_deny: Vec<Duration>,
    compile: Vec<Duration>,
    apply: Vec<Duration>,
}

/// `changes` round trips deny → allow → deny through `kernel`, each timed until a probe
/// from the calling thread's namespace (the client pod) sees the new verdict. Each change
/// is the allowing policy added or deleted, taken as the agent takes it: the policy's
/// namespace recompiled ([`Incremental::policy`]) and the delta applied.
fn change_block(
    kernel: Kernel,
    variants: &[Cluster; 2],
    changes: u64,
    server_ip: IpAddr,
) -> std::io::Result<ChangeTimes> {
    let allowing = variants[1]
        .policies
        .iter()
        .find(|p| !variants[0].policies.iter().any(|q| q.id() == p.id()))
        .cloned()
        .ok_or_else(|| std::io::Error::other("no allowing policy"))?;
    let id = allowing.id();
    let mut inc = Incremental::new(
        variants[0].clone(),
        Default::default(),
        None,
        Default::default(),
    );
    let mut enforcer = Enforcer::new(kernel);
    enforcer
        .apply(inc.ruleset().clone())
        .map_err(std::io::Error::other)?;
    let mut times = ChangeTimes::default();
    for k in 0..changes as usize * 2 {
        let allow = k % 2 == 0;
        let t0 = Instant::now();
        let delta = inc
            .policy(&id, allow.then(|| allowing.clone()))
            .map_err(std::io::Error::other)?;
        let t1 = Instant::now();
        enforcer
            .apply_deltas(&[delta])
            .map_err(std::io::Error::other)?;
        times.compile.push(t1 - t0);
        times.apply.push(t1.elapsed());
        // Bounded: at most 2 s of attempts, each connect at most 20 ms.
        let deadline = t0 + Duration::from_secs(2);
        loop {
            let attempt = Instant::now();
            let ok = TcpStream::connect_timeout(
                &SocketAddr::new(server_ip, 80),
                Duration::from_millis(20),
            )
            .is_ok();
            if ok == allow {
                // Allowed: seen when the connect succeeded. Denied: the dropped attempt
                // started at `attempt`, so enforcement happened before then.
                if allow {
                    times.to_allow.push(attempt.elapsed() + (attempt - t0));
                } else {
                    times.to_deny.push(attempt - t0);
                }
                break;
            }
            if Instant::now() > deadline {
                return Err(std::io::Error::other("verdict did not flip within 2 s"));
            }
        }
    }
    Ok(times)
}

/// Bits per second received, one iperf3 run between two lab pods.
fn iperf(
    server_ns: &str,
    client_ns: &str,
    server_ip: IpAddr,
    seconds: u32,
) -> Result<f64, Failure> {
    let mut server = command_in(Some(server_ns), "iperf3")
        .args(["-s", "-1", "-p", "5201"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting iperf3 -s (is iperf3 installed?)")?;
    std::thread::sleep(Duration::from_millis(300));
    let output = command_in(Some(client_ns), "iperf3")
        .args(["-J", "-p", "5201", "-t"])
        .arg(seconds.to_string())
        .args(["-c", &server_ip.to_string()])
        .output()
        .context("running iperf3 -c")?;
    let _ = server.kill();
    let _ = server.wait();
    let json: serde_json::Value =
        serde_json::from_slice(&output.stdout).context("iperf3 -J output")?;
    json["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .ok_or_else(|| {
            Failure::Other(anyhow!(
                "iperf3 gave no result: {}",
                String::from_utf8_lossy(&output.stdout)
            ))
        })
}
