//! weir's one door to the operating system where Rust needs `unsafe`: every `unsafe` block
//! of the workspace is here, behind small safe functions (the other crates forbid
//! `unsafe_code`). Entering network namespaces and running tools inside them, signalling
//! and reaping processes, `poll`, inotify, raw netlink sockets, and libnftables.

pub mod inotify;
pub mod libnft;
pub mod netlink;
pub mod netns;
pub mod process;

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Waits until one of `fds` is readable or `timeout_ms` passes (`-1`: forever). Returns,
/// for each fd, whether it is readable. An interrupted wait reports nothing ready.
pub fn poll_readable(fds: &[BorrowedFd<'_>], timeout_ms: i32) -> io::Result<Vec<bool>> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: `pfds` is a valid array of `pollfd` of the length passed.
    let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout_ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(vec![false; pfds.len()]);
        }
        return Err(e);
    }
    Ok(pfds.iter().map(|p| p.revents != 0).collect())
}
