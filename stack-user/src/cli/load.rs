//! `xstack load`: generate load against a server.

use std::{net::IpAddr, time::Duration};

use anyhow::{Context, Result};

#[derive(clap::Args, Debug)]
pub(super) struct Args {
    /// Interface the load engine attaches to (not with --kernel).
    #[arg(long, required_unless_present = "kernel")]
    iface: Option<String>,
    /// Address the load engine owns, IPv4 or IPv6, of the target's family (not with --kernel).
    #[arg(long, required_unless_present = "kernel")]
    ip: Option<IpAddr>,
    /// Server address and port: 198.18.0.1:80, or [2001:2::1]:80 (inside 198.18.0.0/15, 2001:2::/48 or an --allow-target prefix).
    #[arg(long)]
    target: std::net::SocketAddr,
    /// Also allow targets in this prefix (your own lab; at least a /8), repeatable.
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
    /// Seconds a connection may go without progress (handshake, bytes of a request or response, the FIN) before it counts as timed out; past --duration, open connections get this + 1 s, then count as timeouts.
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
    if let Some(ip) = a.ip {
        if ip.is_ipv4() != a.target.is_ipv4() {
            anyhow::bail!(
                "--ip {ip} and --target {} are of different address families; give an --ip of the target's family",
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
        let (Some(iface), Some(ip)) = (a.iface.as_deref(), a.ip) else {
            anyhow::bail!("--iface and --ip are needed unless --kernel");
        };
        let mut tcp = crate::tcp::TcpConfig {
            tcp_tw_reuse: 1,
            ..Default::default()
        };
        for kv in &a.sysctls {
            crate::tcp::sysctl::apply(&mut tcp, kv)?;
        }
        if let Some(s) = segment {
            tcp.ip_local_port_range = s.ports(tcp.ip_local_port_range)?;
        }
        crate::tools::load::run_engine(iface, ip, &cfg, tcp)?
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
