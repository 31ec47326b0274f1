//! `weir synth`'s engine half: on random clusters and random observed connections, the
//! synthesised policies allow every observed connection, and — where every workload has a
//! label of its own — nothing else between the sides involved.

use proptest::prelude::*;
use weir_engine::synth::{prove, synthesise, Observed, SynthOptions};
use weir_engine::{Engine, Side};
use weir_model::{Cluster, Mode, PortKey, Protocol};

/// The scenario's pods without their policies, each with a label of its own when `unique`.
fn bare(mut cluster: Cluster, unique: bool) -> Cluster {
    cluster.policies.clear();
    cluster.cluster_policies.clear();
    if unique {
        for (i, e) in cluster.endpoints.iter_mut().enumerate() {
            e.labels.insert("app".into(), format!("w{i}"));
        }
    }
    cluster
}

/// Observed connections picked by index: between endpoints, and from an outside address.
fn observed(cluster: &Cluster, picks: &[(usize, usize, u8, u16, bool)]) -> Vec<Observed> {
    let n = cluster.endpoints.len();
    let outside = weir_gen::scenario::outside_addresses();
    picks
        .iter()
        .map(|&(a, b, proto, port, from_outside)| {
            // An outside address of the family the destination is reached in.
            let v6 = cluster.endpoints[b % n].primary_is_v6();
            let same: Vec<_> = outside.iter().filter(|ip| ip.is_ipv6() == v6).collect();
            Observed {
                src: if from_outside {
                    Side::Address(*same[a % same.len()])
                } else {
                    Side::Endpoint(a % n)
                },
                dst: Side::Endpoint(b % n),
                port: PortKey::new(Protocol::ALL[proto as usize % 3], port),
            }
        })
        .collect()
}

fn with(cluster: &Cluster, flows: &[Observed], egress: bool) -> (Cluster, Vec<Observed>) {
    let engine = Engine::new(cluster);
    let synthesis = synthesise(
        &engine,
        flows,
        SynthOptions {
            egress,
            mode: Mode::Enforce,
        },
    );
    let mut after = cluster.clone();
    after
        .policies
        .extend(synthesis.policies.into_iter().map(|s| s.policy));
    (after, flows.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn every_observed_connection_is_allowed_and_unique_labels_allow_nothing_more(
        cluster in weir_gen::scenario::cluster(),
        picks in proptest::collection::vec((0usize..16, 0usize..16, 0u8..3, prop_oneof![Just(80u16), Just(53), Just(8080)], proptest::bool::weighted(0.15)), 1..12),
        unique in any::<bool>(),
        egress in any::<bool>(),
    ) {
        let cluster = bare(cluster, unique);
        // A hostNetwork pod sends from its addresses: only in their families.
        let flows: Vec<Observed> = observed(&cluster, &picks)
            .into_iter()
            .filter(|f| match (f.src, f.dst) {
                (Side::Endpoint(a), Side::Endpoint(b)) if cluster.endpoints[a].host_network => {
                    let v6 = cluster.endpoints[b].primary_is_v6();
                    let ips = &cluster.endpoints[a].ips;
                    ips.is_empty() || ips.iter().any(|ip| ip.is_ipv6() == v6)
                }
                _ => true,
            })
            .collect();
        let (after, flows) = with(&cluster, &flows, egress);
        let engine = Engine::new(&after);
        // Synthesis leaves out (and says so) what no policy can name: connections to a
        // hostNetwork pod, and from one without addresses.
        let ep = |s: Side| match s {
            Side::Endpoint(i) => Some(&after.endpoints[i]),
            Side::Address(_) => None,
        };
        let expressible: Vec<Observed> = flows
            .iter()
            .filter(|f| {
                !ep(f.dst).is_some_and(|e| e.host_network)
                    && !ep(f.src).is_some_and(|e| e.host_network && e.ips.is_empty())
            })
            .copied()
            .collect();
        let proof = prove(&engine, &expressible);
        prop_assert!(proof.missing.is_empty(), "refused: {:?}\n{after:#?}", proof.missing);
        // With a label per workload, a surplus can only be what no selector can cut: what a
        // hostNetwork pod sends or receives, and (without egress policies) traffic to
        // addresses.
        if unique {
            let host = |s: Side| matches!(s, Side::Endpoint(i) if after.endpoints[i].host_network);
            for (a, b, ports) in &proof.surplus {
                prop_assert!(
                    host(*a) || host(*b) || (!egress && matches!(b, Side::Address(_))),
                    "{} → {}: {ports} allowed but not observed\n{after:#?}",
                    engine.name(*a),
                    engine.name(*b)
                );
            }
        }
    }
}

/// Pods that no selector tells apart: the connection observed from one is allowed from
/// the other too, and the proof says so instead of hiding it.
#[test]
fn what_selectors_cannot_tell_apart_is_reported() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/todos");
    let mut cluster = weir_manifest::load_paths(&[root], Default::default())
        .unwrap()
        .cluster;
    cluster.policies.clear();
    let engine = Engine::new(&cluster);
    let side = |id: &str| engine.resolve(id).unwrap();
    // production/ubuntu carries only networking/logic, which todos carries too.
    let flows = vec![Observed {
        src: side("production/ubuntu"),
        dst: side("production/redis"),
        port: PortKey::new(Protocol::Tcp, 6379),
    }];
    // The surplus, once every observed connection is allowed.
    let surplus = |flows: &[Observed]| -> Vec<String> {
        let (after, flows) = with(&cluster, flows, false);
        let engine = Engine::new(&after);
        let proof = prove(&engine, &flows);
        assert!(proof.missing.is_empty(), "{:?}", proof.missing);
        let name = |s: &Side| engine.name(*s);
        let shown = proof.surplus.iter();
        shown
            .map(|(a, b, p)| format!("{} → {}: {p}", name(a), name(b)))
            .collect()
    };
    // Only production/ubuntu and redis are involved: the surplus is between them, none.
    let alone = surplus(&flows);
    assert!(alone.is_empty(), "{alone:?}");
    // With todos involved (it calls nothing, but is called), the logic label lets it reach
    // redis: reported.
    let mut more = flows.clone();
    more.push(Observed {
        src: side("personal/ubuntu"),
        dst: side("production/todos"),
        port: PortKey::new(Protocol::Tcp, 80),
    });
    assert_eq!(
        surplus(&more),
        vec!["production/todos → production/redis: TCP 6379"]
    );
}

/// Selectors by the workload's stable labels: never the per-revision or per-release ones,
/// one label when one tells the workload apart, the conventional names first.
#[test]
fn selectors_take_the_fewest_stable_labels() {
    let pod = |name: &str, labels: &[(&str, &str)]| weir_model::Endpoint {
        namespace: "shop".into(),
        name: name.into(),
        kind: weir_model::EndpointKind::Deployment,
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ports: vec![],
        ips: vec![],
        host_network: false,
        origin: Default::default(),
    };
    let chart = [
        ("app.kubernetes.io/name", "shop"),
        ("app.kubernetes.io/instance", "prod"),
        ("app.kubernetes.io/version", "1.2.3"),
        ("helm.sh/chart", "shop-1.2.3"),
    ];
    // A bare Pod of the chart: its own metadata has the tool's label, which no template
    // has; it must not become the pod's identity.
    let bare = [
        ("app.kubernetes.io/name", "shop"),
        ("app.kubernetes.io/managed-by", "Helm"),
        ("networking/logic", "true"),
    ];
    let with = |extra: &[(&'static str, &'static str)]| {
        let mut l: Vec<(&str, &str)> = chart.to_vec();
        l.extend_from_slice(extra);
        l
    };
    let cluster = Cluster {
        endpoints: vec![
            pod(
                "api",
                &with(&[("app", "api"), ("pod-template-hash", "5d9")]),
            ),
            pod("db", &with(&[("app", "db"), ("tier", "data")])),
            pod("twin-a", &[("role", "twin")]),
            pod("twin-b", &[("role", "twin")]),
            pod("client", &bare),
            pod("api-2", &with(&[("networking/logic", "true")])),
        ],
        ..Cluster::default()
    };
    let engine = Engine::new(&cluster);
    let shown = |i: usize| weir_engine::synth::selector_for(&engine, i).match_labels;
    let labels = |l: &[(&str, &str)]| -> weir_model::Labels {
        l.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(shown(0), labels(&[("app", "api")]));
    assert_eq!(shown(1), labels(&[("app", "db")]));
    // Two workloads no label tells apart: their one label, which selects both.
    assert_eq!(shown(2), labels(&[("role", "twin")]));
    // The client's stable labels also select api-2: the one label that selects the same.
    assert_eq!(shown(4), labels(&[("networking/logic", "true")]));
}
