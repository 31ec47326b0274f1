//! Generated clusters (not policy synthesis: that is `weir synth`).
//!
//! - [`scenario`] (feature `proptest`): small random clusters that exercise every
//!   corner of the semantics, for differential tests (engine vs oracle, and later
//!   engine vs dataplane vs probes — one generator for all).
//! - [`dump`]: large kubectl-shaped dumps (Namespaces, Deployments, ReplicaSets,
//!   Pods with owner references and IPs, NetworkPolicies) for benchmarks.
//! - [`hostile`]: a cluster whose every name and label is an attack on the nft renderer.

pub mod dump;
pub mod hostile;
#[cfg(feature = "proptest")]
pub mod scenario;
