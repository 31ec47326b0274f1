//! `weir demo` end to end, as the README runs it: real pods, real Redis, the todos API,
//! the lesson's policies, real clients. Needs root (CI is root; elsewhere: a loud skip).
// The lab binary: `cargo test --features lab` (scripts/test.sh runs it).
#![cfg(feature = "lab")]

mod common;

use std::path::PathBuf;
use std::process::Command;

#[test]
fn demo_passes_every_check_and_cleans_up() {
    if !common::root_or_skip("demo_passes_every_check_and_cleans_up") {
        return;
    }
    let weir = PathBuf::from(env!("CARGO_BIN_EXE_weir"));
    let todos = weir.with_file_name("todos");
    if !todos.exists() {
        // `cargo test --workspace` builds it for its own tests; build it when run alone.
        let status = Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "todos"])
            .status()
            .unwrap();
        assert!(status.success());
    }
    let name = format!("td{}", std::process::id() % 1_000_000);
    let out = Command::new(&weir)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .args(["demo", "--name", &name, "--todos"])
        .arg(&todos)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    let last = stdout.lines().last().unwrap_or("");
    let passed: usize = last.split(' ').next().unwrap().parse().unwrap();
    assert!(last.ends_with("passed, 0 failed") && passed >= 12, "{last}");
    assert!(
        !stdout.lines().any(|l| l.starts_with("  ✘ ")),
        "a check failed:\n{stdout}"
    );
    assert!(
        stdout.contains("  ✔ personal/ubuntu → redis through the Service"),
        "{stdout}"
    );
    // Nothing left behind.
    let leftovers: Vec<String> = std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        !leftovers
            .iter()
            .any(|n| n.starts_with(&format!("wl-{name}-"))),
        "{leftovers:?}"
    );
    assert!(!std::path::Path::new(&format!("/run/weir/lab/{name}")).exists());
}
