//! A live cluster as weir reads it. Objects are kept untyped and handed to the manifest
//! loader as text, so an API server's answers are validated exactly like files (they are
//! input like any other: names, labels and sizes are checked, nothing is trusted).

use std::path::PathBuf;
use std::time::Duration;

use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use weir_manifest::NamedText;

/// How to reach the cluster: a kubeconfig file and/or one of its contexts; with neither,
/// `$KUBECONFIG`, `~/.kube/config`, then the in-cluster service account.
#[derive(Clone, Debug, Default)]
pub struct Connect {
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
}

impl Connect {
    /// Where the objects come from, for titles and messages.
    pub fn describe(&self) -> String {
        match (&self.kubeconfig, &self.context) {
            (Some(p), Some(c)) => format!("cluster {c} ({})", p.display()),
            (Some(p), None) => format!("cluster ({})", p.display()),
            (None, Some(c)) => format!("cluster {c}"),
            (None, None) => "cluster".into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    #[error("kubeconfig: {0}")]
    Config(String),
    #[error("listing {kind}: {error}")]
    List { kind: String, error: String },
    #[error("the cluster did not answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// A client as [`Connect`] says.
pub async fn client(connect: &Connect) -> Result<kube::Client, KubeError> {
    let options = KubeConfigOptions {
        context: connect.context.clone(),
        ..Default::default()
    };
    let config = match (&connect.kubeconfig, &connect.context) {
        (Some(path), _) => {
            let file = Kubeconfig::read_from(path).map_err(|e| KubeError::Config(e.to_string()))?;
            kube::Config::from_custom_kubeconfig(file, &options)
                .await
                .map_err(|e| KubeError::Config(e.to_string()))?
        }
        (None, Some(_)) => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(|e| KubeError::Config(e.to_string()))?,
        (None, None) => kube::Config::infer()
            .await
            .map_err(|e| KubeError::Config(e.to_string()))?,
    };
    kube::Client::try_from(config).map_err(|e| KubeError::Config(e.to_string()))
}

/// The API group of the cluster-wide tiers.
pub const TIERS_GROUP: &str = "policy.networking.k8s.io";

/// ClusterNetworkPolicy (v1alpha2), AdminNetworkPolicy and BaselineAdminNetworkPolicy
/// (v1alpha1): custom resources a cluster may not have installed ([`may_be_absent`]).
pub fn tiers() -> Vec<ApiResource> {
    custom(
        TIERS_GROUP,
        &[
            ("v1alpha2", "ClusterNetworkPolicy", "clusternetworkpolicies"),
            ("v1alpha1", "AdminNetworkPolicy", "adminnetworkpolicies"),
            (
                "v1alpha1",
                "BaselineAdminNetworkPolicy",
                "baselineadminnetworkpolicies",
            ),
        ],
    )
}

/// Resources of a group no typed client knows: (version, kind, plural) each.
fn custom(group: &str, list: &[(&str, &str, &str)]) -> Vec<ApiResource> {
    list.iter()
        .map(|(version, kind, plural)| ApiResource {
            group: group.into(),
            version: version.to_string(),
            api_version: format!("{group}/{version}"),
            kind: kind.to_string(),
            plural: plural.to_string(),
        })
        .collect()
}

/// The Gateway API's group: HTTPRoutes (ways in from outside) and the ReferenceGrants
/// that open Services to routes of other namespaces.
pub const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";

/// HTTPRoute (v1) and ReferenceGrant (v1beta1): custom resources a cluster may not have.
pub fn gateway() -> Vec<ApiResource> {
    custom(
        GATEWAY_GROUP,
        &[
            ("v1", "HTTPRoute", "httproutes"),
            ("v1beta1", "ReferenceGrant", "referencegrants"),
        ],
    )
}

/// Whether the server may not know a resource at all (a CRD not installed): its list
/// answers 404, and that means it has no objects.
pub fn may_be_absent(ar: &ApiResource) -> bool {
    ar.group == TIERS_GROUP || ar.group == GATEWAY_GROUP
}

/// Whether an error is the server saying it does not know the resource.
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(status) if status.code == 404)
}

/// The policy resources: NetworkPolicy and the cluster-wide tiers (what a
/// [`revision_line`]'s revision covers).
pub fn policies() -> Vec<ApiResource> {
    let mut all = vec![ApiResource::erase::<
        k8s_openapi::api::networking::v1::NetworkPolicy,
    >(&())];
    all.extend(tiers());
    all
}

/// Whether an object key (`Kind/namespace/name`) is a policy object's ([`policies`]).
pub fn is_policy(key: &str) -> bool {
    // Asked of every changed object: the kinds are worked out once.
    static KINDS: std::sync::LazyLock<Vec<String>> =
        std::sync::LazyLock::new(|| policies().into_iter().map(|ar| ar.kind).collect());
    key.split_once('/')
        .is_some_and(|(kind, _)| KINDS.iter().any(|k| k == kind))
}

/// One policy object's share of a revision — which policy objects, at which versions, as
/// one value: an agent's `/revision` (of what its kernel holds) and `weir revision` (of
/// what the API holds) are the XOR of this over every policy object, as 16 hex digits, so
/// the two are equal when a node enforces exactly what the API holds. FNV-1a (64 bits) of
/// `Kind/namespace/name resourceVersion\n` (`text`: the object as JSON): easy to compute
/// anywhere (Go's `hash/fnv`), and kept per object, a change costs what it changed. A
/// convergence check, not a security one: FNV is no cryptographic hash.
pub fn revision_line(key: &str, text: &str) -> u64 {
    let v: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
    let rv = v["metadata"]["resourceVersion"].as_str().unwrap_or("");
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.bytes().chain([b' ']).chain(rv.bytes()).chain([b'\n']) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// A revision's text: 16 hex digits.
pub fn revision_text(value: u64) -> String {
    format!("{value:016x}")
}

/// What an agent enforces from: the policy (NetworkPolicies and the cluster-wide tiers),
/// the pods and namespaces it selects, and Nodes (whose addresses `nodes` peers of
/// cluster policies match).
pub fn enforced() -> Vec<ApiResource> {
    use k8s_openapi::api::core::v1;
    let mut all = vec![
        ApiResource::erase::<v1::Namespace>(&()),
        ApiResource::erase::<v1::Pod>(&()),
        ApiResource::erase::<v1::Node>(&()),
    ];
    all.extend(policies());
    all
}

/// Whether a list must be allowed: analysis without Services, workloads or Nodes is still
/// correct for everything but what they add (named in [`Snapshot::forbidden`]).
fn required(ar: &ApiResource) -> bool {
    ar.kind != "Node" && enforced().iter().any(|e| e.kind == ar.kind)
}

/// What analysis reads: [`enforced`], the workloads pods fold into (so a live cluster reads
/// like its manifests: `production/redis`, not one row per replica), Services, Ingresses
/// and HTTPRoutes (with their ReferenceGrants).
pub fn analysed() -> Vec<ApiResource> {
    use k8s_openapi::api::{apps::v1 as apps, batch::v1 as batch, core::v1, networking::v1 as net};
    let mut all = enforced();
    all.extend([
        ApiResource::erase::<v1::Service>(&()),
        ApiResource::erase::<net::Ingress>(&()),
        ApiResource::erase::<v1::ReplicationController>(&()),
        ApiResource::erase::<apps::Deployment>(&()),
        ApiResource::erase::<apps::ReplicaSet>(&()),
        ApiResource::erase::<apps::StatefulSet>(&()),
        ApiResource::erase::<apps::DaemonSet>(&()),
        ApiResource::erase::<batch::Job>(&()),
        ApiResource::erase::<batch::CronJob>(&()),
    ]);
    all.extend(gateway());
    all
}

/// `Kind/namespace/name`: one object's identity, and the name its text is loaded under.
pub fn key(ar: &ApiResource, o: &DynamicObject) -> String {
    format!(
        "{}/{}/{}",
        ar.kind,
        o.metadata.namespace.as_deref().unwrap_or(""),
        o.metadata.name.as_deref().unwrap_or("")
    )
}

/// The object as a manifest (list and watch items come without apiVersion and kind);
/// server-side bookkeeping the loader has no use for is dropped. A Node keeps only its
/// name, labels and addresses: its status changes with every heartbeat and lists every
/// image it holds, and a text that changed is a change to enforce.
pub fn manifest(ar: &ApiResource, o: &DynamicObject) -> String {
    let mut v = serde_json::to_value(o).unwrap_or_default();
    if let Some(m) = v.as_object_mut() {
        m.insert("apiVersion".into(), ar.api_version.clone().into());
        m.insert("kind".into(), ar.kind.clone().into());
        if let Some(meta) = m.get_mut("metadata").and_then(|x| x.as_object_mut()) {
            meta.remove("managedFields");
        }
        if ar.group.is_empty() && ar.kind == "Node" {
            let meta = &m["metadata"];
            let node = serde_json::json!({
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {"name": meta["name"], "labels": meta["labels"]},
                "status": {"addresses": m.get("status").map(|s| &s["addresses"])},
            });
            return node.to_string();
        }
    }
    v.to_string()
}

/// Objects per list request: large clusters are read in pages.
const PAGE: u32 = 500;

/// What a list of the cluster gave: the objects, and the resources it was not allowed to
/// read (only ones analysis can do without: Services and workloads).
#[derive(Debug, Default)]
pub struct Snapshot {
    pub objects: Vec<NamedText>,
    pub forbidden: Vec<String>,
}

/// What a listed object's name starts with, before its key (`cluster:Kind/namespace/name`).
const LISTED: &str = "cluster:";

impl Snapshot {
    /// The revision of the policy objects listed ([`revision_line`]), as an agent's
    /// `/revision` says it of what its kernel holds.
    pub fn revision(&self) -> String {
        let value = self.objects.iter().fold(0, |acc, o| {
            let key = o.name.strip_prefix(LISTED).unwrap_or(&o.name);
            if is_policy(key) {
                acc ^ revision_line(key, &o.text)
            } else {
                acc
            }
        });
        revision_text(value)
    }
}

/// Every object of these resources, all namespaces, each as a [`NamedText`] named
/// `cluster:Kind/namespace/name`. A resource beyond [`enforced`] that the credentials may not
/// list (HTTP 403) is skipped and named in [`Snapshot::forbidden`]; a custom resource the
/// server does not know (404, [`may_be_absent`]) has no objects: analysis then shows
/// replicas one by one and no Services, which is still correct. Any other failure is an error.
pub async fn list(client: &kube::Client, resources: &[ApiResource]) -> Result<Snapshot, KubeError> {
    let mut snapshot = Snapshot::default();
    'resources: for ar in resources {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), ar);
        let mut token: Option<String> = None;
        loop {
            let mut params = ListParams::default().limit(PAGE);
            if let Some(t) = &token {
                params = params.continue_token(t);
            }
            let page = match api.list(&params).await {
                Ok(page) => page,
                Err(e) if may_be_absent(ar) && is_not_found(&e) => continue 'resources,
                Err(kube::Error::Api(status)) if status.code == 403 && !required(ar) => {
                    snapshot.forbidden.push(ar.kind.clone());
                    continue 'resources;
                }
                Err(e) => {
                    return Err(KubeError::List {
                        kind: ar.kind.clone(),
                        error: e.to_string(),
                    })
                }
            };
            for o in &page.items {
                snapshot.objects.push(NamedText {
                    name: format!("{LISTED}{}", key(ar, o)),
                    text: manifest(ar, o),
                });
            }
            match page.metadata.continue_.filter(|t| !t.is_empty()) {
                Some(t) => token = Some(t),
                None => break,
            }
        }
    }
    Ok(snapshot)
}

/// [`list`] of `resources`, blocking, bounded by `timeout`: for commands that read the
/// cluster once ([`analysed`] for analysis).
pub fn snapshot(
    connect: &Connect,
    resources: &[ApiResource],
    timeout: Duration,
) -> Result<Snapshot, KubeError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        tokio::time::timeout(timeout, async {
            let client = client(connect).await?;
            list(&client, resources).await
        })
        .await
        .map_err(|_| KubeError::Timeout(timeout))?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(heartbeat: &str, images: usize) -> DynamicObject {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "node-1", "labels": {"zone": "a"}, "resourceVersion": heartbeat,
                         "managedFields": [{"manager": "kubelet"}]},
            "spec": {"podCIDR": "10.244.1.0/24"},
            "status": {
                "addresses": [{"type": "InternalIP", "address": "10.200.0.2"},
                              {"type": "Hostname", "address": "node-1"}],
                "conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": heartbeat}],
                "images": (0..images).map(|i| serde_json::json!({"names": [format!("img-{i}")]})).collect::<Vec<_>>(),
            }
        }))
        .unwrap()
    }

    /// A Node is its name, labels and addresses: a heartbeat or a new image is no change
    /// (the agent recompiles on every changed text), and the text still decodes.
    #[test]
    fn a_node_is_kept_as_what_policy_matches() {
        let ar = enforced().into_iter().find(|a| a.kind == "Node").unwrap();
        let a = manifest(&ar, &node("2026-11-26T00:00:00Z", 3));
        let b = manifest(&ar, &node("2026-11-26T00:05:00Z", 40));
        assert_eq!(a, b);
        assert!(
            !a.contains("img-") && !a.contains("Heartbeat") && !a.contains("podCIDR"),
            "{a}"
        );
        let d = weir_manifest::decode(
            &NamedText {
                name: "cluster:Node//node-1".into(),
                text: a,
            },
            Default::default(),
        )
        .unwrap();
        let c = weir_manifest::assemble([&d]).unwrap().cluster;
        assert_eq!(c.nodes.len(), 1);
        assert_eq!(
            c.nodes[0].addresses,
            vec!["10.200.0.2".parse::<std::net::IpAddr>().unwrap()]
        );
        assert_eq!(c.nodes[0].labels.get("zone").map(String::as_str), Some("a"));
    }

    /// Analysis may go without Nodes (403: named, skipped); never without what policy
    /// selects.
    #[test]
    fn nodes_are_enforced_but_not_required_for_analysis() {
        let kinds = |v: Vec<ApiResource>| v.into_iter().map(|a| a.kind).collect::<Vec<_>>();
        assert!(kinds(enforced()).contains(&"Node".to_string()));
        for ar in analysed() {
            let must = ["Namespace", "Pod", "NetworkPolicy", "ClusterNetworkPolicy"]
                .contains(&ar.kind.as_str());
            assert_eq!(
                required(&ar),
                must || ar.kind.ends_with("AdminNetworkPolicy"),
                "{}",
                ar.kind
            );
        }
    }
}
