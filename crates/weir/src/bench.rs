use std::io::Write;

use clap::Subcommand;

use crate::cli::Failure;

#[derive(Subcommand)]
pub enum BenchCommand {}

pub(crate) fn run(cmd: BenchCommand, _out: &mut dyn Write) -> Result<u8, Failure> {
    match cmd {}
}
