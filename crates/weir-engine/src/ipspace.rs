//! Address arithmetic, in one place: addresses and CIDRs as integer ranges, ranges back to
//! CIDRs; and the IP space cut into atoms by every ipBlock's `cidr` and `except` edges.
//! Inside an atom every ipBlock either matches all addresses or none, so atoms with the
//! same set of matching ipBlocks form one class of addresses.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// A distinct `ipBlock` (cidr minus except) across all policies.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Block {
    pub cidr: IpNet,
    pub except: Vec<IpNet>,
}

impl Block {
    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.cidr.contains(ip) && !self.except.iter().any(|e| e.contains(ip))
    }
}

/// Addresses that every ipBlock treats alike.
#[derive(Clone, Debug)]
pub struct IpClass {
    pub v6: bool,
    /// Sorted ids of the blocks that match these addresses.
    pub blocks: Vec<u32>,
    /// Inclusive address ranges (as integers) making up the class.
    pub ranges: Vec<(u128, u128)>,
}

impl IpClass {
    pub fn matched_by(&self, block: u32) -> bool {
        self.blocks.binary_search(&block).is_ok()
    }

    /// The class as a minimal list of CIDRs.
    pub fn cidrs(&self) -> Vec<IpNet> {
        self.ranges
            .iter()
            .flat_map(|&(lo, hi)| range_to_cidrs(lo, hi, self.v6))
            .collect()
    }
}

#[derive(Debug, Default)]
struct Family {
    /// Atom i covers `bounds[i] ..= bounds[i+1]-1` (the last one to the family's top).
    bounds: Vec<u128>,
    atom_class: Vec<u32>,
}

#[derive(Debug, Default)]
pub struct IpSpace {
    pub blocks: Vec<Block>,
    pub classes: Vec<IpClass>,
    v4: Family,
    v6: Family,
}

pub(crate) fn top(v6: bool) -> u128 {
    if v6 {
        u128::MAX
    } else {
        u32::MAX as u128
    }
}

/// An address as an integer of its family (IPv4 in the low 32 bits).
pub fn to_int(ip: &IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(*a) as u128,
        IpAddr::V6(a) => u128::from(*a),
    }
}

/// The address `x` of a family.
pub fn from_int(x: u128, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(x))
    } else {
        IpAddr::V4(Ipv4Addr::from(x as u32))
    }
}

/// The inclusive address range of a CIDR, as integers of its family.
pub fn net_range(net: &IpNet) -> (u128, u128) {
    (to_int(&net.network()), to_int(&net.broadcast()))
}

/// Sorted disjoint inclusive ranges minus one range.
pub fn subtract(ranges: &[(u128, u128)], (lo, hi): (u128, u128)) -> Vec<(u128, u128)> {
    let mut out = Vec::with_capacity(ranges.len() + 1);
    for &(a, b) in ranges {
        if b < lo || a > hi {
            out.push((a, b));
            continue;
        }
        if a < lo {
            out.push((a, lo - 1));
        }
        if b > hi {
            out.push((hi + 1, b));
        }
    }
    out
}

/// The addresses of a family that none of `cidrs` covers, as the fewest CIDRs.
pub fn complement(cidrs: &[IpNet], v6: bool) -> Vec<IpNet> {
    let mut ranges = vec![(0, top(v6))];
    for c in cidrs {
        ranges = subtract(&ranges, net_range(c));
    }
    ranges
        .into_iter()
        .flat_map(|(lo, hi)| range_to_cidrs(lo, hi, v6))
        .collect()
}

/// Addresses standing for "outside" in checks: every ipBlock and except edge, every edge of
/// a cluster policy's networks, the nodes' addresses, and two documentation addresses that
/// no policy names.
pub fn outside_representatives(clusters: &[&weir_model::Cluster]) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = vec!["192.0.2.1".parse().unwrap(), "2001:db8::1".parse().unwrap()];
    for c in clusters {
        for p in &c.policies {
            for rule in p.ingress.iter().chain(&p.egress) {
                for peer in &rule.peers {
                    if let weir_model::Peer::IpBlock { cidr, except } = peer {
                        for net in std::iter::once(cidr).chain(except) {
                            out.push(net.network());
                            out.push(net.broadcast());
                        }
                    }
                }
            }
        }
        for p in &c.cluster_policies {
            for rule in p.ingress.iter().chain(&p.egress) {
                for peer in &rule.peers {
                    if let weir_model::ClusterPeer::Networks(nets) = peer {
                        for net in nets {
                            out.push(net.network());
                            out.push(net.broadcast());
                        }
                    }
                }
            }
        }
        out.extend(c.nodes.iter().flat_map(|n| n.addresses.iter().copied()));
    }
    out.sort();
    out.dedup();
    out
}

/// The last address of the 2^k-aligned span starting at `lo` (aligned, so no overflow).
fn span_end(lo: u128, k: u32) -> u128 {
    if k >= 128 {
        u128::MAX
    } else {
        lo + ((1u128 << k) - 1)
    }
}

/// An inclusive range as the fewest CIDRs covering exactly it.
pub fn range_to_cidrs(mut lo: u128, hi: u128, v6: bool) -> Vec<IpNet> {
    let bits: u32 = if v6 { 128 } else { 32 };
    let mut out = Vec::new();
    loop {
        let mut k = if lo == 0 {
            bits
        } else {
            lo.trailing_zeros().min(bits)
        };
        while k > 0 && span_end(lo, k) > hi {
            k -= 1;
        }
        let prefix = (bits - k) as u8;
        out.push(if v6 {
            IpNet::V6(Ipv6Net::new(Ipv6Addr::from(lo), prefix).expect("prefix within 128"))
        } else {
            IpNet::V4(Ipv4Net::new(Ipv4Addr::from(lo as u32), prefix).expect("prefix within 32"))
        });
        let end = span_end(lo, k);
        if end >= hi {
            return out;
        }
        lo = end + 1;
    }
}

impl IpSpace {
    pub fn new(blocks: Vec<Block>) -> IpSpace {
        let mut space = IpSpace {
            blocks,
            ..Default::default()
        };
        let mut interned: HashMap<(bool, Vec<u32>), u32> = HashMap::new();
        for v6 in [false, true] {
            let mut bounds = vec![0u128];
            for b in space
                .blocks
                .iter()
                .filter(|b| b.cidr.addr().is_ipv6() == v6)
            {
                for net in std::iter::once(&b.cidr).chain(&b.except) {
                    let (lo, hi) = net_range(net);
                    bounds.push(lo);
                    if hi < top(v6) {
                        bounds.push(hi + 1);
                    }
                }
            }
            bounds.sort_unstable();
            bounds.dedup();
            let mut members: Vec<Vec<u32>> = vec![Vec::new(); bounds.len()];
            let atom_of = |x: u128| bounds.partition_point(|&b| b <= x) - 1;
            for (id, b) in space.blocks.iter().enumerate() {
                if b.cidr.addr().is_ipv6() != v6 {
                    continue;
                }
                let (lo, hi) = net_range(&b.cidr);
                let excepts: Vec<(usize, usize)> = b
                    .except
                    .iter()
                    .map(|e| {
                        let (l, h) = net_range(e);
                        (atom_of(l), atom_of(h))
                    })
                    .collect();
                for (atom, m) in members
                    .iter_mut()
                    .enumerate()
                    .take(atom_of(hi) + 1)
                    .skip(atom_of(lo))
                {
                    if !excepts.iter().any(|&(a, z)| a <= atom && atom <= z) {
                        m.push(id as u32);
                    }
                }
            }
            let mut atom_class = Vec::with_capacity(bounds.len());
            for (atom, m) in members.into_iter().enumerate() {
                let next = space.classes.len() as u32;
                let class = *interned.entry((v6, m.clone())).or_insert(next);
                if class == next {
                    space.classes.push(IpClass {
                        v6,
                        blocks: m,
                        ranges: Vec::new(),
                    });
                }
                let lo = bounds[atom];
                let hi = bounds.get(atom + 1).map_or(top(v6), |b| b - 1);
                let ranges = &mut space.classes[class as usize].ranges;
                match ranges.last_mut() {
                    Some(last) if last.1.checked_add(1) == Some(lo) => last.1 = hi,
                    _ => ranges.push((lo, hi)),
                }
                atom_class.push(class);
            }
            let fam = Family { bounds, atom_class };
            if v6 {
                space.v6 = fam;
            } else {
                space.v4 = fam;
            }
        }
        space
    }

    /// The class an address falls in.
    pub fn class_of(&self, ip: &IpAddr) -> u32 {
        let fam = if ip.is_ipv6() { &self.v6 } else { &self.v4 };
        let x = to_int(ip);
        fam.atom_class[fam.bounds.partition_point(|&b| b <= x) - 1]
    }
}

/// A set of CIDRs of one family, written as the shorter of the list and "the smallest CIDR
/// covering them except …" (`0.0.0.0/0 except 10.0.0.0/8`, `10.0.0.0/8 except
/// 10.1.0.0/16`): how every command names outside addresses.
pub fn describe(cidrs: &[IpNet]) -> String {
    let list = |l: &[IpNet]| {
        l.iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    let Some(first) = cidrs.first() else {
        return String::new();
    };
    let v6 = matches!(first, IpNet::V6(_));
    let bits = if v6 { 128 } else { 32 };
    let (lo, hi) = cidrs
        .iter()
        .map(net_range)
        .fold((u128::MAX, 0), |(lo, hi), (a, b)| (lo.min(a), hi.max(b)));
    // The longest prefix lo and hi share, within the family's width.
    let shared = ((lo ^ hi).leading_zeros() - (128 - bits)).min(bits);
    let cover_lo = match shared {
        0 => 0,
        s if s >= bits => lo,
        s => lo & !(top(v6) >> s),
    };
    let cover = range_to_cidrs(cover_lo, span_end(cover_lo, bits - shared), v6);
    let mut holes = vec![(cover_lo, span_end(cover_lo, bits - shared))];
    for c in cidrs {
        holes = subtract(&holes, net_range(c));
    }
    let holes: Vec<IpNet> = holes
        .into_iter()
        .flat_map(|(a, b)| range_to_cidrs(a, b, v6))
        .collect();
    match (cover.as_slice(), holes.is_empty()) {
        ([c], true) => c.to_string(),
        ([c], false) if holes.len() < cidrs.len() => format!("{c} except {}", list(&holes)),
        _ => list(cidrs),
    }
}

/// The addresses in both lists (one family), as the fewest CIDRs.
pub fn intersect(a: &[IpNet], b: &[IpNet]) -> Vec<IpNet> {
    let v6 = a.first().is_some_and(|c| matches!(c, IpNet::V6(_)));
    let ranges = |l: &[IpNet]| {
        let mut r: Vec<(u128, u128)> = l.iter().map(net_range).collect();
        r.sort_unstable();
        r
    };
    let (a, b) = (ranges(a), ranges(b));
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        let (lo, hi) = (a[i].0.max(b[j].0), a[i].1.min(b[j].1));
        if lo <= hi {
            out.extend(range_to_cidrs(lo, hi, v6));
        }
        if a[i].1 < b[j].1 {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn cidr_descriptions_pick_the_shorter_form() {
        assert_eq!(describe(&[net("10.0.0.0/8")]), "10.0.0.0/8");
        // Everything but 10.0.0.0/8, as a list of 5 CIDRs, reads better as an exception.
        let rest = complement(&[net("10.0.0.0/8")], false);
        assert_eq!(describe(&rest), "0.0.0.0/0 except 10.0.0.0/8");
        let office = subtract(
            &[net_range(&net("10.0.0.0/8"))],
            net_range(&net("10.1.0.0/16")),
        );
        let office: Vec<IpNet> = office
            .iter()
            .flat_map(|&(a, b)| range_to_cidrs(a, b, false))
            .collect();
        assert_eq!(describe(&office), "10.0.0.0/8 except 10.1.0.0/16");
        assert_eq!(describe(&[net("::/0")]), "::/0");
        assert_eq!(describe(&[net("2001:db8::1/128")]), "2001:db8::1/128");
        assert_eq!(
            describe(&[net("10.0.0.0/24"), net("10.0.2.0/24")]),
            "10.0.0.0/24,10.0.2.0/24"
        );
    }

    #[test]
    fn intersection_of_cidr_lists() {
        let a = complement(&[net("10.0.0.0/8")], false);
        let b = [net("8.0.0.0/6"), net("192.0.2.0/24")];
        assert_eq!(
            intersect(&a, &b),
            [net("8.0.0.0/7"), net("11.0.0.0/8"), net("192.0.2.0/24")]
        );
        assert_eq!(intersect(&a, &[net("10.1.0.0/16")]), []);
    }

    #[test]
    fn subtract_splits_and_trims() {
        let r = subtract(&[(0, 255)], (16, 31));
        assert_eq!(r, vec![(0, 15), (32, 255)]);
        assert_eq!(subtract(&r, (0, 20)), vec![(32, 255)]);
        assert_eq!(subtract(&[(5, 5)], (5, 5)), vec![]);
        assert_eq!(subtract(&[(0, 10)], (10, 20)), vec![(0, 9)]);
    }

    #[test]
    fn complements_are_the_fewest_cidrs() {
        let c = complement(&[net("10.0.0.0/8")], false);
        assert_eq!(c.len(), 8, "{c:?}"); // 0/5, 8/7, 11/8, 12/6, 16/4, 32/3, 64/2, 128/1
        assert!(c
            .iter()
            .all(|n| !n.contains(&"10.1.2.3".parse::<IpAddr>().unwrap())));
        assert!(c
            .iter()
            .any(|n| n.contains(&"11.0.0.1".parse::<IpAddr>().unwrap())));
        assert_eq!(complement(&[net("0.0.0.0/0")], false), vec![]);
        assert_eq!(complement(&[], true), vec![net("::/0")]);
        assert_eq!(
            from_int(to_int(&"fd00::1".parse().unwrap()), true).to_string(),
            "fd00::1"
        );
    }

    #[test]
    fn atoms_and_classes() {
        let space = IpSpace::new(vec![
            Block {
                cidr: net("10.0.0.0/8"),
                except: vec![net("10.1.0.0/16")],
            },
            Block {
                cidr: net("0.0.0.0/0"),
                except: vec![],
            },
        ]);
        let c = |s: &str| &space.classes[space.class_of(&s.parse().unwrap()) as usize];
        assert_eq!(c("10.2.3.4").blocks, vec![0, 1]);
        assert_eq!(c("10.1.3.4").blocks, vec![1]);
        assert_eq!(c("192.168.1.1").blocks, vec![1]);
        assert_eq!(c("11.0.0.0").blocks, vec![1]);
        let rest: Vec<String> = c("10.1.0.0")
            .cidrs()
            .iter()
            .map(|n| n.to_string())
            .collect();
        assert_eq!(
            rest,
            vec![
                "0.0.0.0/5",
                "8.0.0.0/7",
                "10.1.0.0/16",
                "11.0.0.0/8",
                "12.0.0.0/6",
                "16.0.0.0/4",
                "32.0.0.0/3",
                "64.0.0.0/2",
                "128.0.0.0/1"
            ]
        );
        assert!(c("::1").blocks.is_empty());
        assert_eq!(c("::1").cidrs(), vec![net("::/0")]);
    }
}
