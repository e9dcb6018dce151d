//! `xstack serve`: run the stack on an interface.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use anyhow::Result;

use crate::{
    datapath::xdp::AttachMode,
    datapath::xsk::{XskConfig, XskMode},
    runtime::serve::{self, ServeConfig},
    runtime::stack::StackConfig,
};

#[derive(clap::Args, Debug)]
pub(super) struct Args {
    /// Interface to attach to (in the current network namespace).
    #[arg(long)]
    iface: String,
    /// Address(es) the stack owns (not configured on the kernel interface): one IPv4 address, IPv6 addresses, or both, comma separated (e.g. 198.18.0.2,2001:2::2).
    #[arg(long, value_delimiter = ',', required = true)]
    ip: Vec<IpAddr>,
    /// TCP port(s) to serve, comma separated.
    #[arg(long, value_delimiter = ',', required = true)]
    port: Vec<u16>,
    /// Application on the ports: echo (RFC 862), discard (RFC 863) or a fixed-body HTTP/1.1 server.
    #[arg(long, value_enum, default_value = "echo")]
    app: crate::apps::App,
    /// Body size of `--app http` responses.
    #[arg(long, default_value_t = 64)]
    response_bytes: usize,
    /// `--app http`: answer with the request's body (same Content-Length) instead of the fixed body.
    #[arg(long)]
    echo_body: bool,
    /// `--app http`: largest request body in bytes; a larger Content-Length gets 413 and the connection is closed.
    #[arg(long, default_value_t = crate::apps::http::DEFAULT_MAX_BODY)]
    max_body: u64,
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
    /// Entries of the XDP known-flow table (one per connection; per family).
    /// While SYN cookies are in use, segments of a flow it evicted are
    /// dropped, so it must hold every connection (default: 262,144, or 5/4
    /// of `--sysctl initial_connections` when more; at most 16,777,216;
    /// both tables preallocate: 202 MB of kernel memory at 1,000,000).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=i64::from(crate::runtime::stack::XDP_MAX_FLOWS_LIMIT)))]
    xdp_max_flows: Option<u32>,
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
    /// Who sends cookie SYN-ACKs: auto (the engine on veth, XDP elsewhere),
    /// xdp (XDP_TX; on veth only delivered when the peer runs NAPI), engine
    /// (AF_XDP TX, works on any interface).
    #[arg(long, value_enum, default_value = "auto")]
    cookie_path: crate::datapath::fastpath::CookiePath,
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
    /// IPv6 sources share one per-source bucket per prefix of this length (1-128).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u8).range(1..=128))]
    syn_source_prefix6: u8,
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
    /// Serve Prometheus/OpenMetrics metrics at http://ADDR:PORT/metrics (read on scrape).
    #[arg(long, value_name = "ADDR:PORT")]
    metrics: Option<String>,
    #[command(flatten)]
    pcap: crate::cli::PcapArgs,
}

fn fastpath_settings(a: &Args) -> Result<crate::datapath::fastpath::FastpathSettings> {
    let mut f = crate::datapath::fastpath::FastpathSettings {
        syncookies: a.syncookies,
        syn_rate_on: a.syn_rate_on.max(1),
        syn_rate_off: a.syn_rate_off,
        syn_source_rate: a.syn_source_rate,
        syn_source_burst: a.syn_source_burst.max(1),
        syn_source_prefix6: a.syn_source_prefix6,
        syn_global_rate: a.syn_global_rate,
        syn_global_burst: a.syn_global_burst.max(1),
        allow_only: a.allow_only,
        cookie_path: a.cookie_path,
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

/// `--ip`'s addresses by family: at most one IPv4 address (`0.0.0.0` for
/// none), any IPv6 ones, no unspecified or multicast address.
fn split_families(ips: &[IpAddr]) -> Result<(Ipv4Addr, Vec<Ipv6Addr>)> {
    let mut v4 = None;
    let mut v6 = Vec::new();
    for ip in ips {
        if ip.is_unspecified() || ip.is_multicast() {
            anyhow::bail!("--ip {ip}: give a unicast address the stack is to own (e.g. 198.18.0.2 or 2001:2::2)");
        }
        match ip {
            IpAddr::V4(a) if v4.is_some() => anyhow::bail!(
                "--ip: one IPv4 address per instance ({} and {a} given); run one instance per IPv4 address",
                v4.unwrap_or(*a)
            ),
            IpAddr::V4(a) => v4 = Some(*a),
            IpAddr::V6(a) if !v6.contains(a) => v6.push(*a),
            IpAddr::V6(_) => {}
        }
    }
    Ok((v4.unwrap_or(Ipv4Addr::UNSPECIFIED), v6))
}

pub(super) fn run(a: Args) -> Result<()> {
    if let Some(d) = a.duration {
        if !(d > 0.0 && d.is_finite()) {
            anyhow::bail!("--duration {d} is invalid: give a positive number of seconds");
        }
    }
    let fastpath = fastpath_settings(&a)?;
    let metrics = a
        .metrics
        .as_deref()
        .map(crate::runtime::metrics::parse_addr)
        .transpose()?;
    let (ip, ip6) = split_families(&a.ip)?;
    let config = ServeConfig {
        stack: StackConfig {
            iface: a.iface,
            ip,
            ip6,
            extra_ips: Vec::new(),
            listen: a.port,
            client_ports: Vec::new(),
            app: a.app,
            response_bytes: a.response_bytes,
            echo_body: a.echo_body,
            max_body: a.max_body,
            tcp: {
                let mut t = crate::tcp::TcpConfig::default();
                for kv in &a.sysctls {
                    crate::tcp::sysctl::apply(&mut t, kv)?;
                }
                t
            },
            xsk: XskConfig {
                frames: a.frames,
                ring_size: a.ring_size,
                mode: a.xsk_mode,
                ..XskConfig::default()
            },
            queues: a.queues,
            xdp_mode: a.xdp_mode,
            pin_maps: a.pin_maps,
            fastpath: Some(fastpath),
            xdp_max_flows: a.xdp_max_flows,
        },
        duration: a.duration.map(Duration::from_secs_f64),
        busy_poll: a.busy_poll,
        metrics,
        capture: a.pcap.config()?,
    };
    let stats = serve::run(config)?;
    println!("final counters:");
    print!("{}", serve::render_stats(&stats));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(s: &str) -> Vec<IpAddr> {
        s.split(',').map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn ip_takes_one_ipv4_and_any_ipv6_addresses() {
        assert_eq!(
            split_families(&ips("198.18.0.2,2001:2::2,2001:2::3,2001:2::2")).unwrap(),
            (
                Ipv4Addr::new(198, 18, 0, 2),
                vec!["2001:2::2".parse().unwrap(), "2001:2::3".parse().unwrap()]
            )
        );
        assert_eq!(
            split_families(&ips("2001:2::2")).unwrap(),
            (Ipv4Addr::UNSPECIFIED, vec!["2001:2::2".parse().unwrap()])
        );
        for (bad, why) in [
            ("198.18.0.2,198.18.0.3", "one IPv4 address per instance"),
            ("::", "unicast"),
            ("ff02::1", "unicast"),
            ("0.0.0.0", "unicast"),
        ] {
            let e = split_families(&ips(bad)).unwrap_err().to_string();
            assert!(e.contains(why) && !e.contains('\n'), "{bad}: {e}");
        }
    }
}
