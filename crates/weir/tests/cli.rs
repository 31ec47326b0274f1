//! The `weir` binary on the seed example and on bad input: outputs, exit codes.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn weir(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_weir"))
        .current_dir(repo())
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[test]
fn todos_matrix_csv() {
    let o = weir(&[
        "matrix",
        "examples/todos",
        "--ports",
        "TCP/80,TCP/6379",
        "-o",
        "csv",
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let csv = stdout(&o);
    // The lesson's claims, checked row by row before the snapshot pins the whole table.
    for row in [
        "production/ubuntu,production/redis,TCP,6379,allow",
        "production/todos,production/redis,TCP,6379,allow",
        "personal/ubuntu,production/redis,TCP,6379,deny",
        "personal/ubuntu,production/todos,TCP,80,allow",
        "production/ubuntu,production/todos,TCP,80,allow",
        "production/redis,production/todos,TCP,80,allow",
        "personal/ubuntu,production/redis,TCP,80,deny",
        "production/todos,production/todos,TCP,6379,allow",
    ] {
        assert!(csv.lines().any(|l| l == row), "missing {row}");
    }
    assert_eq!(csv.lines().count(), 1 + 4 * 4 * 2);
    insta::assert_snapshot!("todos_matrix_csv", csv);
}

#[test]
fn todos_explain_denied_and_allowed() {
    let denied = weir(&[
        "explain",
        "examples/todos",
        "--from",
        "personal/ubuntu",
        "--to",
        "production/redis",
        "--port",
        "TCP/6379",
    ]);
    assert_eq!(denied.status.code(), Some(3));
    let text = stdout(&denied);
    assert!(text.starts_with("personal/ubuntu → production/redis TCP/6379: DENIED"));
    assert!(
        text.contains("port matches, peer does not: production/data-from-logic-redis ingress[0]")
    );
    insta::assert_snapshot!("todos_explain_denied", text);

    let allowed = weir(&[
        "explain",
        "examples/todos",
        "--from",
        "production/ubuntu",
        "--to",
        "production/redis",
        "--port",
        "TCP/6379",
    ]);
    assert_eq!(allowed.status.code(), Some(0));
    insta::assert_snapshot!("todos_explain_allowed", stdout(&allowed));

    let json = weir(&[
        "explain",
        "examples/todos",
        "--from",
        "personal/ubuntu",
        "--to",
        "production/todos",
        "--port",
        "TCP/80",
        "-o",
        "json",
    ]);
    assert_eq!(json.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(v["allowed"], true);
    assert_eq!(
        v["ingress"]["allowing"][0]["policy"],
        "production/logic-from-any-http"
    );
    insta::assert_snapshot!("todos_explain_json", stdout(&json));
}

#[test]
fn todos_analyze_formats() {
    let table = weir(&["analyze", "examples/todos"]);
    assert_eq!(table.status.code(), Some(0));
    insta::assert_snapshot!("todos_analyze_table", stdout(&table));
    for format in ["json", "csv", "md", "dot", "mermaid"] {
        let o = weir(&["analyze", "examples/todos", "-o", format]);
        assert_eq!(o.status.code(), Some(0), "{format}");
        let out = stdout(&o);
        assert!(out.contains("redis"), "{format}: {out}");
        if format == "json" {
            let v: serde_json::Value = serde_json::from_str(&out).unwrap();
            assert_eq!(v["stats"]["endpoints"], 4);
            // personal/ubuntu never reaches redis, on any port.
            let flows = v["flows"].as_array().unwrap();
            assert!(!flows.iter().any(|f| f["from"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x == "personal/ubuntu")
                && f["to"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|x| x == "production/redis")));
        }
        if format == "csv" {
            assert!(
                out.lines()
                    .any(|l| l == "production/ubuntu,production/redis,TCP 6379"),
                "{out}"
            );
        }
    }
    let summary = weir(&["analyze", "examples/todos", "--summary", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&summary)).unwrap();
    // 4 endpoints, 12 ordered pairs; redis accepts only 2 of its 3 peers, on one port.
    assert_eq!(v["possible_endpoint_pairs"], 12);
    assert_eq!(v["allowed_endpoint_pairs"], 11);
}

#[test]
fn stdin_is_read_with_dash() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["matrix", "-", "--ports", "TCP/80"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let text = std::fs::read_to_string(repo().join("examples/todos/ubuntu.yaml")).unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout(&o).lines().count(), 1 + 4);
}

#[test]
fn invalid_input_exits_2_with_location() {
    let dir = std::env::temp_dir().join(format!("weir-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.yaml");
    std::fs::write(&file, "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec:\n  podSelector: {}\n  ingress:\n  - ports:\n    - port: 70000\n").unwrap();
    let o = weir(&["analyze", file.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("bad.yaml:8:7: error: spec.ingress[0].ports[0].port: port 70000 must be between 1 and 65535"), "{err}");
    assert!(
        o.stdout.is_empty(),
        "nothing may be printed for a partial input"
    );
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(
        weir(&["matrix", "examples/todos", "--ports", "TCP/0"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        weir(&[
            "explain",
            "examples/todos",
            "--from",
            "nope/x",
            "--to",
            "production/redis",
            "--port",
            "TCP/1"
        ])
        .status
        .code(),
        Some(2)
    );
    assert_eq!(
        weir(&["analyze", "examples/todos", "-o", "yaml"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(weir(&["analyze", "does/not/exist"]).status.code(), Some(1));
}
