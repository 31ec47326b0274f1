//! Gateway API (`gateway.networking.k8s.io`, v1 and v1beta1): HTTPRoutes as ways in from
//! outside, and the ReferenceGrants that let a route reach a Service in another namespace.
//! Checked as the CRDs' schemas and CEL rules check them (Gateway API v1.2); only what
//! decides which Services a gateway's pods connect to is modelled: matches, filters,
//! timeouts and retries are accepted as they are and not read.

use serde::Deserialize;
use serde_json::Value;
use weir_model::{Ingress, IngressBackend, Origin, PortTarget, RouteKind};

use crate::decode::{meta, Meta};
use crate::path::FieldPath;
use crate::tiers::Object;
use crate::validate::{self, shown, NameRule, Problems};

/// The Gateway API group; a backend or a parent in it is a Gateway API object.
const GROUP: &str = "gateway.networking.k8s.io";

/// HTTPRoute `spec`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HttpRouteSpec {
    #[serde(default)]
    parent_refs: Vec<ParentRef>,
    #[serde(default)]
    hostnames: Vec<String>,
    #[serde(default)]
    rules: Vec<RouteRule>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ParentRef {
    group: Option<String>,
    kind: Option<String>,
    namespace: Option<String>,
    name: String,
    #[allow(dead_code)]
    section_name: Option<String>,
    port: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RouteRule {
    #[allow(dead_code)]
    name: Option<String>,
    matches: Option<Vec<Value>>,
    filters: Option<Vec<Value>>,
    #[serde(default)]
    backend_refs: Vec<BackendRef>,
    #[allow(dead_code)]
    timeouts: Option<Value>,
    #[allow(dead_code)]
    retry: Option<Value>,
    #[allow(dead_code)]
    session_persistence: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BackendRef {
    group: Option<String>,
    kind: Option<String>,
    name: String,
    namespace: Option<String>,
    port: Option<i64>,
    weight: Option<i64>,
    filters: Option<Vec<Value>>,
}

/// ReferenceGrant `spec`: who (`from`) may refer to what (`to`) in the grant's namespace.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ReferenceGrantSpec {
    from: Vec<GrantFrom>,
    to: Vec<GrantTo>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GrantFrom {
    group: String,
    kind: String,
    namespace: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GrantTo {
    group: String,
    kind: String,
    name: Option<String>,
}

/// A ReferenceGrant, as far as routes to Services go: in `namespace`, HTTPRoutes of
/// `from` may use `services` (`None`: every Service).
#[derive(Clone, Debug)]
pub struct ReferenceGrant {
    pub namespace: String,
    pub name: String,
    pub from: Vec<String>,
    pub services: Option<Vec<String>>,
    pub origin: Origin,
}

impl ReferenceGrant {
    /// Whether an HTTPRoute in `route_namespace` may send to `service` of this namespace.
    pub fn allows(&self, route_namespace: &str, service: &str) -> bool {
        self.from.iter().any(|n| n == route_namespace)
            && self
                .services
                .as_ref()
                .is_none_or(|s| s.iter().any(|n| n == service))
    }
}

fn spec() -> FieldPath {
    FieldPath::root().key("spec")
}

/// A DNS subdomain of at most `max` characters (the schemas' object names).
fn name(value: &str, max: usize, path: FieldPath, problems: &mut Problems) {
    if value.is_empty() || value.len() > max {
        problems.error(
            path,
            format!("{}: must be 1 to {max} characters", shown(value)),
        );
    }
}

fn at_most<T>(list: &[T], max: usize, path: FieldPath, problems: &mut Problems) {
    if list.len() > max {
        problems.error(
            path,
            format!("{} items: at most {max} are allowed", list.len()),
        );
    }
}

/// A hostname of `spec.hostnames`: a DNS subdomain, optionally `*.` first; 253 bytes at
/// most in all.
fn hostname_ok(h: &str) -> bool {
    h.len() <= 253 && validate::is_dns_subdomain(h.strip_prefix("*.").unwrap_or(h))
}

/// The paths a rule's matches name (`/` where a match has none: the default
/// PathPrefix `/`), for the route's description.
fn paths(matches: Option<&[Value]>) -> Vec<String> {
    let mut out: Vec<String> = match matches {
        None | Some([]) => vec!["/".into()],
        Some(list) => list
            .iter()
            .map(|m| {
                validate::printable(
                    m.pointer("/path/value")
                        .and_then(Value::as_str)
                        .unwrap_or("/"),
                )
            })
            .collect(),
    };
    out.dedup();
    out
}

/// An HTTPRoute: one backend per Service backendRef with a weight above zero. Backends
/// of other kinds, and those a gateway would refuse (weight 0), are left out with a
/// warning; whether another namespace grants the reference is checked when the cluster is
/// built (ReferenceGrants can come in any order).
pub(crate) fn http_route(
    o: Object<HttpRouteSpec>,
    origin: Origin,
    problems: &mut Problems,
) -> Option<Ingress> {
    let Meta {
        namespace: own,
        name: route_name,
        origin,
        ..
    } = meta(&o.metadata, NameRule::Dns1123Subdomain, origin, problems)?;
    let s = o.spec;
    at_most(&s.parent_refs, 32, spec().key("parentRefs"), problems);
    let mut served_by = Vec::new();
    for (i, p) in s.parent_refs.iter().enumerate() {
        let at = spec().key("parentRefs").index(i);
        name(&p.name, 253, at.key("name"), problems);
        if let Some(ns) = &p.namespace {
            validate::check_namespace(ns, at.key("namespace"), problems);
        }
        if let Some(port) = p.port {
            validate::port_number(port, "port", &at.key("port"), problems);
        }
        let group = p.group.as_deref().unwrap_or(GROUP);
        let kind = p.kind.as_deref().unwrap_or("Gateway");
        let ns = p.namespace.as_deref().unwrap_or(&own);
        // The name has no pattern in the schema: it is user text in output.
        let name = validate::printable(&p.name);
        served_by.push(if group == GROUP && kind == "Gateway" {
            format!("{ns}/{name}")
        } else {
            format!("{} {ns}/{name}", validate::printable(kind))
        });
    }
    at_most(&s.hostnames, 16, spec().key("hostnames"), problems);
    for (i, h) in s.hostnames.iter().enumerate() {
        if !hostname_ok(h) {
            problems.error(
                spec().key("hostnames").index(i),
                format!(
                    "{}: must be a lower-case DNS name, optionally starting with '*.'",
                    shown(h)
                ),
            );
        }
    }
    let host = if s.hostnames.is_empty() {
        "*".to_string()
    } else {
        s.hostnames.join(",")
    };
    at_most(&s.rules, 16, spec().key("rules"), problems);
    let mut backends = Vec::new();
    for (r, rule) in s.rules.iter().enumerate() {
        let rpath = spec().key("rules").index(r);
        at_most(
            rule.matches.as_deref().unwrap_or_default(),
            64,
            rpath.key("matches"),
            problems,
        );
        at_most(
            rule.filters.as_deref().unwrap_or_default(),
            16,
            rpath.key("filters"),
            problems,
        );
        at_most(&rule.backend_refs, 16, rpath.key("backendRefs"), problems);
        let route = paths(rule.matches.as_deref())
            .iter()
            .map(|p| format!("{host}{p}"))
            .collect::<Vec<_>>()
            .join(" ");
        for (b, backend) in rule.backend_refs.iter().enumerate() {
            let at = rpath.key("backendRefs").index(b);
            at_most(
                backend.filters.as_deref().unwrap_or_default(),
                16,
                at.key("filters"),
                problems,
            );
            name(&backend.name, 253, at.key("name"), problems);
            if let Some(ns) = &backend.namespace {
                validate::check_namespace(ns, at.key("namespace"), problems);
            }
            if let Some(w) = backend.weight.filter(|w| !(0..=1_000_000).contains(w)) {
                problems.error(
                    at.key("weight"),
                    format!("weight {w} must be between 0 and 1000000"),
                );
            }
            let group = backend.group.as_deref().unwrap_or("");
            let kind = backend.kind.as_deref().unwrap_or("Service");
            let port = match backend.port {
                Some(p) => match validate::port_number(p, "port", &at.key("port"), problems) {
                    Some(p) => Some(p),
                    None => continue,
                },
                None => None,
            };
            if !group.is_empty() || kind != "Service" {
                problems.warn(
                    at.key("kind"),
                    format!(
                        "a {} backend is not a Service: left out of the traffic from outside",
                        shown(&format!("{group}/{kind}"))
                    ),
                );
                continue;
            }
            // CEL: "Must have port for Service reference".
            let Some(port) = port else {
                problems.error(at.key("port"), "must have port for Service reference");
                continue;
            };
            if backend.weight == Some(0) {
                problems.warn(
                    at.key("weight"),
                    "weight 0: the gateway sends nothing here; left out of the traffic from outside",
                );
                continue;
            }
            if let Some(why) = NameRule::Dns1035Label.problem(&backend.name) {
                problems.warn(
                    at.key("name"),
                    format!("{why}: no Service can have this name; left out"),
                );
                continue;
            }
            backends.push(IngressBackend {
                route: route.clone(),
                namespace: backend.namespace.clone().unwrap_or_else(|| own.clone()),
                service: backend.name.clone(),
                port: PortTarget::Number(port),
            });
        }
    }
    Some(Ingress {
        kind: RouteKind::HttpRoute,
        namespace: own,
        name: route_name,
        served_by,
        backends,
        origin,
    })
}

/// A ReferenceGrant: the namespaces whose HTTPRoutes it lets use this namespace's
/// Services (all, or those named). Grants for other kinds are kept empty.
pub(crate) fn reference_grant(
    o: Object<ReferenceGrantSpec>,
    origin: Origin,
    problems: &mut Problems,
) -> Option<ReferenceGrant> {
    let m = meta(&o.metadata, NameRule::Dns1123Subdomain, origin, problems)?;
    let s = o.spec;
    for (n, field) in [(s.from.len(), "from"), (s.to.len(), "to")] {
        if !(1..=16).contains(&n) {
            problems.error(spec().key(field), format!("{n} items: 1 to 16 are allowed"));
        }
    }
    let mut from = Vec::new();
    for (i, f) in s.from.iter().enumerate() {
        let at = spec().key("from").index(i);
        validate::check_namespace(&f.namespace, at.key("namespace"), problems);
        if f.kind.is_empty() || f.kind.len() > 63 {
            problems.error(at.key("kind"), "must be 1 to 63 characters");
        }
        if f.group == GROUP && f.kind == "HTTPRoute" {
            from.push(f.namespace.clone());
        }
    }
    let mut services = Some(Vec::new());
    let mut any_service = false;
    for (i, t) in s.to.iter().enumerate() {
        let at = spec().key("to").index(i);
        if t.kind.is_empty() || t.kind.len() > 63 {
            problems.error(at.key("kind"), "must be 1 to 63 characters");
        }
        if let Some(n) = &t.name {
            name(n, 253, at.key("name"), problems);
        }
        if !t.group.is_empty() || t.kind != "Service" {
            continue;
        }
        any_service = true;
        match (&t.name, &mut services) {
            (None, _) => services = None,
            (Some(n), Some(list)) => list.push(n.clone()),
            (Some(_), None) => {}
        }
    }
    if !any_service {
        from.clear(); // grants nothing a route to a Service needs
    }
    Some(ReferenceGrant {
        namespace: m.namespace,
        name: m.name,
        from,
        services,
        origin: m.origin,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_follow_the_schema() {
        for ok in ["example.com", "*.example.com", "a", "foo-bar.example"] {
            assert!(hostname_ok(ok), "{ok}");
        }
        for bad in [
            "",
            "*",
            "Example.com",
            "-a.com",
            "a..b",
            "*.*.a",
            "a_b.com",
            "10.0.0.1:80",
        ] {
            assert!(!hostname_ok(bad), "{bad}");
        }
    }

    #[test]
    fn paths_default_to_the_root_prefix() {
        assert_eq!(paths(None), vec!["/"]);
        let m: Vec<Value> = serde_json::from_str(
            r#"[{"path":{"type":"PathPrefix","value":"/api"}},{"headers":[{"name":"x","value":"y"}]}]"#,
        )
        .unwrap();
        assert_eq!(paths(Some(&m)), vec!["/api", "/"]);
        // A regular expression may hold anything: it is written escaped, never raw.
        let m: Vec<Value> = serde_json::from_str(
            r#"[{"path":{"type":"RegularExpression","value":"/a\u001b[2J b"}}]"#,
        )
        .unwrap();
        assert_eq!(paths(Some(&m)), vec![r#""/a\u{1b}[2J b""#]);
    }
}
