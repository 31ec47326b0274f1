//! Good input: kinds, List wrappers, owner folding, namespaces, addresses.

use weir_manifest::{load_str, LoadOptions};
use weir_model::{EndpointKind, Protocol, NAMESPACE_NAME_LABEL};

/// What `kubectl get -A -o yaml` shows for one Deployment with two replicas.
const DUMP: &str = r#"
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Namespace
  metadata:
    name: shop
    labels: {team: web}
- apiVersion: apps/v1
  kind: Deployment
  metadata: {name: web, namespace: shop, uid: d1}
  spec:
    selector: {matchLabels: {app: web}}
    template:
      metadata: {labels: {app: web}}
      spec:
        containers:
        - name: web
          image: nginx
          ports: [{containerPort: 8080, name: http}, {containerPort: 53, protocol: UDP}]
- apiVersion: apps/v1
  kind: ReplicaSet
  metadata:
    name: web-7d4
    namespace: shop
    uid: r1
    ownerReferences: [{apiVersion: apps/v1, kind: Deployment, name: web, uid: d1, controller: true}]
  spec:
    selector: {matchLabels: {app: web, pod-template-hash: 7d4}}
    template:
      metadata: {labels: {app: web, pod-template-hash: 7d4}}
      spec: {containers: [{name: web, image: nginx}]}
- apiVersion: v1
  kind: Pod
  metadata:
    name: web-7d4-b
    namespace: shop
    labels: {app: web, pod-template-hash: 7d4}
    ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web-7d4, uid: r1, controller: true}]
  spec: {containers: [{name: web, image: nginx}]}
  status:
    podIP: 10.1.0.12
    podIPs: [{ip: 10.1.0.12}, {ip: "fd00::12"}]
- apiVersion: v1
  kind: Pod
  metadata:
    name: web-7d4-a
    namespace: shop
    labels: {app: web, pod-template-hash: 7d4, extra: "yes"}
    ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web-7d4, uid: r1, controller: true}]
  spec: {containers: [{name: web, image: nginx}]}
  status: {podIP: 10.1.0.11}
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: cfg, namespace: shop}
  data: {a: b}
- apiVersion: v1
  kind: Pod
  metadata: {name: lonely, namespace: other}
  spec: {containers: [{name: c, image: busybox}], hostNetwork: true}
"#;

#[test]
fn kubectl_dump_folds_replicas_into_their_deployment() {
    let loaded = load_str("dump.yaml", DUMP, LoadOptions::default()).unwrap();
    let c = &loaded.cluster;
    let ids: Vec<String> = c.endpoints.iter().map(|e| e.id()).collect();
    assert_eq!(ids, vec!["other/lonely", "shop/web"]);
    let web = &c.endpoints[1];
    assert_eq!(web.kind, EndpointKind::Deployment);
    // Replica IPs sorted by pod name: web-7d4-a first.
    let ips: Vec<String> = web.ips.iter().map(|i| i.to_string()).collect();
    assert_eq!(ips, vec!["10.1.0.11", "10.1.0.12", "fd00::12"]);
    assert_eq!(web.ports.len(), 2);
    assert!(web.ports.iter().any(|p| p.name.as_deref() == Some("http")
        && p.port == 8080
        && p.protocol == Protocol::Tcp));
    assert!(web
        .ports
        .iter()
        .any(|p| p.name.is_none() && p.port == 53 && p.protocol == Protocol::Udp));
    assert!(c.endpoints[0].host_network);
    // The replica with an extra label is reported; pod-template-hash alone is not a difference.
    assert_eq!(loaded.warnings.len(), 1, "{:#?}", loaded.warnings);
    assert!(loaded.warnings[0].message.contains("web-7d4-a"));
    assert_eq!(loaded.skipped.get("ConfigMap"), Some(&1));
    // Namespaces: defined ones keep their labels, referenced ones exist; all carry their name label.
    let ns: Vec<(&str, usize)> = c
        .namespaces
        .iter()
        .map(|n| (n.name.as_str(), n.labels.len()))
        .collect();
    assert_eq!(ns, vec![("other", 1), ("shop", 2)]);
    assert_eq!(c.namespaces[1].labels[NAMESPACE_NAME_LABEL], "shop");
}

#[test]
fn every_workload_kind_is_one_endpoint() {
    let tpl = "template:\n      metadata: {labels: {app: X}}\n      spec: {containers: [{name: c, image: i}]}";
    let text = format!(
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {{name: s}}\nspec:\n    selector: {{matchLabels: {{app: s}}}}\n    serviceName: s\n    {}\n---\n\
apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {{name: d}}\nspec:\n    selector: {{matchLabels: {{app: d}}}}\n    {}\n---\n\
apiVersion: batch/v1\nkind: Job\nmetadata: {{name: j}}\nspec:\n    {}\n---\n\
apiVersion: batch/v1\nkind: CronJob\nmetadata: {{name: c}}\nspec:\n  schedule: '* * * * *'\n  jobTemplate:\n   spec:\n    {}\n---\n\
apiVersion: v1\nkind: ReplicationController\nmetadata: {{name: r}}\nspec:\n    {}\n",
        tpl.replace('X', "s"),
        tpl.replace('X', "d"),
        tpl.replace('X', "j"),
        tpl.replace('X', "c").replace("\n      ", "\n       "),
        tpl.replace('X', "r")
    );
    let loaded =
        load_str("w.yaml", &text, LoadOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let kinds: Vec<(String, EndpointKind, String)> = loaded
        .cluster
        .endpoints
        .iter()
        .map(|e| (e.id(), e.kind, e.labels["app"].clone()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("default/c".into(), EndpointKind::CronJob, "c".into()),
            ("default/d".into(), EndpointKind::DaemonSet, "d".into()),
            ("default/j".into(), EndpointKind::Job, "j".into()),
            (
                "default/r".into(),
                EndpointKind::ReplicationController,
                "r".into()
            ),
            ("default/s".into(), EndpointKind::StatefulSet, "s".into()),
        ]
    );
}

#[test]
fn policy_defaults() {
    let text = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: a, namespace: n}\nspec:\n  podSelector: {}\n  egress: [{}]\n---\n\
apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: b, namespace: n}\nspec:\n  podSelector: {}\n  egress: []\n  ingress: [{ports: [{port: 80}]}]\n";
    let c = load_str("p.yaml", text, LoadOptions::default())
        .unwrap()
        .cluster;
    // Egress rules present: Ingress and Egress. No egress rules: Ingress only.
    assert_eq!(
        (
            c.policies[0].isolates_ingress,
            c.policies[0].isolates_egress
        ),
        (true, true)
    );
    assert_eq!(
        (
            c.policies[1].isolates_ingress,
            c.policies[1].isolates_egress
        ),
        (true, false)
    );
    // Protocol defaults to TCP.
    assert_eq!(c.policies[1].ingress[0].ports[0].protocol, Protocol::Tcp);
}

#[test]
fn json_stream_and_yaml_agree() {
    let yaml = "apiVersion: v1\nkind: Namespace\nmetadata: {name: a, labels: {x: y}}\n";
    let json =
        r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"a","labels":{"x":"y"}}}"#;
    // One file name for both: where an object was read is part of the model.
    let a = load_str("a", yaml, LoadOptions::default()).unwrap().cluster;
    let b = load_str("a", json, LoadOptions::default()).unwrap().cluster;
    assert_eq!(a, b);
}

/// The agent's sources change one item at a time and reassemble the rest from their decoded
/// form: that must be exactly `load` of every text together — owner folding across items
/// (a Pod, its ReplicaSet and Deployment in three items) included, and duplicates across
/// items still errors.
#[test]
fn assembling_items_decoded_one_by_one_equals_loading_them_together() {
    use weir_manifest::{assemble, decode, load, LoadError, NamedText};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/todos");
    let mut sources = weir_manifest::read_paths(&[dir]).unwrap();
    let trio = [
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: shop, uid: d1}\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: web, image: x, ports: [{containerPort: 8080, name: http}]}]}\n",
        "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {name: web-1, namespace: shop, uid: r1, ownerReferences: [{kind: Deployment, name: web, uid: d1, controller: true}]}\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: web, image: x}]}\n",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: web-1-a, namespace: shop, labels: {app: web}, ownerReferences: [{kind: ReplicaSet, name: web-1, uid: r1, controller: true}]}\nspec: {containers: [{name: web, image: x}]}\nstatus: {podIP: 10.1.0.7}\n",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: shop}\n",
    ];
    for (i, text) in trio.iter().enumerate() {
        sources.push(NamedText {
            name: format!("item-{i}"),
            text: text.to_string(),
        });
    }
    let options = LoadOptions::default();
    let together = load(&sources, options).unwrap();
    let parts: Vec<_> = sources
        .iter()
        .map(|s| decode(s, options).unwrap())
        .collect();
    let apart = assemble(&parts).unwrap();
    assert_eq!(apart.cluster, together.cluster);
    assert_eq!(apart.skipped, together.skipped);
    assert_eq!(apart.warnings.len(), together.warnings.len());
    let web = apart.cluster.endpoints.iter().find(|e| e.name == "web");
    assert!(
        web.is_some_and(|e| e.ips.len() == 1),
        "the pod folded into its Deployment"
    );

    // The same object in two items: an error of the assembly, as of load.
    let mut twice = parts.clone();
    twice.push(decode(&sources[sources.len() - 4], options).unwrap());
    match assemble(&twice) {
        Err(LoadError::Invalid(d)) => {
            assert!(d[0].message.contains("duplicate Deployment shop/web"))
        }
        other => panic!("expected a duplicate error, got {other:?}"),
    }
    // An invalid item: decode reports what load reports for it.
    let bad = NamedText {
        name: "bad".into(),
        text: trio[2].replace("podIP: 10.1.0.7", "podIP: 10.1.0.999"),
    };
    let (Err(LoadError::Invalid(a)), Err(LoadError::Invalid(b))) = (
        decode(&bad, options),
        load(std::slice::from_ref(&bad), options),
    ) else {
        panic!("both must reject the bad address")
    };
    assert_eq!(a, b);
}
