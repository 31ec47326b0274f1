//! weir under attack and under faults (root): hostile names never become nft syntax, a pod
//! cannot borrow another pod's address, a changed or deleted table is repaired, and the
//! agent keeps enforcing its last good state whatever happens to its directory.
// The lab binary: `cargo test --features lab` (scripts/test.sh runs it).
#![cfg(feature = "lab")]

use std::io::Write;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

mod common;

use common::{connects, copy_seed, get, lab_up, root_or_skip, wait_until, AgentLab, SEED_FILES};
use weir_engine::Engine;
use weir_lab::Lab;
use weir_model::Cluster;
use weir_netns::netns;
use weir_nft::apply::{Enforcer, Mode, Nft, NftCli, NftError, NftLib};
use weir_nft::{compile_with, CompileOptions, Scope};

/// Privileged tests of this file run one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// `nft ARGS` inside `ns`: stdout.
fn nft(ns: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "nft"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nft {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Netns(String);

impl Netns {
    /// A fresh, empty namespace `PREFIX<pid>`, deleted when dropped.
    fn fresh(prefix: &str) -> Netns {
        let ns = Netns(format!("{prefix}{}", std::process::id() % 1_000_000));
        let _ = Command::new("ip")
            .args(["netns", "del", &ns.0])
            .stderr(std::process::Stdio::null())
            .status();
        assert!(Command::new("ip")
            .args(["netns", "add", &ns.0])
            .status()
            .unwrap()
            .success());
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Chains and sets the table must hold: exactly the compiler's, and no other table.
#[test]
fn hostile_names_and_labels_stay_inside_comments() {
    if !root_or_skip("hostile_names_and_labels_stay_inside_comments") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let ns = Netns::fresh("wl-inj");
    let cluster = weir_gen::hostile::cluster();
    let engine = Engine::new(&cluster);
    let options = CompileOptions {
        pod_interfaces: Some("wp*".parse().unwrap()),
        log_group: Some(7),
        ..Default::default()
    };
    let hostile_rs = compile_with(&engine, Scope::All, &options);
    // First a policy-free table, then the hostile one as a delta (the path that once put
    // names raw into chain names), then a full replace; each read back exactly.
    let empty = Cluster {
        policies: vec![],
        ..cluster.clone()
    };
    let empty_rs = compile_with(&Engine::new(&empty), Scope::All, &options);
    let mut enforcer = Enforcer::new(NftCli {
        netns: Some(ns.0.clone()),
    });
    enforcer.verify = true;
    enforcer.apply(empty_rs).unwrap();
    let delta = hostile_rs.delta(enforcer.current().unwrap()).unwrap();
    assert!(!delta.is_empty());
    let applied = enforcer.apply(hostile_rs.clone()).unwrap();
    assert_eq!(applied.mode, Mode::Delta);
    weir_nft::apply::verify(&hostile_rs, &nft(&ns.0, &["list", "table", "inet", "weir"])).unwrap();
    enforcer.remove().unwrap();
    enforcer.apply(hostile_rs.clone()).unwrap();
    weir_nft::apply::verify(&hostile_rs, &nft(&ns.0, &["list", "table", "inet", "weir"])).unwrap();
    assert_eq!(nft(&ns.0, &["list", "tables"]).trim(), "table inet weir");
    let listing = nft(&ns.0, &["list", "ruleset"]);
    for line in listing.lines() {
        let t = line.trim();
        assert!(
            !(t.starts_with("accept") || t == "drop"),
            "a bare verdict rule: {t}"
        );
    }
    // Every policy has its own chains: one per hostile name and direction — a policy chain
    // if enforced, an audit chain if audited (every other one is).
    let policy_chains = hostile_rs
        .chains
        .keys()
        .filter(|c| {
            ["pin-", "peg-", "ia-", "ea-"]
                .iter()
                .any(|p| c.starts_with(p))
        })
        .count();
    assert_eq!(policy_chains, 2 * weir_gen::hostile::names().len());
}

/// The agent programs through libnftables: the same hostile table, as a full program and as
/// a delta, must list exactly as through the `nft` command, in the namespace asked for and
/// nowhere else; errors come back as errors, a check changes nothing.
#[test]
fn libnftables_programs_exactly_what_the_nft_command_does() {
    if !root_or_skip("libnftables_programs_exactly_what_the_nft_command_does") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Read only: what the machine's own namespace holds must not change.
    let root_tables = || {
        let out = Command::new("nft").args(["list", "tables"]).output();
        String::from_utf8(out.unwrap().stdout).unwrap()
    };
    let root_before = root_tables();
    let (lib_ns, cli_ns) = (Netns::fresh("wl-lib"), Netns::fresh("wl-cli"));
    let cluster = weir_gen::hostile::cluster();
    let options = CompileOptions {
        pod_interfaces: Some("wp*".parse().unwrap()),
        log_group: Some(7),
        ..Default::default()
    };
    let hostile_rs = compile_with(&Engine::new(&cluster), Scope::All, &options);
    let empty = Cluster {
        policies: vec![],
        ..cluster.clone()
    };
    let empty_rs = compile_with(&Engine::new(&empty), Scope::All, &options);
    let mut lib = Enforcer::new(NftLib::new(Some(lib_ns.0.clone())).expect("libnftables"));
    let mut cli = Enforcer::new(NftCli {
        netns: Some(cli_ns.0.clone()),
    });
    assert_eq!(
        lib.nft().list().unwrap(),
        "",
        "no table yet lists as nothing"
    );
    for e in [&mut lib as &mut dyn Apply, &mut cli] {
        assert_eq!(e.apply_(empty_rs.clone()), Mode::Full);
        assert_eq!(e.apply_(hostile_rs.clone()), Mode::Delta);
    }
    let listed = |ns: &str| nft(ns, &["list", "table", "inet", "weir"]);
    assert_eq!(listed(&lib_ns.0), listed(&cli_ns.0));
    assert_eq!(lib.nft().list().unwrap(), listed(&lib_ns.0));
    weir_nft::apply::verify(&hostile_rs, &listed(&lib_ns.0)).unwrap();

    // A rejected transaction is an error naming the problem, and changes nothing.
    let before = listed(&lib_ns.0);
    let err = lib
        .nft()
        .run("add rule inet weir no-such-chain accept\n", false)
        .unwrap_err();
    assert!(
        matches!(&err, NftError::Rejected(m) if m.contains("No such file or directory")),
        "{err}"
    );
    // A check (nft -c) of a valid script changes nothing either.
    lib.nft()
        .run("add table inet weir-check-only\n", true)
        .unwrap();
    assert_eq!(listed(&lib_ns.0), before);
    assert_eq!(
        nft(&lib_ns.0, &["list", "tables"]).trim(),
        "table inet weir"
    );
    lib.remove().unwrap();
    assert_eq!(lib.nft().list().unwrap(), "");
    assert_eq!(root_tables(), root_before, "the root namespace was touched");

    let missing = NftLib::new(Some("wl-no-such-namespace".into())).unwrap_err();
    assert!(
        matches!(&missing, NftError::Unavailable(m) if m.contains("wl-no-such-namespace")),
        "{missing}"
    );
}

/// Both enforcers behind one face, for the comparison above.
trait Apply {
    fn apply_(&mut self, rs: weir_nft::Ruleset) -> Mode;
}

impl<N: Nft> Apply for Enforcer<N> {
    fn apply_(&mut self, rs: weir_nft::Ruleset) -> Mode {
        self.apply(rs).unwrap().mode
    }
}

fn spawn_agent(dir: &Path, lab: &str, port: u16, extra: &[&str], log: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["agent", "--source", &format!("dir:{}", dir.display())])
        .args(["--lab", lab, "--node", "0"])
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--debounce-ms",
            "10",
        ])
        .args(extra)
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

fn ready(port: u16) -> Option<(u16, String)> {
    get(port, "/readyz")
}

/// Waits until `/readyz` answers `status` with a body containing `needle`; on timeout the
/// failure shows the last answer.
fn wait_readyz(port: u16, status: u16, needle: &str, within: Duration) {
    let deadline = std::time::Instant::now() + within;
    loop {
        let last = ready(port);
        if last
            .as_ref()
            .is_some_and(|(s, b)| *s == status && b.contains(needle))
        {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "/readyz never answered {status} with {needle:?}; last: {last:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn pod(lab: &Lab, id: &str) -> weir_lab::PodState {
    lab.state.pods.iter().find(|p| p.id == id).unwrap().clone()
}

const UDP_FROM_LOGIC: &str = "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: udp-from-logic, namespace: production}
spec:
  podSelector: {matchLabels: {networking/data: \"true\"}}
  ingress:
  - from: [{podSelector: {matchLabels: {networking/logic: \"true\"}}}]
    ports: [{protocol: UDP, port: 5353}]
";

/// Sends one datagram from `from`'s namespace with source `src` to `dst`:5353; true when
/// the receiver got it.
fn udp_arrives(from: &str, src: IpAddr, dst: IpAddr, receiver: &UdpSocket, tag: &str) -> bool {
    let tag_owned = tag.to_string();
    netns::run_in(from, move || {
        let s = UdpSocket::bind(SocketAddr::new(src, 0))?;
        for _ in 0..3 {
            s.send_to(tag_owned.as_bytes(), SocketAddr::new(dst, 5353))?;
        }
        Ok(())
    })
    .unwrap();
    let mut buf = [0u8; 64];
    let deadline = std::time::Instant::now() + Duration::from_millis(400);
    while std::time::Instant::now() < deadline {
        if let Ok((n, _)) = receiver.recv_from(&mut buf) {
            if &buf[..n] == tag.as_bytes() {
                return true;
            }
        }
    }
    false
}

#[test]
fn a_pod_cannot_borrow_another_pods_address() {
    if !root_or_skip("a_pod_cannot_borrow_another_pods_address") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let name = format!("sp{}", std::process::id() % 1_000_000);
    let dir = std::env::temp_dir().join(format!("weir-spoof-{name}"));
    let mut g = AgentLab {
        lab: name.clone(),
        dir: dir.clone(),
        agent: None,
    };
    copy_seed(&dir, &SEED_FILES);
    std::fs::write(dir.join("policies/udp-from-logic.yaml"), UDP_FROM_LOGIC).unwrap();
    let cluster = weir_manifest::load_paths(&[&dir], Default::default())
        .unwrap()
        .cluster;
    let lab = lab_up(&cluster, &name, 1, &[80]);
    let port = 23000 + (std::process::id() % 1000) as u16;
    let log = dir.with_extension("log");
    g.agent = Some(spawn_agent(&dir, &name, port, &["--serve-drops"], &log));
    wait_until("/readyz", Duration::from_secs(15), || {
        ready(port).is_some_and(|(s, _)| s == 200)
    });
    // `weir drops` follows the agent's attributed drops meanwhile.
    let mut drops = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args([
            "drops",
            "--agent",
            &format!("127.0.0.1:{port}"),
            "--timeout-s",
            "30",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(!connects(&lab, "personal/ubuntu", "production/redis", 6379));
    let (redis, logic, outsider) = (
        pod(&lab, "production/redis"),
        pod(&lab, "production/ubuntu"),
        pod(&lab, "personal/ubuntu"),
    );
    for family in [false, true] {
        let of = |p: &weir_lab::PodState| *p.ips.iter().find(|ip| ip.is_ipv6() == family).unwrap();
        let dst = of(&redis);
        let receiver = netns::run_in(&redis.netns, move || {
            let s = UdpSocket::bind(SocketAddr::new(dst, 5353))?;
            s.set_read_timeout(Some(Duration::from_millis(50)))?;
            Ok(s)
        })
        .unwrap();
        // Legitimate: the logic tier's own address.
        assert!(
            udp_arrives(&logic.netns, of(&logic), dst, &receiver, "legit"),
            "IPv{}: the logic tier reaches redis on UDP 5353",
            if family { 6 } else { 4 }
        );
        assert!(!udp_arrives(
            &outsider.netns,
            of(&outsider),
            dst,
            &receiver,
            "own"
        ));
        // The outsider takes the logic pod's address as a second address on its eth0.
        let borrowed = of(&logic);
        let prefix = if family { "128" } else { "32" };
        let mut add = Command::new("ip");
        add.args(["netns", "exec", &outsider.netns, "ip", "addr", "add"])
            .arg(format!("{borrowed}/{prefix}"))
            .args(["dev", "eth0"]);
        if family {
            add.arg("nodad");
        }
        assert!(add.status().unwrap().success());
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            !udp_arrives(&outsider.netns, borrowed, dst, &receiver, "spoofed"),
            "IPv{}: a spoofed source crossed the policy",
            if family { 6 } else { 4 }
        );
        // Legitimate traffic is unaffected.
        assert!(udp_arrives(
            &logic.netns,
            of(&logic),
            dst,
            &receiver,
            "legit2"
        ));
    }
    let node = &lab.state.nodes[0].netns;
    let listing = nft(node, &["list", "chain", "inet", "weir", "egress"]);
    let spoof_rule = listing
        .lines()
        .find(|l| l.contains("fib saddr . iif oif missing") && l.contains("drop"))
        .unwrap_or_else(|| panic!("no anti-spoofing rule:\n{listing}"));
    assert!(
        !spoof_rule.contains("packets 0 "),
        "the spoofed packets were counted: {spoof_rule}"
    );
    assert!(connects(
        &lab,
        "production/ubuntu",
        "production/redis",
        6379
    ));
    // A cluster-wide Deny is attributed like an isolation: tier, policy, priority, rule.
    assert!(connects(&lab, "personal/ubuntu", "production/todos", 80));
    std::fs::write(dir.join("policies/guardrail.yaml"), TIER_DENY).unwrap();
    wait_until("the Admin Deny enforced", Duration::from_secs(15), || {
        !connects(&lab, "personal/ubuntu", "production/todos", 80)
    });
    // The kernel batches NFLOG messages for up to a second, and the agent's log is written
    // before the line reaches `weir drops` over HTTP: wait for the line where it is
    // asserted, in `weir drops`' output (read on a thread of its own), then stop it.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let (seen, out) = (seen.clone(), drops.stdout.take().unwrap());
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(out)) {
                let Ok(line) = line else { break };
                let mut s = seen.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        })
    };
    wait_until(
        "the Admin Deny's drop in weir drops",
        Duration::from_secs(10),
        || seen.lock().unwrap().contains("ingress denied by"),
    );
    let _ = std::fs::remove_file(&log);
    let _ = drops.kill();
    let _ = drops.wait();
    let _ = reader.join();
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.contains("dropped personal/ubuntu → production/redis TCP 6379: ingress isolated by production/any-from-any-none, production/data-from-logic-redis"),
        "{seen}"
    );
    assert!(
        seen.contains("UDP 5353: source address not of the sending pod's interface (spoofed)"),
        "{seen}"
    );
    assert!(
        seen.contains("dropped personal/ubuntu → production/todos TCP 80: ingress denied by ClusterNetworkPolicy/no-personal-to-todos (tier Admin, priority 5) rule ingress[0]"),
        "{seen}"
    );
}

const TIER_DENY: &str = "apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: no-personal-to-todos}
spec:
  tier: Admin
  priority: 5
  subject: {namespaces: {matchLabels: {kubernetes.io/metadata.name: production}}}
  ingress:
  - name: not-from-personal
    action: Deny
    from: [{namespaces: {matchLabels: {kubernetes.io/metadata.name: personal}}}]
";

#[test]
fn the_agent_repairs_drift_and_holds_its_last_good_state() {
    if !root_or_skip("the_agent_repairs_drift_and_holds_its_last_good_state") {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let name = format!("lg{}", std::process::id() % 1_000_000);
    let base = std::env::temp_dir().join(format!("weir-lastgood-{name}"));
    let dir = base.join("manifests");
    let state = base.join("state");
    let log = base.join("agent.log");
    let mut g = AgentLab {
        lab: name.clone(),
        dir: base.clone(),
        agent: None,
    };
    copy_seed(&dir, &SEED_FILES);
    let cluster = weir_manifest::load_paths(&[&dir], Default::default())
        .unwrap()
        .cluster;
    let lab = lab_up(&cluster, &name, 1, &[80, 6379]);
    let port = 24000 + (std::process::id() % 1000) as u16;
    let state_arg = format!("--state-dir={}", state.display());
    let args = ["--drift-interval-s", "0.3", state_arg.as_str()];
    g.agent = Some(spawn_agent(&dir, &name, port, &args, &log));
    let is_ready = || ready(port).is_some_and(|(s, _)| s == 200);
    wait_until("/readyz", Duration::from_secs(15), is_ready);
    let node = lab.state.nodes[0].netns.clone();
    // The seed's verdicts, checked after every fault.
    let holds = |context: &str| {
        assert!(
            !connects(&lab, "personal/ubuntu", "production/redis", 6379),
            "{context}: personal → redis must stay denied"
        );
        assert!(
            connects(&lab, "production/ubuntu", "production/redis", 6379),
            "{context}: logic → redis must stay allowed"
        );
        assert!(
            connects(&lab, "personal/ubuntu", "production/todos", 80),
            "{context}: anyone → todos:80 must stay allowed"
        );
    };
    holds("first sync");
    let metric = |name: &str| -> u64 {
        get(port, "/metrics")
            .and_then(|(_, b)| {
                b.lines()
                    .find(|l| l.starts_with(&format!("{name} ")))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(0)
    };

    // 0. Counters that move (the denied probes above) are not drift: no repair over several
    //    check intervals. (A real node once showed repairs every 10 s: a rule starting with
    //    `counter` was not normalised.)
    holds("before the drift checks");
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(metric("weir_drift_repairs_total"), 0, "no drift, no repair");

    // 1. Drift: the table deleted (a firewall reload), then a foreign accept inserted.
    nft(&node, &["delete", "table", "inet", "weir"]);
    wait_until("table deleted → repaired", Duration::from_secs(5), || {
        metric("weir_drift_repairs_total") >= 1
    });
    holds("after the table was deleted and repaired");
    nft(
        &node,
        &["insert", "rule", "inet", "weir", "ingress", "accept"],
    );
    wait_until("foreign rule → repaired", Duration::from_secs(5), || {
        metric("weir_drift_repairs_total") >= 2
    });
    holds("after a foreign accept rule was repaired");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("is missing") && logged.contains("replacing it"),
        "drift named in the log:\n{logged}"
    );

    // 2. A file that cannot be decoded (invalid UTF-8) keeps its last good version.
    let data = dir.join("policies/data-from-logic-redis.yaml");
    let data_text = std::fs::read(&data).unwrap();
    std::fs::write(&data, [&data_text[..], b"\xff\xfe"].concat()).unwrap();
    wait_until(
        "not ready while a file is unreadable",
        Duration::from_secs(5),
        || ready(port).is_some_and(|(s, b)| s == 503 && b.contains("invalid source item")),
    );
    holds("a policy file became invalid UTF-8");

    // 3. Restart while it is invalid: with the state directory, its persisted version.
    let mut a = g.agent.take().unwrap();
    a.kill().unwrap();
    a.wait().unwrap();
    nft(&node, &["delete", "table", "inet", "weir"]); // a reboot: nothing in the kernel
    g.agent = Some(spawn_agent(&dir, &name, port, &args, &log));
    wait_until("synced after restart", Duration::from_secs(15), || {
        metric("weir_syncs_total{result=\"ok\"}") >= 1
    });
    holds("restart with an invalid file and a state directory");
    // Without a state directory the agent refuses to program; the kernel keeps its table.
    let mut a = g.agent.take().unwrap();
    a.kill().unwrap();
    a.wait().unwrap();
    g.agent = Some(spawn_agent(
        &dir,
        &name,
        port,
        &["--drift-interval-s", "0.3"],
        &log,
    ));
    wait_readyz(port, 503, "refusing to program", Duration::from_secs(15));
    holds("restart with an invalid file and no state");
    std::fs::write(&data, &data_text).unwrap();
    wait_until("ready once fixed", Duration::from_secs(10), is_ready);
    let mut a = g.agent.take().unwrap();
    a.kill().unwrap();
    a.wait().unwrap();
    g.agent = Some(spawn_agent(&dir, &name, port, &args, &log));
    wait_until("/readyz", Duration::from_secs(15), is_ready);

    // 4. The watched directory deleted: enforcement unchanged, not ready; recreated as a
    //    symlink: recovered, and changes are followed again.
    let moved = base.join("moved");
    std::fs::rename(&dir, &moved).unwrap();
    wait_until(
        "not ready without the directory",
        Duration::from_secs(5),
        || ready(port).is_some_and(|(s, b)| s == 503 && b.contains("keeping what is enforced")),
    );
    holds("directory deleted");
    std::os::unix::fs::symlink(&moved, &dir).unwrap();
    wait_until(
        "ready with the directory back",
        Duration::from_secs(10),
        is_ready,
    );
    let http = dir.join("policies/logic-from-any-http.yaml");
    let http_text = std::fs::read_to_string(&http).unwrap();
    std::fs::remove_file(&http).unwrap();
    wait_until(
        "a change followed after recovery",
        Duration::from_secs(5),
        || !connects(&lab, "personal/ubuntu", "production/todos", 80),
    );
    std::fs::write(&http, &http_text).unwrap();
    wait_until("restored", Duration::from_secs(5), || {
        connects(&lab, "personal/ubuntu", "production/todos", 80)
    });

    // 5. A FIFO named like a manifest, a symlink loop and a ConfigMap-style `..data`
    //    layout: no hang, every object loaded once (no duplicates), the agent ready.
    let fifo = dir.join("pipe.yaml");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    std::os::unix::fs::symlink(".", dir.join("loop")).unwrap();
    let cm = dir.join("cm");
    std::fs::create_dir_all(cm.join("..2026_11_26_10_00_00.1")).unwrap();
    std::fs::write(
        cm.join("..2026_11_26_10_00_00.1/extra.yaml"),
        UDP_FROM_LOGIC,
    )
    .unwrap();
    std::os::unix::fs::symlink("..2026_11_26_10_00_00.1", cm.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/extra.yaml", cm.join("extra.yaml")).unwrap();
    wait_readyz(port, 503, "1 invalid source item", Duration::from_secs(5));
    std::fs::remove_file(&fifo).unwrap();
    wait_until(
        "ready: loop and ..data loaded once",
        Duration::from_secs(10),
        is_ready,
    );
    holds("FIFO, loop and ConfigMap layout");

    // 6. A half-written file: `- from:` cut short would admit every peer to redis.
    let half = dir.join("policies/redis-open.yaml");
    let full = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: redis-open, namespace: production}\nspec:\n  podSelector: {matchLabels: {networking/data: \"true\"}}\n  ingress:\n  - from:\n    - podSelector: {matchLabels: {networking/logic: \"true\"}}\n";
    let cut = full.find("    - podSelector").unwrap();
    let mut f = std::fs::File::create(&half).unwrap();
    f.write_all(&full.as_bytes()[..cut]).unwrap();
    f.flush().unwrap();
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !connects(&lab, "personal/ubuntu", "production/redis", 6379),
            "a half-written file was enforced"
        );
    }
    f.write_all(&full.as_bytes()[cut..]).unwrap();
    drop(f);
    std::thread::sleep(Duration::from_millis(300));
    wait_until(
        "the finished file is loaded",
        Duration::from_secs(10),
        is_ready,
    );
    holds("a half-written file");

    // 7. The same object twice: rejected naming both files, enforcement unchanged.
    std::fs::copy(
        dir.join("policies/logic-from-any-http.yaml"),
        dir.join("dup.yaml"),
    )
    .unwrap();
    wait_readyz(port, 503, "duplicate NetworkPolicy", Duration::from_secs(5));
    holds("a duplicate object");
    std::fs::remove_file(dir.join("dup.yaml")).unwrap();
    wait_until(
        "ready without the duplicate",
        Duration::from_secs(10),
        is_ready,
    );

    // 8. An injection attempt through the directory: rejected by validation, no foreign
    //    table, no bare accept in weir's chains.
    std::fs::write(
        dir.join("inject.yaml"),
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: \"z;insert rule inet weir ingress accept\", namespace: production}\nspec: {podSelector: {}}\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: \"x;add table ip injected\", namespace: production}\nspec: {podSelector: {}}\n",
    )
    .unwrap();
    wait_readyz(port, 503, "invalid source item", Duration::from_secs(5));
    // weir's table and the lab's own Service table (kube-proxy's part), nothing else.
    let tables = nft(&node, &["list", "tables"]);
    assert!(
        tables
            .lines()
            .all(|t| t == "table inet weir" || t == "table ip weir-lab-svc"),
        "{tables}"
    );
    holds("an injection attempt");
    // The log says it once, not on every sync.
    std::fs::remove_file(dir.join("inject.yaml")).unwrap();
    wait_until("ready", Duration::from_secs(10), is_ready);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        logged.lines().filter(|l| l.contains("inject.yaml")).count(),
        1,
        "an invalid item is logged once"
    );
}
