//! `xstack testbed`: create, remove and show the two-namespace testbed.

use anyhow::Result;
use clap::Subcommand;

use crate::tools::testbed::{PeerProfile, Testbed};

#[derive(clap::Args, Debug)]
pub(super) struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand, Debug)]
pub(super) enum Action {
    /// Create the namespaces, the veth pair and the peer address (idempotent).
    #[command(
        after_help = "Examples:\n  xstack testbed up --name lab --queues 2\n  xstack testbed up --name lab --peer-profile tuned"
    )]
    Up {
        /// Testbed name (1-10 of a-z, 0-9).
        #[arg(long, default_value = "default")]
        name: String,
        /// rx/tx queues on each veth end.
        #[arg(long, default_value_t = 1)]
        queues: u32,
        /// The Linux peer's setup: `default` is what a plain veth and a Linux host give (tx-checksum/TSO offloads on, GRO off); `tuned` turns the offloads off on both ends and GRO on at the peer.
        #[arg(long, value_enum, default_value_t = PeerProfile::Default)]
        peer_profile: PeerProfile,
    },
    /// Remove everything `up` made (idempotent).
    #[command(after_help = "Example:\n  xstack testbed down --name lab")]
    Down {
        /// Testbed name.
        #[arg(long, default_value = "default")]
        name: String,
    },
    /// Print names, addresses, MACs and attached XDP programs.
    #[command(
        after_help = "Examples:\n  xstack testbed status\n  xstack testbed status --name lab --json"
    )]
    Status {
        /// Testbed name.
        #[arg(long, default_value = "default")]
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub(super) fn run(a: Args) -> Result<()> {
    match a.action {
        Action::Up {
            name,
            queues,
            peer_profile,
        } => {
            let t = Testbed::new(&name)?;
            t.up(queues, peer_profile)?;
            println!("peer profile: {peer_profile}");
            print!("{}", t.status());
            println!(
                "try: ip netns exec {} xstack serve --iface {} --ip {} --port 8080",
                t.stack_ns, t.stack_if, t.stack_ip
            );
        }
        Action::Down { name } => {
            let t = Testbed::new(&name)?;
            let existed = t.exists();
            t.down()?;
            println!(
                "testbed {name}: {}",
                if existed { "removed" } else { "was not up" }
            );
        }
        Action::Status { name, json } => {
            let t = Testbed::new(&name)?;
            let st = t.status();
            if json {
                println!("{}", serde_json::to_string_pretty(&st)?);
            } else {
                print!("{st}");
            }
        }
    }
    Ok(())
}
