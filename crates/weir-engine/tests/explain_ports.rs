//! `explain_ports` (what `weir analyze --explain` prints) against the class evaluator: on
//! random clusters with tiers, for every pair of endpoints and every outside address, the
//! ranges cover every TCP/UDP/SCTP port once, the allowed ones are exactly what `allowed`
//! says, and each range's reasons are those `explain` gives for every port in it.

use proptest::prelude::*;
use weir_engine::{Engine, PortSet, Side};
use weir_model::Protocol;

/// `allowed` without other protocols: what ports can explain.
fn ports_only(p: &PortSet) -> PortSet {
    Protocol::ALL
        .into_iter()
        .flat_map(|proto| {
            p.ranges(proto)
                .iter()
                .map(move |&(lo, hi)| PortSet::range(proto, lo, hi))
        })
        .fold(PortSet::none(), |acc, r| acc.union(&r))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn ranges_partition_the_ports_and_agree_with_the_evaluators(
        cluster in weir_gen::scenario::cluster_with_tiers(),
    ) {
        let engine = Engine::new(&cluster);
        let n = cluster.endpoints.len();
        let mut pairs: Vec<(Side, Side)> = Vec::new();
        for a in 0..n {
            for b in 0..n {
                if a != b {
                    pairs.push((Side::Endpoint(a), Side::Endpoint(b)));
                }
            }
            // Outside addresses meet a pod in its primary family (as `analyze` models them).
            for ip in weir_gen::scenario::outside_addresses()
                .into_iter()
                .filter(|ip| ip.is_ipv6() == cluster.endpoints[a].primary_is_v6())
            {
                pairs.push((Side::Address(ip), Side::Endpoint(a)));
                pairs.push((Side::Endpoint(a), Side::Address(ip)));
            }
        }
        for (src, dst) in pairs {
            let ranges = engine.explain_ports(src, dst);
            let mut covered = PortSet::none();
            let mut allowed = PortSet::none();
            for r in &ranges {
                prop_assert!(covered.intersect(&r.ports).is_empty(), "overlap at {}", r.ports);
                covered = covered.union(&r.ports);
                if r.allowed {
                    allowed = allowed.union(&r.ports);
                }
                // Every port of the range is explained alike: its edges and a middle one.
                for proto in Protocol::ALL {
                    for &(lo, hi) in r.ports.ranges(proto) {
                        for port in [lo, lo + (hi - lo) / 2, hi] {
                            let v6 = match (src, dst) {
                                (Side::Address(ip), _) | (_, Side::Address(ip)) => ip.is_ipv6(),
                                (_, Side::Endpoint(d)) => cluster.endpoints[d].primary_is_v6(),
                            };
                            let e = engine.explain_in_family(src, dst, proto, port, v6);
                            prop_assert_eq!(&e.egress, &r.egress);
                            prop_assert_eq!(&e.ingress, &r.ingress);
                        }
                    }
                }
            }
            prop_assert_eq!(covered, ports_only(&PortSet::all()));
            prop_assert_eq!(
                &allowed, &ports_only(&engine.allowed(src, dst)),
                "{:?} → {:?}", src, dst
            );
        }
    }
}
