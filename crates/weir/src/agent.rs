//! `weir agent`: argument parsing and logging set-up for the node agent.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use clap::Args;
use weir_agent::{Config, SourceSpec, Target};

use crate::exit::{self, Failure};

#[derive(Args)]
pub struct AgentArgs {
    /// `dir:PATH` — a directory of manifests, watched with inotify; `kubernetes` — the API
    /// server of the kubeconfig (KUBECONFIG, ~/.kube/config) or the in-cluster account.
    #[arg(long)]
    source: String,
    /// Program this network namespace instead of the node the agent runs on.
    #[arg(long)]
    netns: Option<String>,
    /// Program node NODE of this lab (its pods are the local ones; addresses come from the lab).
    #[cfg(feature = "lab")]
    #[arg(long, requires = "node", conflicts_with = "netns")]
    pub lab: Option<String>,
    /// The lab node index, with --lab.
    #[cfg(feature = "lab")]
    #[arg(long)]
    pub node: Option<usize>,
    /// Serve /metrics, /healthz, /readyz and /revision here (loopback by default: scraping from
    /// elsewhere is an explicit choice of address).
    #[arg(long, default_value = "127.0.0.1:9595")]
    listen: SocketAddr,
    /// Also serve /drops (who was dropped talking to whom): off by default.
    #[arg(long)]
    serve_drops: bool,
    /// Host-side interfaces of local pods, comma-separated patterns (`wp*` in a lab;
    /// `veth*` with the ptp or bridge CNI, `cali*`, `lxc*`): anti-spoofing and the
    /// fail-closed catch-all apply to them; `none` disables both.
    #[arg(long, default_value = "wp*")]
    pod_interfaces: String,
    /// Persist the last good version of every source item here (owner-only files), so a
    /// restart with an invalid item keeps enforcing it. Without it, an item invalid at
    /// start blocks programming (the kernel keeps its table) until it is fixed.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Seconds between read-backs of the table to detect and repair drift (0: never).
    #[arg(long, default_value_t = 10.0)]
    drift_interval_s: f64,
    /// Quiet time after a change before re-reading the source (default: 20 for a
    /// directory, whose files are written in steps; 0 for Kubernetes, whose events are whole
    /// objects).
    #[arg(long)]
    debounce_ms: Option<u64>,
    /// Log as JSON lines.
    #[arg(long)]
    log_json: bool,
    /// Cut established connections a policy change now denies (flush conntrack after each
    /// change), instead of keeping them (the default, like Calico).
    #[arg(long)]
    cut_established: bool,
    /// With --source kubernetes: this node's name (the DaemonSet passes spec.nodeName);
    /// only pods scheduled here are dispatched. Default: every pod.
    #[arg(long, env = "NODE_NAME")]
    node_name: Option<String>,
    /// Audit every policy: nothing is dropped (but packets with a spoofed source); what
    /// policy would drop is counted (weir_audit_would_drop_total), logged and shown by
    /// `weir drops` as `would drop`, and accepted. Per policy: annotation weir.dev/mode: audit.
    #[arg(long)]
    audit: bool,
    /// NFLOG group for dropped packets (0 disables the drop log).
    #[arg(long, default_value_t = 7)]
    log_group: u16,
}

#[derive(Args)]
pub struct DropsArgs {
    /// The agent's listen address.
    #[arg(long, default_value = "127.0.0.1:9595")]
    agent: SocketAddr,
    /// Stop after this many drops.
    #[arg(long)]
    count: Option<usize>,
    /// Stop after this many seconds.
    #[arg(long)]
    timeout_s: Option<u64>,
}

/// `weir drops`: follows the agent's stream of dropped packets, one line each.
pub fn drops(args: DropsArgs, out: &mut dyn std::io::Write) -> Result<u8, Failure> {
    use std::io::{BufRead, BufReader, Write};
    let mut conn = std::net::TcpStream::connect_timeout(&args.agent, Duration::from_secs(2))
        .map_err(|e| anyhow!("connecting to the agent at {}: {e}", args.agent))?;
    if let Some(t) = args.timeout_s {
        conn.set_read_timeout(Some(Duration::from_secs(t)))
            .map_err(|e| anyhow!(e))?;
    }
    write!(conn, "GET /drops HTTP/1.1\r\nHost: weir\r\n\r\n").map_err(|e| anyhow!(e))?;
    let mut reader = BufReader::new(conn);
    let mut status = String::new();
    reader.read_line(&mut status).map_err(|e| anyhow!(e))?;
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(Failure::Other(anyhow!(
            "the agent at {} answered {:?} (is it running with --serve-drops?)",
            args.agent,
            status.trim_end()
        )));
    }
    let mut chunked = false;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).map_err(|e| anyhow!(e))? == 0 {
            return Ok(exit::OK);
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            chunked |= name.eq_ignore_ascii_case("transfer-encoding")
                && value.trim().eq_ignore_ascii_case("chunked");
        }
    }
    let mut seen = 0;
    let mut emit = |line: &[u8]| -> Result<bool, Failure> {
        writeln!(out, "{}", String::from_utf8_lossy(line)).map_err(|e| anyhow!(e))?;
        out.flush().map_err(|e| anyhow!(e))?;
        seen += 1;
        Ok(args.count.is_some_and(|c| seen >= c))
    };
    // The body's bytes (chunk framing taken off), split into lines as they complete.
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let data = if chunked {
            match read_chunk(&mut reader) {
                Some(d) if !d.is_empty() => d,
                _ => break,
            }
        } else {
            let mut line = Vec::new();
            match reader.read_until(b'\n', &mut line) {
                Ok(n) if n > 0 => line,
                _ => break,
            }
        };
        pending.extend_from_slice(&data);
        while let Some(at) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=at).collect();
            if emit(&line[..line.len() - 1])? {
                return Ok(exit::OK);
            }
        }
        if pending.len() > MAX_DROP_LINE {
            return Err(Failure::Other(anyhow!(
                "a line of more than {MAX_DROP_LINE} bytes from the agent"
            )));
        }
    }
    Ok(exit::OK)
}

/// Longest `/drops` line taken (the agent's are a few hundred bytes).
const MAX_DROP_LINE: usize = 64 * 1024;

/// One chunk of a chunked body: its data, empty for the last chunk, `None` on a malformed
/// or cut stream.
fn read_chunk(reader: &mut impl std::io::BufRead) -> Option<Vec<u8>> {
    let mut size = String::new();
    reader.read_line(&mut size).ok()?;
    let size = size.trim_end().split(';').next()?.trim();
    let n = usize::from_str_radix(size, 16).ok()?;
    if n > MAX_DROP_LINE {
        return None;
    }
    let mut data = vec![0; n + 2];
    reader.read_exact(&mut data).ok()?;
    (data[n..] == *b"\r\n").then(|| {
        data.truncate(n);
        data
    })
}

/// Runs the agent. `target` overrides where it programs (a lab node); else `--netns` or the
/// namespace it runs in.
pub fn agent(args: AgentArgs, target: Option<Target>) -> Result<u8, Failure> {
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false);
    if args.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
    let source = match args.source.split_once(':') {
        // A missing directory is a source error the agent waits out (not ready), not a
        // reason to refuse to start: the kernel keeps enforcing meanwhile.
        Some(("dir", path)) if !path.is_empty() => SourceSpec::Dir(PathBuf::from(path)),
        _ if args.source == "kubernetes" => SourceSpec::Kubernetes,
        _ => {
            return Err(Failure::Invalid(format!(
                "--source {:?}: expected dir:PATH or kubernetes",
                args.source
            )))
        }
    };
    let target = match (target, args.netns) {
        (Some(t), _) => t,
        (None, Some(ns)) => Target::Netns(ns),
        (None, None) => Target::Host,
    };
    let pod_interfaces = match args.pod_interfaces.as_str() {
        "none" => None,
        list => Some(list.parse().map_err(Failure::Invalid)?),
    };
    if !(args.drift_interval_s >= 0.0 && args.drift_interval_s <= 86_400.0) {
        return Err(Failure::Invalid(
            "--drift-interval-s: expected 0 to 86400 seconds".into(),
        ));
    }
    let mut config = Config::new(source, target);
    config.listen = Some(args.listen);
    config.pod_interfaces = pod_interfaces;
    if let Some(ms) = args.debounce_ms {
        config.debounce = Duration::from_millis(ms);
    }
    config.log_group = (args.log_group != 0).then_some(args.log_group);
    config.cut_established = args.cut_established;
    config.node_name = args.node_name;
    config.state_dir = args.state_dir;
    config.drift_interval =
        (args.drift_interval_s > 0.0).then(|| Duration::from_secs_f64(args.drift_interval_s));
    config.serve_drops = args.serve_drops;
    config.audit = args.audit;
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        let _ = ctrlc::set_handler(move || stop.store(true, std::sync::atomic::Ordering::Relaxed));
    }
    weir_agent::run(config, stop).map_err(|e| anyhow!(e))?;
    Ok(exit::OK)
}

#[derive(Args)]
pub struct RevisionArgs {
    /// The cluster's kubeconfig (default: $KUBECONFIG, ~/.kube/config, then the in-cluster
    /// service account).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// The kubeconfig context.
    #[arg(long)]
    context: Option<String>,
    /// An agent's listen address: is its /revision the cluster's? Repeatable.
    #[arg(long)]
    agent: Vec<SocketAddr>,
    /// Wait up to this many seconds for every agent to agree.
    #[arg(long, default_value_t = 0, requires = "agent")]
    wait_s: u64,
}

/// `weir revision`: the revision of the policy objects the API holds
/// ([`weir_kube::Snapshot::revision`]); with `--agent`, whether each of those agents enforces
/// exactly them (exit 3 when one does not, after `--wait-s`).
pub fn revision(args: RevisionArgs, out: &mut dyn std::io::Write) -> Result<u8, Failure> {
    let connect = weir_kube::Connect {
        kubeconfig: args.kubeconfig,
        context: args.context,
    };
    let snapshot = weir_kube::snapshot(&connect, &weir_kube::policies(), Duration::from_secs(60))
        .map_err(|e| anyhow!("{}: {e}", connect.describe()))?;
    let want = snapshot.revision();
    let deadline = std::time::Instant::now() + Duration::from_secs(args.wait_s);
    let answers = loop {
        let answers: Vec<Result<String, String>> =
            args.agent.iter().map(|a| agent_revision(*a)).collect();
        let agree = answers.iter().all(|r| r.as_deref() == Ok(want.as_str()));
        if agree || std::time::Instant::now() >= deadline {
            break answers;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut behind = false;
    writeln!(out, "{want}  {}", connect.describe()).map_err(|e| anyhow!(e))?;
    for (addr, answer) in args.agent.iter().zip(answers) {
        let line = match answer {
            Ok(r) if r == want => format!("{r}  {addr}: enforces the cluster's policy objects"),
            Ok(r) => {
                behind = true;
                format!("{r}  {addr}: does not enforce the cluster's policy objects (yet)")
            }
            Err(e) => {
                behind = true;
                format!("{:16}  {addr}: {e}", "-")
            }
        };
        writeln!(out, "{line}").map_err(|e| anyhow!(e))?;
    }
    Ok(if behind { exit::BEHIND } else { exit::OK })
}

/// An agent's `/revision`, or why not. Only 16 hex digits count as one: the answer is
/// printed. At most 4 KiB in at most 2 s: whatever listens there cannot hold the command.
fn agent_revision(addr: SocketAddr) -> Result<String, String> {
    use std::io::{Read, Write};
    let timeout = Duration::from_secs(2);
    let no_answer = |e: std::io::Error| format!("no answer: {e}");
    let mut conn = std::net::TcpStream::connect_timeout(&addr, timeout).map_err(no_answer)?;
    conn.set_write_timeout(Some(timeout)).map_err(no_answer)?;
    write!(
        conn,
        "GET /revision HTTP/1.1\r\nHost: weir\r\nConnection: close\r\n\r\n"
    )
    .map_err(no_answer)?;
    let deadline = std::time::Instant::now() + timeout;
    let mut answer = Vec::new();
    let mut buf = [0u8; 512];
    let late = || "no whole answer within 2 s".to_string();
    while answer.len() < 4096 {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(late());
        }
        conn.set_read_timeout(Some(left)).map_err(no_answer)?;
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(late())
            }
            Err(e) => return Err(no_answer(e)),
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .filter(|s| s.len() == 3 && s.bytes().all(|b| b.is_ascii_digit()))
        .unwrap_or("?");
    let body = body.trim();
    let revision = body.len() == 16 && body.bytes().all(|b| b.is_ascii_hexdigit());
    match (status, revision) {
        ("200", true) => Ok(body.to_string()),
        ("503", _) => Err("no revision yet (not synced, or not --source kubernetes)".into()),
        _ => Err(format!("unexpected answer (HTTP {status})")),
    }
}
