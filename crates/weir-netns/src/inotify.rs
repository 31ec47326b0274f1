//! inotify: watches on directories and the raw event stream.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub use libc::{
    IN_ATTRIB, IN_CLOSE_WRITE, IN_CREATE, IN_DELETE, IN_DELETE_SELF, IN_ISDIR, IN_MODIFY,
    IN_MOVED_FROM, IN_MOVED_TO, IN_MOVE_SELF,
};

/// One inotify instance.
pub struct Inotify {
    fd: OwnedFd,
}

/// One event: the watch it came from, what happened, and the entry's name (empty for the
/// watched directory itself).
#[derive(Debug, PartialEq, Eq)]
pub struct Event<'a> {
    pub watch: i32,
    pub mask: u32,
    pub name: &'a [u8],
}

impl Inotify {
    pub fn new() -> io::Result<Inotify> {
        // SAFETY: inotify_init1 returns a new fd or -1.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor that nothing else owns.
        Ok(Inotify {
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// Watches `dir` for `mask`; the watch id (the same id again for the same inode).
    pub fn add_watch(&self, dir: &Path, mask: u32) -> io::Result<i32> {
        let c = CString::new(dir.as_os_str().as_bytes()).map_err(io::Error::other)?;
        // SAFETY: a valid fd and a NUL-terminated path.
        let wd = unsafe { libc::inotify_add_watch(self.fd_raw(), c.as_ptr(), mask) };
        if wd < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(wd)
        }
    }

    fn fd_raw(&self) -> i32 {
        use std::os::fd::AsRawFd;
        self.fd.as_raw_fd()
    }

    /// Reads one batch of events into `buf` (blocks until there is one).
    pub fn read<'b>(&self, buf: &'b mut [u8]) -> io::Result<Vec<Event<'b>>> {
        // SAFETY: reading into a buffer we own, of the length passed.
        let n = unsafe { libc::read(self.fd_raw(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(parse(&buf[..n as usize]))
    }
}

impl AsFd for Inotify {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Events of a buffer read from inotify.
pub fn parse(mut buf: &[u8]) -> Vec<Event<'_>> {
    const HEADER: usize = std::mem::size_of::<libc::inotify_event>();
    let mut out = Vec::new();
    while buf.len() >= HEADER {
        let watch = i32::from_ne_bytes(buf[0..4].try_into().expect("4 bytes"));
        let mask = u32::from_ne_bytes(buf[4..8].try_into().expect("4 bytes"));
        let len = u32::from_ne_bytes(buf[12..16].try_into().expect("4 bytes")) as usize;
        let Some(name) = buf.get(HEADER..HEADER + len) else {
            break;
        };
        buf = &buf[HEADER + len..];
        let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
        out.push(Event { watch, mask, name });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_of_a_directory_are_seen() {
        let dir = std::env::temp_dir().join(format!("weir-inotify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ino = Inotify::new().unwrap();
        let wd = ino.add_watch(&dir, IN_CREATE | IN_CLOSE_WRITE).unwrap();
        std::fs::write(dir.join("a.yaml"), "x").unwrap();
        let mut buf = [0u8; 4096];
        let events = ino.read(&mut buf).unwrap();
        assert!(events
            .iter()
            .any(|e| e.watch == wd && e.mask & IN_CREATE != 0 && e.name == b"a.yaml"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
