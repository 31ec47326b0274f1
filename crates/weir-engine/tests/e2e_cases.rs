//! The upstream e2e netpol scenarios, re-created as data: `tests/e2e/base.yaml`
//! (namespaces x, y, z; pods a, b, c) plus one directory per case with its
//! policies and an `expect.txt` truth table written by hand from the upstream
//! test's expectations:
//!
//! ```text
//! probe TCP/80 default allow     # a new table for this probe, everything allowed
//! deny * -> x/a                  # then overrides, in order; `*` and `ns/*` are wildcards
//! allow x/b -> x/a
//! ```
//! Traffic of a pod to itself is always allowed, as upstream.
//!
//! The `tier-*` cases do the same for the cluster-wide tiers (ClusterNetworkPolicy,
//! AdminNetworkPolicy, BaselineAdminNetworkPolicy), modelled on the network-policy-api
//! conformance scenarios (Deny over a NetworkPolicy's allow, Pass, priorities, Baseline only
//! where nothing isolates, networks, port ranges and names); the lab probes every case on
//! TCP, UDP and SCTP against its dataplane (`upstream_cases_probed_on_tcp_udp_sctp`).

use std::path::{Path, PathBuf};

use weir_engine::{Engine, Side};
use weir_model::Cluster;
use weir_model::PortKey;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/e2e")
}

fn matches(pattern: &str, id: &str) -> bool {
    pattern == "*"
        || pattern == id
        || pattern
            .strip_suffix("/*")
            .is_some_and(|ns| id.split('/').next() == Some(ns))
}

/// (probe, expected verdict per ordered pair of endpoint indexes).
fn expectations(cluster: &Cluster, text: &str) -> Vec<(PortKey, Vec<Vec<bool>>)> {
    let ids: Vec<String> = cluster.endpoints.iter().map(|e| e.id()).collect();
    let n = ids.len();
    let mut out: Vec<(PortKey, Vec<Vec<bool>>)> = Vec::new();
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["probe", probe, "default", verdict] => {
                let v = *verdict == "allow";
                out.push((probe.parse::<PortKey>().unwrap(), vec![vec![v; n]; n]));
            }
            [verdict @ ("allow" | "deny"), from, "->", to] => {
                let table = &mut out.last_mut().expect("a probe line first").1;
                let mut hit = false;
                for a in 0..n {
                    for b in 0..n {
                        if matches(from, &ids[a]) && matches(to, &ids[b]) {
                            table[a][b] = *verdict == "allow";
                            hit = true;
                        }
                    }
                }
                assert!(hit, "expectation {line:?} matches no endpoint pair");
            }
            _ => panic!("bad expectation line {line:?}"),
        }
    }
    for (_, table) in &mut out {
        for (i, row) in table.iter_mut().enumerate() {
            row[i] = true;
        }
    }
    out
}

#[test]
fn upstream_e2e_cases() {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root().join("cases"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    assert!(
        dirs.len() >= 20,
        "the case directory lost cases: {}",
        dirs.len()
    );
    let mut failures = Vec::new();
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let loaded =
            weir_manifest::load_paths(&[root().join("base.yaml"), dir.clone()], Default::default())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        let cluster = &loaded.cluster;
        assert_eq!(cluster.endpoints.len(), 9, "{name}");
        let expect = std::fs::read_to_string(dir.join("expect.txt")).unwrap();
        let engine = Engine::new(cluster);
        for (probe, table) in expectations(cluster, &expect) {
            for (a, row) in table.iter().enumerate() {
                for (b, want) in row.iter().enumerate() {
                    let got = engine
                        .allowed(Side::Endpoint(a), Side::Endpoint(b))
                        .contains(probe.protocol, probe.port);
                    let oracle = weir_oracle::allowed(
                        cluster,
                        weir_oracle::Side::Pod(a),
                        weir_oracle::Side::Pod(b),
                        probe.protocol,
                        probe.port,
                    );
                    let explained = engine
                        .explain(
                            Side::Endpoint(a),
                            Side::Endpoint(b),
                            probe.protocol,
                            probe.port,
                        )
                        .allowed;
                    if got != *want || oracle != *want || explained != *want {
                        failures.push(format!(
                            "{name}: {} -> {} {probe}: expected {}, engine {got}, explain {explained}, oracle {oracle}",
                            cluster.endpoints[a].id(),
                            cluster.endpoints[b].id(),
                            if *want { "allow" } else { "deny" }
                        ));
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
