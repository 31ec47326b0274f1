//! Bad input: every error names file:line:col and the field path; nothing loads.
//! Positions point at the offending key (for a list element: the element).

use weir_manifest::{load_str, LoadOptions};

mod common;
use common::{errors, single};

const HEAD: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: p\n  namespace: x\nspec:\n";

#[test]
fn unknown_field_is_reported_at_its_key() {
    single(
        &format!("{HEAD}  podSelector: {{}}\n  ingres:\n  - {{}}\n"),
        8,
        3,
        "spec.ingres",
        "unknown field \"ingres\"",
    );
}

#[test]
fn unknown_field_deep_inside_a_peer() {
    let text = format!("{HEAD}  podSelector: {{}}\n  ingress:\n  - from:\n    - podSelectr:\n        matchLabels: {{a: b}}\n");
    let errs = errors(&text);
    // The unknown key, and the peer left with no selector at all.
    assert!(
        errs.iter()
            .any(|e| e.field == "spec.ingress[0].from[0].podSelectr" && (e.line, e.col) == (10, 7)),
        "{errs:#?}"
    );
    assert!(
        errs.iter()
            .any(|e| e.field == "spec.ingress[0].from[0]" && e.message.contains("must set")),
        "{errs:#?}"
    );
}

#[test]
fn unknown_fields_can_be_warnings() {
    let text = format!("{HEAD}  podSelector: {{}}\n  ingres: []\n");
    let loaded = load_str(
        "w.yaml",
        &text,
        LoadOptions {
            allow_unknown_fields: true,
            ..LoadOptions::default()
        },
    )
    .unwrap();
    assert_eq!(loaded.warnings.len(), 1);
    assert_eq!(
        loaded.warnings[0].to_string(),
        "w.yaml:8:3: warning: spec.ingres: unknown field \"ingres\" (did you mean \"ingress\"?)"
    );
    assert_eq!(loaded.cluster.policies.len(), 1);
}

#[test]
fn bad_selector_operator() {
    single(
        &format!("{HEAD}  podSelector:\n    matchExpressions:\n    - key: app\n      operator: Equals\n      values: [a]\n"),
        10,
        7,
        "spec.podSelector.matchExpressions[0].operator",
        "unsupported operator \"Equals\"",
    );
}

#[test]
fn in_needs_values_and_exists_forbids_them() {
    single(
        &format!(
            "{HEAD}  podSelector:\n    matchExpressions:\n    - key: app\n      operator: In\n"
        ),
        9,
        7,
        "spec.podSelector.matchExpressions[0].values",
        "must be non-empty",
    );
    single(
        &format!("{HEAD}  podSelector:\n    matchExpressions:\n    - key: app\n      operator: Exists\n      values: [x]\n"),
        11,
        7,
        "spec.podSelector.matchExpressions[0].values",
        "must be empty",
    );
}

#[test]
fn bad_label_key_and_value() {
    single(
        &format!("{HEAD}  podSelector:\n    matchLabels:\n      a/b/c: x\n"),
        9,
        7,
        "spec.podSelector.matchLabels[\"a/b/c\"]",
        "label key",
    );
    single(
        &format!("{HEAD}  podSelector:\n    matchLabels:\n      app: \"-bad\"\n"),
        9,
        7,
        "spec.podSelector.matchLabels.app",
        "label value",
    );
}

fn ingress_peer(peer: &str) -> String {
    format!("{HEAD}  podSelector: {{}}\n  ingress:\n  - from:\n    - {peer}\n")
}

#[test]
fn invalid_cidr() {
    single(
        &ingress_peer("ipBlock: {cidr: 10.0.0.300/8}"),
        10,
        17,
        "spec.ingress[0].from[0].ipBlock.cidr",
        "invalid CIDR",
    );
    single(
        &ingress_peer("ipBlock: {cidr: 10.0.0.1}"),
        10,
        17,
        "spec.ingress[0].from[0].ipBlock.cidr",
        "prefix length is required",
    );
}

#[test]
fn except_outside_cidr() {
    single(
        &ingress_peer("ipBlock: {cidr: 10.0.0.0/16, except: [10.0.1.0/24, 10.1.0.0/24]}"),
        10,
        58,
        "spec.ingress[0].from[0].ipBlock.except[1]",
        "strictly within",
    );
    // An except equal to the cidr is not strictly within it either.
    single(
        &ingress_peer("ipBlock: {cidr: 10.0.0.0/16, except: [10.0.0.0/16]}"),
        10,
        45,
        "spec.ingress[0].from[0].ipBlock.except[0]",
        "strictly within",
    );
}

#[test]
fn ipblock_mixed_with_selector() {
    single(
        &ingress_peer("ipBlock: {cidr: 10.0.0.0/8}\n      podSelector: {}"),
        10,
        7,
        "spec.ingress[0].from[0]",
        "may not be combined",
    );
}

#[test]
fn empty_peer() {
    single(
        &ingress_peer("{}"),
        10,
        7,
        "spec.ingress[0].from[0]",
        "must set podSelector",
    );
}

fn ingress_port(port: &str) -> String {
    format!("{HEAD}  podSelector: {{}}\n  ingress:\n  - ports:\n    - {port}\n")
}

#[test]
fn ports_out_of_range_and_bad_ranges() {
    single(
        &ingress_port("port: 70000"),
        10,
        7,
        "spec.ingress[0].ports[0].port",
        "between 1 and 65535",
    );
    single(
        &ingress_port("port: 0"),
        10,
        7,
        "spec.ingress[0].ports[0].port",
        "between 1 and 65535",
    );
    single(
        &ingress_port("port: 90\n      endPort: 80"),
        11,
        7,
        "spec.ingress[0].ports[0].endPort",
        "greater than or equal",
    );
    single(
        &ingress_port("port: http\n      endPort: 80"),
        11,
        7,
        "spec.ingress[0].ports[0].endPort",
        "named port",
    );
    single(
        &ingress_port("endPort: 80"),
        10,
        7,
        "spec.ingress[0].ports[0].endPort",
        "requires port",
    );
    single(
        &ingress_port("port: Not_A_Name"),
        10,
        7,
        "spec.ingress[0].ports[0].port",
        "not a valid port name",
    );
}

#[test]
fn unknown_protocol() {
    single(
        &ingress_port("protocol: ICMP"),
        10,
        7,
        "spec.ingress[0].ports[0].protocol",
        "unsupported protocol \"ICMP\"",
    );
    // The API server is case-sensitive.
    single(
        &ingress_port("protocol: tcp"),
        10,
        7,
        "spec.ingress[0].ports[0].protocol",
        "unsupported protocol",
    );
}

#[test]
fn wrong_type_names_the_field() {
    single(
        &ingress_port("port: [80]"),
        10,
        7,
        "spec.ingress[0].ports[0].port",
        "",
    );
}

#[test]
fn bad_policy_type() {
    single(
        &format!("{HEAD}  podSelector: {{}}\n  policyTypes: [Ingress, Egres]\n"),
        8,
        26,
        "spec.policyTypes[1]",
        "Egres",
    );
}

#[test]
fn yaml_syntax_error_position() {
    let errs = errors("kind: Pod\nmetadata:\n  name: [unclosed\n");
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].line, 4, "{}", errs[0]);
    assert!(errs[0].message.contains("invalid YAML"));
}

#[test]
fn duplicate_key() {
    let errs = errors("kind: Namespace\nmetadata:\n  name: a\n  name: b\n");
    assert_eq!((errs[0].line, errs[0].col), (4, 3), "{}", errs[0]);
}

#[test]
fn json_errors_are_located_too() {
    let text = "{\"apiVersion\": \"networking.k8s.io/v1\", \"kind\": \"NetworkPolicy\",\n \"metadata\": {\"name\": \"p\"},\n \"spec\": {\"podSelector\": {}, \"ingress\": [{\"ports\": [{\"port\": 99999}]}]}}\n";
    single(
        text,
        3,
        54,
        "spec.ingress[0].ports[0].port",
        "between 1 and 65535",
    );
}

#[test]
fn list_items_are_located() {
    let text = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Namespace\n  metadata: {name: ok}\n- apiVersion: v1\n  kind: Namespace\n  metadata: {name: Not_Valid}\n";
    single(text, 9, 14, "items[1].metadata.name", "RFC 1123");
}

#[test]
fn missing_name_and_kind() {
    single(
        "apiVersion: v1\nkind: Namespace\nmetadata: {}\n",
        3,
        1,
        "metadata.name",
        "missing name",
    );
    single(
        "apiVersion: v1\nmetadata: {name: a}\n",
        1,
        1,
        "kind",
        "missing kind",
    );
}

#[test]
fn wrong_api_version_for_kind() {
    let text =
        "apiVersion: extensions/v1beta1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec: {}\n";
    let errs = errors(text);
    assert!(
        errs[0].message.contains("networking.k8s.io/v1"),
        "{}",
        errs[0]
    );
}

#[test]
fn all_errors_of_a_file_are_reported_and_nothing_loads() {
    let text = format!("{HEAD}  podSelector: {{}}\n  ingress:\n  - ports:\n    - port: 0\n    - protocol: XTP\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: ok\n  labels: {{\"bad key!\": v}}\n");
    let errs = errors(&text);
    let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        vec![
            "spec.ingress[0].ports[0].port",
            "spec.ingress[0].ports[1].protocol",
            "metadata.labels[\"bad key!\"]"
        ]
    );
    assert_eq!(errs[2].line, 17);
}

#[test]
fn container_port_problems() {
    let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - name: c\n    ports:\n    - containerPort: 80\n      name: HTTP\n";
    single(
        text,
        9,
        7,
        "spec.containers[0].ports[0].name",
        "not a valid port name",
    );
}

#[test]
fn host_bits_in_cidr_are_a_warning() {
    let loaded = load_str(
        "w.yaml",
        &ingress_peer("ipBlock: {cidr: 10.0.0.1/8}"),
        LoadOptions::default(),
    )
    .unwrap();
    assert_eq!(loaded.warnings.len(), 1);
    assert!(loaded.warnings[0].message.contains("10.0.0.0/8"));
}

/// apps/v1 workloads need a selector, and its matchLabels must be the template's (the API
/// server rejects both); the error points at the selector.
#[test]
fn apps_workloads_need_a_matching_selector() {
    let no_selector = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: a}\nspec:\n  template:\n    metadata: {labels: {app: web}}\n";
    let d = errors(no_selector);
    assert_eq!(d.len(), 1, "{d:#?}");
    assert_eq!(d[0].field, "spec.selector");
    assert!(d[0].message.contains("required"), "{}", d[0].message);
    let mismatch = "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: db, namespace: a}\nspec:\n  selector: {matchLabels: {app: db}}\n  template:\n    metadata: {labels: {app: web}}\n";
    let d = errors(mismatch);
    assert_eq!(d.len(), 1, "{d:#?}");
    assert_eq!(d[0].field, "spec.selector.matchLabels.app");
    assert!(d[0].message.contains("does not match"), "{}", d[0].message);
    let fine = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: a}\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web, tier: x}}\n";
    assert!(load_str("f.yaml", fine, LoadOptions::default()).is_ok());
}

/// Errors come in reading order (line, then column), whichever check found them first.
#[test]
fn errors_are_in_reading_order() {
    let text = format!("{HEAD}  podSelector: {{}}\n  ingress:\n  - ports: [{{port: 70000}}]\n  egress:\n  - ports: [{{port: 0}}]\n  policyTypes: [Bogus]\n  ingres: []\n");
    let errs = errors(&text);
    let at: Vec<(usize, usize)> = errs.iter().map(|e| (e.line, e.col)).collect();
    let mut sorted = at.clone();
    sorted.sort();
    assert_eq!(at, sorted, "{errs:#?}");
    assert_eq!(errs.len(), 4, "{errs:#?}");
}

/// Every port-number field of every kind is checked alike (one check, `validate::port_number`):
/// out of range is an error at that field, named in the message.
#[test]
fn every_port_number_field_is_checked_alike() {
    let cases = [
        (ingress_port("port: 80\n      endPort: 70000"), "spec.ingress[0].ports[0].endPort", "endPort 70000"),
        ("apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: a}\nspec:\n  containers:\n  - name: c\n    ports: [{containerPort: 0}]\n".to_string(),
            "spec.containers[0].ports[0].containerPort", "containerPort 0"),
        ("apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: a}\nspec:\n  ports: [{port: 70000}]\n".to_string(),
            "spec.ports[0].port", "port 70000"),
        ("apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: a}\nspec:\n  ports: [{port: 80, targetPort: 0}]\n".to_string(),
            "spec.ports[0].targetPort", "targetPort 0"),
        ("apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: a}\nspec:\n  type: NodePort\n  ports: [{port: 80, nodePort: 70000}]\n".to_string(),
            "spec.ports[0].nodePort", "nodePort 70000"),
        ("apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: i, namespace: a}\nspec:\n  defaultBackend: {service: {name: s, port: {number: 0}}}\n".to_string(),
            "spec.defaultBackend.service.port.number", "port 0"),
        ("apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r, namespace: a}\nspec:\n  parentRefs: [{name: g, port: 0}]\n".to_string(),
            "spec.parentRefs[0].port", "port 0"),
        ("apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r, namespace: a}\nspec:\n  rules: [{backendRefs: [{name: s, port: 70000}]}]\n".to_string(),
            "spec.rules[0].backendRefs[0].port", "port 70000"),
        ("apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\nmetadata: {name: p}\nspec:\n  priority: 1\n  subject: {namespaces: {}}\n  ingress:\n  - action: Deny\n    from: [{namespaces: {}}]\n    ports: [{portNumber: {protocol: TCP, port: 0}}]\n".to_string(),
            "spec.ingress[0].ports[0].portNumber.port", "port 0"),
        ("apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata: {name: p}\nspec:\n  tier: Admin\n  priority: 1\n  subject: {namespaces: {}}\n  ingress:\n  - action: Deny\n    from: [{namespaces: {}}]\n    protocols: [{tcp: {destinationPort: {range: {start: 0, end: 80}}}}]\n".to_string(),
            "spec.ingress[0].protocols[0].tcp.destinationPort.range.start", "port 0"),
    ];
    for (text, field, what) in cases {
        let errs = errors(&text);
        let message = format!("{what} must be between 1 and 65535");
        assert!(
            errs.iter()
                .any(|e| e.field == field && e.message == message),
            "{field}: {message}\n{errs:#?}"
        );
    }
}
