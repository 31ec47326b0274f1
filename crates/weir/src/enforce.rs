//! `weir enforce`: compile the policy to nftables and apply it to a namespace, or print it.

use std::io::Write;

use anyhow::anyhow;
use clap::Args;
use weir_engine::Engine;
use weir_nft::apply::{Enforcer, NftCli};
use weir_nft::{compile, Scope};

use crate::exit::{self, Failure};
use crate::input::Input;

#[derive(Args)]
pub struct EnforceArgs {
    #[command(flatten)]
    pub input: Input,
    /// Program every node of this lab with its own pods' policy.
    #[cfg(feature = "lab")]
    #[arg(long, conflicts_with_all = ["netns", "print"])]
    pub lab: Option<String>,
    /// Program this network namespace (/run/netns/NAME) with the whole cluster's policy.
    #[arg(long, conflicts_with = "print")]
    pub netns: Option<String>,
    /// Print the nftables transaction instead of applying it.
    #[arg(long)]
    pub print: bool,
}

pub fn enforce(args: EnforceArgs, out: &mut dyn Write) -> Result<u8, Failure> {
    let loaded = args.input.load()?;
    let engine = Engine::with_options(&loaded.cluster, args.input.engine_options());
    let ruleset = compile(&engine, Scope::All);
    if args.print {
        write!(out, "{}", ruleset.render())?;
        return Ok(exit::OK);
    }
    let Some(netns) = args.netns else {
        return Err(Failure::Invalid(
            "say where: --netns NAME or --print".into(),
        ));
    };
    let mut enforcer = Enforcer::new(NftCli {
        netns: Some(netns.clone()),
    });
    enforcer.verify = true;
    let a = enforcer
        .apply(ruleset)
        .map_err(|e| anyhow!("{netns}: {e}"))?;
    writeln!(out, "{netns}: {a}")?;
    Ok(exit::OK)
}
