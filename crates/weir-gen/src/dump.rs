//! Large kubectl-shaped dumps (`kubectl get -A -o json` of Namespaces,
//! Deployments, ReplicaSets, Pods and NetworkPolicies) for benchmarks.
//!
//! The policy mix is what platform teams write: a default-deny per namespace,
//! tier-to-tier allows on named ports, cross-namespace allows by team with port
//! ranges, egress with DNS and ipBlock/except, matchExpressions of every operator.

use std::io::{self, Write};

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{json, Value};

#[derive(Clone, Copy, Debug)]
pub struct DumpSpec {
    pub pods: usize,
    pub namespaces: usize,
    pub policies: usize,
    /// Pods per Deployment.
    pub replicas: usize,
    pub seed: u64,
}

impl Default for DumpSpec {
    fn default() -> Self {
        DumpSpec {
            pods: 10_000,
            namespaces: 100,
            policies: 2_000,
            replicas: 5,
            seed: 1,
        }
    }
}

const ENVS: [&str; 3] = ["prod", "staging", "dev"];
const VERSIONS: [&str; 2] = ["v1", "v2"];
const TIERS: [&str; 4] = ["web", "api", "db", "cache"];
const TEAMS: [&str; 8] = [
    "payments", "search", "identity", "catalog", "ads", "infra", "data", "mobile",
];

fn ns_name(i: usize) -> String {
    format!("ns-{i:03}")
}

fn namespace(i: usize) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {
            "name": ns_name(i),
            "uid": format!("ns-uid-{i}"),
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {
                "kubernetes.io/metadata.name": ns_name(i),
                "team": TEAMS[i % TEAMS.len()],
                "env": ENVS[i % 3],
            }
        },
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"}
    })
}

fn app_labels(ns: usize, app: usize) -> Value {
    json!({
        "app": format!("app-{app}"),
        "tier": TIERS[app % TIERS.len()],
        "version": VERSIONS[app % 2],
        "team": TEAMS[ns % TEAMS.len()],
    })
}

fn pod_spec() -> Value {
    json!({
        "containers": [{
            "name": "main",
            "image": "registry.example/app:1.2.3",
            "ports": [
                {"name": "http", "containerPort": 8080, "protocol": "TCP"},
                {"name": "metrics", "containerPort": 9090, "protocol": "TCP"},
                {"name": "dns", "containerPort": 5353, "protocol": "UDP"}
            ],
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
            "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}},
            "imagePullPolicy": "IfNotPresent",
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File"
        }],
        "restartPolicy": "Always",
        "dnsPolicy": "ClusterFirst",
        "serviceAccountName": "default",
        "terminationGracePeriodSeconds": 30
    })
}

fn selector(rng: &mut StdRng, ns: usize, apps: usize) -> Value {
    match rng.random_range(0..4) {
        0 => json!({"matchLabels": {"app": format!("app-{}", rng.random_range(0..apps.max(1)))}}),
        1 => json!({"matchLabels": {"tier": TIERS[rng.random_range(0..4)]}}),
        2 => {
            json!({"matchExpressions": [{"key": "tier", "operator": "In", "values": [TIERS[rng.random_range(0..4)], TIERS[rng.random_range(0..4)]]}]})
        }
        _ => {
            json!({"matchLabels": {"team": TEAMS[ns % TEAMS.len()]}, "matchExpressions": [{"key": "version", "operator": "NotIn", "values": ["v1"]}]})
        }
    }
}

fn policy(rng: &mut StdRng, ns: usize, k: usize, apps: usize, namespaces: usize) -> Value {
    let name = format!("np-{k}");
    let meta = json!({"name": name, "namespace": ns_name(ns), "uid": format!("np-{ns}-{k}"), "generation": 1});
    let spec = if k == 0 {
        json!({"podSelector": {}, "policyTypes": ["Ingress"]})
    } else {
        match rng.random_range(0..5) {
            // Tier to tier inside the namespace, on a named port.
            0 => json!({
                "podSelector": selector(rng, ns, apps),
                "policyTypes": ["Ingress"],
                "ingress": [{"from": [{"podSelector": {"matchLabels": {"tier": TIERS[rng.random_range(0..4)]}}}],
                             "ports": [{"protocol": "TCP", "port": "http"}]}]
            }),
            // Another team's namespaces, a port range.
            1 => json!({
                "podSelector": selector(rng, ns, apps),
                "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": TEAMS[rng.random_range(0..TEAMS.len())]}},
                                       "podSelector": {"matchExpressions": [{"key": "tier", "operator": "Exists"}]}}],
                             "ports": [{"protocol": "TCP", "port": 8080, "endPort": 8090}]}]
            }),
            // Egress: DNS anywhere, a database range minus one namespace's pods, and a peer namespace.
            2 => json!({
                "podSelector": selector(rng, ns, apps),
                "policyTypes": ["Egress"],
                "egress": [
                    {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]},
                    {"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": [format!("10.{}.0.0/16", rng.random_range(0..namespaces.clamp(1, 256)))]}}],
                     "ports": [{"protocol": "TCP", "port": 5432}]},
                    {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns_name(rng.random_range(0..namespaces.max(1)))}}}]}
                ]
            }),
            // From outside: a partner range, metrics scraping from a monitoring namespace.
            3 => {
                let partner = rng.random_range(0..8);
                json!({
                "podSelector": selector(rng, ns, apps),
                "ingress": [
                    {"from": [{"ipBlock": {"cidr": format!("203.0.{partner}.0/24"), "except": [format!("203.0.{partner}.{}/26", 64 * rng.random_range(0..4))]}}]},
                    {"from": [{"namespaceSelector": {"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["dev"]}]}}],
                     "ports": [{"port": "metrics"}]}
                ]
                })
            }
            // Allow within the namespace on any port, SCTP signalling from anywhere.
            _ => json!({
                "podSelector": selector(rng, ns, apps),
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [{"from": [{"podSelector": {}}]}, {"ports": [{"protocol": "SCTP", "port": 3868}]}],
                "egress": [{"to": [{"podSelector": {}}, {"namespaceSelector": {"matchLabels": {"team": TEAMS[rng.random_range(0..TEAMS.len())]}}}]}]
            }),
        }
    };
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta, "spec": spec})
}

/// Writes the dump as one `kind: List` JSON document; returns the number of items.
pub fn write_dump(spec: DumpSpec, out: &mut dyn Write) -> io::Result<usize> {
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let namespaces = spec.namespaces.max(1);
    let deployments = spec.pods.div_ceil(spec.replicas.max(1));
    let mut items = 0usize;
    let mut first = true;
    let mut emit = |out: &mut dyn Write, v: Value| -> io::Result<()> {
        if !first {
            out.write_all(b",\n")?;
        }
        first = false;
        items += 1;
        serde_json::to_writer(&mut *out, &v).map_err(io::Error::other)
    };
    out.write_all(b"{\"apiVersion\": \"v1\", \"kind\": \"List\", \"metadata\": {\"resourceVersion\": \"\"}, \"items\": [\n")?;
    for n in 0..namespaces {
        emit(out, namespace(n))?;
    }
    let apps_per_ns = deployments.div_ceil(namespaces);
    let mut pod = 0usize;
    let mut in_ns = vec![0usize; namespaces];
    for d in 0..deployments {
        let ns = d % namespaces;
        let app = d / namespaces;
        let labels = app_labels(ns, app);
        let name = format!("app-{app}");
        let hash = format!("{:x}", 0x5f00_0000u64 + d as u64);
        let dep_uid = format!("dep-{d}");
        let rs_uid = format!("rs-{d}");
        emit(
            out,
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": name, "namespace": ns_name(ns), "uid": dep_uid, "labels": labels, "generation": 1},
                "spec": {"replicas": spec.replicas, "selector": {"matchLabels": {"app": name}},
                         "template": {"metadata": {"labels": labels}, "spec": pod_spec()}},
                "status": {"replicas": spec.replicas, "readyReplicas": spec.replicas}
            }),
        )?;
        let mut rs_labels = labels.clone();
        rs_labels["pod-template-hash"] = json!(hash);
        emit(
            out,
            json!({
                "apiVersion": "apps/v1", "kind": "ReplicaSet",
                "metadata": {"name": format!("{name}-{hash}"), "namespace": ns_name(ns), "uid": rs_uid, "labels": rs_labels,
                             "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name, "uid": dep_uid, "controller": true, "blockOwnerDeletion": true}]},
                "spec": {"replicas": spec.replicas, "selector": {"matchLabels": {"app": name, "pod-template-hash": hash}},
                         "template": {"metadata": {"labels": rs_labels}, "spec": pod_spec()}},
                "status": {"replicas": spec.replicas}
            }),
        )?;
        for r in 0..spec.replicas {
            if pod >= spec.pods {
                break;
            }
            // The namespace picks the /16 (ns % 256); namespaces sharing a /16 (more than
            // 256) take distinct quarters of it: unique up to 1,024 namespaces of 16,000 pods.
            let i = in_ns[ns];
            in_ns[ns] += 1;
            let third = (ns / 256 % 4) * 64 + (i / 250) % 64;
            let ip = format!("10.{}.{third}.{}", ns % 256, i % 250 + 1);
            emit(
                out,
                json!({
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": format!("{name}-{hash}-{r:05}"), "namespace": ns_name(ns), "uid": format!("pod-{pod}"),
                                 "labels": rs_labels, "creationTimestamp": "2026-01-01T00:00:00Z",
                                 "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{name}-{hash}"), "uid": rs_uid, "controller": true, "blockOwnerDeletion": true}]},
                    "spec": {"nodeName": format!("node-{}", pod % 50), "containers": pod_spec()["containers"]},
                    "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": format!("192.168.0.{}", pod % 50 + 1),
                               "conditions": [{"type": "Ready", "status": "True"}], "qosClass": "Burstable"}
                }),
            )?;
            pod += 1;
        }
    }
    for k in 0..spec.policies {
        let ns = k % namespaces;
        emit(
            out,
            policy(&mut rng, ns, k / namespaces, apps_per_ns, namespaces),
        )?;
    }
    out.write_all(b"\n]}\n")?;
    Ok(items)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// More namespaces than /16s (the 50k and 100k benchmark dumps): still one address per pod.
    #[test]
    fn pod_addresses_are_unique_past_256_namespaces() {
        let mut out = Vec::new();
        let spec = DumpSpec {
            pods: 3000,
            namespaces: 600,
            policies: 10,
            replicas: 5,
            seed: 1,
        };
        write_dump(spec, &mut out).unwrap();
        let list: Value = serde_json::from_slice(&out).unwrap();
        let ips: Vec<&str> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["kind"] == "Pod")
            .map(|o| o["status"]["podIP"].as_str().unwrap())
            .collect();
        let distinct: std::collections::HashSet<&&str> = ips.iter().collect();
        assert_eq!(ips.len(), 3000);
        assert_eq!(distinct.len(), ips.len());
    }
}
