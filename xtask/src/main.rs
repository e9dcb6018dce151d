//! The xstack build workflow: `cargo xtask setup | build | test | layers | demo | bench`.
//!
//! `setup` is idempotent and every other command runs it first, so a fresh
//! machine needs nothing but this repository and rustup. One module per
//! subcommand; [`util`] holds what they share.

mod bench;
mod build;
mod demo;
mod layers;
mod setup;
mod test;
mod util;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "xstack build workflow")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what building and testing need (idempotent; under 5 s when done).
    Setup,
    /// Build the XDP object (nightly, bpfel-unknown-none) and then `xstack`, which embeds it.
    Build {
        /// Build userspace in release mode.
        #[arg(long)]
        release: bool,
    },
    /// Run every test: unit tests, BPF_PROG_TEST_RUN tests and end-to-end tests.
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Check that no module of stack-user imports a module of a higher layer (docs/ARCHITECTURE.md).
    Layers,
    /// xstack next to the Linux kernel in about a minute: connections/s, keep-alive requests/s, a SYN flood; testbeds down after.
    Demo {
        /// Also the tools' own tables and progress, and a round trip (ARP, ping, SYN) with the engine's counters.
        #[arg(short, long)]
        verbose: bool,
    },
    /// Benchmarks on a fresh testbed: AF_XDP receive rate (copy mode) and bulk TCP throughput, each next to Linux.
    Bench {
        /// Seconds per measurement.
        #[arg(long, default_value_t = 5)]
        seconds: u32,
    },
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Setup => setup::setup(),
        Cmd::Build { release } => {
            setup::setup()?;
            build::build(release).map(|p| println!("build: {}", p.display()))
        }
        Cmd::Test { args } => test::test(&args),
        Cmd::Layers => layers::layers(),
        Cmd::Demo { verbose } => demo::demo(verbose),
        Cmd::Bench { seconds } => bench::bench(seconds),
    }
}
