//! Real connections between lab pods: TCP connect and read the name, UDP request/reply,
//! SCTP INIT seen arriving. Many probes run at once on worker threads that enter each
//! source pod's namespace; every probe is bounded by a timeout.

use std::collections::HashSet;
use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol as SockProto, SockAddr, Socket, Type};
use weir_model::Protocol;

use crate::plan::LabState;
use crate::sctp;
use weir_netns::netns::{self, Handles};

/// One connection to try: from pod `src` to pod `dst`'s primary address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Job {
    pub src: usize,
    pub dst: usize,
    pub protocol: Protocol,
    pub port: u16,
}

/// What happened on the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The destination answered (TCP/UDP: with this name; SCTP: the INIT arrived).
    Reached(Option<String>),
    /// The packet reached the destination, which had no listener (RST / port unreachable):
    /// the policy let it through.
    Refused,
    /// No answer before the timeout: dropped.
    Timeout,
    /// The probe itself failed (no route, socket error): neither verdict can be claimed.
    Failed(String),
}

impl Outcome {
    /// The policy verdict the probe observed, if it observed one.
    pub fn allowed(&self) -> Option<bool> {
        match self {
            Outcome::Reached(_) | Outcome::Refused => Some(true),
            Outcome::Timeout => Some(false),
            Outcome::Failed(_) => None,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct ProbeOptions {
    pub timeout: Duration,
    /// Probes in flight at once.
    pub parallel: usize,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        ProbeOptions {
            timeout: Duration::from_millis(600),
            parallel: 96,
        }
    }
}

/// A completed handshake is the verdict; the name is read if the server sends one (the
/// lab's listeners do; real apps such as Redis wait for a request and give `None`).
fn tcp(dst: SocketAddr, timeout: Duration) -> Outcome {
    let connect = || -> io::Result<Socket> {
        let s = Socket::new(Domain::for_address(dst), Type::STREAM, None)?;
        s.connect_timeout(&dst.into(), timeout)?;
        Ok(s)
    };
    match connect() {
        Err(e) => classify(Err(e)),
        Ok(s) => {
            let _ = s.set_read_timeout(Some(timeout.min(Duration::from_millis(300))));
            let mut buf = Vec::new();
            let read = std::net::TcpStream::from(s).take(512).read_to_end(&mut buf);
            let name = String::from_utf8_lossy(&buf).trim().to_string();
            Outcome::Reached((read.is_ok() && !name.is_empty()).then_some(name))
        }
    }
}

/// A new flow for each UDP and SCTP probe: a process-wide count, mapped to source ports
/// 40000–59999 and used as SCTP's initiate tag. A UDP probe that got a reply leaves an
/// established conntrack entry (120 s); a later probe on the same addresses and ports would
/// pass as part of it after a policy change denied the flow — the kernel's own choice of
/// source port repeats within a few hundred probes (it is random, not a sequence).
fn next_flow() -> u32 {
    static FLOWS: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(7919) % 1_000_000;
    start
        .wrapping_add(FLOWS.fetch_add(1, Ordering::Relaxed))
        .max(1)
}

fn source_port(flow: u32) -> u16 {
    40000 + (flow % 20000) as u16
}

/// A UDP socket bound to the next unused flow's source port.
fn udp_socket(dst: SocketAddr) -> io::Result<Socket> {
    let unspecified: IpAddr = match dst {
        SocketAddr::V4(_) => std::net::Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
    };
    let mut last = None;
    for _ in 0..16 {
        let s = Socket::new(Domain::for_address(dst), Type::DGRAM, None)?;
        let from = SocketAddr::new(unspecified, source_port(next_flow()));
        match s.bind(&from.into()) {
            Ok(()) => return Ok(s),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.expect("tried at least once"))
}

fn udp(dst: SocketAddr, timeout: Duration) -> Outcome {
    let attempt = || -> io::Result<String> {
        let s = udp_socket(dst)?;
        s.connect(&dst.into())?;
        s.set_read_timeout(Some(timeout))?;
        s.send(b"probe")?;
        let mut buf = [0u8; 512];
        let n = io::Read::read(&mut &s, &mut buf)?;
        Ok(String::from_utf8_lossy(&buf[..n]).trim().to_string())
    };
    classify(attempt())
}

fn classify(result: io::Result<String>) -> Outcome {
    match result {
        Ok(name) => Outcome::Reached(Some(name)),
        Err(e) => match e.kind() {
            io::ErrorKind::ConnectionRefused => Outcome::Refused,
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Outcome::Timeout,
            _ => Outcome::Failed(e.to_string()),
        },
    }
}

/// INITs seen in destination namespaces, keyed (destination pod, port, initiate tag).
#[derive(Default)]
struct Arrivals {
    seen: Mutex<HashSet<(usize, u16, u32)>>,
    changed: Condvar,
}

impl Arrivals {
    fn wait(&self, key: (usize, u16, u32), timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut seen = self.seen.lock().expect("arrivals lock");
        loop {
            if seen.remove(&key) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            seen = self
                .changed
                .wait_timeout(seen, deadline - now)
                .expect("arrivals lock")
                .0;
        }
    }
}

/// Raw SCTP sockets (both families) in each destination pod, read by one thread.
fn sctp_collector(
    state: &LabState,
    dsts: &HashSet<usize>,
) -> io::Result<Vec<(usize, IpAddr, Socket)>> {
    let mut out = Vec::new();
    for &d in dsts {
        let sockets = netns::run_in(&state.pods[d].netns, || {
            let mut v = Vec::new();
            for (domain, family) in [
                (Domain::IPV4, IpAddr::from([0, 0, 0, 0])),
                (Domain::IPV6, IpAddr::from([0u16; 8])),
            ] {
                let s = Socket::new(domain, Type::RAW, Some(SockProto::from(sctp::IPPROTO_SCTP)))?;
                s.set_nonblocking(true)?;
                v.push((family, s));
            }
            Ok(v)
        })?;
        out.extend(sockets.into_iter().map(|(f, s)| (d, f, s)));
    }
    Ok(out)
}

fn collect(sockets: &[(usize, IpAddr, Socket)], arrivals: &Arrivals, stop: &AtomicBool) {
    let fds: Vec<_> = sockets.iter().map(|(_, _, s)| s.as_fd()).collect();
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        let Ok(ready) = weir_netns::poll_readable(&fds, 50) else {
            continue;
        };
        for (ready, (d, family, s)) in ready.into_iter().zip(sockets) {
            if !ready {
                continue;
            }
            while let Ok(n) = io::Read::read(&mut &*s, &mut buf) {
                let bytes = &buf[..n];
                if let Some((port, tag)) = sctp::parse_init(bytes, *family) {
                    arrivals
                        .seen
                        .lock()
                        .expect("arrivals lock")
                        .insert((*d, port, tag));
                    arrivals.changed.notify_all();
                }
            }
        }
    }
}

fn sctp_probe(
    dst: usize,
    addr: IpAddr,
    port: u16,
    tag: u32,
    arrivals: &Arrivals,
    timeout: Duration,
) -> Outcome {
    let send = || -> io::Result<()> {
        let domain = if addr.is_ipv6() {
            Domain::IPV6
        } else {
            Domain::IPV4
        };
        let s = Socket::new(domain, Type::RAW, Some(SockProto::from(sctp::IPPROTO_SCTP)))?;
        let packet = sctp::init_packet(source_port(tag), port, tag);
        s.send_to(&packet, &SockAddr::from(SocketAddr::new(addr, 0)))?;
        Ok(())
    };
    match send() {
        Err(e) => Outcome::Failed(e.to_string()),
        Ok(()) if arrivals.wait((dst, port, tag), timeout) => Outcome::Reached(None),
        Ok(()) => Outcome::Timeout,
    }
}

/// Runs every job and returns outcomes in job order. Probes that time out are tried once
/// more with twice the timeout, so a slow machine does not pass for a dropping policy.
pub fn run(
    state: &LabState,
    jobs: &[Job],
    options: ProbeOptions,
    progress: &(dyn Fn(usize) + Sync),
) -> io::Result<Vec<Outcome>> {
    let sctp_dsts: HashSet<usize> = jobs
        .iter()
        .filter(|j| j.protocol == Protocol::Sctp)
        .map(|j| j.dst)
        .collect();
    let raw = sctp_collector(state, &sctp_dsts)?;
    let arrivals = Arrivals::default();
    let stop = AtomicBool::new(false);
    let handles = Handles::default();
    let mut outcomes: Vec<Option<Outcome>> = vec![None; jobs.len()];
    std::thread::scope(|s| {
        if !raw.is_empty() {
            s.spawn(|| collect(&raw, &arrivals, &stop));
        }
        let mut pending: Vec<usize> = (0..jobs.len()).collect();
        for round in 0..2 {
            let timeout = options.timeout * (round + 1);
            let next = AtomicUsize::new(0);
            let results = Mutex::new(Vec::with_capacity(pending.len()));
            let workers = options.parallel.clamp(1, pending.len().max(1));
            std::thread::scope(|w| {
                for _ in 0..workers {
                    w.spawn(|| {
                        let mut here: Option<usize> = None;
                        loop {
                            let k = next.fetch_add(1, Ordering::Relaxed);
                            let Some(&ji) = pending.get(k) else { break };
                            let job = jobs[ji];
                            let outcome = (|| {
                                if here != Some(job.src) {
                                    let ns = handles.get(&state.pods[job.src].netns)?;
                                    netns::enter(&ns)?;
                                    here = Some(job.src);
                                }
                                let addr = state.pods[job.dst].ips[0];
                                Ok::<_, io::Error>(match job.protocol {
                                    Protocol::Tcp => tcp(SocketAddr::new(addr, job.port), timeout),
                                    Protocol::Udp => udp(SocketAddr::new(addr, job.port), timeout),
                                    Protocol::Sctp => {
                                        let tag = next_flow();
                                        sctp_probe(job.dst, addr, job.port, tag, &arrivals, timeout)
                                    }
                                })
                            })()
                            .unwrap_or_else(|e| Outcome::Failed(e.to_string()));
                            if round == 0 {
                                progress(1);
                            }
                            results.lock().expect("results lock").push((ji, outcome));
                        }
                    });
                }
            });
            for (ji, outcome) in results.into_inner().expect("results lock") {
                outcomes[ji] = Some(outcome);
            }
            pending.retain(|&ji| outcomes[ji] == Some(Outcome::Timeout));
            if pending.is_empty() {
                break;
            }
        }
        stop.store(true, Ordering::Relaxed);
    });
    Ok(outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Outcome::Failed("not run".into())))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    /// Regression: the lab's upstream-case test once saw a denied UDP flow answered, because
    /// the kernel gave a probe the source port of an earlier, allowed probe whose conntrack
    /// entry was still established. Successive probes must be successive flows.
    #[test]
    fn udp_probes_never_reuse_a_source_port() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let dst = server.local_addr().unwrap();
        let n = 1000;
        let echo = std::thread::spawn(move || {
            let mut ports = Vec::new();
            let mut buf = [0u8; 64];
            while ports.len() < n {
                let (_, from) = server.recv_from(&mut buf).unwrap();
                server.send_to(b"echo", from).unwrap();
                ports.push(from.port());
            }
            ports
        });
        for _ in 0..n {
            assert_eq!(
                udp(dst, Duration::from_secs(5)),
                Outcome::Reached(Some("echo".into()))
            );
        }
        let ports = echo.join().unwrap();
        let distinct: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), n, "a source port was used twice");
    }
}
