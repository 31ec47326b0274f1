//! `--focus`, `--peer`, `--direction`, `--port`: which connections a large answer shows.

use weir_engine::{Engine, PortSet};
use weir_model::{Direction, PortKey};

/// One side of a connection: an endpoint (index) or outside addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Member {
    Endpoint(usize),
    Outside,
}

/// Endpoints named on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selection {
    /// `namespace/name`.
    Endpoint(String),
    /// `namespace/` or `namespace/*`: every endpoint of the namespace.
    Namespace(String),
    /// `key=value,key,…` over pod labels (a key alone: the label is set), any namespace;
    /// with at least one `=` (else `a/b` reads as namespace/name).
    Labels(Vec<(String, Option<String>)>),
    /// `outside`: addresses outside the cluster's endpoints.
    Outside,
}

impl Selection {
    /// `ns/name`, `ns/`, `ns/*`, `k=v,k2`, or `outside`.
    pub fn parse(text: &str) -> Result<Selection, String> {
        let bad = |why: &str| {
            Err(format!(
                "{text:?}: {why} (expected namespace/name, namespace/*, a label selector k=v,k2=v2, or outside)"
            ))
        };
        if text == "outside" {
            return Ok(Selection::Outside);
        }
        // A label key may hold a `/` (`app.kubernetes.io/name=api`): with an `=`, labels.
        if let Some((ns, name)) = text.split_once('/').filter(|_| !text.contains('=')) {
            if ns.is_empty() || name.contains('/') {
                return bad("not a namespace/name");
            }
            return Ok(match name {
                "" | "*" => Selection::Namespace(ns.to_string()),
                _ => Selection::Endpoint(text.to_string()),
            });
        }
        let mut labels = Vec::new();
        for term in text.split(',') {
            let (key, value) = match term.split_once('=') {
                Some((k, v)) => (k, Some(v.strip_prefix('=').unwrap_or(v).to_string())),
                None => (term, None),
            };
            if key.is_empty() || key.contains(['!', ' ', '(']) {
                return bad("only equality terms (k=v) and keys");
            }
            labels.push((key.to_string(), value));
        }
        Ok(Selection::Labels(labels))
    }

    pub fn matches(&self, engine: &Engine, m: Member) -> bool {
        let Member::Endpoint(i) = m else {
            return *self == Selection::Outside;
        };
        let ep = &engine.cluster().endpoints[i];
        match self {
            Selection::Endpoint(id) => ep.id() == *id,
            Selection::Namespace(ns) => ep.namespace == *ns,
            Selection::Labels(terms) => terms.iter().all(|(k, v)| match v {
                Some(v) => ep.labels.get(k).is_some_and(|have| have == v),
                None => ep.labels.contains_key(k),
            }),
            Selection::Outside => false,
        }
    }
}

/// Which connections to show. Without `focus`, all; with it, those with a focused side —
/// the destination for ingress, the source for egress, either without a direction — and,
/// with `peer`, a peer on the other side; on `ports` only, when given.
#[derive(Clone, Debug, Default)]
pub struct Focus {
    pub focus: Option<Selection>,
    pub peer: Option<Selection>,
    pub direction: Option<Direction>,
    pub ports: Option<PortSet>,
}

impl Focus {
    /// Whether anything is filtered.
    pub fn is_all(&self) -> bool {
        self.focus.is_none() && self.ports.is_none()
    }

    /// `PROTOCOL/PORT` or `PROTOCOL/LOW-HIGH` as a port set.
    pub fn parse_ports(text: &str) -> Result<PortSet, String> {
        let (head, high) = match text.rsplit_once('-') {
            Some((h, hi)) => (h, Some(hi)),
            None => (text, None),
        };
        let key: PortKey = head.parse()?;
        let hi = match high {
            Some(h) => h
                .parse::<u16>()
                .map_err(|_| format!("{text:?}: the range's end is not a port"))?,
            None => key.port,
        };
        if hi < key.port {
            return Err(format!("{text:?}: the range ends before it starts"));
        }
        Ok(PortSet::range(key.protocol, key.port, hi))
    }

    /// Whether a side is in `sel` (everything without one), the side known by what it
    /// matches.
    fn side(sel: &Option<Selection>, matches: &dyn Fn(&Selection) -> bool) -> bool {
        sel.as_ref().is_none_or(matches)
    }

    /// Whether a connection from `a` to `b` is shown (ports aside).
    pub fn keeps(&self, engine: &Engine, a: Member, b: Member) -> bool {
        self.keeps_by(&|s| s.matches(engine, a), &|s| s.matches(engine, b))
    }

    /// [`Focus::keeps`] for sides known only by what they match (`a(selection)`): a diff's
    /// endpoints, in one version or the other.
    pub fn keeps_by(&self, a: &dyn Fn(&Selection) -> bool, b: &dyn Fn(&Selection) -> bool) -> bool {
        let (fa, fb) = (Self::side(&self.focus, a), Self::side(&self.focus, b));
        let (pa, pb) = (Self::side(&self.peer, a), Self::side(&self.peer, b));
        match self.direction {
            Some(Direction::Egress) => fa && pb,
            Some(Direction::Ingress) => pa && fb,
            None => (fa && pb) || (pa && fb),
        }
    }

    /// The ports of a connection that are shown (all of them without `ports`).
    pub fn ports(&self, allowed: &PortSet) -> PortSet {
        match &self.ports {
            Some(only) => allowed.intersect(only),
            None => allowed.clone(),
        }
    }

    /// Rectangles `sources × destinations` of shown connections, split out of one rectangle
    /// `s × d` (both as members): disjoint, exactly the shown pairs.
    pub fn split<'m, T: Clone>(
        &self,
        engine: &Engine,
        s: &'m [(T, Member)],
        d: &'m [(T, Member)],
    ) -> Vec<(Vec<T>, Vec<T>)> {
        let pick = |list: &'m [(T, Member)], keep: &dyn Fn(Member) -> bool| -> Vec<T> {
            list.iter()
                .filter(|(_, m)| keep(*m))
                .map(|(t, _)| t.clone())
                .collect()
        };
        let f = |m| Self::side(&self.focus, &|s| s.matches(engine, m));
        let p = |m| Self::side(&self.peer, &|s| s.matches(engine, m));
        let parts = match self.direction {
            Some(Direction::Egress) => vec![(pick(s, &f), pick(d, &p))],
            Some(Direction::Ingress) => vec![(pick(s, &p), pick(d, &f))],
            // Focused sources to peers, then peer sources that are not focused to focused
            // destinations: every shown pair once.
            None => vec![
                (pick(s, &f), pick(d, &p)),
                (pick(s, &|m| p(m) && !f(m)), pick(d, &f)),
            ],
        };
        parts
            .into_iter()
            .filter(|(a, b)| !a.is_empty() && !b.is_empty())
            .collect()
    }
}
