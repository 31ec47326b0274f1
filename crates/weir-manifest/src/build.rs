//! Decoded objects → the cluster model: pods folded into the workloads that own
//! them, namespaces completed, deterministic order.

use std::collections::{BTreeMap, HashMap};

use weir_model::{
    Cluster, Endpoint, EndpointKind, Labels, Namespace, Origin, NAMESPACE_NAME_LABEL,
};

use crate::decode::{Meta, Object, Template};
use crate::{Diagnostic, Severity};

fn without_controller_labels(labels: &Labels) -> Labels {
    labels
        .iter()
        .filter(|(k, _)| !weir_model::CONTROLLER_LABELS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

struct Workload {
    kind: EndpointKind,
    meta: Meta,
    template: Template,
}

type Key = (String, String, String); // namespace, kind, name

/// An object's kind (`Deployment`, …), namespace (empty for a Namespace), name and origin.
pub(crate) fn identity(o: &Object) -> (String, &str, &String, &Origin) {
    match o {
        Object::Namespace { name, origin, .. } => ("Namespace".to_string(), "", name, origin),
        Object::Pod { meta, .. } => (
            "Pod".to_string(),
            &*meta.namespace,
            &meta.name,
            &meta.origin,
        ),
        Object::Workload { kind, meta, .. } => (
            format!("{kind:?}"),
            &*meta.namespace,
            &meta.name,
            &meta.origin,
        ),
        Object::Service(s) => ("Service".to_string(), &*s.namespace, &s.name, &s.origin),
        Object::Ingress(i) => (i.kind.to_string(), &*i.namespace, &i.name, &i.origin),
        Object::ReferenceGrant(g) => (
            "ReferenceGrant".to_string(),
            &*g.namespace,
            &g.name,
            &g.origin,
        ),
        Object::Policy(p) => (
            "NetworkPolicy".to_string(),
            &*p.namespace,
            &p.name,
            &p.origin,
        ),
        Object::ClusterPolicy(p) => (p.kind.to_string(), "", &p.name, &p.origin),
        Object::Node(n) => ("Node".to_string(), "", &n.name, &n.origin),
    }
}

/// Objects the API server could never hold twice (same kind, namespace and name): for every
/// repeat, its index and an error naming both places.
pub(crate) fn duplicates(objects: &[Object]) -> Vec<(usize, Diagnostic)> {
    let mut seen: HashMap<(String, &str, &str), &Origin> = HashMap::new();
    let mut out = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        let (kind, namespace, name, origin) = identity(o);
        let id = if namespace.is_empty() {
            name.clone()
        } else {
            format!("{namespace}/{name}")
        };
        if let Some(first) = seen.insert((kind.clone(), namespace, name), origin) {
            out.push((
                i,
                Diagnostic {
                    severity: Severity::Error,
                    file: origin.file.clone(),
                    line: origin.line,
                    col: origin.col,
                    field: "metadata.name".into(),
                    message: format!("duplicate {kind} {id}: also defined at {first}"),
                },
            ));
        }
    }
    out
}

/// What [`assemble`] builds.
pub struct Built {
    pub cluster: Cluster,
    /// Errors (duplicate objects) and warnings.
    pub diagnostics: Vec<Diagnostic>,
    /// Pods folded into their workload: pod `namespace/name` → the workload's endpoint id.
    pub replicas: BTreeMap<String, String>,
}

/// Builds the model.
pub fn assemble(objects: Vec<Object>) -> Built {
    let mut warnings: Vec<Diagnostic> = duplicates(&objects).into_iter().map(|(_, d)| d).collect();
    let mut namespaces: BTreeMap<String, (Labels, Option<Origin>)> = BTreeMap::new();
    let mut pods = Vec::new();
    let mut workloads: Vec<Workload> = Vec::new();
    let mut cluster = Cluster::default();
    let mut grants = Vec::new();
    for o in objects {
        match o {
            Object::Namespace {
                name,
                labels,
                origin,
            } => {
                namespaces.insert(name, (labels, Some(origin)));
            }
            Object::Pod {
                meta,
                template,
                ips,
            } => pods.push((meta, template, ips)),
            Object::Workload {
                kind,
                meta,
                template,
            } => workloads.push(Workload {
                kind,
                meta,
                template,
            }),
            Object::Service(s) => cluster.services.push(s),
            Object::Ingress(i) => cluster.ingresses.push(i),
            Object::ReferenceGrant(g) => grants.push(g),
            Object::Policy(p) => cluster.policies.push(p),
            Object::ClusterPolicy(p) => cluster.cluster_policies.push(p),
            Object::Node(n) => cluster.nodes.push(n),
        }
    }
    warnings.extend(refused_references(&mut cluster.ingresses, &grants));

    let index: HashMap<Key, usize> = workloads
        .iter()
        .enumerate()
        .map(|(i, w)| {
            (
                (
                    w.meta.namespace.clone(),
                    format!("{:?}", w.kind),
                    w.meta.name.clone(),
                ),
                i,
            )
        })
        .collect();
    // The topmost workload in the input that controls `meta` (following the owner chain).
    let top = |meta: &Meta| -> Option<usize> {
        let mut found = None;
        let mut owner = meta.owner.clone();
        let mut hops = 0;
        while let Some((kind, name)) = owner {
            let Some(&i) = index.get(&(meta.namespace.clone(), kind, name)) else {
                break;
            };
            found = Some(i);
            owner = workloads[i].meta.owner.clone();
            hops += 1;
            if hops > 8 {
                break; // an ownership cycle in the input; stop rather than loop
            }
        }
        found
    };

    let mut replica_ips: Vec<Vec<(String, Vec<std::net::IpAddr>)>> =
        vec![Vec::new(); workloads.len()];
    let mut replicas = BTreeMap::new();
    let mut endpoints = Vec::new();
    for (meta, template, ips) in pods {
        match top(&meta) {
            Some(w) => {
                let want = without_controller_labels(&workloads[w].template.labels);
                let have = without_controller_labels(&template.labels);
                if want != have {
                    warnings.push(Diagnostic {
                        severity: Severity::Warning,
                        file: meta.origin.file.clone(),
                        line: meta.origin.line,
                        col: meta.origin.col,
                        field: "metadata.labels".into(),
                        message: format!(
                            "pod {}/{} has labels that differ from its {:?} {}'s template; weir uses the template's",
                            meta.namespace, meta.name, workloads[w].kind, workloads[w].meta.name
                        ),
                    });
                }
                replicas.insert(
                    format!("{}/{}", meta.namespace, meta.name),
                    format!("{}/{}", workloads[w].meta.namespace, workloads[w].meta.name),
                );
                replica_ips[w].push((meta.name.clone(), ips));
            }
            None => endpoints.push(Endpoint {
                namespace: meta.namespace,
                name: meta.name,
                kind: EndpointKind::Pod,
                labels: template.labels,
                ports: template.ports,
                ips,
                host_network: template.host_network,
                origin: meta.origin,
            }),
        }
    }
    let folded: Vec<bool> = workloads.iter().map(|w| top(&w.meta).is_some()).collect();
    for (i, w) in workloads.into_iter().enumerate() {
        if folded[i] {
            continue; // folded into its owner (a ReplicaSet of a Deployment, a Job of a CronJob)
        }
        let mut pods = std::mem::take(&mut replica_ips[i]);
        pods.sort();
        let mut ips = Vec::new();
        for ip in pods.into_iter().flat_map(|(_, ips)| ips) {
            if !ips.contains(&ip) {
                ips.push(ip);
            }
        }
        endpoints.push(Endpoint {
            namespace: w.meta.namespace,
            name: w.meta.name,
            kind: w.kind,
            labels: w.template.labels,
            ports: w.template.ports,
            ips,
            host_network: w.template.host_network,
            origin: w.meta.origin,
        });
    }
    endpoints.sort_by(|a, b| (&a.namespace, &a.name, a.kind).cmp(&(&b.namespace, &b.name, b.kind)));
    cluster.endpoints = endpoints;

    let referenced = cluster
        .endpoints
        .iter()
        .map(|e| &e.namespace)
        .chain(cluster.policies.iter().map(|p| &p.namespace))
        .chain(cluster.services.iter().map(|s| &s.namespace))
        .chain(cluster.ingresses.iter().map(|i| &i.namespace));
    for ns in referenced {
        namespaces.entry(ns.clone()).or_default();
    }
    cluster.namespaces = namespaces
        .into_iter()
        .map(|(name, (mut labels, origin))| {
            labels.insert(NAMESPACE_NAME_LABEL.to_string(), name.clone());
            Namespace {
                name,
                labels,
                origin,
            }
        })
        .collect();
    Built {
        cluster,
        diagnostics: warnings,
        replicas,
    }
}

/// Takes out each HTTPRoute backend in another namespace that no ReferenceGrant there
/// opens to the route's namespace: the gateway refuses it (`RefNotPermitted`), so no
/// traffic goes that way. A warning names each.
fn refused_references(
    ingresses: &mut [weir_model::Ingress],
    grants: &[crate::gateway::ReferenceGrant],
) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for ing in ingresses {
        let own = ing.namespace.clone();
        ing.backends.retain(|b| {
            let granted = b.namespace == own
                || grants
                    .iter()
                    .any(|g| g.namespace == b.namespace && g.allows(&own, &b.service));
            if !granted {
                out.push(Diagnostic {
                    severity: Severity::Warning,
                    file: ing.origin.file.clone(),
                    line: ing.origin.line,
                    col: ing.origin.col,
                    field: "spec.rules".into(),
                    message: format!(
                        "backend {}/{}: no ReferenceGrant in {} lets HTTPRoutes of {own} use it, so the gateway refuses it; left out of the traffic from outside",
                        b.namespace, b.service, b.namespace
                    ),
                });
            }
            granted
        });
    }
    out
}
