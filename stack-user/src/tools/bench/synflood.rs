//! `xstack bench synflood`: legitimate connections under floods.
//!
//! The matrix: for each system — (a) a Linux listener with
//! `tcp_syncookies=1`, (b) the same behind nftables SYNPROXY, (c) `xstack
//! serve --syncookies auto` — its no-flood row, then each attack kind (SYN,
//! ACK, RST, mixed from spoofed 198.18.128.0/17 sources; `est`: RSTs and
//! ACKs with guessed numbers aimed at the legit client's open connections)
//! at a rising series of flood rates up to the generator's maximum
//! (measured first). Every row runs on a testbed of its own (fresh
//! namespaces, veth pair, sink, server, conntrack table), so no state
//! carries from one row to the next. A Linux client in the peer namespace
//! runs connect + 1-byte request/echo + close in a loop (1 s timeout per
//! connection; `est`: echoes on connections kept open) while `xstack flood`
//! sends on the same veth. The client's namespace runs `tcp_tw_reuse=1`
//! and ports 1024-65535 ([`super::client_sysctls`]; `est`: the flood's
//! ports), as a load tester's host: closing first, the client keeps a
//! TIME_WAIT socket per connection, which must not exhaust its ports in a
//! long row. Per row: success %, connections/s, "kept" (over
//! the system's no-flood row), outcomes (ok, refused, reset, timeout),
//! latency p50/p99, and where the CPU goes on the victim core.
//!
//! The victim core (unless `--no-victim-core`): the stack-side veth's NAPI
//! runs threaded (GRO on at the stack end for the Linux rows, the XDP
//! program for xstack) and that `napi/*` thread and the server are pinned
//! to CPU 0; the generator, the legit client and the peer's (threaded)
//! NAPI to CPU 1; both NAPI threads run at SCHED_FIFO (`--napi-priority`,
//! default 50), so receive work preempts other threads on its core as
//! softirq work does behind a NIC. The victim then pays for what it
//! receives, as with a real NIC. Per row: CPU 0 and CPU 1 busy %, the NAPI thread's CPU %,
//! the victim core's ns per flood packet beyond the no-flood row, and the
//! XDP program's run time per packet (`kernel.bpf_stats_enabled`, restored
//! afterwards).
//!
//! `--generator live` (the default) floods with `xstack flood --generator
//! live`: frames arrive at the stack end as `xdp_frame`s on pages (veth's
//! redirect path, no skb, no copy), as from a NIC; every system's stack
//! end then runs NAPI (GRO on for the Linux rows, the XDP program for
//! xstack) so it accepts them. `--generator xsk` floods through an AF_XDP
//! socket in copy mode: skbs, copied into a page where XDP runs.
//!
//! `--family 6` runs every row over IPv6 (the server on 2001:2::2, spoofed
//! sources from 2001:2:0:8000::/49, the `est` flood from the client's
//! 2001:2::1; SYNPROXY as an `ip6` table), `--family both` each row over
//! IPv4 and then IPv6 (a family column; "kept" against the same system's
//! no-flood row of the same family). The peer-side sink drops the spoofed
//! IPv4 and IPv6 prefixes alike; XDP answers IPv6 SYNs with cookies as it
//! does IPv4 ones.

use std::{
    io::{Read, Write},
    net::{Ipv6Addr, SocketAddr, TcpStream},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::family::{kernel_stack_addr, ratio, Families, Family};
use super::victim;
use crate::{
    datapath::sink::XdpSink,
    runtime::stack::SERVE_BACKLOG,
    tools::flood::{FloodConfig, FloodKind, Generator},
    tools::testbed::{netns_command, Testbed, TestbedGuard, STACK_MAC},
};

const PORT: u16 = 8080;

/// The established-flow rows (`est`): the legit client's source ports
/// (its namespace's `ip_local_port_range`, which the flood aims at) and
/// connections per client thread, each kept open for the whole row.
const EST_PORTS: (u16, u16) = (40000, 40063);
const EST_CONNS_PER_CLIENT: usize = 8;

/// `xstack bench synflood` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct SynfloodArgs {
    /// Seconds per measurement (row).
    #[arg(long, default_value_t = 2.0)]
    pub seconds: f64,
    /// Flood rates (pps), comma separated; 0 is the no-flood row each system's "kept" is measured against; default: 0, then 1/4, 1/2 and all of the generator's measured maximum.
    #[arg(long, value_delimiter = ',')]
    pub rates: Vec<u64>,
    /// Attack kinds, comma separated: syn, ack, rst, mixed (random 4-tuples), est (RSTs and ACKs aimed at the legit client's open connections).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "syn,ack,rst,mixed,est"
    )]
    pub kinds: Vec<FloodKind>,
    /// Client threads.
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
    /// Legit connections offered per second, all client threads together,
    /// at fixed times whatever the flood does (open loop, as users arrive:
    /// a late or lost connection does not delay the next); 0: each client
    /// thread connects again as soon as its last connection ended (closed
    /// loop, as fast as the client's core allows).
    #[arg(long, default_value_t = DEFAULT_LEGIT_RATE)]
    pub legit_rate: u64,
    /// Where to write synflood.json and one synflood-KIND.svg per attack kind.
    #[arg(long, default_value = "target/synflood")]
    pub out: std::path::PathBuf,
    /// Systems to run: linux, synproxy, xstack; and xdp-drop, the floor:
    /// an XDP program at the stack end that drops every frame to the
    /// server (legit ones too: its rows give only the per-packet costs).
    #[arg(long, value_delimiter = ',', default_value = "linux,synproxy,xstack")]
    pub systems: Vec<String>,
    /// Run without the victim core (no threaded NAPI, no pinning: veth
    /// receive work then runs on the sender's CPU), for comparison.
    #[arg(long)]
    pub no_victim_core: bool,
    /// Run without the peer-side sink (reflected SYN-ACKs then reach the
    /// legit client's kernel), for comparison.
    #[arg(long)]
    pub no_sink: bool,
    /// Address family: 4, 6 or both (each row over IPv4, then IPv6).
    #[arg(long, default_value = "4")]
    pub family: Families,
    /// Flood generator: live (XDP frames redirected into the veth: the victim's NAPI gets pages, as from a NIC) or xsk (AF_XDP copy mode: skbs, copied into pages before the victim's XDP).
    #[arg(long, value_enum, default_value = "live")]
    pub generator: Generator,
    /// SCHED_FIFO priority of the threaded NAPI of both veth ends (the victim's on CPU 0, the peer's on CPU 1), so receive work preempts other threads as softirq work does behind a NIC; 0: SCHED_OTHER, sharing each core fairly with whatever else runs there.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(i32).range(0..=99))]
    pub napi_priority: i32,
}

/// The default offered legit load, connections/s. A tenth to a fifth of
/// what each system serves from this testbed's client core in a closed
/// loop (7,000-12,000/s), so that the client's core has room left next to
/// the generator and "kept" measures the victim, not the client's core.
pub const DEFAULT_LEGIT_RATE: u64 = 2000;
/// The most `--legit-rate` may ask for.
pub const MAX_LEGIT_RATE: u64 = 100_000;

/// What `--systems` takes.
const SYSTEMS: [&str; 4] = ["linux", "synproxy", "xstack", "xdp-drop"];

/// The flood's spoofed sources, which the peer-side sink drops.
const SPOOFED: (std::net::Ipv4Addr, u8) = (std::net::Ipv4Addr::new(198, 18, 128, 0), 17);
/// The IPv6 flood's spoofed sources: 2^15 /64s (each its own SYN bucket
/// in XDP) off the testbed link, inside 2001:2::/48.
const SPOOFED6: (Ipv6Addr, u8) = (Ipv6Addr::new(0x2001, 2, 0, 0x8000, 0, 0, 0, 0), 49);

/// The spoofed prefix of `family` as `ADDR/LEN`.
fn spoofed_cidr(family: Family) -> String {
    match family {
        Family::V4 => format!("{}/{}", SPOOFED.0, SPOOFED.1),
        Family::V6 => format!("{}/{}", SPOOFED6.0, SPOOFED6.1),
    }
}

/// CPU 0 is the victim core (stack NAPI thread + server), CPU 1 the rest
/// (generator, legit client, peer NAPI thread).
const VICTIM_CPU: usize = victim::RX_CPU;
const OTHER_CPU: usize = victim::TX_CPU;

/// The arrangement in force for one system's testbed.
#[derive(Clone, Debug, Default)]
struct Cores {
    /// Threaded NAPI and pinning in force.
    on: bool,
    /// The stack-side `napi/*` threads.
    napi: Vec<i32>,
    /// The XDP program attached on the stack side (xstack).
    xdp_prog: Option<u32>,
    /// The peer-side sink.
    sink: Option<Arc<XdpSink>>,
    /// The peer-side `napi/*` threads.
    peer_napi: Vec<i32>,
}

impl Cores {
    fn pin_here(&self, cpu: usize) {
        if self.on {
            let _ = victim::pin(0, cpu);
        }
    }
}

/// The legit client's connections by outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Outcomes {
    /// Connected and echoed the byte.
    pub ok: u64,
    /// Refused (RST to the SYN).
    pub refused: u64,
    /// Reset, or closed by the server before the echo.
    pub reset: u64,
    /// No handshake or no echo within the client's 1 s timeout.
    pub timeout: u64,
    /// Any other error.
    pub other: u64,
    /// Paced client: connections that started more than 10 ms after their
    /// time, the client's core being busy (counted in the outcomes too).
    pub late: u64,
}

impl Outcomes {
    fn add(&mut self, o: &Outcomes) {
        self.ok += o.ok;
        self.refused += o.refused;
        self.reset += o.reset;
        self.timeout += o.timeout;
        self.other += o.other;
        self.late += o.late;
    }

    /// Counts one failed connection by its error.
    pub fn count_error(&mut self, e: &std::io::Error) {
        use std::io::ErrorKind::*;
        match e.kind() {
            ConnectionRefused => self.refused += 1,
            ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof => self.reset += 1,
            TimedOut | WouldBlock => self.timeout += 1,
            _ => self.other += 1,
        }
    }

    /// All connections tried.
    pub fn attempts(&self) -> u64 {
        self.ok + self.refused + self.reset + self.timeout + self.other
    }
}

/// One row of the matrix: one system, one attack kind, one flood rate, on
/// a testbed of its own.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Cell {
    /// System.
    pub system: String,
    /// The address family of the row.
    pub family: Family,
    /// Attack kind ("none" for the no-flood row).
    pub kind: String,
    /// Requested flood rate.
    pub flood_pps: u64,
    /// Achieved flood rate.
    pub flood_achieved_pps: f64,
    /// Connections attempted.
    pub attempts: u64,
    /// Connections that completed the echo.
    pub ok: u64,
    /// Success %.
    pub success_pct: f64,
    /// Successful connections per second.
    pub cps: f64,
    /// `cps` over the same system's no-flood row, %.
    pub kept_pct: Option<f64>,
    /// The legit connections by outcome.
    pub outcomes: Outcomes,
    /// Latency (connect + echo) of the successful connections, µs.
    pub p50_us: Option<f64>,
    /// 99th percentile of the same.
    pub p99_us: Option<f64>,
    /// Challenge ACKs the victim sent during the row (RFC 5961; Linux
    /// `TcpExtTCPChallengeACK`, xstack `challenge_acks`).
    pub challenge_acks: Option<u64>,
    /// SYNs the victim's listener dropped unanswered during the row because
    /// its accept queue was full (Linux `TcpExtListenOverflows`, xstack
    /// `ListenOverflows`): a server too slow to accept, not the defense.
    pub listen_overflows: Option<u64>,
    /// Machine CPU busy %, all cores.
    pub cpu_pct: f64,
    /// Victim core (CPU 0) busy %.
    pub victim_cpu_pct: f64,
    /// The other core (CPU 1: generator, client) busy %.
    pub other_cpu_pct: f64,
    /// Time the hypervisor took from either core (steal), % of that core,
    /// the larger of the two: a row with much of it measured the host.
    pub steal_pct: f64,
    /// Stack-side NAPI thread(s) CPU time, % of one core.
    pub napi_cpu_pct: f64,
    /// Victim core busy ns per second of the run.
    pub victim_busy_ns_per_s: f64,
    /// Victim core ns per flood packet: busy ns/s less the legit
    /// connections' share (at the no-flood row's ns per connection), over
    /// the achieved flood pps.
    pub victim_ns_per_flood_pkt: Option<f64>,
    /// XDP program run time per packet (run_time_ns / run_cnt), xstack.
    pub xdp_ns_per_pkt: Option<f64>,
    /// Packets the XDP program ran on during the run.
    pub xdp_packets: u64,
    /// Stack-side NAPI thread ns per packet the XDP program saw (veth
    /// receive + XDP + XDP_TX), xstack.
    pub napi_ns_per_pkt: Option<f64>,
    /// Packets the stack-side veth end received (its NAPI took them off
    /// the ring: flood and legit), per second.
    pub rx_pps: f64,
    /// Stack-side NAPI thread ns per packet received, every system: on
    /// xstack veth receive + XDP + the SYN-ACK's way out; on Linux veth
    /// receive + GRO + IP + TCP (its SYN cookie and SYN-ACK included), all
    /// of which threaded NAPI runs in that thread.
    pub napi_ns_per_rx_pkt: Option<f64>,
    /// Frames to the spoofed prefix the peer-side sink dropped (reflected
    /// SYN-ACKs), per second.
    pub sunk_pps: f64,
    /// Flood frames the victim's receive ring refused (live generator:
    /// veth `xdp_xmit_errors`), per second; not in `flood_achieved_pps`.
    pub flood_refused_pps: f64,
    /// Why the system could not run, if it could not.
    pub error: Option<String>,
}

fn cpu_times() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = s
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total, idle)
}

fn sh(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().with_context(|| shown.clone())?;
    if !out.status.success() {
        bail!("{shown}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Runs `f` on a thread inside network namespace `ns`.
fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<Result<T>> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).with_context(|| path.clone())?;
        use std::os::fd::AsRawFd;
        // SAFETY: setns on a namespace fd, affecting only this thread.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            bail!("setns {path}: {}", std::io::Error::last_os_error());
        }
        Ok(f())
    })
}

fn join<T>(h: std::thread::JoinHandle<Result<T>>) -> Result<T> {
    h.join()
        .map_err(|_| anyhow::anyhow!("a benchmark thread panicked"))?
}

/// A legit client thread: its outcomes and the good connections' latency.
type ClientThread = std::thread::JoinHandle<Result<(Outcomes, hdrhistogram::Histogram<u64>)>>;

/// Legit client: connect, send one byte, read it back, close; counts each
/// connection by outcome and records the successful ones' latency.
fn clients(t: &Testbed, f: Family, n: usize, secs: f64, cores: &Cores) -> Vec<ClientThread> {
    let target = f.target(t, PORT);
    (0..n)
        .map(|_| {
            let cores = cores.clone();
            in_netns(&t.peer_ns, move || {
                cores.pin_here(OTHER_CPU);
                let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
                    .expect("static histogram bounds");
                let end = Instant::now() + Duration::from_secs_f64(secs);
                let mut out = Outcomes::default();
                while Instant::now() < end {
                    let t0 = Instant::now();
                    let r = (|| -> std::io::Result<()> {
                        let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(1))?;
                        s.set_read_timeout(Some(Duration::from_secs(1)))?;
                        s.write_all(b"x")?;
                        let mut b = [0u8; 1];
                        s.read_exact(&mut b)?;
                        Ok(())
                    })();
                    match r {
                        Ok(()) => {
                            out.ok += 1;
                            hist.saturating_record(t0.elapsed().as_micros() as u64);
                        }
                        Err(e) => out.count_error(&e),
                    }
                }
                (out, hist)
            })
        })
        .collect()
}

/// One legit connection: connect, send one byte, read it back, close,
/// all within 1 s.
async fn one_legit(target: SocketAddr) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(target).await?;
        s.write_all(b"x").await?;
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await?;
        Ok(())
    };
    match tokio::time::timeout(Duration::from_secs(1), attempt).await {
        Ok(r) => r,
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

/// How late a paced arrival may start before it counts as late: the
/// client's core was too busy to keep the schedule.
const LATE: Duration = Duration::from_millis(10);

/// One paced client thread's arrivals: `count` connections, the i-th
/// started at `start + (i + phase) / per_s`, each on its own task, so a
/// slow or lost connection never delays the next (open loop). Returns
/// the outcomes, the good connections' latency (µs, from their start) and
/// how many started more than [`LATE`] after their time.
async fn paced_arrivals<F, Fut>(
    attempt: F,
    per_s: f64,
    phase: f64,
    count: u64,
) -> (Outcomes, hdrhistogram::Histogram<u64>, u64)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = std::io::Result<()>> + Send + 'static,
{
    let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
        .expect("static histogram bounds");
    let mut out = Outcomes::default();
    let mut late = 0;
    let mut record = |r: Result<(std::io::Result<()>, Duration), tokio::task::JoinError>,
                      out: &mut Outcomes| match r {
        Ok((Ok(()), took)) => {
            out.ok += 1;
            hist.saturating_record(took.as_micros() as u64);
        }
        Ok((Err(e), _)) => out.count_error(&e),
        Err(_) => out.other += 1,
    };
    let start = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..count {
        let at = start + Duration::from_secs_f64((i as f64 + phase) / per_s);
        tokio::time::sleep_until(at).await;
        let t0 = tokio::time::Instant::now();
        if t0.duration_since(at) > LATE {
            late += 1;
        }
        let a = attempt();
        tasks.spawn(async move { (a.await, t0.elapsed()) });
        while let Some(r) = tasks.try_join_next() {
            record(r, &mut out);
        }
    }
    while let Some(r) = tasks.join_next().await {
        record(r, &mut out);
    }
    (out, hist, late)
}

/// Paced (open-loop) legit client: `rate` connections/s over `secs`,
/// spread evenly over `n` threads (each its own current-thread tokio
/// runtime in the peer namespace, pinned with the generator), each
/// connection on a 1 s budget. Late arrivals are counted in `Outcomes::late`.
fn paced_clients(
    t: &Testbed,
    f: Family,
    n: usize,
    (secs, rate): (f64, u64),
    cores: &Cores,
) -> Vec<ClientThread> {
    let target = f.target(t, PORT);
    let n = n.max(1);
    let per_s = rate as f64 / n as f64;
    let count = (per_s * secs).round() as u64;
    (0..n)
        .map(|i| {
            let cores = cores.clone();
            let h = in_netns(&t.peer_ns, move || -> Result<_> {
                cores.pin_here(OTHER_CPU);
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("client runtime")?;
                let (mut out, hist, late) = rt.block_on(paced_arrivals(
                    || one_legit(target),
                    per_s,
                    i as f64 / n as f64,
                    count,
                ));
                out.late = late;
                Ok((out, hist))
            });
            std::thread::spawn(move || join(h).and_then(|r| r))
        })
        .collect()
}

/// Legit client of the `est` rows: per thread EST_CONNS_PER_CLIENT
/// connections opened first (ports from the namespace's narrowed range)
/// and kept open, each echoing one byte in turn until the row ends. An
/// outcome is counted per echo; a failed connection is not reopened (so a
/// reset shows in `reset`, and the ports stay the ones the flood aims at).
fn est_clients(t: &Testbed, f: Family, n: usize, secs: f64, cores: &Cores) -> Vec<ClientThread> {
    let target: SocketAddr = f.target(t, PORT);
    (0..n)
        .map(|_| {
            let cores = cores.clone();
            in_netns(&t.peer_ns, move || {
                cores.pin_here(OTHER_CPU);
                let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
                    .expect("static histogram bounds");
                let mut out = Outcomes::default();
                let mut conns: Vec<Option<TcpStream>> = (0..EST_CONNS_PER_CLIENT)
                    .map(|_| {
                        let s = TcpStream::connect_timeout(&target, Duration::from_secs(1));
                        let s = s.and_then(|s| {
                            s.set_read_timeout(Some(Duration::from_secs(1)))?;
                            Ok(s)
                        });
                        match s {
                            Ok(s) => Some(s),
                            Err(e) => {
                                out.count_error(&e);
                                None
                            }
                        }
                    })
                    .collect();
                let end = Instant::now() + Duration::from_secs_f64(secs);
                while Instant::now() < end && conns.iter().any(|c| c.is_some()) {
                    for slot in conns.iter_mut() {
                        let Some(s) = slot else { continue };
                        let t0 = Instant::now();
                        let r = (|| -> std::io::Result<()> {
                            s.write_all(b"x")?;
                            let mut b = [0u8; 1];
                            s.read_exact(&mut b)
                        })();
                        match r {
                            Ok(()) => {
                                out.ok += 1;
                                hist.saturating_record(t0.elapsed().as_micros() as u64);
                            }
                            Err(e) => {
                                out.count_error(&e);
                                *slot = None;
                            }
                        }
                    }
                }
                (out, hist)
            })
        })
        .collect()
}

/// The victim's counters of `system` on testbed `t` so far: challenge
/// ACKs sent and listen-queue overflows ([`VictimCounters`]).
fn victim_counters(t: &Testbed, system: &str) -> VictimCounters {
    if system == "xstack" {
        let v = crate::runtime::control::query_stats(Some(&t.stack_if)).ok();
        let get = |p: &str| v.as_ref()?.pointer(p)?.as_u64();
        return VictimCounters {
            challenge_acks: get("/tcp/challenge_acks"),
            listen_overflows: get("/tcp/ListenOverflows"),
        };
    }
    let text = Command::new("ip")
        .args(["netns", "exec", &t.stack_ns, "cat", "/proc/net/netstat"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    VictimCounters {
        challenge_acks: netstat_value(&text, "TcpExt", "TCPChallengeACK"),
        listen_overflows: netstat_value(&text, "TcpExt", "ListenOverflows"),
    }
}

/// Counters of the victim's TCP read before and after a row.
#[derive(Clone, Copy, Debug, Default)]
struct VictimCounters {
    /// Challenge ACKs (RFC 5961).
    challenge_acks: Option<u64>,
    /// SYNs dropped for a full accept queue.
    listen_overflows: Option<u64>,
}

impl VictimCounters {
    /// Each counter's rise from `before` to `self`.
    fn since(self, before: VictimCounters) -> VictimCounters {
        let d = |a: Option<u64>, b: Option<u64>| a.zip(b).map(|(a, b)| b.saturating_sub(a));
        VictimCounters {
            challenge_acks: d(before.challenge_acks, self.challenge_acks),
            listen_overflows: d(before.listen_overflows, self.listen_overflows),
        }
    }
}

/// One counter of `/proc/net/netstat` text (a header line of names and a
/// line of values per group).
pub fn netstat_value(text: &str, group: &str, name: &str) -> Option<u64> {
    let prefix = format!("{group}:");
    let mut lines = text.lines().filter(|l| l.starts_with(&prefix));
    let names = lines.next()?.split_whitespace().skip(1);
    let values = lines.next()?.split_whitespace().skip(1);
    names
        .zip(values)
        .find(|(n, _)| *n == name)
        .and_then(|(_, v)| v.parse().ok())
}

fn flood_config(
    t: &Testbed,
    (f, generator): (Family, Generator),
    kind: FloodKind,
    rate: u64,
    secs: f64,
) -> FloodConfig {
    FloodConfig {
        iface: t.peer_if.clone(),
        target: f.target(t, PORT),
        allow_target: vec![], // the testbed is in 198.18.0.0/15 and 2001:2::/48
        rate,
        duration: Duration::from_secs_f64(secs),
        sources: match f {
            Family::V4 => (SPOOFED.0.into(), SPOOFED.1),
            Family::V6 => (SPOOFED6.0.into(), SPOOFED6.1),
        },
        kind,
        src_ports: None,
        dst_mac: STACK_MAC,
        queue: 0,
        metrics: None,
        generator,
    }
}

fn measure(
    t: &Testbed,
    (system, f): (&str, Family),
    kind: Option<FloodKind>,
    rate: u64,
    a: &SynfloodArgs,
    cores: &Cores,
) -> Cell {
    let est = kind == Some(FloodKind::Est);
    // The est client connects first: the flood then aims at its ports.
    let hs = est.then(|| est_clients(t, f, a.clients, a.seconds + 0.5, cores));
    let v0 = victim_counters(t, system);
    let flood = kind.filter(|_| rate > 0).map(|kind| {
        let mut c = flood_config(t, (f, a.generator), kind, rate, a.seconds + 0.5);
        if kind == FloodKind::Est {
            c.sources = match f {
                Family::V4 => (t.peer_ip.into(), 32),
                Family::V6 => (t.peer_ip6.into(), 128),
            };
            c.src_ports = Some(EST_PORTS);
        }
        let cores = cores.clone();
        in_netns(&t.peer_ns, move || {
            cores.pin_here(OTHER_CPU);
            crate::tools::flood::run(&c)
        })
    });
    // Let the flood reach its rate before the client starts.
    std::thread::sleep(Duration::from_millis(250));
    let (t0, i0) = cpu_times();
    let c0 = victim::per_cpu();
    let n0 = victim::threads_ns(&cores.napi);
    let x0 = cores.xdp_prog.and_then(victim::prog_stats);
    let s0 = cores.sink.as_ref().and_then(|s| s.counters().ok());
    let r0 = victim::rx_packets(&t.stack_ns, &t.stack_if);
    let start = Instant::now();
    let hs = hs.unwrap_or_else(|| match a.legit_rate {
        0 => clients(t, f, a.clients, a.seconds, cores),
        r => paced_clients(t, f, a.clients, (a.seconds, r), cores),
    });
    // The victim's CPU is read over the clients' window (the flood runs
    // 0.25 s either side of it), not over the last connections' tail.
    std::thread::sleep(Duration::from_secs_f64(a.seconds).saturating_sub(start.elapsed()));
    let el = start.elapsed().as_secs_f64();
    let (t1, i1) = cpu_times();
    let c1 = victim::per_cpu();
    let n1 = victim::threads_ns(&cores.napi);
    let x1 = cores.xdp_prog.and_then(victim::prog_stats);
    let s1 = cores.sink.as_ref().and_then(|s| s.counters().ok());
    let r1 = victim::rx_packets(&t.stack_ns, &t.stack_if);
    let rx_packets = r0.zip(r1).map(|(a, b)| b.saturating_sub(a));
    let sunk_pps = match (s0, s1) {
        (Some((d0, _)), Some((d1, _))) => d1.saturating_sub(d0) as f64 / el,
        _ => 0.0,
    };
    let (xdp_ns_per_pkt, xdp_packets) = match (x0, x1) {
        (Some((r0, k0)), Some((r1, k1))) => (
            victim::ns_per_packet(r1.saturating_sub(r0) as f64, k1.saturating_sub(k0) as f64),
            k1.saturating_sub(k0),
        ),
        _ => (None, 0),
    };
    let mut outcomes = Outcomes::default();
    let mut hist = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)
        .expect("static histogram bounds");
    let mut error = None;
    for h in hs {
        match join(h) {
            Ok((o, h)) => {
                outcomes.add(&o);
                let _ = hist.add(&h);
            }
            Err(e) => error = Some(e.to_string()),
        }
    }
    let (attempts, ok) = (outcomes.attempts(), outcomes.ok);
    let quantile = |q: f64| (!hist.is_empty()).then(|| hist.value_at_quantile(q) as f64);
    let (achieved, refused) = match flood.map(|h| join(h).and_then(|r| r)) {
        // xsk's tx_dropped is its own full TX ring, not the victim's.
        Some(Ok(r)) if r.generator == Generator::Live => {
            (r.achieved_pps, r.tx_dropped as f64 / r.seconds.max(1e-9))
        }
        Some(Ok(r)) => (r.achieved_pps, 0.0),
        Some(Err(e)) => {
            error = Some(format!("flood: {e:#}"));
            (0.0, 0.0)
        }
        None => (0.0, 0.0),
    };
    let dv = victim_counters(t, system).since(v0);
    let busy = (t1 - t0).saturating_sub(i1 - i0);
    Cell {
        system: system.into(),
        family: f,
        kind: kind_name(kind).into(),
        flood_pps: rate,
        flood_achieved_pps: achieved,
        attempts,
        ok,
        success_pct: 100.0 * ok as f64 / attempts.max(1) as f64,
        cps: ok as f64 / el,
        kept_pct: None,
        outcomes,
        p50_us: quantile(0.5),
        p99_us: quantile(0.99),
        challenge_acks: dv.challenge_acks,
        listen_overflows: dv.listen_overflows,
        cpu_pct: 100.0 * busy as f64 / (t1 - t0).max(1) as f64,
        victim_cpu_pct: victim::busy_pct(&c0, &c1, VICTIM_CPU),
        other_cpu_pct: victim::busy_pct(&c0, &c1, OTHER_CPU),
        steal_pct: victim::steal_pct(&c0, &c1, VICTIM_CPU)
            .max(victim::steal_pct(&c0, &c1, OTHER_CPU)),
        napi_cpu_pct: 100.0 * (n1 - n0) / (el * 1e9),
        victim_busy_ns_per_s: victim::busy_ns(&c0, &c1, VICTIM_CPU) / el,
        victim_ns_per_flood_pkt: None,
        xdp_ns_per_pkt,
        xdp_packets,
        napi_ns_per_pkt: (!cores.napi.is_empty())
            .then(|| victim::ns_per_packet(n1 - n0, xdp_packets as f64))
            .flatten(),
        rx_pps: rx_packets.unwrap_or(0) as f64 / el,
        napi_ns_per_rx_pkt: rx_packets
            .filter(|_| !cores.napi.is_empty())
            .and_then(|p| victim::ns_per_packet(n1 - n0, p as f64)),
        sunk_pps,
        flood_refused_pps: refused,
        error,
    }
}

/// The Linux side of (a) and (b): the stack address of `f` on the kernel
/// interface, a route to the flood prefix (so SYN-ACKs need no ARP or
/// neighbour discovery per spoofed source), tcp_syncookies=1 (which Linux
/// applies to IPv6 too), and an echo-one-byte server: one listener with
/// the accept backlog `xstack serve` has ([`SERVE_BACKLOG`]), accepting
/// in an event loop on the victim core, a task per connection (`est`
/// rows: `persistent`, echoing until the client closes).
///
/// Linux answers a SYN with a cookie only while the listener's accept
/// queue has room (`sk_acceptq_is_full`: otherwise `ListenOverflows`, and
/// the SYN is dropped unanswered). The server this replaced — std's
/// backlog of 128 and a blocking thread per client thread, each held up
/// to 500 ms by a slow request — let the queue fill under every flood:
/// 69% of the SYNs of a 300 kpps flood were dropped that way
/// (`TcpExtListenOverflows`), which made Linux's cost per flood SYN look
/// low and its legit connections fail for the server's sake, not the
/// kernel's.
fn linux_setup(
    t: &Testbed,
    f: Family,
    stop: Arc<AtomicBool>,
    cores: &Cores,
    persistent: bool,
) -> Result<std::thread::JoinHandle<Result<()>>> {
    let ns = &t.stack_ns;
    kernel_stack_addr(t, f, true)?;
    sh(Command::new("ip").args([
        "-n",
        ns,
        "route",
        "add",
        &spoofed_cidr(f),
        "via",
        &f.peer_ip(t).to_string(),
    ]))?;
    sh(netns_command(ns, "sysctl").args(["-qw", "net.ipv4.tcp_syncookies=1"]))?;
    let cores = cores.clone();
    let h = in_netns(ns, move || -> Result<()> {
        cores.pin_here(VICTIM_CPU);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move { echo_server(rows_listener(f)?, stop, persistent).await })
    });
    Ok(std::thread::spawn(move || join(h).and_then(|r| r)))
}

/// The Linux rows' listener: port [`PORT`] on every address of `f`, with
/// [`SERVE_BACKLOG`].
fn rows_listener(f: Family) -> std::io::Result<tokio::net::TcpListener> {
    let (sock, any): (_, SocketAddr) = match f {
        Family::V4 => (
            tokio::net::TcpSocket::new_v4()?,
            (std::net::Ipv4Addr::UNSPECIFIED, PORT).into(),
        ),
        Family::V6 => (
            tokio::net::TcpSocket::new_v6()?,
            (Ipv6Addr::UNSPECIFIED, PORT).into(),
        ),
    };
    sock.set_reuseaddr(true)?;
    sock.bind(any)?;
    sock.listen(SERVE_BACKLOG as u32)
}

/// The Linux rows' server ([`linux_setup`]): accepts on `l` until `stop`,
/// each connection in a task of its own, so a slow request holds up no
/// other connection.
async fn echo_server(
    l: tokio::net::TcpListener,
    stop: Arc<AtomicBool>,
    persistent: bool,
) -> Result<()> {
    while !stop.load(Ordering::Relaxed) {
        // Wakes at least every 50 ms to see `stop`.
        let Ok(accepted) = tokio::time::timeout(Duration::from_millis(50), l.accept()).await else {
            continue;
        };
        if let Ok((s, _)) = accepted {
            tokio::spawn(echo(s, persistent));
        }
    }
    Ok(())
}

/// One echo and close first (the server keeps the TIME_WAIT, as an HTTP
/// server with Connection: close), or (`persistent`: est rows) echo until
/// the client closes; a connection idle for 500 ms (5 s) is dropped.
async fn echo(mut s: tokio::net::TcpStream, persistent: bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let idle = Duration::from_millis(if persistent { 5000 } else { 500 });
    let mut b = [0u8; 1];
    while let Ok(Ok(_)) = tokio::time::timeout(idle, s.read_exact(&mut b)).await {
        if s.write_all(&b).await.is_err() || !persistent {
            break;
        }
    }
}

/// The nftables SYNPROXY setup of the nftables wiki ("Synproxy"): SYNs to
/// the port skip conntrack (`notrack` in raw prerouting), the `synproxy`
/// statement answers untracked SYNs and the invalid (untracked-handshake)
/// ACKs with cookies, everything else invalid is dropped; the namespace
/// runs `nf_conntrack_tcp_loose=0` so an ACK cannot create an entry.
///
/// Two departures from the wiki's example, each measured on this kernel
/// (6.18) with a Linux client doing connect + 1-byte echo + close:
/// - no `timestamp` option: SYNPROXY rewrites timestamps by a per-flow
///   offset, and the server's TCP now checks TSecr against the values it
///   sent (RFC 7323 §5.3; `TcpExtTSEcrRejected`): ~1 connection in 100-400
///   had its first data segment refused until the client gave up. Without
///   it SYNPROXY also drops wscale and SACK from the handshake (the cookie
///   keeps them in the timestamp), so proxied connections run without
///   window scaling: enough for this benchmark's 1-byte echo.
/// - [`SYNPROXY_SYSCTLS`]: conntrack forgets a closed flow at once. The
///   legit client reuses its source ports within seconds (the server
///   closes first, so the client keeps no TIME_WAIT); the untracked SYN
///   never reopens the old TIME_WAIT entry, so the cookie ACK matched it,
///   was not `invalid`, never reached SYNPROXY, and the connection hung on
///   the SYN-ACK's zero window until the client's timeout.
const SYNPROXY_RULES: &str = "table ip xstack_synproxy {
  chain prerouting { type filter hook prerouting priority raw; policy accept; tcp dport 8080 tcp flags syn notrack; }
  chain input { type filter hook input priority filter; policy accept;
    tcp dport 8080 ct state invalid,untracked synproxy mss 1460 wscale 7 sack-perm;
    ct state invalid drop; }
}
";

/// [`SYNPROXY_RULES`] for `f`: the same rules in an `ip6` table for IPv6.
fn synproxy_rules(f: Family) -> String {
    match f {
        Family::V4 => SYNPROXY_RULES.to_string(),
        Family::V6 => SYNPROXY_RULES.replacen("table ip ", "table ip6 ", 1),
    }
}

/// Sysctls of the SYNPROXY namespace (see [`SYNPROXY_RULES`]).
const SYNPROXY_SYSCTLS: [&str; 3] = [
    "net.netfilter.nf_conntrack_tcp_loose=0",
    "net.netfilter.nf_conntrack_tcp_timeout_time_wait=0",
    "net.netfilter.nf_conntrack_tcp_timeout_close=0",
];

struct ServeChild(Child);

impl Drop for ServeChild {
    fn drop(&mut self) {
        // SAFETY: signalling the child we spawned, by its pid.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if self.0.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn kind_name(kind: Option<FloodKind>) -> &'static str {
    match kind {
        None => "none",
        Some(FloodKind::Syn) => "syn",
        Some(FloodKind::Ack) => "ack",
        Some(FloodKind::Rst) => "rst",
        Some(FloodKind::Mixed) => "mixed",
        Some(FloodKind::Est) => "est",
    }
}

/// One row on a testbed of its own: fresh namespaces, veth pair, sink,
/// server (a new listener, or a new `xstack serve` process), conntrack
/// table and SYNPROXY rules, all removed afterwards; no state carries from
/// one row to the next.
fn run_row(
    (system, f): (&str, Family),
    kind: Option<FloodKind>,
    rate: u64,
    a: &SynfloodArgs,
    n: usize,
) -> Cell {
    let fail = |e: anyhow::Error| Cell {
        system: system.into(),
        family: f,
        kind: kind_name(kind).into(),
        flood_pps: rate,
        error: Some(format!("{e:#}")),
        ..Cell::default()
    };
    let name = format!("sf{}{n}", std::process::id() % 10000);
    let tb = match TestbedGuard::up(&name, 1) {
        Ok(tb) => tb,
        Err(e) => return fail(e.into()),
    };
    let t = tb.testbed.clone();
    // XDP_TX on veth needs NAPI on the receiving end; the testbed enables
    // GRO on the peer for that.
    let stop = Arc::new(AtomicBool::new(false));
    let mut _serve = None;
    let mut listener = None;
    let mut floor = None;
    let mut cores = Cores {
        on: !a.no_victim_core,
        ..Cores::default()
    };
    let setup = (|| -> Result<()> {
        if !a.no_sink {
            // Reflected SYN-ACKs to the spoofed sources die at the peer's
            // XDP, as at an upstream router, for every system alike.
            let peer_if = t.peer_if.clone();
            let sink = join(in_netns(&t.peer_ns, move || -> Result<XdpSink> {
                let mut s = XdpSink::load(SPOOFED.0, SPOOFED.1)?;
                s.set_ipv6_prefix(SPOOFED6.0, SPOOFED6.1)?;
                s.attach(&peer_if)?;
                Ok(s)
            }))?
            .context("peer-side sink")?;
            cores.sink = Some(Arc::new(sink));
        }
        if kind == Some(FloodKind::Est) {
            // The legit client's ports: the ones the flood aims at.
            sh(netns_command(&t.peer_ns, "sysctl").args([
                "-qw",
                &format!(
                    "net.ipv4.ip_local_port_range={} {}",
                    EST_PORTS.0, EST_PORTS.1
                ),
            ]))?;
        } else {
            // The legit client closes first: a TIME_WAIT socket per
            // connection, which must not leave connect() searching the
            // port range on the client's core in a long row.
            super::client_sysctls(&t.peer_ns).context("the legit client's namespace")?;
        }
        match system {
            "linux" | "synproxy" => {
                if cores.on || a.generator == Generator::Live {
                    // veth runs NAPI at the stack end only with GRO on
                    // (or an XDP program there); redirected (live) frames
                    // are accepted only there.
                    victim::set_gro(&t.stack_ns, &t.stack_if, true)
                        .context("GRO on at the stack end")?;
                }
                let persistent = kind == Some(FloodKind::Est);
                listener = Some(linux_setup(&t, f, stop.clone(), &cores, persistent)?);
                if system == "synproxy" {
                    for kv in SYNPROXY_SYSCTLS {
                        sh(netns_command(&t.stack_ns, "sysctl").args(["-qw", kv]))
                            .context("conntrack (is nf_conntrack available?)")?;
                    }
                    let mut c = netns_command(&t.stack_ns, "nft");
                    c.args(["-f", "-"]).stdin(Stdio::piped());
                    let mut child = c.spawn().context("nft (install nftables)")?;
                    if let Some(mut i) = child.stdin.take() {
                        i.write_all(synproxy_rules(f).as_bytes())?;
                    }
                    let out = child.wait_with_output()?;
                    if !out.status.success() {
                        bail!("nft: {}", String::from_utf8_lossy(&out.stderr).trim());
                    }
                }
            }
            "xstack" => {
                let exe = std::env::current_exe()?;
                let mut cmd = netns_command(&t.stack_ns, exe.to_str().unwrap_or("xstack"));
                cmd.args(["serve", "--iface", &t.stack_if, "--ip"])
                    .arg(f.stack_ip(&t).to_string())
                    .args(["--port", &PORT.to_string(), "--queues", "1"])
                    .args(["--syncookies", "auto", "--duration", "600"])
                    // The peer runs NAPI (GRO on, and the sink's XDP), so
                    // XDP_TX reaches it: the defense as on a real NIC, not
                    // the engine's AF_XDP detour `auto` takes on veth.
                    .args(["--cookie-path", "xdp"])
                    .stdout(Stdio::null());
                // Its errors go to a file, so that a server that does not
                // come up says why in the row's error.
                let log_path = std::env::temp_dir().join(format!(
                    "xstack-synflood-serve-{}-{n}.log",
                    std::process::id()
                ));
                let log = std::fs::File::create(&log_path)
                    .with_context(|| log_path.display().to_string())?;
                cmd.stderr(log);
                if cores.on {
                    use std::os::unix::process::CommandExt;
                    // SAFETY: sched_setaffinity is async-signal-safe; the
                    // closure allocates nothing on success.
                    unsafe {
                        cmd.pre_exec(|| {
                            victim::pin(0, VICTIM_CPU).map_err(|_| std::io::Error::last_os_error())
                        })
                    };
                }
                let child = cmd.spawn();
                if child.is_err() {
                    let _ = std::fs::remove_file(&log_path);
                }
                _serve = Some(ServeChild(child?));
                let up = (0..100).any(|_| {
                    std::thread::sleep(Duration::from_millis(100));
                    crate::runtime::control::query_stats(Some(&t.stack_if)).is_ok()
                });
                let why = std::fs::read_to_string(&log_path).unwrap_or_default();
                let _ = std::fs::remove_file(&log_path);
                if !up {
                    match last_line(&why) {
                        Some(l) => bail!("xstack serve did not start: {l}"),
                        None => bail!("xstack serve did not start"),
                    }
                }
            }
            "xdp-drop" => {
                // The floor: the peer-side sink's program on the stack
                // end, dropping every frame to the server's address (legit
                // ones too), so its rows give what receiving a frame and
                // running the least XDP program on it costs this victim
                // core, whatever the defense.
                let stack_if = t.stack_if.clone();
                let (v4, v6) = (t.stack_ip, t.stack_ip6);
                let sink = join(in_netns(&t.stack_ns, move || -> Result<XdpSink> {
                    let mut s = XdpSink::load(v4, 32)?;
                    s.set_ipv6_prefix(v6, 128)?;
                    s.attach(&stack_if)?;
                    Ok(s)
                }))?
                .context("XDP drop at the stack end")?;
                floor = Some(sink);
            }
            other => bail!("unknown system {other:?}: use {}", SYSTEMS.join(", ")),
        }
        cores.xdp_prog = victim::xdp_prog_id(&t.stack_ns, &t.stack_if);
        if cores.on {
            cores.napi = victim::thread_napi(&t.stack_ns, &t.stack_if, VICTIM_CPU)?;
            for p in &cores.napi {
                victim::set_fifo(*p, a.napi_priority)?;
            }
            cores.peer_napi = victim::thread_napi(&t.peer_ns, &t.peer_if, OTHER_CPU)?;
            for p in &cores.peer_napi {
                // The client's side gets a NIC's receive path too: the
                // generator's kernel work must not starve the SYN-ACKs
                // and echoes the legit client waits for.
                victim::set_fifo(*p, a.napi_priority)?;
            }
        }
        Ok(())
    })();
    let cell = match setup {
        Ok(()) => measure(&t, (system, f), kind, rate, a, &cores),
        Err(e) => fail(e),
    };
    stop.store(true, Ordering::Relaxed);
    if let Some(h) = listener {
        let _ = h.join();
    }
    drop(_serve);
    drop(floor);
    let napi: Vec<i32> = cores.napi.iter().chain(&cores.peer_napi).copied().collect();
    drop(cores);
    drop(tb);
    // The kernel tears the veth pair down after the namespaces go (its
    // NAPI threads and page pools linger for a while): wait for that, so
    // the next row does not pay for this one's teardown.
    victim::wait_napi_gone(&napi, "synflood");
    cell
}

/// Against each system's no-flood row: "kept" (its conn/s over the
/// baseline's) and the victim core's ns per flood packet (the busy ns/s
/// left after the legit connections' share — their count × the baseline's
/// victim ns per connection — over the achieved flood rate; without a
/// baseline the whole busy time is charged to the flood).
fn against_baseline(cells: &mut [Cell]) {
    let base: Vec<((String, Family), f64, f64)> = cells
        .iter()
        .filter(|c| c.kind == "none" && c.error.is_none())
        .map(|c| {
            let per_conn = victim::ns_per_packet(c.victim_busy_ns_per_s, c.cps).unwrap_or(0.0);
            ((c.system.clone(), c.family), c.cps, per_conn)
        })
        .collect();
    // The est rows count echoes on open connections, not connections:
    // nothing there compares with the no-flood row.
    for c in cells
        .iter_mut()
        .filter(|c| c.error.is_none() && c.kind != "est")
    {
        let Some((_, cps0, per_conn)) = base
            .iter()
            .find(|b| b.0 .0 == c.system && b.0 .1 == c.family)
        else {
            continue;
        };
        c.kept_pct = (*cps0 > 0.0).then(|| 100.0 * c.cps / cps0);
        if c.kind != "none" {
            c.victim_ns_per_flood_pkt = victim::flood_share_ns(
                c.victim_busy_ns_per_s,
                c.cps,
                *per_conn,
                c.flood_achieved_pps,
            );
        }
    }
}

/// The generator's maximum from one core: an unpaced 1 s SYN flood at a
/// testbed with nothing attached (the kernel drops the SYNs; live: GRO on
/// at the stack end, whose NAPI accepts the frames, as in the Linux rows).
fn generator_max(generator: Generator) -> Result<f64> {
    let name = format!("sg{}", std::process::id() % 10000);
    let tb = TestbedGuard::up(&name, 1)?;
    if generator == Generator::Live {
        let t = &tb.testbed;
        sh(netns_command(&t.stack_ns, "ethtool").args(["-K", &t.stack_if, "gro", "on"]))
            .context("GRO on at the stack end (install ethtool)")?;
    }
    let c = flood_config(&tb.testbed, (Family::V4, generator), FloodKind::Syn, 0, 1.0);
    let r = join(in_netns(&tb.testbed.peer_ns, move || {
        crate::tools::flood::run(&c)
    }))??;
    Ok(r.achieved_pps)
}

/// The plot of one attack kind: legit conn/s kept (% of the system's
/// no-flood row) against the flood rate, one polyline per system (its
/// no-flood row is the point at rate 0). Plain SVG text.
pub fn svg(kind: &str, cells: &[Cell], systems: &[String]) -> String {
    let (w, h, l, b) = (640.0, 360.0, 70.0, 50.0);
    // One series per system and family that has rows; not the floor,
    // which serves no legit connection (it has no "kept").
    let series: Vec<(&String, Family)> = systems
        .iter()
        .filter(|s| s.as_str() != "xdp-drop")
        .flat_map(|s| [Family::V4, Family::V6].map(|f| (s, f)))
        .filter(|(s, f)| cells.iter().any(|c| &c.system == *s && c.family == *f))
        .collect();
    let both = series.iter().any(|x| x.1 == Family::V6) && series.iter().any(|x| x.1 == Family::V4);
    let pts = |&(sys, f): &(&String, Family)| -> Vec<(u64, f64)> {
        let mut v: Vec<(u64, f64)> = cells
            .iter()
            .filter(|k| {
                &k.system == sys
                    && k.family == f
                    && (k.kind == kind || k.kind == "none")
                    && k.error.is_none()
            })
            .filter_map(|k| Some((if k.kind == "none" { 0 } else { k.flood_pps }, k.kept_pct?)))
            .collect();
        v.sort_by_key(|p| p.0);
        v
    };
    let maxr = series
        .iter()
        .flat_map(&pts)
        .map(|p| p.0)
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let top = series
        .iter()
        .flat_map(&pts)
        .map(|p| p.1)
        .fold(100.0f64, f64::max);
    let top = (top / 20.0).ceil() * 20.0;
    let x = |r: u64| l + (w - l - 20.0) * r as f64 / maxr;
    let y = |p: f64| h - b - (h - b - 20.0) * p / top;
    let colors = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e"];
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<line x1=\"{l}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n<line x1=\"{l}\" y1=\"20\" x2=\"{l}\" y2=\"{}\" stroke=\"black\"/>\n<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{} flood rate (pps)</text>\n<text x=\"15\" y=\"{}\" transform=\"rotate(-90 15 {})\" text-anchor=\"middle\">legit conn/s kept (% of no flood)</text>\n",
        h - b,
        w - 20.0,
        h - b,
        h - b,
        (w + l) / 2.0,
        h - 10.0,
        kind.to_uppercase(),
        h / 2.0,
        h / 2.0
    );
    for i in 0..=4 {
        let r = (maxr * i as f64 / 4.0) as u64;
        s += &format!(
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{r}</text>\n",
            x(r),
            h - b + 15.0
        );
    }
    let mut p = 0.0;
    while p <= top {
        s += &format!(
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{p}</text>\n<line x1=\"{l}\" y1=\"{:.1}\" x2=\"{}\" y2=\"{:.1}\" stroke=\"#ddd\"/>\n",
            l - 5.0,
            y(p) + 4.0,
            y(p),
            w - 20.0,
            y(p)
        );
        p += 20.0;
    }
    for (i, ser) in series.iter().enumerate() {
        let c = colors[i % colors.len()];
        let line: Vec<String> = pts(ser)
            .iter()
            .map(|(r, k)| format!("{:.1},{:.1}", x(*r), y(*k)))
            .collect();
        // IPv6 dashed, next to its system's IPv4 line.
        let dash = if ser.1 == Family::V6 {
            " stroke-dasharray=\"6 3\""
        } else {
            ""
        };
        let name = if both || ser.1 == Family::V6 {
            format!("{} {}", label(ser.0), ser.1)
        } else {
            label(ser.0).to_string()
        };
        s += &format!(
            "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"2\"{dash} points=\"{}\"/>\n<text x=\"{}\" y=\"{}\" fill=\"{c}\">{name}</text>\n",
            line.join(" "),
            w - 150.0,
            35.0 + 15.0 * i as f64,
        );
    }
    s + "</svg>\n"
}

/// What a system name stands for, in tables and plots.
fn label(system: &str) -> &str {
    match system {
        "linux" => "Linux+syncookies",
        "synproxy" => "Linux+SYNPROXY",
        "xstack" => "xstack",
        "xdp-drop" => "XDP drop (floor)",
        other => other,
    }
}

fn opt(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.0}")).unwrap_or_else(|| "-".into())
}

fn table(cells: &[Cell]) -> String {
    let mut s = String::from(
        "| kind  | system           | family | flood pps (achieved) | success % | conn/s | kept % |    ok | refused | reset | timeout | p50 µs | p99 µs | victim CPU % | victim ns/flood pkt | NAPI ns/rx pkt | XDP ns/pkt |\n\
         |-------|------------------|--------|----------------------|-----------|--------|--------|-------|---------|-------|---------|--------|--------|--------------|---------------------|----------------|------------|\n",
    );
    for c in cells.iter().filter(|c| c.kind != "est") {
        let o = &c.outcomes;
        s += &match &c.error {
            None => format!(
                "| {:<5} | {:<16} | {:<6} | {:>9} ({:>9.0}) | {:>9.1} | {:>6.0} | {:>6} | {:>5} | {:>7} | {:>5} | {:>7} | {:>6} | {:>6} | {:>12.0} | {:>19} | {:>14} | {:>10} |\n",
                c.kind,
                label(&c.system),
                c.family.label(),
                c.flood_pps,
                c.flood_achieved_pps,
                c.success_pct,
                c.cps,
                opt(c.kept_pct),
                o.ok,
                o.refused,
                o.reset,
                o.timeout + o.other,
                opt(c.p50_us),
                opt(c.p99_us),
                c.victim_cpu_pct,
                opt(c.victim_ns_per_flood_pkt),
                opt(c.napi_ns_per_rx_pkt),
                opt(c.xdp_ns_per_pkt),
            ),
            Some(e) => format!(
                "| {:<5} | {:<16} | {:<6} | {:>9}             | error: {e}\n",
                c.kind,
                label(&c.system),
                c.family.label(),
                c.flood_pps
            ),
        };
    }
    s
}

/// The established-flow rows: echoes on the legit client's open
/// connections, their outcomes, and the victim's challenge ACKs.
fn est_table(cells: &[Cell]) -> String {
    let mut s = String::from(
        "| system           | family | flood pps (achieved) | echoes ok | echoes/s | reset | timeout | p99 µs | challenge ACKs | victim CPU % |\n\
         |------------------|--------|----------------------|-----------|----------|-------|---------|--------|----------------|--------------|\n",
    );
    for c in cells.iter().filter(|c| c.kind == "est") {
        let o = &c.outcomes;
        s += &match &c.error {
            None => format!(
                "| {:<16} | {:<6} | {:>9} ({:>9.0}) | {:>9} | {:>8.0} | {:>5} | {:>7} | {:>6} | {:>14} | {:>12.0} |\n",
                label(&c.system),
                c.family.label(),
                c.flood_pps,
                c.flood_achieved_pps,
                o.ok,
                c.cps,
                o.reset + o.refused,
                o.timeout + o.other,
                opt(c.p99_us),
                c.challenge_acks.map(|x| x.to_string()).unwrap_or_else(|| "-".into()),
                c.victim_cpu_pct,
            ),
            Some(e) => format!("| {:<16} | {:<6} | {:>9}             | error: {e}\n", label(&c.system), c.family.label(), c.flood_pps),
        };
    }
    s
}

/// Per attack kind and system: "kept" at the highest flood rate, and the
/// victim's cost per packet there: the stack-side NAPI thread's ns per
/// packet it received (every system: threaded NAPI runs all of a flood
/// packet's receive path in that thread, Linux's TCP included, and all of
/// xstack's XDP), xstack's XDP run time per packet, and the flood rate one
/// core absorbs at each (1e9 / ns); then the victim core's busy ns per
/// flood packet beyond the no-flood row (see [`against_baseline`]).
fn summary(cells: &[Cell], systems: &[String], kinds: &[FloodKind]) -> String {
    let mut s = String::from(
        "| kind  | system           | family | at max pps | kept % | NAPI ns/rx pkt | absorbs pps (NAPI) | XDP ns/pkt | absorbs pps (XDP) | victim-core ns/flood pkt |\n\
         |-------|------------------|--------|------------|--------|----------------|--------------------|------------|-------------------|--------------------------|\n",
    );
    for (kind, sys, f, top) in top_rows(cells, systems, kinds) {
        s += &format!(
            "| {:<5} | {:<16} | {:<6} | {:>10.0} | {:>6} | {:>14} | {:>18} | {:>10} | {:>17} | {:>24} |\n",
            kind,
            label(sys),
            f.label(),
            top.flood_achieved_pps,
            opt(top.kept_pct),
            opt(top.napi_ns_per_rx_pkt),
            opt(top.napi_ns_per_rx_pkt.and_then(victim::absorbs_pps)),
            opt(top.xdp_ns_per_pkt),
            opt(top.xdp_ns_per_pkt.and_then(victim::absorbs_pps)),
            opt(top.victim_ns_per_flood_pkt),
        );
    }
    s
}

/// Each kind's row at its highest flood rate, per system and family.
fn top_rows<'a>(
    cells: &'a [Cell],
    systems: &'a [String],
    kinds: &[FloodKind],
) -> Vec<(&'static str, &'a String, Family, &'a Cell)> {
    let mut v = Vec::new();
    for k in kinds.iter().filter(|k| **k != FloodKind::Est) {
        let kind = kind_name(Some(*k));
        for (sys, f) in systems
            .iter()
            .flat_map(|s| [Family::V4, Family::V6].map(|f| (s, f)))
        {
            let top = cells
                .iter()
                .filter(|c| {
                    &c.system == sys && c.family == f && c.kind == kind && c.error.is_none()
                })
                .max_by_key(|c| c.flood_pps);
            if let Some(top) = top {
                v.push((kind, sys, f, top));
            }
        }
    }
    v
}

/// xstack's cost per flood packet over Linux+syncookies', per kind, at
/// each one's highest rate: NAPI over NAPI, and XDP alone over Linux's
/// NAPI (the target: 0.10 or less); then XDP alone over Linux's
/// NAPI at each offered rate both ran. Linux's cost per packet falls as
/// its rate rises (bigger NAPI batches), xstack's hardly moves, so the
/// ratio at the top rate is the least favourable to xstack of the run.
fn cost_ratios(cells: &[Cell], systems: &[String], kinds: &[FloodKind]) -> String {
    let rows = top_rows(cells, systems, kinds);
    let find = |kind: &str, sys: &str, f: Family| {
        rows.iter()
            .find(|r| r.0 == kind && r.1 == sys && r.2 == f)
            .map(|r| r.3)
    };
    let mut s = String::new();
    for &(kind, _, f, x) in rows.iter().filter(|r| r.1 == "xstack") {
        let Some(l) = find(kind, "linux", f) else {
            continue;
        };
        let per = |a: Option<f64>| -> String {
            match (a, l.napi_ns_per_rx_pkt) {
                (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
                _ => "-".into(),
            }
        };
        s += &format!(
            "{kind} {}: xstack / Linux+syncookies per flood packet: NAPI {}, XDP alone {} (floor{}: NAPI {}, XDP {})\n",
            f.label(),
            per(x.napi_ns_per_rx_pkt),
            per(x.xdp_ns_per_pkt),
            if systems.iter().any(|s| s == "xdp-drop") { "" } else { " not run" },
            per(find(kind, "xdp-drop", f).and_then(|d| d.napi_ns_per_rx_pkt)),
            per(find(kind, "xdp-drop", f).and_then(|d| d.xdp_ns_per_pkt)),
        );
        let at_rates: Vec<String> = cells
            .iter()
            .filter(|c| {
                c.system == "xstack" && c.family == f && c.kind == kind && c.error.is_none()
            })
            .filter_map(|x| {
                let l = cells.iter().find(|c| {
                    c.system == "linux"
                        && c.family == f
                        && c.kind == kind
                        && c.flood_pps == x.flood_pps
                        && c.error.is_none()
                })?;
                match (x.xdp_ns_per_pkt, l.napi_ns_per_rx_pkt) {
                    (Some(a), Some(b)) if b > 0.0 => Some(format!(
                        "{} pps {:.2}× ({:.0} / {:.0} ns)",
                        x.flood_pps,
                        a / b,
                        a,
                        b
                    )),
                    _ => None,
                }
            })
            .collect();
        if !at_rates.is_empty() {
            s += &format!(
                "{kind} {}: XDP alone / Linux+syncookies NAPI at each rate: {}\n",
                f.label(),
                at_rates.join(", ")
            );
        }
    }
    s
}

/// The last non-empty line of a child's stderr, for a one-line error.
fn last_line(text: &str) -> Option<&str> {
    text.lines().map(str::trim).rfind(|l| !l.is_empty())
}

/// One row to run: system, family, attack kind (`None`: no flood), rate.
type Planned = (String, Family, Option<FloodKind>, u64);

/// The rows to run, in order: every system's no-flood row first (if 0 is
/// among the rates: no baseline then follows a flood row, whose veth
/// teardown can outlast the wait for it), then per system every kind at
/// every non-zero rate; each row over every family of `families`, the
/// IPv6 one right after the IPv4 one.
fn plan(
    systems: &[String],
    families: &[Family],
    kinds: &[FloodKind],
    rates: &[u64],
) -> Vec<Planned> {
    let mut v = Vec::new();
    if rates.contains(&0) {
        for sys in systems {
            v.extend(families.iter().map(|f| (sys.clone(), *f, None, 0)));
        }
    }
    for sys in systems {
        for k in kinds {
            for r in rates.iter().filter(|r| **r > 0) {
                v.extend(families.iter().map(|f| (sys.clone(), *f, Some(*k), *r)));
            }
        }
    }
    v
}

/// With both families: per system, the no-flood conn/s and the "kept" at
/// the highest rate of each kind, IPv6 over IPv4.
fn family_ratios(cells: &[Cell], systems: &[String], kinds: &[FloodKind]) -> String {
    let mut s = String::new();
    let find = |sys: &str, f: Family, kind: &str| {
        cells
            .iter()
            .filter(|c| c.system == sys && c.family == f && c.kind == kind && c.error.is_none())
            .max_by_key(|c| c.flood_pps)
    };
    for sys in systems {
        let mut parts = Vec::new();
        let cps = |f| find(sys, f, "none").map_or(0.0, |c| c.cps);
        if cps(Family::V4) > 0.0 || cps(Family::V6) > 0.0 {
            parts.push(format!(
                "no-flood conn/s {}",
                ratio(cps(Family::V6), cps(Family::V4))
            ));
        }
        for k in kinds.iter().filter(|k| **k != FloodKind::Est) {
            let kind = kind_name(Some(*k));
            let kept = |f| find(sys, f, kind).and_then(|c| c.kept_pct).unwrap_or(0.0);
            if find(sys, Family::V4, kind).is_some() && find(sys, Family::V6, kind).is_some() {
                parts.push(format!(
                    "{kind} kept at max pps {}",
                    ratio(kept(Family::V6), kept(Family::V4))
                ));
            }
        }
        if !parts.is_empty() {
            s += &format!("{}: IPv6 / IPv4 {}\n", label(sys), parts.join(", "));
        }
    }
    s
}

/// Refuses arguments the matrix cannot run with, in one line each.
fn check_args(a: &SynfloodArgs) -> Result<()> {
    if !(a.seconds > 0.0 && a.seconds <= 30.0) {
        bail!("--seconds {} is out of range: 0 < s <= 30", a.seconds);
    }
    if a.legit_rate > MAX_LEGIT_RATE {
        bail!(
            "--legit-rate {} is out of range: at most {MAX_LEGIT_RATE} connections/s (0: closed loop)",
            a.legit_rate
        );
    }
    if a.legit_rate > 0 && (a.legit_rate as f64 * a.seconds) < a.clients.max(1) as f64 {
        bail!(
            "--legit-rate {} gives a client thread less than one connection in a {} s row: raise it, --seconds, or lower --clients",
            a.legit_rate,
            a.seconds
        );
    }
    if let Some(s) = a.systems.iter().find(|s| !SYSTEMS.contains(&s.as_str())) {
        bail!(
            "--systems: unknown system {s:?}: use {}",
            SYSTEMS.join(", ")
        );
    }
    if a.kinds.is_empty() || a.systems.is_empty() {
        bail!("--kinds and --systems need at least one entry each");
    }
    Ok(())
}

/// Runs the experiment, prints the table, writes JSON and one SVG per kind.
pub fn run(a: &SynfloodArgs) -> Result<()> {
    check_args(a)?;
    crate::runtime::sys::check_privileges("xstack bench synflood")?;
    let gen_max = generator_max(a.generator)?;
    println!(
        "synflood: flood generator maximum from one core: {gen_max:.0} pps ({}, veth, SYN)",
        generator_words(a.generator)
    );
    let rates: Vec<u64> = if a.rates.is_empty() {
        let m = gen_max as u64;
        vec![0, m / 4, m / 2, m]
    } else {
        a.rates.clone()
    };
    let victim_core = !a.no_victim_core && std::thread::available_parallelism()?.get() >= 2;
    if !a.no_victim_core && !victim_core {
        bail!("the victim core needs 2 CPUs: run with --no-victim-core");
    }
    // XDP run time per packet; the old value comes back when `_stats` drops.
    let _stats = match victim::BpfStats::enable() {
        Ok(s) => Some(s),
        Err(e) => {
            println!("synflood: no XDP run times ({e:#})");
            None
        }
    };
    let rows = plan(&a.systems, a.family.list(), &a.kinds, &rates);
    println!(
        "synflood: {} rows of {} s, each on a fresh testbed (new namespaces, veth pair, sink, server process or listener, conntrack table and rules; removed after the row)",
        rows.len(),
        a.seconds
    );
    let mut cells = Vec::new();
    for (n, (sys, f, kind, rate)) in rows.iter().enumerate() {
        println!(
            "synflood: {} {f} {} {} pps ...",
            label(sys),
            kind_name(*kind),
            rate
        );
        cells.push(run_row((sys, *f), *kind, *rate, a, n));
    }
    drop(_stats);
    against_baseline(&mut cells);
    // Printed by system (stable: its no-flood row first, then the kinds).
    cells.sort_by_key(|c| a.systems.iter().position(|s| *s == c.system));
    println!();
    if victim_core {
        println!(
            "victim core: CPU {VICTIM_CPU} runs the stack-side threaded NAPI and the server; CPU {OTHER_CPU} the generator, legit client and peer NAPI; both NAPI threads {}",
            if a.napi_priority > 0 {
                format!("SCHED_FIFO {}: they preempt other threads, as softirq receive work does behind a NIC", a.napi_priority)
            } else {
                "SCHED_OTHER: they share their cores with whatever else runs there".to_string()
            }
        );
    } else {
        println!("no victim core (--no-victim-core): veth receive work runs on the sender's CPU");
    }
    println!(
        "flood: {}; the stack end runs NAPI for every system ({})",
        generator_words(a.generator),
        if a.generator == Generator::Live || victim_core {
            "GRO on for Linux and SYNPROXY, the XDP program for xstack"
        } else {
            "xstack only: its XDP program; Linux rows without"
        }
    );
    let refused: Vec<String> = cells
        .iter()
        .filter(|c| c.flood_refused_pps > 0.0)
        .map(|c| {
            format!(
                "{} {} {}: {:.0}/s",
                label(&c.system),
                c.kind,
                c.flood_pps,
                c.flood_refused_pps
            )
        })
        .collect();
    if !refused.is_empty() {
        println!(
            "flood frames the victim's ring refused (not in the achieved rate): {}",
            refused.join(", ")
        );
    }
    println!("legit client: {}; kept = conn/s / the same system's no-flood conn/s; timeout column includes other errors", legit_words(a));
    if let Some(w) = stolen_rows(&cells) {
        println!("{w}");
    }
    if let Some(w) = overflowed_rows(&cells) {
        println!("{w}");
    }
    let late: u64 = cells.iter().map(|c| c.outcomes.late).sum();
    if late > 0 {
        println!(
            "legit arrivals started over 10 ms late (the client's core was busy): {}",
            cells
                .iter()
                .filter(|c| c.outcomes.late > 0)
                .map(|c| format!(
                    "{} {} {}: {}",
                    label(&c.system),
                    c.kind,
                    c.flood_pps,
                    c.outcomes.late
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    print!("{}", table(&cells));
    println!();
    print!("{}", summary(&cells, &a.systems, &a.kinds));
    print!("{}", cost_ratios(&cells, &a.systems, &a.kinds));
    if a.family == Families::Both {
        println!();
        print!("{}", family_ratios(&cells, &a.systems, &a.kinds));
    }
    if a.kinds.contains(&FloodKind::Est) {
        println!("\nestablished flows (est): spoofed RSTs and ACKs from the client's address and ports {}-{} with guessed numbers, {} open connections per client thread echoing in turn; RFC 5961 holds when reset is 0", EST_PORTS.0, EST_PORTS.1, EST_CONNS_PER_CLIENT);
        print!("{}", est_table(&cells));
    }
    std::fs::create_dir_all(&a.out)?;
    let doc = serde_json::json!({
        "generator_max_pps": gen_max,
        "generator": a.generator,
        "napi_priority": a.napi_priority,
        "seconds": a.seconds,
        "clients": a.clients,
        "legit_rate": a.legit_rate,
        "legit_client": legit_words(a),
        "victim_core": victim_core,
        "families": a.family.list(),
        "rows_independent": "each row on a fresh testbed",
        "cells": cells,
    });
    let json = a.out.join("synflood.json");
    std::fs::write(&json, serde_json::to_string_pretty(&doc)?)?;
    println!("\nwrote {}", json.display());
    for k in a.kinds.iter().filter(|k| **k != FloodKind::Est) {
        let name = kind_name(Some(*k));
        let path = a.out.join(format!("synflood-{name}.svg"));
        std::fs::write(&path, svg(name, &cells, &a.systems))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Steal above this share of a core marks a row as disturbed by the host.
const STEAL_WARN_PCT: f64 = 2.0;

/// The rows the hypervisor took more than [`STEAL_WARN_PCT`] of a core
/// from (a virtual machine sharing its host), as one line, or `None`.
fn stolen_rows(cells: &[Cell]) -> Option<String> {
    let rows: Vec<String> = cells
        .iter()
        .filter(|c| c.steal_pct > STEAL_WARN_PCT)
        .map(|c| {
            format!(
                "{} {} {}: {:.0}%",
                label(&c.system),
                c.kind,
                c.flood_pps,
                c.steal_pct
            )
        })
        .collect();
    (!rows.is_empty()).then(|| {
        format!(
            "the hypervisor took CPU time from these rows (steal, % of a core; their figures are partly the host's, run them again): {}",
            rows.join(", ")
        )
    })
}

/// The rows whose listener dropped SYNs for a full accept queue, as one
/// line, or `None`: there the server, not the defense, refused
/// connections, and the victim's cost per flood SYN counts SYNs it
/// dropped unanswered.
fn overflowed_rows(cells: &[Cell]) -> Option<String> {
    let rows: Vec<String> = cells
        .iter()
        .filter_map(|c| {
            let n = c.listen_overflows.filter(|&n| n > 0)?;
            Some(format!(
                "{} {} {}: {n}",
                label(&c.system),
                c.kind,
                c.flood_pps
            ))
        })
        .collect();
    (!rows.is_empty()).then(|| {
        format!(
            "SYNs dropped unanswered for a full accept queue (ListenOverflows; the server was too slow to accept): {}",
            rows.join(", ")
        )
    })
}

/// The legit client, for the table's header.
fn legit_words(a: &SynfloodArgs) -> String {
    let how = match a.legit_rate {
        0 => format!(
            "{} Linux threads in a closed loop (each connects again as soon as its last connection ended), connect + 1-byte echo + close, 1 s timeout",
            a.clients
        ),
        r => format!(
            "{r} connections/s offered at fixed times (open loop) from {} Linux threads, connect + 1-byte echo + close, 1 s timeout each",
            a.clients
        ),
    };
    let est = if a.kinds.contains(&FloodKind::Est) {
        format!(
            " (est rows: ports {}-{}, the flood's aim)",
            EST_PORTS.0, EST_PORTS.1
        )
    } else {
        String::new()
    };
    format!("{how}; client namespace {}{est}", super::client_words())
}

/// How the flood reaches the victim, for the table's header.
fn generator_words(g: Generator) -> &'static str {
    match g {
        Generator::Live => "live frames: XDP_REDIRECT into the veth, the victim's NAPI gets pages as from a NIC, no skb, no copy",
        Generator::Xsk => "AF_XDP copy mode: skbs, copied into a page before the victim's XDP",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synproxy_rules_untrack_syns_proxy_invalid_acks_and_leave_timestamps_out() {
        let r = SYNPROXY_RULES;
        assert!(r.contains("hook prerouting priority raw") && r.contains("tcp flags syn notrack"));
        assert!(r.contains("ct state invalid,untracked synproxy mss 1460 wscale 7 sack-perm;"));
        assert!(r.contains("ct state invalid drop"));
        assert!(
            !r.contains("timestamp"),
            "TSecr rewriting breaks 6.x servers"
        );
        assert!(SYNPROXY_SYSCTLS.contains(&"net.netfilter.nf_conntrack_tcp_loose=0"));
        assert!(SYNPROXY_SYSCTLS.contains(&"net.netfilter.nf_conntrack_tcp_timeout_time_wait=0"));
    }

    /// Checks that `s` is well-formed XML as far as an SVG writer can get
    /// it wrong: every tag closed in order, attribute quotes balanced, no
    /// stray '<' or '&'.
    fn well_formed(s: &str) -> Result<(), String> {
        let mut stack: Vec<String> = Vec::new();
        let mut rest = s;
        while let Some(i) = rest.find('<') {
            if rest[..i].contains('&') || rest[..i].contains('>') {
                return Err(format!("stray character in text {:?}", &rest[..i]));
            }
            let end = rest[i..].find('>').ok_or("unclosed tag")? + i;
            let tag = &rest[i + 1..end];
            if !tag.matches('"').count().is_multiple_of(2) || tag.contains('<') {
                return Err(format!("bad tag {tag:?}"));
            }
            if let Some(name) = tag.strip_prefix('/') {
                match stack.pop() {
                    Some(open) if open == name => {}
                    other => return Err(format!("</{name}> closes {other:?}")),
                }
            } else if !tag.ends_with('/') {
                stack.push(tag.split_whitespace().next().unwrap_or("").to_string());
            }
            rest = &rest[end + 1..];
        }
        match stack.is_empty() && rest.trim().is_empty() {
            true => Ok(()),
            false => Err(format!("unclosed {stack:?}")),
        }
    }

    fn cell(system: &str, kind: &str, rate: u64, cps: f64) -> Cell {
        Cell {
            system: system.into(),
            kind: kind.into(),
            flood_pps: rate,
            flood_achieved_pps: rate as f64,
            cps,
            ..Cell::default()
        }
    }

    #[test]
    fn plot_is_well_formed_svg_with_one_polyline_per_system() {
        let systems: Vec<String> = ["linux", "synproxy", "xstack"].map(String::from).into();
        let mut cells = Vec::new();
        for (i, sys) in systems.iter().enumerate() {
            cells.push(cell(sys, "none", 0, 1000.0));
            for r in [50_000, 100_000, 200_000] {
                cells.push(cell(
                    sys,
                    "syn",
                    r,
                    1000.0 / (1 + i) as f64 * 50_000.0 / r as f64,
                ));
                cells.push(cell(sys, "ack", r, 900.0));
            }
        }
        cells.push(Cell {
            error: Some("testbed <failed> & gone".into()),
            ..cell("xstack", "syn", 400_000, 0.0)
        });
        against_baseline(&mut cells);
        let s = svg("syn", &cells, &systems);
        well_formed(&s).unwrap();
        assert!(s.starts_with("<svg ") && s.ends_with("</svg>\n"));
        assert_eq!(s.matches("<polyline").count(), systems.len());
        // The floor has no kept % and no line.
        let mut with_floor = cells.clone();
        with_floor.push(cell("xdp-drop", "syn", 50_000, 0.0));
        let mut floor_too = systems.clone();
        floor_too.push("xdp-drop".into());
        let f = svg("syn", &with_floor, &floor_too);
        assert_eq!(f.matches("<polyline").count(), systems.len());
        assert!(!f.contains("XDP drop"), "{f}");
        // Each line: the no-flood point plus three flood rates (the failed
        // row is left out), and only the SYN rows.
        for line in s.lines().filter(|l| l.starts_with("<polyline")) {
            let pts = line
                .split("points=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            assert_eq!(pts.split(' ').count(), 4, "{line}");
        }
        assert!(s.contains("Linux+SYNPROXY") && s.contains("SYN flood rate"));
        well_formed("<svg><g></svg>").unwrap_err();
        well_formed("<svg a=\"1></svg>").unwrap_err();
    }

    #[test]
    fn kept_is_against_the_same_systems_no_flood_row() {
        let mut cells = vec![
            cell("linux", "none", 0, 2000.0),
            cell("xstack", "none", 0, 4000.0),
            cell("linux", "syn", 100_000, 500.0),
            cell("xstack", "syn", 100_000, 3900.0),
            cell("synproxy", "syn", 100_000, 10.0),
        ];
        against_baseline(&mut cells);
        let kept: Vec<Option<f64>> = cells.iter().map(|c| c.kept_pct).collect();
        assert_eq!(
            kept,
            [Some(100.0), Some(100.0), Some(25.0), Some(97.5), None]
        );
    }

    #[test]
    fn plan_runs_every_no_flood_row_first_then_every_kind_and_rate() {
        let v4 = [Family::V4];
        let p = plan(
            &["linux".into(), "xstack".into()],
            &v4,
            &[FloodKind::Syn, FloodKind::Rst],
            &[0, 1000, 2000],
        );
        assert_eq!(p.len(), 2 * (1 + 2 * 2));
        assert_eq!(p[0], ("linux".into(), Family::V4, None, 0));
        assert_eq!(p[1], ("xstack".into(), Family::V4, None, 0));
        assert_eq!(
            p[2],
            ("linux".into(), Family::V4, Some(FloodKind::Syn), 1000)
        );
        assert_eq!(
            p[5],
            ("linux".into(), Family::V4, Some(FloodKind::Rst), 2000)
        );
        assert_eq!(
            p[6],
            ("xstack".into(), Family::V4, Some(FloodKind::Syn), 1000)
        );
        assert_eq!(
            plan(&["xstack".into()], &v4, &[FloodKind::Ack], &[5]).len(),
            1
        );
    }

    #[test]
    fn plan_with_both_families_runs_each_ipv6_row_after_its_ipv4_row() {
        let both = [Family::V4, Family::V6];
        let p = plan(&["xstack".into()], &both, &[FloodKind::Syn], &[0, 1000]);
        assert_eq!(
            p,
            [
                ("xstack".into(), Family::V4, None, 0),
                ("xstack".into(), Family::V6, None, 0),
                ("xstack".into(), Family::V4, Some(FloodKind::Syn), 1000),
                ("xstack".into(), Family::V6, Some(FloodKind::Syn), 1000),
            ]
        );
        assert_eq!(spoofed_cidr(Family::V6), "2001:2:0:8000::/49");
        assert!(synproxy_rules(Family::V6).starts_with("table ip6 xstack_synproxy {"));
        assert_eq!(synproxy_rules(Family::V4), SYNPROXY_RULES);
    }

    #[test]
    fn both_families_get_kept_against_their_own_baseline_a_family_column_and_ratios() {
        let v6 = |c: Cell| Cell {
            family: Family::V6,
            ..c
        };
        let mut cells = vec![
            cell("xstack", "none", 0, 4000.0),
            v6(cell("xstack", "none", 0, 2000.0)),
            cell("xstack", "syn", 100_000, 3000.0),
            v6(cell("xstack", "syn", 100_000, 1800.0)),
        ];
        against_baseline(&mut cells);
        let kept: Vec<Option<f64>> = cells.iter().map(|c| c.kept_pct).collect();
        assert_eq!(kept, [Some(100.0), Some(100.0), Some(75.0), Some(90.0)]);
        let t = table(&cells);
        assert!(t.lines().next().unwrap().contains("| family |"), "{t}");
        assert!(t.contains("| syn   | xstack           | IPv6   |"), "{t}");
        let r = family_ratios(&cells, &["xstack".into()], &[FloodKind::Syn]);
        assert_eq!(
            r,
            "xstack: IPv6 / IPv4 no-flood conn/s 0.50×, syn kept at max pps 1.20×\n"
        );
        let systems = vec!["xstack".to_string()];
        let s = svg("syn", &cells, &systems);
        well_formed(&s).unwrap();
        assert_eq!(s.matches("<polyline").count(), 2, "{s}");
        assert!(
            s.contains("xstack IPv6") && s.contains("stroke-dasharray"),
            "{s}"
        );
        let sum = summary(&cells, &systems, &[FloodKind::Syn]);
        assert!(
            sum.contains("| syn   | xstack           | IPv4   |"),
            "{sum}"
        );
        assert!(
            sum.contains("| syn   | xstack           | IPv6   |"),
            "{sum}"
        );
    }

    #[test]
    fn a_server_that_does_not_start_is_explained_by_its_last_error_line() {
        let stderr = "[INFO xstack] loading\nerror: load XDP program: verifier: combined stack size of 4 calls is 624. Too large\n\n";
        assert_eq!(
            last_line(stderr),
            Some("error: load XDP program: verifier: combined stack size of 4 calls is 624. Too large")
        );
        assert_eq!(last_line(" \n\n"), None);
    }

    #[test]
    fn cost_ratios_compare_each_kinds_top_rate_napi_and_xdp_with_linux_napi() {
        let costs = |c: Cell, napi: f64, xdp: Option<f64>| Cell {
            napi_ns_per_rx_pkt: Some(napi),
            xdp_ns_per_pkt: xdp,
            ..c
        };
        let mut cells = vec![
            cell("linux", "none", 0, 2000.0),
            costs(cell("linux", "syn", 100_000, 1000.0), 9000.0, None),
            costs(cell("linux", "syn", 400_000, 500.0), 4000.0, None),
            cell("xstack", "none", 0, 2000.0),
            costs(cell("xstack", "syn", 100_000, 2000.0), 3000.0, Some(900.0)),
            costs(cell("xstack", "syn", 400_000, 2000.0), 1000.0, Some(400.0)),
            costs(cell("xdp-drop", "syn", 400_000, 0.0), 400.0, Some(60.0)),
        ];
        against_baseline(&mut cells);
        let systems: Vec<String> = ["linux", "xstack", "xdp-drop"].map(String::from).into();
        assert_eq!(
            cost_ratios(&cells, &systems, &[FloodKind::Syn]),
            "syn IPv4: xstack / Linux+syncookies per flood packet: NAPI 0.25×, XDP alone 0.10× (floor: NAPI 0.10×, XDP 0.01×)\n\
             syn IPv4: XDP alone / Linux+syncookies NAPI at each rate: 100000 pps 0.10× (900 / 9000 ns), 400000 pps 0.10× (400 / 4000 ns)\n"
        );
        let sum = summary(&cells, &systems, &[FloodKind::Syn]);
        assert!(
            sum.contains("| syn   | xstack           | IPv4   |     400000 |    100 |           1000 |            1000000 |        400 |           2500000 |"),
            "{sum}"
        );
        // Without Linux rows there is nothing to compare with.
        assert_eq!(cost_ratios(&cells[3..], &systems, &[FloodKind::Syn]), "");
    }

    #[test]
    fn rows_the_host_stole_time_from_are_named_in_one_line() {
        let mut calm = cell("xstack", "syn", 100_000, 2000.0);
        calm.steal_pct = 0.5;
        assert_eq!(stolen_rows(&[calm.clone()]), None);
        let mut stolen = cell("linux", "ack", 575_467, 0.0);
        stolen.steal_pct = 31.4;
        let w = stolen_rows(&[calm, stolen]).unwrap();
        assert!(w.ends_with(": Linux+syncookies ack 575467: 31%"), "{w}");
        assert_eq!(w.lines().count(), 1);
    }

    /// The bug it replaced: a server whose few threads each waited on one
    /// connection's request let the accept queue fill behind a slow
    /// client (and under a flood Linux then drops SYNs unanswered). Eight
    /// connections that send nothing must not delay the ninth's echo.
    #[tokio::test]
    async fn the_linux_rows_server_echoes_at_once_behind_connections_that_send_nothing() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind((std::net::Ipv4Addr::LOCALHOST, 0).into())
            .unwrap();
        let l = sock.listen(SERVE_BACKLOG as u32).unwrap();
        let at = l.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let server = tokio::spawn(echo_server(l, stop.clone(), false));
        let mut idle = Vec::new();
        for _ in 0..8 {
            idle.push(tokio::net::TcpStream::connect(at).await.unwrap());
        }
        let t0 = std::time::Instant::now();
        let mut s = tokio::net::TcpStream::connect(at).await.unwrap();
        s.write_all(b"x").await.unwrap();
        let mut b = [0u8; 1];
        tokio::time::timeout(Duration::from_millis(300), s.read_exact(&mut b))
            .await
            .expect("echoed within 300 ms")
            .unwrap();
        assert_eq!(&b, b"x");
        assert!(t0.elapsed() < Duration::from_millis(300));
        stop.store(true, Ordering::Relaxed);
        server.await.unwrap().unwrap();
    }

    #[test]
    fn rows_whose_listener_overflowed_are_named_in_one_line() {
        let mut fine = cell("linux", "syn", 300_000, 1500.0);
        fine.listen_overflows = Some(0);
        let unknown = cell("xdp-drop", "syn", 300_000, 0.0);
        assert_eq!(overflowed_rows(&[fine.clone(), unknown.clone()]), None);
        let mut full = cell("linux", "syn", 1_000_000, 300.0);
        full.listen_overflows = Some(760_821);
        let w = overflowed_rows(&[fine, unknown, full]).unwrap();
        assert!(w.ends_with(": Linux+syncookies syn 1000000: 760821"), "{w}");
        assert_eq!(w.lines().count(), 1);
    }

    #[test]
    fn client_errors_are_counted_by_outcome() {
        use std::io::{Error, ErrorKind};
        let mut o = Outcomes::default();
        for k in [
            ErrorKind::ConnectionRefused,
            ErrorKind::ConnectionReset,
            ErrorKind::UnexpectedEof,
            ErrorKind::TimedOut,
            ErrorKind::WouldBlock,
            ErrorKind::AddrNotAvailable,
        ] {
            o.count_error(&Error::from(k));
        }
        o.ok += 3;
        let want = Outcomes {
            ok: 3,
            refused: 1,
            reset: 2,
            timeout: 2,
            other: 1,
            late: 0,
        };
        assert_eq!(o, want);
        assert_eq!(o.attempts(), 9);
    }

    /// Open loop: arrival i starts at (i + phase) / rate whatever the
    /// earlier ones take; each is counted by its outcome.
    #[tokio::test(start_paused = true)]
    async fn a_paced_client_starts_each_connection_on_time_however_long_the_others_take() {
        use std::sync::Mutex;
        let t0 = tokio::time::Instant::now();
        let starts = Arc::new(Mutex::new(Vec::new()));
        let n = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (s2, n2) = (starts.clone(), n.clone());
        let attempt = move || {
            let i = n2.fetch_add(1, Ordering::Relaxed);
            s2.lock().unwrap().push(t0.elapsed());
            async move {
                match i % 4 {
                    // Every fourth connection hangs until its 1 s budget
                    // ends; the others take 300 µs or are refused.
                    0 => {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        Err(std::io::ErrorKind::TimedOut.into())
                    }
                    1 => Err(std::io::ErrorKind::ConnectionRefused.into()),
                    _ => {
                        tokio::time::sleep(Duration::from_micros(300)).await;
                        Ok(())
                    }
                }
            }
        };
        // 500/s for 40 arrivals, phase 0.5: the i-th at (i + 0.5) × 2 ms.
        let (out, hist, late) = paced_arrivals(attempt, 500.0, 0.5, 40).await;
        let starts = starts.lock().unwrap().clone();
        assert_eq!(starts.len(), 40);
        for (i, at) in starts.iter().enumerate() {
            let want = Duration::from_secs_f64((i as f64 + 0.5) / 500.0);
            let off = at.abs_diff(want);
            assert!(
                off < Duration::from_millis(2),
                "arrival {i} at {at:?}, due {want:?}"
            );
        }
        assert_eq!(late, 0);
        assert_eq!(
            out,
            Outcomes {
                ok: 20,
                refused: 10,
                timeout: 10,
                ..Outcomes::default()
            }
        );
        assert_eq!(hist.len(), 20);
        assert!(
            hist.max() >= 300 && hist.max() < 2000,
            "latency {}",
            hist.max()
        );
        // The last hung connection ends 1 s after its start: the whole
        // run waits for it, and for nothing longer.
        assert!(t0.elapsed() >= Duration::from_secs(1));
        assert!(t0.elapsed() < Duration::from_millis(1200));
    }

    #[test]
    fn a_legit_rate_the_client_cannot_offer_or_an_unknown_system_is_refused_in_one_line() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            a: SynfloodArgs,
        }
        let args = |extra: &[&str]| {
            let mut v = vec!["x"];
            v.extend_from_slice(extra);
            Cli::parse_from(v).a
        };
        assert!(check_args(&args(&[])).is_ok());
        assert!(check_args(&args(&["--legit-rate", "0"])).is_ok());
        assert!(check_args(&args(&["--systems", "xstack,xdp-drop"])).is_ok());
        let e = check_args(&args(&["--systems", "xstack,bsd"]))
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "--systems: unknown system \"bsd\": use linux, synproxy, xstack, xdp-drop"
        );
        for (bad, says) in [
            (
                vec!["--legit-rate", "100001"],
                "--legit-rate 100001 is out of range",
            ),
            (
                vec!["--legit-rate", "3", "--seconds", "1"],
                "less than one connection",
            ),
        ] {
            let e = check_args(&args(&bad)).unwrap_err().to_string();
            assert!(e.contains(says), "{e}");
            assert_eq!(e.lines().count(), 1, "{e}");
        }
    }

    #[test]
    fn netstat_counters_are_found_by_group_and_name() {
        let t = "TcpExt: SyncookiesSent TCPChallengeACK TCPACKSkippedSeq\nTcpExt: 5 42 7\nIpExt: InNoRoutes\nIpExt: 3\n";
        assert_eq!(netstat_value(t, "TcpExt", "TCPChallengeACK"), Some(42));
        assert_eq!(netstat_value(t, "IpExt", "InNoRoutes"), Some(3));
        assert_eq!(netstat_value(t, "TcpExt", "Nope"), None);
        assert_eq!(netstat_value("garbage", "TcpExt", "TCPChallengeACK"), None);
    }
}
