//! Verdict grids: for every ordered endpoint pair (self included) and probe, allowed or
//! denied — whoever decided (the engine here, or real probes in the lab) — and where two
//! grids disagree. The renderers print them; the lab fills them from real traffic.

use weir_model::{PortKey, Protocol};

use crate::{Engine, PortSet, Side};

/// Verdicts for every ordered endpoint pair (self included) and probe. `None`: no verdict
/// could be observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdicts {
    pub endpoints: Vec<String>,
    pub probes: Vec<PortKey>,
    /// Row-major: `[(src * n + dst) * probes + probe]`.
    pub cells: Vec<Option<bool>>,
}

/// One cell where two verdict grids differ.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disagreement {
    pub src: String,
    pub dst: String,
    pub probe: PortKey,
    pub mine: Option<bool>,
    pub theirs: Option<bool>,
}

impl Engine<'_> {
    /// The engine's verdicts on `probes`, for every ordered pair of endpoints.
    pub fn verdicts(&self, probes: &[PortKey]) -> Verdicts {
        let eps = &self.cluster().endpoints;
        let mut cells = Vec::with_capacity(eps.len() * eps.len() * probes.len());
        for a in 0..eps.len() {
            for b in 0..eps.len() {
                let allowed = self.allowed(Side::Endpoint(a), Side::Endpoint(b));
                cells.extend(
                    probes
                        .iter()
                        .map(|p| Some(allowed.contains(p.protocol, p.port))),
                );
            }
        }
        Verdicts {
            endpoints: eps.iter().map(|e| e.id()).collect(),
            probes: probes.to_vec(),
            cells,
        }
    }
}

impl Verdicts {
    pub fn get(&self, src: usize, dst: usize, probe: usize) -> Option<bool> {
        self.cells[(src * self.endpoints.len() + dst) * self.probes.len() + probe]
    }

    /// Every cell where the two grids differ.
    pub fn disagreements(&self, other: &Verdicts) -> Vec<Disagreement> {
        let n = self.endpoints.len();
        let mut out = Vec::new();
        for a in 0..n {
            for b in 0..n {
                for (k, p) in self.probes.iter().enumerate() {
                    let (x, y) = (self.get(a, b, k), other.get(a, b, k));
                    if x != y {
                        out.push(Disagreement {
                            src: self.endpoints[a].clone(),
                            dst: self.endpoints[b].clone(),
                            probe: *p,
                            mine: x,
                            theirs: y,
                        });
                    }
                }
            }
        }
        out
    }
}

/// Observed traffic as a connectivity view for intents: only the probed ports are known.
impl crate::intents::Connectivity for Verdicts {
    fn allows(&self, src: usize, dst: usize, protocol: Protocol, port: u16) -> Option<bool> {
        let k = self
            .probes
            .iter()
            .position(|p| p.protocol == protocol && p.port == port)?;
        self.get(src, dst, k)
    }
    fn beyond(&self, src: usize, dst: usize, listed: &PortSet) -> Option<String> {
        let extra: Vec<String> = self
            .probes
            .iter()
            .enumerate()
            .filter(|(k, p)| {
                !listed.contains(p.protocol, p.port) && self.get(src, dst, *k) == Some(true)
            })
            .map(|(_, p)| p.to_string())
            .collect();
        (!extra.is_empty()).then(|| format!("allows {} (probed)", extra.join(",")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_disagree_cell_by_cell() {
        let probes = vec![PortKey::new(Protocol::Tcp, 80)];
        let a = Verdicts {
            endpoints: vec!["x/a".into(), "x/b".into()],
            probes: probes.clone(),
            cells: vec![Some(true), Some(false), Some(true), Some(true)],
        };
        let mut b = a.clone();
        b.cells[1] = None;
        let d = a.disagreements(&b);
        assert_eq!(d.len(), 1);
        assert_eq!((d[0].src.as_str(), d[0].dst.as_str()), ("x/a", "x/b"));
        assert_eq!((d[0].mine, d[0].theirs), (Some(false), None));
        assert!(a.disagreements(&a).is_empty());
    }
}
