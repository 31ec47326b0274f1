//! Checking intents against a view of connectivity: the engine's (exact, every port) or
//! observed traffic (the probed ports only).

use serde::Serialize;
use weir_model::{Expectation, Intent, PortKey, Protocol};

use crate::ports::PortSet;
use crate::{Engine, Side};

/// Who may talk to whom, as some observer sees it.
pub trait Connectivity {
    /// Is `protocol/port` allowed from endpoint `src` to endpoint `dst`? `None`: not observed.
    fn allows(&self, src: usize, dst: usize, protocol: Protocol, port: u16) -> Option<bool>;
    /// Something allowed from `src` to `dst` outside `listed`, described; `None` if nothing
    /// (as far as this view can tell).
    fn beyond(&self, src: usize, dst: usize, listed: &PortSet) -> Option<String>;
}

impl Connectivity for Engine<'_> {
    fn allows(&self, src: usize, dst: usize, protocol: Protocol, port: u16) -> Option<bool> {
        Some(
            self.allowed(Side::Endpoint(src), Side::Endpoint(dst))
                .contains(protocol, port),
        )
    }
    fn beyond(&self, src: usize, dst: usize, listed: &PortSet) -> Option<String> {
        let allowed = self.allowed(Side::Endpoint(src), Side::Endpoint(dst));
        (allowed.union(listed) != *listed).then(|| format!("allows {allowed}"))
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct IntentResult {
    pub name: String,
    pub origin: String,
    pub passed: bool,
    /// Endpoint pairs (or namespaces) the intent was checked on.
    pub checked: usize,
    /// What broke it (the first 20).
    pub failures: Vec<String>,
}

fn port_set(ports: &[PortKey]) -> PortSet {
    ports.iter().fold(PortSet::none(), |acc, k| {
        acc.union(&PortSet::range(k.protocol, k.port, k.port))
    })
}

fn word(p: Protocol, n: u16) -> String {
    format!("{p}/{n}")
}

/// Checks every intent. `engine` supplies the cluster (and isolation facts for
/// default-deny); `view` supplies the verdicts.
pub fn check_intents(
    engine: &Engine,
    view: &dyn Connectivity,
    intents: &[Intent],
) -> Vec<IntentResult> {
    let cluster = engine.cluster();
    let eps = &cluster.endpoints;
    intents
        .iter()
        .map(|intent| {
            let mut failures = Vec::new();
            let mut checked = 0;
            let mut fail = |s: String| {
                if failures.len() < 20 {
                    failures.push(s)
                }
            };
            let pairs = |from: &weir_model::EndpointPattern| -> Vec<(usize, usize)> {
                let mut v = Vec::new();
                for (d, dst) in eps.iter().enumerate().filter(|(_, e)| intent.to.matches(e)) {
                    for (s, _) in eps.iter().enumerate().filter(|(s, e)| *s != d && from.matches(e)) {
                        v.push((s, d));
                    }
                    let _ = dst;
                }
                v
            };
            let name = |i: usize| eps[i].id();
            match &intent.expect {
                Expectation::Allowed(ports) | Expectation::Denied(Some(ports)) => {
                    let want = matches!(intent.expect, Expectation::Allowed(_));
                    for (s, d) in pairs(&intent.from) {
                        checked += 1;
                        for &PortKey { protocol: p, port: n } in ports {
                            match view.allows(s, d, p, n) {
                                Some(v) if v == want => {}
                                Some(v) => fail(format!("{} → {} {}: {}", name(s), name(d), word(p, n), if v { "allowed" } else { "denied" })),
                                None => fail(format!("{} → {} {}: not observed", name(s), name(d), word(p, n))),
                            }
                        }
                    }
                }
                Expectation::Denied(None) | Expectation::Only(_) => {
                    let listed = match &intent.expect {
                        Expectation::Only(ports) => port_set(ports),
                        _ => PortSet::none(),
                    };
                    for (s, d) in pairs(&intent.from) {
                        checked += 1;
                        if let Some(what) = view.beyond(s, d, &listed) {
                            fail(format!("{} → {}: {what}", name(s), name(d)));
                        }
                    }
                }
                Expectation::AcceptsOnlyFrom { from, ports } => {
                    let listed = port_set(ports);
                    let any = weir_model::EndpointPattern { namespace: "*".into(), name: "*".into(), labels: Default::default() };
                    for (s, d) in pairs(&any) {
                        checked += 1;
                        if from.matches(&eps[s]) {
                            for &PortKey { protocol: p, port: n } in ports {
                                if view.allows(s, d, p, n) != Some(true) {
                                    fail(format!("{} → {} {}: not allowed, but {} is an accepted source", name(s), name(d), word(p, n), name(s)));
                                }
                            }
                            if let Some(what) = view.beyond(s, d, &listed) {
                                fail(format!("{} → {}: {what}, beyond {}", name(s), name(d), ports.iter().map(|k| k.to_string()).collect::<Vec<_>>().join(",")));
                            }
                        } else if let Some(what) = view.beyond(s, d, &PortSet::none()) {
                            fail(format!("{} → {}: {what}, but {} does not match {from}", name(s), name(d), name(s)));
                        }
                    }
                }
                Expectation::DefaultDeny => {
                    let mut namespaces: Vec<&str> = eps.iter().filter(|e| intent.to.matches(e)).map(|e| e.namespace.as_str()).collect();
                    namespaces.sort();
                    namespaces.dedup();
                    for ns in namespaces {
                        checked += 1;
                        let has = cluster.policies.iter().any(|p| {
                            p.namespace == ns && p.is_default_deny_ingress()
                        });
                        if !has {
                            fail(format!("namespace {ns} has no default-deny ingress policy (podSelector {{}}, policyTypes [Ingress], no rules)"));
                        }
                    }
                }
            }
            if checked == 0 {
                fail("matches no endpoint: check the from/to patterns".into());
            }
            IntentResult {
                name: intent.name.clone(),
                origin: intent.origin.to_string(),
                passed: failures.is_empty(),
                checked,
                failures,
            }
        })
        .collect()
}
