//! weir's dataplane: the policy of a node as one nftables table (`inet weir`).
//!
//! [`compile`] turns the engine's view of a cluster into a [`Ruleset`], a plain model of
//! sets, maps and chains; [`Ruleset::render`] writes it as one `nft -f` transaction that
//! replaces the whole table atomically, and [`Ruleset::delta`] as the smaller transaction
//! that turns one ruleset into another (set elements, single chains). Applying is in
//! [`apply`], behind the [`apply::Nft`] trait so the logic is tested without root.
//!
//! Shape of the table (the doctrine of Calico's nftables mode and kube-proxy's nft mode):
//! - two base chains on the forward hook: `egress` (priority -1) then `ingress` (0); each
//!   accepts `established,related` first and drops `invalid`. An accept in `egress` lets
//!   the packet on to `ingress`; a drop anywhere is final. `egress-to-node` (input hook)
//!   holds the same rules for packets from local pods to the node's own addresses, which
//!   are delivered rather than forwarded.
//! - dispatch by address through verdict maps (`egress4`, `ingress6`, …): O(1) per packet,
//!   however many pods and policies. Endpoints that no policy isolates have no element and
//!   are not touched.
//! - a map element jumps to a *group* chain shared by every endpoint isolated by the same
//!   policies; it jumps to one chain per policy and ends in drop. Rules therefore grow with
//!   endpoint groups + policy rules, never endpoints × policies.
//! - selector peers are named address sets shared between rules (one per distinct
//!   selector), ipBlocks are interval sets (except already subtracted), named ports are
//!   (address . protocol . port) sets. No anonymous sets in rules: they cost super-linearly.

pub mod apply;
mod compile;
mod incremental;
mod library;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

pub use compile::{compile, compile_with, CompileOptions, PodInterfaces, Scope};
pub use incremental::{Incremental, NeedsFull};

/// The table weir owns; nothing outside it is ever touched.
pub const TABLE: &str = "inet weir";

/// The base chain on the input hook: local pods' egress to this node's own addresses.
pub const EGRESS_TO_NODE: &str = "egress-to-node";

/// A named set or verdict map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Set {
    /// The declaration body before the elements, e.g. `type ipv4_addr; flags interval;`.
    pub spec: String,
    pub comment: Option<String>,
    /// Rendered elements (`10.0.0.1`, `10.0.0.0-10.0.0.255`, `10.0.0.1 . 6 . 80`,
    /// `10.0.0.1 : jump ig-…`); ordered so rendering and deltas are deterministic.
    pub elements: BTreeSet<String>,
}

impl Set {
    /// `map` for verdict maps, `set` otherwise.
    fn keyword(&self) -> &'static str {
        if self.spec.contains(": verdict") {
            "map"
        } else {
            "set"
        }
    }

    /// `set NAME { SPEC comment "…";` — the declaration up to where elements would go.
    fn declare(&self, out: &mut String, name: &str) {
        let _ = write!(out, "{} {name} {{ {}", self.keyword(), self.spec);
        if let Some(c) = &self.comment {
            let _ = write!(out, " comment {};", quote(c));
        }
    }
}

/// Where a chain is rendered: chains that are jumped to come before their callers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ChainKind {
    Policy,
    Group,
    Base,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chain {
    pub kind: ChainKind,
    /// `type filter hook forward priority 0; policy accept;` for base chains.
    pub header: Option<String>,
    pub rules: Vec<String>,
    /// The audited policies whose would-drops this chain's closing accept counts (an audit
    /// chain, or a Deny's chain under `--audit`); empty otherwise. Not in the table: what
    /// the agent names per-policy counters by.
    pub would_drop: Vec<String>,
    /// Why its closing rule drops (or would drop), in full — the rule's comment is cut to
    /// fit nft — for the drop log; `None` for chains that do not end so.
    pub why: Option<String>,
}

/// What one node's table holds. Two rulesets compare equal when their tables would list
/// the same (counters aside).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ruleset {
    pub sets: BTreeMap<String, Set>,
    pub chains: BTreeMap<String, Chain>,
}

/// Sizes, for logs, metrics and the benchmark.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Size {
    pub sets: usize,
    pub elements: usize,
    pub chains: usize,
    pub rules: usize,
}

/// Set elements to delete and to add: a delta of elements only, applied deletions first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ElementChanges {
    pub removed: BTreeMap<String, BTreeSet<String>>,
    pub added: BTreeMap<String, BTreeSet<String>>,
}

impl ElementChanges {
    pub fn is_empty(&self) -> bool {
        self.removed.values().all(BTreeSet::is_empty) && self.added.values().all(BTreeSet::is_empty)
    }

    /// Another batch after this one (deletions still go first when applied together).
    pub fn extend(&mut self, other: ElementChanges) {
        for (set, els) in other.removed {
            self.removed.entry(set).or_default().extend(els);
        }
        for (set, els) in other.added {
            self.added.entry(set).or_default().extend(els);
        }
    }

    /// Records what turns `was` into `now` in set `name`.
    pub fn between(&mut self, name: &str, was: &BTreeSet<String>, now: &BTreeSet<String>) {
        let gone: BTreeSet<String> = was.difference(now).cloned().collect();
        if !gone.is_empty() {
            self.removed.insert(name.to_string(), gone);
        }
        let new: BTreeSet<String> = now.difference(was).cloned().collect();
        if !new.is_empty() {
            self.added.insert(name.to_string(), new);
        }
    }

    /// The nft transaction: `delete element …` for each set, then `add element …`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (verb, sets) in [("delete", &self.removed), ("add", &self.added)] {
            for (name, els) in sets.iter().filter(|(_, e)| !e.is_empty()) {
                let _ = write!(out, "{verb} element {TABLE} {name} {{");
                write_elements(&mut out, els);
                out.push('\n');
            }
        }
        out
    }
}

fn write_elements(out: &mut String, elements: impl IntoIterator<Item = impl AsRef<str>>) {
    let mut first = true;
    for e in elements {
        out.push_str(if first { " " } else { ", " });
        out.push_str(e.as_ref());
        first = false;
    }
    out.push_str(" }");
}

impl Ruleset {
    pub fn size(&self) -> Size {
        Size {
            sets: self.sets.len(),
            elements: self.sets.values().map(|s| s.elements.len()).sum(),
            chains: self.chains.len(),
            rules: self.chains.values().map(|c| c.rules.len()).sum(),
        }
    }

    fn chains_in_order(&self) -> Vec<(&String, &Chain)> {
        let mut chains: Vec<_> = self.chains.iter().collect();
        chains.sort_by_key(|(name, c)| (c.kind, name.as_str()));
        chains
    }

    /// The whole table as one transaction that replaces any previous `weir` table:
    /// `table` (so the delete cannot fail), `delete table`, then the new table. The
    /// kernel swaps it in at commit: there is never a moment without rules.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(256 + self.size().elements * 24);
        let _ = writeln!(out, "table {TABLE}\ndelete table {TABLE}\ntable {TABLE} {{");
        for (name, set) in &self.sets {
            out.push_str("  ");
            set.declare(&mut out, name);
            if !set.elements.is_empty() {
                out.push_str(" elements = {");
                write_elements(&mut out, &set.elements);
                out.push(';');
            }
            out.push_str(" }\n");
        }
        for (name, chain) in self.chains_in_order() {
            let _ = writeln!(out, "  chain {name} {{");
            if let Some(h) = &chain.header {
                let _ = writeln!(out, "    {h}");
            }
            for r in &chain.rules {
                let _ = writeln!(out, "    {r}");
            }
            out.push_str("  }\n");
        }
        out.push_str("}\n");
        out
    }

    /// The transaction that turns `old` (what the kernel holds) into `self`, touching only
    /// what differs: set elements added and deleted, changed chains flushed and refilled,
    /// new objects added, vanished ones deleted after nothing refers to them. `None` when
    /// a declaration itself changed (a set's type, a base chain's hook): then only a full
    /// replace is right. An empty string means nothing to do.
    /// Applies element changes made for this ruleset (deletions first). `false`, and
    /// nothing changed, when a set they name does not exist.
    pub fn apply_elements(&mut self, changes: &ElementChanges) -> bool {
        if changes
            .removed
            .keys()
            .chain(changes.added.keys())
            .any(|n| !self.sets.contains_key(n))
        {
            return false;
        }
        for (name, els) in &changes.removed {
            let set = self.sets.get_mut(name).expect("checked");
            for e in els {
                set.elements.remove(e);
            }
        }
        for (name, els) in &changes.added {
            let set = self.sets.get_mut(name).expect("checked");
            set.elements.extend(els.iter().cloned());
        }
        true
    }

    /// The transaction that turns `old` (what the kernel holds) into `self`, touching only
    /// what differs ([`Ruleset::diff`]). `None` when a declaration itself changed (a set's
    /// type, a base chain's hook): then only a full replace is right. An empty string means
    /// nothing to do.
    pub fn delta(&self, old: &Ruleset) -> Option<String> {
        Some(self.diff(old)?.render(old))
    }

    /// What differs from `old`, as a [`Delta`] to it; `None` when a declaration changed.
    pub fn diff(&self, old: &Ruleset) -> Option<Delta> {
        let mut d = Delta::default();
        for (name, set) in &self.sets {
            let before = old.sets.get(name);
            if before.is_some_and(|o| o.spec != set.spec || o.comment != set.comment) {
                return None;
            }
            d.set(name, set, before);
        }
        for (name, chain) in &self.chains {
            match old.chains.get(name) {
                Some(o) if o.header != chain.header || o.kind != chain.kind => return None,
                Some(o) if o.rules == chain.rules => {}
                None if chain.header.is_some() => return None,
                _ => {
                    d.chains.insert(name.clone(), chain.clone());
                }
            }
        }
        d.removed_chains = gone(&old.chains, &self.chains);
        d.removed_sets = gone(&old.sets, &self.sets);
        Some(d)
    }

    /// Applies a delta made against this ruleset. `false`, and nothing changed, when it
    /// does not fit (elements of a set that neither exists nor is created, a chain
    /// replaced with a different kind or header, or removing what does not exist).
    pub fn apply_delta(&mut self, d: &Delta) -> bool {
        let set_known = |n: &String| {
            (self.sets.contains_key(n) || d.new_sets.contains_key(n)) && !d.removed_sets.contains(n)
        };
        let fits = d
            .elements
            .removed
            .keys()
            .chain(d.elements.added.keys())
            .all(set_known)
            && d.new_sets.keys().all(|n| !self.sets.contains_key(n))
            && d.removed_sets.iter().all(|n| self.sets.contains_key(n))
            && d.removed_chains
                .iter()
                .all(|n| self.chains.contains_key(n) && !d.chains.contains_key(n))
            && d.chains.iter().all(|(n, c)| match self.chains.get(n) {
                Some(o) => o.kind == c.kind && o.header == c.header,
                None => c.header.is_none(),
            });
        if !fits {
            return false;
        }
        self.sets.extend(d.new_sets.clone());
        self.apply_elements(&d.elements);
        self.chains.extend(d.chains.clone());
        for n in &d.removed_chains {
            self.chains.remove(n);
        }
        for n in &d.removed_sets {
            self.sets.remove(n);
        }
        true
    }
}

/// The names `old` has and `new` has not.
fn gone<A, B>(old: &BTreeMap<String, A>, new: &BTreeMap<String, B>) -> BTreeSet<String> {
    old.keys()
        .filter(|n| !new.contains_key(*n))
        .cloned()
        .collect()
}

/// A change to a ruleset: what [`Ruleset::diff`] finds, or what [`Incremental`] computes
/// directly from an event without comparing whole rulesets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delta {
    /// Sets to create, declared empty: their elements are in `elements.added`.
    pub new_sets: BTreeMap<String, Set>,
    pub elements: ElementChanges,
    /// Chains (new or existing) and the rules they hold after the change.
    pub chains: BTreeMap<String, Chain>,
    pub removed_chains: BTreeSet<String>,
    pub removed_sets: BTreeSet<String>,
}

impl From<ElementChanges> for Delta {
    fn from(elements: ElementChanges) -> Delta {
        Delta {
            elements,
            ..Delta::default()
        }
    }
}

impl Delta {
    /// Set `name` is `set` after this delta; it was `old` (`None`: the delta makes it).
    pub fn set(&mut self, name: &str, set: &Set, old: Option<&Set>) {
        let empty = BTreeSet::new();
        let was = match old {
            Some(o) => &o.elements,
            None => {
                self.new_sets.insert(
                    name.to_string(),
                    Set {
                        elements: BTreeSet::new(),
                        ..set.clone()
                    },
                );
                &empty
            }
        };
        self.elements.between(name, was, &set.elements);
    }

    pub fn is_empty(&self) -> bool {
        self.new_sets.is_empty()
            && self.elements.is_empty()
            && self.chains.is_empty()
            && self.removed_chains.is_empty()
            && self.removed_sets.is_empty()
    }

    /// The nft transaction applying this delta to `old` (what the kernel holds): new sets
    /// and chains first, so later elements and rules can refer to them; elements, deletions
    /// first (a map element may change its verdict); changed chains flushed and refilled;
    /// chains going away emptied first, so nothing jumps to them or uses their sets when
    /// they and then the sets are deleted.
    pub fn render(&self, old: &Ruleset) -> String {
        let mut out = String::new();
        for (name, set) in &self.new_sets {
            out.push_str("add ");
            set.declare(&mut out, &format!("{TABLE} {name}"));
            out.push_str(" }\n");
        }
        for name in self.chains.keys().filter(|n| !old.chains.contains_key(*n)) {
            let _ = writeln!(out, "add chain {TABLE} {name}");
        }
        out.push_str(&self.elements.render());
        let mut chains: Vec<(&String, &Chain)> = self.chains.iter().collect();
        chains.sort_by_key(|(name, c)| (c.kind, name.as_str()));
        for (name, chain) in chains {
            if old.chains.get(name).is_some_and(|o| !o.rules.is_empty()) {
                let _ = writeln!(out, "flush chain {TABLE} {name}");
            }
            for r in &chain.rules {
                let _ = writeln!(out, "add rule {TABLE} {name} {r}");
            }
        }
        // Rules first (nothing refers to a set once the chains are flushed), then sets —
        // a verdict map's elements jump to chains, and a chain that is jumped to cannot
        // be deleted — then chains.
        for name in &self.removed_chains {
            let _ = writeln!(out, "flush chain {TABLE} {name}");
        }
        for name in &self.removed_sets {
            let keyword = old.sets.get(name).map_or("set", Set::keyword);
            let _ = writeln!(out, "delete {keyword} {TABLE} {name}");
        }
        for name in &self.removed_chains {
            let _ = writeln!(out, "delete chain {TABLE} {name}");
        }
        out
    }
}

/// An nft string literal: the only place user text (policy names, label keys and values)
/// reaches nft, so it is made safe whatever it holds. nft strings have no escape syntax,
/// so every character but printable ASCII other than `"` and `\` is replaced (`'` for
/// quotes, `?` for the rest: control characters, newlines, non-ASCII); nft caps comments
/// at 128 bytes, so long text is cut.
pub(crate) fn quote(s: &str) -> String {
    let mut clean: String = s
        .chars()
        .map(|c| match c {
            '"' | '\\' => '\'',
            ' '..='~' => c,
            _ => '?',
        })
        .collect();
    if clean.len() > 120 {
        clean = format!("{}...", weir_model::prefix(&clean, 117));
    }
    format!("\"{clean}\"")
}
