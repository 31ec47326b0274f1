//! `deploy/` runs the agent with least privilege: the fields a security reviewer checks.

use serde_json::Value;
use weir_manifest::yaml::{parse_documents, Body};

fn daemonset() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/weir-agent.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    parse_documents(&text)
        .unwrap()
        .into_iter()
        .filter_map(|d| match d.body {
            Body::Tree(v) => Some(v),
            Body::Json(_) => None,
        })
        .find(|v| v["kind"] == "DaemonSet")
        .expect("a DaemonSet in deploy/weir-agent.yaml")
}

#[test]
fn the_agent_runs_with_only_net_admin() {
    let ds = daemonset();
    let pod = &ds["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let sc = &c["securityContext"];
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert_eq!(sc["capabilities"]["add"], serde_json::json!(["NET_ADMIN"]));
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert!(sc.get("privileged").is_none_or(|p| p == false));
    for r in ["requests", "limits"] {
        for k in ["cpu", "memory"] {
            assert!(c["resources"][r][k].is_string(), "resources.{r}.{k}");
        }
    }
}

#[test]
fn the_endpoint_is_on_loopback_and_state_is_a_volume() {
    let ds = daemonset();
    let pod = &ds["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(args.contains(&"--listen=127.0.0.1:9595"), "{args:?}");
    assert!(!args.contains(&"--serve-drops"), "/drops stays off");
    assert!(args.contains(&"--state-dir=/var/lib/weir"), "{args:?}");
    // Pod interfaces the agent accepts (it refuses to start on a bad pattern).
    let pods = args
        .iter()
        .find_map(|a| a.strip_prefix("--pod-interfaces="))
        .expect("--pod-interfaces");
    assert!(pods.parse::<weir_nft::PodInterfaces>().is_ok(), "{pods}");
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(c[probe]["httpGet"]["host"], "127.0.0.1", "{probe}");
    }
    assert_eq!(c["volumeMounts"][0]["mountPath"], "/var/lib/weir");
    assert_eq!(pod["volumes"][0]["hostPath"]["path"], "/var/lib/weir");
    // The image has what the agent runs.
    let dockerfile = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/Dockerfile"
    ))
    .unwrap();
    assert!(dockerfile.contains("nftables") && dockerfile.contains("conntrack"));
    let ignore =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../.dockerignore"))
            .unwrap();
    assert!(ignore.lines().any(|l| l == "target") && ignore.lines().any(|l| l == ".git"));
}
