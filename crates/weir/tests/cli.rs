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

/// A fresh scratch directory for one test (removed by the test at its end).
fn scratch(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weir-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
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
    let dir = scratch("cli");
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
    // A path that does not exist is the user's input, like an invalid file.
    assert_eq!(weir(&["analyze", "does/not/exist"]).status.code(), Some(2));
    // `bench enforce --changes 0` once panicked; now it is a usage error.
    #[cfg(feature = "lab")]
    assert_eq!(
        weir(&["bench", "enforce", "--changes", "0"]).status.code(),
        Some(2)
    );
}

/// A dual-stack pod's second address: explain matches ipBlocks in that family, as the
/// dataplane matches the packet (it once used the primary family whatever was asked).
#[test]
fn explain_uses_the_family_of_a_named_address() {
    let dir = scratch("dual");
    let file = dir.join("dual.yaml");
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: client, namespace: a}\nstatus: {podIPs: [{ip: 10.0.0.1}, {ip: 'fd00::1'}]}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: server, namespace: a}\nstatus: {podIPs: [{ip: 10.0.0.2}, {ip: 'fd00::2'}]}\n---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: v6-only, namespace: a}\nspec:\n  podSelector: {}\n  ingress: [{from: [{ipBlock: {cidr: 'fd00::/64'}}]}]\n",
    )
    .unwrap();
    let explain = |from: &str, to: &str| {
        weir(&[
            "explain",
            file.to_str().unwrap(),
            "--from",
            from,
            "--to",
            to,
            "--port",
            "TCP/80",
        ])
        .status
        .code()
    };
    assert_eq!(explain("a/client", "fd00::2"), Some(0), "IPv6: allowed");
    assert_eq!(
        explain("fd00::1", "a/server"),
        Some(0),
        "IPv6 source: allowed"
    );
    assert_eq!(explain("a/client", "10.0.0.2"), Some(3), "IPv4: denied");
    assert_eq!(
        explain("a/client", "a/server"),
        Some(3),
        "primary (IPv4): denied"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A live cluster or files, never both; a cluster that cannot be reached is an error that
/// says where it looked, not an empty result.
#[test]
fn live_cluster_input_is_checked() {
    let both = weir(&["analyze", "examples/todos", "--cluster"]);
    assert_eq!(both.status.code(), Some(2), "{both:?}");
    let neither = weir(&["analyze"]);
    assert_eq!(neither.status.code(), Some(2), "{neither:?}");
    let missing = weir(&["analyze", "--kubeconfig", "/nonexistent/kubeconfig"]);
    assert_eq!(missing.status.code(), Some(1), "{missing:?}");
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(
        err.contains("/nonexistent/kubeconfig") && err.contains("kubeconfig"),
        "{err}"
    );
}

/// What a newcomer runs into first: an unrendered chart, a mistyped path, a binary file, a
/// directory given as the intents file. Each is exit 2 (the user's input), said once, and
/// located where there is a place to point at.
#[test]
fn a_newcomers_input_mistakes_are_explained() {
    let dir = scratch("newcomer");
    let path = |n: &str| dir.join(n).to_str().unwrap().to_string();
    let stderr = |o: &Output| String::from_utf8_lossy(&o.stderr).to_string();

    std::fs::write(
        dir.join("chart.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {{ .Release.Name }}\n",
    )
    .unwrap();
    let o = weir(&["analyze", &path("chart.yaml")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("chart.yaml:4:"), "{}", stderr(&o));
    assert!(stderr(&o).contains("helm template"), "{}", stderr(&o));

    let o = weir(&["analyze", &path("missing.yaml")]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o).matches("No such file or directory").count(),
        1,
        "{}",
        stderr(&o)
    );

    std::fs::write(dir.join("binary.yaml"), b"kind: Pod\nname: \xff\xfe\n").unwrap();
    let o = weir(&["analyze", &path("binary.yaml")]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("binary.yaml:2:7: error: (file): not UTF-8 text (byte 0xff)"),
        "{}",
        stderr(&o)
    );

    let o = weir(&["test", dir.to_str().unwrap(), "examples/todos"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Lab commands say up front that they need root (not midway, on the first mount), and
/// `lab down` of a lab that is not there says so. Run as an unprivileged user (setpriv when
/// the tests run as root).
#[cfg(feature = "lab")]
#[test]
fn lab_commands_need_root_and_an_existing_lab() {
    let unprivileged = |args: &[&str]| -> Output {
        let bin = env!("CARGO_BIN_EXE_weir");
        let mut cmd = if weir_netns::process::is_root() {
            let mut c = Command::new("setpriv");
            c.args(["--reuid=65534", "--regid=65534", "--clear-groups", bin]);
            c
        } else {
            Command::new(bin)
        };
        cmd.current_dir(repo()).args(args).output().unwrap()
    };
    for args in [
        &["demo"][..],
        &["lab", "up", "examples/todos", "--name", "nr"],
        &["probe", "examples/todos", "--ports", "TCP/80"],
    ] {
        let o = unprivileged(args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("needs root") && err.contains("sudo"),
            "{args:?}: {err}"
        );
        assert!(
            !err.contains("mount"),
            "{args:?} started before checking: {err}"
        );
    }
    if weir_netns::process::is_root() {
        let o = weir(&["lab", "down", "--name", "nosuchlab"]);
        assert_eq!(o.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&o.stderr).contains("no lab named \"nosuchlab\""));
    }
}

/// An input with nothing selectable says so instead of printing an empty table silently.
#[test]
fn an_input_without_pods_is_named_as_such() {
    let dir = scratch("nopods");
    let policy = dir.join("np.yaml");
    std::fs::write(
        &policy,
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: x, namespace: a}\nspec: {podSelector: {}}\n",
    )
    .unwrap();
    let empty = dir.join("empty.yaml");
    std::fs::write(&empty, "").unwrap();
    for f in [&policy, &empty] {
        let o = weir(&["analyze", f.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(0));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("warning: no pods or workloads"), "{err}");
    }
    let o = weir(&["analyze", policy.to_str().unwrap(), "-q"]);
    assert!(o.stderr.is_empty(), "-q is quiet");
    let o = weir(&["analyze", "examples/todos"]);
    assert!(!String::from_utf8_lossy(&o.stderr).contains("no pods"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `weir bench agent` end to end at a small size: every event kind is taken incrementally
/// (through the in-memory and the directory source), and the agent's own memory is
/// measured in a second process that leaves no items file behind.
#[cfg(feature = "lab")]
#[test]
fn bench_agent_runs_every_event_incrementally() {
    let child = Command::new(env!("CARGO_BIN_EXE_weir"))
        .args(["bench", "agent", "--pods", "300", "--events", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let o = child.wait_with_output().unwrap();
    let text = stdout(&o);
    assert!(
        o.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let events: Vec<&str> = text.lines().filter(|l| l.contains("incremental")).collect();
    assert_eq!(events.len(), 9, "{text}");
    for line in events {
        assert!(line.ends_with("2/2 incremental"), "{line}");
    }
    assert!(
        text.contains("the agent alone in its own process"),
        "{text}"
    );
    // The items file and the directory it made are gone.
    let ours = format!("weir-bench-agent-{pid}");
    let left: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .unwrap()
        .flatten()
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name == ours || name.starts_with(&format!("{ours}-"))
        })
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Newcomer mistakes get a hint: a misspelt field or kind names the word it resembles, and
/// a quoted port number says to drop the quotes.
#[test]
fn misspellings_and_quoted_ports_get_a_hint() {
    let dir = scratch("hints");
    let write = |name: &str, text: &str| {
        let file = dir.join(name);
        std::fs::write(&file, text).unwrap();
        file.display().to_string()
    };
    let stderr = |o: &Output| String::from_utf8_lossy(&o.stderr).into_owned();
    let field = write(
        "field.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: x, namespace: a}\nspec: {containers: [{name: c, image: x}]}\nstaus: {podIP: 10.0.0.1}\n",
    );
    let o = weir(&["analyze", &field]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains(r#"unknown field "staus" (did you mean "status"?)"#),
        "{}",
        stderr(&o)
    );
    let kind = write(
        "kind.yaml",
        "apiVersion: v1\nkind: Pdo\nmetadata: {name: x}\n",
    );
    let o = weir(&["analyze", &kind]);
    assert!(stderr(&o).contains("(did you mean Pod?)"), "{}", stderr(&o));
    let port = write(
        "port.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: a}\nspec:\n  podSelector: {}\n  ingress:\n  - ports:\n    - port: \"8080\"\n",
    );
    let o = weir(&["lint", &port]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("write the number without quotes (port: 8080)"),
        "{}",
        stderr(&o)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The lesson under cluster-wide guardrails: the Admin tier denies before NetworkPolicies
/// are asked, a Pass hands the decision to them, the Baseline tier denies what no
/// NetworkPolicy isolates; explain names tier, policy, priority and rule.
#[test]
fn tiers_decide_in_explain() {
    let explain = |from: &str, to: &str, port: &str| {
        let o = weir(&[
            "explain",
            "--from",
            from,
            "--to",
            to,
            "--port",
            port,
            "examples/todos",
            "examples/tiers",
        ]);
        (o.status.code(), stdout(&o))
    };
    let (code, out) = explain("personal/ubuntu", "production/redis", "TCP/6379");
    assert_eq!(code, Some(3), "{out}");
    assert!(
        out.contains("Admin tier: ClusterNetworkPolicy/data-tier-stays-in-production (priority 10) ingress[1] \"nobody-else\"")
            && out.contains("→ denied (NetworkPolicies are not consulted)"),
        "{out}"
    );
    let (code, out) = explain("production/ubuntu", "production/redis", "TCP/6379");
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("\"production-decides\": Pass")
            && out.contains("passed on to NetworkPolicies")
            && out.contains("✔ allowed by production/data-from-logic-redis ingress[0]"),
        "{out}"
    );
    let (code, out) = explain("production/ubuntu", "personal/ubuntu", "TCP/80");
    assert_eq!(code, Some(3), "{out}");
    assert!(
        out.contains("Baseline tier: BaselineAdminNetworkPolicy/default (priority 0) ingress[0]"),
        "{out}"
    );
    // Without the guardrails the same connection is allowed: the tiers made the difference.
    let o = weir(&[
        "explain",
        "--from",
        "production/ubuntu",
        "--to",
        "personal/ubuntu",
        "--port",
        "TCP/80",
        "examples/todos",
    ]);
    assert_eq!(o.status.code(), Some(0));
}

/// `--skip-invalid`: a repository with one bad object among good ones is analysed (exit 0)
/// with the bad object left out and named on stderr (file:line:col, field); strict by default
/// (exit 2, nothing analysed).
#[test]
fn skip_invalid_analyses_the_rest_and_names_what_it_left_out() {
    let dir = scratch("skip-invalid");
    for f in ["namespaces.yaml", "todos.yaml", "redis.yaml", "ubuntu.yaml"] {
        std::fs::copy(repo().join("examples/todos").join(f), dir.join(f)).unwrap();
    }
    std::fs::copy(
        repo().join("examples/todos/policies/data-from-logic-redis.yaml"),
        dir.join("policy.yaml"),
    )
    .unwrap();
    std::fs::write(
        dir.join("broken.yaml"),
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: typo, namespace: production}\nspec:\n  podSelector: {}\n  ingress: [{ports: [{port: 0}]}]\n",
    )
    .unwrap();
    let path = dir.to_str().unwrap();
    let strict = weir(&["analyze", path]);
    assert_eq!(strict.status.code(), Some(2));
    let o = weir(&["analyze", path, "--skip-invalid", "-o", "csv", "-q"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("broken.yaml:6:") && err.contains("spec.ingress[0].ports[0].port"),
        "{err}"
    );
    assert!(err.contains("--skip-invalid left out 1 object(s)"), "{err}");
    // The valid policy still decides: only the logic tier reaches redis.
    let out = stdout(&o);
    assert!(
        out.contains("production/ubuntu,production/redis,TCP 6379"),
        "{out}"
    );
    assert!(!out.contains("personal/ubuntu,production/redis"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Lint findings about a rule point at the rule's line (W002 at its peer, W003 at its port),
/// a redundant policy at its name, not all at the object's first line.
#[test]
fn lint_points_at_the_rule() {
    let dir = scratch("lint-lines");
    let file = dir.join("p.yaml");
    std::fs::write(
        &file,
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: production}\nspec:\n  podSelector: {matchLabels: {app: todos}}\n  ingress:\n  - from:\n    - podSelector: {matchLabels: {app: nothing}}\n  - ports:\n    - port: web\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    let o = weir(&["lint", "examples/todos", f, "-q"]);
    let text = stdout(&o);
    for (at, code) in [
        ("8:7", "W002"),
        ("10:7", "W003"),
        ("7:5", "W004"),
        ("3:12", "W005"),
    ] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("{f}:{at} ")) && l.contains(code)),
            "{code} at {at}: {text}"
        );
    }
    let o = weir(&["lint", "examples/todos", f, "-q", "-o", "json"]);
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        json.as_array().unwrap().iter().any(|x| x["field"] == "spec.ingress[0].from[0]"
            && x["location"] == format!("{f}:8:7")),
        "{json:#}"
    );
    // explain: the nearest miss is located at its rule, a tier's decision at its rule.
    for (paths, at) in [
        (
            &["examples/todos", "examples/tiers"][..],
            "(examples/tiers/guardrails.yaml:24:5)",
        ),
        (
            &["examples/todos"][..],
            "(examples/todos/policies/data-from-logic-redis.yaml:14:5)",
        ),
    ] {
        let mut args = vec!["explain", "-q", "--from", "personal/ubuntu"];
        args.extend(["--to", "production/redis", "--port", "TCP/6379"]);
        args.extend(paths);
        let text = stdout(&weir(&args));
        assert!(text.contains(at), "{at}: {text}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--focus`/`--peer`/`--direction`/`--port` narrow an answer to exactly the connections
/// they describe: checked against the unfocused answer, in CSV and in grouped JSON (whose
/// classes the focus cuts), and in matrix and diff.
#[test]
fn focus_shows_exactly_the_connections_asked_for() {
    let rows = |args: &[&str]| -> std::collections::BTreeSet<(String, String, String)> {
        let mut all = vec!["analyze", "examples/todos", "-q", "-o", "csv"];
        all.extend_from_slice(args);
        let o = weir(&all);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        stdout(&o)
            .lines()
            .skip(1)
            .map(|l| {
                let f: Vec<&str> = l.splitn(3, ',').collect();
                (f[0].to_string(), f[1].to_string(), f[2].to_string())
            })
            .collect()
    };
    let every = rows(&[]);
    let redis = "production/redis";
    let logic = ["production/todos", "production/ubuntu"]; // networking/logic=true
    type Shown<'a> = Box<dyn Fn(&str, &str) -> bool + 'a>;
    let cases: Vec<(Vec<&str>, Shown)> = vec![
        (
            vec!["--focus", redis],
            Box::new(|a, b| a == redis || b == redis),
        ),
        (
            vec!["--focus", redis, "--direction", "ingress"],
            Box::new(|_, b| b == redis),
        ),
        (
            vec!["--focus", "production/*", "--peer", "outside"],
            Box::new(|a, b| {
                let inside = |x: &str| x.starts_with("production/");
                (inside(a) && b == "0.0.0.0/0") || (a == "0.0.0.0/0" && inside(b))
            }),
        ),
        (
            vec!["--focus", "networking/logic=true", "--direction", "egress"],
            Box::new(|a, _| logic.contains(&a)),
        ),
    ];
    for (args, shown) in &cases {
        let expected: std::collections::BTreeSet<_> = every
            .iter()
            .filter(|(a, b, _)| shown(a, b))
            .cloned()
            .collect();
        assert!(!expected.is_empty(), "{args:?} shows something");
        assert_eq!(rows(args), expected, "{args:?}");
        // Grouped JSON: its rectangles expand to the same pairs.
        let mut json_args = vec!["analyze", "examples/todos", "-q", "-o", "json"];
        json_args.extend_from_slice(args);
        let json: serde_json::Value = serde_json::from_slice(&weir(&json_args).stdout).unwrap();
        let mut pairs = std::collections::BTreeSet::new();
        for f in json["flows"].as_array().unwrap() {
            for a in f["from"].as_array().unwrap() {
                for b in f["to"].as_array().unwrap() {
                    if a != b {
                        pairs.insert((
                            a.as_str().unwrap().to_string(),
                            b.as_str().unwrap().to_string(),
                        ));
                    }
                }
            }
        }
        let csv_pairs: std::collections::BTreeSet<_> = expected
            .iter()
            .map(|(a, b, _)| (a.clone(), b.clone()))
            .collect();
        assert_eq!(pairs, csv_pairs, "json {args:?}");
    }
    // --port keeps the connections allowing that port, with only that port.
    let port = rows(&["--focus", redis, "--port", "TCP/6379"]);
    assert!(
        !port.is_empty() && port.iter().all(|(_, _, p)| p == "TCP 6379"),
        "{port:?}"
    );
    // matrix: one row per focused pair and probe.
    let o = weir(&[
        "matrix",
        "examples/todos",
        "-q",
        "--ports",
        "TCP/6379",
        "--focus",
        redis,
        "--direction",
        "ingress",
    ]);
    let text = stdout(&o);
    let lines: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(
        lines.iter().all(|l| l.split(',').nth(1) == Some(redis)),
        "{text}"
    );
    // diff: the changes into redis only.
    let dir = scratch("focus-diff");
    let (a, b) = (dir.join("a"), dir.join("b"));
    for d in [&a, &b] {
        std::fs::create_dir_all(d).unwrap();
        for f in ["namespaces.yaml", "todos.yaml", "redis.yaml", "ubuntu.yaml"] {
            std::fs::copy(repo().join("examples/todos").join(f), d.join(f)).unwrap();
        }
    }
    std::fs::copy(
        repo().join("examples/todos/policies/data-from-logic-redis.yaml"),
        b.join("p.yaml"),
    )
    .unwrap();
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    let all = stdout(&weir(&["diff", a, b, "-q"]));
    let o = weir(&[
        "diff",
        a,
        b,
        "-q",
        "--focus",
        redis,
        "--direction",
        "ingress",
    ]);
    let text = stdout(&o);
    let changes: Vec<&str> = text.lines().filter(|l| l.contains(" → ")).collect();
    assert!(!changes.is_empty(), "{text}");
    assert!(
        changes.iter().all(|l| l.contains(&format!("→ {redis}:"))),
        "{text}"
    );
    assert_eq!(
        changes.len(),
        all.lines()
            .filter(|l| l.contains(&format!("→ {redis}:")))
            .count(),
        "{all}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        weir(&["analyze", "examples/todos", "--focus", "a/b/c"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(
        weir(&["analyze", "examples/todos", "--peer", "outside"])
            .status
            .code(),
        Some(2)
    );
}

/// A stand-in HTTP server on loopback: every request gets `answer(path)` (the whole
/// response, status line included), and its connection is closed. Returns `host:port`.
fn serve_http(answer: impl Fn(&str) -> Vec<u8> + Send + 'static) -> String {
    use std::io::{BufRead, BufReader};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut request = BufReader::new(conn.try_clone().unwrap());
            let mut first = String::new();
            let _ = request.read_line(&mut first);
            let mut line = String::new();
            while request.read_line(&mut line).unwrap_or(0) > 2 {
                line.clear();
            }
            let path = first.split_whitespace().nth(1).unwrap_or("").to_string();
            let _ = conn.write_all(&answer(&path));
        }
    });
    addr
}

/// `weir revision` reads the API's policy objects and the agents' answers, both input: the
/// revision of two NetworkPolicies is the XOR of their lines' FNV-1a (the vector from Go's
/// hash/fnv); an agent that answers something else than 16 hex digits — here a terminal
/// escape — is reported, not echoed, and is not in agreement (exit 3); one in agreement
/// makes exit 0.
#[test]
fn revision_is_the_apis_and_a_hostile_agent_is_not_echoed() {
    let api = serve_http(|path| {
        let items = if path.starts_with("/apis/networking.k8s.io/v1/networkpolicies") {
            r#"[{"metadata": {"name": "a", "namespace": "ns", "resourceVersion": "5"}, "spec": {"podSelector": {}}},
                {"metadata": {"name": "b", "namespace": "ns", "resourceVersion": "9"}, "spec": {"podSelector": {}}}]"#
        } else if path.starts_with("/apis/policy.networking.k8s.io/") {
            // The tiers' CRDs are not installed.
            let body = r#"{"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404}"#;
            return format!("HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()).into_bytes();
        } else {
            "[]"
        };
        let body = format!(
            r#"{{"apiVersion": "v1", "kind": "List", "metadata": {{"resourceVersion": "10"}}, "items": {items}}}"#
        );
        format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len()).into_bytes()
    });
    let dir = scratch("revision");
    let kubeconfig = dir.join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!("apiVersion: v1\nkind: Config\nclusters: [{{name: t, cluster: {{server: \"http://{api}\"}}}}]\ncontexts: [{{name: t, context: {{cluster: t, user: t}}}}]\ncurrent-context: t\nusers: [{{name: t, user: {{}}}}]\n"),
    )
    .unwrap();
    let kc = kubeconfig.to_str().unwrap();
    // Go: fnv.New64a over "NetworkPolicy/ns/a 5\n" XOR the same over "NetworkPolicy/ns/b 9\n".
    let want = "632660086bb77403";
    let o = weir(&["revision", "--kubeconfig", kc]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(stdout(&o).starts_with(&format!("{want}  cluster")), "{o:?}");

    let hostile =
        serve_http(|_| b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\n\x1b]0;owned\x07\n".to_vec());
    let o = weir(&["revision", "--kubeconfig", kc, "--agent", &hostile]);
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    let out = stdout(&o);
    assert!(
        out.contains(&format!("{hostile}: unexpected answer (HTTP 200)")),
        "{out}"
    );
    assert!(!out.contains('\x1b') && !out.contains("owned"), "{out:?}");

    // One that drips its answer, a byte every 300 ms, is cut after 2 s.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let drip = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        for b in b"HTTP/1.1 200 OK\r\ncontent-length: 17\r\n\r\n"
            .iter()
            .cycle()
            .take(60)
        {
            if conn.write_all(&[*b]).is_err() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
    });
    let t0 = std::time::Instant::now();
    let o = weir(&["revision", "--kubeconfig", kc, "--agent", &drip]);
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    assert!(
        stdout(&o).contains(&format!("{drip}: no whole answer within 2 s")),
        "{o:?}"
    );
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(8),
        "{:?}",
        t0.elapsed()
    );

    let agent = serve_http(move |_| {
        format!("HTTP/1.1 200 OK\r\ncontent-length: 17\r\n\r\n{want}\n").into_bytes()
    });
    let o = weir(&[
        "revision",
        "--kubeconfig",
        kc,
        "--agent",
        &agent,
        "--wait-s",
        "5",
    ]);
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert!(
        stdout(&o).contains(&format!(
            "{want}  {agent}: enforces the cluster's policy objects"
        )),
        "{o:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `weir drops` takes the chunk framing of the agent's stream off (hyper streams `/drops`
/// chunked): only the agent's lines are printed, even when a line spans two chunks; an
/// agent without `/drops` is an error, not an empty stream.
#[test]
fn drops_prints_the_agents_lines_without_chunk_framing() {
    let serve = |response: &'static [u8]| serve_http(move |_| response.to_vec());
    let addr = serve(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n\
          a\r\ndropped a \r\n\
          a\r\n\xe2\x86\x92 b TCP\n\r\n\
          13\r\nwould drop c \xe2\x86\x92 d\n\r\n\
          0\r\n\r\n",
    );
    let o = weir(&["drops", "--agent", &addr, "--timeout-s", "5"]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(stdout(&o), "dropped a → b TCP\nwould drop c → d\n");

    let addr = serve(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n");
    let o = weir(&["drops", "--agent", &addr, "--timeout-s", "5"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--serve-drops"),
        "{o:?}"
    );
}

/// The seed in `dir`, with the default-deny and the data tier's allow audited: redis is
/// then isolated by audited policies alone.
fn seed_with_audited_redis(dir: &std::path::Path) {
    let seed = repo().join("examples/todos");
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    for f in ["namespaces.yaml", "todos.yaml", "redis.yaml", "ubuntu.yaml"] {
        std::fs::copy(seed.join(f), dir.join(f)).unwrap();
    }
    for f in [
        "any-from-any-none.yaml",
        "data-from-logic-redis.yaml",
        "logic-from-any-http.yaml",
    ] {
        let text = std::fs::read_to_string(seed.join("policies").join(f)).unwrap();
        let text = if f.starts_with("logic") {
            text
        } else {
            text.replace(
                "  namespace: production\n",
                "  namespace: production\n  annotations:\n    weir.dev/mode: audit\n",
            )
        };
        std::fs::write(dir.join("policies").join(f), text).unwrap();
    }
}

/// Audit mode in the analyses: they answer for what is enforced (audited policies left out,
/// said on stderr) unless `--as-enforced`; lint names audited policies, and with the agents'
/// counters says which are ready to enforce; a bad mode is a located error.
#[test]
fn audited_policies_are_left_out_unless_as_enforced() {
    let dir = scratch("audit");
    seed_with_audited_redis(&dir);
    // Enforced, they would deny redis to personal/ubuntu.
    let probe = |extra: &[&str]| {
        let mut args = vec![
            "explain",
            dir.to_str().unwrap(),
            "--from",
            "personal/ubuntu",
            "--to",
            "production/redis",
            "--port",
            "TCP/6379",
        ];
        args.extend_from_slice(extra);
        weir(&args)
    };
    let wire = probe(&[]);
    assert_eq!(wire.status.code(), Some(0), "{wire:?}");
    assert!(
        stdout(&wire).starts_with("personal/ubuntu → production/redis TCP/6379: ALLOWED"),
        "{}",
        stdout(&wire)
    );
    let note = String::from_utf8_lossy(&wire.stderr);
    assert!(
        note.contains("2 audited NetworkPolicy(ies) (weir.dev/mode: audit) left out"),
        "{note}"
    );
    let as_enforced = probe(&["--as-enforced"]);
    assert!(
        stdout(&as_enforced).starts_with("personal/ubuntu → production/redis TCP/6379: DENIED"),
        "{}",
        stdout(&as_enforced)
    );
    assert!(String::from_utf8_lossy(&as_enforced.stderr).is_empty());

    // Lint: audited; with counters, ready (0) or not (> 0); a bad counter line is located.
    let lint = |extra: &[&str]| {
        let mut args = vec!["lint", dir.to_str().unwrap(), "-q"];
        args.extend_from_slice(extra);
        stdout(&weir(&args))
    };
    assert_eq!(
        lint(&[]).matches("I003 audited-policy").count(),
        2,
        "{}",
        lint(&[])
    );
    let metrics = dir.join("metrics.txt");
    for (value, code) in [
        ("0", "I004 audit-ready-to-enforce"),
        ("12", "W013 audit-would-drop"),
    ] {
        std::fs::write(
            &metrics,
            format!("weir_ready 1\nweir_audit_would_drop_total{{policy=\"production/any-from-any-none\"}} {value}\nweir_audit_would_drop_total{{policy=\"production/data-from-logic-redis\"}} {value}\n"),
        )
        .unwrap();
        let text = lint(&["--would-drops", metrics.to_str().unwrap()]);
        assert!(
            text.contains(code) && text.contains("any-from-any-none.yaml:8:5"),
            "{text}"
        );
    }
    std::fs::write(&metrics, "weir_audit_would_drop_total{policy=\"x} 1\n").unwrap();
    let o = weir(&[
        "lint",
        dir.to_str().unwrap(),
        "--would-drops",
        metrics.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("metrics.txt:1:1: not a would-drop counter")
    );

    // Diff: switching to enforce is a change on the wire; as written, none.
    let after = scratch("audit-after");
    seed_with_audited_redis(&after);
    for f in ["any-from-any-none.yaml", "data-from-logic-redis.yaml"] {
        let path = after.join("policies").join(f);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("mode: audit", "mode: enforce")).unwrap();
    }
    let diff = |extra: &[&str]| {
        let mut args = vec!["diff", dir.to_str().unwrap(), after.to_str().unwrap(), "-q"];
        args.extend_from_slice(extra);
        weir(&args)
    };
    let wire = diff(&[]);
    let shown = stdout(&wire);
    assert_eq!(wire.status.code(), Some(3), "{shown}");
    assert!(
        shown.contains("personal/ubuntu") && shown.contains("production/redis"),
        "{shown}"
    );
    assert_eq!(diff(&["--as-enforced"]).status.code(), Some(0));

    // A mode that is neither is an error at its line.
    let deny = after.join("policies/any-from-any-none.yaml");
    let text = std::fs::read_to_string(&deny).unwrap();
    std::fs::write(&deny, text.replace("mode: enforce", "mode: enforced")).unwrap();
    let o = weir(&["analyze", after.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&after).unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("any-from-any-none.yaml:8:5: error: metadata.annotations[\"weir.dev/mode\"]: weir.dev/mode \"enforced\" must be one of: enforce, audit"),
        "{err}"
    );
}

/// `weir synth` on the seed app without its policies, from the connections its lesson
/// makes: the policies written come with a proof (every observed connection allowed,
/// nothing else between the pods involved) and the diff, and the example's intents hold
/// against them. A flow naming what the input lacks is a located error; nothing written.
#[test]
fn synth_writes_proven_policies_from_observed_connections() {
    let dir = scratch("synth");
    let app = dir.join("app");
    std::fs::create_dir_all(&app).unwrap();
    for f in ["namespaces.yaml", "todos.yaml", "redis.yaml", "ubuntu.yaml"] {
        std::fs::copy(repo().join("examples/todos").join(f), app.join(f)).unwrap();
    }
    // As `weir drops` prints them under an audited default-deny, and as a CSV.
    let drops = dir.join("drops.txt");
    std::fs::write(&drops, "would drop production/todos → production/redis TCP 6379: ingress isolated by production/observe (audit)\nwould drop production/ubuntu → production/redis TCP 6379: ingress isolated by production/observe (audit)\ndropped personal/ubuntu → production/redis TCP 6379: ingress isolated by x\n").unwrap();
    // `weir synth APP --flows F… --out OUT EXTRA…`
    let synth = |flows: &[&std::path::Path], out: &std::path::Path, extra: &[&str]| {
        let mut args = vec!["synth", app.to_str().unwrap()];
        for f in flows {
            args.extend(["--flows", f.to_str().unwrap()]);
        }
        args.extend(["--out", out.to_str().unwrap()]);
        args.extend_from_slice(extra);
        weir(&args)
    };
    let csv = dir.join("flows.csv");
    std::fs::write(&csv, "src,dst,protocol,port\npersonal/ubuntu,production/todos,TCP,80\nproduction/ubuntu,production/todos,TCP,80\nproduction/redis,production/todos,TCP,80\n").unwrap();
    let out = dir.join("out");
    let o = synth(&[&drops, &csv], &out, &[]);
    let text = stdout(&o);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(text.contains("proof: all 5 observed connection(s) are allowed\n        and nothing else between the sides involved"), "{text}");
    assert!(
        text.contains("- personal/ubuntu → production/redis: all → none"),
        "{text}"
    );
    let mut files: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "personal--default-deny-ingress.yaml",
            "production--allow-to-redis.yaml",
            "production--allow-to-todos.yaml",
            "production--default-deny-ingress.yaml"
        ]
    );
    let redis = std::fs::read_to_string(out.join("production--allow-to-redis.yaml")).unwrap();
    assert!(
        redis.contains("#   production/todos → production/redis TCP/6379"),
        "{redis}"
    );
    assert!(redis.contains("port: \"redis\""), "named port: {redis}");
    assert!(!redis.contains("pod-template-hash"));
    let intents = weir(&[
        "test",
        repo().join("examples/todos/intents.yaml").to_str().unwrap(),
        app.to_str().unwrap(),
        out.to_str().unwrap(),
    ]);
    assert_eq!(intents.status.code(), Some(0), "{}", stdout(&intents));

    // --audit writes them audited: the analyses leave them out until enforced.
    let audited = dir.join("audited");
    let o = synth(&[&csv], &audited, &["--audit"]);
    assert_eq!(o.status.code(), Some(0));
    let todos = std::fs::read_to_string(audited.join("production--allow-to-todos.yaml")).unwrap();
    assert!(todos.contains("\"weir.dev/mode\": \"audit\""), "{todos}");

    // A pod folded into its Deployment (as an agent without the Deployments' objects names
    // it) is that Deployment.
    std::fs::write(
        app.join("replicas.yaml"),
        "apiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {name: todos-5d9, namespace: production, ownerReferences: [{apiVersion: apps/v1, kind: Deployment, name: todos, uid: u1, controller: true}]}\nspec: {selector: {matchLabels: {app: todos}}, template: {metadata: {labels: {app: todos, networking/logic: \"true\"}}, spec: {containers: [{name: todos, image: todos, ports: [{containerPort: 80, name: http}]}]}}}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: todos-5d9-xk2p4, namespace: production, labels: {app: todos, networking/logic: \"true\", pod-template-hash: 5d9}, ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: todos-5d9, uid: u2, controller: true}]}\nspec: {containers: [{name: todos, image: todos, ports: [{containerPort: 80, name: http}]}]}\n",
    )
    .unwrap();
    let rows = |rows: &str| std::fs::write(&csv, format!("src,dst,protocol,port\n{rows}")).unwrap();
    rows("production/todos-5d9-xk2p4,production/redis,TCP,6379\n");
    let pods = dir.join("pods");
    let o = synth(&[&csv], &pods, &[]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let redis = std::fs::read_to_string(pods.join("production--allow-to-redis.yaml")).unwrap();
    assert!(
        redis.contains("#   production/todos → production/redis TCP/6379"),
        "{redis}"
    );

    rows("personal/ubuntu,production/nope,TCP,80\n");
    let nothing = dir.join("nothing");
    let o = synth(&[&csv], &nothing, &[]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("flows.csv:2: \"production/nope\": no such endpoint"),
        "{err}"
    );
    assert!(!nothing.exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `weir report --focus`: the page keeps what the focus keeps — with redis's ingress, the
/// heatmap's columns are redis alone and its rows every source; the graph draws only those
/// connections; the policies shown are those selecting an endpoint on the page.
#[test]
fn report_focus_narrows_the_page() {
    let page = |extra: &[&str]| {
        let mut args = vec!["report", "examples/todos", "-q"];
        args.extend_from_slice(extra);
        let o = weir(&args);
        assert!(o.status.success(), "{o:?}");
        stdout(&o)
    };
    let count = |page: &str, what: &str| page.matches(what).count();
    let all = page(&[]);
    assert_eq!(
        count(&all, r#"<th class="v">"#),
        4,
        "every endpoint a column"
    );
    let focused = page(&["--focus", "production/redis", "--direction", "ingress"]);
    assert_eq!(count(&focused, r#"<th class="v">"#), 1, "{focused}");
    assert!(focused.contains(r#"<th class="v">redis</th>"#));
    assert_eq!(
        count(&focused, "<tr><th"),
        count(&all, "<tr><th"),
        "every source a row"
    );
    assert!(
        focused.contains("Focused: 4 source(s) × 1 destination(s)"),
        "{focused}"
    );
    // Edges only into redis (the logic tier on 6379).
    let edges: Vec<&str> = focused
        .split(r#"<path class="flow""#)
        .skip(1)
        .map(|l| {
            l.split("<title>")
                .nth(1)
                .unwrap()
                .split("</title>")
                .next()
                .unwrap()
        })
        .collect();
    assert!(!edges.is_empty());
    assert!(
        edges.iter().all(|e| e.contains(" → production/redis: ")),
        "{edges:?}"
    );
    // logic-from-any-http selects todos and ubuntu, both on the page as sources.
    assert!(focused.contains("production/data-from-logic-redis"));
    // --port narrows what a cell says (todos → redis is TCP 6379 alone: none of TCP 80).
    let http = page(&["--focus", "production/todos", "--port", "TCP/80"]);
    let cell = r#"title="production/todos → production/redis: "#;
    assert!(all.contains(&format!(r#"{cell}TCP 6379""#)), "{all}");
    assert!(http.contains(&format!(r#"{cell}none""#)), "{http}");
}

/// I001 points at the Namespace object's name when the input has one; a namespace only
/// referred to (a pod's) has no line to point at.
#[test]
fn namespace_findings_point_at_the_namespace() {
    let o = weir(&["lint", "examples/todos"]);
    let text = stdout(&o);
    assert!(
        text.contains("examples/todos/namespaces.yaml:12:3 (personal): info[I001 namespace-without-default-deny]"),
        "{text}"
    );
    let dir = scratch("i001");
    let pod = dir.join("pod.yaml");
    std::fs::write(&pod, "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: lonely}\nspec: {containers: [{name: c, image: x}]}\n").unwrap();
    let text = stdout(&weir(&["lint", pod.to_str().unwrap()]));
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(text.starts_with("lonely: info[I001"), "{text}");
}

/// `analyze --exposure`: the lesson's redis accepts TCP 6379 only from logic-tier pods of
/// production (that exist or not), todos TCP 80 from anyone; with the tiers, personal's
/// ubuntu accepts only its own namespace's pods; a pod that does not exist is answered by
/// its labels; JSON carries the same; graphs are refused.
#[test]
fn exposure_answers_for_every_pod_that_could_exist() {
    let o = weir(&["analyze", "examples/todos", "--exposure", "-o", "csv"]);
    assert_eq!(o.status.code(), Some(0));
    let csv = stdout(&o);
    let rows = |who: &str, dir: &str| -> Vec<&str> {
        csv.lines()
            .filter(|l| l.starts_with(&format!("{who},{dir},")))
            .map(|l| &l[who.len() + dir.len() + 2..])
            .collect()
    };
    assert_eq!(
        rows("production/redis", "ingress"),
        ["pods networking/logic=true in namespace production,TCP 6379,production/data-from-logic-redis ingress[0]"],
        "{csv}"
    );
    assert_eq!(
        rows("production/todos", "ingress"),
        ["\"anyone (any pod of any namespace, any other address)\",TCP 80,production/logic-from-any-http ingress[0]"],
        "{csv}"
    );
    let out = stdout(&weir(&["analyze", "examples/todos", "--exposure"]));
    assert!(
        out.contains("production/todos accepts from any pod of any namespace, future ones included, on TCP 80")
            && out.contains("production/todos accepts from outside the cluster (any address) on TCP 80")
            && !out.contains("production/redis accepts from"),
        "{out}"
    );

    let o = weir(&[
        "analyze",
        "examples/todos",
        "examples/tiers",
        "--exposure",
        "--focus",
        "personal/*",
        "--direction",
        "ingress",
    ]);
    let out = stdout(&o);
    assert!(
        out.contains("any pod in namespace personal")
            && out.contains("any address that is not a pod")
            && !out.contains("any pod in any namespace")
            && !out.contains("production/"),
        "{out}"
    );

    // A pod that does not exist, by its labels: a new logic-tier pod in production.
    let o = weir(&[
        "analyze",
        "examples/todos",
        "--exposure-of",
        "production/networking/logic=true,app=new",
        "--focus",
        "production/redis",
        "-o",
        "json",
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let items = v["exposure"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{v:#}");
    assert_eq!(items[0]["endpoints"][0], "production/redis");
    let g = &items[0]["ingress"]["grants"];
    assert_eq!(g.as_array().unwrap().len(), 1, "{v:#}");
    assert_eq!(g[0]["kind"], "pods");
    assert_eq!(g[0]["namespaces"], "kubernetes.io/metadata.name=production");
    assert_eq!(g[0]["pods"], "networking/logic=true");
    assert_eq!(g[0]["ports"], "TCP 6379");
    assert_eq!(items[0]["ingress"]["outside"], "none");
    assert_eq!(items[1]["hypothetical"], true);
    assert_eq!(
        items[1]["endpoints"][0],
        "production/[networking/logic=true,app=new]"
    );
    assert_eq!(items[1]["ingress"]["every_pod"], "TCP 80", "{v:#}");

    // The report has the same answer: the table and who is open to everyone.
    let page = stdout(&weir(&["report", "examples/todos", "-q"]));
    let section = &page[page.find("<h2>Exposure</h2>").expect("an exposure section")..];
    let section = &section[..section.find("<h2>Policies</h2>").unwrap()];
    assert!(
        section.contains("<code>production/redis</code></td><td>pods networking/logic=true in namespace production</td><td>TCP 6379</td>")
            && section.contains("<li>production/todos accepts from any pod of any namespace, future ones included, on TCP 80</li>")
            && !section.contains("<li>production/redis"),
        "{section}"
    );

    let o = weir(&["analyze", "examples/todos", "--exposure", "-o", "dot"]);
    assert_eq!(o.status.code(), Some(2));
    let o = weir(&["analyze", "examples/todos", "--exposure-of", "production"]);
    assert_eq!(o.status.code(), Some(2));
}

/// `analyze --explain`: every connection at once, its ports in ranges decided alike, with the
/// same reasons and rule lines as `explain`; JSON carries the same; pairs nothing bears on
/// are listed together; tiers name their rule.
#[test]
fn explain_all_gives_every_connection_its_reasons() {
    let o = weir(&["analyze", "examples/todos", "--explain", "-q"]);
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    let block = |head: &str| -> String {
        let start = out
            .find(&format!("{head}\n"))
            .unwrap_or_else(|| panic!("{head}: {out}"));
        let rest = &out[start..];
        rest[..rest.find("\n\n").unwrap_or(rest.len())].to_string()
    };
    let b = block("production/todos → production/redis");
    let lines: Vec<&str> = b.lines().collect();
    assert_eq!(lines[1], "  TCP 6379: allowed", "{b}");
    assert!(
        b.contains("✔ allowed by production/data-from-logic-redis ingress[0]: from pods {networking/logic=true} in the policy's namespace on TCP 6379 (examples/todos/policies/data-from-logic-redis.yaml:14:5)"),
        "{b}"
    );
    assert!(
        b.contains("  TCP 1-6378,6380-65535; UDP all; SCTP all: denied"),
        "{b}"
    );
    let b = block("personal/ubuntu → production/redis");
    assert!(
        !b.contains(": allowed")
            && b.contains(
                "- port matches, peer does not: production/data-from-logic-redis ingress[0]"
            ),
        "{b}"
    );
    let tail = &out[out
        .find("Allowed on every port by default")
        .expect("the default pairs")..];
    assert!(
        tail.contains("\n  production/redis → personal/ubuntu\n"),
        "{tail}"
    );
    assert!(
        !out.lines()
            .any(|l| l == "production/redis → personal/ubuntu"),
        "{out}"
    );

    // With the tiers, focused on redis's ingress, as JSON: the Admin tier's Deny decides
    // for personal, its Pass hands production to the NetworkPolicies.
    let o = weir(&[
        "analyze",
        "examples/todos",
        "examples/tiers",
        "--explain",
        "-q",
        "-o",
        "json",
        "--focus",
        "production/redis",
        "--direction",
        "ingress",
        "--port",
        "TCP/6379",
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let conns = v["connections"].as_array().unwrap();
    let find = |from: &str| {
        conns
            .iter()
            .find(|c| c["from"][0] == from)
            .unwrap_or_else(|| panic!("{from}: {v:#}"))
    };
    let p = &find("personal/ubuntu")["ports"];
    assert_eq!(p.as_array().unwrap().len(), 1, "{v:#}");
    assert_eq!(p[0]["ports"], "TCP 6379");
    assert_eq!(p[0]["allowed"], false);
    assert_eq!(p[0]["ingress"]["decided_by"], "Admin");
    assert_eq!(p[0]["ingress"]["admin"]["action"], "Deny");
    let p = &find("production/todos")["ports"];
    assert_eq!(p[0]["allowed"], true);
    assert_eq!(p[0]["ingress"]["admin"]["action"], "Pass");
    assert_eq!(p[0]["ingress"]["decided_by"], "NetworkPolicy");
    assert!(
        conns
            .iter()
            .all(|c| c["to"] == serde_json::json!(["production/redis"])),
        "{v:#}"
    );

    let o = weir(&["analyze", "examples/todos", "--explain", "-o", "csv"]);
    assert_eq!(o.status.code(), Some(2));
}

/// `analyze --outside`: the lesson's LoadBalancer reaches the API's pod on TCP 80 from any
/// client (Local) or through every node (Cluster, masqueraded); an Ingress's backend is
/// reached through the controller, which the API's policy admits — and one to Redis is not,
/// said with the controller given and, without it, by whom the controller would have to be.
/// Gateway API HTTPRoutes are ways in like Ingresses: the gateway's pods connect to the
/// backends. A backend in another namespace counts only where a ReferenceGrant there opens
/// it to the route's namespace (the gateway refuses it otherwise, and weir says so).
#[test]
fn http_routes_are_ways_in_through_the_gateway() {
    let dir = scratch("httproute");
    let gateway = r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: envoy, namespace: gateway}
spec:
  selector: {matchLabels: {app: envoy}}
  template:
    metadata: {labels: {app: envoy}}
    spec: {containers: [{name: envoy, image: envoy}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: todos, namespace: production}
spec:
  parentRefs: [{name: public, namespace: gateway}]
  hostnames: [todos.example]
  rules:
  - matches: [{path: {type: PathPrefix, value: /todos}}]
    backendRefs: [{name: todos, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: cache, namespace: gateway}
spec:
  parentRefs: [{name: public}]
  rules:
  - backendRefs:
    - {name: redis-demo, namespace: production, port: 6379}
    - {name: todos, namespace: production, port: 80, weight: 0}
    - {kind: Bucket, group: storage.example, name: b}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: hostile, namespace: production}
spec:
  rules:
  - host: "evil\e[2J"
    http:
      paths:
      - {path: "/\e]0;owned\a", pathType: ImplementationSpecific, backend: {service: {name: todos, port: {number: 80}}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: hostile, namespace: production}
spec:
  parentRefs: [{name: "g\e[2J"}]
  rules: [{backendRefs: [{name: todos, port: 80}]}]
"#;
    std::fs::write(dir.join("gateway.yaml"), gateway).unwrap();
    let d = dir.to_str().unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "analyze",
            "examples/todos",
            d,
            "--outside",
            "-o",
            "json",
            "--ingress-controller",
            "gateway/*",
        ];
        args.extend(extra);
        let o = weir(&args);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        (v, String::from_utf8_lossy(&o.stderr).to_string())
    };
    let (v, stderr) = run(&[]);
    let vias: Vec<&str> = v["outside"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["via"].as_str().unwrap())
        .collect();
    let todos = v["outside"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["via"] == "HTTPRoute production/todos (parent gateway/public) todos.example/todos → todos:80")
        .unwrap_or_else(|| panic!("{v:#}"));
    assert_eq!(todos["open"], true, "{v:#}");
    assert!(
        todos["gets_through"]
            .as_str()
            .unwrap()
            .starts_with("through the controller (gateway/envoy)"),
        "{v:#}"
    );
    // A host or path is user text: written escaped, never as raw terminal escapes.
    let table = weir(&["analyze", "examples/todos", d, "--outside", "-q"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        !table.contains('\u{1b}') && !table.contains('\u{7}'),
        "{table}"
    );
    assert!(
        vias.iter()
            .any(|v| v.starts_with(r#"Ingress production/hostile "evil\u{1b}[2J""#)),
        "{vias:?}"
    );
    assert!(
        vias.contains(
            &r#"HTTPRoute production/hostile (parent production/"g\u{1b}[2J") */ → todos:80"#
        ),
        "{vias:?}"
    );
    // No grant: the cross-namespace backend is refused, and the warning says why.
    assert!(
        !vias
            .iter()
            .any(|v| v.starts_with("HTTPRoute gateway/cache")),
        "{vias:?}"
    );
    assert!(
        stderr.contains("backend production/redis-demo: no ReferenceGrant in production lets HTTPRoutes of gateway use it"),
        "{stderr}"
    );
    assert!(stderr.contains("weight 0"), "{stderr}");
    assert!(
        stderr.contains("\"storage.example/Bucket\" backend is not a Service"),
        "{stderr}"
    );

    // A grant for the Service opens it; Redis's policy then refuses the gateway.
    std::fs::write(
        dir.join("grant.yaml"),
        r#"apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: gateway-to-redis, namespace: production}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: gateway}]
  to: [{group: "", kind: Service, name: redis-demo}]
"#,
    )
    .unwrap();
    let (v, stderr) = run(&[]);
    let cache = v["outside"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| {
            e["via"]
                == "HTTPRoute gateway/cache (parent gateway/public) */ → production/redis-demo:6379"
        })
        .unwrap_or_else(|| panic!("{v:#}"));
    assert_eq!(cache["open"], false, "{v:#}");
    assert!(!stderr.contains("no ReferenceGrant"), "{stderr}");

    // Invalid routes are refused like the API server refuses them, located.
    std::fs::write(
        dir.join("bad.yaml"),
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: bad, namespace: production}
spec:
  hostnames: [Todos.Example]
  rules:
  - backendRefs: [{name: todos}, {name: todos, port: 80, weight: 2000000}]
"#,
    )
    .unwrap();
    let o = weir(&["analyze", "examples/todos", d]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    for want in [
        "bad.yaml:5:15: error: spec.hostnames[0]: \"Todos.Example\": must be a lower-case DNS name",
        "bad.yaml:7:19: error: spec.rules[0].backendRefs[0].port: must have port for Service reference",
        "bad.yaml:7:58: error: spec.rules[0].backendRefs[1].weight: weight 2000000 must be between 0 and 1000000",
    ] {
        assert!(err.contains(want), "{want}\n{err}");
    }
}

#[test]
fn outside_traffic_names_every_way_in_and_who_gets_through() {
    let o = weir(&[
        "analyze",
        "examples/todos",
        "examples/ingress",
        "--outside",
        "-o",
        "csv",
        "-q",
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let csv = stdout(&o);
    assert!(
        csv.contains("LoadBalancer production/todos port 80,production/todos,TCP/80,node address (externalTrafficPolicy: Cluster masquerades),\"everyone, as any node (no Node objects: their addresses are not known)\"")
            && csv.contains("node port (not allocated in the input) of production/todos,production/todos,TCP/80,")
            && csv.contains("Ingress production/todos (class nginx) todos.example/todos → todos:80,production/todos,TCP/80,ingress controller pods,only if the ingress controller is among: any pod in any namespace"),
        "{csv}"
    );

    // Local keeps the client's address: the policy's ipBlock and the load balancer's
    // source ranges decide; an Ingress to Redis does not get the controller through.
    let dir = scratch("outside");
    std::fs::write(
        dir.join("more.yaml"),
        r#"apiVersion: v1
kind: Service
metadata: {name: redis-lb, namespace: production}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  loadBalancerSourceRanges: [203.0.113.0/24]
  selector: {app: redis}
  ports: [{port: 6379, nodePort: 30079}]
---
apiVersion: v1
kind: Service
metadata: {name: todos-local, namespace: production}
spec:
  type: LoadBalancer
  externalTrafficPolicy: Local
  loadBalancerSourceRanges: [203.0.113.0/24]
  selector: {app: todos}
  ports: [{port: 8080, targetPort: http}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: redis, namespace: production}
spec:
  defaultBackend: {service: {name: redis-lb, port: {number: 6379}}}
"#,
    )
    .unwrap();
    let d = dir.to_str().unwrap();
    let o = weir(&[
        "analyze",
        "examples/todos",
        "examples/ingress",
        d,
        "--outside",
        "-o",
        "json",
        "-q",
        "--ingress-controller",
        "ingress-nginx/*",
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let find = |via: &str| -> &serde_json::Value {
        v["outside"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["via"] == via)
            .unwrap_or_else(|| panic!("{via}: {v:#}"))
    };
    let e = find("LoadBalancer production/todos-local port 8080");
    assert_eq!(e["port"], "TCP/80");
    assert_eq!(e["source"], "clients");
    assert_eq!(e["gets_through"], "clients at 203.0.113.0/24", "{v:#}");
    let e = find("node port (not allocated in the input) of production/todos-local");
    assert_eq!(e["gets_through"], "clients at any address", "{v:#}");
    let e = find("LoadBalancer production/redis-lb port 6379");
    assert_eq!(e["open"], false);
    assert_eq!(e["gets_through"], "nobody: no outside address is admitted");
    let e = find("node port 30079 of production/redis-lb");
    assert_eq!(e["open"], false);
    let e = find("Ingress production/redis default → redis-lb:6379");
    assert_eq!(e["open"], false);
    assert!(
        e["gets_through"]
            .as_str()
            .unwrap()
            .starts_with("nobody: the policies refuse the controller's pods"),
        "{v:#}"
    );
    let e = find("Ingress production/todos (class nginx) todos.example/todos → todos:80");
    assert_eq!(e["open"], true);
    assert!(
        e["gets_through"]
            .as_str()
            .unwrap()
            .starts_with("through the controller (ingress-nginx/ingress-nginx-controller)"),
        "{v:#}"
    );

    // The report has them too.
    let page = stdout(&weir(&[
        "report",
        "examples/todos",
        "examples/ingress",
        d,
        "-q",
    ]));
    let section = &page[page
        .find("<h2>Traffic from outside</h2>")
        .expect("a section")..];
    assert!(
        section.contains("<td>LoadBalancer production/todos-local port 8080</td><td><code>production/todos</code></td><td>TCP/80</td><td>clients at 203.0.113.0/24</td>"),
        "{section}"
    );

    // A bad Service or Ingress field is located, and nothing is analysed.
    std::fs::write(
        dir.join("more.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata: {name: x, namespace: production}\nspec:\n  type: Balancer\n  ports: [{port: 80}]\n",
    )
    .unwrap();
    let o = weir(&["analyze", d, "--outside"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("more.yaml:5:") && err.contains("spec.type"),
        "{err}"
    );
    let o = weir(&[
        "analyze",
        "examples/todos",
        "--outside",
        "--ingress-controller",
        "nowhere/*",
    ]);
    assert_eq!(o.status.code(), Some(2));
    std::fs::remove_dir_all(&dir).unwrap();
}
