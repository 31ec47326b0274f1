//! API-server-like validation, turning k8s-openapi types into weir-model types.
//! Every problem is recorded with its field path; conversion goes on so one run
//! reports all problems of a document.

use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::api::networking::v1 as net;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use weir_model::{
    LabelSelector, Labels, NamespaceScope, Operator, Peer, PortRef, PortRule, Protocol,
    Requirement, Rule,
};

use crate::path::FieldPath;

/// Problems found in one object: field path and message.
#[derive(Default, Debug)]
pub struct Problems {
    pub errors: Vec<(FieldPath, String)>,
    pub warnings: Vec<(FieldPath, String)>,
}

impl Problems {
    pub fn error(&mut self, path: FieldPath, message: impl Into<String>) {
        self.errors.push((path, message.into()));
    }
    pub fn warn(&mut self, path: FieldPath, message: impl Into<String>) {
        self.warnings.push((path, message.into()));
    }
}

/// 1–63 bytes of `allowed`, starting and ending with an alphanumeric.
fn is_bounded_name(s: &str, allowed: impl Fn(u8) -> bool) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|&c| allowed(c))
}

/// The name part of a label key, and a label value.
fn is_name_part(s: &str) -> bool {
    is_bounded_name(s, |c| {
        c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.')
    })
}

/// RFC 1123 subdomain: lower-case labels of alphanumerics and '-', joined by dots.
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && !s.is_empty() && s.split('.').all(is_dns_label)
}

/// RFC 1123 label (namespace and most object names' rule).
pub fn is_dns_label(s: &str) -> bool {
    is_bounded_name(s, |c| {
        c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-'
    })
}

/// A namespace name (an RFC 1123 label) at `path`, wherever an object names one.
pub fn check_namespace(value: &str, path: FieldPath, problems: &mut Problems) {
    if !is_dns_label(value) {
        problems.error(
            path,
            format!("namespace {} is not a valid RFC 1123 label", shown(value)),
        );
    }
}

/// RFC 1035 label (Service names): an RFC 1123 label that starts with a letter.
pub fn is_dns1035_label(s: &str) -> bool {
    is_dns_label(s) && s.as_bytes()[0].is_ascii_lowercase()
}

/// The rule an object's name must follow, as the API server applies it per kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    /// Namespaces.
    Dns1123Label,
    /// Pods, NetworkPolicies, workloads.
    Dns1123Subdomain,
    /// Services.
    Dns1035Label,
}

impl NameRule {
    /// `None` when `name` is valid, else why not.
    pub fn problem(self, name: &str) -> Option<String> {
        let (ok, what) = match self {
            NameRule::Dns1123Label => (
                is_dns_label(name),
                "an RFC 1123 label (at most 63 lower-case alphanumerics or '-', starting and ending with an alphanumeric)",
            ),
            NameRule::Dns1123Subdomain => (
                is_dns_subdomain(name),
                "an RFC 1123 subdomain (at most 253 characters: lower-case alphanumerics, '-' and '.', each part starting and ending with an alphanumeric)",
            ),
            NameRule::Dns1035Label => (
                is_dns1035_label(name),
                "an RFC 1035 label (at most 63 lower-case alphanumerics or '-', starting with a letter and ending with an alphanumeric)",
            ),
        };
        (!ok).then(|| format!("name {} is not {what}", shown(name)))
    }
}

/// A user-supplied string in a message: quoted and escaped, and cut when long, so a hostile
/// value cannot flood logs or terminals.
pub fn shown(s: &str) -> String {
    const MAX: usize = 80;
    if s.len() <= MAX {
        return format!("{s:?}");
    }
    format!("{:?}… ({} bytes)", weir_model::prefix(s, MAX), s.len())
}

/// A user-supplied string that goes into output as it is (a route's host and path): kept
/// when it is short printable ASCII without spaces, else [`shown`] (quoted, escaped, cut), so
/// it cannot carry terminal escapes or flood a table.
pub fn printable(s: &str) -> String {
    if s.len() <= 256 && s.bytes().all(|b| b.is_ascii_graphic()) {
        s.to_string()
    } else {
        shown(s)
    }
}

/// A label key: `[prefix/]name` (Kubernetes' IsQualifiedName).
pub fn label_key_problem(key: &str) -> Option<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        if !is_dns_subdomain(p) {
            return Some(format!(
                "label key {}: prefix must be a lower-case DNS subdomain",
                shown(key)
            ));
        }
    }
    if !is_name_part(name) {
        return Some(format!(
            "label key {}: name part must be 1-63 characters, alphanumeric, '-', '_' or '.', starting and ending with an alphanumeric",
            shown(key)
        ));
    }
    None
}

pub fn label_value_problem(value: &str) -> Option<String> {
    if value.is_empty() || is_name_part(value) {
        None
    } else {
        Some(format!(
            "label value {} must be at most 63 characters, alphanumeric, '-', '_' or '.', starting and ending with an alphanumeric",
            shown(value)
        ))
    }
}

pub fn check_labels(labels: &Labels, path: &FieldPath, problems: &mut Problems) {
    for (k, v) in labels {
        let p = path.key(k);
        if let Some(m) = label_key_problem(k) {
            problems.error(p.clone(), m);
        }
        if let Some(m) = label_value_problem(v) {
            problems.error(p, m);
        }
    }
}

/// IANA service name: what a named containerPort or policy port may be called.
pub fn is_port_name(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 15
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b.iter().any(|c| c.is_ascii_lowercase())
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
        && !s.contains("--")
}

pub fn selector(
    sel: &meta::LabelSelector,
    path: &FieldPath,
    problems: &mut Problems,
) -> LabelSelector {
    let match_labels = sel.match_labels.clone().unwrap_or_default();
    check_labels(&match_labels, &path.key("matchLabels"), problems);
    let mut match_expressions = Vec::new();
    for (i, req) in sel.match_expressions.iter().flatten().enumerate() {
        let p = path.key("matchExpressions").index(i);
        if let Some(m) = label_key_problem(&req.key) {
            problems.error(p.key("key"), m);
        }
        let mut values = req.values.clone().unwrap_or_default();
        let operator = match req.operator.as_str() {
            "In" => Operator::In,
            "NotIn" => Operator::NotIn,
            "Exists" => Operator::Exists,
            "DoesNotExist" => Operator::DoesNotExist,
            other => {
                problems.error(
                    p.key("operator"),
                    format!(
                        "unsupported operator {other:?}: must be In, NotIn, Exists or DoesNotExist"
                    ),
                );
                continue;
            }
        };
        match operator {
            Operator::In | Operator::NotIn if values.is_empty() => problems.error(
                p.key("values"),
                format!("must be non-empty for operator {}", req.operator),
            ),
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => problems.error(
                p.key("values"),
                format!("must be empty for operator {}", req.operator),
            ),
            _ => {}
        }
        for (j, v) in values.iter().enumerate() {
            if let Some(m) = label_value_problem(v) {
                problems.error(p.key("values").index(j), m);
            }
        }
        values.sort();
        values.dedup();
        match_expressions.push(Requirement {
            key: req.key.clone(),
            operator,
            values,
        });
    }
    match_expressions.sort();
    match_expressions.dedup();
    LabelSelector {
        match_labels,
        match_expressions,
    }
}

/// A port number: `Some` when 1-65535, else an error at `path` naming the field as `what`.
pub fn port_number(
    n: impl Into<i64>,
    what: &str,
    path: &FieldPath,
    problems: &mut Problems,
) -> Option<u16> {
    let n = n.into();
    if (1..=65535).contains(&n) {
        Some(n as u16)
    } else {
        problems.error(
            path.clone(),
            format!("{what} {n} must be between 1 and 65535"),
        );
        None
    }
}

pub fn protocol(p: Option<&str>, path: &FieldPath, problems: &mut Problems) -> Protocol {
    match p {
        None => Protocol::Tcp,
        Some(s) => Protocol::parse(s).unwrap_or_else(|| {
            problems.error(
                path.clone(),
                format!("unsupported protocol {s:?}: must be TCP, UDP or SCTP"),
            );
            Protocol::Tcp
        }),
    }
}

pub(crate) fn cidr(text: &str, path: &FieldPath, problems: &mut Problems) -> Option<IpNet> {
    match text.parse::<IpNet>() {
        Ok(net) => {
            if net.trunc() != net {
                problems.warn(
                    path.clone(),
                    format!("{text:?} has host bits set; it means {}", net.trunc()),
                );
            }
            Some(net.trunc())
        }
        Err(_) => {
            let hint = if text.parse::<IpAddr>().is_ok() {
                " (a prefix length is required, e.g. /32)"
            } else {
                ""
            };
            problems.error(path.clone(), format!("invalid CIDR {text:?}{hint}"));
            None
        }
    }
}

fn peer(p: &net::NetworkPolicyPeer, path: &FieldPath, problems: &mut Problems) -> Option<Peer> {
    if let Some(block) = &p.ip_block {
        if p.pod_selector.is_some() || p.namespace_selector.is_some() {
            problems.error(
                path.clone(),
                "ipBlock may not be combined with podSelector or namespaceSelector in one peer",
            );
        }
        let bpath = path.key("ipBlock");
        let net = cidr(&block.cidr, &bpath.key("cidr"), problems)?;
        let mut except = Vec::new();
        for (i, e) in block.except.iter().flatten().enumerate() {
            let epath = bpath.key("except").index(i);
            if let Some(ex) = cidr(e, &epath, problems) {
                if !(net.contains(&ex) && ex.prefix_len() > net.prefix_len()) {
                    problems.error(
                        epath,
                        format!("except {ex} must be strictly within cidr {net}"),
                    );
                } else {
                    except.push(ex);
                }
            }
        }
        except.sort();
        except.dedup();
        return Some(Peer::IpBlock { cidr: net, except });
    }
    if p.pod_selector.is_none() && p.namespace_selector.is_none() {
        problems.error(
            path.clone(),
            "a peer must set podSelector, namespaceSelector or ipBlock",
        );
        return None;
    }
    let namespaces = match &p.namespace_selector {
        Some(s) => NamespaceScope::Selector(selector(s, &path.key("namespaceSelector"), problems)),
        None => NamespaceScope::PolicyNamespace,
    };
    let pods = p
        .pod_selector
        .as_ref()
        .map(|s| selector(s, &path.key("podSelector"), problems));
    Some(Peer::Pods { namespaces, pods })
}

fn port(p: &net::NetworkPolicyPort, path: &FieldPath, problems: &mut Problems) -> PortRule {
    let protocol = protocol(p.protocol.as_deref(), &path.key("protocol"), problems);
    let port = match &p.port {
        None => {
            if p.end_port.is_some() {
                problems.error(path.key("endPort"), "endPort requires port");
            }
            None
        }
        Some(IntOrString::Int(n)) => {
            let n = *n;
            let valid = port_number(n, "port", &path.key("port"), problems).is_some();
            let end = match p.end_port {
                None => n,
                Some(e) if port_number(e, "endPort", &path.key("endPort"), problems).is_none() => n,
                Some(e) if e < n => {
                    problems.error(
                        path.key("endPort"),
                        format!("endPort {e} must be greater than or equal to port {n}"),
                    );
                    n
                }
                Some(e) => e,
            };
            valid.then_some(PortRef::Number {
                port: n as u16,
                end: end as u16,
            })
        }
        Some(IntOrString::String(name)) => {
            if p.end_port.is_some() {
                problems.error(
                    path.key("endPort"),
                    "endPort may not be used with a named port",
                );
            }
            if !is_port_name(name) {
                problems.error(
                    path.key("port"),
                    if name.parse::<u16>().is_ok() {
                        format!("{name:?} is not a valid port name: a number in quotes is a name; write the number without quotes (port: {name})")
                    } else {
                        format!("{name:?} is not a valid port name (1-15 lower-case alphanumerics or '-', with a letter)")
                    },
                );
            }
            Some(PortRef::Named(name.clone()))
        }
    };
    PortRule { protocol, port }
}

/// One ingress or egress rule: its peers and its ports.
pub fn rule(
    peers: Option<&Vec<net::NetworkPolicyPeer>>,
    ports: Option<&Vec<net::NetworkPolicyPort>>,
    peers_field: &str,
    path: &FieldPath,
    problems: &mut Problems,
) -> Rule {
    let peers = peers
        .into_iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, p)| peer(p, &path.key(peers_field).index(i), problems))
        .collect();
    let ports = ports
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, p)| port(p, &path.key("ports").index(i), problems))
        .collect();
    Rule {
        peers,
        ports,
        origin: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_keys() {
        assert!(label_key_problem("networking/logic").is_none());
        assert!(label_key_problem("app.kubernetes.io/name").is_none());
        assert!(label_key_problem("kubernetes.io/metadata.name").is_none());
        assert!(label_key_problem("a/b/c").is_some());
        assert!(label_key_problem("-x").is_some());
        assert!(label_key_problem("UPPER.prefix/x").is_some());
        assert!(label_key_problem(&"x".repeat(64)).is_some());
    }

    #[test]
    fn port_names() {
        assert!(is_port_name("http"));
        assert!(is_port_name("redis-6379"));
        assert!(!is_port_name("80"));
        assert!(!is_port_name("Http"));
        assert!(!is_port_name("a--b"));
        assert!(!is_port_name("sixteen-chars-xx"));
    }
}
