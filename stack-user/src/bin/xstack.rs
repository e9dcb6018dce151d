//! The `xstack` command line.

use std::{net::Ipv4Addr, process::ExitCode, time::Duration};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use xstack::{
    control,
    serve::{self, ServeConfig},
    testbed::Testbed,
    xdp::AttachMode,
    xsk::{XskConfig, XskMode},
};

/// xstack — an eBPF/XDP kernel-bypass TCP stack.
#[derive(Parser, Debug)]
#[command(name = "xstack", version, about, long_about = None)]
struct Cli {
    /// More log output (-v: debug, including XDP program messages; -vv: trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Manage the built-in testbed: two network namespaces joined by a veth pair.
    #[command(
        after_help = "Examples:\n  xstack testbed up\n  xstack testbed up --name lab --queues 2\n  xstack testbed status --name lab\n  xstack testbed down --name lab"
    )]
    Testbed {
        #[command(subcommand)]
        action: TestbedAction,
    },
    /// Run the stack on an interface: XDP + one AF_XDP socket and engine per rx queue.
    #[command(
        after_help = "Examples:\n  ip netns exec xs-default-stack xstack serve --iface xs-default-s --ip 198.18.0.2 --port 8080 --app echo\n  xstack serve --iface eth1 --ip 198.18.1.10 --port 80,443 --queues 4 --xsk-mode zerocopy\n  xstack serve --iface xs-lab-s --ip 198.18.0.2 --port 8080 --duration 30"
    )]
    Serve(ServeArgs),
    /// Show the counters of a running instance (read over its control socket).
    #[command(
        after_help = "Examples:\n  xstack stats\n  xstack stats --iface xs-default-s\n  xstack stats --json | jq .xdp"
    )]
    Stats {
        /// Interface of the instance (needed when several run).
        #[arg(long)]
        iface: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum TestbedAction {
    /// Create the namespaces, the veth pair and the peer address (idempotent).
    #[command(after_help = "Example:\n  xstack testbed up --name lab --queues 2")]
    Up {
        /// Testbed name (1-10 of a-z, 0-9).
        #[arg(long, default_value = "default")]
        name: String,
        /// rx/tx queues on each veth end.
        #[arg(long, default_value_t = 1)]
        queues: u32,
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

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// Interface to attach to (in the current network namespace).
    #[arg(long)]
    iface: String,
    /// IPv4 address the stack owns (not configured on the kernel interface).
    #[arg(long)]
    ip: Ipv4Addr,
    /// TCP port(s) to serve, comma separated.
    #[arg(long, value_delimiter = ',', required = true)]
    port: Vec<u16>,
    /// Application on the ports: echo (RFC 862), discard (RFC 863) or a fixed-body HTTP/1.1 server.
    #[arg(long, value_enum, default_value = "echo")]
    app: xstack::engine::App,
    /// Body size of `--app http` responses.
    #[arg(long, default_value_t = 64)]
    response_bytes: usize,
    /// AF_XDP sockets, one per rx queue 0..N (default: every rx queue of the interface).
    #[arg(long)]
    queues: Option<u32>,
    /// XDP attach mode: driver with generic fallback, or forced.
    #[arg(long, value_enum, default_value = "auto")]
    xdp_mode: AttachMode,
    /// AF_XDP bind mode: zero-copy where supported, or forced.
    #[arg(long, value_enum, default_value = "auto")]
    xsk_mode: XskMode,
    /// UMEM frames per queue.
    #[arg(long, default_value_t = 4096)]
    frames: u32,
    /// Entries per ring.
    #[arg(long, default_value_t = 2048)]
    ring_size: u32,
    /// Stop after this many seconds (default: run until SIGINT/SIGTERM).
    #[arg(long)]
    duration: Option<f64>,
    /// Pin the XDP maps under /sys/fs/bpf/xstack/ (needs bpffs) for bpftool.
    #[arg(long)]
    pin_maps: bool,
    /// Spin on the rings instead of sleeping in poll() when idle.
    #[arg(long)]
    busy_poll: bool,
}

fn init_logging(verbose: u8) {
    // stack_ebpf is the target of the XDP program's own aya-log records.
    let level = match verbose {
        0 => "info",
        1 => "info,xstack=debug,stack_ebpf=debug",
        _ => "debug,xstack=trace,stack_ebpf=trace",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(level))
        .format_timestamp_millis()
        .init();
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Testbed { action } => match action {
            TestbedAction::Up { name, queues } => {
                let t = Testbed::new(&name)?;
                t.up(queues)?;
                print!("{}", t.status());
                println!(
                    "try: ip netns exec {} xstack serve --iface {} --ip {} --port 8080",
                    t.stack_ns, t.stack_if, t.stack_ip
                );
            }
            TestbedAction::Down { name } => {
                let t = Testbed::new(&name)?;
                let existed = t.exists();
                t.down()?;
                println!(
                    "testbed {name}: {}",
                    if existed { "removed" } else { "was not up" }
                );
            }
            TestbedAction::Status { name, json } => {
                let t = Testbed::new(&name)?;
                let st = t.status();
                if json {
                    println!("{}", serde_json::to_string_pretty(&st)?);
                } else {
                    print!("{st}");
                }
            }
        },
        Command::Serve(a) => {
            if let Some(d) = a.duration {
                if !(d > 0.0 && d.is_finite()) {
                    anyhow::bail!("--duration {d} is invalid: give a positive number of seconds");
                }
            }
            let config = ServeConfig {
                iface: a.iface,
                ip: a.ip,
                ports: a.port,
                app: a.app,
                response_bytes: a.response_bytes,
                tcp: xstack::tcp::TcpConfig::default(),
                queues: a.queues,
                xdp_mode: a.xdp_mode,
                xsk: XskConfig {
                    frames: a.frames,
                    ring_size: a.ring_size,
                    mode: a.xsk_mode,
                    ..XskConfig::default()
                },
                duration: a.duration.map(Duration::from_secs_f64),
                pin_maps: a.pin_maps,
                busy_poll: a.busy_poll,
            };
            let stats = serve::run(config)?;
            println!("final counters:");
            print!("{}", serve::render_stats(&stats));
        }
        Command::Stats { iface, json } => {
            let v = control::query_stats(iface.as_deref()).context("reading counters")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print!("{}", serve::render_stats(&v));
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the cause chain, outermost first.
            let msg = e
                .chain()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(": ");
            eprintln!("xstack: error: {msg}");
            ExitCode::FAILURE
        }
    }
}
