//! The lab's listeners, like agnhost serve-hostname: on every TCP and UDP port a pod
//! listens on, answer with the pod's `namespace/name`. One process serves the whole lab:
//! sockets are created inside each pod's namespace and then all polled from one thread.

use std::io::{self, Write};
use std::net::{Ipv6Addr, SocketAddr};
use std::os::fd::AsFd;

use socket2::{Domain, Socket, Type};
use weir_model::{PortKey, Protocol};

use crate::plan::LabState;
use weir_netns::netns;

struct Listener {
    socket: Socket,
    protocol: Protocol,
    reply: Vec<u8>,
}

/// Opens one dual-stack socket per (pod, protocol, port), inside the pod's namespace.
fn open(state: &LabState) -> io::Result<Vec<Listener>> {
    let mut out = Vec::new();
    for pod in &state.pods {
        let ports = pod.listen.clone();
        let sockets = netns::run_in(&pod.netns, move || {
            ports
                .iter()
                .map(|&PortKey { protocol, port }| {
                    let ty = match protocol {
                        Protocol::Udp => Type::DGRAM,
                        _ => Type::STREAM,
                    };
                    let s = Socket::new(Domain::IPV6, ty, None)?;
                    s.set_only_v6(false)?;
                    s.set_reuse_address(true)?;
                    s.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)).into())?;
                    if protocol == Protocol::Tcp {
                        s.listen(1024)?;
                    }
                    s.set_nonblocking(true)?;
                    Ok((protocol, s))
                })
                .collect::<io::Result<Vec<_>>>()
        })?;
        for (protocol, socket) in sockets {
            out.push(Listener {
                socket,
                protocol,
                reply: format!("{}\n", pod.id).into_bytes(),
            });
        }
    }
    Ok(out)
}

/// Serves forever: after every socket is open, `ready` is called (the daemon tells its
/// parent), then each TCP connection gets the name and is closed, each UDP datagram is
/// answered with the name.
pub fn serve(state: &LabState, ready: impl FnOnce()) -> io::Result<()> {
    let listeners = open(state)?;
    ready();
    let fds: Vec<_> = listeners.iter().map(|l| l.socket.as_fd()).collect();
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 2048];
    loop {
        let ready = weir_netns::poll_readable(&fds, 1000)?;
        for (ready, l) in ready.into_iter().zip(&listeners) {
            if !ready {
                continue;
            }
            match l.protocol {
                Protocol::Udp => {
                    while let Ok((_, from)) = l.socket.recv_from(&mut buf) {
                        let _ = l.socket.send_to(&l.reply, &from);
                    }
                }
                _ => {
                    while let Ok((conn, _)) = l.socket.accept() {
                        let mut conn = std::net::TcpStream::from(conn);
                        let _ = conn.set_nonblocking(false);
                        let _ = conn.set_write_timeout(Some(std::time::Duration::from_millis(200)));
                        let _ = conn.write_all(&l.reply);
                    }
                }
            }
        }
    }
}
