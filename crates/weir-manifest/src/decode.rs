//! Documents → typed objects (k8s-openapi) → checked parts of the model.
//! All problems of a document are located in one pass over its source.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use k8s_openapi::api::{
    apps::v1 as apps, batch::v1 as batch, core::v1 as core, networking::v1 as net,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use serde_json::Value;
use weir_model::{
    ClusterPolicy, ContainerPort, EndpointKind, Ingress, IngressBackend, Labels, Mode, Node,
    Origin, Policy, PortTarget, RouteKind, Service, ServicePort, ServiceType, MODE_ANNOTATION,
};

use crate::path::FieldPath;
use crate::validate::{self, NameRule, Problems};
use crate::yaml::{self, Body, Position};
use crate::{Diagnostic, LoadOptions, NamedText, Severity};

/// An object's identity and labels.
#[derive(Debug, Clone)]
pub struct Meta {
    pub namespace: String,
    pub name: String,
    pub labels: Labels,
    /// The controlling owner (`kind`, `name`), as `kubectl get -o yaml` shows it.
    pub owner: Option<(String, String)>,
    pub origin: Origin,
}

/// What a pod template contributes to an endpoint.
#[derive(Debug, Clone)]
pub struct Template {
    pub labels: Labels,
    pub ports: Vec<ContainerPort>,
    pub host_network: bool,
}

#[derive(Debug, Clone)]
pub enum Object {
    Namespace {
        name: String,
        labels: Labels,
        origin: Origin,
    },
    Pod {
        meta: Meta,
        template: Template,
        ips: Vec<IpAddr>,
    },
    Workload {
        kind: EndpointKind,
        meta: Meta,
        template: Template,
    },
    Service(Service),
    Ingress(Ingress),
    ReferenceGrant(crate::gateway::ReferenceGrant),
    Policy(Policy),
    ClusterPolicy(ClusterPolicy),
    Node(Node),
}

/// One object to decode: a subtree of a YAML document, or a slice of JSON text
/// (decoded straight into its type, with no intermediate tree).
enum Item<'a> {
    Tree(Value),
    Json(&'a str),
}

#[derive(serde::Deserialize)]
struct KindProbe {
    kind: Option<String>,
}

#[derive(serde::Deserialize)]
struct ListProbe<'a> {
    kind: Option<String>,
    #[serde(borrow)]
    items: Option<Vec<&'a RawValue>>,
}

#[derive(serde::Deserialize)]
struct StatusProbe {
    status: Option<Value>,
}

impl Item<'_> {
    /// `status: {}`.
    fn has_empty_status(&self) -> bool {
        let status = match self {
            Item::Tree(v) => v.get("status").cloned(),
            Item::Json(text) => serde_json::from_str::<StatusProbe>(text)
                .ok()
                .and_then(|p| p.status),
        };
        matches!(status, Some(Value::Object(m)) if m.is_empty())
    }

    fn kind(&self) -> Option<String> {
        match self {
            Item::Tree(v) => v.get("kind").and_then(Value::as_str).map(str::to_string),
            Item::Json(text) => serde_json::from_str::<KindProbe>(text)
                .ok()
                .and_then(|k| k.kind),
        }
    }
}

/// An object with where to find it: `outer` prefixes its field paths in messages
/// (`items[3]`); its fields are located by parsing the text at `locate_at`, under `locate_prefix`.
struct Unit<'a> {
    item: Item<'a>,
    outer: FieldPath,
    locate_at: usize,
    locate_prefix: FieldPath,
    origin: Origin,
    /// The kind of a typed list's items (`PodList` → `Pod`), which API list endpoints
    /// leave out of each item.
    implied_kind: Option<String>,
}

/// `PodList` → `Pod`; `List` (mixed kinds) → none.
fn item_kind_of(list_kind: &str) -> Option<String> {
    list_kind
        .strip_suffix("List")
        .filter(|k| !k.is_empty())
        .map(str::to_string)
}

enum Decoded {
    Object(Box<Object>),
    Skipped(String),
    Failed,
}

/// Maps `f` over `items` on all cores, keeping order (large Lists decode in parallel).
fn par_map<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    if threads < 2 || items.len() < 512 {
        return items.into_iter().map(f).collect();
    }
    let per = items.len().div_ceil(threads);
    let mut chunks: Vec<Vec<T>> = Vec::with_capacity(threads);
    let mut rest = items.into_iter();
    loop {
        let chunk: Vec<T> = rest.by_ref().take(per).collect();
        if chunk.is_empty() {
            break;
        }
        chunks.push(chunk);
    }
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| scope.spawn(move || chunk.into_iter().map(f).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

fn units_of<'a>(
    doc: yaml::Document<'a>,
    source: &'a NamedText,
    lines: &yaml::LineIndex,
) -> Vec<Unit<'a>> {
    let doc_origin = Origin {
        file: source.name.clone(),
        line: doc.start.line,
        col: doc.start.col,
    };
    let items_path = |i: usize| FieldPath::root().key("items").index(i);
    match doc.body {
        Body::Tree(value) => match list_items(value) {
            Ok((implied_kind, items)) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| Unit {
                    item: Item::Tree(item),
                    outer: items_path(i),
                    locate_at: doc.offset,
                    locate_prefix: items_path(i),
                    origin: doc_origin.clone(),
                    implied_kind: implied_kind.clone(),
                })
                .collect(),
            Err(value) => vec![Unit {
                item: Item::Tree(value),
                outer: FieldPath::root(),
                locate_at: doc.offset,
                locate_prefix: FieldPath::root(),
                origin: doc_origin,
                implied_kind: None,
            }],
        },
        Body::Json(raw) => match serde_json::from_str::<ListProbe>(raw.get()) {
            Ok(ListProbe {
                kind: Some(kind),
                items: Some(items),
            }) if kind.ends_with("List") => {
                let implied_kind = item_kind_of(&kind);
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, raw)| {
                        let at = yaml::offset_in(&source.text, raw.get());
                        let pos = lines.position(at);
                        Unit {
                            item: Item::Json(raw.get()),
                            outer: items_path(i),
                            locate_at: at,
                            locate_prefix: FieldPath::root(),
                            origin: Origin {
                                file: source.name.clone(),
                                line: pos.line,
                                col: pos.col,
                            },
                            implied_kind: implied_kind.clone(),
                        }
                    })
                    .collect()
            }
            _ => vec![Unit {
                item: Item::Json(raw.get()),
                outer: FieldPath::root(),
                locate_at: doc.offset,
                locate_prefix: FieldPath::root(),
                origin: doc_origin,
                implied_kind: None,
            }],
        },
    }
}

/// Decodes one source into `objects`; returns how many objects (or, unparsable, the whole
/// file: 1) [`LoadOptions::skip_invalid`] left out.
pub fn decode_source(
    source: &NamedText,
    options: LoadOptions,
    objects: &mut Vec<Object>,
    skipped: &mut BTreeMap<String, usize>,
    diagnostics: &mut Vec<Diagnostic>,
) -> usize {
    let docs = match yaml::parse_documents(&source.text) {
        Ok(d) => d,
        Err(e) => {
            diagnostics.push(Diagnostic {
                severity: Severity::Error,
                file: source.name.clone(),
                line: e.at.line,
                col: e.at.col,
                field: "(document)".into(),
                message: e.message,
            });
            return 1;
        }
    };
    let mut left_out = 0;
    let lines = yaml::LineIndex::new(&source.text);
    let units: Vec<Unit> = docs
        .into_iter()
        .flat_map(|d| units_of(d, source, &lines))
        .collect();
    let results = par_map(units, |u| {
        let mut problems = Problems::default();
        let start = Position {
            line: u.origin.line,
            col: u.origin.col,
        };
        let place = (u.outer, u.locate_at, u.locate_prefix, start);
        let decoded = decode_object(u.item, u.implied_kind, u.origin, options, &mut problems);
        (decoded, problems, place)
    });
    // Fields are located only now, and only in texts that have something to report.
    let mut located: HashMap<usize, HashMap<FieldPath, Position>> = HashMap::new();
    for (decoded, problems, (outer, locate_at, prefix, start)) in results {
        match decoded {
            _ if options.skip_invalid && !problems.errors.is_empty() => left_out += 1,
            Decoded::Object(o) => objects.push(*o),
            Decoded::Skipped(kind) => *skipped.entry(kind).or_insert(0) += 1,
            Decoded::Failed => {}
        }
        if problems.errors.is_empty() && problems.warnings.is_empty() {
            continue;
        }
        let positions = located
            .entry(locate_at)
            .or_insert_with(|| yaml::locate_fields(&source.text, locate_at, &lines));
        for (sev, list) in [
            (Severity::Error, problems.errors),
            (Severity::Warning, problems.warnings),
        ] {
            for (path, message) in list {
                let at = path
                    .within(&prefix)
                    .prefixes()
                    .find_map(|pre| positions.get(&pre).copied())
                    .unwrap_or(start);
                diagnostics.push(Diagnostic {
                    severity: sev,
                    file: source.name.clone(),
                    line: at.line,
                    col: at.col,
                    field: path.within(&outer).to_string(),
                    message,
                });
            }
        }
    }
    left_out
}

/// `kind: List` (or `FooList`) with `items` → the items' implied kind and the items;
/// anything else → itself.
fn list_items(value: Value) -> Result<(Option<String>, Vec<Value>), Value> {
    let is_list = value
        .get("kind")
        .and_then(Value::as_str)
        .is_some_and(|k| k.ends_with("List"))
        && value.get("items").is_some_and(Value::is_array);
    if !is_list {
        return Err(value);
    }
    let implied = value
        .get("kind")
        .and_then(Value::as_str)
        .and_then(item_kind_of);
    match value {
        Value::Object(mut m) => match m.remove("items") {
            Some(Value::Array(items)) => Ok((implied, items)),
            _ => Ok((implied, Vec::new())),
        },
        other => Err(other),
    }
}

/// Typed decoding that records unknown fields and type errors with their paths.
fn typed<T: DeserializeOwned>(
    item: Item<'_>,
    options: LoadOptions,
    problems: &mut Problems,
) -> Option<T> {
    // Path tracking costs on every field, so the first pass goes without it; only
    // an object that fails is decoded again to find where.
    let first: Result<T, String> = match &item {
        Item::Tree(value) => {
            with_unknown_fields(value, options, problems).map_err(|e| e.to_string())
        }
        Item::Json(text) => {
            let mut de = serde_json::Deserializer::from_str(text);
            with_unknown_fields(&mut de, options, problems).map_err(|e| e.to_string())
        }
    };
    let message = match first {
        Ok(v) => return Some(v),
        Err(message) => message,
    };
    let path = match &item {
        Item::Tree(value) => serde_path_to_error::deserialize::<_, T>(value)
            .err()
            .map(|e| e.path().clone()),
        Item::Json(text) => {
            let mut de = serde_json::Deserializer::from_str(text);
            serde_path_to_error::deserialize::<_, T>(&mut de)
                .err()
                .map(|e| e.path().clone())
        }
    };
    let path = path
        .map(|p| FieldPath::from_path_to_error(&p))
        .unwrap_or_default();
    // serde_json appends " at line L column C" of the object's own text; the location comes from the path.
    let message = message
        .rfind(" at line ")
        .map_or(message.as_str(), |i| &message[..i])
        .to_string();
    problems.error(path, message);
    None
}

/// Decodes while recording fields the type does not know (k8s-openapi drops them silently).
fn with_unknown_fields<'de, D: serde::Deserializer<'de>, T: serde::Deserialize<'de>>(
    de: D,
    options: LoadOptions,
    problems: &mut Problems,
) -> Result<T, D::Error> {
    let mut unknown = Vec::new();
    let mut record = |p: serde_ignored::Path<'_>| unknown.push(FieldPath::from_ignored(&p));
    let result = T::deserialize(serde_ignored::Deserializer::new(de, &mut record));
    for path in unknown {
        let field = match path.0.last() {
            Some(crate::path::Segment::Key(k)) => k.clone(),
            _ => path.to_string(),
        };
        let message = match crate::suggest::nearest(&field, crate::suggest::FIELDS) {
            Some(known) => format!("unknown field {field:?} (did you mean {known:?}?)"),
            None => format!("unknown field {field:?}"),
        };
        if options.allow_unknown_fields {
            problems.warn(path, message);
        } else {
            problems.error(path, message);
        }
    }
    result
}

fn decode_object(
    item: Item<'_>,
    implied_kind: Option<String>,
    origin: Origin,
    options: LoadOptions,
    problems: &mut Problems,
) -> Decoded {
    let Some(kind) = item.kind().or(implied_kind) else {
        problems.error(FieldPath::root().key("kind"), "missing kind");
        return Decoded::Failed;
    };
    match decode_kind(&kind, item, origin, options, problems) {
        Some(Some(o)) => Decoded::Object(Box::new(o)),
        Some(None) => Decoded::Skipped(kind),
        None => Decoded::Failed,
    }
}

/// `Some(None)`: a kind weir does not model; `None`: the object failed to decode.
fn decode_kind(
    kind: &str,
    value: Item<'_>,
    origin: Origin,
    options: LoadOptions,
    problems: &mut Problems,
) -> Option<Option<Object>> {
    let root = FieldPath::root();
    let object = match kind {
        "Namespace" => {
            let ns: core::Namespace = typed(value, options, problems)?;
            let meta = meta(&ns.metadata, NameRule::Dns1123Label, origin, problems)?;
            Some(Object::Namespace {
                name: meta.name,
                labels: meta.labels,
                origin: meta.origin,
            })
        }
        "Pod" => {
            let pod: core::Pod = typed(value, options, problems)?;
            let meta = meta(&pod.metadata, NameRule::Dns1123Subdomain, origin, problems)?;
            let spec = pod.spec.as_ref();
            let template = template(spec, &meta.labels, &root.key("spec"), problems);
            let ips = pod_ips(pod.status.as_ref(), problems);
            Some(Object::Pod {
                meta,
                template,
                ips,
            })
        }
        "Deployment" => workload::<apps::Deployment>(value, options, origin, problems),
        "StatefulSet" => workload::<apps::StatefulSet>(value, options, origin, problems),
        "DaemonSet" => workload::<apps::DaemonSet>(value, options, origin, problems),
        "ReplicaSet" => workload::<apps::ReplicaSet>(value, options, origin, problems),
        "ReplicationController" => {
            workload::<core::ReplicationController>(value, options, origin, problems)
        }
        "Job" => workload::<batch::Job>(value, options, origin, problems),
        "CronJob" => workload::<batch::CronJob>(value, options, origin, problems),
        "Service" => {
            let svc: core::Service = typed(value, options, problems)?;
            let meta = meta(&svc.metadata, NameRule::Dns1035Label, origin, problems)?;
            Some(Object::Service(service(&svc, meta, problems)))
        }
        "Ingress" => {
            let ing: net::Ingress = typed(value, options, problems)?;
            let meta = meta(&ing.metadata, NameRule::Dns1123Subdomain, origin, problems)?;
            Some(Object::Ingress(ingress(&ing, meta, problems)))
        }
        "HTTPRoute" => {
            let o = typed(value, options, problems)?;
            crate::gateway::http_route(o, origin, problems).map(Object::Ingress)
        }
        "ReferenceGrant" => {
            let o = typed(value, options, problems)?;
            crate::gateway::reference_grant(o, origin, problems).map(Object::ReferenceGrant)
        }
        "NetworkPolicy" => {
            // networking/v1 dropped NetworkPolicy's status, but servers and dumps still
            // carry an empty one.
            let empty_status = value.has_empty_status();
            let np: net::NetworkPolicy = typed(value, options, problems)?;
            if empty_status {
                let status = FieldPath::root().key("status");
                problems.errors.retain(|(p, _)| *p != status);
                problems.warnings.retain(|(p, _)| *p != status);
            }
            let meta = meta(&np.metadata, NameRule::Dns1123Subdomain, origin, problems)?;
            let mode = mode(&np.metadata, problems);
            Some(Object::Policy(policy(&np, meta, mode, problems)))
        }
        "ClusterNetworkPolicy" => {
            let o = typed(value, options, problems)?;
            crate::tiers::cnp(o, origin, problems).map(Object::ClusterPolicy)
        }
        "AdminNetworkPolicy" => {
            let o = typed(value, options, problems)?;
            crate::tiers::anp(o, origin, problems).map(Object::ClusterPolicy)
        }
        "BaselineAdminNetworkPolicy" => {
            let o = typed(value, options, problems)?;
            crate::tiers::banp(o, origin, problems).map(Object::ClusterPolicy)
        }
        "Node" => {
            let node: core::Node = typed(value, options, problems)?;
            let meta = meta(&node.metadata, NameRule::Dns1123Subdomain, origin, problems)?;
            Some(Object::Node(self::node(&node, meta, problems)))
        }
        _ => return Some(None),
    };
    object.map(Some)
}

/// A kind whose pod template makes one endpoint.
trait Workload: DeserializeOwned {
    const KIND: EndpointKind;
    /// Where the pod template sits, for messages.
    const TEMPLATE: &'static [&'static str];
    fn metadata(&self) -> &ObjectMeta;
    fn template(&self) -> Option<&core::PodTemplateSpec>;
    /// apps/v1 kinds must have a selector (the API server rejects them without one).
    fn required_selector(
        &self,
    ) -> Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector> {
        None
    }
}

macro_rules! workload_kind {
    ($($t:ty => $kind:ident, [$($field:literal),*], |$o:ident| $template:expr;)*) => {$(
        impl Workload for $t {
            const KIND: EndpointKind = EndpointKind::$kind;
            const TEMPLATE: &'static [&'static str] = &[$($field),*];
            fn metadata(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn template(&self) -> Option<&core::PodTemplateSpec> {
                let $o = self;
                $template
            }
        }
    )*};
}

macro_rules! apps_kind {
    ($($t:ty => $kind:ident, |$o:ident| $template:expr;)*) => {$(
        impl Workload for $t {
            const KIND: EndpointKind = EndpointKind::$kind;
            const TEMPLATE: &'static [&'static str] = &["spec", "template"];
            fn metadata(&self) -> &ObjectMeta {
                &self.metadata
            }
            fn template(&self) -> Option<&core::PodTemplateSpec> {
                let $o = self;
                $template
            }
            fn required_selector(&self) -> Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector> {
                Some(&self.spec.selector)
            }
        }
    )*};
}

apps_kind! {
    apps::Deployment => Deployment, |o| Some(&o.spec.template);
    apps::StatefulSet => StatefulSet, |o| Some(&o.spec.template);
    apps::DaemonSet => DaemonSet, |o| Some(&o.spec.template);
    apps::ReplicaSet => ReplicaSet, |o| o.spec.template.as_ref();
}

workload_kind! {
    core::ReplicationController => ReplicationController, ["spec", "template"],
        |o| o.spec.as_ref().and_then(|s| s.template.as_ref());
    batch::Job => Job, ["spec", "template"], |o| o.spec.as_ref().map(|s| &s.template);
    batch::CronJob => CronJob, ["spec", "jobTemplate", "spec", "template"],
        |o| o.spec.job_template.spec.as_ref().map(|s| &s.template);
}

fn workload<T: Workload>(
    value: Item<'_>,
    options: LoadOptions,
    origin: Origin,
    problems: &mut Problems,
) -> Option<Object> {
    let obj: T = typed(value, options, problems)?;
    let meta = meta(obj.metadata(), NameRule::Dns1123Subdomain, origin, problems)?;
    let Some(tpl) = obj.template() else {
        problems.error(
            FieldPath::root().key("spec"),
            "a workload needs a pod template",
        );
        return None;
    };
    let path = T::TEMPLATE
        .iter()
        .fold(FieldPath::root(), |p, part| p.key(part));
    let tpl_labels = tpl
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    validate::check_labels(&tpl_labels, &path.key("metadata").key("labels"), problems);
    if let Some(sel) = obj.required_selector() {
        let at = FieldPath::root().key("spec").key("selector");
        let labels = sel.match_labels.clone().unwrap_or_default();
        if labels.is_empty() && sel.match_expressions.as_ref().is_none_or(Vec::is_empty) {
            problems.error(
                at,
                "required (apps/v1): a selector matching the pod template's labels",
            );
        } else if let Some((k, v)) = labels.iter().find(|(k, v)| tpl_labels.get(*k) != Some(*v)) {
            // matchLabels only; matchExpressions are left to the API server.
            problems.error(
                at.key("matchLabels").key(k),
                format!(
                    "{}={} does not match the pod template's labels (the API server rejects it)",
                    validate::shown(k),
                    validate::shown(v)
                ),
            );
        }
    }
    let template = template(tpl.spec.as_ref(), &tpl_labels, &path.key("spec"), problems);
    Some(Object::Workload {
        kind: T::KIND,
        meta,
        template,
    })
}

/// Checks identity and labels. `rule` is the name rule of the kind; namespaced kinds get
/// their namespace (default `default`) checked as an RFC 1123 label.
pub(crate) fn meta(
    m: &ObjectMeta,
    rule: NameRule,
    origin: Origin,
    problems: &mut Problems,
) -> Option<Meta> {
    let path = FieldPath::root().key("metadata");
    let namespaced = rule != NameRule::Dns1123Label;
    let Some(name) = m.name.clone().filter(|n| !n.is_empty()) else {
        problems.error(path.key("name"), "missing name");
        return None;
    };
    let namespace = if namespaced {
        m.namespace.clone().unwrap_or_else(|| "default".to_string())
    } else {
        String::new()
    };
    if namespaced {
        validate::check_namespace(&namespace, path.key("namespace"), problems);
    }
    if let Some(why) = rule.problem(&name) {
        problems.error(path.key("name"), why);
    }
    let labels = m.labels.clone().unwrap_or_default();
    validate::check_labels(&labels, &path.key("labels"), problems);
    let owner = m
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .map(|o| (o.kind.clone(), o.name.clone()));
    Some(Meta {
        namespace,
        name,
        labels,
        owner,
        origin,
    })
}

fn template(
    spec: Option<&core::PodSpec>,
    labels: &Labels,
    path: &FieldPath,
    problems: &mut Problems,
) -> Template {
    let mut ports = Vec::new();
    if let Some(spec) = spec {
        for (i, c) in spec.containers.iter().enumerate() {
            for (j, p) in c.ports.iter().flatten().enumerate() {
                let ppath = path.key("containers").index(i).key("ports").index(j);
                let protocol =
                    validate::protocol(p.protocol.as_deref(), &ppath.key("protocol"), problems);
                let at = ppath.key("containerPort");
                if validate::port_number(p.container_port, "containerPort", &at, problems).is_none()
                {
                    continue;
                }
                if let Some(name) = &p.name {
                    if !validate::is_port_name(name) {
                        problems.error(
                            ppath.key("name"),
                            format!("{name:?} is not a valid port name"),
                        );
                    }
                }
                ports.push(ContainerPort {
                    name: p.name.clone(),
                    protocol,
                    port: p.container_port as u16,
                });
            }
        }
    }
    ports.sort();
    ports.dedup();
    Template {
        labels: labels.clone(),
        ports,
        host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
    }
}

fn pod_ips(status: Option<&core::PodStatus>, problems: &mut Problems) -> Vec<IpAddr> {
    let Some(status) = status else {
        return Vec::new();
    };
    let path = FieldPath::root().key("status");
    let mut ips = Vec::new();
    let mut push = |text: &str, p: FieldPath| match text.parse::<IpAddr>() {
        Ok(ip) if !ips.contains(&ip) => ips.push(ip),
        Ok(_) => {}
        Err(_) => problems.error(p, format!("invalid IP address {text:?}")),
    };
    if let Some(ip) = &status.pod_ip {
        push(ip, path.key("podIP"));
    }
    for (i, ip) in status.pod_ips.iter().flatten().enumerate() {
        push(&ip.ip, path.key("podIPs").index(i).key("ip"));
    }
    ips
}

fn service(svc: &core::Service, meta: Meta, problems: &mut Problems) -> Service {
    let spec = svc.spec.clone().unwrap_or_default();
    let path = FieldPath::root().key("spec");
    let selector = spec.selector.clone().unwrap_or_default();
    validate::check_labels(&selector, &path.key("selector"), problems);
    let service_type = match spec.type_.as_deref() {
        None | Some("ClusterIP") => ServiceType::ClusterIP,
        Some("NodePort") => ServiceType::NodePort,
        Some("LoadBalancer") => ServiceType::LoadBalancer,
        Some("ExternalName") => ServiceType::ExternalName,
        Some(other) => {
            problems.error(
                path.key("type"),
                format!(
                    "{}: must be ClusterIP, NodePort, LoadBalancer or ExternalName",
                    validate::shown(other)
                ),
            );
            ServiceType::ClusterIP
        }
    };
    let external = matches!(
        service_type,
        ServiceType::NodePort | ServiceType::LoadBalancer
    );
    let mut ports = Vec::new();
    for (i, p) in spec.ports.iter().flatten().enumerate() {
        let ppath = path.key("ports").index(i);
        let protocol = validate::protocol(p.protocol.as_deref(), &ppath.key("protocol"), problems);
        if validate::port_number(p.port, "port", &ppath.key("port"), problems).is_none() {
            continue;
        }
        let target_port = match &p.target_port {
            None => None,
            Some(IntOrString::Int(n)) => {
                validate::port_number(*n, "targetPort", &ppath.key("targetPort"), problems)
                    .map(PortTarget::Number)
            }
            Some(IntOrString::String(s)) => Some(PortTarget::Named(s.clone())),
        };
        let node_port = match p.node_port {
            None => None,
            Some(_) if !external => {
                problems.error(
                    ppath.key("nodePort"),
                    format!("may not be used when type is {service_type:?}"),
                );
                None
            }
            Some(n) => validate::port_number(n, "nodePort", &ppath.key("nodePort"), problems),
        };
        ports.push(ServicePort {
            name: p.name.clone(),
            protocol,
            port: p.port as u16,
            target_port,
            node_port,
        });
    }
    let cluster_ip = spec
        .cluster_ip
        .as_deref()
        .filter(|s| !s.is_empty() && *s != "None")
        .and_then(|s| s.parse().ok());
    let external_local = match spec.external_traffic_policy.as_deref() {
        None | Some("Cluster") => false,
        Some("Local") if external => true,
        Some("Local") => {
            problems.error(
                path.key("externalTrafficPolicy"),
                "may only be set when type is NodePort or LoadBalancer",
            );
            false
        }
        Some(other) => {
            problems.error(
                path.key("externalTrafficPolicy"),
                format!("{}: must be Cluster or Local", validate::shown(other)),
            );
            false
        }
    };
    let mut source_ranges = Vec::new();
    for (i, r) in spec
        .load_balancer_source_ranges
        .iter()
        .flatten()
        .enumerate()
    {
        match r.trim().parse::<ipnet::IpNet>() {
            Ok(net) => source_ranges.push(net.trunc()),
            Err(_) => problems.error(
                path.key("loadBalancerSourceRanges").index(i),
                format!("{}: not a CIDR", validate::shown(r)),
            ),
        }
    }
    Service {
        namespace: meta.namespace,
        name: meta.name,
        selector,
        ports,
        cluster_ip,
        service_type,
        external_local,
        source_ranges,
        origin: meta.origin,
    }
}

/// An Ingress's backends (Services by name and port); resource backends are not Services
/// and are left out with a warning.
fn ingress(ing: &net::Ingress, meta: Meta, problems: &mut Problems) -> Ingress {
    let spec = ing.spec.clone().unwrap_or_default();
    let path = FieldPath::root().key("spec");
    let mut backends = Vec::new();
    let mut backend =
        |b: &net::IngressBackend, route: String, at: FieldPath, problems: &mut Problems| {
            let Some(svc) = &b.service else {
                problems.warn(
                    at.key("resource"),
                    "a resource backend is not a Service: left out of the traffic from outside",
                );
                return;
            };
            if let Some(why) = NameRule::Dns1035Label.problem(&svc.name) {
                problems.error(at.key("service").key("name"), why);
                return;
            }
            let port_path = at.key("service").key("port");
            let port = match svc.port.as_ref().map(|p| (p.number, p.name.as_deref())) {
                Some((Some(n), None)) => {
                    match validate::port_number(n, "port", &port_path.key("number"), problems) {
                        Some(n) => PortTarget::Number(n),
                        None => return,
                    }
                }
                Some((None, Some(name))) if validate::is_port_name(name) => {
                    PortTarget::Named(name.to_string())
                }
                Some((None, Some(name))) => {
                    problems.error(
                        port_path.key("name"),
                        format!("{}: not a port name", validate::shown(name)),
                    );
                    return;
                }
                Some((Some(_), Some(_))) => {
                    problems.error(port_path, "name and number are mutually exclusive");
                    return;
                }
                _ => {
                    problems.error(port_path, "must specify a port name or number");
                    return;
                }
            };
            backends.push(IngressBackend {
                route,
                namespace: meta.namespace.clone(),
                service: svc.name.clone(),
                port,
            });
        };
    if let Some(b) = &spec.default_backend {
        backend(b, "default".into(), path.key("defaultBackend"), problems);
    }
    for (i, rule) in spec.rules.iter().flatten().enumerate() {
        let host = rule
            .host
            .as_deref()
            .map_or_else(|| "*".into(), validate::printable);
        let rpath = path.key("rules").index(i).key("http").key("paths");
        for (j, p) in rule.http.iter().flat_map(|h| &h.paths).enumerate() {
            let route = format!(
                "{host}{}",
                validate::printable(p.path.as_deref().unwrap_or("/"))
            );
            backend(&p.backend, route, rpath.index(j).key("backend"), problems);
        }
    }
    Ingress {
        kind: RouteKind::Ingress,
        namespace: meta.namespace,
        name: meta.name,
        served_by: spec
            .ingress_class_name
            .as_deref()
            .map(validate::printable)
            .into_iter()
            .collect(),
        backends,
        origin: meta.origin,
    }
}

fn policy(np: &net::NetworkPolicy, meta: Meta, mode: Mode, problems: &mut Problems) -> Policy {
    let spec = np.spec.clone().unwrap_or_default();
    let path = FieldPath::root().key("spec");
    let pod_selector = spec
        .pod_selector
        .as_ref()
        .map(|s| validate::selector(s, &path.key("podSelector"), problems))
        .unwrap_or_default();
    let mut ingress: Vec<_> = spec
        .ingress
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, r)| {
            validate::rule(
                r.from.as_ref(),
                r.ports.as_ref(),
                "from",
                &path.key("ingress").index(i),
                problems,
            )
        })
        .collect();
    let mut egress: Vec<_> = spec
        .egress
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, r)| {
            validate::rule(
                r.to.as_ref(),
                r.ports.as_ref(),
                "to",
                &path.key("egress").index(i),
                problems,
            )
        })
        .collect();
    let (isolates_ingress, isolates_egress) = match &spec.policy_types {
        None => (true, !egress.is_empty()),
        Some(types) => {
            for (i, t) in types.iter().enumerate() {
                if t != "Ingress" && t != "Egress" {
                    problems.error(
                        path.key("policyTypes").index(i),
                        format!("unsupported policy type {t:?}: must be Ingress or Egress"),
                    );
                }
            }
            let has = |name: &str| types.iter().any(|t| t == name);
            (has("Ingress"), has("Egress"))
        }
    };
    for r in ingress.iter_mut().chain(egress.iter_mut()) {
        r.origin = meta.origin.clone();
    }
    Policy {
        namespace: meta.namespace,
        name: meta.name,
        pod_selector,
        isolates_ingress,
        isolates_egress,
        ingress,
        egress,
        mode,
        origin: meta.origin,
    }
}

/// The policy's mode from its [`MODE_ANNOTATION`]: absent is enforced; a value that is
/// neither `enforce` nor `audit` is an error (a typo must not quietly enforce or audit).
pub(crate) fn mode(m: &ObjectMeta, problems: &mut Problems) -> Mode {
    let Some(value) = m.annotations.as_ref().and_then(|a| a.get(MODE_ANNOTATION)) else {
        return Mode::Enforce;
    };
    Mode::parse(value).unwrap_or_else(|| {
        problems.error(
            FieldPath::root()
                .key("metadata")
                .key("annotations")
                .key(MODE_ANNOTATION),
            format!(
                "{MODE_ANNOTATION} {} must be one of: {}",
                validate::shown(value),
                Mode::VALUES.join(", ")
            ),
        );
        Mode::Enforce
    })
}

/// A node's labels and addresses (what `nodes` peers of cluster policies match).
fn node(node: &core::Node, meta: Meta, problems: &mut Problems) -> Node {
    let path = FieldPath::root().key("status").key("addresses");
    let mut addresses = Vec::new();
    let list = node.status.as_ref().and_then(|s| s.addresses.as_ref());
    for (i, a) in list.into_iter().flatten().enumerate() {
        if a.type_ != "InternalIP" && a.type_ != "ExternalIP" {
            continue; // Hostname, InternalDNS, …: names, not addresses
        }
        match a.address.parse::<IpAddr>() {
            Ok(ip) if !addresses.contains(&ip) => addresses.push(ip),
            Ok(_) => {}
            Err(_) => problems.error(
                path.index(i).key("address"),
                format!("invalid IP address {}", validate::shown(&a.address)),
            ),
        }
    }
    Node {
        name: meta.name,
        labels: meta.labels,
        addresses,
        origin: meta.origin,
    }
}
