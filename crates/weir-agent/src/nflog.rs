//! Dropped packets from the kernel: nftables `log group N` sends them to NFLOG
//! (nfnetlink_log), read here from a netlink socket opened inside the node's namespace.
//! The parser is pure and tested on hand-made messages; only [`NflogSocket`] does IO.

use std::io;
use std::net::IpAddr;

use weir_netns::netlink::{NetlinkSocket, NETLINK_NETFILTER};

const NFNL_SUBSYS_ULOG: u16 = 4;
const NFULNL_MSG_PACKET: u16 = 0;
const NFULNL_MSG_CONFIG: u16 = 1;
const NFULA_CFG_CMD: u16 = 1;
const NFULA_CFG_MODE: u16 = 2;
const NFULNL_CFG_CMD_BIND: u8 = 1;
const NFULNL_COPY_PACKET: u8 = 2;
const NFULA_PAYLOAD: u16 = 9;
const NFULA_PREFIX: u16 = 10;

/// One logged packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Logged {
    /// The rule's log prefix (weir writes `weir <chain>`).
    pub prefix: String,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IANA protocol number.
    pub protocol: u8,
    /// Destination port for TCP, UDP and SCTP.
    pub dport: Option<u16>,
}

fn align(n: usize) -> usize {
    (n + 3) & !3
}

/// The (type, value) attributes of a netlink attribute stream.
fn attributes(mut b: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while b.len() >= 4 {
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let ty = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        if len < 4 || len > b.len() {
            break;
        }
        out.push((ty, &b[4..len]));
        b = &b[align(len).min(b.len())..];
    }
    out
}

/// Addresses, protocol and destination port of an IPv4 or IPv6 packet.
fn parse_ip(p: &[u8]) -> Option<(IpAddr, IpAddr, u8, Option<u16>)> {
    let (src, dst, proto, l4): (IpAddr, IpAddr, u8, &[u8]) = match p.first()? >> 4 {
        4 => {
            let ihl = (p[0] & 0x0f) as usize * 4;
            let a: [u8; 4] = p.get(12..16)?.try_into().ok()?;
            let b: [u8; 4] = p.get(16..20)?.try_into().ok()?;
            (a.into(), b.into(), *p.get(9)?, p.get(ihl..)?)
        }
        6 => {
            let a: [u8; 16] = p.get(8..24)?.try_into().ok()?;
            let b: [u8; 16] = p.get(24..40)?.try_into().ok()?;
            (a.into(), b.into(), *p.get(6)?, p.get(40..)?)
        }
        _ => return None,
    };
    let dport = matches!(proto, 6 | 17 | 132)
        .then(|| l4.get(2..4).map(|x| u16::from_be_bytes([x[0], x[1]])))
        .flatten();
    Some((src, dst, proto, dport))
}

/// Every logged packet in one netlink datagram.
pub fn parse(datagram: &[u8]) -> Vec<Logged> {
    let mut out = Vec::new();
    let mut b = datagram;
    while b.len() >= 16 {
        let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
        let ty = u16::from_ne_bytes([b[4], b[5]]);
        if len < 16 || len > b.len() {
            break;
        }
        if ty == (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET && len >= 20 {
            let mut prefix = String::new();
            let mut packet = None;
            for (t, v) in attributes(&b[20..len]) {
                match t {
                    NFULA_PREFIX => {
                        prefix = String::from_utf8_lossy(v)
                            .trim_end_matches('\0')
                            .to_string()
                    }
                    NFULA_PAYLOAD => packet = parse_ip(v),
                    _ => {}
                }
            }
            if let Some((src, dst, protocol, dport)) = packet {
                out.push(Logged {
                    prefix,
                    src,
                    dst,
                    protocol,
                    dport,
                });
            }
        }
        b = &b[align(len).min(b.len())..];
    }
    out
}

fn config_message(group: u16, attr_type: u16, payload: &[u8]) -> Vec<u8> {
    let attr_len = 4 + payload.len();
    let len = 16 + 4 + align(attr_len);
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&((NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG).to_ne_bytes());
    m.extend_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes()); // seq
    m.extend_from_slice(&0u32.to_ne_bytes()); // pid
    m.extend_from_slice(&[libc::AF_UNSPEC as u8, 0]); // nfgenmsg: family, version
    m.extend_from_slice(&group.to_be_bytes()); // res_id: the group
    m.extend_from_slice(&(attr_len as u16).to_ne_bytes());
    m.extend_from_slice(&attr_type.to_ne_bytes());
    m.extend_from_slice(payload);
    m.resize(len, 0);
    m
}

/// A socket bound to one NFLOG group in the namespace it was created in.
pub struct NflogSocket {
    socket: NetlinkSocket,
}

impl NflogSocket {
    /// Must be called on a thread inside the node's network namespace.
    pub fn bind(group: u16) -> io::Result<NflogSocket> {
        let socket = NetlinkSocket::bind(NETLINK_NETFILTER)?;
        socket.send(&config_message(
            group,
            NFULA_CFG_CMD,
            &[NFULNL_CFG_CMD_BIND, 0, 0, 0],
        ))?;
        let mut mode = 256u32.to_be_bytes().to_vec();
        mode.extend_from_slice(&[NFULNL_COPY_PACKET, 0]);
        socket.send(&config_message(group, NFULA_CFG_MODE, &mode))?;
        Ok(NflogSocket { socket })
    }

    /// Blocks until the kernel sends logged packets.
    pub fn recv(&self) -> io::Result<Vec<Logged>> {
        let mut buf = vec![0u8; 65536];
        Ok(parse(self.socket.recv(&mut buf)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(ty: u16, v: &[u8]) -> Vec<u8> {
        let mut a = ((4 + v.len()) as u16).to_ne_bytes().to_vec();
        a.extend_from_slice(&ty.to_ne_bytes());
        a.extend_from_slice(v);
        a.resize(align(a.len()), 0);
        a
    }

    #[test]
    fn parses_a_logged_tcp_syn() {
        let mut ip = vec![
            0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 244, 0, 1, 10, 244, 0, 3,
        ];
        ip.extend_from_slice(&[0x9c, 0x40, 0x18, 0xeb]); // ports 40000 → 6379
        ip.resize(40, 0);
        let mut body = vec![2u8, 0, 0, 7]; // nfgenmsg
        body.extend(attr(NFULA_PREFIX, b"weir ig-0123\0"));
        body.extend(attr(NFULA_PAYLOAD, &ip));
        let mut msg = ((16 + body.len()) as u32).to_ne_bytes().to_vec();
        msg.extend_from_slice(&(NFNL_SUBSYS_ULOG << 8).to_ne_bytes());
        msg.extend_from_slice(&[0; 10]);
        msg.extend(body);
        let got = parse(&msg);
        assert_eq!(
            got,
            vec![Logged {
                prefix: "weir ig-0123".into(),
                src: "10.244.0.1".parse().unwrap(),
                dst: "10.244.0.3".parse().unwrap(),
                protocol: 6,
                dport: Some(6379),
            }]
        );
        assert!(parse(&msg[..10]).is_empty(), "truncated input is ignored");
    }

    #[test]
    fn config_messages_are_well_formed() {
        let m = config_message(7, NFULA_CFG_CMD, &[NFULNL_CFG_CMD_BIND, 0, 0, 0]);
        assert_eq!(m.len(), 28);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()), 28);
        assert_eq!(&m[18..20], &7u16.to_be_bytes());
    }
}
