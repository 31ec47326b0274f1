//! SCTP without SCTP sockets (this kernel has none): a hand-made INIT chunk sent over a raw
//! IP socket (protocol 132), and raw sockets in destination namespaces that see it arrive.
//! nftables classifies and filters these packets like any SCTP traffic.

use std::net::IpAddr;

pub const IPPROTO_SCTP: i32 = 132;

/// CRC32c (Castagnoli), the SCTP checksum (RFC 4960 appendix B).
pub fn crc32c(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, slot) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0x82F6_3B78 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
            *slot = c;
        }
        t
    });
    let mut crc = !0u32;
    for &b in data {
        crc = table[((crc ^ b as u32) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

/// An SCTP packet holding one INIT chunk, `tag` as its initiate tag (so the receiver can
/// tell which probe it is).
pub fn init_packet(src_port: u16, dst_port: u16, tag: u32) -> Vec<u8> {
    let mut p = Vec::with_capacity(32);
    p.extend_from_slice(&src_port.to_be_bytes());
    p.extend_from_slice(&dst_port.to_be_bytes());
    p.extend_from_slice(&0u32.to_be_bytes()); // verification tag: 0 in an INIT
    p.extend_from_slice(&0u32.to_be_bytes()); // checksum, filled below
    p.push(1); // chunk type INIT
    p.push(0); // flags
    p.extend_from_slice(&20u16.to_be_bytes()); // chunk length
    p.extend_from_slice(&tag.to_be_bytes()); // initiate tag
    p.extend_from_slice(&65535u32.to_be_bytes()); // a_rwnd
    p.extend_from_slice(&1u16.to_be_bytes()); // outbound streams
    p.extend_from_slice(&1u16.to_be_bytes()); // inbound streams
    p.extend_from_slice(&tag.to_be_bytes()); // initial TSN
    let sum = crc32c(&p);
    p[8..12].copy_from_slice(&sum.to_le_bytes());
    p
}

/// (destination port, initiate tag) of an INIT in a packet read from a raw socket; IPv4
/// raw sockets deliver the IP header too, IPv6 ones do not.
pub fn parse_init(packet: &[u8], family: IpAddr) -> Option<(u16, u32)> {
    let sctp = if family.is_ipv4() {
        let ihl = (*packet.first()? & 0x0f) as usize * 4;
        packet.get(ihl..)?
    } else {
        packet
    };
    if sctp.len() < 32 || sctp[12] != 1 {
        return None;
    }
    let port = u16::from_be_bytes([sctp[2], sctp[3]]);
    let tag = u32::from_be_bytes([sctp[16], sctp[17], sctp[18], sctp[19]]);
    Some((port, tag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_known_vectors() {
        // RFC 3720 B.4 test vectors.
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xffu8; 32]), 0x62A8_AB43);
        let inc: Vec<u8> = (0..32).collect();
        assert_eq!(crc32c(&inc), 0x46DD_794E);
    }

    #[test]
    fn init_round_trips_and_checksums() {
        let p = init_packet(40000, 80, 0xdead_beef);
        assert_eq!(p.len(), 32);
        assert_eq!(
            parse_init(&p, "::1".parse().unwrap()),
            Some((80, 0xdead_beef))
        );
        let mut zeroed = p.clone();
        zeroed[8..12].copy_from_slice(&[0; 4]);
        assert_eq!(crc32c(&zeroed).to_le_bytes(), p[8..12]);
    }
}
