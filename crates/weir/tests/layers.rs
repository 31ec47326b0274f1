//! The workspace's shape, checked: crates depend one way, model → (manifest | engine) →
//! (report | nft) → (lab | agent) → binaries, and the product binary links no lab, demo
//! app or benchmark code.

use std::collections::BTreeMap;
use std::process::Command;

fn cargo(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO"))
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Each workspace crate's layer; a crate may use crates of lower layers only.
fn layer(name: &str) -> u8 {
    match name {
        "weir-model" | "weir-netns" => 0,
        "weir-manifest" | "weir-engine" | "weir-gen" | "weir-oracle" => 1,
        "weir-report" | "weir-nft" | "weir-kube" => 2,
        // todos is the lesson's app (independent of weir); the lab's demo runs it.
        "weir-lab" | "weir-agent" | "todos" => 3,
        "weir" => 4,
        other => panic!("{other}: put the new crate in a layer here"),
    }
}

#[test]
fn crates_depend_one_way() {
    let meta: serde_json::Value = serde_json::from_str(&cargo(&[
        "metadata",
        "--offline",
        "--no-deps",
        "--format-version",
        "1",
    ]))
    .unwrap();
    let mut edges: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in meta["packages"].as_array().unwrap() {
        let name = p["name"].as_str().unwrap().to_string();
        for d in p["dependencies"].as_array().unwrap() {
            let dep = d["name"].as_str().unwrap();
            let normal = d["kind"].is_null();
            if normal && (dep.starts_with("weir") || dep == "todos") {
                edges.entry(name.clone()).or_default().push(dep.to_string());
            }
        }
    }
    for (from, deps) in &edges {
        for to in deps {
            assert!(
                layer(to) < layer(from),
                "{from} (layer {}) uses {to} (layer {})",
                layer(from),
                layer(to)
            );
        }
    }
    // The siblings stay apart.
    assert!(!edges["weir-agent"].iter().any(|d| d == "weir-lab"));
    assert!(!edges["weir-lab"].iter().any(|d| d == "weir-report"));
}

#[test]
fn the_product_binary_links_no_lab() {
    let tree = cargo(&[
        "tree",
        "--offline",
        "-p",
        "weir",
        "--edges",
        "normal",
        "--prefix",
        "none",
    ]);
    for banned in [
        "axum",
        "redis",
        "uuid",
        "indicatif",
        "weir-lab",
        "todos",
        "rand",
    ] {
        assert!(
            !tree.lines().any(|l| l.split(' ').next() == Some(banned)),
            "the product binary links {banned}:\n{tree}"
        );
    }
    assert!(tree.lines().any(|l| l.starts_with("weir-agent ")));
}

#[test]
fn unsafe_lives_in_one_crate() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let manifest = std::fs::read_to_string(format!("{root}/Cargo.toml")).unwrap();
    assert!(manifest.contains("[workspace.lints.rust]\nunsafe_code = \"forbid\""));
    for entry in std::fs::read_dir(format!("{root}/crates")).unwrap() {
        let dir = entry.unwrap().path();
        let toml = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        if name == "weir-netns" {
            assert!(!toml.contains("[lints]\nworkspace = true"));
        } else {
            assert!(
                toml.contains("[lints]\nworkspace = true"),
                "{name} must inherit the workspace lints (forbid unsafe_code)"
            );
        }
    }
}
