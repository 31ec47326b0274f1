//! `weir bench`: end-to-end figures on generated clusters. Benchmarks, not tests:
//! they report numbers (with the machine noted), they assert nothing.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use clap::{Args, Subcommand};
use weir_engine::{Engine, Side};
use weir_gen::dump::{write_dump, DumpSpec};
use weir_model::Protocol;

use crate::exit::Failure;

#[derive(Args, Clone)]
pub struct SpecArgs {
    #[arg(long, default_value_t = 10_000)]
    pods: usize,
    #[arg(long, default_value_t = 100)]
    namespaces: usize,
    #[arg(long, default_value_t = 2_000)]
    policies: usize,
    /// Pods per Deployment.
    #[arg(long, default_value_t = 5)]
    replicas: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

impl SpecArgs {
    fn spec(&self) -> DumpSpec {
        DumpSpec {
            pods: self.pods,
            namespaces: self.namespaces,
            policies: self.policies,
            replicas: self.replicas,
            seed: self.seed,
        }
    }
}

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Writes a kubectl-shaped dump (a JSON List) to stdout.
    Generate {
        #[command(flatten)]
        spec: SpecArgs,
    },
    /// `weir analyze DUMP -o json` end to end (a child process: wall time, peak RSS), plus an in-process breakdown and explain latency.
    Analyze {
        #[command(flatten)]
        spec: SpecArgs,
        /// End-to-end runs; the median and the best are reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Explain queries timed on the loaded model.
        #[arg(long, default_value_t = 2_000)]
        queries: usize,
    },
    /// The dataplane in a lab (root): cold program time, change → enforced latency,
    /// first-packet latency against policy count, iperf3 throughput.
    Enforce(crate::bench_enforce::EnforceBench),
    /// The agent's reconcile per event (pod added, deleted, policy edited) at growing
    /// cluster sizes, by stage; a fake kernel, no root.
    Agent(crate::bench_agent::AgentBench),
}

pub(crate) fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores, {cpu}")
}

pub(crate) fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

pub(crate) fn run(cmd: BenchCommand, out: &mut dyn Write) -> Result<u8, Failure> {
    match cmd {
        BenchCommand::Generate { spec } => {
            write_dump(spec.spec(), out).context("writing the dump")?;
            Ok(0)
        }
        BenchCommand::Enforce(args) => crate::bench_enforce::run(args, out),
        BenchCommand::Agent(args) => crate::bench_agent::run(args, out),
        BenchCommand::Analyze {
            spec,
            runs,
            queries,
        } => {
            analyze(spec.spec(), runs.max(1), queries, out)?;
            Ok(0)
        }
    }
}

fn analyze(
    spec: DumpSpec,
    runs: usize,
    queries: usize,
    out: &mut dyn Write,
) -> Result<(), Failure> {
    let dir = std::env::temp_dir().join(format!("weir-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).context("creating a temp dir")?;
    let dump: PathBuf = dir.join("dump.json");
    let result = (|| -> Result<(), Failure> {
        let mut file =
            std::io::BufWriter::new(std::fs::File::create(&dump).context("creating the dump")?);
        let items = write_dump(spec, &mut file).context("writing the dump")?;
        file.flush().context("writing the dump")?;
        drop(file);
        let size = std::fs::metadata(&dump).map(|m| m.len()).unwrap_or(0);
        writeln!(out, "machine: {}", machine())?;
        writeln!(
            out,
            "input: {} pods in {} Deployments, {} namespaces, {} policies — {items} objects, {:.1} MiB of JSON",
            spec.pods,
            spec.pods.div_ceil(spec.replicas.max(1)),
            spec.namespaces,
            spec.policies,
            size as f64 / 1048576.0
        )?;

        // End to end, as a user runs it: a fresh process reading the dump.
        let exe = std::env::current_exe().context("locating weir")?;
        let mut walls = Vec::new();
        for _ in 0..runs {
            let start = Instant::now();
            let status = Command::new(&exe)
                .args(["analyze", "-q", "-o", "json"])
                .arg(&dump)
                .stdout(Stdio::null())
                .status()
                .context("running weir analyze")?;
            walls.push(start.elapsed());
            if !status.success() {
                return Err(Failure::Other(anyhow!("weir analyze failed: {status}")));
            }
        }
        walls.sort();
        writeln!(
            out,
            "end to end `weir analyze DUMP -o json`: median {}, best {} over {runs} runs; peak RSS {:.0} MiB",
            ms(walls[walls.len() / 2]),
            ms(walls[0]),
            weir_netns::process::children_peak_rss() as f64 / 1048576.0
        )?;

        // In process: where the time goes.
        let t = Instant::now();
        let loaded =
            weir_manifest::load_paths(&[&dump], Default::default()).map_err(|e| anyhow!("{e}"))?;
        let t_load = t.elapsed();
        let t = Instant::now();
        let engine = Engine::new(&loaded.cluster);
        let t_engine = t.elapsed();
        let t = Instant::now();
        let flows = engine.flows();
        let t_flows = t.elapsed();
        let t = Instant::now();
        weir_report::render_analyze(
            &engine,
            &flows,
            weir_report::AnalyzeFormat::Json,
            &weir_report::Focus::default(),
            &mut std::io::sink(),
        )?;
        let t_render = t.elapsed();
        let s = engine.stats();
        writeln!(
            out,
            "breakdown: read+decode+validate {}, compile {}, flows {}, render json {}",
            ms(t_load),
            ms(t_engine),
            ms(t_flows),
            ms(t_render)
        )?;
        writeln!(
            out,
            "model: {} endpoints in {} classes ({} outside-address classes), {} rules, {} rows holding {} rules, {} class flows",
            s.endpoints,
            s.endpoint_classes,
            s.external_classes,
            s.rules,
            s.rows,
            s.row_rules,
            flows.list.len()
        )?;

        // Explain latency: pseudo-random pairs, one query at a time.
        let n = loaded.cluster.endpoints.len();
        if n > 1 && queries > 0 {
            let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
            let mut pick = || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % n as u64) as usize
            };
            let pairs: Vec<(usize, usize)> = (0..queries).map(|_| (pick(), pick())).collect();
            let mut allowed = 0usize;
            let t = Instant::now();
            for &(a, b) in &pairs {
                allowed += engine
                    .explain(Side::Endpoint(a), Side::Endpoint(b), Protocol::Tcp, 8080)
                    .allowed as usize;
            }
            let per = t.elapsed() / queries as u32;
            let t = Instant::now();
            for &(a, b) in &pairs {
                allowed += engine
                    .allowed(Side::Endpoint(a), Side::Endpoint(b))
                    .contains(Protocol::Tcp, 8080) as usize;
            }
            let per_verdict = t.elapsed() / queries as u32;
            writeln!(
                out,
                "explain: {:.1} µs per query; class verdict: {:.2} µs per query ({queries} queries, {allowed} allowed)",
                per.as_secs_f64() * 1e6,
                per_verdict.as_secs_f64() * 1e6
            )?;
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}
