//! A raw netlink socket (the NFLOG reader uses `NETLINK_NETFILTER`): messages are built and
//! parsed by the caller; this only moves bytes to and from the kernel.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

pub const NETLINK_NETFILTER: i32 = 12;

pub struct NetlinkSocket {
    fd: OwnedFd,
}

fn kernel_address() -> libc::sockaddr_nl {
    // SAFETY: sockaddr_nl is plain data; all-zero is a valid value (pid 0: the kernel).
    let mut a: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    a.nl_family = libc::AF_NETLINK as u16;
    a
}

impl NetlinkSocket {
    /// A socket of `protocol`, bound, in the calling thread's network namespace.
    pub fn bind(protocol: i32) -> io::Result<NetlinkSocket> {
        // SAFETY: socket(2) returns a new fd or -1.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                protocol,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let addr = kernel_address();
        // SAFETY: a valid fd and a sockaddr_nl of the size passed.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(NetlinkSocket { fd })
    }

    /// Sends one message to the kernel.
    pub fn send(&self, message: &[u8]) -> io::Result<()> {
        let to = kernel_address();
        // SAFETY: sending our buffer, of the length passed, to a valid address.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                message.as_ptr().cast(),
                message.len(),
                0,
                (&to as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Blocks until the kernel sends something; the bytes received.
    pub fn recv<'b>(&self, buf: &'b mut [u8]) -> io::Result<&'b [u8]> {
        // SAFETY: receiving into a buffer we own, of the length passed.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(&buf[..n as usize])
        }
    }
}
