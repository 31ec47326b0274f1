//! The `weir` command line: argument parsing, choosing renderers, exit codes.
//! Logic lives in the library crates; this crate only wires them together.

mod agent;
mod bench;
mod bench_enforce;
mod cli;
mod demo;
mod hygiene;
mod lab;

pub use cli::run;
