//! Synthetic clusters.
//!
//! - [`scenario`] (feature `proptest`): small random clusters that exercise every
//!   corner of the semantics, for differential tests (engine vs oracle, and later
//!   engine vs dataplane vs probes — one generator for all).
//! - [`dump`]: large kubectl-shaped dumps (Namespaces, Deployments, ReplicaSets,
//!   Pods with owner references and IPs, NetworkPolicies) for benchmarks.

pub mod dump;
#[cfg(feature = "proptest")]
pub mod scenario;
