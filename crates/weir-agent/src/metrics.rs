//! Prometheus text metrics, kept by hand (a handful of series; no registry needed).

use std::fmt::Write;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const BUCKETS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

#[derive(Default)]
struct State {
    sync_buckets: [u64; 10],
    sync_count: u64,
    sync_sum: f64,
    syncs_ok: u64,
    syncs_failed: u64,
    source_errors: u64,
    invalid_files: usize,
    rules: usize,
    sets: usize,
    elements: usize,
    chains: usize,
    last_sync: f64,
    ready: bool,
}

#[derive(Default)]
pub struct Metrics {
    state: Mutex<State>,
}

impl Metrics {
    pub fn synced(&self, took: Duration, size: weir_nft::Size) {
        let mut s = self.state.lock().expect("metrics");
        let secs = took.as_secs_f64();
        for (b, le) in s.sync_buckets.iter_mut().zip(BUCKETS) {
            if secs <= le {
                *b += 1;
            }
        }
        s.sync_count += 1;
        s.sync_sum += secs;
        s.syncs_ok += 1;
        s.rules = size.rules;
        s.sets = size.sets;
        s.elements = size.elements;
        s.chains = size.chains;
        s.last_sync = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        s.ready = true;
    }

    pub fn sync_failed(&self) {
        self.state.lock().expect("metrics").syncs_failed += 1;
    }

    pub fn source(&self, invalid_files: usize) {
        let mut s = self.state.lock().expect("metrics");
        if invalid_files > 0 {
            s.source_errors += 1;
        }
        s.invalid_files = invalid_files;
    }

    pub fn ready(&self) -> bool {
        self.state.lock().expect("metrics").ready
    }

    /// The exposition text; `denied` are (labels, packets) of weir's drop rules.
    pub fn render(&self, denied: &[(String, u64)]) -> String {
        let s = self.state.lock().expect("metrics");
        let mut o = String::new();
        let _ = writeln!(o, "# HELP weir_sync_duration_seconds Time from a change to the kernel holding it (load, compile, apply).\n# TYPE weir_sync_duration_seconds histogram");
        for (b, le) in s.sync_buckets.iter().zip(BUCKETS) {
            let _ = writeln!(o, "weir_sync_duration_seconds_bucket{{le=\"{le}\"}} {b}");
        }
        let _ = writeln!(o, "weir_sync_duration_seconds_bucket{{le=\"+Inf\"}} {}\nweir_sync_duration_seconds_sum {}\nweir_sync_duration_seconds_count {}", s.sync_count, s.sync_sum, s.sync_count);
        let _ = writeln!(o, "# TYPE weir_syncs_total counter\nweir_syncs_total{{result=\"ok\"}} {}\nweir_syncs_total{{result=\"error\"}} {}", s.syncs_ok, s.syncs_failed);
        let _ = writeln!(o, "# HELP weir_source_errors_total Reloads that found invalid manifests (their last good version was kept).\n# TYPE weir_source_errors_total counter\nweir_source_errors_total {}", s.source_errors);
        let _ = writeln!(
            o,
            "# TYPE weir_invalid_files gauge\nweir_invalid_files {}",
            s.invalid_files
        );
        for (name, v) in [
            ("rules", s.rules),
            ("sets", s.sets),
            ("elements", s.elements),
            ("chains", s.chains),
        ] {
            let _ = writeln!(o, "# TYPE weir_{name} gauge\nweir_{name} {v}");
        }
        let _ = writeln!(
            o,
            "# TYPE weir_last_sync_timestamp_seconds gauge\nweir_last_sync_timestamp_seconds {}",
            s.last_sync
        );
        let _ = writeln!(o, "# HELP weir_denied_packets_total Packets dropped by weir, by what isolated the endpoint.\n# TYPE weir_denied_packets_total counter");
        for (labels, packets) in denied {
            let _ = writeln!(o, "weir_denied_packets_total{{{labels}}} {packets}");
        }
        o
    }
}

/// (labels, packets) for every drop rule with a counter in a `nft -j list table inet weir`.
pub fn denied_from_listing(json: &str) -> Vec<(String, u64)> {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in v["nftables"].as_array().into_iter().flatten() {
        let rule = &item["rule"];
        let Some(expr) = rule["expr"].as_array() else {
            continue;
        };
        let drops = expr.iter().any(|e| e.get("drop").is_some());
        let packets = expr.iter().find_map(|e| e["counter"]["packets"].as_u64());
        if let (true, Some(p)) = (drops, packets) {
            let reason = rule["comment"].as_str().unwrap_or("").replace('"', "'");
            out.push((
                format!(
                    "chain=\"{}\",reason=\"{reason}\"",
                    rule["chain"].as_str().unwrap_or("")
                ),
                p,
            ));
        }
    }
    out
}
