//! The Kubernetes source: kube-rs watchers (list, then watch; relist on errors, with
//! backoff) for Pods, Namespaces and NetworkPolicies in all namespaces, since selectors
//! reach everywhere, Nodes (name, labels, addresses: what `nodes` peers match), and the
//! cluster-wide tiers' custom resources (none while their CRD is not installed). Objects are kept untyped and validated one by one like files, so an
//! object that fails to decode is skipped and reported and never stops the watch.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use weir_kube::{key, manifest};

use crate::source::{with_prefix, Change, Current, Items, SourceError};
use crate::throttle::Throttle;

/// The last state of every watched object, as JSON, keyed `Kind/namespace/name`; which
/// keys changed since the source was last read; and where each pod runs.
#[derive(Default)]
struct Shared {
    objects: BTreeMap<String, String>,
    changed: BTreeSet<String>,
    /// Pod key → (its node, its addresses); hostNetwork pods are not kept.
    placed: HashMap<String, (String, Vec<IpAddr>)>,
    /// Node → keys of its pods.
    by_node: HashMap<String, BTreeSet<String>>,
}

impl Shared {
    /// An object's current text; a text it already had is no change.
    fn put(&mut self, key: String, text: String) {
        if self.objects.get(&key) == Some(&text) {
            return;
        }
        self.unplace(&key);
        if key.starts_with("Pod/") {
            if let Some((node, ips)) = placement(&text) {
                self.by_node
                    .entry(node.clone())
                    .or_default()
                    .insert(key.clone());
                self.placed.insert(key.clone(), (node, ips));
            }
        }
        self.changed.insert(key.clone());
        self.objects.insert(key, text);
    }

    /// Every object of `kind` is now exactly `list`: the others are deleted. Returns how
    /// many were.
    fn replace_kind(&mut self, kind: &str, list: BTreeMap<String, String>) -> usize {
        let prefix = format!("{kind}/");
        let gone: Vec<String> = self
            .objects
            .keys()
            .filter(|k| k.starts_with(&prefix) && !list.contains_key(*k))
            .cloned()
            .collect();
        for k in &gone {
            self.delete(k);
        }
        for (k, v) in list {
            self.put(k, v);
        }
        gone.len()
    }

    fn delete(&mut self, key: &str) {
        self.unplace(key);
        if self.objects.remove(key).is_some() {
            self.changed.insert(key.to_string());
        }
    }

    fn unplace(&mut self, key: &str) {
        if let Some((node, _)) = self.placed.remove(key) {
            if let Some(keys) = self.by_node.get_mut(&node) {
                keys.remove(key);
                if keys.is_empty() {
                    self.by_node.remove(&node);
                }
            }
        }
    }
}

/// A pod's node and addresses (`spec.nodeName`, `status.podIPs`/`podIP`); `None` for
/// hostNetwork pods and unscheduled ones.
fn placement(text: &str) -> Option<(String, Vec<IpAddr>)> {
    let p: serde_json::Value = serde_json::from_str(text).ok()?;
    if p["spec"]["hostNetwork"] == true {
        return None;
    }
    let node = p["spec"]["nodeName"].as_str()?.to_string();
    let mut ips: Vec<IpAddr> = p["status"]["podIPs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x["ip"].as_str()?.parse().ok())
        .collect();
    let primary = p["status"]["podIP"].as_str().and_then(|ip| ip.parse().ok());
    if let Some(ip) = primary.filter(|ip| !ips.contains(ip)) {
        ips.push(ip);
    }
    Some((node, ips))
}

pub struct KubeSource {
    shared: Arc<Mutex<Shared>>,
    /// Resources whose initial list has completed, of `watched`.
    synced: Arc<AtomicUsize>,
    watched: usize,
    /// Whether some watch is failing now (the API unreachable, access refused).
    failing: Arc<AtomicBool>,
    /// Whether the credentials may not list Nodes: everything else is enforced, but not a
    /// cluster policy with a `nodes` peer ([`KubeSource::changes`]).
    nodes_forbidden: Arc<AtomicBool>,
    pub items: Items,
    /// Whether the objects were read once (later reads take only what changed).
    read_once: bool,
    /// The [`Revision`] of the items after the last successful read; `None` until then,
    /// and after a failed one (built again from the items).
    revision: Option<Revision>,
}

impl KubeSource {
    /// Connects (kubeconfig, or the in-cluster service account) and starts the watchers on a
    /// thread of their own; `tx` hears of every change.
    pub fn start(items: Items, tx: Sender<()>) -> std::io::Result<KubeSource> {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let synced = Arc::new(AtomicUsize::new(0));
        let failing = Arc::new(AtomicBool::new(false));
        let nodes_forbidden = Arc::new(AtomicBool::new(false));
        let (s, n, f, nf) = (
            shared.clone(),
            synced.clone(),
            failing.clone(),
            nodes_forbidden.clone(),
        );
        let resources = weir_kube::enforced();
        let watched = resources.len();
        std::thread::Builder::new().name("weir-kube".into()).spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
            rt.block_on(async move {
                let mut throttle = Throttle::new();
                let mut pause = std::time::Duration::from_millis(500);
                let client = loop {
                    match weir_kube::client(&weir_kube::Connect::default()).await {
                        Ok(c) => break c,
                        Err(e) => {
                            f.store(true, Ordering::SeqCst);
                            if let Some(held) = throttle.admit() {
                                tracing::error!(error = %e, held_back = held, "connecting to Kubernetes; retrying with backoff");
                            }
                            tokio::time::sleep(pause).await;
                            pause = (pause * 2).min(std::time::Duration::from_secs(30));
                        }
                    }
                };
                let tasks = resources.into_iter().map(|ar| {
                    let watch = Watch { shared: s.clone(), synced: n.clone(), failing: f.clone(), nodes_forbidden: nf.clone(), tx: tx.clone() };
                    watch.run(ar, client.clone())
                });
                futures::future::join_all(tasks).await;
            });
        })?;
        Ok(KubeSource {
            shared,
            synced,
            watched,
            failing,
            nodes_forbidden,
            items,
            read_once: false,
            revision: None,
        })
    }

    /// Addresses of the pods scheduled on `node` (`spec.nodeName`), hostNetwork pods aside.
    pub fn local_addresses(&self, node: &str) -> HashSet<IpAddr> {
        let g = self.shared.lock().expect("kube objects");
        g.by_node
            .get(node)
            .into_iter()
            .flatten()
            .filter_map(|k| g.placed.get(k))
            .flat_map(|(_, ips)| ips.iter().copied())
            .collect()
    }

    /// What changed since the last read; an error until every resource has been listed
    /// once (so nothing reaches the kernel before the source is in sync). The first read
    /// is every object.
    pub fn changes(&mut self) -> Result<Vec<Change>, SourceError> {
        if self.synced.load(Ordering::SeqCst) < self.watched {
            return Err(SourceError::NotYet);
        }
        let mut g = self.shared.lock().expect("kube objects");
        if self.nodes_forbidden.load(Ordering::SeqCst) {
            // A `nodes` peer without the nodes' addresses matches nothing: its Deny would
            // let through what it denies. Nothing changes until Nodes can be read or the
            // peer is gone (what changed stays pending).
            if let Some(key) = tier_with_node_peer(&g.objects) {
                return Err(SourceError::Unavailable(format!(
                    "{key} has a nodes peer, but the agent may not list Nodes (grant it get, list and watch on nodes): enforcing the last state"
                )));
            }
        }
        let changed = std::mem::take(&mut g.changed);
        let read = if !self.read_once {
            let all = g.objects.clone();
            drop(g);
            self.read_once = true;
            self.items.update(
                all.into_iter()
                    .map(|(k, v)| (k, Current::Text(v)))
                    .collect(),
            )
        } else {
            let now: BTreeMap<String, Option<Current>> = changed
                .into_iter()
                .map(|k| {
                    let v = g.objects.get(&k).map(|t| Current::Text(t.clone()));
                    (k, v)
                })
                .collect();
            drop(g);
            self.items.apply(now)
        };
        match (&read, &mut self.revision) {
            (Ok(changes), Some(r)) => r.follow(&self.items, changes),
            (Ok(_), None) => self.revision = Some(Revision::of(&self.items)),
            (Err(_), _) => self.revision = None,
        }
        read
    }

    /// The [`Revision`] of the last successful read, as `/revision` gives it.
    pub fn revision(&self) -> Option<String> {
        self.revision.as_ref().map(Revision::value)
    }

    /// `Some(why)` while the API cannot be watched (the last state stays enforced).
    pub fn trouble(&self) -> Option<String> {
        self.failing
            .load(Ordering::SeqCst)
            .then(|| "the Kubernetes API cannot be watched; enforcing the last state".into())
    }
}

/// What each resource's watcher shares with the source: the objects, how many resources
/// have been listed once, whether some watch is failing, and who hears of changes.
struct Watch {
    shared: Arc<Mutex<Shared>>,
    synced: Arc<AtomicUsize>,
    failing: Arc<AtomicBool>,
    nodes_forbidden: Arc<AtomicBool>,
    tx: Sender<()>,
}

impl Watch {
    /// Lists and watches one resource until the source is dropped.
    async fn run(self, ar: ApiResource, client: kube::Client) {
        let Watch {
            shared: s,
            synced: n,
            failing: f,
            nodes_forbidden: nf,
            tx,
        } = self;
        let is_nodes = ar.group.is_empty() && ar.kind == "Node";
        let mut done = false;
        let mut throttle = Throttle::new();
        loop {
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
            // Exponential backoff with jitter (0.8 s doubling to 30 s) between
            // failed lists and watches, reset after two quiet minutes.
            let mut stream = watcher::watcher(api, watcher::Config::default())
                .default_backoff()
                .boxed();
            let mut fresh: Option<BTreeMap<String, String>> = None;
            let mut absent = false;
            while let Some(event) = stream.next().await {
                // Init comes before every list attempt: only an answer shows
                // the API is back.
                let answered = matches!(&event, Ok(e) if !matches!(e, Event::Init));
                if answered && f.swap(false, Ordering::SeqCst) {
                    tracing::info!(kind = %ar.kind, "watching again");
                    throttle.reset();
                }
                match event {
                    Ok(Event::Init) => fresh = Some(BTreeMap::new()),
                    Ok(Event::InitApply(o)) => {
                        if let Some(f) = fresh.as_mut() {
                            f.insert(key(&ar, &o), manifest(&ar, &o));
                        }
                    }
                    Ok(Event::InitDone) => {
                        let list = fresh.take().unwrap_or_default();
                        s.lock().expect("kube objects").replace_kind(&ar.kind, list);
                        if !std::mem::replace(&mut done, true) {
                            n.fetch_add(1, Ordering::SeqCst);
                        }
                        if is_nodes && nf.swap(false, Ordering::SeqCst) {
                            tracing::info!("Nodes can be listed again");
                        }
                        tracing::info!(kind = %ar.kind, "listed");
                    }
                    Ok(Event::Apply(o)) => {
                        s.lock()
                            .expect("kube objects")
                            .put(key(&ar, &o), manifest(&ar, &o));
                    }
                    Ok(Event::Delete(o)) => {
                        s.lock().expect("kube objects").delete(&key(&ar, &o));
                    }
                    Err(e) if weir_kube::may_be_absent(&ar) && not_found(&e) => {
                        // Not installed: none of its objects exist (any seen
                        // before went with the CRD). Looked for again below.
                        let gone = s
                            .lock()
                            .expect("kube objects")
                            .replace_kind(&ar.kind, BTreeMap::new());
                        let first = !std::mem::replace(&mut done, true);
                        if first {
                            n.fetch_add(1, Ordering::SeqCst);
                            tracing::info!(kind = %ar.kind, "not installed in this cluster: none to enforce");
                        }
                        if (first || gone > 0) && tx.send(()).is_err() {
                            return;
                        }
                        absent = true;
                        break;
                    }
                    Err(e) if is_nodes && forbidden(&e) => {
                        // RBAC refuses Nodes (an older ClusterRole): enforce the rest,
                        // refuse what needs them, and look again now and then.
                        s.lock()
                            .expect("kube objects")
                            .replace_kind(&ar.kind, BTreeMap::new());
                        if !std::mem::replace(&mut done, true) {
                            n.fetch_add(1, Ordering::SeqCst);
                        }
                        if !nf.swap(true, Ordering::SeqCst) {
                            tracing::error!(error = %e, "the agent may not list Nodes: cluster policies with nodes peers will not be enforced until it can (grant get, list and watch on nodes)");
                        }
                        if tx.send(()).is_err() {
                            return;
                        }
                        absent = true;
                        break;
                    }
                    Err(e) => {
                        f.store(true, Ordering::SeqCst);
                        if let Some(held) = throttle.admit() {
                            tracing::warn!(kind = %ar.kind, error = %e, held_back = held, "watch error; retrying with backoff, enforcing the last state meanwhile");
                        }
                        continue;
                    }
                }
                if tx.send(()).is_err() {
                    return;
                }
            }
            if !absent {
                return;
            }
            // Looked for again now and then: a CRD installed later is watched
            // from then on.
            tokio::time::sleep(ABSENT_RECHECK).await;
        }
    }
}

/// How long a resource the server does not know (a CRD not installed) waits before it is
/// looked for again.
const ABSENT_RECHECK: std::time::Duration = std::time::Duration::from_secs(60);

/// The HTTP status of the server's answer behind a watch error, if it answered.
fn status_code(e: &watcher::Error) -> Option<u16> {
    match e {
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status))
        | watcher::Error::WatchFailed(kube::Error::Api(status)) => Some(status.code),
        watcher::Error::WatchError(status) => Some(status.code),
        _ => None,
    }
}

/// Whether a watch error is the server refusing the credentials access (403).
fn forbidden(e: &watcher::Error) -> bool {
    status_code(e) == Some(403)
}

/// The key of a cluster-wide policy with a `nodes` peer, if any. Only the tiers' objects
/// are read: keys are `Kind/…`, so each kind is a range of the map.
fn tier_with_node_peer(objects: &BTreeMap<String, String>) -> Option<String> {
    weir_kube::tiers().iter().find_map(|ar| {
        let prefix = format!("{}/", ar.kind);
        let found = with_prefix(objects, &prefix)
            .find(|(_, text)| has_node_peer(text))
            .map(|(k, _)| k.clone());
        found
    })
}

/// Whether a cluster-wide policy (its text as the API gave it) has a `nodes` peer in some
/// rule; a text that does not parse has none, and fails validation anyway.
fn has_node_peer(text: &str) -> bool {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
        return false;
    };
    [("ingress", "from"), ("egress", "to")]
        .iter()
        .flat_map(|(dir, peers)| {
            v["spec"][dir]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(move |rule| rule[peers].as_array().into_iter().flatten())
        })
        .any(|peer| peer.get("nodes").is_some())
}

/// The policy objects of the good versions as one value (`/revision`,
/// [`weir_kube::revision_line`]): equal to `weir revision` of the API's objects (and to
/// what tools/kube/netpol-api's probe wrapper computes) when the node enforces exactly
/// them. An object whose current version is invalid keeps its last good version here, so
/// the two differ while it is. Pods, Namespaces and Nodes are not covered.
#[derive(Debug, Default)]
pub struct Revision {
    /// Each policy object's line hash.
    lines: HashMap<String, u64>,
    /// Their XOR.
    value: u64,
}

impl Revision {
    /// The revision of every good policy item.
    pub fn of(items: &Items) -> Self {
        let mut r = Revision::default();
        for ar in weir_kube::policies() {
            let prefix = format!("{}/", ar.kind);
            for (key, text) in items.good_with_prefix(&prefix) {
                r.set(key, Some(text));
            }
        }
        r
    }

    /// Follows what a read changed (the items are after it).
    pub fn follow(&mut self, items: &Items, changes: &[Change]) {
        for c in changes.iter().filter(|c| weir_kube::is_policy(&c.name)) {
            self.set(&c.name, items.good(&c.name));
        }
    }

    /// Item `key`'s good version is now `text` (`None`: it has none).
    fn set(&mut self, key: &str, text: Option<&str>) {
        if let Some(old) = self.lines.remove(key) {
            self.value ^= old;
        }
        let Some(text) = text else { return };
        let h = weir_kube::revision_line(key, text);
        self.value ^= h;
        self.lines.insert(key.to_string(), h);
    }

    pub fn value(&self) -> String {
        weir_kube::revision_text(self.value)
    }
}

/// Whether a watch error is the server not knowing the resource (a CRD not installed).
fn not_found(e: &watcher::Error) -> bool {
    status_code(e) == Some(404)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The server's answer with this HTTP status.
    fn api(code: u16) -> kube::Error {
        kube::Error::Api(
            kube::core::Status::failure("x", "y")
                .with_code(code)
                .boxed(),
        )
    }

    /// A CRD that is not installed (404) counts as no objects; any other refusal is a
    /// failing watch (fail closed: not ready, the last state enforced).
    #[test]
    fn only_not_found_means_not_installed() {
        assert!(not_found(&watcher::Error::InitialListFailed(api(404))));
        assert!(not_found(&watcher::Error::WatchStartFailed(api(404))));
        assert!(!not_found(&watcher::Error::InitialListFailed(api(403))));
        assert!(!not_found(&watcher::Error::InitialListFailed(api(500))));
        assert!(!not_found(&watcher::Error::NoResourceVersion));
        assert!(weir_kube::tiers().iter().all(weir_kube::may_be_absent));
        assert!(!weir_kube::enforced()
            .iter()
            .take(3)
            .any(weir_kube::may_be_absent));
    }

    /// 403 on Nodes is its own case (the rest is enforced); a cluster policy with a
    /// `nodes` peer is what cannot be enforced without them.
    #[test]
    fn forbidden_nodes_matter_only_to_nodes_peers() {
        assert!(forbidden(&watcher::Error::InitialListFailed(api(403))));
        assert!(!forbidden(&watcher::Error::InitialListFailed(api(401))));
        assert!(!forbidden(&watcher::Error::InitialListFailed(api(404))));
        let anp = |peer: serde_json::Value| {
            serde_json::json!({"kind": "AdminNetworkPolicy", "spec": {"egress": [
                {"action": "Deny", "to": [{"namespaces": {}}, peer]}]}})
            .to_string()
        };
        let nodes = anp(serde_json::json!({"nodes": {"matchLabels": {}}}));
        let pods = anp(serde_json::json!({"pods": {}}));
        assert!(has_node_peer(&nodes));
        assert!(!has_node_peer(&pods));
        assert!(has_node_peer(
            &serde_json::json!({"spec": {"ingress": [{"from": [{"nodes": {}}]}]}}).to_string()
        ));
        assert!(!has_node_peer("not json"));
        // Only the tiers have nodes peers; a NetworkPolicy's text is never read for one.
        let objects = |key: &str, text: &str| BTreeMap::from([(key.to_string(), text.to_string())]);
        assert_eq!(
            tier_with_node_peer(&objects("AdminNetworkPolicy//deny-nodes", &nodes)).as_deref(),
            Some("AdminNetworkPolicy//deny-nodes")
        );
        assert_eq!(
            tier_with_node_peer(&objects("AdminNetworkPolicy//deny-pods", &pods)),
            None
        );
        assert_eq!(
            tier_with_node_peer(&objects("NetworkPolicy/ns/x", &nodes)),
            None
        );
        assert_eq!(
            tier_with_node_peer(&objects("BaselineAdminNetworkPolicy//default", &nodes)).as_deref(),
            Some("BaselineAdminNetworkPolicy//default")
        );
    }

    /// `/revision` is what a client computes from the API's policy objects: the vectors
    /// are Go's `hash/fnv` (New64a) over the same lines, XORed, as the conformance stage's
    /// probe wrapper computes them. The source keeps it per object as reads change the
    /// items; it stays equal to computing it afresh. Pods do not count; an invalid new
    /// version keeps the last good one's resourceVersion, so the revision says the node does
    /// not enforce the new one; a deleted policy leaves it.
    #[test]
    fn the_revision_is_the_good_policy_versions() {
        let np = |rv: &str| {
            serde_json::json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": "a", "namespace": "ns", "resourceVersion": rv},
                "spec": {"podSelector": {}}})
            .to_string()
        };
        let anp = |rv: &str, priority: i64| {
            serde_json::json!({"apiVersion": "policy.networking.k8s.io/v1alpha1",
                "kind": "AdminNetworkPolicy", "metadata": {"name": "p", "resourceVersion": rv},
                "spec": {"priority": priority, "subject": {"namespaces": {}}}})
            .to_string()
        };
        let pod = |ip: &str| {
            serde_json::json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "x", "namespace": "ns", "resourceVersion": ip},
                "spec": {"nodeName": "n1"}, "status": {"podIP": ip}})
            .to_string()
        };
        // A source whose watchers have listed everything; the test is the watchers.
        let mut source = KubeSource {
            shared: Arc::default(),
            synced: Arc::new(AtomicUsize::new(1)),
            watched: 1,
            failing: Arc::default(),
            nodes_forbidden: Arc::default(),
            items: Items::new(Default::default()),
            read_once: false,
            revision: None,
        };
        fn read(source: &mut KubeSource, put: &[(&str, Option<String>)]) -> String {
            let mut g = source.shared.lock().unwrap();
            for (key, text) in put {
                match text {
                    Some(t) => g.put(key.to_string(), t.clone()),
                    None => g.delete(key),
                }
            }
            drop(g);
            source.changes().unwrap();
            let kept = source.revision().unwrap();
            assert_eq!(
                kept,
                Revision::of(&source.items).value(),
                "kept as computed afresh"
            );
            kept
        }
        assert_eq!(read(&mut source, &[]), "0000000000000000", "no policy");
        let seeded = read(
            &mut source,
            &[
                ("NetworkPolicy/ns/a", Some(np("5"))),
                ("AdminNetworkPolicy//p", Some(anp("7", 10))),
                ("Pod/ns/x", Some(pod("10.0.0.1"))),
            ],
        );
        assert_eq!(seeded, "021a64044c20dda1");
        assert_eq!(
            read(&mut source, &[("Pod/ns/x", Some(pod("10.0.0.2")))]),
            seeded
        );
        assert_eq!(
            read(
                &mut source,
                &[("AdminNetworkPolicy//p", Some(anp("8", 10)))]
            ),
            "022962044c3e4d92"
        );
        // Priority 1001 is out of range: version 9 is refused, 8 stays enforced.
        assert_eq!(
            read(
                &mut source,
                &[("AdminNetworkPolicy//p", Some(anp("9", 1001)))]
            ),
            "022962044c3e4d92"
        );
        assert!(source.items.invalid.contains_key("AdminNetworkPolicy//p"));
        assert_eq!(
            read(&mut source, &[("NetworkPolicy/ns/a", None)]),
            "f42efb565756e3cc"
        );
        let is_policy = weir_kube::is_policy;
        assert!(is_policy("BaselineAdminNetworkPolicy//default") && is_policy("NetworkPolicy/a/b"));
        assert!(!is_policy("Pod/a/b") && !is_policy("NetworkPolicyX/a/b") && !is_policy("x"));
    }

    fn pod(node: &str, ip: &str, host_network: bool) -> String {
        serde_json::json!({
            "kind": "Pod",
            "spec": {"nodeName": node, "hostNetwork": host_network},
            "status": {"podIP": ip, "podIPs": [{"ip": ip}]},
        })
        .to_string()
    }

    /// The watchers' store: every put and delete is a change; the per-node index follows
    /// pods being added, moved, readdressed and deleted, and leaves hostNetwork pods out.
    #[test]
    fn the_store_tracks_changes_and_where_pods_run() {
        let mut s = Shared::default();
        let on = |s: &Shared, node: &str| -> BTreeSet<String> {
            s.by_node.get(node).cloned().unwrap_or_default()
        };
        s.put("Pod/a/x".into(), pod("n1", "10.0.0.1", false));
        s.put("Pod/a/y".into(), pod("n1", "10.0.0.2", false));
        s.put("Pod/a/h".into(), pod("n1", "192.168.0.1", true));
        s.put("Namespace//a".into(), "{}".into());
        assert_eq!(
            on(&s, "n1").len(),
            2,
            "hostNetwork pods are not this node's pods"
        );
        assert_eq!(std::mem::take(&mut s.changed).len(), 4);
        // Readdressed, then deleted: the index follows, each is a change.
        s.put("Pod/a/x".into(), pod("n1", "10.0.0.9", false));
        assert_eq!(
            s.placed["Pod/a/x"].1,
            ["10.0.0.9".parse::<IpAddr>().unwrap()]
        );
        s.delete("Pod/a/y");
        s.delete("Pod/a/never");
        assert_eq!(on(&s, "n1"), BTreeSet::from(["Pod/a/x".to_string()]));
        assert_eq!(
            std::mem::take(&mut s.changed),
            BTreeSet::from(["Pod/a/x".to_string(), "Pod/a/y".to_string()])
        );
        s.delete("Pod/a/x");
        assert!(s.by_node.is_empty() && s.placed.is_empty());
    }

    /// A relist (or a CRD found missing) replaces one kind's objects: those not listed go,
    /// other kinds stay.
    #[test]
    fn a_relist_replaces_only_its_kind() {
        let mut s = Shared::default();
        s.put("Pod/a/x".into(), pod("n1", "10.0.0.1", false));
        s.put("AdminNetworkPolicy//p".into(), "{}".into());
        s.put("AdminNetworkPolicy//q".into(), "{}".into());
        s.changed.clear();
        let list = BTreeMap::from([("AdminNetworkPolicy//q".to_string(), "{}".to_string())]);
        assert_eq!(s.replace_kind("AdminNetworkPolicy", list), 1);
        assert_eq!(
            s.changed,
            BTreeSet::from(["AdminNetworkPolicy//p".to_string()])
        );
        assert_eq!(s.replace_kind("AdminNetworkPolicy", BTreeMap::new()), 1);
        assert_eq!(s.objects.keys().collect::<Vec<_>>(), ["Pod/a/x"]);
        assert!(s.by_node["n1"].contains("Pod/a/x"));
    }
}
