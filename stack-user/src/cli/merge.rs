//! `xstack merge`: N segment runs of `xstack load` as one.

use std::path::PathBuf;

use anyhow::Result;

#[derive(clap::Args, Debug)]
pub(super) struct Args {
    /// The runs' `--json` summaries and `--hdr` interval logs, in any order.
    #[arg(required = true, value_name = "FILES")]
    files: Vec<PathBuf>,
    /// Write the merged summary as JSON to this file (the layout of `xstack load --json`).
    #[arg(long)]
    json: Option<PathBuf>,
}

pub(super) fn run(a: Args) -> Result<()> {
    let s = crate::tools::load::merge_files(&a.files)?;
    print!("{s}");
    if let Some(p) = &a.json {
        crate::tools::load::write_json(&s, p)?;
    }
    Ok(())
}
