//! The node agent in a lab (root): it follows its directory, keeps the last good version of
//! an invalid file, fails closed for pods it does not know, and enforcement does not lapse
//! when it is killed with SIGKILL.
// The lab binary: `cargo test --features lab` (scripts/test.sh runs it).
#![cfg(feature = "lab")]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use weir_engine::Engine;
mod common;

use common::{
    connects, connects_within, copy_seed, get, lab_up, repo, root_or_skip, wait_until, AgentLab,
    SEED_FILES,
};
use weir_engine::matrix::Verdicts;
use weir_lab::probe::ProbeOptions;
use weir_lab::Lab;
use weir_model::PortKey;
use weir_netns::netns;

/// Privileged tests of this file run one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

const NEWCOMER: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: newcomer, namespace: personal}\nspec: {containers: [{name: c, image: x}]}\n";

fn start_agent(dir: &Path, lab: &str, port: u16) -> Child {
    start_agent_with(dir, lab, port, &[])
}

fn start_agent_with(dir: &Path, lab: &str, port: u16, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .args([
            "agent",
            "--source",
            &format!("dir:{}", dir.display()),
            "--lab",
            lab,
            "--node",
            "0",
        ])
        .args(extra)
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--debounce-ms",
            "10",
            "--log-json",
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// The engine's verdicts for the agent's directory, over the lab's pods: pods the
/// directory does not know are denied everything (fail closed), except to themselves.
/// What the wire does: audited policies left out.
fn expected(dir: &Path, lab: &Lab, probes: &[PortKey]) -> Verdicts {
    verdicts(dir, lab, probes, false)
}

/// [`expected`], or with `as_enforced` as if audited policies were enforced.
fn verdicts(dir: &Path, lab: &Lab, probes: &[PortKey], as_enforced: bool) -> Verdicts {
    let mut cluster = weir_manifest::load_paths(&[dir], Default::default())
        .unwrap()
        .cluster;
    if !as_enforced {
        cluster = cluster.without_audited();
    }
    let deployed = Lab::deploy(&cluster, &lab.state);
    let engine = Engine::new(&deployed);
    let known = engine.verdicts(probes);
    let ids: Vec<String> = lab.state.pods.iter().map(|p| p.id.clone()).collect();
    let mut cells = Vec::new();
    for a in &ids {
        for b in &ids {
            for k in 0..probes.len() {
                let ia = known.endpoints.iter().position(|e| e == a);
                let ib = known.endpoints.iter().position(|e| e == b);
                cells.push(match (ia, ib) {
                    _ if a == b => Some(true),
                    (Some(x), Some(y)) => known.get(x, y, k),
                    _ => Some(false),
                });
            }
        }
    }
    Verdicts {
        endpoints: ids,
        probes: probes.to_vec(),
        cells,
    }
}

fn observe(lab: &Lab, probes: &[PortKey]) -> Verdicts {
    let (v, problems) =
        weir_lab::verify::probe_matrix(&lab.state, probes, ProbeOptions::default(), &|_| {})
            .unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    v
}

fn assert_matrix(context: &str, dir: &Path, lab: &Lab, probes: &[PortKey]) {
    let diff = expected(dir, lab, probes).disagreements(&observe(lab, probes));
    assert!(diff.is_empty(), "{context}: {diff:#?}");
}

#[test]
fn agent_follows_its_directory_fails_closed_and_survives_sigkill() {
    if !root_or_skip("agent_follows_its_directory_fails_closed_and_survives_sigkill") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let name = format!("ag{}", std::process::id() % 1_000_000);
    let dir = std::env::temp_dir().join(format!("weir-agent-{name}"));
    let mut guard = AgentLab {
        lab: name.clone(),
        dir: dir.clone(),
        agent: None,
    };
    copy_seed(&dir, &SEED_FILES);
    // The lab also holds a pod the directory does not know (yet).
    let mut all = weir_manifest::load_paths(&[&dir], Default::default())
        .unwrap()
        .cluster;
    all.endpoints.extend(
        weir_manifest::load_str("n.yaml", NEWCOMER, Default::default())
            .unwrap()
            .cluster
            .endpoints,
    );
    let probes = PortKey::parse_list("TCP/80,TCP/6379").unwrap();
    let lab = lab_up(&all, &name, 1, &[80, 6379]);
    let port = 19000 + (std::process::id() % 1000) as u16;
    guard.agent = Some(start_agent(&dir, &name, port));
    wait_until("/readyz", Duration::from_secs(15), || {
        get(port, "/readyz").is_some_and(|(s, _)| s == 200)
    });
    assert_matrix("first sync", &dir, &lab, &probes);
    assert!(
        !connects(&lab, "personal/newcomer", "production/todos", 80),
        "unknown pod: fail closed"
    );
    assert!(
        !connects(&lab, "personal/ubuntu", "personal/newcomer", 80),
        "unknown pod: fail closed both ways"
    );

    // Remove a policy file: the matrix follows.
    let http = dir.join("policies/logic-from-any-http.yaml");
    let http_text = std::fs::read_to_string(&http).unwrap();
    std::fs::remove_file(&http).unwrap();
    wait_until("todos:80 closed", Duration::from_secs(5), || {
        !connects(&lab, "personal/ubuntu", "production/todos", 80)
    });
    assert_matrix("policy removed", &dir, &lab, &probes);

    // An invalid file: reported, the rest unchanged.
    let before = expected(&dir, &lab, &probes);
    std::fs::write(dir.join("policies/broken.yaml"), "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: b, namespace: production}\nspec: {podSelector: {}, ingress: [{ports: [{port: 70000}]}]}\n").unwrap();
    wait_until("invalid file reported", Duration::from_secs(5), || {
        get(port, "/metrics").is_some_and(|(_, b)| b.contains("weir_invalid_files 1"))
    });
    let diff = before.disagreements(&observe(&lab, &probes));
    assert!(
        diff.is_empty(),
        "an invalid file changed enforcement: {diff:#?}"
    );
    std::fs::remove_file(dir.join("policies/broken.yaml")).unwrap();

    // Change → enforced latency: 50 file changes, each timed until a probe sees it.
    let mut latencies = Vec::new();
    for k in 0..50 {
        let open = k % 2 == 0;
        let t = Instant::now();
        if open {
            std::fs::write(&http, &http_text).unwrap();
        } else {
            std::fs::remove_file(&http).unwrap();
        }
        wait_until("flip", Duration::from_secs(5), || {
            connects(&lab, "personal/ubuntu", "production/todos", 80) == open
        });
        latencies.push(t.elapsed());
    }
    latencies.sort();
    eprintln!(
        "agent change → enforced over 50 changes: p50 {:?}, p99 {:?}, max {:?}",
        latencies[25], latencies[49], latencies[49]
    );
    std::fs::write(&http, &http_text).unwrap();
    wait_until("http policy back", Duration::from_secs(5), || {
        connects(&lab, "personal/ubuntu", "production/todos", 80)
    });
    let metrics = get(port, "/metrics").unwrap().1;
    assert!(
        metrics.contains("weir_sync_duration_seconds_count")
            && metrics.contains("weir_denied_packets_total{chain=\"ig-"),
        "{metrics}"
    );

    // SIGKILL: the table stays; verdicts never lapse while the agent is gone, and a pod
    // added meanwhile stays closed until the agent is back.
    std::fs::write(dir.join("newcomer.yaml"), NEWCOMER).unwrap();
    let mut agent = guard.agent.take().unwrap();
    agent.kill().unwrap();
    agent.wait().unwrap();
    for _ in 0..10 {
        assert!(
            !connects(&lab, "personal/ubuntu", "production/redis", 6379),
            "denied stays denied"
        );
        assert!(
            connects(&lab, "production/ubuntu", "production/redis", 6379),
            "allowed stays allowed"
        );
        assert!(
            !connects(&lab, "personal/newcomer", "personal/ubuntu", 80),
            "new pod closed while the agent is down"
        );
        assert!(
            !connects(&lab, "personal/ubuntu", "personal/newcomer", 80),
            "new pod closed while the agent is down"
        );
    }
    guard.agent = Some(start_agent(&dir, &name, port));
    wait_until(
        "newcomer admitted after restart",
        Duration::from_secs(15),
        || connects(&lab, "personal/newcomer", "personal/ubuntu", 80),
    );
    assert_matrix("after restart", &dir, &lab, &probes);
}

/// Established connections when a policy starts denying them: kept by default (conntrack
/// accepts them first, like Calico), cut with `--cut-established` (like Cilium).
#[test]
fn established_connections_kept_by_default_cut_with_the_flag() {
    if !root_or_skip("established_connections_kept_by_default_cut_with_the_flag") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for cut in [false, true] {
        let name = format!("ec{}x{}", std::process::id() % 100_000, u8::from(cut));
        let dir = std::env::temp_dir().join(format!("weir-agent-{name}"));
        let mut guard = AgentLab {
            lab: name.clone(),
            dir: dir.clone(),
            agent: None,
        };
        copy_seed(&dir, &SEED_FILES[..4]);
        let cluster = weir_manifest::load_paths(&[&dir], Default::default())
            .unwrap()
            .cluster;
        let lab = lab_up(&cluster, &name, 1, &[80]);
        let port = 21000 + (std::process::id() % 1000) as u16 + u16::from(cut);
        let extra: &[&str] = if cut { &["--cut-established"] } else { &[] };
        guard.agent = Some(start_agent_with(&dir, &name, port, extra));
        wait_until("/readyz", Duration::from_secs(15), || {
            get(port, "/readyz").is_some_and(|(s, _)| s == 200)
        });
        // An echo server in the todos pod, on a port no policy will allow.
        let todos = lab
            .state
            .pods
            .iter()
            .find(|p| p.id == "production/todos")
            .unwrap()
            .clone();
        let ns = std::fs::File::open(netns::path(&todos.netns)).unwrap();
        std::thread::spawn(move || {
            netns::enter(&ns).unwrap();
            let l = std::net::TcpListener::bind("[::]:7000").unwrap();
            for mut c in l.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut b = [0u8; 16];
                    while let Ok(n) = c.read(&mut b) {
                        if n == 0 || c.write_all(&b[..n]).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        std::thread::sleep(Duration::from_millis(100));
        let client = lab
            .state
            .pods
            .iter()
            .find(|p| p.id == "personal/ubuntu")
            .unwrap()
            .clone();
        let addr = SocketAddr::new(todos.ips[0], 7000);
        let mut conn = netns::run_in(&client.netns, move || {
            TcpStream::connect_timeout(&addr, Duration::from_secs(1))
        })
        .unwrap();
        conn.set_read_timeout(Some(Duration::from_millis(700)))
            .unwrap();
        let mut echo = |msg: &[u8]| -> bool {
            let mut b = [0u8; 16];
            conn.write_all(msg).is_ok() && conn.read(&mut b).is_ok_and(|n| &b[..n] == msg)
        };
        assert!(echo(b"before"), "allowed before any policy");
        std::fs::copy(
            repo("examples/todos/policies/any-from-any-none.yaml"),
            dir.join("policies/deny.yaml"),
        )
        .unwrap();
        wait_until("new connections denied", Duration::from_secs(5), || {
            !connects(&lab, "personal/ubuntu", "production/todos", 7000)
        });
        if cut {
            assert!(
                !echo(b"after"),
                "--cut-established: the existing connection is cut"
            );
        } else {
            assert!(echo(b"after"), "default: the existing connection is kept");
        }
    }
}

/// `weir drops` against the agent on `port`, its lines collected as they come.
struct DropsFollower {
    child: Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl DropsFollower {
    fn start(port: u16) -> DropsFollower {
        let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
            .args([
                "drops",
                "--agent",
                &format!("127.0.0.1:{port}"),
                "--timeout-s",
                "120",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        // The stream is subscribed once the agent answered its header.
        std::thread::sleep(Duration::from_millis(300));
        DropsFollower { child, lines }
    }

    /// The lines so far, once none arrived for two seconds: the kernel batches NFLOG
    /// messages for up to a second.
    fn settled(&self) -> Vec<String> {
        let (mut last, mut quiet) = (usize::MAX, Duration::ZERO);
        let step = Duration::from_millis(250);
        for _ in 0..80 {
            std::thread::sleep(step);
            let n = self.lines.lock().unwrap().len();
            quiet = if n == last {
                quiet + step
            } else {
                Duration::ZERO
            };
            if quiet >= Duration::from_secs(2) {
                break;
            }
            last = n;
        }
        std::mem::take(&mut *self.lines.lock().unwrap())
    }
}

impl Drop for DropsFollower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Puts every policy file of `dir/policies` in `mode` (the weir.dev/mode annotation).
fn set_mode(dir: &Path, mode: &str) {
    for entry in std::fs::read_dir(dir.join("policies")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let mut out = String::new();
        for line in text.lines() {
            if line.trim_start().starts_with("annotations:") || line.contains("weir.dev/mode") {
                continue;
            }
            out.push_str(line);
            out.push('\n');
            if line == "metadata:" {
                out.push_str(&format!("  annotations: {{weir.dev/mode: {mode}}}\n"));
            }
        }
        std::fs::write(&path, out).unwrap();
    }
}

/// (source, destination, probe) of every `would drop` line (`dropped` lines are real drops,
/// and any other line a failure).
fn would_drops(lines: &[String]) -> std::collections::BTreeSet<(String, String, String)> {
    let mut out = std::collections::BTreeSet::new();
    for line in lines {
        if line.starts_with("dropped ") {
            continue;
        }
        let rest = line
            .strip_prefix("would drop ")
            .unwrap_or_else(|| panic!("not a drop line: {line:?} in {lines:#?}"));
        let (who, why) = rest.split_once(": ").expect("a reason");
        assert!(why.ends_with("(audit)"), "{line}");
        let parts: Vec<&str> = who.split(' ').collect();
        let [src, "→", dst, proto, port] = parts[..] else {
            panic!("{line:?}")
        };
        out.insert((src.to_string(), dst.to_string(), format!("{proto}/{port}")));
    }
    out
}

/// Cells the wire allows that enforcing the audited policies would deny.
fn expected_would_drops(
    wire: &Verdicts,
    as_enforced: &Verdicts,
) -> std::collections::BTreeSet<(String, String, String)> {
    let n = wire.endpoints.len();
    let mut out = std::collections::BTreeSet::new();
    for a in 0..n {
        for b in 0..n {
            for (k, p) in wire.probes.iter().enumerate() {
                if a != b
                    && wire.get(a, b, k) == Some(true)
                    && as_enforced.get(a, b, k) == Some(false)
                {
                    out.insert((
                        wire.endpoints[a].clone(),
                        wire.endpoints[b].clone(),
                        p.to_string(),
                    ));
                }
            }
        }
    }
    out
}

/// Audit mode end to end: with the seed's policies audited every probe connects, and the
/// agent reports as `would drop` exactly the connections the engine says enforcing them
/// would deny, counted per policy in its metrics. Beside an enforced Baseline tier, the
/// wire does what the tier alone does and only what the tier lets through is a would-drop.
/// Switched to enforce, the probes match the engine's matrix.
#[test]
fn audit_mode_reports_exactly_what_enforcing_would_drop() {
    if !root_or_skip("audit_mode_reports_exactly_what_enforcing_would_drop") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let name = format!("au{}", std::process::id() % 1_000_000);
    let dir = std::env::temp_dir().join(format!("weir-audit-{name}"));
    let mut guard = AgentLab {
        lab: name.clone(),
        dir: dir.clone(),
        agent: None,
    };
    copy_seed(&dir, &SEED_FILES);
    set_mode(&dir, "audit");
    let cluster = weir_manifest::load_paths(&[&dir], Default::default())
        .unwrap()
        .cluster;
    assert_eq!(cluster.audited(), 3);
    let probes = PortKey::parse_list("TCP/80,TCP/6379").unwrap();
    let lab = lab_up(&cluster, &name, 1, &[80, 6379]);
    let port = 24000 + (std::process::id() % 1000) as u16;
    guard.agent = Some(start_agent_with(&dir, &name, port, &["--serve-drops"]));
    wait_until("/readyz", Duration::from_secs(15), || {
        get(port, "/readyz").is_some_and(|(s, _)| s == 200)
    });

    let mut phases = 0;
    for phase in ["audited", "audited beside an enforced Baseline tier"] {
        if phase != "audited" {
            std::fs::copy(
                repo("examples/tiers/guardrails.yaml"),
                dir.join("guardrails.yaml"),
            )
            .unwrap();
            // The Baseline tier denies personal everything from other namespaces.
            wait_until("tiers enforced", Duration::from_secs(5), || {
                !connects(&lab, "production/ubuntu", "personal/ubuntu", 80)
            });
        }
        let drops = DropsFollower::start(port);
        let observed = observe(&lab, &probes);
        let wire = expected(&dir, &lab, &probes);
        let diff = wire.disagreements(&observed);
        assert!(diff.is_empty(), "{phase}: {diff:#?}");
        if phase == "audited" {
            assert!(
                observed.cells.iter().all(|c| *c == Some(true)),
                "{phase}: every probe connects"
            );
        }
        let want = expected_would_drops(&wire, &verdicts(&dir, &lab, &probes, true));
        assert!(
            !want.is_empty(),
            "{phase}: the policies would deny something"
        );
        let lines = drops.settled();
        assert_eq!(would_drops(&lines), want, "{phase}");
        phases += 1;
    }
    assert_eq!(phases, 2);
    let metrics = get(port, "/metrics").unwrap().1;
    let counted = |policy: &str| {
        metrics
            .lines()
            .find_map(|l| {
                l.strip_prefix(&format!(
                    "weir_audit_would_drop_total{{policy=\"{policy}\"}} "
                ))
            })
            .and_then(|v| v.parse::<u64>().ok())
    };
    assert!(
        counted("production/any-from-any-none").is_some_and(|n| n > 0),
        "{metrics}"
    );

    // Enforced: the probes match the engine's matrix, and what was a would-drop is dropped.
    std::fs::remove_file(dir.join("guardrails.yaml")).unwrap();
    set_mode(&dir, "enforce");
    wait_until("enforced", Duration::from_secs(5), || {
        !connects(&lab, "personal/ubuntu", "production/redis", 6379)
    });
    assert_matrix("enforced", &dir, &lab, &probes);

    // The agent's --audit, with the tiers back: nothing is dropped, and every connection the
    // policies and tiers would deny (tier Denies included, named with their rule) is a
    // would-drop.
    std::fs::copy(
        repo("examples/tiers/guardrails.yaml"),
        dir.join("guardrails.yaml"),
    )
    .unwrap();
    let mut agent = guard.agent.take().unwrap();
    agent.kill().unwrap();
    agent.wait().unwrap();
    guard.agent = Some(start_agent_with(
        &dir,
        &name,
        port,
        &["--serve-drops", "--audit"],
    ));
    wait_until("every policy audited", Duration::from_secs(15), || {
        connects(&lab, "personal/ubuntu", "production/redis", 6379)
    });
    let drops = DropsFollower::start(port);
    let observed = observe(&lab, &probes);
    assert!(
        observed.cells.iter().all(|c| *c == Some(true)),
        "--audit: every probe connects"
    );
    let lines = drops.settled();
    let want = expected_would_drops(&observed, &verdicts(&dir, &lab, &probes, true));
    assert_eq!(would_drops(&lines), want, "--audit");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("denied by BaselineAdminNetworkPolicy/default")),
        "{lines:#?}"
    );
}

/// Sets its flag when dropped.
struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

const OBSERVE: &str = "# Observation: every connection into these namespaces is a would-drop.
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: observe, namespace: production, annotations: {weir.dev/mode: audit}}
spec: {podSelector: {}, policyTypes: [Ingress]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: observe, namespace: personal, annotations: {weir.dev/mode: audit}}
spec: {podSelector: {}, policyTypes: [Ingress]}
";

/// The safe rollout on a running app, end to end: an audited default-deny observes the
/// app's connections (`weir drops`); `weir synth` writes audited policies from them alone;
/// the agents count no would-drop for the app (`weir lint --would-drops` says ready); then
/// enforced, the probes match the engine — the lesson's matrix — and the example's intents
/// hold. Meanwhile the app's connections never fail.
#[test]
fn observe_synthesise_audit_enforce_without_refusing_the_app() {
    if !root_or_skip("observe_synthesise_audit_enforce_without_refusing_the_app") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let name = format!("ro{}", std::process::id() % 1_000_000);
    let dir = std::env::temp_dir().join(format!("weir-rollout-{name}"));
    let work = dir.with_extension("work");
    let mut guard = AgentLab {
        lab: name.clone(),
        dir: dir.clone(),
        agent: None,
    };
    let app_files = &SEED_FILES[..4];
    copy_seed(&dir, app_files);
    std::fs::write(dir.join("policies/observe.yaml"), OBSERVE).unwrap();
    std::fs::create_dir_all(&work).unwrap();
    let cluster = weir_manifest::load_paths(&[&dir], Default::default())
        .unwrap()
        .cluster;
    let lab = lab_up(&cluster, &name, 1, &[80, 6379]);
    let port = 25000 + (std::process::id() % 1000) as u16;
    guard.agent = Some(start_agent_with(&dir, &name, port, &["--serve-drops"]));
    wait_until("/readyz", Duration::from_secs(15), || {
        get(port, "/readyz").is_some_and(|(s, _)| s == 200)
    });
    // The app: the API on Redis, the logic tier's Redis check, every pod a client of the API.
    let mut app: Vec<(String, String, u16)> = vec![
        ("production/todos".into(), "production/redis".into(), 6379),
        ("production/ubuntu".into(), "production/redis".into(), 6379),
    ];
    for p in &lab.state.pods {
        if p.id != "production/todos" {
            app.push((p.id.clone(), "production/todos".into(), 80));
        }
    }
    let stop = std::sync::atomic::AtomicBool::new(false);
    let refused = std::sync::Mutex::new(Vec::<String>::new());
    let rounds = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        // The app runs throughout: ~50 connections a second, each one must get through.
        scope.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for (s, d, p) in &app {
                    // Refused or dropped, not merely slow.
                    if !connects_within(&lab, s, d, *p, Duration::from_secs(1)) {
                        refused.lock().unwrap().push(format!("{s} → {d} TCP {p}"));
                    }
                }
                rounds.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        // Stops the app's loop however the steps end (a failed assertion unwinds past).
        let _stop = StopOnDrop(&stop);
        {
            // 1. Observe.
            let drops = DropsFollower::start(port);
            std::thread::sleep(Duration::from_secs(2));
            let lines = drops.settled();
            let observed = work.join("observed.txt");
            std::fs::write(&observed, lines.join("\n")).unwrap();
            let seen = would_drops(&lines);
            for (s, d, p) in &app {
                assert!(
                    seen.contains(&(s.clone(), d.clone(), format!("TCP/{p}"))),
                    "{s} → {d} {p} not observed: {lines:#?}"
                );
            }
            // 2. Synthesise from the app's manifests and what was observed: audited.
            let out = work.join("synthesised");
            let mut args: Vec<String> = vec!["synth".into()];
            args.extend(app_files.iter().map(|f| dir.join(f).display().to_string()));
            args.extend([
                "--flows".into(),
                observed.display().to_string(),
                "--out".into(),
                out.display().to_string(),
                "--audit".into(),
            ]);
            let synth = Command::new(env!("CARGO_BIN_EXE_weir"))
                .args(&args)
                .output()
                .unwrap();
            let report = String::from_utf8_lossy(&synth.stdout).into_owned();
            assert!(
                synth.status.success(),
                "{report}{}",
                String::from_utf8_lossy(&synth.stderr)
            );
            assert!(
                report.contains("and nothing else between the sides involved"),
                "{report}"
            );
            // 3. Audit them in place of the observation.
            for entry in std::fs::read_dir(&out).unwrap() {
                let path = entry.unwrap().path();
                std::fs::copy(&path, dir.join("policies").join(path.file_name().unwrap())).unwrap();
            }
            std::fs::remove_file(dir.join("policies/observe.yaml")).unwrap();
            wait_until(
                "the synthesised policies audited",
                Duration::from_secs(5),
                || {
                    get(port, "/metrics").is_some_and(|(_, m)| {
                        m.contains(
                            "weir_audit_would_drop_total{policy=\"production/allow-to-redis\"}",
                        ) && !m.contains("policy=\"production/observe\"")
                    })
                },
            );
            let before = rounds.load(std::sync::atomic::Ordering::Relaxed);
            wait_until(
                "the app ran under the audited policies",
                Duration::from_secs(10),
                || rounds.load(std::sync::atomic::Ordering::Relaxed) >= before + 10,
            );
            let metrics = work.join("metrics.txt");
            std::fs::write(&metrics, get(port, "/metrics").unwrap().1).unwrap();
            let lint = Command::new(env!("CARGO_BIN_EXE_weir"))
                .args([
                    "lint",
                    "-q",
                    dir.to_str().unwrap(),
                    "--would-drops",
                    metrics.to_str().unwrap(),
                ])
                .output()
                .unwrap();
            let findings = String::from_utf8_lossy(&lint.stdout).into_owned();
            assert!(
                !findings.contains("W013"),
                "the app met a would-drop: {findings}"
            );
            assert!(
                findings.matches("I004 audit-ready-to-enforce").count() >= 3,
                "{findings}"
            );
            // 4. Enforce.
            set_mode(&dir, "enforce");
            wait_until("enforced", Duration::from_secs(5), || {
                !connects(&lab, "personal/ubuntu", "production/redis", 6379)
            });
            let probes = PortKey::parse_list("TCP/80,TCP/6379").unwrap();
            assert_matrix("enforced", &dir, &lab, &probes);
            let observed = observe(&lab, &probes);
            let at = |s: &str, d: &str, k: usize| {
                let i = |id: &str| observed.endpoints.iter().position(|e| e == id).unwrap();
                observed.get(i(s), i(d), k)
            };
            assert_eq!(at("personal/ubuntu", "production/redis", 1), Some(false));
            assert_eq!(at("production/ubuntu", "production/redis", 1), Some(true));
            for p in &lab.state.pods {
                if p.id != "production/todos" {
                    assert_eq!(
                        at(&p.id, "production/todos", 0),
                        Some(true),
                        "{} → todos:80",
                        p.id
                    );
                }
            }
            let intents = Command::new(env!("CARGO_BIN_EXE_weir"))
                .args([
                    "test",
                    repo("examples/todos/intents.yaml").to_str().unwrap(),
                    dir.to_str().unwrap(),
                ])
                .output()
                .unwrap();
            assert!(
                intents.status.success(),
                "{}",
                String::from_utf8_lossy(&intents.stdout)
            );
        }
    });
    let _ = std::fs::remove_dir_all(&work);
    let refused = refused.into_inner().unwrap();
    assert!(
        refused.is_empty(),
        "the app was refused {} time(s) over {} rounds: {refused:?}",
        refused.len(),
        rounds.into_inner()
    );
}
