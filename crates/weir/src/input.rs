//! The manifests a command reads, and turning them into an engine.

use std::path::PathBuf;

use anyhow::anyhow;
use clap::Args;
use weir_engine::{Engine, Options, PortSet, Side};
use weir_manifest::{LoadError, LoadOptions};
use weir_report::{Focus, Selection};

use crate::exit::Failure;

/// A live cluster that has not answered every list by then is an error, not a hang.
const LIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

#[derive(Args)]
pub struct Input {
    /// Manifest files or directories (recursive; *.yaml, *.yml, *.json), or - for stdin.
    #[arg(required_unless_present_any = ["cluster", "kubeconfig", "context"], conflicts_with_all = ["cluster", "kubeconfig", "context"])]
    pub paths: Vec<PathBuf>,
    /// Read a live cluster instead of files: Namespaces, Pods, their workloads, Services,
    /// Nodes, NetworkPolicies and the cluster-wide tiers (ClusterNetworkPolicies,
    /// AdminNetworkPolicies, BaselineAdminNetworkPolicies), validated like manifests. Kubeconfig from --kubeconfig,
    /// $KUBECONFIG or ~/.kube/config, else the in-cluster service account.
    #[arg(long)]
    pub cluster: bool,
    /// The kubeconfig file of the live cluster (implies --cluster).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context of the live cluster (implies --cluster).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// Report unknown fields as warnings instead of errors.
    #[arg(long)]
    pub allow_unknown_fields: bool,
    /// Leave out what fails validation (an object with an error, a file that is not YAML or
    /// not text, a repeated object) and analyse the rest; what was left out is listed on
    /// stderr. For messy repositories: the API server would reject those objects too.
    #[arg(long)]
    pub skip_invalid: bool,
    /// Answer as if audited policies (annotation weir.dev/mode: audit) were enforced. By
    /// default they are left out: the answer is what the dataplane does.
    #[arg(long)]
    pub as_enforced: bool,
    /// Do not match ipBlock peers against pod IPs (Cilium / np-guard behaviour).
    #[arg(long)]
    pub no_ipblock_pods: bool,
    /// Do not print load warnings on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

impl Input {
    /// Loads the input, printing warnings and skipped kinds; validation errors become
    /// exit code 2.
    pub fn load(&self) -> Result<weir_manifest::Loaded, Failure> {
        let options = LoadOptions {
            allow_unknown_fields: self.allow_unknown_fields,
            skip_invalid: self.skip_invalid,
        };
        let result = match self.live() {
            Some(connect) => {
                let snapshot = weir_kube::snapshot(&connect, &weir_kube::analysed(), LIVE_TIMEOUT)
                    .map_err(|e| Failure::Other(anyhow!("{}: {e}", connect.describe())))?;
                if !snapshot.forbidden.is_empty() && !self.quiet {
                    eprintln!(
                        "warning: not allowed to list {} in {}: replicas are shown one by one and Services are not read",
                        snapshot.forbidden.join(", "),
                        connect.describe()
                    );
                }
                weir_manifest::load(&snapshot.objects, options)
            }
            None => weir_manifest::load_paths(&self.paths, options),
        };
        match result {
            Ok(loaded) => {
                // Left out: said even under --quiet, since the answer is about less than was
                // given.
                for d in &loaded.invalid {
                    eprintln!("{d}");
                }
                if loaded.left_out > 0 || !loaded.invalid.is_empty() {
                    eprintln!(
                        "warning: --skip-invalid left out {} object(s) or file(s) with {} error(s) above; the rest of {} was analysed",
                        loaded.left_out,
                        loaded.invalid.len(),
                        self.describe()
                    );
                }
                if !self.quiet {
                    for w in &loaded.warnings {
                        eprintln!("{w}");
                    }
                    if !loaded.skipped.is_empty() {
                        let kinds: Vec<String> = loaded
                            .skipped
                            .iter()
                            .map(|(kind, n)| {
                                let shown = weir_manifest::shown(kind);
                                match weir_manifest::suggest::nearest(
                                    kind,
                                    weir_manifest::suggest::KINDS,
                                ) {
                                    Some(known) => format!("{n} {shown} (did you mean {known}?)"),
                                    None => format!("{n} {shown}"),
                                }
                            })
                            .collect();
                        eprintln!(
                            "note: skipped kinds weir does not model: {}",
                            kinds.join(", ")
                        );
                    }
                    let c = &loaded.cluster;
                    if c.endpoints.is_empty() {
                        // An empty table with exit 0 would look like "nothing is allowed".
                        eprintln!(
                            "warning: no pods or workloads in {} (read {} namespace(s), {} NetworkPolicy(ies), {} cluster-wide policy(ies), {} Service(s)): nothing can be selected, so there is nothing to analyse; give weir the Pods, Deployments, StatefulSets… the policies govern",
                            self.describe(),
                            c.namespaces.len(),
                            c.policies.len(),
                            c.cluster_policies.len(),
                            c.services.len()
                        );
                    }
                }
                Ok(loaded)
            }
            Err(e) => Err(load_failure(e, "the input; nothing was analysed")),
        }
    }

    /// The input's cluster as the analyses answer for it: as the dataplane enforces it
    /// (audited policies left out, said on stderr), or with `--as-enforced` as written.
    pub fn cluster(&self) -> Result<weir_model::Cluster, Failure> {
        Ok(self.enforced(self.load()?.cluster))
    }

    /// `cluster` as the analyses answer for it (see [`Input::cluster`]).
    pub fn enforced(&self, cluster: weir_model::Cluster) -> weir_model::Cluster {
        let audited = cluster.audited();
        if self.as_enforced || audited == 0 {
            return cluster;
        }
        if !self.quiet {
            eprintln!(
                "note: {audited} audited NetworkPolicy(ies) ({}: audit) left out: this answers for what is enforced; --as-enforced answers as if they were",
                weir_model::MODE_ANNOTATION
            );
        }
        cluster.without_audited()
    }

    pub fn engine_options(&self) -> Options {
        Options {
            ipblock_matches_pods: !self.no_ipblock_pods,
        }
    }

    /// The live cluster to read, when not files.
    fn live(&self) -> Option<weir_kube::Connect> {
        (self.cluster || self.kubeconfig.is_some() || self.context.is_some()).then(|| {
            weir_kube::Connect {
                kubeconfig: self.kubeconfig.clone(),
                context: self.context.clone(),
            }
        })
    }

    /// The input paths or the cluster, for titles.
    pub fn describe(&self) -> String {
        if let Some(connect) = self.live() {
            return connect.describe();
        }
        self.paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Input that could not be loaded: each located error on stderr, then exit 2 (a missing or
/// unreadable path is the user's input too).
pub fn load_failure(e: LoadError, what: &str) -> Failure {
    match e {
        LoadError::Invalid(diags) => {
            for d in &diags {
                eprintln!("{d}");
            }
            Failure::Invalid(format!("{} error(s) in {what}", diags.len()))
        }
        io @ LoadError::Io { .. } => Failure::Invalid(io.to_string()),
    }
}

/// An endpoint (`namespace/name`) or an address, named on the command line.
pub fn resolve(engine: &Engine, text: &str) -> Result<Side, Failure> {
    engine.resolve(text).ok_or_else(|| {
        Failure::Invalid(format!(
            "{text:?}: no such endpoint (expected namespace/name or an IP address)"
        ))
    })
}

/// Locations of fields inside the input's objects. The engine only knows where an object
/// starts (`file:line:col`); this reads and indexes each file once more to find its fields.
#[derive(Default)]
pub struct Fields {
    files: std::collections::HashMap<String, Option<weir_manifest::yaml::FieldIndex>>,
    /// (object location, field) → the field's location: a rule is named by many
    /// connections, and finding it costs a pass over its file.
    found: std::collections::HashMap<(String, String), String>,
}

impl Fields {
    /// Points `location` (`file:line:col` of an object) at `field` of that object
    /// (`spec.ingress[1]`). Left as it is where the field cannot be found: stdin, a file
    /// changed since, an item of a YAML List.
    pub fn point(&mut self, location: &mut String, field: &str) {
        let key = (std::mem::take(location), field.to_string());
        if let Some(found) = self.found.get(&key) {
            *location = found.clone();
            return;
        }
        let mut at = key.0.clone();
        self.find(&mut at, field);
        *location = at.clone();
        self.found.insert(key, at);
    }

    fn find(&mut self, location: &mut String, field: &str) {
        let mut parts = location.rsplitn(3, ':');
        let (Some(col), Some(line), Some(file)) = (parts.next(), parts.next(), parts.next()) else {
            return;
        };
        let (Ok(line), Ok(col)) = (line.parse(), col.parse()) else {
            return;
        };
        let index = self.files.entry(file.to_string()).or_insert_with(|| {
            std::fs::read_to_string(file)
                .ok()
                .map(weir_manifest::yaml::FieldIndex::new)
        });
        if let Some(at) = index.as_ref().and_then(|i| i.locate(line, col, field)) {
            *location = format!("{file}:{}:{}", at.line, at.col);
        }
    }
}

/// `--focus`, `--peer`, `--direction`: a large answer narrowed to some endpoints.
#[derive(Args)]
pub struct FocusArgs {
    /// Show only connections of these endpoints: namespace/name, namespace/* or a pod label
    /// selector k=v,k2=v2.
    #[arg(long, value_name = "SELECTION", value_parser = Selection::parse)]
    pub focus: Option<Selection>,
    /// …whose other side is one of these (same forms, or `outside`).
    #[arg(long, value_name = "SELECTION", value_parser = Selection::parse, requires = "focus")]
    pub peer: Option<Selection>,
    /// …where the focused endpoints are the destination (ingress) or the source (egress).
    #[arg(long, value_enum, requires = "focus")]
    pub direction: Option<FocusDirection>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum FocusDirection {
    Ingress,
    Egress,
}

impl FocusArgs {
    /// The focus, on the ports of `port` (`PROTOCOL/PORT[-END]`) when given.
    pub fn focus(&self, port: Option<PortSet>) -> Focus {
        Focus {
            focus: self.focus.clone(),
            peer: self.peer.clone(),
            direction: self.direction.map(|d| match d {
                FocusDirection::Ingress => weir_model::Direction::Ingress,
                FocusDirection::Egress => weir_model::Direction::Egress,
            }),
            ports: port,
        }
    }
}
