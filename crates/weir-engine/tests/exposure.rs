//! Exposure against the per-connection evaluator: on random clusters with tiers, every
//! endpoint's symbolic exposure admits exactly the peers `explain` admits on that side —
//! for the pods that exist, for pods that did not exist when it was computed (new labels,
//! a new namespace), and for outside addresses.

use proptest::prelude::*;
use weir_engine::{Engine, Side};
use weir_model::{Cluster, Direction, Namespace, NAMESPACE_NAME_LABEL};

/// The namespace's labels (a known one: the generator declares every namespace it uses).
fn ns_labels(cluster: &Cluster, name: &str) -> weir_model::Labels {
    cluster.namespace(name).expect("declared").labels.clone()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn exposure_admits_exactly_what_explain_admits(
        cluster in weir_gen::scenario::cluster_with_tiers(),
        newcomers in proptest::collection::vec(weir_gen::scenario::endpoint(), 0..5),
        new_ns_labels in proptest::collection::btree_map(
            proptest::sample::select(&["app", "tier", "role"][..]),
            proptest::sample::select(&["a", "b", "c"][..]), 0..3),
        to_new_ns in proptest::collection::vec(any::<bool>(), 5),
    ) {
        // Each exposure is computed before the newcomers exist.
        let before = Engine::new(&cluster);
        let existing = cluster.endpoints.len();
        let mut exposures = Vec::new();
        for d in &cluster.endpoints {
            exposures.push([
                before.exposure(d, Direction::Ingress).expect("small"),
                before.exposure(d, Direction::Egress).expect("small"),
            ]);
        }
        // Then they arrive: pods of new labels, some in a namespace no one had seen.
        let mut after = cluster.clone();
        let mut labels = new_ns_labels
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<weir_model::Labels>();
        labels.insert(NAMESPACE_NAME_LABEL.into(), "w".into());
        after.namespaces.push(Namespace { name: "w".into(), labels, origin: None });
        for (i, (mut e, _)) in newcomers.into_iter().enumerate() {
            e.name = format!("new{i}");
            if to_new_ns[i] {
                e.namespace = "w".into();
            }
            after.endpoints.push(e);
        }
        let engine = Engine::new(&after);
        let outside = weir_gen::scenario::outside_addresses();
        for (d, [ingress, egress]) in exposures.iter().enumerate() {
            for (p, peer) in after.endpoints.iter().enumerate() {
                if p == d {
                    continue;
                }
                let peer_ns = ns_labels(&after, &peer.namespace);
                for probe in weir_gen::scenario::probes() {
                    for (exposure, src, dst) in [
                        (ingress, p, d),
                        (egress, d, p),
                    ] {
                        if !exposure.inexact.is_empty() {
                            continue; // named egress ports: said, not claimed
                        }
                        // The family of the connection is the destination's; the peer
                        // needs an address of it.
                        let v6 = after.endpoints[dst].primary_is_v6();
                        let Some(ip) = peer.ip_of_family(v6) else { continue };
                        let e = engine.explain_in_family(
                            Side::Endpoint(src), Side::Endpoint(dst), probe.protocol, probe.port, v6);
                        let half = match exposure.direction {
                            Direction::Ingress => &e.ingress,
                            Direction::Egress => &e.egress,
                        };
                        let claimed = if peer.host_network {
                            exposure.allows_address(&ip, probe.protocol, probe.port)
                        } else {
                            exposure.allows_pod(&peer_ns, &peer.labels, &ip, probe.protocol, probe.port)
                        };
                        prop_assert_eq!(
                            claimed, half.allowed,
                            "{:?} of {} for {} ({}) on {}: grants {:#?}",
                            exposure.direction, after.endpoints[d].id(), peer.id(), ip, probe,
                            exposure.grants
                        );
                    }
                }
            }
            if d >= existing {
                continue;
            }
            for ip in &outside {
                for probe in weir_gen::scenario::probes() {
                    for (exposure, from_outside) in [(ingress, true), (egress, false)] {
                        if !exposure.inexact.is_empty() {
                            continue;
                        }
                        let (src, dst) = if from_outside {
                            (Side::Address(*ip), Side::Endpoint(d))
                        } else {
                            (Side::Endpoint(d), Side::Address(*ip))
                        };
                        let e = engine.explain_in_family(src, dst, probe.protocol, probe.port, ip.is_ipv6());
                        let half = if from_outside { &e.ingress } else { &e.egress };
                        prop_assert_eq!(
                            exposure.allows_address(ip, probe.protocol, probe.port), half.allowed,
                            "{:?} of {} for {} on {}: grants {:#?}",
                            exposure.direction, after.endpoints[d].id(), ip, probe, exposure.grants
                        );
                    }
                }
            }
        }
    }
}
