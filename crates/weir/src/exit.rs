//! Exit codes (in `--help` and the README) and how a command fails.

/// Success (for `explain`: the connection is allowed).
pub const OK: u8 = 0;
/// A failure while running (IO, internal error).
pub const FAILURE: u8 = 1;
/// Invalid input: bad manifests, unreadable paths, bad arguments; nothing was analysed.
pub const INVALID: u8 = 2;
/// `explain`: the connection is denied.
pub const DENIED: u8 = 3;
/// `lint --deny`: findings at that severity or above.
pub const FINDINGS: u8 = 3;
/// `diff`: connectivity changed.
pub const CHANGED: u8 = 3;
/// `test`: an intent failed.
pub const INTENT_FAILED: u8 = 3;
/// `revision --agent`: an agent does not enforce the cluster's policy objects.
pub const BEHIND: u8 = 3;
/// `probe --compare`: the dataplane disagreed with the engine (or a probe failed).
pub const DISAGREE: u8 = 4;

pub const HELP: &str = "Exit codes:
  0  success (explain: the connection is allowed)
  1  failure while running (IO, internal error)
  2  invalid input: manifests that fail validation (file:line:col, field, message),
     paths that cannot be read, bad arguments
  3  the answer is no: explain: denied; lint --deny: findings at that level; diff:
     connectivity changed; test: an intent failed; revision: an agent does not enforce
     the cluster's policy objects
  4  probe --compare: observed traffic disagrees with the engine, or a probe failed";

/// Why a command did not succeed: the user's input (exit 2) or anything else (exit 1).
pub enum Failure {
    Invalid(String),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Other(e)
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Other(e.into())
    }
}
