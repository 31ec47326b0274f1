//! One log line per repeating error and quiet period, for sources that keep failing.

/// Logs a repeating error at most once per [`QUIET`], with how many were held back: an
/// unreachable API server must not flood the logs.
pub struct Throttle {
    last: Option<std::time::Instant>,
    held: u64,
}

/// The least time between two log lines of one repeating error.
pub const QUIET: std::time::Duration = std::time::Duration::from_secs(30);

impl Throttle {
    pub const fn new() -> Self {
        Throttle {
            last: None,
            held: 0,
        }
    }

    /// `Some(n)`: log now, `n` earlier ones were held back; `None`: stay quiet.
    pub fn admit(&mut self) -> Option<u64> {
        let now = std::time::Instant::now();
        if self.last.is_some_and(|t| now.duration_since(t) < QUIET) {
            self.held += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held))
    }

    pub fn reset(&mut self) {
        self.last = None;
        self.held = 0;
    }
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::new()
    }
}
