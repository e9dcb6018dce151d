//! The `xstack` command line: the clap parser and the dispatch of each
//! subcommand.

use std::{net::Ipv4Addr, process::ExitCode, time::Duration};

use crate::{
    datapath::xdp::AttachMode,
    datapath::xsk::{XskConfig, XskMode},
    runtime::control,
    runtime::serve::{self, ServeConfig},
    tools::testbed::Testbed,
};
use anyhow::{Context, Result};
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
    Testbed {
        #[command(subcommand)]
        action: TestbedAction,
    },
    /// Run the stack on an interface: XDP + one AF_XDP socket and engine per rx queue.
    #[command(
        after_help = "Examples:\n  ip netns exec xs-default-stack xstack serve --iface xs-default-s --ip 198.18.0.2 --port 8080 --app echo\n  xstack serve --iface eth1 --ip 198.18.1.10 --port 80,443 --queues 4 --xsk-mode zerocopy\n  xstack serve --iface xs-lab-s --ip 198.18.0.2 --port 8080 --duration 30"
    )]
    Serve(ServeArgs),
    /// Run the same applications on Linux kernel sockets (tokio): the baseline.
    #[command(
        after_help = "Examples:\n  ip netns exec xs-lab-stack xstack kserve --listen 198.18.0.2:80 --app http\n  xstack kserve --listen 0.0.0.0:7 --app echo --threads 2"
    )]
    Kserve {
        /// Address and port to listen on.
        #[arg(long)]
        listen: std::net::SocketAddr,
        /// Application.
        #[arg(long, value_enum, default_value = "echo")]
        app: crate::iface::App,
        /// Body size of `--app http` responses.
        #[arg(long, default_value_t = 64)]
        response_bytes: usize,
        /// tokio worker threads.
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// listen(2) backlog (capped by net.core.somaxconn).
        #[arg(long, default_value_t = 4096)]
        backlog: u32,
        /// Stop after this many seconds.
        #[arg(long)]
        duration: Option<f64>,
    },
    /// Generate load against a server: connections, requests, latency.
    #[command(
        after_help = "Examples:\n  # closed loop, a new connection per request, against a kernel server in the peer netns\n  ip netns exec xs-lab-stack xstack load --iface xs-lab-s --ip 198.18.0.2 --target 198.18.0.1:80 --concurrency 64 --duration 10\n  # open loop at 20k connections/s, HTTP, server closes first\n  xstack load --iface xs-lab-s --ip 198.18.0.2 --target 198.18.0.1:80 --rate 20000 --http --close server --duration 10 --json out.json --hdr out.hlog\n  # the same load over kernel sockets\n  xstack load --kernel --target 198.18.0.1:80 --concurrency 64 --duration 10"
    )]
    Load(Box<LoadArgs>),
    /// Change fast-path settings (cookies, SYN limits, prefix lists) of a running instance, without reattaching.
    #[command(
        after_help = "Examples:\n  xstack config --iface xs-lab-s tcp_syncookies=always\n  xstack config syn_source_rate=50 syn_source_burst=10 deny=198.18.200.0/24\n  xstack config syn_rate_on=20000 syn_rate_off=5000 undeny=198.18.200.0/24\nKeys: tcp_syncookies (never|auto|always), syn_rate_on, syn_rate_off, syn_window_ms, syn_source_rate, syn_source_burst, syn_global_rate, syn_global_burst, mss, wscale, window, ecn, allow_only, deny, undeny, allow, unallow"
    )]
    Config {
        /// Interface of the instance (needed when several run).
        #[arg(long)]
        iface: Option<String>,
        /// key=value settings.
        #[arg(required = true)]
        settings: Vec<String>,
    },
    /// Send a bounded flood of spoofed TCP segments (SYN, ACK, RST) from a prefix in 198.18.0.0/15 through AF_XDP.
    #[command(
        after_help = "Examples:\n  ip netns exec xs-lab-peer xstack flood --iface xs-lab-p --target 198.18.0.2:8080 --rate 100000 --duration 5\n  xstack flood --iface xs-lab-p --target 198.18.0.2:8080 --rate 0 --duration 3 --kind mixed --sources 198.18.128.0/17\nOnly targets and sources inside 198.18.0.0/15 (RFC 2544) are accepted."
    )]
    Flood(crate::tools::flood::FloodArgs),
    /// Benchmarks: with no subcommand, xstack vs the Linux kernel stack (load generators and servers, one run); `synflood` (legit connections under a SYN flood: Linux, Linux+SYNPROXY, xstack); `cookies` (our cookie vs the kernel's helpers).
    #[command(
        after_help = "Examples:\n  xstack bench\n  xstack bench --seconds 10 --out target/bench\n  xstack bench synflood\n  xstack bench cookies"
    )]
    Bench {
        #[command(subcommand)]
        which: Option<BenchWhich>,
        /// Seconds per measurement (the kernel comparison).
        #[arg(long, default_value_t = 5)]
        seconds: u32,
        /// Directory for bench.json, cps.svg and latency-cdf.svg.
        #[arg(long, default_value = "target/bench")]
        out: std::path::PathBuf,
    },
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

#[derive(clap::Args, Debug)]
struct LoadArgs {
    /// Interface the load engine attaches to (not with --kernel).
    #[arg(long, required_unless_present = "kernel")]
    iface: Option<String>,
    /// Address the load engine owns (not with --kernel).
    #[arg(long, required_unless_present = "kernel")]
    ip: Option<Ipv4Addr>,
    /// Server address and port (inside 198.18.0.0/15).
    #[arg(long)]
    target: std::net::SocketAddrV4,
    /// Open loop: connections started per second, on schedule.
    #[arg(long, conflicts_with = "concurrency")]
    rate: Option<f64>,
    /// Closed loop: connections kept busy.
    #[arg(long)]
    concurrency: Option<u32>,
    /// Requests per connection (1 = a new connection per request).
    #[arg(long, default_value_t = 1)]
    requests_per_conn: u32,
    /// Request size for the echo protocol.
    #[arg(long, default_value_t = 64)]
    request_bytes: usize,
    /// Expected response size; with the echo protocol it must equal --request-bytes.
    #[arg(long)]
    response_bytes: Option<usize>,
    /// HTTP/1.1 GET / instead of the echo protocol.
    #[arg(long)]
    http: bool,
    /// Who closes each connection.
    #[arg(long, value_enum, default_value = "client")]
    close: crate::tools::load::CloseBy,
    /// Seconds to start connections for.
    #[arg(long)]
    duration: Option<f64>,
    /// Connections to make in all.
    #[arg(long)]
    connections: Option<u64>,
    /// Seconds a connection may go without progress (handshake, a response) before it counts as timed out.
    #[arg(long, default_value_t = 5.0)]
    timeout: f64,
    /// Engines, one per AF_XDP queue, each on its own thread (queues 0..N of --iface; not with --kernel, which has --threads).
    #[arg(long, default_value_t = 1)]
    queues: u32,
    /// Never sleep: spin on the AF_XDP rings (lowest latency; a core per queue).
    #[arg(long, conflicts_with = "kernel")]
    busy_poll: bool,
    /// Run over kernel sockets (tokio) instead of the xstack engine.
    #[arg(long)]
    kernel: bool,
    /// tokio worker threads with --kernel.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Write the summary as JSON to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Write an HdrHistogram interval log to this file.
    #[arg(long)]
    hdr: Option<std::path::PathBuf>,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
    /// TCP setting of the load engine by Linux sysctl name, repeatable (default here: tcp_tw_reuse=1).
    #[arg(long = "sysctl", value_name = "KEY=VALUE")]
    sysctls: Vec<String>,
}

#[derive(Subcommand, Debug)]
enum BenchWhich {
    /// Legitimate connection success and CPS under rising SYN-flood rates, for three systems.
    #[command(after_help = "Example:\n  xstack bench synflood --seconds 3 --out target/synflood")]
    Synflood(crate::tools::bench::synflood::SynfloodArgs),
    /// SYN cookie generate+check cost: ours (SipHash, shared with the engine) vs bpf_tcp_raw_*_syncookie_ipv4.
    #[command(after_help = "Example:\n  xstack bench cookies --repeat 1000000")]
    Cookies {
        /// BPF_PROG_TEST_RUN repetitions per variant.
        #[arg(long, default_value_t = 1_000_000)]
        repeat: u32,
    },
    /// xstack load against xstack serve for a long bounded run, sampling memory; errors and growth after the first minute.
    #[command(
        after_help = "Examples:\n  xstack bench soak --seconds 600\n  xstack bench soak --seconds 60 --sample 5 --out target/soak"
    )]
    Soak(crate::tools::bench::soak::SoakArgs),
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
    app: crate::iface::App,
    /// Body size of `--app http` responses.
    #[arg(long, default_value_t = 64)]
    response_bytes: usize,
    /// TCP setting by its Linux sysctl name, repeatable (e.g. tcp_tw_reuse=1, tcp_max_tw_buckets=262144, somaxconn=4096).
    #[arg(long = "sysctl", value_name = "KEY=VALUE")]
    sysctls: Vec<String>,
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
    /// SYN cookies answered in XDP: never, auto (SYN rate above --syn-rate-on or SYN queue full), always.
    #[arg(long, value_enum, default_value = "auto")]
    syncookies: crate::datapath::fastpath::SynCookies,
    /// Auto mode: SYN/s at which XDP starts answering with cookies.
    #[arg(long, default_value_t = 10_000)]
    syn_rate_on: u64,
    /// Auto mode: SYN/s below which it stops again (hysteresis).
    #[arg(long, default_value_t = 5_000)]
    syn_rate_off: u64,
    /// SYN/s allowed per source address (token bucket; 0: unlimited).
    #[arg(long, default_value_t = 0)]
    syn_source_rate: u64,
    /// Burst per source address.
    #[arg(long, default_value_t = 16)]
    syn_source_burst: u64,
    /// SYN/s allowed over all sources (0: unlimited).
    #[arg(long, default_value_t = 0)]
    syn_global_rate: u64,
    /// Global burst.
    #[arg(long, default_value_t = 1024)]
    syn_global_burst: u64,
    /// Drop SYNs from this prefix (repeatable).
    #[arg(long)]
    deny: Vec<String>,
    /// Exempt this prefix from SYN limits (repeatable).
    #[arg(long)]
    allow: Vec<String>,
    /// Only sources on the allow list may connect.
    #[arg(long)]
    allow_only: bool,
    /// Any other fast-path setting as key=value (see `xstack config --help`), repeatable.
    #[arg(long = "set")]
    set: Vec<String>,
}

fn fastpath_settings(a: &ServeArgs) -> Result<crate::datapath::fastpath::FastpathSettings> {
    let mut f = crate::datapath::fastpath::FastpathSettings {
        syncookies: a.syncookies,
        syn_rate_on: a.syn_rate_on.max(1),
        syn_rate_off: a.syn_rate_off,
        syn_source_rate: a.syn_source_rate,
        syn_source_burst: a.syn_source_burst.max(1),
        syn_global_rate: a.syn_global_rate,
        syn_global_burst: a.syn_global_burst.max(1),
        allow_only: a.allow_only,
        ..Default::default()
    };
    for d in &a.deny {
        f.apply(&format!("deny={d}"))?;
    }
    for d in &a.allow {
        f.apply(&format!("allow={d}"))?;
    }
    for kv in &a.set {
        f.apply(kv)?;
    }
    Ok(f)
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
            let fastpath = fastpath_settings(&a)?;
            let config = ServeConfig {
                fastpath,
                iface: a.iface,
                ip: a.ip,
                ports: a.port,
                app: a.app,
                response_bytes: a.response_bytes,
                tcp: {
                    let mut t = crate::tcp::TcpConfig::default();
                    for kv in &a.sysctls {
                        crate::sysctl::apply(&mut t, kv)?;
                    }
                    t
                },
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
        Command::Kserve {
            listen,
            app,
            response_bytes,
            threads,
            backlog,
            duration,
        } => {
            if let Some(d) = duration {
                if !(d > 0.0 && d.is_finite()) {
                    anyhow::bail!("--duration {d} is invalid: give a positive number of seconds");
                }
            }
            let st = crate::tools::kserve::run(
                listen,
                app,
                response_bytes,
                threads,
                backlog,
                duration.map(Duration::from_secs_f64),
            )?;
            use std::sync::atomic::Ordering::Relaxed;
            println!(
                "final counters: accepted {} bytes_in {} bytes_out {} http_requests {}",
                st.accepted.load(Relaxed),
                st.bytes_in.load(Relaxed),
                st.bytes_out.load(Relaxed),
                st.http_requests.load(Relaxed)
            );
        }
        Command::Load(a) => {
            let a = *a;
            if let Some(r) = a.response_bytes {
                if !a.http && r != a.request_bytes {
                    anyhow::bail!("--response-bytes {r} differs from --request-bytes {}: the echo protocol answers what it gets; use --http against a server with --response-bytes", a.request_bytes);
                }
            }
            if a.queues != 1 && a.kernel {
                anyhow::bail!(
                    "--queues is for the xstack engine; with --kernel use --threads {}",
                    a.queues
                );
            }
            let secs = |v: f64, what: &str| {
                if v > 0.0 && v.is_finite() {
                    Ok(Duration::from_secs_f64(v))
                } else {
                    Err(anyhow::anyhow!(
                        "{what} {v} is invalid: give a positive number of seconds"
                    ))
                }
            };
            let cfg = crate::tools::load::LoadConfig {
                target: a.target,
                lp: match a.rate {
                    Some(r) => crate::tools::load::Loop::Open(r),
                    None => crate::tools::load::Loop::Closed(a.concurrency.unwrap_or(1)),
                },
                requests_per_conn: a.requests_per_conn,
                request_bytes: a.request_bytes,
                http: a.http,
                close: a.close,
                duration: a.duration.map(|d| secs(d, "--duration")).transpose()?,
                connections: a.connections,
                timeout: secs(a.timeout, "--timeout")?,
                progress: !a.quiet,
                hdr: a.hdr.clone(),
                queues: a.queues,
                busy_poll: a.busy_poll,
            };
            let summary = if a.kernel {
                crate::tools::load::run_kernel(&cfg, a.threads)?
            } else {
                sys_check_load()?;
                let (Some(iface), Some(ip)) = (a.iface.as_deref(), a.ip) else {
                    anyhow::bail!("--iface and --ip are needed unless --kernel");
                };
                let mut tcp = crate::tcp::TcpConfig {
                    tcp_tw_reuse: 1,
                    ..Default::default()
                };
                for kv in &a.sysctls {
                    crate::sysctl::apply(&mut tcp, kv)?;
                }
                crate::tools::load::run_engine(iface, ip, &cfg, tcp)?
            };
            print!("{summary}");
            if let Some(p) = &a.json {
                std::fs::write(p, serde_json::to_string_pretty(&summary)?)
                    .with_context(|| format!("writing {}", p.display()))?;
            }
        }
        Command::Config { iface, settings } => {
            let v = control::set(iface.as_deref(), &settings).context("changing settings")?;
            if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
                anyhow::bail!("{e}");
            }
            println!("{}", serde_json::to_string_pretty(&v["fastpath"])?);
        }
        Command::Flood(a) => {
            let r = crate::tools::flood::run(&a.to_config()?)?;
            println!("{r}");
        }
        Command::Bench {
            which,
            seconds,
            out,
        } => match which {
            Some(BenchWhich::Synflood(a)) => crate::tools::bench::synflood::run(&a)?,
            Some(BenchWhich::Soak(a)) => print!("{}", crate::tools::bench::soak::run(&a)?),
            Some(BenchWhich::Cookies { repeat }) => {
                let r = crate::tools::bench::cookies::run(repeat)?;
                print!("{r}");
            }
            None => {
                if !(1..=600).contains(&seconds) {
                    anyhow::bail!("--seconds {seconds} is out of range: use 1 to 600");
                }
                let table = crate::tools::bench::kernel::run(seconds, &out)?;
                print!("{table}");
                println!(
                    "wrote {}/bench.json, cps.svg, latency-cdf.svg",
                    out.display()
                );
            }
        },
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

fn sys_check_load() -> Result<()> {
    crate::runtime::sys::check_privileges("xstack load")?;
    Ok(())
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
