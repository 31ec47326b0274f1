//! Getting a [`Ruleset`] into the kernel: check, one transaction, deltas afterwards.
//!
//! [`Nft`] is the only OS effect: [`NftLib`] talks to the kernel through libnftables (no
//! process per transaction), [`NftCli`] runs the real `nft` (the fallback where the library
//! is missing; inside a network namespace when asked), [`FakeNft`] records scripts for
//! tests without root.

use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub use crate::library::NftLib;
use crate::{Delta, Ruleset, Size, TABLE};

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("could not run nft: {0}")]
    Spawn(#[from] std::io::Error),
    #[error("nft rejected the ruleset: {0}")]
    Rejected(String),
    #[error("read back differs from what was applied: {0}")]
    Verify(String),
    #[error("nft did not finish within {0:?}; killed")]
    Timeout(Duration),
    #[error("libnftables unavailable: {0}")]
    Unavailable(String),
}

/// How long one `nft` (or tool) run may take before it is killed: a hung nft must never
/// hang the agent. Generous: a cold 10k-pod table takes seconds.
pub const NFT_TIMEOUT: Duration = Duration::from_secs(60);

impl From<weir_netns::process::RunError> for NftError {
    fn from(e: weir_netns::process::RunError) -> Self {
        match e {
            weir_netns::process::RunError::Spawn(e) => NftError::Spawn(e),
            weir_netns::process::RunError::Timeout(t) => NftError::Timeout(t),
        }
    }
}

/// Runs nft scripts. One call = one `nft -f -` transaction (all or nothing).
pub trait Nft {
    /// Applies `script`; with `check_only`, only parses and validates it (`nft -c`).
    fn run(&self, script: &str, check_only: bool) -> Result<(), NftError>;
    /// `nft list table inet weir` (empty when there is no such table).
    fn list(&self) -> Result<String, NftError>;
}

/// The `nft` command, in the caller's network namespace or in a named one (`/run/netns/NAME`).
#[derive(Clone, Debug, Default)]
pub struct NftCli {
    pub netns: Option<String>,
}

impl NftCli {
    /// `program` (nft, conntrack, …) in this enforcer's namespace.
    pub fn tool(&self, program: &str) -> Command {
        weir_netns::netns::command_in(self.netns.as_deref(), program)
    }

    /// [`NftCli::tool`] run to completion, killed after `timeout`.
    pub fn run_tool(
        &self,
        program: &str,
        args: &[&str],
        timeout: Duration,
    ) -> Result<std::process::Output, NftError> {
        let mut cmd = self.tool(program);
        cmd.args(args);
        Ok(weir_netns::process::run_bounded(cmd, None, timeout)?)
    }

    fn command(&self) -> Command {
        self.tool("nft")
    }
}

impl Nft for NftCli {
    fn run(&self, script: &str, check_only: bool) -> Result<(), NftError> {
        let mut cmd = self.command();
        if check_only {
            cmd.arg("-c");
        }
        cmd.args(["-f", "-"]);
        let out = weir_netns::process::run_bounded(cmd, Some(script), NFT_TIMEOUT)?;
        if out.status.success() {
            Ok(())
        } else {
            Err(NftError::Rejected(
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ))
        }
    }

    fn list(&self) -> Result<String, NftError> {
        let out = self.run_tool("nft", &["list", "table", "inet", "weir"], NFT_TIMEOUT)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// What an agent programs through: libnftables where it loads, else the `nft` command.
#[derive(Debug)]
pub enum Kernel {
    Lib(NftLib),
    Cli(NftCli),
}

impl Kernel {
    /// libnftables in `netns`, or the `nft` command and the reason the library could not
    /// be used.
    pub fn open(netns: Option<String>) -> (Kernel, Option<String>) {
        match NftLib::new(netns.clone()) {
            Ok(lib) => (Kernel::Lib(lib), None),
            Err(e) => (Kernel::Cli(NftCli { netns }), Some(e.to_string())),
        }
    }

    /// `libnftables` or `nft`, for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Kernel::Lib(_) => "libnftables",
            Kernel::Cli(_) => "nft",
        }
    }
}

impl Nft for Kernel {
    fn run(&self, script: &str, check_only: bool) -> Result<(), NftError> {
        match self {
            Kernel::Lib(k) => k.run(script, check_only),
            Kernel::Cli(k) => k.run(script, check_only),
        }
    }
    fn list(&self) -> Result<String, NftError> {
        match self {
            Kernel::Lib(k) => k.list(),
            Kernel::Cli(k) => k.list(),
        }
    }
}

/// Records every script; fails the ones a test asks it to; lists what a test sets.
#[derive(Default)]
pub struct FakeNft {
    pub scripts: Mutex<Vec<(String, bool)>>,
    /// Scripts containing this text are rejected.
    pub reject_containing: Option<String>,
    /// What `list` returns.
    pub listing: Mutex<String>,
}

impl Nft for FakeNft {
    fn run(&self, script: &str, check_only: bool) -> Result<(), NftError> {
        self.scripts
            .lock()
            .unwrap()
            .push((script.to_string(), check_only));
        match &self.reject_containing {
            Some(bad) if script.contains(bad.as_str()) => Err(NftError::Rejected(bad.clone())),
            _ => Ok(()),
        }
    }
    fn list(&self) -> Result<String, NftError> {
        Ok(self.listing.lock().unwrap().clone())
    }
}

/// How a ruleset reached the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The whole table replaced in one transaction.
    Full,
    /// Only the differences to what was applied before.
    Delta,
    /// Nothing differed.
    Unchanged,
}

#[derive(Clone, Debug)]
pub struct Applied {
    pub mode: Mode,
    pub size: Size,
    /// Bytes of nft script sent.
    pub script_bytes: usize,
    pub elapsed: Duration,
    /// A delta the kernel refused before the full replace that followed (the table was
    /// probably changed behind weir's back): worth a counter and a log line.
    pub delta_refused: Option<String>,
}

impl std::fmt::Display for Applied {
    /// `Full: 6 sets, 12 elements, 9 chains, 17 rules in 7.1 ms`
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?}: {} sets, {} elements, {} chains, {} rules in {:.1} ms",
            self.mode,
            self.size.sets,
            self.size.elements,
            self.size.chains,
            self.size.rules,
            self.elapsed.as_secs_f64() * 1e3
        )
    }
}

/// Keeps the kernel's `weir` table equal to the last ruleset it was given, remembering
/// what it programmed so later changes go as deltas (no re-listing of the table).
pub struct Enforcer<N: Nft> {
    nft: N,
    current: Option<Ruleset>,
    /// Read the table back after a full replace and compare object names.
    pub verify: bool,
    /// Keep a normalised listing of the table after applies, for [`Enforcer::drift`]: taken
    /// by [`Enforcer::refresh_baseline`] once a burst of applies settles (a listing is the
    /// whole table: never one per event). Until then there is nothing to compare with.
    pub track_drift: bool,
    baseline: Option<String>,
    /// Applied since the baseline was taken.
    baseline_stale: bool,
}

impl<N: Nft> Enforcer<N> {
    pub fn new(nft: N) -> Self {
        Enforcer {
            nft,
            current: None,
            verify: false,
            track_drift: false,
            baseline: None,
            baseline_stale: false,
        }
    }

    /// After a successful apply: the drift baseline no longer describes the table.
    fn baseline_outdated(&mut self) {
        self.baseline = None;
        self.baseline_stale = self.track_drift;
    }

    /// Whether applies happened since the drift baseline was taken.
    pub fn baseline_stale(&self) -> bool {
        self.baseline_stale
    }

    /// Lists the table as it is now as the drift baseline (after applies settle).
    pub fn refresh_baseline(&mut self) -> Result<(), NftError> {
        if let (true, Some(current)) = (self.track_drift, &self.current) {
            let listing = self.nft.list()?;
            verify(current, &listing)?;
            self.baseline = Some(normalise_listing(&listing));
        }
        self.baseline_stale = false;
        Ok(())
    }

    /// Whether the kernel's table still is what weir programmed: `Some(what differs)` when
    /// someone deleted it, flushed it, or changed a rule, set or element in it. Counters
    /// are the only thing allowed to change. `None` also when nothing was applied yet.
    pub fn drift(&self) -> Result<Option<String>, NftError> {
        let (Some(current), Some(baseline)) = (&self.current, &self.baseline) else {
            return Ok(None);
        };
        let listing = self.nft.list()?;
        if listing.trim().is_empty() {
            return Ok(Some(format!("table {TABLE} is missing")));
        }
        let now = normalise_listing(&listing);
        if &now == baseline {
            return Ok(None);
        }
        let changed = now
            .lines()
            .zip(baseline.lines())
            .find(|(a, b)| a != b)
            .map(|(now, was)| format!("{:?} where {:?} was programmed", now.trim(), was.trim()))
            .unwrap_or_else(|| "lines added or removed".into());
        Ok(Some(match verify(current, &listing) {
            Err(NftError::Verify(shape)) => format!("{changed}; objects: {shape}"),
            _ => changed,
        }))
    }

    /// Replaces the whole table with what was last applied (after drift).
    pub fn repair(&mut self) -> Result<Applied, NftError> {
        let Some(rs) = self.current.take() else {
            return Err(NftError::Verify("nothing was applied yet".into()));
        };
        let applied = self.apply(rs.clone());
        if applied.is_err() {
            // Keep knowing what should be there, so the next check tries again.
            self.current = Some(rs);
        }
        applied
    }

    pub fn nft(&self) -> &N {
        &self.nft
    }

    /// What was last applied successfully.
    pub fn current(&self) -> Option<&Ruleset> {
        self.current.as_ref()
    }

    /// Makes the kernel hold `new`. First time (or when a delta is impossible or fails):
    /// `nft -c` check, then the full atomic replace. Otherwise the delta alone. On error the
    /// kernel keeps what it had (each transaction is all or nothing).
    pub fn apply(&mut self, new: Ruleset) -> Result<Applied, NftError> {
        let start = Instant::now();
        let size = new.size();
        let mut delta_refused = None;
        if let Some(old) = &self.current {
            if let Some(delta) = new.delta(old) {
                if delta.is_empty() {
                    return Ok(Applied {
                        mode: Mode::Unchanged,
                        size,
                        script_bytes: 0,
                        elapsed: start.elapsed(),
                        delta_refused: None,
                    });
                }
                match self.nft.run(&delta, false) {
                    Ok(()) => {
                        self.current = Some(new);
                        self.baseline_outdated();
                        return Ok(Applied {
                            mode: Mode::Delta,
                            size,
                            script_bytes: delta.len(),
                            elapsed: start.elapsed(),
                            delta_refused: None,
                        });
                    }
                    // The kernel may have been changed behind our back: rebuild it all.
                    Err(e) => delta_refused = Some(e.to_string()),
                }
            }
        }
        let script = new.render();
        self.nft.run(&script, true)?;
        self.nft.run(&script, false)?;
        if self.verify {
            verify(&new, &self.nft.list()?)?;
        }
        self.current = Some(new);
        self.baseline_outdated();
        Ok(Applied {
            mode: Mode::Full,
            size,
            script_bytes: script.len(),
            elapsed: start.elapsed(),
            delta_refused,
        })
    }

    /// Applies deltas made one after another against what was last applied, as one
    /// transaction, without comparing whole rulesets. On error the kernel keeps the state
    /// before (one transaction) and nothing is remembered as applied, so the caller's
    /// [`Enforcer::apply`] replaces the whole table.
    pub fn apply_deltas(&mut self, deltas: &[Delta]) -> Result<Applied, NftError> {
        let start = Instant::now();
        let Some(mut current) = self.current.take() else {
            return Err(NftError::Verify("nothing was applied yet".into()));
        };
        let mut script = String::new();
        for d in deltas {
            script.push_str(&d.render(&current));
            if !current.apply_delta(d) {
                return Err(NftError::Verify(
                    "a delta does not fit what was applied".into(),
                ));
            }
        }
        let applied = |mode, current: &Ruleset, script_bytes| Applied {
            mode,
            size: current.size(),
            script_bytes,
            elapsed: start.elapsed(),
            delta_refused: None,
        };
        if script.is_empty() {
            let done = applied(Mode::Unchanged, &current, 0);
            self.current = Some(current);
            return Ok(done);
        }
        self.nft.run(&script, false)?;
        let done = applied(Mode::Delta, &current, script.len());
        self.current = Some(current);
        self.baseline_outdated();
        Ok(done)
    }

    /// Removes the table (nothing else is touched). Missing table is not an error.
    pub fn remove(&mut self) -> Result<(), NftError> {
        self.nft
            .run(&format!("table {TABLE}\ndelete table {TABLE}\n"), false)?;
        self.current = None;
        self.baseline = None;
        self.baseline_stale = false;
        Ok(())
    }
}

/// A listing with what legitimately changes (counter values) taken out.
pub fn normalise_listing(listing: &str) -> String {
    let mut out = String::with_capacity(listing.len());
    for line in listing.lines() {
        // Keep the indentation; compare words (a rule may start with `counter`).
        let body = line.trim_start();
        out.push_str(&line[..line.len() - body.len()]);
        let mut words = body.split(' ').peekable();
        let mut first = true;
        while let Some(w) = words.next() {
            if !first {
                out.push(' ');
            }
            first = false;
            out.push_str(w);
            if w == "counter" && words.peek() == Some(&"packets") {
                // `counter packets N bytes M`
                for _ in 0..4 {
                    words.next();
                }
            }
        }
        out.push('\n');
    }
    out
}

/// Checks that a listing of the table declares exactly the ruleset's sets, maps and
/// chains, each chain with as many rules.
pub fn verify(expected: &Ruleset, listing: &str) -> Result<(), NftError> {
    let listed = parse_listing(listing);
    let mut want: Vec<(String, usize)> = expected
        .sets
        .keys()
        .map(|n| (format!("set {n}"), 0))
        .chain(
            expected
                .chains
                .iter()
                .map(|(n, c)| (format!("chain {n}"), c.rules.len())),
        )
        .collect();
    want.sort();
    if listed != want {
        let missing: Vec<_> = want.iter().filter(|w| !listed.contains(w)).collect();
        let extra: Vec<_> = listed.iter().filter(|l| !want.contains(l)).collect();
        return Err(NftError::Verify(format!(
            "missing or different {missing:?}, unexpected {extra:?}"
        )));
    }
    Ok(())
}

/// (`set NAME` | `chain NAME`, rule count) for every object of an `nft list table` output.
fn parse_listing(listing: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    let mut current: Option<(String, usize)> = None;
    for line in listing.lines() {
        let t = line.trim();
        let depth = line.len() - line.trim_start_matches('\t').len();
        if depth == 1 {
            if let Some(done) = current.take() {
                out.push(done);
            }
            let mut words = t.split_whitespace();
            match (words.next(), words.next()) {
                (Some("set" | "map"), Some(name)) => current = Some((format!("set {name}"), 0)),
                (Some("chain"), Some(name)) => current = Some((format!("chain {name}"), 0)),
                _ => {}
            }
        } else if depth == 2 {
            if let Some((kind, n)) = current.as_mut() {
                let is_decl = ["type ", "flags ", "elements ", "comment ", "policy "]
                    .iter()
                    .any(|p| t.starts_with(p));
                if kind.starts_with("chain") && !is_decl && !t.is_empty() {
                    *n += 1;
                }
            }
        }
    }
    if let Some(done) = current {
        out.push(done);
    }
    for (kind, n) in &mut out {
        if kind.starts_with("set") {
            *n = 0;
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Chain, ChainKind, Set};

    const LISTING: &str = "table inet weir {
\tset s4 {
\t\ttype ipv4_addr
\t\tcomment \"sel x\"
\t\telements = { 10.0.0.1 }
\t}

\tmap ingress4 {
\t\ttype ipv4_addr : verdict
\t}

\tchain in/x/p {
\t\tip saddr @s4 tcp dport 6379 counter packets 0 bytes 0 accept comment \"x/p ingress[0]\"
\t}

\tchain ingress {
\t\ttype filter hook forward priority filter; policy accept;
\t\tct state established,related accept
\t\tip daddr vmap @ingress4
\t}
}
";

    fn expected(rules_in_p: usize) -> Ruleset {
        let set = |spec: &str| Set {
            spec: spec.into(),
            comment: None,
            elements: Default::default(),
        };
        let chain = |kind, n| Chain {
            kind,
            header: None,
            rules: vec!["r".into(); n],
            would_drop: Vec::new(),
            why: None,
        };
        Ruleset {
            sets: [
                ("s4".to_string(), set("type ipv4_addr;")),
                ("ingress4".to_string(), set("type ipv4_addr : verdict;")),
            ]
            .into(),
            chains: [
                ("in/x/p".to_string(), chain(ChainKind::Policy, rules_in_p)),
                ("ingress".to_string(), chain(ChainKind::Base, 2)),
            ]
            .into(),
        }
    }

    #[test]
    fn verify_accepts_the_same_objects_and_names_what_differs() {
        verify(&expected(1), LISTING).unwrap();
        let err = verify(&expected(2), LISTING).unwrap_err().to_string();
        assert!(err.contains("in/x/p"), "{err}");
        let mut missing = expected(1);
        missing.chains.insert(
            "ig-1".into(),
            Chain {
                kind: ChainKind::Group,
                header: None,
                rules: vec![],
                would_drop: Vec::new(),
                why: None,
            },
        );
        assert!(verify(&missing, LISTING)
            .unwrap_err()
            .to_string()
            .contains("ig-1"));
    }
}
