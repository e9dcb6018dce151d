//! `xstack doctor`: whether an interface will work, and how fast, on one
//! screen (see [`crate::tools::doctor`]).

use std::net::IpAddr;

use anyhow::Result;

use crate::tools::doctor::{self, Options};

#[derive(clap::Args, Debug)]
pub(super) struct Args {
    /// The interface xstack would serve on (in this network namespace).
    #[arg(long)]
    iface: String,
    /// The address it would own, IPv4 or IPv6: says whether the kernel shares it.
    #[arg(long)]
    ip: Option<IpAddr>,
    /// Also attach the XDP program in driver mode and bind an AF_XDP socket
    /// with zero-copy on queue 0, then undo both (needs root; on some NICs an
    /// attach resets the rings: a short interruption of traffic).
    #[arg(long)]
    probe: bool,
    /// Print JSON instead of the screen.
    #[arg(long)]
    json: bool,
}

/// Prints the report; exits 1 (after printing it) when the interface will
/// not work.
pub(super) fn run(a: Args) -> Result<()> {
    let facts = doctor::gather(&Options {
        iface: a.iface,
        ip: a.ip,
        probe: a.probe,
    })?;
    let report = doctor::assess(facts);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    if !report.works {
        use std::io::Write;
        let _ = std::io::stdout().flush();
        std::process::exit(1);
    }
    Ok(())
}
