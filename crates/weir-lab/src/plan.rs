//! The lab as data: which namespaces, links, addresses and routes a cluster needs.
//!
//! Topology (routed, like Calico): every pod is a network namespace whose `eth0` holds
//! its /32 (and /128) and a default route to the link-local gateway 169.254.1.1 /
//! fe80::1; the node side of the veth answers ARP for it (proxy_arp) and routes each pod
//! address to its veth. Nodes are namespaces with an uplink to one *fabric* namespace that
//! routes every pod address to its node, so pods on different nodes talk across two
//! forwarding hops, each node enforcing its own pods (egress on the source node, ingress on
//! the destination node). hostNetwork endpoints get a namespace of their own on the fabric,
//! like a remote host: the engine judges their traffic by address (ipBlock), and so does
//! the dataplane. Nothing here touches the caller's namespace except to create veth pairs
//! directly inside lab namespaces.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};
use weir_model::{Cluster, PortKey, Protocol};

/// The link-local gateway every pod routes through (Calico's choice).
const POD_GATEWAY_V4: &str = "169.254.1.1";
const POD_GATEWAY_V6: &str = "fe80::1";
/// The fabric's address on every uplink.
const FABRIC_V4: &str = "169.254.0.254";
const FABRIC_V6: &str = "fe80::fab";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeState {
    pub netns: String,
    pub uplink_v4: Ipv4Addr,
    pub uplink_v6: Ipv6Addr,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodState {
    /// `namespace/name` of the endpoint.
    pub id: String,
    pub netns: String,
    /// Index into `nodes`; `None` for a hostNetwork endpoint (its own host on the fabric).
    pub node: Option<usize>,
    /// The veth end on the node (or fabric) side.
    pub host_if: String,
    pub ips: Vec<IpAddr>,
    /// TCP and UDP ports the lab's listener answers on with the pod's name.
    pub listen: Vec<PortKey>,
    /// For hostNetwork endpoints: the uplink's link-local v6 address.
    pub uplink_v6: Option<Ipv6Addr>,
}

/// Everything needed to rebuild, use or tear down a lab; saved as JSON beside it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabState {
    pub name: String,
    pub fabric: String,
    pub nodes: Vec<NodeState>,
    /// One per endpoint of the cluster, same order.
    pub pods: Vec<PodState>,
    pub serve_pid: Option<u32>,
    #[serde(default)]
    pub services: Vec<ServiceState>,
}

/// A Service of the manifests with a virtual IP, DNATed to its backends on every node (a
/// stand-in for kube-proxy in nftables mode) and named in every pod's hosts file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceState {
    /// `namespace/name`.
    pub id: String,
    pub vip: Ipv4Addr,
    /// (protocol, service port, target port)
    pub ports: Vec<(Protocol, u16, u16)>,
    /// IPv4 addresses of the endpoints the selector picks.
    pub backends: Vec<Ipv4Addr>,
}

/// Where `ip netns exec NS` finds the files it mounts over /etc (hosts, resolv.conf).
pub fn etc_dir(netns: &str) -> String {
    format!("/etc/netns/{netns}")
}

/// The prefix of every namespace of lab `name`: leftovers are easy to find and remove.
pub fn prefix(name: &str) -> String {
    format!("wl-{name}-")
}

/// Lays the cluster out on `nodes` nodes: namespaces, node placement (round robin), and
/// addresses for endpoints that have none (10.244.0.0/16 and fd00:244::/64, skipping
/// addresses in use). Every endpoint gets both families so a connection of either family
/// can be made; the primary family is kept. Returns the cluster as deployed.
pub fn plan(
    cluster: &Cluster,
    name: &str,
    nodes: usize,
    extra_listen: &[PortKey],
) -> (LabState, Cluster) {
    let nodes = nodes.max(1);
    let p = prefix(name);
    let mut deployed = cluster.clone();
    let used: std::collections::HashSet<IpAddr> = cluster
        .endpoints
        .iter()
        .flat_map(|e| e.ips.iter().copied())
        .collect();
    let mut next = 0u32;
    let mut fresh = |v6: bool| loop {
        next += 1;
        let ip: IpAddr = if v6 {
            IpAddr::V6(Ipv6Addr::new(
                0xfd00,
                0x244,
                0,
                0,
                0,
                0,
                (next >> 16) as u16,
                next as u16,
            ))
        } else {
            IpAddr::V4(Ipv4Addr::new(10, 244, (next >> 8) as u8, next as u8))
        };
        if !used.contains(&ip) && !next.is_multiple_of(256) && next % 256 != 255 {
            return ip;
        }
    };
    for ep in &mut deployed.endpoints {
        for v6 in [false, true] {
            if ep.ip_of_family(v6).is_none() {
                let ip = fresh(v6);
                ep.ips.push(ip);
            }
        }
    }
    let node_states = (0..nodes)
        .map(|k| NodeState {
            netns: format!("{p}n{k}"),
            uplink_v4: uplink_v4(k),
            uplink_v6: uplink_v6(k),
        })
        .collect();
    let mut placed = 0;
    let mut hosts = nodes;
    let pods = deployed
        .endpoints
        .iter()
        .enumerate()
        .map(|(i, ep)| {
            let mut listen: Vec<PortKey> = ep
                .ports
                .iter()
                .map(|c| PortKey::new(c.protocol, c.port))
                .chain(extra_listen.iter().copied())
                .filter(|k| k.protocol != Protocol::Sctp)
                .collect();
            listen.sort();
            listen.dedup();
            let (netns, node, host_if, uplink) = if ep.host_network {
                hosts += 1;
                (
                    format!("{p}h{i}"),
                    None,
                    format!("fh{i}"),
                    Some(uplink_v6(hosts - 1)),
                )
            } else {
                placed += 1;
                (
                    format!("{p}p{i}"),
                    Some((placed - 1) % nodes),
                    format!("wp{i}"),
                    None,
                )
            };
            PodState {
                id: ep.id(),
                netns,
                node,
                host_if,
                ips: ep.ips.clone(),
                listen,
                uplink_v6: uplink,
            }
        })
        .collect();
    let services = plan_services(&deployed);
    let state = LabState {
        name: name.to_string(),
        fabric: format!("{p}fab"),
        nodes: node_states,
        pods,
        serve_pid: None,
        services,
    };
    (state, deployed)
}

/// Virtual IPs (the manifest's clusterIP, else 10.96.0.0/16), target ports resolved on the
/// backends (a named targetPort by name and protocol; the first backend's port when
/// replicas differ), backends by selector in the Service's namespace.
fn plan_services(deployed: &Cluster) -> Vec<ServiceState> {
    let mut next = 9u32;
    deployed
        .services
        .iter()
        .filter(|s| !s.selector.is_empty())
        .map(|svc| {
            let vip = match svc.cluster_ip {
                Some(IpAddr::V4(ip)) => ip,
                _ => {
                    next += 1;
                    Ipv4Addr::new(10, 96, (next >> 8) as u8, next as u8)
                }
            };
            let backends: Vec<&weir_model::Endpoint> = deployed
                .endpoints
                .iter()
                .filter(|e| {
                    e.namespace == svc.namespace
                        && svc.selector.iter().all(|(k, v)| e.labels.get(k) == Some(v))
                })
                .collect();
            let ports = svc
                .ports
                .iter()
                .map(|sp| {
                    let target = match &sp.target_port {
                        None => sp.port,
                        Some(weir_model::PortTarget::Number(n)) => *n,
                        Some(weir_model::PortTarget::Named(name)) => backends
                            .iter()
                            .flat_map(|e| &e.ports)
                            .find(|c| c.name.as_deref() == Some(name) && c.protocol == sp.protocol)
                            .map_or(sp.port, |c| c.port),
                    };
                    (sp.protocol, sp.port, target)
                })
                .collect();
            ServiceState {
                id: format!("{}/{}", svc.namespace, svc.name),
                vip,
                ports,
                backends: backends
                    .iter()
                    .flat_map(|e| e.ips.iter())
                    .filter_map(|ip| match ip {
                        IpAddr::V4(v4) => Some(*v4),
                        IpAddr::V6(_) => None,
                    })
                    .collect(),
            }
        })
        .collect()
}

/// The Service proxy of a node: DNAT from each virtual IP and port to a backend, chosen at
/// random per connection; a lab-owned table, separate from weir's enforcement table.
pub fn service_nft(services: &[ServiceState]) -> String {
    let mut out = String::from(
        "table ip weir-lab-svc\ndelete table ip weir-lab-svc\ntable ip weir-lab-svc {\n  chain prerouting {\n    type nat hook prerouting priority dstnat; policy accept;\n",
    );
    for svc in services.iter().filter(|s| !s.backends.is_empty()) {
        for &(protocol, port, target) in &svc.ports {
            let proto = match protocol {
                Protocol::Tcp => "tcp",
                Protocol::Udp => "udp",
                Protocol::Sctp => "sctp",
            };
            let to = if svc.backends.len() == 1 {
                format!("{}:{target}", svc.backends[0])
            } else {
                let map: Vec<String> = svc
                    .backends
                    .iter()
                    .enumerate()
                    .map(|(i, b)| format!("{i} : {b}"))
                    .collect();
                format!(
                    "numgen random mod {} map {{ {} }}:{target}",
                    svc.backends.len(),
                    map.join(", ")
                )
            };
            out.push_str(&format!(
                "    ip daddr {} meta l4proto {proto} th dport {port} dnat ip to {to} comment \"{}\"\n",
                svc.vip, svc.id
            ));
        }
    }
    out.push_str("  }\n}\n");
    out
}

/// A pod's /etc/hosts: itself, and every Service by `name.namespace[.svc.cluster.local]`,
/// plus the bare name for Services of its own namespace.
pub fn hosts_file(pod: &PodState, services: &[ServiceState]) -> String {
    let (namespace, name) = pod.id.split_once('/').unwrap_or(("", &pod.id));
    let mut out = String::from("127.0.0.1 localhost\n::1 localhost\n");
    if let Some(ip) = pod.ips.first() {
        out.push_str(&format!("{ip} {name}\n"));
    }
    for svc in services {
        let (ns, svc_name) = svc.id.split_once('/').unwrap_or(("", &svc.id));
        let short = if ns == namespace {
            format!(" {svc_name}")
        } else {
            String::new()
        };
        out.push_str(&format!(
            "{} {svc_name}.{ns}.svc.cluster.local {svc_name}.{ns}{short}\n",
            svc.vip
        ));
    }
    out
}

fn uplink_v4(k: usize) -> Ipv4Addr {
    Ipv4Addr::new(169, 254, 100 + (k / 250) as u8, (k % 250) as u8 + 1)
}

fn uplink_v6(k: usize) -> Ipv6Addr {
    Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0x100, k as u16 + 1)
}

/// One unit of work for a [`crate::host::Host`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// `ip -batch` lines, in a namespace or (None) in the caller's.
    Batch(Option<String>, Vec<String>),
    Sysctl(String, Vec<String>),
    /// An nft script for a lab-owned table (the Service proxy), inside a namespace.
    Nft(String, String),
    /// A file the lab owns (`/etc/netns/NS/hosts`: Service names inside a pod).
    File(String, String),
}

fn prefix_len(ip: &IpAddr) -> u8 {
    if ip.is_ipv6() {
        128
    } else {
        32
    }
}

const ROUTER_SYSCTLS: [&str; 5] = [
    "net.ipv4.ip_forward=1",
    "net.ipv6.conf.all.forwarding=1",
    "net.ipv4.conf.all.rp_filter=0",
    "net.ipv4.conf.default.rp_filter=0",
    "net.ipv4.conf.all.proxy_arp=1",
];

/// Everything `lab up` runs, in order.
pub fn steps(state: &LabState) -> Vec<Step> {
    let mut out = Vec::new();
    let mut all: Vec<&str> = vec![state.fabric.as_str()];
    all.extend(state.nodes.iter().map(|n| n.netns.as_str()));
    all.extend(state.pods.iter().map(|p| p.netns.as_str()));
    out.push(Step::Batch(
        None,
        all.iter().map(|n| format!("netns add {n}")).collect(),
    ));
    // veth pairs created directly inside lab namespaces.
    let mut links = Vec::new();
    for (k, node) in state.nodes.iter().enumerate() {
        links.push(format!(
            "link add name up0 netns {} type veth peer name fn{k} netns {}",
            node.netns, state.fabric
        ));
    }
    for pod in &state.pods {
        let (inner, outer_ns) = match pod.node {
            Some(k) => ("eth0", state.nodes[k].netns.as_str()),
            None => ("up0", state.fabric.as_str()),
        };
        links.push(format!(
            "link add name {inner} netns {} type veth peer name {} netns {outer_ns}",
            pod.netns, pod.host_if
        ));
    }
    out.push(Step::Batch(None, links));
    for ns in std::iter::once(&state.fabric).chain(state.nodes.iter().map(|n| &n.netns)) {
        let mut settings: Vec<String> = ROUTER_SYSCTLS.iter().map(|s| s.to_string()).collect();
        // Answer proxy ARP at once (the kernel delays it up to 0.8 s by default), as Calico does.
        for pod in state.pods.iter().filter(|p| {
            state.nodes.iter().position(|n| &n.netns == ns) == p.node && p.node.is_some()
        }) {
            settings.push(format!("net.ipv4.neigh.{}.proxy_delay=0", pod.host_if));
        }
        out.push(Step::Sysctl(ns.clone(), settings));
    }
    // Fabric: a /32 to each uplink, each pod address via its node, host addresses direct.
    let mut fabric = vec!["link set lo up".to_string()];
    for (k, node) in state.nodes.iter().enumerate() {
        fabric.push(format!("link set fn{k} up"));
        fabric.push(format!("addr add {FABRIC_V4}/32 dev fn{k}"));
        fabric.push(format!("addr add {FABRIC_V6}/64 dev fn{k} nodad"));
        fabric.push(format!("route add {}/32 dev fn{k}", node.uplink_v4));
    }
    for pod in &state.pods {
        match pod.node {
            Some(k) => {
                let node = &state.nodes[k];
                for ip in &pod.ips {
                    let via = if ip.is_ipv6() {
                        node.uplink_v6.to_string()
                    } else {
                        node.uplink_v4.to_string()
                    };
                    fabric.push(format!(
                        "route add {ip}/{} via {via} dev fn{k}",
                        prefix_len(ip)
                    ));
                }
            }
            None => {
                fabric.push(format!("link set {} up", pod.host_if));
                fabric.push(format!("addr add {FABRIC_V4}/32 dev {}", pod.host_if));
                fabric.push(format!("addr add {FABRIC_V6}/64 dev {} nodad", pod.host_if));
                for ip in &pod.ips {
                    fabric.push(format!(
                        "route add {ip}/{} dev {}",
                        prefix_len(ip),
                        pod.host_if
                    ));
                }
            }
        }
    }
    out.push(Step::Batch(Some(state.fabric.clone()), fabric));
    // Nodes: uplink, default route to the fabric, a /32 per local pod on its veth.
    for (k, node) in state.nodes.iter().enumerate() {
        let mut lines = vec![
            "link set lo up".to_string(),
            "link set up0 up".to_string(),
            format!("addr add {}/32 dev up0", node.uplink_v4),
            format!("addr add {}/64 dev up0 nodad", node.uplink_v6),
            format!("route add {FABRIC_V4}/32 dev up0"),
            format!("route add default via {FABRIC_V4} dev up0"),
            format!("route add default via {FABRIC_V6} dev up0"),
        ];
        for pod in state.pods.iter().filter(|p| p.node == Some(k)) {
            lines.push(format!("link set {} up", pod.host_if));
            lines.push(format!(
                "addr add {POD_GATEWAY_V6}/64 dev {} nodad",
                pod.host_if
            ));
            for ip in &pod.ips {
                lines.push(format!(
                    "route add {ip}/{} dev {}",
                    prefix_len(ip),
                    pod.host_if
                ));
            }
        }
        out.push(Step::Batch(Some(node.netns.clone()), lines));
    }
    // Pods (and hostNetwork hosts).
    for pod in &state.pods {
        let dev = if pod.node.is_some() { "eth0" } else { "up0" };
        let mut lines = vec!["link set lo up".to_string(), format!("link set {dev} up")];
        for ip in &pod.ips {
            let nodad = if ip.is_ipv6() { " nodad" } else { "" };
            lines.push(format!("addr add {ip}/{} dev {dev}{nodad}", prefix_len(ip)));
        }
        match (pod.node, pod.uplink_v6) {
            (Some(_), _) => {
                lines.push(format!("route add {POD_GATEWAY_V4}/32 dev eth0 scope link"));
                lines.push(format!("route add default via {POD_GATEWAY_V4} dev eth0"));
                lines.push(format!("route add default via {POD_GATEWAY_V6} dev eth0"));
            }
            (None, uplink) => {
                if let Some(ll) = uplink {
                    lines.push(format!("addr add {ll}/64 dev up0 nodad"));
                }
                lines.push(format!("route add {FABRIC_V4}/32 dev up0"));
                lines.push(format!("route add default via {FABRIC_V4} dev up0"));
                lines.push(format!("route add default via {FABRIC_V6} dev up0"));
            }
        }
        out.push(Step::Batch(Some(pod.netns.clone()), lines));
    }
    if !state.services.is_empty() {
        let script = service_nft(&state.services);
        for node in &state.nodes {
            out.push(Step::Nft(node.netns.clone(), script.clone()));
        }
        for pod in &state.pods {
            out.push(Step::File(
                format!("{}/hosts", etc_dir(&pod.netns)),
                hosts_file(pod, &state.services),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_model::{Endpoint, EndpointKind};

    fn endpoint(name: &str, ips: &[&str], host_network: bool) -> Endpoint {
        Endpoint {
            namespace: "x".into(),
            name: name.into(),
            kind: EndpointKind::Pod,
            labels: Default::default(),
            ports: vec![],
            ips: ips.iter().map(|s| s.parse().unwrap()).collect(),
            host_network,
            origin: Default::default(),
        }
    }

    fn cluster() -> Cluster {
        Cluster {
            endpoints: vec![
                endpoint("a", &["10.0.0.1"], false),
                endpoint("b", &["fd00::2"], false),
                endpoint("c", &[], false),
                endpoint("h", &["10.0.0.9"], true),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn every_endpoint_gets_both_families_and_keeps_its_primary() {
        let (state, deployed) = plan(
            &cluster(),
            "t",
            2,
            &[
                PortKey::new(Protocol::Tcp, 80),
                PortKey::new(Protocol::Sctp, 80),
            ],
        );
        let fam = |e: &weir_model::Endpoint| {
            (
                e.ips[0].is_ipv6(),
                e.ips.iter().filter(|i| i.is_ipv6()).count(),
            )
        };
        assert_eq!(fam(&deployed.endpoints[0]), (false, 1));
        assert_eq!(fam(&deployed.endpoints[1]), (true, 1));
        assert_eq!(deployed.endpoints[2].ips.len(), 2);
        let all: std::collections::HashSet<_> = deployed
            .endpoints
            .iter()
            .flat_map(|e| e.ips.clone())
            .collect();
        assert_eq!(all.len(), 8, "addresses are distinct");
        // Round robin over nodes; the hostNetwork endpoint is a host on the fabric.
        let nodes: Vec<_> = state.pods.iter().map(|p| p.node).collect();
        assert_eq!(nodes, vec![Some(0), Some(1), Some(0), None]);
        // SCTP is probed with raw sockets, not listened on.
        assert_eq!(state.pods[0].listen, vec![PortKey::new(Protocol::Tcp, 80)]);
    }

    #[test]
    fn only_lab_namespaces_are_touched() {
        let (state, _) = plan(&cluster(), "t", 2, &[]);
        for step in steps(&state) {
            match step {
                Step::Batch(Some(ns), _) | Step::Sysctl(ns, _) | Step::Nft(ns, _) => {
                    assert!(ns.starts_with("wl-t-"), "{ns}")
                }
                // In the caller's namespace: only creating lab namespaces and veth pairs
                // whose both ends are placed inside lab namespaces.
                Step::Batch(None, lines) => {
                    for l in lines {
                        let ok = l.starts_with("netns add wl-t-")
                            || (l.starts_with("link add name ")
                                && l.matches(" netns wl-t-").count() == 2);
                        assert!(ok, "{l}");
                    }
                }
                Step::File(path, _) => assert!(path.starts_with("/etc/netns/wl-t-"), "{path}"),
            }
        }
    }

    #[test]
    fn services_get_a_virtual_ip_a_dnat_rule_and_names() {
        let mut c = cluster();
        c.endpoints[0].labels.insert("app".into(), "web".into());
        c.endpoints[0].ports.push(weir_model::ContainerPort {
            name: Some("http".into()),
            protocol: Protocol::Tcp,
            port: 8080,
        });
        c.services.push(weir_model::Service {
            namespace: "x".into(),
            name: "web".into(),
            selector: [("app".to_string(), "web".to_string())].into(),
            ports: vec![weir_model::ServicePort {
                name: None,
                protocol: Protocol::Tcp,
                port: 80,
                target_port: Some(weir_model::PortTarget::Named("http".into())),
                node_port: None,
            }],
            cluster_ip: None,
            service_type: Default::default(),
            external_local: false,
            source_ranges: Vec::new(),
            origin: Default::default(),
        });
        let (state, _) = plan(&c, "t", 1, &[]);
        let svc = &state.services[0];
        assert_eq!(svc.backends, vec!["10.0.0.1".parse::<Ipv4Addr>().unwrap()]);
        assert_eq!(svc.ports, vec![(Protocol::Tcp, 80, 8080)]);
        let nft = service_nft(&state.services);
        assert!(
            nft.contains(&format!(
                "ip daddr {} meta l4proto tcp th dport 80 dnat ip to 10.0.0.1:8080",
                svc.vip
            )),
            "{nft}"
        );
        let hosts = hosts_file(&state.pods[1], &state.services);
        assert!(
            hosts.contains(&format!("{} web.x.svc.cluster.local web.x web\n", svc.vip)),
            "{hosts}"
        );
        let steps = steps(&state);
        assert!(steps
            .iter()
            .any(|s| matches!(s, Step::Nft(ns, _) if ns == "wl-t-n0")));
    }

    #[test]
    fn a_real_host_run_records_every_step_with_the_fake() {
        let host = crate::host::FakeHost::default();
        let (state, _) = plan(&cluster(), "t", 2, &[]);
        for step in steps(&state) {
            match step {
                Step::Batch(ns, lines) => {
                    crate::host::Host::ip_batch(&host, ns.as_deref(), &lines).unwrap()
                }
                Step::Sysctl(ns, s) => crate::host::Host::sysctl(&host, &ns, &s).unwrap(),
                _ => {}
            }
        }
        let log = host.log.lock().unwrap();
        // The pod on node 1 is routed on node 1 and, via node 1's uplink, on the fabric.
        let b = &state.pods[1];
        assert!(log
            .iter()
            .any(|l| l == &format!("[wl-t-n1] ip route add {}/128 dev wp1", b.ips[0])));
        assert!(log.iter().any(|l| l.starts_with(&format!(
            "[wl-t-fab] ip route add {}/128 via fe80::100:2 dev fn1",
            b.ips[0]
        ))));
    }
}
