//! network-policy-api's conformance suites as data: every probe the suites made against the
//! real cluster, recorded by `scripts/netpol-api.sh --record` (tools/kube/netpol-api/
//! record.go.in) with the suite's expected verdict and the objects of the cluster at that
//! moment (namespaces, nodes, the suite's pods with their addresses, every policy). The
//! engine must give the suite's verdict for every probe — no cluster, every run.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde_json::Value;
use weir_engine::{Engine, Side};
use weir_manifest::{load_str, LoadOptions};
use weir_model::Protocol;
use weir_report::ExplainFormat;

fn data(suite: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/netpol-api")
        .join(suite)
}

fn lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (record with scripts/netpol-api.sh --record)",
            path.display()
        )
    });
    text.lines()
        .enumerate()
        .map(|(n, l)| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("{}:{}: {e}", path.display(), n + 1))
        })
        .collect()
}

/// A probe of the suite that the engine judges otherwise than the suite expects.
#[derive(Debug)]
#[allow(dead_code)] // read through Debug in the failure message
struct Mismatch {
    test: String,
    probe: String,
    suite_expects: bool,
    explanation: String,
}

/// Checks every recorded probe of `suite`; returns how many (connect, not) there were.
fn check(suite: &str) -> (usize, usize) {
    let dir = data(suite);
    let objects: HashMap<String, Value> = lines(&dir.join("objects.jsonl"))
        .into_iter()
        .map(|l| (l["id"].as_str().unwrap().to_string(), l["object"].clone()))
        .collect();
    // One cluster per distinct object set: the probes between two policy changes share it.
    let mut by_state: BTreeMap<Vec<String>, Vec<Value>> = BTreeMap::new();
    for probe in lines(&dir.join("probes.jsonl")) {
        let ids = probe["objects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_str().unwrap().to_string())
            .collect();
        by_state.entry(ids).or_default().push(probe);
    }
    let (mut yes, mut no) = (0, 0);
    let mut wrong = Vec::new();
    for (ids, probes) in &by_state {
        let text: Vec<String> = ids
            .iter()
            .map(|id| {
                serde_json::to_string(objects.get(id).unwrap_or_else(|| panic!("object {id}")))
                    .unwrap()
            })
            .collect();
        let name = format!("{suite}/{}", probes[0]["test"].as_str().unwrap());
        let cluster = load_str(&name, &text.join("\n---\n"), LoadOptions::default())
            .unwrap_or_else(|e| panic!("{name}: the recorded objects do not load: {e}"))
            .cluster;
        let engine = Engine::new(&cluster);
        for probe in probes {
            let test = probe["test"].as_str().unwrap();
            let from = probe["from"].as_str().unwrap();
            let host: IpAddr = probe["host"].as_str().unwrap().parse().unwrap();
            let port = u16::try_from(probe["port"].as_u64().unwrap()).unwrap();
            let protocol = Protocol::parse(&probe["protocol"].as_str().unwrap().to_uppercase())
                .unwrap_or_else(|| panic!("{test}: protocol {}", probe["protocol"]));
            let expect = probe["connect"].as_bool().unwrap();
            let src = cluster
                .endpoints
                .iter()
                .position(|e| e.id() == from)
                .unwrap_or_else(|| panic!("{test}: no pod {from} in the recorded objects"));
            // A pod by its address; a hostNetwork pod's address is its node's.
            let dst = cluster
                .endpoints
                .iter()
                .position(|e| !e.host_network && e.ips.contains(&host))
                .map_or(Side::Address(host), Side::Endpoint);
            let allowed = engine
                .allowed(Side::Endpoint(src), dst)
                .contains(protocol, port);
            if expect {
                yes += 1;
            } else {
                no += 1;
            }
            if allowed != expect {
                wrong.push(Mismatch {
                    test: test.to_string(),
                    probe: format!("{from} → {host} {protocol}/{port}"),
                    suite_expects: expect,
                    explanation: {
                        let e = engine.explain(Side::Endpoint(src), dst, protocol, port);
                        let mut out = Vec::new();
                        weir_report::render_explain(&e, ExplainFormat::Text, &mut out).unwrap();
                        String::from_utf8_lossy(&out).into_owned()
                    },
                });
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{suite}: the engine differs from the suite on {} of {} probes: {wrong:#?}",
        wrong.len(),
        yes + no
    );
    (yes, no)
}

#[test]
fn engine_gives_the_v1beta1_suites_verdict_on_every_probe() {
    let (yes, no) = check("v1beta1");
    // The whole suite, both kinds of verdict (a truncated recording fails here).
    assert!(yes >= 100 && no >= 100, "{yes} connect, {no} not");
}

#[test]
fn engine_gives_the_v1alpha1_suites_verdict_on_every_probe() {
    let (yes, no) = check("v1alpha1");
    assert!(yes >= 100 && no >= 100, "{yes} connect, {no} not");
}
