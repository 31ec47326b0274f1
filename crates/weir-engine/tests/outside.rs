//! Traffic from outside against the per-connection evaluator: on random clusters with
//! tiers, every endpoint behind a NodePort/LoadBalancer Service (Local or Cluster, with and
//! without source ranges and Node objects) and an Ingress; each verdict admits exactly the
//! sources `explain` admits on the backend's side (and `allowed` for given controllers).

use proptest::prelude::*;
use weir_engine::outside::{entries, Source, Verdict};
use weir_engine::{Engine, Side};
use weir_model::{
    Cluster, Ingress, IngressBackend, PortTarget, Protocol, RouteKind, Service, ServicePort,
    ServiceType,
};

/// A Service selecting endpoint `i` by its labels (others with the same labels too).
/// With `named`, the target is the name of one of its containerPorts when it has one.
fn service(
    cluster: &Cluster,
    i: usize,
    local: bool,
    ranges: bool,
    port: u16,
    named: bool,
) -> Service {
    let ep = &cluster.endpoints[i];
    let target = match ep.ports.iter().find_map(|c| c.name.clone()) {
        Some(name) if named => PortTarget::Named(name),
        _ => PortTarget::Number(port),
    };
    Service {
        namespace: ep.namespace.clone(),
        name: format!("s{i}"),
        selector: ep.labels.clone(),
        ports: vec![ServicePort {
            name: Some("p".into()),
            protocol: Protocol::Tcp,
            port: 1000,
            target_port: Some(target),
            node_port: Some(30000),
        }],
        cluster_ip: None,
        service_type: ServiceType::LoadBalancer,
        external_local: local,
        source_ranges: if ranges {
            vec![
                "10.0.0.0/24".parse().unwrap(),
                "fd00::/120".parse().unwrap(),
            ]
        } else {
            Vec::new()
        },
        origin: Default::default(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn every_way_in_admits_what_explain_admits(
        mut cluster in weir_gen::scenario::cluster_with_tiers(),
        local in proptest::collection::vec(any::<bool>(), 8),
        ranges in proptest::collection::vec(any::<bool>(), 8),
        port in proptest::sample::select(&[53u16, 80, 443][..]),
        keep_nodes in any::<bool>(),
        controller in proptest::option::of(0usize..8),
        named in proptest::collection::vec(any::<bool>(), 8),
    ) {
        if !keep_nodes {
            cluster.nodes.clear();
        }
        let n = cluster.endpoints.len();
        // Non-empty selectors only: a Service without one has no backends in the input.
        let fronted: Vec<usize> = (0..n).filter(|&i| !cluster.endpoints[i].labels.is_empty()).collect();
        for &i in &fronted {
            let s = service(&cluster, i, local[i], ranges[i], port, named[i]);
            cluster.ingresses.push(Ingress {
                kind: RouteKind::Ingress,
                namespace: s.namespace.clone(),
                name: format!("ing{i}"),
                served_by: Vec::new(),
                backends: vec![IngressBackend { route: "*/".into(), namespace: s.namespace.clone(), service: s.name.clone(), port: PortTarget::Named("p".into()) }],
                origin: Default::default(),
            });
            cluster.services.push(s);
        }
        let controllers: Option<Vec<usize>> = controller.map(|c| vec![c % n]);
        let engine = Engine::new(&cluster);
        let nodes: Vec<std::net::IpAddr> = cluster.nodes.iter().flat_map(|n| n.addresses.clone()).collect();
        let found = entries(&engine, controllers.as_deref()).expect("small");
        for e in &found {
            let b = &cluster.endpoints[e.backend];
            // The port the traffic arrives on: the number, or the backend's TCP port of that name.
            let svc_of = |via: &str| {
                cluster.services.iter().find(|s| via.contains(&format!("/{} ", s.name)) || via.ends_with(&format!("/{}", s.name)) || via.contains(&format!("→ {}:", s.name))).unwrap()
            };
            match &svc_of(&e.via).ports[0].target_port {
                Some(PortTarget::Named(name)) => prop_assert!(
                    b.ports.iter().any(|c| c.name.as_ref() == Some(name) && c.protocol == Protocol::Tcp && c.port == e.port.port),
                    "{}: {} on {:?}", e.via, e.port, b.ports
                ),
                _ => prop_assert_eq!(e.port.port, port),
            }
            let port = e.port.port;
            let admits = |ip: std::net::IpAddr| {
                engine
                    .explain_in_family(Side::Address(ip), Side::Endpoint(e.backend), Protocol::Tcp, port, ip.is_ipv6())
                    .ingress
                    .allowed
            };
            match (&e.source, &e.verdict) {
                (Source::Clients, Verdict::Clients(a)) => {
                    let svc = svc_of(&e.via);
                    let lb = e.via.starts_with("LoadBalancer");
                    // Outside addresses, nodes and hostNetwork pods: only the first are clients.
                    let host_network = cluster.endpoints.iter().filter(|p| p.host_network).flat_map(|p| p.ips.clone());
                    for ip in weir_gen::scenario::outside_addresses().into_iter().chain(nodes.clone()).chain(host_network.clone()) {
                        let in_ranges = !lb || svc.source_ranges.is_empty() || svc.source_ranges.iter().any(|r| r.contains(&ip));
                        let inside = nodes.contains(&ip) || host_network.clone().any(|h| h == ip);
                        let want = admits(ip) && in_ranges && !inside;
                        prop_assert_eq!(a.contains(&ip), want, "{} {}: {:?}", e.via, ip, a);
                    }
                }
                (Source::Nodes, Verdict::Nodes { admitted, refused }) => {
                    prop_assert!(!nodes.is_empty());
                    for ip in admitted {
                        prop_assert!(admits(*ip), "{} {}", e.via, ip);
                    }
                    for ip in refused {
                        prop_assert!(!admits(*ip), "{} {}", e.via, ip);
                    }
                    prop_assert_eq!(admitted.len() + refused.len(), nodes.len());
                }
                (Source::Nodes, Verdict::NodesIn(a)) => {
                    prop_assert!(nodes.is_empty());
                    for ip in weir_gen::scenario::outside_addresses() {
                        prop_assert_eq!(a.contains(&ip), admits(ip), "{} {}", e.via, ip);
                    }
                }
                (Source::Controller, Verdict::Controllers { admitted, refused }) => {
                    for &c in admitted.iter() {
                        prop_assert!(c == e.backend || engine.allowed(Side::Endpoint(c), Side::Endpoint(e.backend)).contains(Protocol::Tcp, port));
                    }
                    for &c in refused.iter() {
                        prop_assert!(!engine.allowed(Side::Endpoint(c), Side::Endpoint(e.backend)).contains(Protocol::Tcp, port));
                    }
                }
                (Source::Controller, Verdict::ControllerAmong(terms)) => {
                    prop_assert!(terms.iter().all(|t| matches!(t.who, weir_engine::exposure::Who::Pods { .. })), "{:?}", terms);
                    // Every pod of the cluster the backend admits is among the terms.
                    for (c, pod) in cluster.endpoints.iter().enumerate() {
                        if c == e.backend || pod.host_network {
                            continue;
                        }
                        let v6 = b.primary_is_v6();
                        let Some(ip) = pod.ip_of_family(v6) else { continue };
                        let ns = cluster.namespace(&pod.namespace).unwrap().labels.clone();
                        let among = terms.iter().any(|t| t.contains_pod(&ns, &pod.labels, &ip));
                        let half = engine.explain_in_family(Side::Endpoint(c), Side::Endpoint(e.backend), Protocol::Tcp, port, v6).ingress.allowed;
                        prop_assert_eq!(among, half, "{} from {}", e.via, pod.id());
                    }
                }
                other => prop_assert!(false, "{:?}", other),
            }
        }
        // Every fronted endpoint has its ways in: the load balancer, the node port and the
        // Ingress — when its own Service's target resolves on it.
        for &i in &fronted {
            let own = cluster.services.iter().find(|s| s.name == format!("s{i}")).unwrap();
            let resolves = match &own.ports[0].target_port {
                Some(PortTarget::Named(name)) => cluster.endpoints[i]
                    .ports
                    .iter()
                    .any(|c| c.name.as_ref() == Some(name) && c.protocol == Protocol::Tcp),
                _ => true,
            };
            let name = &own.name;
            let ways = found
                .iter()
                .filter(|e| {
                    e.backend == i
                        && (e.via.contains(&format!("/{name} "))
                            || e.via.ends_with(&format!("/{name}"))
                            || e.via.contains(&format!("→ {name}:")))
                })
                .count();
            prop_assert_eq!(ways, if resolves { 3 } else { 0 }, "{} through {}", cluster.endpoints[i].id(), name);
        }
    }
}
