//! Prometheus text metrics, kept by hand (a handful of series; no registry needed), and the
//! agent's health: what `/readyz` says and why.

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
    /// At least one sync reached the kernel.
    synced_once: bool,
    /// The last sync attempt failed (why).
    sync_error: Option<String>,
    /// What is wrong with the source now (unavailable, API unreachable, blocked).
    source_trouble: Option<String>,
    /// The drop log: `None` when disabled, else whether its NFLOG socket is bound.
    drop_log: Option<Result<(), String>>,
    drift_repairs: u64,
    deltas_refused: u64,
    drift_checks_failed: u64,
    /// The source's revision at the last successful sync (`/revision`).
    revision: Option<String>,
}

/// The states of the source, for `weir_source_state`.
const SOURCE_STATES: [&str; 3] = ["waiting", "ok", "error"];

#[derive(Default)]
pub struct Metrics {
    state: Mutex<State>,
}

impl Metrics {
    /// A sync reached the kernel; `revision` is the source's at its read.
    pub fn synced(&self, took: Duration, size: weir_nft::Size, revision: Option<String>) {
        let mut s = self.state.lock().expect("metrics");
        s.revision = revision;
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
        s.synced_once = true;
        s.sync_error = None;
    }

    pub fn sync_failed(&self, why: &str) {
        let mut s = self.state.lock().expect("metrics");
        s.syncs_failed += 1;
        s.sync_error = Some(why.to_string());
    }

    pub fn source(&self, invalid_files: usize) {
        let mut s = self.state.lock().expect("metrics");
        if invalid_files > 0 {
            s.source_errors += 1;
        }
        s.invalid_files = invalid_files;
    }

    /// What is wrong with the source now (`None`: nothing).
    pub fn source_trouble(&self, trouble: Option<String>) {
        self.state.lock().expect("metrics").source_trouble = trouble;
    }

    pub fn drop_log(&self, state: Option<Result<(), String>>) {
        self.state.lock().expect("metrics").drop_log = state;
    }

    pub fn drift_repaired(&self) {
        self.state.lock().expect("metrics").drift_repairs += 1;
    }

    pub fn delta_refused(&self) {
        self.state.lock().expect("metrics").deltas_refused += 1;
    }

    pub fn drift_check_failed(&self) {
        self.state.lock().expect("metrics").drift_checks_failed += 1;
    }

    /// The source's revision the kernel holds (`None`: no sync yet, or a source without).
    pub fn revision(&self) -> Option<String> {
        self.state.lock().expect("metrics").revision.clone()
    }

    /// `Ok` when the node enforces the source's current state; else every reason it may
    /// not (the kernel keeps the last good table meanwhile).
    pub fn readiness(&self) -> Result<(), Vec<String>> {
        let why = why_not_ready(&self.state.lock().expect("metrics"));
        if why.is_empty() {
            Ok(())
        } else {
            Err(why)
        }
    }

    /// The exposition text; `denied` are (labels, packets) of weir's drop rules,
    /// `would_drop` (audited policy, packets) of its audit chains.
    pub fn render(&self, denied: &[(String, u64)], would_drop: &[(String, u64)]) -> String {
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
        let state = if s.source_trouble.is_some() || s.sync_error.is_some() {
            "error"
        } else if s.synced_once {
            "ok"
        } else {
            "waiting"
        };
        let _ = writeln!(o, "# HELP weir_source_state The source's state (1 for the current one).\n# TYPE weir_source_state gauge");
        for st in SOURCE_STATES {
            let _ = writeln!(
                o,
                "weir_source_state{{state=\"{st}\"}} {}",
                u8::from(st == state)
            );
        }
        let _ = writeln!(o, "# HELP weir_ready Whether /readyz answers 200.\n# TYPE weir_ready gauge\nweir_ready {}", u8::from(why_not_ready(&s).is_empty()));
        if let Some(log) = &s.drop_log {
            let _ = writeln!(o, "# HELP weir_drop_log_up Whether the NFLOG drop log is bound.\n# TYPE weir_drop_log_up gauge\nweir_drop_log_up {}", u8::from(log.is_ok()));
        }
        let _ = writeln!(o, "# HELP weir_drift_repairs_total Times the kernel's table differed from what weir programmed and was replaced.\n# TYPE weir_drift_repairs_total counter\nweir_drift_repairs_total {}", s.drift_repairs);
        let _ = writeln!(o, "# HELP weir_drift_checks_failed_total Drift checks that could not read the table.\n# TYPE weir_drift_checks_failed_total counter\nweir_drift_checks_failed_total {}", s.drift_checks_failed);
        let _ = writeln!(o, "# HELP weir_deltas_refused_total Deltas the kernel refused (a full replace followed).\n# TYPE weir_deltas_refused_total counter\nweir_deltas_refused_total {}", s.deltas_refused);
        let _ = writeln!(o, "# HELP weir_denied_packets_total Packets dropped by weir, by what isolated the endpoint.\n# TYPE weir_denied_packets_total counter");
        for (labels, packets) in denied {
            let _ = writeln!(o, "weir_denied_packets_total{{{labels}}} {packets}");
        }
        let _ = writeln!(o, "# HELP weir_audit_would_drop_total Packets an audited policy would have dropped (they were accepted); policy \"\" is the fail-closed catch-all under --audit.\n# TYPE weir_audit_would_drop_total counter");
        for (policy, packets) in would_drop {
            let _ = writeln!(
                o,
                "weir_audit_would_drop_total{{policy=\"{}\"}} {packets}",
                label_value(policy)
            );
        }
        o
    }
}

fn why_not_ready(s: &State) -> Vec<String> {
    let mut why = Vec::new();
    if !s.synced_once {
        why.push("not synced yet".to_string());
    }
    if let Some(e) = &s.sync_error {
        why.push(format!("last sync failed: {e}"));
    }
    if let Some(t) = &s.source_trouble {
        why.push(t.clone());
    }
    if s.invalid_files > 0 {
        why.push(format!(
            "{} invalid source item(s): their last good versions are enforced",
            s.invalid_files
        ));
    }
    if let Some(Err(e)) = &s.drop_log {
        why.push(format!("drop log unavailable: {e}"));
    }
    why
}

/// What the counters of a `nft -j list table inet weir` say.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counted {
    /// (labels, packets) for every drop rule with a counter.
    pub denied: Vec<(String, u64)>,
    /// (chain, packets) for every would-drop rule (an accept commented `would drop: …`).
    pub would_drop: Vec<(String, u64)>,
}

/// The counters of weir's drop and would-drop rules in a `nft -j list table inet weir`.
pub fn counted_from_listing(json: &str) -> Counted {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else {
        return Counted::default();
    };
    let mut out = std::collections::BTreeMap::new();
    let mut would = std::collections::BTreeMap::new();
    for item in v["nftables"].as_array().into_iter().flatten() {
        let rule = &item["rule"];
        let Some(expr) = rule["expr"].as_array() else {
            continue;
        };
        let drops = expr.iter().any(|e| e.get("drop").is_some());
        let packets = expr.iter().find_map(|e| e["counter"]["packets"].as_u64());
        let accepts = expr.iter().any(|e| e.get("accept").is_some());
        let comment = rule["comment"].as_str().unwrap_or("");
        if let (true, true, Some(p)) = (accepts, comment.starts_with("would drop: "), packets) {
            let chain = rule["chain"].as_str().unwrap_or("").to_string();
            *would.entry(chain).or_insert(0) += p;
        }
        if let (true, Some(p)) = (drops, packets) {
            let labels = format!(
                "chain=\"{}\",reason=\"{}\"",
                label_value(rule["chain"].as_str().unwrap_or("")),
                label_value(rule["comment"].as_str().unwrap_or(""))
            );
            // One series per label set: rules of both families share one reason.
            *out.entry(labels).or_insert(0) += p;
        }
    }
    Counted {
        denied: out.into_iter().collect(),
        would_drop: would.into_iter().collect(),
    }
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn label_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_counters_are_one_series_per_label_set() {
        // The unknown-local-pod drop exists once per family with one comment: one series.
        let listing = r#"{"nftables": [
          {"rule": {"chain": "egress", "comment": "unknown local pod", "expr": [{"counter": {"packets": 2, "bytes": 1}}, {"drop": null}]}},
          {"rule": {"chain": "egress", "comment": "unknown local pod", "expr": [{"counter": {"packets": 3, "bytes": 1}}, {"drop": null}]}},
          {"rule": {"chain": "ig-1", "comment": "a \"b\"\nc", "expr": [{"counter": {"packets": 1, "bytes": 1}}, {"drop": null}]}},
          {"rule": {"chain": "ig-1", "expr": [{"counter": {"packets": 9, "bytes": 1}}, {"accept": null}]}}
        ]}"#;
        let denied = counted_from_listing(listing).denied;
        assert_eq!(
            denied,
            vec![
                (
                    "chain=\"egress\",reason=\"unknown local pod\"".to_string(),
                    5
                ),
                ("chain=\"ig-1\",reason=\"a \\\"b\\\"\\nc\"".to_string(), 1),
            ]
        );
        let text = Metrics::default().render(&denied, &[]);
        let series: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("weir_denied_packets_total{"))
            .collect();
        assert_eq!(series.len(), 2, "{text}");
    }

    #[test]
    fn would_drops_are_counted_per_chain_and_rendered_per_policy() {
        // Both families' would-drop rules of one audit chain; an audited policy's own
        // accept (a match, not a would-drop) and a drop are not would-drops.
        let listing = r#"{"nftables": [
          {"rule": {"chain": "ia-1", "comment": "would drop: ingress isolated by a/b (audit)", "expr": [{"counter": {"packets": 2, "bytes": 1}}, {"accept": null}]}},
          {"rule": {"chain": "ia-1", "comment": "would drop: ingress isolated by a/b (audit)", "expr": [{"counter": {"packets": 3, "bytes": 1}}, {"accept": null}]}},
          {"rule": {"chain": "ia-1", "comment": "a/b ingress[0] (audit)", "expr": [{"counter": {"packets": 7, "bytes": 1}}, {"accept": null}]}},
          {"rule": {"chain": "ig-1", "comment": "would drop: forged", "expr": [{"counter": {"packets": 1, "bytes": 1}}, {"drop": null}]}}
        ]}"#;
        let counted = counted_from_listing(listing);
        assert_eq!(counted.would_drop, vec![("ia-1".to_string(), 5)]);
        assert_eq!(counted.denied.len(), 1);
        let text = Metrics::default().render(&[], &[("ns/\"x\"".to_string(), 5)]);
        assert!(
            text.contains("weir_audit_would_drop_total{policy=\"ns/\\\"x\\\"\"} 5"),
            "{text}"
        );
    }

    #[test]
    fn readiness_names_every_reason() {
        let m = Metrics::default();
        assert_eq!(m.readiness().unwrap_err(), vec!["not synced yet"]);
        m.synced(Duration::from_millis(1), weir_nft::Size::default(), None);
        assert!(m.readiness().is_ok());
        m.drop_log(Some(Err("bind: permission denied".into())));
        m.source(2);
        let why = m.readiness().unwrap_err().join("; ");
        assert!(why.contains("drop log unavailable: bind"), "{why}");
        assert!(why.contains("2 invalid source item(s)"), "{why}");
        let text = m.render(&[], &[]);
        assert!(text.contains("weir_drop_log_up 0") && text.contains("weir_ready 0"));
        m.drop_log(Some(Ok(())));
        m.source(0);
        m.source_trouble(Some("the Kubernetes API cannot be watched".into()));
        assert!(m
            .render(&[], &[])
            .contains("weir_source_state{state=\"error\"} 1"));
        m.source_trouble(None);
        assert!(m.readiness().is_ok());
        assert!(m
            .render(&[], &[])
            .contains("weir_source_state{state=\"ok\"} 1"));
    }
}
