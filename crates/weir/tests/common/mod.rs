//! Helpers shared by the privileged agent tests.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use weir_lab::host::RealHost;
use weir_lab::{Lab, LabOptions, Session};
use weir_model::{Cluster, PortKey, Protocol};
use weir_netns::netns;

/// A path in the repository.
pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

/// Polls `ok` every 20 ms; fails the test after `within`.
pub fn wait_until(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One TCP connect from `src`'s namespace to `dst`'s primary address, 40 ms timeout: true
/// when it got through.
pub fn connects(lab: &Lab, src: &str, dst: &str, port: u16) -> bool {
    connects_within(lab, src, dst, port, Duration::from_millis(40))
}

/// [`connects`] with this timeout.
pub fn connects_within(lab: &Lab, src: &str, dst: &str, port: u16, timeout: Duration) -> bool {
    let pod = |id: &str| lab.state.pods.iter().find(|p| p.id == id).unwrap().clone();
    let (s, d) = (pod(src), pod(dst));
    netns::run_in(&s.netns, move || {
        Ok(TcpStream::connect_timeout(&SocketAddr::new(d.ips[0], port), timeout).is_ok())
    })
    .unwrap()
}

/// True when the test may run (root); otherwise says it was skipped — and fails in CI.
pub fn root_or_skip(test: &str) -> bool {
    if std::env::var_os("WEIR_FAST").is_some() {
        eprintln!("SKIPPED {test}: the fast tier (scripts/test.sh --fast) runs no root tests");
        return false;
    }
    if weir_netns::process::is_root() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: CI must run the privileged tests as root"
    );
    eprintln!("SKIPPED {test}: needs root");
    false
}

/// A lab of `cluster` named `name` on `nodes` nodes, listening on these TCP ports; taken
/// down when dropped, so a failing assertion leaks no namespaces.
pub fn lab_up(cluster: &Cluster, name: &str, nodes: usize, tcp_ports: &[u16]) -> Session {
    let options = LabOptions {
        name: name.to_string(),
        nodes,
        listen: tcp_ports
            .iter()
            .map(|&p| PortKey::new(Protocol::Tcp, p))
            .collect(),
        exe: PathBuf::from(env!("CARGO_BIN_EXE_weir")),
        no_listen: vec![],
    };
    Session::up(cluster, &options).expect("lab up")
}

/// `GET path` on the agent's loopback listener: status and body.
pub fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((
        status,
        text.split_once("\r\n\r\n")
            .map_or(String::new(), |(_, b)| b.to_string()),
    ))
}

/// The seed's manifests, relative to `examples/todos`.
pub const SEED_FILES: [&str; 7] = [
    "namespaces.yaml",
    "todos.yaml",
    "redis.yaml",
    "ubuntu.yaml",
    "policies/any-from-any-none.yaml",
    "policies/data-from-logic-redis.yaml",
    "policies/logic-from-any-http.yaml",
];

/// Copies these seed files into `dir` (created, with `policies/`).
pub fn copy_seed(dir: &Path, files: &[&str]) {
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    for f in files {
        std::fs::copy(repo("examples/todos").join(f), dir.join(f)).unwrap();
    }
}

/// A lab, an agent directory and the agent: all gone when dropped.
pub struct AgentLab {
    pub lab: String,
    pub dir: PathBuf,
    pub agent: Option<Child>,
}

impl Drop for AgentLab {
    fn drop(&mut self) {
        if let Some(a) = &mut self.agent {
            let _ = a.kill();
            let _ = a.wait();
        }
        let _ = Lab::down(&self.lab, &RealHost);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
