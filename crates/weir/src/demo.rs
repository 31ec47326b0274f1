//! `weir demo`: the lesson, for real. The todos API on a real Redis in a lab, secured by
//! the lesson's three policies, checked by real clients; every check prints ✔ or ✘.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use clap::Args;
use weir_engine::Engine;
use weir_lab::host::RealHost;
use weir_lab::probe::ProbeOptions;
use weir_lab::{Lab, LabOptions, Session};
use weir_model::PortKey;
use weir_model::{Cluster, Protocol};
use weir_netns::netns;
use weir_report::{ExplainFormat, MatrixFormat};

use crate::exit::{self, Failure};

#[derive(Args)]
pub struct DemoArgs {
    /// The lesson's manifests.
    #[arg(long, default_value = "examples/todos")]
    manifests: PathBuf,
    /// Lab name.
    #[arg(long, default_value = "demo")]
    name: String,
    /// Node namespaces (the todos API and Redis land on different nodes with 2).
    #[arg(long, default_value_t = 2)]
    nodes: usize,
    /// The todos binary (default: next to this weir executable).
    #[arg(long)]
    todos: Option<PathBuf>,
    /// How the todos API reaches Redis: through the Service, as in the lesson.
    #[arg(long, default_value = "redis://redis-demo:6379")]
    redis_url: String,
    /// Leave the lab up afterwards, to explore it.
    #[arg(long)]
    keep: bool,
}

const LOGIC_CLIENT: &str = "production/ubuntu";
const OTHER_CLIENT: &str = "personal/ubuntu";
const REDIS: &str = "production/redis";
const TODOS: &str = "production/todos";

/// Counts and prints checks.
struct Checks<'o> {
    out: &'o mut dyn Write,
    passed: usize,
    failed: usize,
}

impl Checks<'_> {
    fn check(&mut self, ok: bool, what: &str, detail: &str) -> std::io::Result<()> {
        if ok {
            self.passed += 1;
            writeln!(self.out, "  ✔ {what}")
        } else {
            self.failed += 1;
            writeln!(self.out, "  ✘ {what} — {detail}")
        }
    }
    fn say(&mut self, text: &str) -> std::io::Result<()> {
        writeln!(self.out, "{text}")?;
        self.out.flush()
    }
}

pub(crate) fn demo(args: DemoArgs, out: &mut dyn Write) -> Result<u8, Failure> {
    crate::lab::require_root("demo")?;
    let todos = match &args.todos {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .context("locating weir")?
            .with_file_name("todos"),
    };
    if !todos.exists() {
        return Err(Failure::Invalid(format!(
            "{}: the todos binary is missing (cargo build --release --workspace builds it)",
            todos.display()
        )));
    }
    let cluster = weir_manifest::load_paths(&[&args.manifests], Default::default())
        .map_err(|e| Failure::Invalid(e.to_string()))?
        .cluster;
    let mut checks = Checks {
        out,
        passed: 0,
        failed: 0,
    };
    // The lab's session lives here, so it goes down however `run` ends (Ctrl-C too).
    let mut session: Option<Session> = None;
    let result = run(&args, &cluster, &todos, &mut checks, &mut session);
    if let Err(e) = &result {
        checks.check(false, "the demo ran to the end", &format!("{e:#}"))?;
    }
    if let (true, Ok(()), Some(lab)) = (args.keep, &result, session.as_mut()) {
        lab.keep();
        let state = &lab.state;
        checks.say("\nThe lab stays up (--keep). Enter a pod, e.g.:")?;
        for p in &state.pods {
            checks.say(&format!(
                "  ip netns exec {:<22} bash    # {}",
                p.netns, p.id
            ))?;
        }
        checks.say(&format!(
            "Take it down with: sudo {} lab down --name {}",
            crate::lab::this_weir(),
            args.name
        ))?;
    } else {
        match session.take() {
            Some(lab) => lab.down(),
            None => Lab::down(&args.name, &RealHost),
        }
        .map_err(|e| anyhow!(e))?;
        checks.say("\nCleaned up: the lab's namespaces, processes and files are gone.")?;
    }
    let (passed, failed) = (checks.passed, checks.failed);
    checks.say(&format!("{passed} passed, {failed} failed"))?;
    Ok(if failed == 0 { exit::OK } else { exit::FAILURE })
}

fn pod<'s>(state: &'s weir_lab::LabState, id: &str) -> anyhow::Result<&'s weir_lab::PodState> {
    state
        .pods
        .iter()
        .find(|p| p.id == id)
        .ok_or_else(|| anyhow!("{id} is not in the manifests"))
}

fn vip(
    state: &weir_lab::LabState,
    backend: &weir_lab::PodState,
) -> anyhow::Result<(String, IpAddr)> {
    state
        .services
        .iter()
        .find(|s| {
            s.backends
                .iter()
                .any(|b| backend.ips.contains(&IpAddr::V4(*b)))
        })
        .map(|s| (s.id.clone(), IpAddr::V4(s.vip)))
        .ok_or_else(|| anyhow!("no Service selects {}", backend.id))
}

/// Waits until a TCP connect from namespace `ns` to `addr` succeeds (bounded).
fn wait_tcp(ns: &str, addr: SocketAddr, within: Duration) -> anyhow::Result<()> {
    netns::run_in(ns, || {
        let deadline = Instant::now() + within;
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(std::io::Error::other(format!(
                    "{addr} not reachable within {within:?}"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .map_err(|e| anyhow!(e))
}

/// `PING` over the Redis protocol from inside `ns`: Ok(reply) or the connect/read error.
fn redis_ping(ns: &str, addr: SocketAddr) -> std::io::Result<String> {
    netns::run_in(ns, || {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.write_all(b"PING\r\n")?;
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line)?;
        Ok(line.trim().to_string())
    })
}

fn http(
    ns: &str,
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> std::io::Result<todos::client::Response> {
    let (method, path, body) = (
        method.to_string(),
        path.to_string(),
        body.map(str::to_string),
    );
    netns::run_in(ns, move || {
        todos::client::request(
            addr,
            &method,
            &path,
            body.as_deref(),
            Duration::from_secs(5),
        )
    })
}

fn show_matrix(
    checks: &mut Checks,
    lab: &Lab,
    engine: &Engine,
    probes: &[PortKey],
) -> anyhow::Result<()> {
    let expected = engine.verdicts(probes);
    checks.say("  the engine's matrix (✔ allowed, ✘ denied):")?;
    weir_report::render_verdicts(&expected, MatrixFormat::Table, checks.out)?;
    let (observed, problems) =
        weir_lab::verify::probe_matrix(&lab.state, probes, ProbeOptions::default(), &|_| {})
            .context("probing")?;
    let diff = expected.disagreements(&observed);
    let detail = format!("{diff:?} {problems:?}");
    checks.check(
        diff.is_empty() && problems.is_empty(),
        &format!(
            "{} real probes (every pod to every pod) agree with the engine",
            expected.cells.len()
        ),
        &detail,
    )?;
    Ok(())
}

fn run(
    args: &DemoArgs,
    cluster: &Cluster,
    todos: &Path,
    checks: &mut Checks,
    session: &mut Option<Session>,
) -> anyhow::Result<()> {
    let probes = PortKey::parse_list("TCP/80,TCP/6379").map_err(|e| anyhow!(e))?;
    checks.say(&format!(
        "== weir demo: the NetworkPolicy lesson on real pods (lab {:?}) ==\n",
        args.name
    ))?;
    checks.say("1. Building the lab: one network namespace per pod, routed like Calico, over")?;
    checks.say(&format!(
        "   {} node namespaces; Services get virtual IPs (DNAT) and names in each pod.",
        args.nodes
    ))?;
    let options = LabOptions {
        name: args.name.clone(),
        nodes: args.nodes,
        listen: probes.clone(),
        exe: std::env::current_exe()?,
        no_listen: vec![REDIS.into(), TODOS.into()],
    };
    let lab: &Lab = session.insert(Session::up(cluster, &options).map_err(|e| anyhow!(e))?);
    let state = &lab.state;
    let (redis, todos_pod, logic, other) = (
        pod(state, REDIS)?,
        pod(state, TODOS)?,
        pod(state, LOGIC_CLIENT)?,
        pod(state, OTHER_CLIENT)?,
    );
    for p in &state.pods {
        let node = p
            .node
            .map_or("host".into(), |k| state.nodes[k].netns.clone());
        checks.say(&format!("   {:<20} {:<16} on {node}", p.id, p.ips[0]))?;
    }
    let (redis_svc, redis_vip) = vip(state, redis)?;
    let (todos_svc, todos_vip) = vip(state, todos_pod)?;
    checks.say(&format!(
        "   Service {redis_svc} → {redis_vip}:6379, Service {todos_svc} → {todos_vip}:80"
    ))?;

    checks
        .say("\n2. Starting the data tier (redis-server) and the logic tier (todos, REDIS_URL")?;
    checks.say(&format!(
        "   = {}: through the Service, by name).",
        args.redis_url
    ))?;
    weir_lab::spawn_in(
        state,
        REDIS,
        Path::new("redis-server"),
        &[
            "--port",
            "6379",
            "--bind",
            "0.0.0.0",
            "::",
            "--protected-mode",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        &[],
    )
    .map_err(|e| anyhow!(e))?;
    weir_lab::spawn_in(
        state,
        TODOS,
        todos,
        &[],
        &[
            ("REDIS_URL", args.redis_url.as_str()),
            ("LISTEN", "[::]:80"),
        ],
    )
    .map_err(|e| anyhow!(e))?;
    let node_of = |p: &weir_lab::PodState| state.nodes[p.node.unwrap_or(0)].netns.clone();
    wait_tcp(
        &node_of(redis),
        SocketAddr::new(redis.ips[0], 6379),
        Duration::from_secs(10),
    )
    .context("redis-server did not start")?;
    wait_tcp(
        &node_of(todos_pod),
        SocketAddr::new(todos_pod.ips[0], 80),
        Duration::from_secs(10),
    )
    .context("todos did not start")?;
    let kubelet = |checks: &mut Checks| -> anyhow::Result<()> {
        let r = http(
            &node_of(todos_pod),
            SocketAddr::new(todos_pod.ips[0], 80),
            "GET",
            "/probe",
            None,
        );
        let ok = matches!(&r, Ok(r) if r.status == 200 && r.body == "success");
        checks.check(
            ok,
            "readiness probe from the node (like the kubelet): GET /probe → 200 success",
            &format!("{r:?}"),
        )?;
        Ok(())
    };
    kubelet(checks)?;

    checks.say("\n3. Before any policy: everything reaches everything.")?;
    let bare = Cluster {
        policies: vec![],
        ..lab.deployed.clone()
    };
    let engine = Engine::new(&bare);
    let mut enforcer = Lab::enforcers(state);
    enforcer.apply(&engine).map_err(|e| anyhow!(e))?;
    show_matrix(checks, lab, &engine, &probes)?;
    let r = redis_ping(&other.netns, SocketAddr::new(redis_vip, 6379));
    checks.check(
        matches!(&r, Ok(s) if s == "+PONG"),
        "personal/ubuntu → redis PING → PONG (no policy yet)",
        &format!("{r:?}"),
    )?;

    checks.say("\n4. Applying the lesson's three policies:")?;
    for p in &lab.deployed.policies {
        checks.say(&format!("   {} ({})", p.id(), p.origin))?;
    }
    let engine = Engine::new(&lab.deployed);
    let applied = enforcer.apply(&engine).map_err(|e| anyhow!(e))?;
    for ((netns, _, _), a) in enforcer.nodes.iter().zip(&applied) {
        checks.say(&format!("   {netns}: {a}"))?;
    }
    show_matrix(checks, lab, &engine, &probes)?;

    checks.say("\n5. Real clients, as in the lesson:")?;
    let r = redis_ping(&logic.netns, SocketAddr::new(redis_vip, 6379));
    checks.check(
        matches!(&r, Ok(s) if s == "+PONG"),
        "production/ubuntu (logic tier) → redis-demo:6379 PING → PONG",
        &format!("{r:?}"),
    )?;
    for (what, addr) in [
        ("through the Service", SocketAddr::new(redis_vip, 6379)),
        ("to the pod IP", SocketAddr::new(redis.ips[0], 6379)),
    ] {
        let r = redis_ping(&other.netns, addr);
        let timed_out = matches!(&r, Err(e) if matches!(e.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock));
        checks.check(
            timed_out,
            &format!("personal/ubuntu → redis {what} ({addr}): times out (dropped, not refused)"),
            &format!("{r:?}"),
        )?;
    }
    for client in [logic, other] {
        let r = http(
            &client.netns,
            SocketAddr::new(todos_vip, 80),
            "GET",
            "/todos",
            None,
        );
        checks.check(
            matches!(&r, Ok(r) if r.status == 200),
            &format!("{} → todos:80 GET /todos → 200", client.id),
            &format!("{r:?}"),
        )?;
    }
    let api = SocketAddr::new(todos_vip, 80);
    let created = http(
        &other.netns,
        api,
        "POST",
        "/todos",
        Some(r#"{"Name": "secure the data tier"}"#),
    );
    let id = created
        .as_ref()
        .ok()
        .and_then(|r| serde_json::from_str::<serde_json::Value>(&r.body).ok())
        .and_then(|v| v["Id"].as_str().map(str::to_string));
    checks.check(
        id.is_some(),
        "personal/ubuntu creates a todo through the API (logic → data under policy)",
        &format!("{created:?}"),
    )?;
    if let Some(id) = id {
        let listed = http(&other.netns, api, "GET", "/todos", None);
        checks.check(
            matches!(&listed, Ok(r) if r.body.contains(&id)),
            "the todo is listed",
            &format!("{listed:?}"),
        )?;
        let deleted = http(&other.netns, api, "DELETE", &format!("/todos/{id}"), None);
        checks.check(
            matches!(&deleted, Ok(r) if r.status == 200 && r.body.contains(&id)),
            "the todo is deleted",
            &format!("{deleted:?}"),
        )?;
        let gone = http(&other.netns, api, "DELETE", &format!("/todos/{id}"), None);
        checks.check(
            matches!(&gone, Ok(r) if r.status == 404),
            "deleting it again → 404",
            &format!("{gone:?}"),
        )?;
    }
    kubelet(checks)?;

    checks.say("\n6. Why? weir explains one allowed and one denied connection:")?;
    for (from, to) in [(LOGIC_CLIENT, REDIS), (OTHER_CLIENT, REDIS)] {
        let (src, dst) = (
            engine.resolve(from).expect("pod"),
            engine.resolve(to).expect("pod"),
        );
        let e = engine.explain(src, dst, Protocol::Tcp, 6379);
        weir_report::render_explain(&e, ExplainFormat::Text, checks.out)?;
    }
    Ok(())
}
