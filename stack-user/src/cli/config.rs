//! `xstack config`: change fast-path settings of a running instance.

use anyhow::{Context, Result};

use crate::runtime::control;

#[derive(clap::Args, Debug)]
pub(super) struct Args {
    /// Interface of the instance (needed when several run).
    #[arg(long)]
    iface: Option<String>,
    /// key=value settings.
    #[arg(required = true)]
    settings: Vec<String>,
}

pub(super) fn run(a: Args) -> Result<()> {
    let v = control::set(a.iface.as_deref(), &a.settings).context("changing settings")?;
    if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
        anyhow::bail!("{e}");
    }
    println!("{}", serde_json::to_string_pretty(&v["fastpath"])?);
    Ok(())
}
