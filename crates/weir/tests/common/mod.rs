//! Helpers shared by the privileged agent tests.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use weir_lab::{netns, Lab};

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
    let pod = |id: &str| lab.state.pods.iter().find(|p| p.id == id).unwrap().clone();
    let (s, d) = (pod(src), pod(dst));
    netns::run_in(&s.netns, move || {
        Ok(
            TcpStream::connect_timeout(&SocketAddr::new(d.ips[0], port), Duration::from_millis(40))
                .is_ok(),
        )
    })
    .unwrap()
}

/// True when the test may run (root); otherwise says it was skipped — and fails in CI.
pub fn root_or_skip(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: CI must run the privileged tests as root"
    );
    eprintln!("SKIPPED {test}: needs root");
    false
}
