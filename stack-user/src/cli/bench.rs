//! `xstack bench`: the benchmarks of [`crate::tools::bench`].

use anyhow::Result;
use clap::Subcommand;

use crate::tools::bench::family::Families;

#[derive(clap::Args, Debug)]
pub(super) struct Args {
    #[command(subcommand)]
    which: Option<Which>,
    /// Seconds per measurement (the kernel comparison).
    #[arg(long, default_value_t = 5)]
    seconds: u32,
    /// Directory for bench.json, cps.svg and latency-cdf.svg.
    #[arg(long, default_value = "target/bench")]
    out: std::path::PathBuf,
    /// Only kernel→kernel and xstack→xstack, no wrk (what `cargo xtask demo` runs).
    #[arg(long)]
    quick: bool,
    /// Address family of the kernel comparison: 4, 6 or both (IPv4 and
    /// IPv6 rows side by side, with IPv6/IPv4 ratios).
    #[arg(long, default_value = "4")]
    family: Families,
    /// Run the kernel comparison this many times (1 to 10) in one testbed:
    /// every run's table, then each scenario's ratio per run with its
    /// minimum and median.
    #[arg(long, default_value_t = 1)]
    runs: u32,
}

#[derive(Subcommand, Debug)]
pub(super) enum Which {
    /// Legitimate connection success and CPS under rising SYN-flood rates, for three systems.
    #[command(after_help = "Example:\n  xstack bench synflood --seconds 3 --out target/synflood")]
    Synflood(crate::tools::bench::synflood::SynfloodArgs),
    /// SYN cookie generate+check cost: ours (SipHash, shared with the engine) vs bpf_tcp_raw_*_syncookie_ipv4; then the whole XDP program per flood SYN, ACK and RST.
    #[command(after_help = "Example:\n  xstack bench cookies --repeat 1000000 --out target/bench")]
    Cookies {
        /// BPF_PROG_TEST_RUN repetitions per cookie variant (the whole-program rows run 20,000 frames each, one run per frame).
        #[arg(long, default_value_t = 1_000_000)]
        repeat: u32,
        /// Directory for cookies.json.
        #[arg(long, default_value = "target/bench")]
        out: std::path::PathBuf,
    },
    /// xstack load against xstack serve for a long bounded run, sampling memory; errors and growth after the first minute.
    #[command(
        after_help = "Examples:\n  xstack bench soak --seconds 600\n  xstack bench soak --seconds 60 --sample 5 --out target/soak"
    )]
    Soak(crate::tools::bench::soak::SoakArgs),
    /// Kept-alive connections opened (paced), held with a request every few seconds and closed: xstack load → xstack serve, then Linux → Linux; time to establish, requests/s, errors, latency, memory per connection.
    #[command(
        after_help = "Examples:\n  xstack bench concurrency\n  xstack bench concurrency --connections 100000 --out target/conc"
    )]
    Concurrency(crate::tools::bench::concurrency::ConcurrencyArgs),
    /// Packets per second one AF_XDP socket (copy mode) receives on the testbed, next to the Linux stack, same traffic.
    #[command(
        after_help = "Examples:\n  xstack bench rx --seconds 5 --out target/bench\n  xstack bench rx --no-receiver-core --seconds 3"
    )]
    Rx {
        /// Seconds per receiver (1 to 60).
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Directory for rx.json.
        #[arg(long, default_value = "target/bench")]
        out: std::path::PathBuf,
        /// Run without the receiver core (no threaded NAPI, no pinning: veth
        /// receive work then runs on the sender's CPU), for comparison.
        #[arg(long)]
        no_receiver_core: bool,
    },
    /// Bulk TCP throughput on the testbed: Linux → Linux, Linux → xstack engine, xstack engine → Linux.
    #[command(
        after_help = "Examples:\n  xstack bench bulk --seconds 5 --out target/bench\n  xstack bench bulk --family both --seconds 3\n  xstack bench bulk --receiver-gro both --seconds 3\n  xstack bench bulk --no-receiver-core --seconds 3"
    )]
    Bulk {
        /// Seconds per direction (1 to 60).
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Address family: 4, 6 or both (IPv6/IPv4 ratios).
        #[arg(long, default_value = "4")]
        family: Families,
        /// Directory for bulk.json.
        #[arg(long, default_value = "target/bench")]
        out: std::path::PathBuf,
        /// GRO at the Linux receiver: off (the same offload settings on both
        /// sides), on (the default on real NICs: Linux → Linux and xstack →
        /// Linux with GRO on), or both (the GRO-off rows, then the GRO-on ones).
        #[arg(long, value_enum, default_value_t = crate::tools::bench::bulk::ReceiverGro::Off)]
        receiver_gro: crate::tools::bench::bulk::ReceiverGro,
        /// Run without the receiver core (no threaded NAPI, no pinning: veth
        /// receive work then runs on the sender's CPU), for comparison.
        #[arg(long)]
        no_receiver_core: bool,
    },
    /// Two sans-IO TCP engines in memory on one core, no I/O: connect/request/close rate, bulk throughput and the cost per segment, next to the targets; writes OUT/engine.json.
    #[command(
        alias = "tcp-mem",
        after_help = "Example:\n  xstack bench engine --seconds 3 --out target/bench"
    )]
    Engine(crate::tools::bench::engine::EngineArgs),
    /// The TCP timing wheel next to a binary heap with lazy cancellation, with N live timers.
    #[command(after_help = "Example:\n  xstack bench timer --timers 1000000")]
    Timer {
        /// Live timers.
        #[arg(long, default_value_t = 1_000_000)]
        timers: usize,
    },
}

impl Args {
    /// `--family` of the kernel comparison.
    #[cfg(test)]
    pub(super) fn family(&self) -> Families {
        self.family
    }
}

pub(super) fn run(a: Args) -> Result<()> {
    let Args {
        which,
        seconds,
        out,
        quick,
        family,
        runs,
    } = a;
    match which {
        Some(Which::Synflood(a)) => crate::tools::bench::synflood::run(&a)?,
        Some(Which::Soak(a)) => print!("{}", crate::tools::bench::soak::run(&a)?),
        Some(Which::Concurrency(a)) => print!("{}", crate::tools::bench::concurrency::run(&a)?),
        Some(Which::Rx {
            seconds,
            out,
            no_receiver_core,
        }) => crate::tools::bench::rx::run(seconds, !no_receiver_core, &out)?,
        Some(Which::Bulk {
            seconds,
            family,
            out,
            receiver_gro,
            no_receiver_core,
        }) => {
            crate::tools::bench::bulk::run(seconds, family, receiver_gro, !no_receiver_core, &out)?
        }
        Some(Which::Engine(a)) => print!("{}", crate::tools::bench::engine::run(&a)?),
        Some(Which::Timer { timers }) => crate::tools::bench::timer::run(timers),
        Some(Which::Cookies { repeat, out }) => {
            let r = crate::tools::bench::cookies::run(repeat)?;
            print!("{r}");
            let json = crate::tools::bench::write_json(&out, "cookies.json", &r)?;
            println!("wrote {}", json.display());
        }
        None => {
            if !(1..=600).contains(&seconds) {
                anyhow::bail!("--seconds {seconds} is out of range: use 1 to 600");
            }
            let max = crate::tools::bench::kernel::MAX_RUNS;
            if !(1..=max).contains(&runs) {
                anyhow::bail!("--runs {runs} is out of range: use 1 to {max}");
            }
            let table = if quick {
                crate::tools::bench::kernel::run_quick(seconds, runs, &out, family)?
            } else {
                crate::tools::bench::kernel::run(seconds, runs, &out, family)?
            };
            print!("{table}");
            println!(
                "wrote {}/bench.json, cps.svg, latency-cdf.svg",
                out.display()
            );
        }
    }
    Ok(())
}
