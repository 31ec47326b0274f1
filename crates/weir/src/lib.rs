//! The `weir` command line: argument parsing, choosing renderers, exit codes. Logic lives
//! in the library crates; this crate only wires them together.
//!
//! Modules depend one way: `cli` (dispatch) → the commands (`hygiene`, `synth`, `enforce`, `agent`,
//! and with the `lab` feature `lab`, `demo`, `bench`) → `input`, `exit`. The product binary
//! is built without the `lab` feature: no lab, no demo app, no benchmarks in the agent's image.

mod agent;
#[cfg(feature = "lab")]
mod bench;
#[cfg(feature = "lab")]
mod bench_agent;
#[cfg(feature = "lab")]
mod bench_enforce;
mod cli;
#[cfg(feature = "lab")]
mod demo;
mod enforce;
pub mod exit;
mod hygiene;
mod input;
#[cfg(feature = "lab")]
mod lab;
mod synth;

pub use cli::run;
