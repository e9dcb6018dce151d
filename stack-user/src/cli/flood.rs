//! `xstack flood`: a bounded flood of spoofed TCP segments. Its options
//! ([`FloodArgs`](crate::tools::flood::FloodArgs)) live with the generator,
//! which validates them.

use anyhow::Result;

pub(super) use crate::tools::flood::FloodArgs as Args;

pub(super) fn run(a: Args) -> Result<()> {
    let r = crate::tools::flood::run(&a.to_config()?)?;
    println!("{r}");
    Ok(())
}
