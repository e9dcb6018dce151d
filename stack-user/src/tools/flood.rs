//! `xstack flood`: a bounded, rate-controlled flood of spoofed-source TCP
//! segments (SYN, ACK, RST or a mix), for SYN-flood experiments on the
//! testbed. Two generators:
//! - `xsk` (the default): an AF_XDP socket in copy mode. Works on any
//!   interface towards any receiver; each frame becomes an skb, and a veth
//!   whose other end runs XDP copies it into a page before XDP runs.
//! - `live`: the XDP program `xstack_flood_gen` run by live-frames
//!   `BPF_PROG_TEST_RUN` ([`floodgen`](crate::datapath::floodgen)), each
//!   run redirecting its rewritten frame to the interface: the receiving
//!   end of a veth gets an `xdp_frame` and runs XDP on its page directly,
//!   as with a NIC. Needs kernel 5.18 and a receiver that accepts
//!   redirected frames (a veth whose other end runs NAPI: an XDP program
//!   there, or GRO on). Frames the receiver's ring refuses are counted
//!   (`ethtool -S`: `xdp_xmit_errors`) and reported.
//!
//! Traffic rules, enforced here before the socket opens: the target lies
//! inside 198.18.0.0/15 (RFC 2544 benchmarking range) or inside a prefix the
//! user names with `--allow-target` (see [`guard`](super::guard)); every
//! spoofed source lies inside 198.18.0.0/15, always. Durations above
//! [`MAX_DURATION`] need `--force`; every flood stops by itself.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::tools::guard::{check_target_ip, in_benchmark_range6, TargetPrefix};
use crate::{
    datapath::xsk::{XskConfig, XskMode, XskSocket},
    wire::{
        ethernet::{self, EthernetRepr, Mac, ETHERTYPE_IPV4},
        ipv4::{self, Ipv4Repr, PROTO_TCP},
        tcp::{SeqNumber, TcpOptions, TcpRepr, ACK, RST, SYN},
    },
};

mod live;
pub use live::{gen_config, parse_xmit_counters, template};

/// Longest flood without `--force`.
pub const MAX_DURATION: Duration = Duration::from_secs(60);
/// Longest flood even with `--force`.
pub const MAX_FORCED_DURATION: Duration = Duration::from_secs(3600);

/// What to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FloodKind {
    /// SYNs with an MSS option.
    Syn,
    /// Bare ACKs with random sequence and acknowledgment numbers.
    Ack,
    /// RSTs with random sequence numbers.
    Rst,
    /// SYN, ACK and RST in turn.
    Mixed,
    /// Aimed at established connections (RFC 5961 §3, §5): RSTs and ACKs
    /// in turn from the real client's address (`--sources A/32`) and its
    /// ports (`--src-ports LO-HI`), with guessed (random) sequence and
    /// acknowledgment numbers. A conforming victim resets nothing: an
    /// out-of-window segment is dropped, an in-window RST or an ACK of data
    /// never sent gets a challenge ACK.
    Est,
}

/// How frames are put on the wire.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Generator {
    /// An AF_XDP socket in copy mode: any interface, any receiver; frames
    /// arrive as skbs.
    #[default]
    Xsk,
    /// An XDP program run by live-frames BPF_PROG_TEST_RUN, redirecting
    /// each frame to the interface: a veth's other end receives it as a
    /// NIC's page (needs NAPI there: XDP attached or GRO on).
    Live,
}

/// `xstack flood` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct FloodArgs {
    /// Interface to send on (in the current network namespace).
    #[arg(long)]
    pub iface: String,
    /// Target ADDR:PORT (or [ADDR6]:PORT inside 2001:2::/48), inside 198.18.0.0/15 or an --allow-target prefix.
    #[arg(long)]
    pub target: SocketAddr,
    /// Also allow targets in this prefix (your own lab; IPv4 at least a /8, IPv6 at least a /32), repeatable.
    #[arg(long = "allow-target", value_name = "CIDR")]
    pub allow_target: Vec<TargetPrefix>,
    /// Packets per second; 0: as fast as one core can.
    #[arg(long)]
    pub rate: u64,
    /// Seconds (at most 60 without --force).
    #[arg(long)]
    pub duration: f64,
    /// Source prefix of the spoofed addresses, inside 198.18.0.0/15.
    #[arg(long, default_value = "198.18.128.0/17")]
    pub sources: String,
    /// Segment kind.
    #[arg(long, value_enum, default_value = "syn")]
    pub kind: FloodKind,
    /// Spoofed source ports LO-HI (default: random 1024-65023); `--kind est` needs it: the client ports of the connections it aims at.
    #[arg(long, value_name = "LO-HI")]
    pub src_ports: Option<String>,
    /// Destination MAC (default: the target's neighbour entry).
    #[arg(long)]
    pub dst_mac: Option<String>,
    /// Rx/tx queue to send on.
    #[arg(long, default_value_t = 0)]
    pub queue: u32,
    /// Allow durations up to an hour.
    #[arg(long)]
    pub force: bool,
    /// Serve Prometheus/OpenMetrics metrics (packets queued, sent, not queued; AF_XDP ring statistics) at http://ADDR:PORT/metrics while flooding.
    #[arg(long, value_name = "ADDR:PORT")]
    pub metrics: Option<String>,
    /// xsk: an AF_XDP socket (any interface and receiver); live: an XDP program run with live frames redirecting to the interface, received as a NIC's pages (a veth needs NAPI at the other end: XDP there or GRO on).
    #[arg(long, value_enum, default_value = "xsk")]
    pub generator: Generator,
}

/// A validated flood.
#[derive(Clone, Debug)]
pub struct FloodConfig {
    /// Interface.
    pub iface: String,
    /// Target.
    pub target: SocketAddr,
    /// Prefixes beyond 198.18.0.0/15 and 2001:2::/48 the target may lie in.
    pub allow_target: Vec<TargetPrefix>,
    /// Packets per second, 0 = unpaced.
    pub rate: u64,
    /// Duration.
    pub duration: Duration,
    /// Source prefix.
    pub sources: (IpAddr, u8),
    /// Kind.
    pub kind: FloodKind,
    /// Spoofed source ports (inclusive range); None: random 1024-65023.
    pub src_ports: Option<(u16, u16)>,
    /// Destination MAC.
    pub dst_mac: Mac,
    /// Queue.
    pub queue: u32,
    /// Serve Prometheus metrics here while flooding (`--metrics`).
    pub metrics: Option<std::net::SocketAddr>,
    /// How frames are sent.
    pub generator: Generator,
}

/// What a flood did.
#[derive(Clone, Debug, Serialize)]
pub struct FloodReport {
    /// Packets the kernel reported sent (completion ring).
    pub sent: u64,
    /// Seconds spent sending.
    pub seconds: f64,
    /// Requested rate (0 = unpaced).
    pub requested_pps: u64,
    /// Achieved rate.
    pub achieved_pps: f64,
    /// Frames that found no free buffer or ring slot (live: refused by
    /// the receiver's ring, `xdp_xmit_errors`).
    pub tx_dropped: u64,
    /// The generator.
    pub generator: Generator,
    /// Frames written (live: program runs; xsk: frames queued).
    pub generated: u64,
    /// Live: frames neither accepted nor refused by the receiver (a veth
    /// end without NAPI drops redirected frames before counting them);
    /// None where the interface has no redirect counters.
    pub lost: Option<u64>,
}

impl std::fmt::Display for FloodReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "flood: sent {} packets in {:.2} s = {:.0} pps (requested {}), {} not queued",
            self.sent,
            self.seconds,
            self.achieved_pps,
            if self.requested_pps == 0 {
                "max".to_string()
            } else {
                self.requested_pps.to_string()
            },
            self.tx_dropped
        )?;
        if self.generator == Generator::Live {
            write!(
                f,
                "; generator live: {} frames generated, {} refused by the receiver's ring",
                self.generated, self.tx_dropped
            )?;
            match self.lost {
                Some(0) => {}
                Some(n) => write!(f, ", {n} lost before it (no NAPI at the receiver?)")?,
                None => write!(
                    f,
                    " (the interface has no redirect counters: sent = generated)"
                )?,
            }
        }
        Ok(())
    }
}

pub use crate::tools::guard::in_benchmark_range;

fn parse_mac(s: &str) -> Option<Mac> {
    let mut m = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut m {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(Mac(m))
}

/// Parses `LO-HI` (inclusive, 1 <= LO <= HI).
pub fn parse_port_range(s: &str) -> Option<(u16, u16)> {
    let (lo, hi) = s.split_once('-')?;
    let (lo, hi) = (
        lo.trim().parse::<u16>().ok()?,
        hi.trim().parse::<u16>().ok()?,
    );
    (lo >= 1 && lo <= hi).then_some((lo, hi))
}

fn neighbour_mac(ip: IpAddr) -> Option<Mac> {
    let out = std::process::Command::new("ip")
        .args(["-j", "neigh", "show", &ip.to_string()])
        .output()
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    parse_mac(v.get(0)?.get("lladdr")?.as_str()?)
}

impl FloodArgs {
    /// Validates the arguments against the traffic rules.
    pub fn to_config(&self) -> Result<FloodConfig> {
        check_target_ip("xstack flood", self.target.ip(), &self.allow_target)?;
        let sources = crate::datapath::fastpath::parse_prefix(&self.sources)
            .map_err(|e| anyhow::anyhow!("--sources {}: {e}", self.sources))?;
        if sources.0.is_ipv4() != self.target.is_ipv4() {
            bail!(
                "--sources {} and --target {} are of different address families; give sources of the target's family",
                self.sources,
                self.target
            );
        }
        if !sources_in_range(sources) {
            bail!(
                "--sources {} is not inside 198.18.0.0/15 (IPv6: 2001:2::/48); spoofed sources must stay in the benchmarking range",
                self.sources
            );
        }
        if !(self.duration > 0.0 && self.duration.is_finite()) {
            bail!(
                "--duration {} is invalid: give a positive number of seconds",
                self.duration
            );
        }
        let src_ports = match &self.src_ports {
            Some(r) => Some(parse_port_range(r).with_context(|| {
                format!("--src-ports {r}: expected LO-HI with 1 <= LO <= HI <= 65535")
            })?),
            None if self.kind == FloodKind::Est => bail!(
                "--kind est aims at established connections: give their client ports with --src-ports LO-HI (and the client's address with --sources A/32)"
            ),
            None => None,
        };
        let duration = Duration::from_secs_f64(self.duration);
        let limit = if self.force {
            MAX_FORCED_DURATION
        } else {
            MAX_DURATION
        };
        if duration > limit {
            bail!(
                "--duration {} s is over the {} s limit{}",
                self.duration,
                limit.as_secs(),
                if self.force {
                    ""
                } else {
                    "; pass --force for up to 3600 s"
                }
            );
        }
        let dst_mac = match &self.dst_mac {
            Some(m) => parse_mac(m)
                .with_context(|| format!("--dst-mac {m}: expected aa:bb:cc:dd:ee:ff"))?,
            None => neighbour_mac(self.target.ip()).with_context(|| {
                format!(
                    "no neighbour entry for {}; pass --dst-mac (or ping it first)",
                    self.target.ip()
                )
            })?,
        };
        Ok(FloodConfig {
            iface: self.iface.clone(),
            target: self.target,
            allow_target: self.allow_target.clone(),
            rate: self.rate,
            duration,
            sources,
            kind: self.kind,
            src_ports,
            dst_mac,
            queue: self.queue,
            metrics: self
                .metrics
                .as_deref()
                .map(crate::runtime::metrics::parse_addr)
                .transpose()?,
            generator: self.generator,
        })
    }
}

/// xorshift64*: cheap per-packet randomness for addresses, ports, numbers.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Whether a `--sources` prefix lies in the benchmarking range of its
/// family: 198.18.0.0/15 or 2001:2::/48.
fn sources_in_range(sources: (IpAddr, u8)) -> bool {
    match sources.0 {
        IpAddr::V4(a) => sources.1 >= 15 && in_benchmark_range(a),
        IpAddr::V6(a) => sources.1 >= 48 && in_benchmark_range6(a),
    }
}

/// Writes one spoofed segment into `buf`; returns its length.
fn build(buf: &mut [u8], c: &FloodConfig, src_mac: Mac, kind: FloodKind, rng: &mut Rng) -> usize {
    let r = rng.next();
    let src = match c.sources.0 {
        IpAddr::V4(net) => {
            let host_bits = 32 - u32::from(c.sources.1.min(32));
            let host = if host_bits == 0 {
                0
            } else {
                (r as u32) & (u32::MAX >> (32 - host_bits))
            };
            IpAddr::V4(Ipv4Addr::from(u32::from(net) | host))
        }
        IpAddr::V6(net) => {
            let host_bits = 128 - u32::from(c.sources.1.min(128));
            let wide = (u128::from(r) << 64) | u128::from(rng.next());
            let host = if host_bits == 0 {
                0
            } else {
                wide & (u128::MAX >> (128 - host_bits))
            };
            IpAddr::V6(Ipv6Addr::from(u128::from(net) | host))
        }
    };
    let sport = match c.src_ports {
        Some((lo, hi)) => lo + ((r >> 32) as u32 % (u32::from(hi - lo) + 1)) as u16,
        None => 1024 + ((r >> 32) as u16 % 64000),
    };
    let r2 = rng.next();
    // SYN: MSS 1460 only; ACK: a random acknowledgment; RST: bare.
    let (flags, mss) = match kind {
        FloodKind::Syn | FloodKind::Mixed => (SYN, Some(1460)),
        FloodKind::Ack => (ACK, None),
        FloodKind::Rst | FloodKind::Est => (RST, None),
    };
    let tcp = TcpRepr {
        src_port: sport,
        dst_port: c.target.port(),
        seq: SeqNumber((r2 >> 16) as u32),
        ack: (flags == ACK).then_some(SeqNumber((r2 >> 40) as u32)),
        flags: flags & !ACK,
        window: 64240,
        urgent: 0,
        options: TcpOptions {
            mss,
            ..TcpOptions::default()
        },
        payload: &[],
    };
    let tcp_len = tcp.len();
    let ip_len = if src.is_ipv4() {
        ipv4::HEADER_LEN
    } else {
        crate::wire::ipv6::HEADER_LEN
    };
    let len = ethernet::HEADER_LEN + ip_len + tcp_len;
    if buf.len() < len.max(60) {
        return 0;
    }
    let _ = EthernetRepr {
        dst: c.dst_mac,
        src: src_mac,
        ethertype: if src.is_ipv4() {
            ETHERTYPE_IPV4
        } else {
            ethernet::ETHERTYPE_IPV6
        },
    }
    .emit(buf);
    let ip = &mut buf[ethernet::HEADER_LEN..];
    match (src, c.target.ip()) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            let _ = Ipv4Repr {
                src,
                dst,
                protocol: PROTO_TCP,
                ttl: 64,
                tos: 0,
                ident: r2 as u16,
                dont_frag: true,
                payload_len: tcp_len,
            }
            .emit(ip);
            let _ = tcp.emit(src, dst, &mut ip[ipv4::HEADER_LEN..]);
        }
        (IpAddr::V6(src), IpAddr::V6(dst)) => {
            let _ = crate::wire::ipv6::Ipv6Repr {
                src,
                dst,
                next_header: crate::wire::ipv6::NH_TCP,
                hop_limit: 64,
                traffic_class: 0,
                payload_len: tcp_len,
            }
            .emit(ip);
            let _ = tcp.emit(src, dst, &mut ip[crate::wire::ipv6::HEADER_LEN..]);
        }
        // to_config refuses mixed families.
        _ => return 0,
    }
    // Pad to the Ethernet minimum.
    buf[len..60.max(len)].fill(0);
    len.max(60)
}

/// A flood's counts as a scrape of `--metrics` reads them.
#[derive(Default)]
struct Progress {
    queued: AtomicU64,
    sent: AtomicU64,
    not_queued: AtomicU64,
    kernel: std::sync::Mutex<crate::datapath::xsk::KernelStats>,
    last_kernel: std::sync::Mutex<Option<Instant>>,
}

impl Progress {
    fn store(&self, queued: u64, sock: &XskSocket) {
        self.queued.store(queued, Ordering::Relaxed);
        self.sent.store(sock.tx_completed(), Ordering::Relaxed);
        self.not_queued.store(sock.tx_dropped(), Ordering::Relaxed);
        // The kernel's ring statistics cost a syscall: every 50 ms at most.
        if let Ok(mut last) = self.last_kernel.try_lock() {
            if last.is_none_or(|t| t.elapsed() >= Duration::from_millis(50)) {
                *last = Some(Instant::now());
                if let Ok(mut k) = self.kernel.try_lock() {
                    *k = sock.kernel_stats();
                }
            }
        }
    }

    fn exposition(&self, rate: u64, start: Instant) -> crate::runtime::metrics::Exposition {
        let mut e = crate::runtime::metrics::Exposition::new();
        let sent = self.sent.load(Ordering::Relaxed);
        e.counter(
            "xstack_flood_queued_packets",
            "Frames queued on the AF_XDP TX ring.",
            vec![],
            self.queued.load(Ordering::Relaxed),
        );
        e.counter(
            "xstack_flood_sent_packets",
            "Frames the kernel completed (sent).",
            vec![],
            sent,
        );
        e.counter(
            "xstack_flood_not_queued_packets",
            "Frames that found no free TX slot or UMEM frame.",
            vec![],
            self.not_queued.load(Ordering::Relaxed),
        );
        e.gauge(
            "xstack_flood_requested_packets_per_second",
            "Requested rate (0: as fast as one core can).",
            vec![],
            rate as f64,
        );
        e.gauge(
            "xstack_flood_sent_packets_per_second",
            "Frames sent per second since the flood started.",
            vec![],
            sent as f64 / start.elapsed().as_secs_f64().max(1e-9),
        );
        if let Ok(k) = self.kernel.lock() {
            for (name, v) in [
                ("tx_invalid_descs", k.tx_invalid_descs),
                ("tx_ring_empty", k.tx_ring_empty),
            ] {
                e.counter(
                    &format!("xstack_xsk_{name}"),
                    "AF_XDP socket statistics of the kernel (XDP_STATISTICS).",
                    vec![],
                    v,
                );
            }
        }
        e
    }
}

/// Sends the flood from the calling thread; returns what it achieved.
pub fn run(c: &FloodConfig) -> Result<FloodReport> {
    // Again here, for callers that build a FloodConfig themselves: nothing
    // is opened or built for a target outside the guard.
    check_target_ip("xstack flood", c.target.ip(), &c.allow_target)?;
    if !sources_in_range(c.sources) || c.sources.0.is_ipv4() != c.target.is_ipv4() {
        bail!("flood sources must stay inside 198.18.0.0/15 (IPv6: 2001:2::/48), of the target's family");
    }
    if c.generator == Generator::Live {
        return live::run_live(c);
    }
    let metrics = crate::runtime::metrics::bind_if(c.metrics)?;
    let iface = crate::runtime::sys::interface(&c.iface)?;
    let mut sock = XskSocket::open(
        &iface.name,
        c.queue,
        &XskConfig {
            frames: 4096,
            ring_size: 2048,
            mode: XskMode::Copy,
            ..XskConfig::default()
        },
    )?;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id()));
    let start = Instant::now();
    // What a scrape reads: stored once per batch of up to 64 frames.
    let progress = std::sync::Arc::new(Progress::default());
    let _metrics = metrics
        .map(|m| {
            let (p, rate) = (progress.clone(), c.rate);
            m.serve(move || p.exposition(rate, start))
        })
        .transpose()?;
    let end = start + c.duration;
    let mut queued = 0u64;
    let mut i = 0u64;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        sock.complete();
        let allowed = if c.rate == 0 {
            u64::MAX
        } else {
            ((now - start).as_secs_f64() * c.rate as f64) as u64 + 1
        };
        let budget = allowed.saturating_sub(queued).min(64);
        if budget == 0 {
            // Ahead of schedule: wait for the next packet's slot.
            let next = Duration::from_secs_f64((queued as f64) / c.rate as f64);
            let wait = (start + next).saturating_duration_since(Instant::now());
            if wait > Duration::from_micros(200) {
                std::thread::sleep(wait - Duration::from_micros(100));
            } else {
                std::hint::spin_loop();
            }
            continue;
        }
        sock.transmit_with(|tx| {
            for _ in 0..budget {
                let kind = match c.kind {
                    FloodKind::Mixed => {
                        [FloodKind::Syn, FloodKind::Ack, FloodKind::Rst][(i % 3) as usize]
                    }
                    FloodKind::Est => [FloodKind::Rst, FloodKind::Ack][(i % 2) as usize],
                    k => k,
                };
                i += 1;
                if !tx.send(|buf| build(buf, c, iface.mac, kind, &mut rng)) {
                    break;
                }
                queued += 1;
            }
        });
        progress.store(queued, &sock);
    }
    let seconds = start.elapsed().as_secs_f64();
    let drain = Instant::now() + Duration::from_millis(500);
    while sock.tx_in_flight() > 0 && Instant::now() < drain {
        sock.complete();
        std::thread::sleep(Duration::from_millis(2));
    }
    let sent = sock.tx_completed();
    Ok(FloodReport {
        sent,
        seconds,
        requested_pps: c.rate,
        achieved_pps: sent as f64 / seconds.max(1e-9),
        tx_dropped: sock.tx_dropped(),
        generator: Generator::Xsk,
        generated: queued,
        lost: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::checksum;

    fn args() -> FloodArgs {
        FloodArgs {
            iface: "lo".into(),
            target: "198.18.0.2:8080".parse().unwrap(),
            allow_target: vec![],
            rate: 1000,
            duration: 1.0,
            sources: "198.18.128.0/17".into(),
            kind: FloodKind::Syn,
            src_ports: None,
            dst_mac: Some("02:78:73:00:00:02".into()),
            queue: 0,
            force: false,
            metrics: None,
            generator: Generator::Xsk,
        }
    }

    #[test]
    fn refuses_targets_sources_and_durations_outside_the_rules() {
        assert!(args().to_config().is_ok());
        let mut a = args();
        a.target = "10.0.0.1:80".parse().unwrap();
        assert!(a.to_config().is_err());
        let mut a = args();
        a.sources = "198.16.0.0/12".into();
        assert!(a.to_config().is_err(), "prefix wider than the range");
        let mut a = args();
        a.sources = "192.0.2.0/24".into();
        assert!(a.to_config().is_err());
        let mut a = args();
        a.duration = 61.0;
        assert!(a.to_config().is_err());
        a.force = true;
        assert!(a.to_config().is_ok());
        a.duration = 3601.0;
        assert!(a.to_config().is_err());
    }

    #[test]
    fn allow_target_widens_the_target_guard_but_never_the_sources() {
        let mut a = args();
        a.target = "10.1.0.5:80".parse().unwrap();
        let e = a.to_config().unwrap_err().to_string();
        assert!(e.contains("--allow-target"), "{e}");
        a.allow_target = vec!["10.1.0.0/16".parse().unwrap()];
        let c = a.to_config().expect("inside the allowed prefix");
        assert_eq!(c.allow_target, a.allow_target);
        a.target = "10.2.0.5:80".parse().unwrap();
        assert!(a.to_config().is_err(), "outside the allowed prefix");
        // Spoofed sources stay in the benchmarking range whatever is allowed.
        a.target = "10.1.0.5:80".parse().unwrap();
        a.sources = "10.1.128.0/17".into();
        assert!(a.to_config().is_err());
    }

    #[test]
    fn run_refuses_a_config_outside_the_guard_before_opening_a_socket() {
        // An interface that does not exist: had the guard not refused
        // first, the error would be about the interface. Either generator.
        for generator in [Generator::Xsk, Generator::Live] {
            let mut c = args().to_config().unwrap();
            c.generator = generator;
            c.iface = "xs-none-0".into();
            c.target = "10.0.0.1:80".parse().unwrap();
            let e = run(&c).unwrap_err().to_string();
            assert!(e.contains("--allow-target"), "{generator:?}: {e}");
            let mut c = args().to_config().unwrap();
            c.generator = generator;
            c.iface = "xs-none-0".into();
            c.sources = ("10.0.0.0".parse().unwrap(), 8);
            let e = run(&c).unwrap_err().to_string();
            assert!(e.contains("198.18.0.0/15"), "{generator:?}: {e}");
        }
    }

    #[test]
    fn the_live_generator_counts_what_a_veth_accepted_and_refused_from_ethtool() {
        let text = "NIC statistics:\n     peer_ifindex: 2\n     rx_queue_0_xdp_packets: 9\n     rx_queue_0_xdp_tx_errors: 4\n     tx_queue_0_xdp_xmit: 740\n     tx_queue_0_xdp_xmit_errors: 12\n     tx_queue_1_xdp_xmit: 10\n";
        assert_eq!(parse_xmit_counters(text), Some((750, 12)));
        assert_eq!(
            parse_xmit_counters("NIC statistics:\n     rx_packets: 5\n"),
            None
        );
    }

    #[test]
    fn the_live_generators_config_keeps_sources_ports_and_kind_of_the_flood() {
        let mut a = args();
        a.kind = FloodKind::Mixed;
        let c = a.to_config().unwrap();
        let frame = template(&c, Mac([2, 0, 0, 0, 0, 1]));
        let g = gen_config(&c, &frame, 7);
        assert_eq!(
            (g.ifindex, g.kind, g.family, g.tcp_len),
            (7, stack_ebpf::GEN_MIXED, 4, 24)
        );
        assert_eq!((g.port_lo, g.port_span), (1024, 64000));
        // 198.18.128.0/17 in memory order: network and host bits.
        assert_eq!(g.src_net[0].to_ne_bytes(), [198, 18, 128, 0]);
        assert_eq!(g.src_host[0].to_ne_bytes(), [0, 0, 127, 255]);
        assert_eq!(g.template[0].to_ne_bytes(), frame[..4]);
        assert_eq!(g.template[14].to_ne_bytes(), frame[56..60]);
        assert_eq!(g.template[15], 0, "zero past the frame");
        let mut a = args();
        a.target = "[2001:2::2]:80".parse().unwrap();
        a.sources = "2001:2:0:8000::/49".into();
        a.kind = FloodKind::Ack;
        a.src_ports = Some("40000-40009".into());
        let c = a.to_config().unwrap();
        let g = gen_config(&c, &template(&c, Mac([2, 0, 0, 0, 0, 1])), 7);
        assert_eq!(
            (g.family, g.tcp_len, g.port_lo, g.port_span),
            (6, 20, 40000, 10)
        );
        assert_eq!(g.src_net[1].to_ne_bytes(), [0, 0, 0x80, 0]);
        assert_eq!(g.src_host[1].to_ne_bytes(), [0, 0, 0x7f, 0xff]);
        assert_eq!((g.src_host[0], g.src_host[2]), (0, u32::MAX));
    }

    #[test]
    fn segments_are_well_formed_and_spoofed_inside_the_prefix() {
        let c = args().to_config().unwrap();
        let mut rng = Rng(1);
        for kind in [FloodKind::Syn, FloodKind::Ack, FloodKind::Rst] {
            let mut buf = [0u8; 2048];
            let n = build(&mut buf, &c, Mac([2, 0, 0, 0, 0, 1]), kind, &mut rng);
            let (eth, ip) = EthernetRepr::parse(&buf[..n]).unwrap();
            assert_eq!(eth.dst, c.dst_mac);
            let (ipr, seg) = Ipv4Repr::parse(ip).unwrap();
            assert!(in_benchmark_range(ipr.src) && ipr.src.octets()[2] >= 128);
            let sum = checksum::pseudo_header(ipr.src, ipr.dst, PROTO_TCP, seg.len() as u16);
            assert_eq!(checksum::finish(checksum::sum(sum, seg)), 0, "{kind:?}");
            let tcp = TcpRepr::parse(ipr.src, ipr.dst, seg).unwrap();
            let expect = match kind {
                FloodKind::Syn => (SYN, false, Some(1460)),
                FloodKind::Ack => (0, true, None),
                _ => (RST, false, None),
            };
            assert_eq!((tcp.flags, tcp.ack.is_some(), tcp.options.mss), expect);
            assert_eq!((tcp.dst_port, tcp.window), (c.target.port(), 64240));
        }
    }

    #[test]
    fn ipv6_floods_stay_in_2001_2_slash_48_and_build_valid_segments() {
        let mut a = args();
        a.target = "[2001:2::2]:8080".parse().unwrap();
        a.sources = "2001:2:0:99::/64".into();
        let c = a.to_config().unwrap();
        let mut rng = Rng(3);
        let net: u128 = "2001:2:0:99::".parse::<Ipv6Addr>().unwrap().into();
        for _ in 0..50 {
            let mut buf = [0u8; 2048];
            let n = build(
                &mut buf,
                &c,
                Mac([2, 0, 0, 0, 0, 1]),
                FloodKind::Syn,
                &mut rng,
            );
            let (eth, ip) = EthernetRepr::parse(&buf[..n]).unwrap();
            assert_eq!(eth.ethertype, ethernet::ETHERTYPE_IPV6);
            let (ipr, seg) = crate::wire::ipv6::Ipv6Repr::parse(ip).unwrap();
            assert_eq!(u128::from(ipr.src) >> 64, net >> 64, "inside the /64");
            assert_eq!(ipr.dst, "2001:2::2".parse::<Ipv6Addr>().unwrap());
            let tcp = TcpRepr::parse(ipr.src, ipr.dst, seg).unwrap();
            assert_eq!((tcp.flags, tcp.dst_port), (SYN, 8080));
        }
        for (target, sources, why) in [
            ("[2001:2::2]:80", "2001:2::/47", "2001:2::/48"),
            ("[2001:2::2]:80", "2001:db8::/64", "2001:2::/48"),
            (
                "[2001:2::2]:80",
                "198.18.128.0/17",
                "different address families",
            ),
            (
                "198.18.0.2:80",
                "2001:2:0:99::/64",
                "different address families",
            ),
            ("[2001:db8::2]:80", "2001:2:0:99::/64", "2001:2::/48"),
        ] {
            let mut a = args();
            a.target = target.parse().unwrap();
            a.sources = sources.into();
            let e = a.to_config().unwrap_err().to_string();
            assert!(
                e.contains(why) && !e.contains('\n'),
                "{target} {sources}: {e}"
            );
        }
    }

    #[test]
    fn est_segments_aim_at_the_clients_four_tuples_with_guessed_numbers() {
        let mut a = args();
        a.kind = FloodKind::Est;
        let e = a.to_config().unwrap_err().to_string();
        assert!(e.contains("--src-ports"), "{e}");
        a.src_ports = Some("40010-40000".into());
        assert!(a.to_config().is_err(), "LO > HI");
        a.src_ports = Some("40000-40003".into());
        a.sources = "198.18.0.1/32".into();
        let c = a.to_config().unwrap();
        assert_eq!(c.src_ports, Some((40000, 40003)));
        let mut rng = Rng(7);
        let mut seen_ports = std::collections::BTreeSet::new();
        let mut seqs = std::collections::BTreeSet::new();
        for (i, kind) in [FloodKind::Rst, FloodKind::Ack]
            .iter()
            .cycle()
            .take(200)
            .enumerate()
        {
            let mut buf = [0u8; 2048];
            let n = build(&mut buf, &c, Mac([2, 0, 0, 0, 0, 1]), *kind, &mut rng);
            let (_, ip) = EthernetRepr::parse(&buf[..n]).unwrap();
            let (ipr, seg) = Ipv4Repr::parse(ip).unwrap();
            assert_eq!(
                ipr.src,
                Ipv4Addr::new(198, 18, 0, 1),
                "the real client's address"
            );
            let tcp = TcpRepr::parse(ipr.src, ipr.dst, seg).unwrap();
            assert!((40000..=40003).contains(&tcp.src_port));
            assert_eq!(tcp.dst_port, 8080);
            let want = if i % 2 == 0 { (RST, false) } else { (0, true) };
            assert_eq!((tcp.flags, tcp.ack.is_some()), want);
            seen_ports.insert(tcp.src_port);
            seqs.insert(tcp.seq.0);
        }
        assert_eq!(seen_ports.len(), 4, "every target port is hit");
        assert!(seqs.len() > 190, "sequence numbers are guessed, not fixed");
        assert_eq!(parse_port_range("1-65535"), Some((1, 65535)));
        assert_eq!(parse_port_range("0-5"), None);
        assert_eq!(parse_port_range("7"), None);
    }
}
