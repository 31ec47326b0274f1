//! The engine (both evaluators) against the naive oracle on random clusters.

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use weir_engine::{Engine, Options, Side};
use weir_model::Cluster;
use weir_oracle::Side as OracleSide;

fn check(cluster: &Cluster, options: Options) -> Result<(), TestCaseError> {
    let engine = Engine::with_options(cluster, options);
    let n = cluster.endpoints.len();
    let mut nodes: Vec<(Side, OracleSide)> = (0..n)
        .map(|i| (Side::Endpoint(i), OracleSide::Pod(i)))
        .collect();
    for ip in weir_gen::scenario::outside_addresses() {
        // An address that is a pod's is that pod in the oracle too only via ipBlock; keep them apart.
        if !cluster.endpoints.iter().any(|e| e.ips.contains(&ip)) {
            nodes.push((Side::Address(ip), OracleSide::Ip(ip)));
        }
    }
    let flows = engine.flows();
    for &(src, osrc) in &nodes {
        for &(dst, odst) in &nodes {
            if matches!(src, Side::Address(_)) && matches!(dst, Side::Address(_)) {
                continue;
            }
            // An outside address only talks to endpoints of its own family.
            if let (Side::Address(ip), Side::Endpoint(d)) = (src, dst) {
                if ip.is_ipv6() != cluster.endpoints[d].primary_is_v6() {
                    continue;
                }
            }
            let allowed = engine.allowed(src, dst);
            for weir_model::PortKey {
                protocol: proto,
                port,
            } in weir_gen::scenario::probes()
            {
                let want = if options.ipblock_matches_pods {
                    weir_oracle::allowed(cluster, osrc, odst, proto, port)
                } else {
                    continue;
                };
                prop_assert_eq!(
                    allowed.contains(proto, port),
                    want,
                    "class evaluator: {:?} -> {:?} {}/{} (allowed set: {})",
                    src,
                    dst,
                    proto,
                    port,
                    allowed
                );
                let e = engine.explain(src, dst, proto, port);
                prop_assert_eq!(
                    e.allowed,
                    want,
                    "explain: {:?} -> {:?} {}/{}",
                    src,
                    dst,
                    proto,
                    port
                );
            }
            // flows() must list exactly the non-empty pairs between distinct endpoints.
            if let (Side::Endpoint(a), Side::Endpoint(b)) = (src, dst) {
                if a != b {
                    let (ca, cb) = (engine.class_of_endpoint(a), engine.class_of_endpoint(b));
                    let listed = flows
                        .list
                        .iter()
                        .find(|f| f.src == ca && f.dst == cb)
                        .map(|f| flows.ports(f).clone());
                    prop_assert_eq!(listed.unwrap_or_default(), allowed.clone());
                }
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, max_shrink_iters: 4000, ..ProptestConfig::default() })]

    #[test]
    fn engine_agrees_with_oracle(cluster in weir_gen::scenario::cluster()) {
        check(&cluster, Options::default())?;
    }

    /// Admin and Baseline tiers (both API versions, equal priorities, Accept/Deny/Pass,
    /// pod, namespace, network and node peers) mixed with NetworkPolicies.
    #[test]
    fn engine_agrees_with_oracle_on_tiers(cluster in weir_gen::scenario::cluster_with_tiers()) {
        check(&cluster, Options::default())?;
    }
}

/// With ipBlock-matches-pods off, pod addresses never match ipBlocks: compare on a
/// cluster whose policies have no ipBlock peers, where the switch must not matter.
#[test]
fn ipblock_switch_only_affects_ipblocks() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    for _ in 0..200 {
        let mut cluster = weir_gen::scenario::cluster()
            .new_tree(&mut runner)
            .unwrap()
            .current();
        for p in &mut cluster.policies {
            for r in p.ingress.iter_mut().chain(p.egress.iter_mut()) {
                r.peers
                    .retain(|peer| !matches!(peer, weir_model::Peer::IpBlock { .. }));
            }
        }
        let a = Engine::new(&cluster);
        let b = Engine::with_options(
            &cluster,
            Options {
                ipblock_matches_pods: false,
            },
        );
        for i in 0..cluster.endpoints.len() {
            for j in 0..cluster.endpoints.len() {
                assert_eq!(
                    a.allowed(Side::Endpoint(i), Side::Endpoint(j)),
                    b.allowed(Side::Endpoint(i), Side::Endpoint(j))
                );
            }
        }
    }
}

/// Large enough for `flows()` to split destinations across threads: its merged
/// list must equal the pairwise verdicts, with port sets mapped back correctly.
#[test]
fn parallel_flows_equal_pairwise_verdicts() {
    use weir_model::*;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    // Random policies from the scenario generator, over many distinct endpoints.
    let mut cluster = weir_gen::scenario::cluster()
        .new_tree(&mut runner)
        .unwrap()
        .current();
    while cluster.policies.len() < 12 {
        let more = weir_gen::scenario::cluster()
            .new_tree(&mut runner)
            .unwrap()
            .current();
        cluster.policies.extend(more.policies);
    }
    let protocols = [Protocol::Tcp, Protocol::Udp, Protocol::Sctp];
    cluster.endpoints = (0..600)
        .map(|i| Endpoint {
            namespace: ["x", "y", "z"][i % 3].to_string(),
            name: format!("pod{i}"),
            kind: EndpointKind::Pod,
            labels: [
                ("app", ["a", "b", "c"][i % 3]),
                ("tier", ["a", "b", "c"][(i / 3) % 3]),
                ("id", &i.to_string()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .chain((i % 5 == 0).then(|| ("role".to_string(), "a".to_string())))
            .collect(),
            // A distinct number per pod behind a shared name: named ports resolve to many
            // different port sets, one class per pod.
            ports: vec![ContainerPort {
                name: Some(["http", "dns", "metrics"][i % 3].into()),
                protocol: protocols[i % 3],
                port: 8000 + i as u16,
            }],
            ips: vec![format!("10.0.{}.{}", i / 250, i % 250 + 1).parse().unwrap()],
            host_network: false,
            origin: Default::default(),
        })
        .collect();
    let engine = Engine::new(&cluster);
    let flows = engine.flows();
    assert!(
        engine.stats().endpoint_classes >= 256,
        "too few classes to exercise the split: {}",
        engine.stats().endpoint_classes
    );
    let mut listed = std::collections::HashMap::new();
    for f in &flows.list {
        assert!(
            listed
                .insert((f.src, f.dst), flows.ports(f).clone())
                .is_none(),
            "pair listed twice"
        );
    }
    let n = cluster.endpoints.len();
    for a in (0..n).step_by(7) {
        for b in (0..n).step_by(5) {
            if a == b {
                continue;
            }
            let (ca, cb) = (engine.class_of_endpoint(a), engine.class_of_endpoint(b));
            let want = engine.allowed(Side::Endpoint(a), Side::Endpoint(b));
            assert_eq!(
                listed.get(&(ca, cb)).cloned().unwrap_or_default(),
                want,
                "{a} -> {b}"
            );
            let (proto, port) = (protocols[b % 3], 8000 + b as u16);
            assert_eq!(
                want.contains(proto, port),
                weir_oracle::allowed(
                    &cluster,
                    OracleSide::Pod(a),
                    OracleSide::Pod(b),
                    proto,
                    port
                )
            );
        }
    }
}
