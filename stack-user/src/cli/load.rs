//! `xstack load`: generate load against a server.

use std::time::Duration;

use anyhow::{Context, Result};

#[derive(clap::Args, Debug)]
pub(super) struct Args {
    /// Interface the load engine attaches to (not with --kernel).
    #[arg(long, required_unless_present = "kernel")]
    iface: Option<String>,
    /// Addresses the load engine owns, of the target's family (not with --kernel): one, a comma list, or a prefix such as 198.18.1.0/26 or 2001:2:0:1::/120 (at most 256 addresses); connections spread over addresses × --ports.
    #[arg(
        long,
        required_unless_present = "kernel",
        value_name = "ADDR[,ADDR..]|PREFIX"
    )]
    ip: Option<String>,
    /// Local port range LO-HI for the engine's connections (Linux ip_local_port_range; not with --kernel).
    #[arg(
        long,
        value_name = "LO-HI",
        default_value = "32768-60999",
        conflicts_with = "kernel"
    )]
    ports: String,
    /// Closed loop: most connections started per second (0 = unpaced). The default, 4096, lets a Linux server with the default accept queue (somaxconn 4096) that accepts at least once a second never overflow it.
    #[arg(long, value_name = "R", conflicts_with = "rate")]
    connect_rate: Option<f64>,
    /// Closed loop: reach --concurrency linearly over S seconds.
    #[arg(long, value_name = "S", conflicts_with = "rate")]
    ramp: Option<f64>,
    /// Seconds each connection pauses between a response and its next request (keep-alive connections sit idle meanwhile).
    #[arg(long, value_name = "S")]
    think_time: Option<f64>,
    /// UMEM frames per queue (engine only; at least twice --ring-size).
    #[arg(long, default_value_t = 4096, conflicts_with = "kernel")]
    frames: u32,
    /// Entries per AF_XDP ring (engine only): a bigger ring rides out longer pauses of a busy machine without rx_ring_full drops.
    #[arg(long, default_value_t = 2048, conflicts_with = "kernel")]
    ring_size: u32,
    /// SYN retransmissions before a connect fails, as Linux tcp_syn_retries (default 6: after 1, 2, 4, 8, 16, 32 s; the handshake also ends at --timeout); engine only.
    #[arg(long, value_name = "N", conflicts_with = "kernel")]
    tcp_syn_retries: Option<u8>,
    /// Server address and port: 198.18.0.1:80, or [2001:2::1]:80 (inside 198.18.0.0/15, 2001:2::/48 or an --allow-target prefix).
    #[arg(long)]
    target: std::net::SocketAddr,
    /// Also allow targets in this prefix (your own lab; IPv4 at least a /8, IPv6 at least a /32), repeatable.
    #[arg(long = "allow-target", value_name = "CIDR")]
    allow_target: Vec<crate::tools::guard::TargetPrefix>,
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
    /// Seconds a connection may go without progress (handshake, bytes of a request or response, the FIN; not a --think-time pause) before it counts as timed out (a handshake as connect_timeout); past --duration, open connections get this + 1 s, then count as timeouts.
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
    /// Serve Prometheus/OpenMetrics metrics (latency histograms, rates, TCP counters) at http://ADDR:PORT/metrics while the load runs.
    #[arg(long, value_name = "ADDR:PORT")]
    metrics: Option<String>,
    #[command(flatten)]
    pcap: crate::cli::PcapArgs,
    /// Run the I-th (from 0) of N equal shares of this load (rate, concurrency, connections, local ports), so N copies on N hosts add up to one run; merge their results with `xstack merge`.
    #[arg(long, value_name = "I/N")]
    segment: Option<String>,
    /// Start at this UNIX time (seconds, after the bring-up), so copies on several hosts start together; their clocks must agree (chrony/NTP).
    #[arg(long, value_name = "UNIX_TIME")]
    start_at: Option<f64>,
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

pub(super) fn run(a: Args) -> Result<()> {
    // First of all: nothing below opens a socket for a refused target.
    crate::tools::guard::check_target_ip("xstack load", a.target.ip(), &a.allow_target)?;
    // --ip: one family, the target's (checked before anything is set up).
    let ips =
        a.ip.as_deref()
            .map(crate::tools::load::parse_addrs)
            .transpose()?;
    if let Some(ip) = ips.iter().flatten().next() {
        if ip.is_ipv4() != a.target.is_ipv4() {
            anyhow::bail!(
                "--ip {ip} and --target {} are of different address families; give --ip addresses of the target's family",
                a.target
            );
        }
    }
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
        allow_target: a.allow_target.clone(),
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
        connect_rate: match a.connect_rate {
            None if a.rate.is_none() => Some(crate::tools::load::DEFAULT_CONNECT_RATE),
            None => None,
            Some(0.0) => None,
            Some(r) if r > 0.0 && r.is_finite() => Some(r),
            Some(r) => anyhow::bail!(
                "--connect-rate {r} is invalid: give connections per second, or 0 for unpaced"
            ),
        },
        ramp: a.ramp.map(|r| secs(r, "--ramp")).transpose()?,
        think_time: a.think_time.map(|t| secs(t, "--think-time")).transpose()?,
        metrics: a
            .metrics
            .as_deref()
            .map(crate::runtime::metrics::parse_addr)
            .transpose()?,
        capture: a.pcap.config()?,
        start_at: a.start_at.map(start_at).transpose()?,
    };
    let segment: Option<crate::tools::load::Segment> =
        a.segment.as_deref().map(str::parse).transpose()?;
    let cfg = match segment {
        Some(s) => cfg.segment(s)?,
        None => cfg,
    };
    let summary = if a.kernel {
        crate::tools::load::run_kernel(&cfg, a.threads)?
    } else {
        crate::runtime::sys::check_privileges("xstack load")?;
        let (Some(iface), Some(ips)) = (a.iface.as_deref(), ips) else {
            anyhow::bail!("--iface and --ip are needed unless --kernel");
        };
        let mut tcp = crate::tcp::TcpConfig {
            tcp_tw_reuse: 1,
            ip_local_port_range: crate::tools::load::parse_ports(&a.ports)?,
            ..Default::default()
        };
        for kv in &a.sysctls {
            crate::tcp::sysctl::apply(&mut tcp, kv)?;
        }
        if let Some(n) = a.tcp_syn_retries {
            tcp.tcp_syn_retries = n;
        }
        if let Some(s) = segment {
            tcp.ip_local_port_range = s.ports(tcp.ip_local_port_range)?;
        }
        let xsk = crate::datapath::xsk::XskConfig {
            frames: a.frames,
            ring_size: a.ring_size,
            ..Default::default()
        };
        crate::tools::load::run_engine(iface, &ips, &cfg, tcp, xsk)?
    };
    print!("{summary}");
    if let Some(p) = &a.json {
        std::fs::write(p, serde_json::to_string_pretty(&summary)?)
            .with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

/// `--start-at T`: a UNIX time ahead of now by at most a day.
fn start_at(t: f64) -> Result<std::time::SystemTime> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    if !t.is_finite() || t < now || t > now + 86_400.0 {
        anyhow::bail!(
            "--start-at {t} is not within the next 24 hours (now is {now:.0}); give a UNIX time ahead, e.g. --start-at $(( $(date +%s) + 10 ))"
        );
    }
    Ok(std::time::UNIX_EPOCH + Duration::from_secs_f64(t))
}
