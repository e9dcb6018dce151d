//! The `xstack` command line: the clap parser (`Cli`) and one module per
//! subcommand that owns its arguments and its `run`; `bin/xstack.rs` only
//! calls [`main`].

mod bench;
mod config;
mod doctor;
mod flood;
mod kserve;
mod load;
mod merge;
mod serve;
mod ss;
mod stats;
mod testbed;

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

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
    Testbed(testbed::Args),
    /// Run the stack on an interface: XDP + one AF_XDP socket and engine per rx queue.
    #[command(
        after_help = "Examples:\n  ip netns exec xs-default-stack xstack serve --iface xs-default-s --ip 198.18.0.2 --port 8080 --app echo\n  xstack serve --iface eth1 --ip 198.18.1.10 --port 80,443 --queues 4 --xsk-mode zerocopy\n  xstack serve --iface xs-lab-s --ip 198.18.0.2 --port 8080 --duration 30"
    )]
    Serve(serve::Args),
    /// Run the same applications on Linux kernel sockets (tokio): the baseline.
    #[command(
        after_help = "Examples:\n  ip netns exec xs-lab-stack xstack kserve --listen 198.18.0.2:80 --app http\n  xstack kserve --listen 0.0.0.0:7 --app echo --threads 2"
    )]
    Kserve(kserve::Args),
    /// Generate load against a server: connections, requests, latency.
    #[command(
        after_help = "Examples:\n  # closed loop, a new connection per request, against a kernel server in the peer netns\n  ip netns exec xs-lab-stack xstack load --iface xs-lab-s --ip 198.18.0.2 --target 198.18.0.1:80 --concurrency 64 --duration 10\n  # open loop at 20k connections/s, HTTP, server closes first\n  xstack load --iface xs-lab-s --ip 198.18.0.2 --target 198.18.0.1:80 --rate 20000 --http --close server --duration 10 --json out.json --hdr out.hlog\n  # the same load over kernel sockets\n  xstack load --kernel --target 198.18.0.1:80 --concurrency 64 --duration 10\n  # your own lab, outside 198.18.0.0/15 (refused without --allow-target)\n  xstack load --kernel --target 10.20.0.5:80 --allow-target 10.20.0.0/16 --concurrency 8 --duration 10"
    )]
    Load(Box<load::Args>),
    /// Merge the results of N `xstack load --segment I/N` runs into one: summed counts, errors and rates, exact percentiles from the summed HdrHistogram logs.
    #[command(
        after_help = "Examples:\n  xstack merge seg0.json seg0.hlog seg1.json seg1.hlog\n  xstack merge runs/*.json runs/*.hlog --json merged.json"
    )]
    Merge(merge::Args),
    /// Change fast-path settings (cookies, SYN limits, prefix lists) of a running instance, without reattaching.
    #[command(
        after_help = "Examples:\n  xstack config --iface xs-lab-s tcp_syncookies=always\n  xstack config syn_source_rate=50 syn_source_burst=10 deny=198.18.200.0/24\n  xstack config syn_rate_on=20000 syn_rate_off=5000 undeny=198.18.200.0/24\nKeys: tcp_syncookies (never|auto|always), syn_rate_on, syn_rate_off, syn_window_ms, syn_source_rate, syn_source_burst, syn_global_rate, syn_global_burst, syn_source_prefix6 (1-128, IPv6 sources per bucket), unknown_rate_on (segments/s for no connection at which XDP drops them; 0 never), mss, wscale, window, ecn, allow_only, deny, undeny, allow, unallow"
    )]
    Config(config::Args),
    /// Send a bounded flood of spoofed TCP segments (SYN, ACK, RST) from a prefix in 198.18.0.0/15 through AF_XDP.
    #[command(
        after_help = "Examples:\n  ip netns exec xs-lab-peer xstack flood --iface xs-lab-p --target 198.18.0.2:8080 --rate 100000 --duration 5\n  xstack flood --iface xs-lab-p --target 198.18.0.2:8080 --rate 0 --duration 3 --kind mixed --sources 198.18.128.0/17\nTargets inside 198.18.0.0/15 (RFC 2544) only, unless --allow-target CIDR names your own lab's prefix (a /8 or narrower); spoofed sources always inside 198.18.0.0/15."
    )]
    Flood(flood::Args),
    /// Benchmarks: with no subcommand, xstack vs the Linux kernel stack (load generators and servers, one run); `synflood` (legit connections under a SYN flood: Linux, Linux+SYNPROXY, xstack); `cookies` (our cookie vs the kernel's helpers).
    #[command(
        after_help = "Examples:\n  xstack bench\n  xstack bench --seconds 10 --out target/bench\n  xstack bench --runs 3\n  xstack bench synflood\n  xstack bench cookies"
    )]
    Bench(bench::Args),
    /// Show the counters of a running instance (read over its control socket).
    #[command(
        after_help = "Examples:\n  xstack stats\n  xstack stats --iface xs-default-s\n  xstack stats --json | jq .xdp"
    )]
    Stats(stats::Args),
    /// Show the connections of a running instance as `ss -tnoi` does: queues, bytes, windows, cwnd, RTT and the timers.
    #[command(
        after_help = "Examples:\n  xstack ss\n  xstack ss --iface xs-default-s --state close-wait\n  xstack ss --json | jq '.[] | select(.unacked > 0)'"
    )]
    Ss(ss::Args),
    /// Check an interface: will xstack work on it, and how fast (XDP mode, zero-copy, channels, offloads, MTU, the veth peer), each problem with the command that fixes it.
    #[command(
        after_help = "Examples:\n  ip netns exec xs-default-stack xstack doctor --iface xs-default-s --ip 198.18.0.2\n  xstack doctor --iface eth1 --probe\n  xstack doctor --iface eth1 --json | jq .works\nExit status: 0 when it will work, 1 when it will not (or the interface is missing)."
    )]
    Doctor(doctor::Args),
}

/// `--pcap FILE`, `--pcap-snaplen`, `--pcap-max-bytes` (serve and load).
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct PcapArgs {
    /// Write the frames the engine receives and sends to FILE (pcap, for tcpdump/tshark/Wireshark).
    #[arg(long, value_name = "FILE")]
    pcap: Option<std::path::PathBuf>,
    /// Bytes kept of each captured frame.
    #[arg(long, requires = "pcap", default_value_t = crate::runtime::capture::DEFAULT_SNAPLEN)]
    pcap_snaplen: u32,
    /// Stop writing (and say so) once the file reaches this many bytes (default 100 MiB).
    #[arg(long, requires = "pcap", default_value_t = crate::runtime::capture::DEFAULT_MAX_BYTES)]
    pcap_max_bytes: u64,
}

impl PcapArgs {
    fn config(&self) -> Result<Option<crate::runtime::capture::CaptureConfig>> {
        self.pcap
            .clone()
            .map(|p| {
                crate::runtime::capture::CaptureConfig::new(
                    p,
                    self.pcap_snaplen,
                    self.pcap_max_bytes,
                )
            })
            .transpose()
    }
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
        Command::Testbed(a) => testbed::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Kserve(a) => kserve::run(a),
        Command::Load(a) => load::run(*a),
        Command::Merge(a) => merge::run(a),
        Command::Config(a) => config::run(a),
        Command::Flood(a) => flood::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Stats(a) => stats::run(a),
        Command::Ss(a) => ss::run(a),
        Command::Doctor(a) => doctor::run(a),
    }
}

/// Parses the command line, runs the subcommand and maps the outcome to an
/// exit code (errors as one line on stderr).
pub fn main() -> ExitCode {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &str) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(args.split_whitespace())
    }

    #[test]
    fn allow_target_is_repeatable_and_a_malformed_or_over_broad_cidr_is_a_clap_error() {
        let load = "xstack load --kernel --target 10.1.0.5:80 --connections 1";
        let flood = "xstack flood --iface lo --target 10.1.0.5:80 --rate 1 --duration 1";
        for base in [load, flood] {
            let two = format!("{base} --allow-target 10.1.0.0/16 --allow-target 172.16.0.0/12");
            assert!(parse(&two).is_ok(), "{two}");
            for bad in ["10.1.0/16", "0.0.0.0/0", "10.1.0.1/16", "224.0.0.0/8"] {
                let e = match parse(&format!("{base} --allow-target {bad}")) {
                    Ok(_) => panic!("{bad} accepted"),
                    Err(e) => e,
                };
                assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation, "{bad}");
                let text = e.to_string();
                let first = text.lines().next().unwrap_or_default();
                assert!(
                    first.contains("--allow-target") && first.contains(bad),
                    "{bad}: {text}"
                );
            }
        }
    }

    #[test]
    fn bench_family_takes_4_6_or_both_on_each_kernel_comparison_and_refuses_others_in_one_line() {
        for base in [
            "xstack bench",
            "xstack bench bulk",
            "xstack bench synflood",
            "xstack bench concurrency",
        ] {
            for ok in ["4", "6", "both"] {
                let line = format!("{base} --family {ok}");
                assert!(parse(&line).is_ok(), "{line}");
            }
            assert!(parse(base).is_ok(), "{base}");
            let e = match parse(&format!("{base} --family 5")) {
                Ok(_) => panic!("{base} --family 5 accepted"),
                Err(e) => e,
            };
            assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation);
            let text = e.to_string();
            let first = text.lines().next().unwrap_or_default();
            assert!(
                first.contains("--family 5: use 4 (IPv4), 6 (IPv6) or both"),
                "{text}"
            );
        }
        // The default stays IPv4 (what `cargo xtask test` and `demo` run).
        let Ok(Cli {
            command: Command::Bench(a),
            ..
        }) = parse("xstack bench --quick")
        else {
            panic!("xstack bench --quick");
        };
        assert_eq!(a.family(), crate::tools::bench::family::Families::V4);
    }
}
