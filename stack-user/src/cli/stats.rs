//! `xstack stats`: the counters of a running instance, over its control
//! socket (mode 0600: run it as the user that runs `xstack serve`, or root).

use anyhow::{Context, Result};

use crate::runtime::{control, serve};

#[derive(clap::Args, Debug)]
pub(super) struct Args {
    /// Interface of the instance (needed when several run).
    #[arg(long)]
    iface: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub(super) fn run(a: Args) -> Result<()> {
    let v = control::query_stats(a.iface.as_deref()).context("reading counters")?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", serve::render_stats(&v));
    }
    Ok(())
}
