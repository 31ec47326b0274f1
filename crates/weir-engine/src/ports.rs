//! Sets of (protocol, port) as disjoint intervals, plus "other protocols"
//! (ICMP and the rest), which only a rule without `ports` allows.

use std::fmt;

use smallvec::{smallvec, SmallVec};

use weir_model::{ClusterPort, ContainerPort, PortRef, PortRule, Protocol};

/// Inclusive port intervals, sorted and disjoint; inline up to two per protocol, so
/// the millions of sets a large analysis builds rarely touch the heap.
type Ranges = SmallVec<[(u16, u16); 2]>;

/// Inclusive port intervals, sorted and disjoint, for each of TCP, UDP, SCTP.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortSet {
    ranges: [Ranges; 3],
    /// Protocols other than TCP/UDP/SCTP.
    other: bool,
}

fn slot(p: Protocol) -> usize {
    match p {
        Protocol::Tcp => 0,
        Protocol::Udp => 1,
        Protocol::Sctp => 2,
    }
}

fn normalize(v: &mut Ranges) {
    v.sort_unstable();
    let mut out: Ranges = SmallVec::with_capacity(v.len());
    for &(lo, hi) in v.iter() {
        match out.last_mut() {
            Some(last) if (lo as u32) <= last.1 as u32 + 1 => last.1 = last.1.max(hi),
            _ => out.push((lo, hi)),
        }
    }
    *v = out;
}

impl PortSet {
    pub fn none() -> Self {
        PortSet::default()
    }

    /// Everything: every port of every protocol, and other protocols.
    pub fn all() -> Self {
        PortSet {
            ranges: [
                smallvec![(1, 65535)],
                smallvec![(1, 65535)],
                smallvec![(1, 65535)],
            ],
            other: true,
        }
    }

    pub fn range(protocol: Protocol, lo: u16, hi: u16) -> Self {
        let mut s = PortSet::none();
        s.ranges[slot(protocol)].push((lo, hi));
        s
    }

    pub fn is_empty(&self) -> bool {
        !self.other && self.ranges.iter().all(|r| r.is_empty())
    }

    pub fn is_all(&self) -> bool {
        *self == PortSet::all()
    }

    pub fn contains(&self, protocol: Protocol, port: u16) -> bool {
        let r = &self.ranges[slot(protocol)];
        let i = r.partition_point(|&(_, hi)| hi < port);
        i < r.len() && r[i].0 <= port
    }

    pub fn union(&self, other: &PortSet) -> PortSet {
        let mut out = self.clone();
        out.other |= other.other;
        for (mine, theirs) in out.ranges.iter_mut().zip(&other.ranges) {
            if !theirs.is_empty() {
                mine.extend_from_slice(theirs);
                normalize(mine);
            }
        }
        out
    }

    pub fn intersect(&self, other: &PortSet) -> PortSet {
        let mut out = PortSet {
            other: self.other && other.other,
            ..PortSet::default()
        };
        for i in 0..3 {
            let (a, b) = (&self.ranges[i], &other.ranges[i]);
            let (mut x, mut y) = (0, 0);
            while x < a.len() && y < b.len() {
                let lo = a[x].0.max(b[y].0);
                let hi = a[x].1.min(b[y].1);
                if lo <= hi {
                    out.ranges[i].push((lo, hi));
                }
                if a[x].1 < b[y].1 {
                    x += 1;
                } else {
                    y += 1;
                }
            }
        }
        out
    }

    /// What `self` has and `other` has not.
    pub fn difference(&self, other: &PortSet) -> PortSet {
        let mut out = PortSet {
            other: self.other && !other.other,
            ..PortSet::default()
        };
        for i in 0..3 {
            let mut cut = other.ranges[i].iter().peekable();
            for &(lo, hi) in &self.ranges[i] {
                let mut from = lo as u32;
                // Cut intervals are sorted: skip those wholly before this one.
                while cut.peek().is_some_and(|c| (c.1 as u32) < from) {
                    cut.next();
                }
                let mut pending = cut.clone();
                while let Some(&&(clo, chi)) = pending.peek() {
                    if clo as u32 > hi as u32 {
                        break;
                    }
                    if clo as u32 > from {
                        out.ranges[i].push((from as u16, clo - 1));
                    }
                    from = from.max(chi as u32 + 1);
                    pending.next();
                }
                if from <= hi as u32 {
                    out.ranges[i].push((from as u16, hi));
                }
            }
        }
        out
    }

    /// The intervals of one protocol.
    pub fn ranges(&self, protocol: Protocol) -> &[(u16, u16)] {
        &self.ranges[slot(protocol)]
    }

    pub fn other_protocols(&self) -> bool {
        self.other
    }
}

/// What one `ports` entry means on a destination with `dst_ports` containerPorts.
/// A named port matches the destination's containerPort of that name *and* protocol.
pub fn resolve_port_rule(rule: &PortRule, dst_ports: &[ContainerPort]) -> PortSet {
    match &rule.port {
        None => PortSet::range(rule.protocol, 1, 65535),
        Some(PortRef::Number { port, end }) => PortSet::range(rule.protocol, *port, *end),
        Some(PortRef::Named(name)) => {
            let mut s = PortSet::none();
            for cp in dst_ports {
                if cp.protocol == rule.protocol && cp.name.as_deref() == Some(name) {
                    s = s.union(&PortSet::range(cp.protocol, cp.port, cp.port));
                }
            }
            s
        }
    }
}

/// What a rule's whole `ports` list means on a destination; empty list = all.
pub fn resolve_ports(rules: &[PortRule], dst_ports: &[ContainerPort]) -> PortSet {
    if rules.is_empty() {
        return PortSet::all();
    }
    rules.iter().fold(PortSet::none(), |acc, r| {
        acc.union(&resolve_port_rule(r, dst_ports))
    })
}

/// What a cluster policy rule's `protocols` / `ports` mean on a destination: `None` is
/// everything; a named port matches the destination's containerPort of that name, of any
/// protocol.
pub fn resolve_cluster_ports(
    ports: Option<&[ClusterPort]>,
    dst_ports: &[ContainerPort],
) -> PortSet {
    let Some(ports) = ports else {
        return PortSet::all();
    };
    let mut s = PortSet::none();
    for p in ports {
        match p {
            ClusterPort::Range {
                protocol,
                start,
                end,
            } => {
                if start <= end {
                    s = s.union(&PortSet::range(*protocol, *start, *end));
                }
            }
            ClusterPort::Named(name) => {
                for cp in dst_ports {
                    if cp.name.as_deref() == Some(name) {
                        s = s.union(&PortSet::range(cp.protocol, cp.port, cp.port));
                    }
                }
            }
        }
    }
    s
}

impl fmt::Display for PortSet {
    /// `all`, `none`, or e.g. `TCP 80,443,8000-8080; UDP 53; other protocols`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_all() {
            return f.write_str("all");
        }
        if self.is_empty() {
            return f.write_str("none");
        }
        let mut parts = Vec::new();
        for p in Protocol::ALL {
            let r = self.ranges(p);
            if r.is_empty() {
                continue;
            }
            let body = if r == [(1, 65535)] {
                "all".to_string()
            } else {
                r.iter()
                    .map(|&(lo, hi)| {
                        if lo == hi {
                            lo.to_string()
                        } else {
                            format!("{lo}-{hi}")
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            };
            parts.push(format!("{p} {body}"));
        }
        if self.other {
            parts.push("other protocols".into());
        }
        f.write_str(&parts.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn union_intersect_display() {
        let a = PortSet::range(Protocol::Tcp, 80, 80).union(&PortSet::range(Protocol::Tcp, 81, 90));
        assert_eq!(a.to_string(), "TCP 80-90");
        let b =
            PortSet::range(Protocol::Tcp, 85, 100).union(&PortSet::range(Protocol::Udp, 53, 53));
        assert_eq!(a.intersect(&b).to_string(), "TCP 85-90");
        assert_eq!(a.union(&b).to_string(), "TCP 80-100; UDP 53");
        assert!(a.contains(Protocol::Tcp, 90));
        assert!(!a.contains(Protocol::Tcp, 91));
        assert!(!a.contains(Protocol::Sctp, 85));
        assert_eq!(PortSet::all().to_string(), "all");
        assert_eq!(PortSet::all().intersect(&a), a);
    }

    #[test]
    fn difference_cuts_intervals() {
        let a = PortSet::range(Protocol::Tcp, 1, 100).union(&PortSet::range(Protocol::Udp, 53, 53));
        let b = PortSet::range(Protocol::Tcp, 10, 20)
            .union(&PortSet::range(Protocol::Tcp, 30, 30))
            .union(&PortSet::range(Protocol::Tcp, 90, 200));
        assert_eq!(a.difference(&b).to_string(), "TCP 1-9,21-29,31-89; UDP 53");
        assert_eq!(a.difference(&a), PortSet::none());
        assert_eq!(PortSet::all().difference(&PortSet::none()), PortSet::all());
        let all_but = PortSet::all().difference(&PortSet::range(Protocol::Sctp, 1, 65535));
        assert_eq!(all_but.to_string(), "TCP all; UDP all; other protocols");
        assert_eq!(
            PortSet::all()
                .difference(&PortSet::range(Protocol::Tcp, 65535, 65535))
                .ranges(Protocol::Tcp),
            &[(1, 65534)]
        );
        assert_eq!(
            PortSet::all()
                .difference(&PortSet::range(Protocol::Tcp, 1, 1))
                .ranges(Protocol::Tcp),
            &[(2, 65535)]
        );
        // Exhaustive on a small space: x ∈ a∖b ⇔ x ∈ a ∧ x ∉ b.
        for (a, b) in [(&a, &b), (&b, &a)] {
            let d = a.difference(b);
            for port in 1..=300 {
                for p in [Protocol::Tcp, Protocol::Udp] {
                    assert_eq!(
                        d.contains(p, port),
                        a.contains(p, port) && !b.contains(p, port)
                    );
                }
            }
        }
    }

    #[test]
    fn named_ports_resolve_by_name_and_protocol() {
        let dst = vec![
            ContainerPort {
                name: Some("dns".into()),
                protocol: Protocol::Udp,
                port: 5353,
            },
            ContainerPort {
                name: Some("dns".into()),
                protocol: Protocol::Tcp,
                port: 5354,
            },
        ];
        let rule = PortRule {
            protocol: Protocol::Udp,
            port: Some(PortRef::Named("dns".into())),
        };
        assert_eq!(resolve_port_rule(&rule, &dst).to_string(), "UDP 5353");
    }
}
