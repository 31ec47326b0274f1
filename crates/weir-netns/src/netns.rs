//! Entering network namespaces. `setns` switches only the calling thread, so it is done on
//! threads that exist for that purpose (never on a shared worker of an async runtime);
//! sockets keep the namespace they were created in, wherever they are used afterwards.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Mutex;

/// Where `ip netns add NAME` pins a namespace.
pub fn path(name: &str) -> String {
    format!("/run/netns/{name}")
}

/// Moves the calling thread into namespace `ns` (an open `/run/netns/NAME`).
pub fn enter(ns: &File) -> io::Result<()> {
    // SAFETY: setns on a valid fd; affects only this thread.
    let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Runs `f` on a fresh thread inside namespace `name` and returns its result.
pub fn run_in<T: Send>(name: &str, f: impl FnOnce() -> io::Result<T> + Send) -> io::Result<T> {
    let ns = File::open(path(name))?;
    std::thread::scope(|s| {
        s.spawn(|| {
            enter(&ns)?;
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("thread in namespace panicked")))
    })
}

/// Open namespace handles, shared by worker threads that hop between namespaces.
#[derive(Default)]
pub struct Handles {
    open: Mutex<HashMap<String, std::sync::Arc<File>>>,
}

impl Handles {
    pub fn get(&self, name: &str) -> io::Result<std::sync::Arc<File>> {
        let mut open = self.open.lock().expect("handles lock");
        if let Some(f) = open.get(name) {
            return Ok(f.clone());
        }
        let f = std::sync::Arc::new(File::open(path(name))?);
        open.insert(name.to_string(), f.clone());
        Ok(f)
    }
}

/// `program`, run inside network namespace `netns` (through `ip netns exec`, which also
/// mounts the namespace's `/etc/netns/NAME` files) or, with `None`, in the caller's.
pub fn command_in(netns: Option<&str>, program: &str) -> std::process::Command {
    match netns {
        Some(ns) => {
            let mut c = std::process::Command::new("ip");
            c.args(["netns", "exec", ns, program]);
            c
        }
        None => std::process::Command::new(program),
    }
}
