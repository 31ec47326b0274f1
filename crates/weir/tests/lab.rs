//! Privileged tests: real namespaces, real nftables, real packets. They need root (CI is
//! root); elsewhere they say loudly that they were skipped. They run one at a time (a
//! lock), each lab with a unique name, and every lab is torn down by a guard even when an
//! assertion fails.
// The lab binary: `cargo test --features lab` (scripts/test.sh runs it).
#![cfg(feature = "lab")]

mod common;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use weir_engine::matrix::Verdicts;
use weir_engine::{Engine, Side};
use weir_lab::host::RealHost;
use weir_lab::probe::{self, Job, ProbeOptions};
use weir_lab::{Lab, LabOptions};
use weir_manifest::{load_paths, LoadOptions};
use weir_model::Cluster;
use weir_model::{PortKey, Protocol};
use weir_nft::apply::{Mode, Nft, NftCli};
use weir_nft::{compile, Scope};

static SERIAL: Mutex<()> = Mutex::new(());
static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Takes the lock, or returns None (with a loud message) when the test may not run.
fn privileged(test: &str) -> Option<std::sync::MutexGuard<'static, ()>> {
    if !common::root_or_skip(test) {
        return None;
    }
    Some(SERIAL.lock().unwrap_or_else(|e| e.into_inner()))
}

/// Tears the lab down when dropped (also on panic).
struct Up(Lab);

impl Drop for Up {
    fn drop(&mut self) {
        let _ = Lab::down(&self.0.state.name, &RealHost);
    }
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

fn load(paths: &[PathBuf]) -> Cluster {
    load_paths(paths, LoadOptions::default())
        .expect("manifests load")
        .cluster
}

fn up(cluster: &Cluster, nodes: usize, probes: &[PortKey]) -> Up {
    let name = format!(
        "t{}x{}",
        std::process::id() % 100_000,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let options = LabOptions {
        name,
        nodes,
        listen: probes.to_vec(),
        exe: PathBuf::from(env!("CARGO_BIN_EXE_weir")),
        no_listen: vec![],
    };
    Up(Lab::up(cluster, &options, &RealHost).expect("lab up"))
}

fn probe_all(lab: &Lab, probes: &[PortKey]) -> Verdicts {
    let (v, problems) =
        weir_lab::verify::probe_matrix(&lab.state, probes, ProbeOptions::default(), &|_| {})
            .expect("probing");
    assert!(problems.is_empty(), "probe problems: {problems:#?}");
    v
}

fn assert_agree(context: &str, engine: &Verdicts, observed: &Verdicts) {
    let diff = engine.disagreements(observed);
    assert!(
        diff.is_empty(),
        "{context}: engine vs probes disagree on {} of {} probes: {diff:#?}",
        diff.len(),
        engine.cells.len()
    );
}

fn todos_probes() -> Vec<PortKey> {
    PortKey::parse_list("TCP/80,TCP/6379,UDP/80,SCTP/6379").unwrap()
}

#[test]
fn seed_scenario_probed_equals_engine() {
    let Some(_lock) = privileged("seed_scenario_probed_equals_engine") else {
        return;
    };
    let cluster = load(&[repo("examples/todos")]);
    let probes = todos_probes();
    let lab = up(&cluster, 2, &probes);
    let engine = Engine::new(&lab.0.deployed);
    let applied = Lab::enforcers(&lab.0.state)
        .apply(&engine)
        .expect("enforce");
    assert!(applied.iter().all(|a| a.mode == Mode::Full));
    let observed = probe_all(&lab.0, &probes);
    let expected = engine.verdicts(&probes);
    assert_agree("todos", &expected, &observed);
    // The lesson's own claims, on the wire.
    let id = |s: &str| observed.endpoints.iter().position(|e| e == s).unwrap();
    let (personal, ubuntu, redis, todos) = (
        id("personal/ubuntu"),
        id("production/ubuntu"),
        id("production/redis"),
        id("production/todos"),
    );
    assert_eq!(
        observed.get(personal, redis, 1),
        Some(false),
        "personal → redis 6379 dropped"
    );
    assert_eq!(
        observed.get(ubuntu, redis, 1),
        Some(true),
        "logic tier → redis 6379 allowed"
    );
    assert_eq!(
        observed.get(personal, todos, 0),
        Some(true),
        "anyone → todos 80 allowed"
    );
    assert_eq!(
        observed.get(ubuntu, redis, 3),
        Some(false),
        "SCTP on the Redis port is not TCP"
    );
}

#[test]
fn upstream_cases_probed_on_tcp_udp_sctp() {
    let Some(_lock) = privileged("upstream_cases_probed_on_tcp_udp_sctp") else {
        return;
    };
    let base = repo("tests/e2e/base.yaml");
    let probes = PortKey::parse_list("TCP/80,TCP/81,UDP/80,UDP/81,SCTP/80,SCTP/81").unwrap();
    let lab = up(&load(std::slice::from_ref(&base)), 2, &probes);
    let mut enforcer = Lab::enforcers(&lab.0.state);
    let mut cases: Vec<PathBuf> = std::fs::read_dir(repo("tests/e2e/cases"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    assert!(cases.len() >= 20);
    let mut modes = Vec::new();
    // One lab for every case: each case's table is reached from the previous one by a delta.
    for case in &cases {
        let cluster = Lab::deploy(
            &load(&[base.clone(), case.join("policy.yaml")]),
            &lab.0.state,
        );
        let engine = Engine::new(&cluster);
        modes.extend(
            enforcer
                .apply(&engine)
                .expect("enforce")
                .into_iter()
                .map(|a| a.mode),
        );
        let observed = probe_all(&lab.0, &probes);
        assert_agree(
            &case.display().to_string(),
            &engine.verdicts(&probes),
            &observed,
        );
    }
    assert!(
        modes.contains(&Mode::Delta),
        "later cases are applied as deltas: {modes:?}"
    );
}

#[test]
fn random_scenarios_engine_equals_dataplane() {
    let Some(_lock) = privileged("random_scenarios_engine_equals_dataplane") else {
        return;
    };
    random_scenarios(weir_gen::scenario::cluster(), 20);
}

/// Admin and Baseline tiers with NetworkPolicies: the dataplane's tier chains (Accept,
/// Deny, Pass) equal the engine on real probes.
#[test]
fn random_tier_scenarios_engine_equals_dataplane() {
    let Some(_lock) = privileged("random_tier_scenarios_engine_equals_dataplane") else {
        return;
    };
    random_scenarios(weir_gen::scenario::cluster_with_tiers(), 30);
}

/// `WEIR_LAB_SCENARIOS` (default `default_n`) generated clusters, each in a fresh lab,
/// probed against the engine (`WEIR_LAB_SEED` picks them).
fn random_scenarios(
    strategy: impl proptest::strategy::Strategy<Value = Cluster>,
    default_n: usize,
) {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let n: usize = std::env::var("WEIR_LAB_SCENARIOS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default_n);
    let seed: u64 = std::env::var("WEIR_LAB_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20261125);
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes),
    );
    let probes: Vec<PortKey> = weir_gen::scenario::probes();
    let (mut deltas, mut with_policies) = (0, 0);
    for k in 0..n {
        let cluster = strategy.new_tree(&mut runner).unwrap().current();
        let lab = up(&cluster, 2, &probes);
        let deployed = &lab.0.deployed;
        // First the pods without policy (full replace), then the scenario's policies as a
        // delta: the probes below check the delta path as much as the compiler.
        let mut enforcer = Lab::enforcers(&lab.0.state);
        let bare = Cluster {
            policies: vec![],
            cluster_policies: vec![],
            ..deployed.clone()
        };
        enforcer
            .apply(&Engine::new(&bare))
            .expect("enforce without policies");
        let engine = Engine::new(deployed);
        let applied = enforcer.apply(&engine).expect("enforce scenario");
        deltas += applied.iter().filter(|a| a.mode == Mode::Delta).count();
        with_policies +=
            usize::from(!cluster.policies.is_empty() || !cluster.cluster_policies.is_empty());
        let observed = probe_all(&lab.0, &probes);
        // Audited policies are compiled too, but the wire must do what the rest alone do.
        let enforced = deployed.clone().without_audited();
        assert_agree(
            &format!("scenario {k} (seed {seed}): {cluster:#?}"),
            &Engine::new(&enforced).verdicts(&probes),
            &observed,
        );
    }
    assert!(
        with_policies == 0 || deltas > 0,
        "policies were applied as deltas"
    );
}

#[test]
fn delta_reaches_the_same_table_as_a_full_replace() {
    let Some(_lock) = privileged("delta_reaches_the_same_table_as_a_full_replace") else {
        return;
    };
    let base = repo("tests/e2e/base.yaml");
    let probes = PortKey::parse_list("TCP/80").unwrap();
    let lab = up(&load(std::slice::from_ref(&base)), 1, &probes);
    let node = NftCli {
        netns: Some(lab.0.state.nodes[0].netns.clone()),
    };
    let case = |name: &str| {
        Lab::deploy(
            &load(&[
                base.clone(),
                repo("tests/e2e/cases").join(name).join("policy.yaml"),
            ]),
            &lab.0.state,
        )
    };
    let listing = |text: &str| {
        node.run(text, false).expect("apply");
        normalise(&node.list().expect("list"))
    };
    for (from, to) in [
        ("named-port-egress", "cidr-with-except"),
        ("ingress-and-egress", "named-port-ingress"),
        // Cluster-wide tiers appearing, changing, and going (their maps and chains with
        // them: a map's elements jump to chains deleted in the same transaction).
        ("named-port-ingress", "tier-baseline-pass"),
        ("tier-baseline-pass", "tier-admin-deny-beats-networkpolicy"),
        ("tier-admin-deny-beats-networkpolicy", "named-port-ingress"),
    ] {
        let (a, b) = (case(from), case(to));
        let (ra, rb) = (
            compile(&Engine::new(&a), Scope::All),
            compile(&Engine::new(&b), Scope::All),
        );
        let full = listing(&rb.render());
        listing(&ra.render());
        let delta = rb.delta(&ra).expect("delta possible");
        assert!(!delta.contains("delete table"));
        assert_eq!(listing(&delta), full, "{from} → {to}");
    }
}

/// A listing with counters dropped and each object's lines sorted, since chain order in a
/// listing follows creation order.
fn normalise(listing: &str) -> Vec<Vec<String>> {
    let mut blocks: Vec<Vec<String>> = Vec::new();
    for line in listing.lines() {
        let depth = line.len() - line.trim_start_matches('\t').len();
        let text = line
            .trim()
            .split(" counter packets")
            .next()
            .unwrap()
            .to_string();
        if depth == 1 && !text.is_empty() {
            blocks.push(vec![text]);
        } else if depth >= 2 && !text.is_empty() {
            blocks.last_mut().expect("object header first").push(text);
        }
    }
    blocks.sort();
    blocks
}

#[test]
fn cross_node_traffic_is_enforced_like_same_node_traffic() {
    let Some(_lock) = privileged("cross_node_traffic_is_enforced_like_same_node_traffic") else {
        return;
    };
    let cluster = load(&[repo("examples/todos")]);
    let probes = todos_probes();
    let mut seen = Vec::new();
    for nodes in [1, 3] {
        let lab = up(&cluster, nodes, &probes);
        let placement: Vec<Option<usize>> = lab.0.state.pods.iter().map(|p| p.node).collect();
        if nodes == 3 {
            let distinct: std::collections::HashSet<_> = placement.iter().collect();
            assert!(distinct.len() >= 3, "pods spread over nodes: {placement:?}");
        }
        let engine = Engine::new(&lab.0.deployed);
        Lab::enforcers(&lab.0.state)
            .apply(&engine)
            .expect("enforce");
        let observed = probe_all(&lab.0, &probes);
        assert_agree(
            &format!("{nodes} node(s)"),
            &engine.verdicts(&probes),
            &observed,
        );
        seen.push(observed.cells);
    }
    assert_eq!(
        seen[0], seen[1],
        "one node and three nodes observe the same matrix"
    );
}

#[test]
fn replacing_the_table_never_exposes_a_third_verdict() {
    let Some(_lock) = privileged("replacing_the_table_never_exposes_a_third_verdict") else {
        return;
    };
    let all = load(&[repo("examples/todos")]);
    let probes = PortKey::parse_list("TCP/80,TCP/6379").unwrap();
    let lab = up(&all, 1, &probes);
    // Set A: the lesson's three policies. Set B: without logic-from-any-http.
    let a = lab.0.deployed.clone();
    let mut b = a.clone();
    b.policies.retain(|p| p.name != "logic-from-any-http");
    assert_ne!(a.policies.len(), b.policies.len());
    let (ea, eb) = (Engine::new(&a), Engine::new(&b));
    let node = NftCli {
        netns: Some(lab.0.state.nodes[0].netns.clone()),
    };
    let scripts = [
        compile(&ea, Scope::All).render(),
        compile(&eb, Scope::All).render(),
    ];
    let (va, vb) = (ea.verdicts(&probes), eb.verdicts(&probes));
    // Cells where both sets deny exist (a moment without rules would allow them), and cells
    // where both allow (a half-built table would deny them).
    assert!(va
        .cells
        .iter()
        .zip(&vb.cells)
        .any(|(x, y)| *x == Some(false) && *y == Some(false)));
    assert!(va
        .cells
        .iter()
        .zip(&vb.cells)
        .any(|(x, y)| *x == Some(true) && *y == Some(true)));
    node.run(&scripts[0], false).unwrap();
    let n = lab.0.state.pods.len();
    let mut jobs = Vec::new();
    for src in 0..n {
        for dst in 0..n {
            for p in &probes {
                jobs.push(Job {
                    src,
                    dst,
                    protocol: p.protocol,
                    port: p.port,
                });
            }
        }
    }
    let done = AtomicBool::new(false);
    let replaced = AtomicUsize::new(0);
    let mut rounds = 0;
    std::thread::scope(|s| {
        s.spawn(|| {
            for k in 0..100 {
                node.run(&scripts[k % 2], false).expect("replace");
                replaced.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
            done.store(true, Ordering::Relaxed);
        });
        // PortKey rounds until the 100 replacements are done (bounded: at most 200 rounds).
        while !done.load(Ordering::Relaxed) && rounds < 200 {
            let options = ProbeOptions {
                timeout: Duration::from_millis(300),
                parallel: 64,
            };
            let outcomes = probe::run(&lab.0.state, &jobs, options, &|_| {}).expect("probing");
            for (i, (job, o)) in jobs.iter().zip(&outcomes).enumerate() {
                let seen = o.allowed().unwrap_or_else(|| panic!("{job:?}: {o:?}"));
                let (x, y) = (va.cells[i].unwrap(), vb.cells[i].unwrap());
                assert!(
                    seen == x || seen == y,
                    "{job:?} observed {seen}, set A says {x}, set B says {y}"
                );
            }
            rounds += 1;
        }
    });
    assert_eq!(replaced.load(Ordering::Relaxed), 100);
    assert!(
        rounds >= 2,
        "probes ran during the replacements ({rounds} rounds)"
    );
}

#[test]
fn intents_hold_on_real_traffic() {
    let Some(_lock) = privileged("intents_hold_on_real_traffic") else {
        return;
    };
    let run = |paths: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_weir"))
            .current_dir(repo(""))
            .args(["test", "examples/todos/intents.yaml", "--probe", "-q"])
            .args(paths)
            .output()
            .unwrap()
    };
    let o = run(&["examples/todos"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{text}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(text.ends_with("5 passed, 0 failed\n"), "{text}");
    // Without the data-tier policy, Redis is open: the probes see it too.
    let dir = std::env::temp_dir().join(format!("weir-intents-probe-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    for f in [
        "namespaces.yaml",
        "todos.yaml",
        "redis.yaml",
        "ubuntu.yaml",
        "policies/logic-from-any-http.yaml",
    ] {
        std::fs::copy(repo("examples/todos").join(f), dir.join(f)).unwrap();
    }
    let o = run(&[dir.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&o.stdout);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(o.status.code(), Some(3), "{text}");
    assert!(
        text.contains("probed: personal/ubuntu → production/redis: allows TCP/6379"),
        "{text}"
    );
}

/// A pod's egress to its own node's addresses is delivered on the input hook, not
/// forwarded; weir filters it there too, so a verdict does not depend on where the pod is
/// scheduled: every pod probes both nodes (its own and the other), both families, against
/// the engine, under a `nodes` Deny for one namespace and an egress default-deny for a pod.
#[test]
fn egress_to_the_pods_own_node_is_filtered_like_any_other_node() {
    let Some(_lock) = privileged("egress_to_the_pods_own_node_is_filtered_like_any_other_node")
    else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("weir-own-node-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let _cleanup = Cleanup(dir.clone());
    std::fs::write(
        dir.join("policies.yaml"),
        "apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: personal-not-to-workers}
spec:
  tier: Admin
  priority: 10
  subject: {namespaces: {matchLabels: {kubernetes.io/metadata.name: personal}}}
  egress:
  - name: no-workers
    action: Deny
    to: [{nodes: {matchLabels: {weir.test/role: worker}}}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: logic-egress-none, namespace: production}
spec:
  podSelector: {matchLabels: {networking/logic: \"true\"}}
  policyTypes: [Egress]
",
    )
    .unwrap();
    let paths = [repo("examples/todos"), dir.join("policies.yaml")];
    let lab = up(&load(&paths), 2, &todos_probes());
    let state = &lab.0.state;
    // Each node's IPv4 uplink address is routed on the fabric; its IPv6 one is link-local,
    // so each node also gets a routed IPv6 address on its loopback.
    let node_v6 =
        |k: usize| -> std::net::Ipv6Addr { format!("fd00:200::{}", k + 1).parse().unwrap() };
    for (k, n) in state.nodes.iter().enumerate() {
        let v6 = node_v6(k);
        for (ns, args) in [
            (&n.netns, format!("addr add {v6}/128 dev lo")),
            (
                &state.fabric,
                format!("-6 route add {v6}/128 via {} dev fn{k}", n.uplink_v6),
            ),
        ] {
            let args: Vec<&str> = args.split(' ').collect();
            let status = std::process::Command::new("ip")
                .args(["-n", ns])
                .args(&args)
                .status()
                .unwrap();
            assert!(status.success(), "ip -n {ns} {args:?}");
        }
    }
    let addresses = |k: usize| [IpAddr::V4(state.nodes[k].uplink_v4), IpAddr::V6(node_v6(k))];
    // The Node objects, now that the lab has given the nodes their addresses: node 0 is a
    // worker (the Deny's peer), node 1 is not.
    let nodes: String = state
        .nodes
        .iter()
        .enumerate()
        .map(|(k, _)| {
            let role = if k == 0 { "worker" } else { "edge" };
            let [v4, v6] = addresses(k);
            format!(
                "---\napiVersion: v1\nkind: Node\nmetadata: {{name: node-{k}, labels: {{weir.test/role: {role}}}}}\nstatus: {{addresses: [{{type: InternalIP, address: {v4}}}, {{type: InternalIP, address: \"{v6}\"}}]}}\n"
            )
        })
        .collect();
    std::fs::write(dir.join("nodes.yaml"), nodes).unwrap();
    let cluster = load(&[paths[0].clone(), paths[1].clone(), dir.join("nodes.yaml")]);
    assert_eq!(cluster.nodes.len(), 2, "both Node objects load");
    let deployed = Lab::deploy(&cluster, state);
    let engine = Engine::new(&deployed);
    Lab::enforcers(state).apply(&engine).expect("enforce");
    // A listener on each node's own addresses, in the node's namespace.
    const PORT: u16 = 9443;
    let mut listeners = Vec::new();
    for (k, n) in state.nodes.iter().enumerate() {
        for ip in addresses(k) {
            listeners.push(
                weir_netns::netns::run_in(&n.netns, move || {
                    std::net::TcpListener::bind(SocketAddr::new(ip, PORT))
                })
                .expect("listen on the node's address"),
            );
        }
    }
    let (mut denied_own, mut denied_other, mut allowed) = (0, 0, 0);
    for (i, pod) in state.pods.iter().enumerate() {
        let Some(home) = pod.node else { continue };
        for k in 0..state.nodes.len() {
            for ip in addresses(k) {
                let expected = engine
                    .allowed(Side::Endpoint(i), Side::Address(ip))
                    .contains(Protocol::Tcp, PORT);
                let observed = weir_netns::netns::run_in(&pod.netns, move || {
                    Ok(std::net::TcpStream::connect_timeout(
                        &SocketAddr::new(ip, PORT),
                        Duration::from_millis(300),
                    )
                    .is_ok())
                })
                .unwrap();
                let own = if k == home { "its own" } else { "another" };
                assert_eq!(
                    observed, expected,
                    "{} → node-{k} ({own} node) {ip}:{PORT}: engine says {expected}",
                    pod.id
                );
                match (expected, k == home) {
                    (true, _) => allowed += 1,
                    (false, true) => denied_own += 1,
                    (false, false) => denied_other += 1,
                }
            }
        }
    }
    // The scenario must exercise what it is about: denials to a pod's own node and to
    // another, and allowed traffic (both families reach the nodes at all).
    assert!(
        denied_own >= 2 && denied_other >= 2 && allowed >= 4,
        "own {denied_own}, other {denied_other}, allowed {allowed}"
    );
}

/// Removes a test's scratch directory when dropped.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
