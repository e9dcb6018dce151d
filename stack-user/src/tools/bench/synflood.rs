//! `xstack bench synflood`: legitimate connections under a SYN flood.
//!
//! For each system — (a) a Linux listener with `tcp_syncookies=1`, (b) the
//! same behind nftables SYNPROXY, (c) `xstack serve --syncookies auto` — on a
//! fresh testbed, and for a rising series of flood rates up to the
//! generator's maximum (measured first), a Linux client in the peer
//! namespace runs connect + 1-byte request/echo + close in a loop (1 s
//! timeout per connection) while `xstack flood` sends spoofed SYNs from
//! 198.18.128.0/17 on the same veth. Reported per cell: success %,
//! connections/s, machine CPU % (all cores, from /proc/stat), and where the
//! CPU goes on the victim core.
//!
//! The victim core (unless `--no-victim-core`): the stack-side veth's NAPI
//! runs threaded (GRO on at the stack end for the Linux rows, the XDP
//! program for xstack) and that `napi/*` thread and the server are pinned
//! to CPU 0; the generator, the legit client and the peer's (threaded)
//! NAPI to CPU 1. The victim then pays for what it receives, as with a
//! real NIC. Per cell: CPU 0 and CPU 1 busy %, the NAPI thread's CPU %,
//! the victim core's ns per flood packet beyond the no-flood row, and the
//! XDP program's run time per packet (`kernel.bpf_stats_enabled`, restored
//! afterwards).

use std::{
    io::{Read, Write},
    net::{SocketAddr, SocketAddrV4, TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::victim;
use crate::{
    datapath::sink::XdpSink,
    tools::flood::{FloodConfig, FloodKind},
    tools::testbed::{netns_command, Testbed, TestbedGuard, STACK_MAC},
};

const PORT: u16 = 8080;

/// `xstack bench synflood` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct SynfloodArgs {
    /// Seconds per measurement.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    /// Flood rates (pps), comma separated; default: 0, then 1/4, 1/2 and all of the generator's measured maximum.
    #[arg(long, value_delimiter = ',')]
    pub rates: Vec<u64>,
    /// Client threads.
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
    /// Where to write synflood.json and synflood.svg.
    #[arg(long, default_value = "target/synflood")]
    pub out: std::path::PathBuf,
    /// Systems to run (linux, synproxy, xstack).
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
}

/// The flood's spoofed sources, which the peer-side sink drops.
const SPOOFED: (std::net::Ipv4Addr, u8) = (std::net::Ipv4Addr::new(198, 18, 128, 0), 17);

/// CPU 0 is the victim core (stack NAPI thread + server), CPU 1 the rest
/// (generator, legit client, peer NAPI thread).
const VICTIM_CPU: usize = 0;
const OTHER_CPU: usize = 1;

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
}

impl Cores {
    fn pin_here(&self, cpu: usize) {
        if self.on {
            let _ = victim::pin(0, cpu);
        }
    }
}

/// One cell of the table.
#[derive(Clone, Debug, Serialize)]
pub struct Cell {
    /// System.
    pub system: String,
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
    /// Machine CPU busy %, all cores.
    pub cpu_pct: f64,
    /// Victim core (CPU 0) busy %.
    pub victim_cpu_pct: f64,
    /// The other core (CPU 1: generator, client) busy %.
    pub other_cpu_pct: f64,
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
    /// Frames to the spoofed prefix the peer-side sink dropped (reflected
    /// SYN-ACKs), per second.
    pub sunk_pps: f64,
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

/// Legit client: connect, send one byte, read it back, close; counts.
fn clients(
    t: &Testbed,
    n: usize,
    secs: f64,
    cores: &Cores,
) -> Vec<std::thread::JoinHandle<Result<(u64, u64)>>> {
    let target = SocketAddr::from((t.stack_ip, PORT));
    (0..n)
        .map(|_| {
            let cores = cores.clone();
            in_netns(&t.peer_ns, move || {
                cores.pin_here(OTHER_CPU);
                let end = Instant::now() + Duration::from_secs_f64(secs);
                let (mut tries, mut ok) = (0u64, 0u64);
                while Instant::now() < end {
                    tries += 1;
                    let good = (|| -> std::io::Result<()> {
                        let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(1))?;
                        s.set_read_timeout(Some(Duration::from_secs(1)))?;
                        s.write_all(b"x")?;
                        let mut b = [0u8; 1];
                        s.read_exact(&mut b)?;
                        Ok(())
                    })();
                    if good.is_ok() {
                        ok += 1;
                    }
                }
                (tries, ok)
            })
        })
        .collect()
}

fn flood_config(t: &Testbed, rate: u64, secs: f64) -> FloodConfig {
    FloodConfig {
        iface: t.peer_if.clone(),
        target: SocketAddrV4::new(t.stack_ip, PORT),
        allow_target: vec![], // the testbed is in 198.18.0.0/15
        rate,
        duration: Duration::from_secs_f64(secs),
        sources: SPOOFED,
        kind: FloodKind::Syn,
        dst_mac: STACK_MAC,
        queue: 0,
        metrics: None,
    }
}

fn measure(t: &Testbed, system: &str, rate: u64, a: &SynfloodArgs, cores: &Cores) -> Cell {
    let flood = (rate > 0).then(|| {
        let c = flood_config(t, rate, a.seconds + 0.5);
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
    let start = Instant::now();
    let hs = clients(t, a.clients, a.seconds, cores);
    let (mut attempts, mut ok) = (0, 0);
    let mut error = None;
    for h in hs {
        match join(h) {
            Ok((x, y)) => {
                attempts += x;
                ok += y;
            }
            Err(e) => error = Some(e.to_string()),
        }
    }
    let el = start.elapsed().as_secs_f64();
    let (t1, i1) = cpu_times();
    let c1 = victim::per_cpu();
    let n1 = victim::threads_ns(&cores.napi);
    let x1 = cores.xdp_prog.and_then(victim::prog_stats);
    let s1 = cores.sink.as_ref().and_then(|s| s.counters().ok());
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
    let achieved = match flood.map(|h| join(h).and_then(|r| r)) {
        Some(Ok(r)) => r.achieved_pps,
        Some(Err(e)) => {
            error = Some(format!("flood: {e}"));
            0.0
        }
        None => 0.0,
    };
    let busy = (t1 - t0).saturating_sub(i1 - i0);
    Cell {
        system: system.into(),
        flood_pps: rate,
        flood_achieved_pps: achieved,
        attempts,
        ok,
        success_pct: 100.0 * ok as f64 / attempts.max(1) as f64,
        cps: ok as f64 / el,
        cpu_pct: 100.0 * busy as f64 / (t1 - t0).max(1) as f64,
        victim_cpu_pct: victim::busy_pct(&c0, &c1, VICTIM_CPU),
        other_cpu_pct: victim::busy_pct(&c0, &c1, OTHER_CPU),
        napi_cpu_pct: 100.0 * (n1 - n0) / (el * 1e9),
        victim_busy_ns_per_s: victim::busy_ns(&c0, &c1, VICTIM_CPU) / el,
        victim_ns_per_flood_pkt: None,
        xdp_ns_per_pkt,
        xdp_packets,
        napi_ns_per_pkt: (!cores.napi.is_empty())
            .then(|| victim::ns_per_packet(n1 - n0, xdp_packets as f64))
            .flatten(),
        sunk_pps,
        error,
    }
}

/// The Linux side of (a) and (b): the stack address on the kernel
/// interface, a route to the flood prefix (so SYN-ACKs need no ARP per
/// spoofed source), tcp_syncookies=1, and an echo-one-byte listener.
fn linux_setup(
    t: &Testbed,
    stop: Arc<AtomicBool>,
    cores: &Cores,
    threads: usize,
) -> Result<std::thread::JoinHandle<Result<()>>> {
    let ns = &t.stack_ns;
    sh(Command::new("ip").args([
        "-n",
        ns,
        "addr",
        "add",
        &format!("{}/24", t.stack_ip),
        "dev",
        &t.stack_if,
    ]))?;
    sh(Command::new("ip").args([
        "-n",
        ns,
        "route",
        "add",
        "198.18.128.0/17",
        "via",
        &t.peer_ip.to_string(),
    ]))?;
    sh(netns_command(ns, "sysctl").args(["-qw", "net.ipv4.tcp_syncookies=1"]))?;
    // One thread per legit client thread, accepting from one listener: a
    // connection whose request is late (SYNPROXY: the client waits for the
    // window update) does not hold up the others.
    let accepted = Arc::new(AtomicU64::new(0));
    let cores = cores.clone();
    let h = in_netns(ns, move || -> Result<()> {
        let l = TcpListener::bind(("0.0.0.0", PORT))?;
        l.set_nonblocking(true)?;
        let workers: Vec<_> = (0..threads.max(1))
            .map(|_| -> Result<_> {
                let l = l.try_clone()?;
                let (stop, accepted, cores) = (stop.clone(), accepted.clone(), cores.clone());
                Ok(std::thread::spawn(move || {
                    cores.pin_here(VICTIM_CPU);
                    while !stop.load(Ordering::Relaxed) {
                        match l.accept() {
                            Ok((mut s, _)) => {
                                accepted.fetch_add(1, Ordering::Relaxed);
                                let _ = s.set_nonblocking(false);
                                let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
                                let mut b = [0u8; 1];
                                if s.read_exact(&mut b).is_ok() {
                                    let _ = s.write_all(&b);
                                }
                            }
                            Err(_) => std::thread::sleep(Duration::from_micros(200)),
                        }
                    }
                }))
            })
            .collect::<Result<_>>()?;
        for w in workers {
            let _ = w.join();
        }
        Ok(())
    });
    Ok(std::thread::spawn(move || join(h).and_then(|r| r)))
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

fn run_system(system: &str, rates: &[u64], a: &SynfloodArgs, n: usize) -> Vec<Cell> {
    let fail = |e: anyhow::Error| {
        rates
            .iter()
            .map(|r| Cell {
                system: system.into(),
                flood_pps: *r,
                flood_achieved_pps: 0.0,
                attempts: 0,
                ok: 0,
                success_pct: 0.0,
                cps: 0.0,
                cpu_pct: 0.0,
                victim_cpu_pct: 0.0,
                other_cpu_pct: 0.0,
                napi_cpu_pct: 0.0,
                victim_busy_ns_per_s: 0.0,
                victim_ns_per_flood_pkt: None,
                xdp_ns_per_pkt: None,
                xdp_packets: 0,
                napi_ns_per_pkt: None,
                sunk_pps: 0.0,
                error: Some(e.to_string()),
            })
            .collect::<Vec<_>>()
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
                s.attach(&peer_if)?;
                Ok(s)
            }))?
            .context("peer-side sink")?;
            cores.sink = Some(Arc::new(sink));
        }
        match system {
            "linux" | "synproxy" => {
                if cores.on {
                    // veth runs NAPI at the stack end only with GRO on
                    // (or an XDP program there).
                    sh(Command::new("ip").args([
                        "netns",
                        "exec",
                        &t.stack_ns,
                        "ethtool",
                        "-K",
                        &t.stack_if,
                        "gro",
                        "on",
                    ]))
                    .context("GRO on at the stack end (install ethtool)")?;
                }
                listener = Some(linux_setup(&t, stop.clone(), &cores, a.clients)?);
                if system == "synproxy" {
                    for kv in SYNPROXY_SYSCTLS {
                        sh(netns_command(&t.stack_ns, "sysctl").args(["-qw", kv]))
                            .context("conntrack (is nf_conntrack available?)")?;
                    }
                    let mut c = netns_command(&t.stack_ns, "nft");
                    c.args(["-f", "-"]).stdin(Stdio::piped());
                    let mut child = c.spawn().context("nft (install nftables)")?;
                    if let Some(mut i) = child.stdin.take() {
                        i.write_all(SYNPROXY_RULES.as_bytes())?;
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
                    .arg(t.stack_ip.to_string())
                    .args(["--port", &PORT.to_string(), "--queues", "1"])
                    .args(["--syncookies", "auto", "--duration", "600"])
                    // The peer runs NAPI (GRO on, and the sink's XDP), so
                    // XDP_TX reaches it: the defense as on a real NIC, not
                    // the engine's AF_XDP detour `auto` takes on veth.
                    .args(["--cookie-path", "xdp"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
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
                let child = cmd.spawn()?;
                _serve = Some(ServeChild(child));
                let up = (0..100).any(|_| {
                    std::thread::sleep(Duration::from_millis(100));
                    crate::runtime::control::query_stats(Some(&t.stack_if)).is_ok()
                });
                if !up {
                    bail!("xstack serve did not start");
                }
            }
            other => bail!("unknown system {other:?}: use linux, synproxy or xstack"),
        }
        cores.xdp_prog = victim::xdp_prog_id(&t.stack_ns, &t.stack_if);
        if cores.on {
            cores.napi = victim::make_threaded(&t.stack_ns, &t.stack_if)?;
            for p in &cores.napi {
                victim::pin(*p, VICTIM_CPU)?;
            }
            for p in victim::make_threaded(&t.peer_ns, &t.peer_if)? {
                victim::pin(p, OTHER_CPU)?;
            }
        }
        Ok(())
    })();
    let mut cells: Vec<Cell> = match setup {
        Ok(()) => rates
            .iter()
            .map(|r| measure(&t, system, *r, a, &cores))
            .collect(),
        Err(e) => fail(e),
    };
    marginal_cost(&mut cells);
    stop.store(true, Ordering::Relaxed);
    if let Some(h) = listener {
        let _ = h.join();
    }
    drop(_serve);
    drop(cores);
    drop(tb);
    cells
}

/// Victim core ns per flood packet: the busy ns/s left after the legit
/// connections' share (their count × the no-flood row's victim ns per
/// connection), over the achieved flood rate. Without a no-flood row the
/// whole busy time is charged to the flood.
fn marginal_cost(cells: &mut [Cell]) {
    let per_conn = cells
        .iter()
        .find(|c| c.flood_pps == 0 && c.error.is_none())
        .and_then(|c| victim::ns_per_packet(c.victim_busy_ns_per_s, c.cps))
        .unwrap_or(0.0);
    for c in cells
        .iter_mut()
        .filter(|c| c.flood_pps > 0 && c.error.is_none())
    {
        c.victim_ns_per_flood_pkt = victim::flood_share_ns(
            c.victim_busy_ns_per_s,
            c.cps,
            per_conn,
            c.flood_achieved_pps,
        );
    }
}

/// The generator's maximum from one core: an unpaced 1 s SYN flood at a
/// testbed with nothing attached (the kernel drops the SYNs).
fn generator_max() -> Result<f64> {
    let name = format!("sg{}", std::process::id() % 10000);
    let tb = TestbedGuard::up(&name, 1)?;
    let c = flood_config(&tb.testbed, 0, 1.0);
    let r = join(in_netns(&tb.testbed.peer_ns, move || {
        crate::tools::flood::run(&c)
    }))??;
    Ok(r.achieved_pps)
}

fn svg(cells: &[Cell], systems: &[String], rates: &[u64]) -> String {
    let (w, h, l, b) = (640.0, 360.0, 60.0, 50.0);
    let maxr = *rates.iter().max().unwrap_or(&1) as f64;
    let x = |r: u64| l + (w - l - 20.0) * r as f64 / maxr.max(1.0);
    let y = |p: f64| h - b - (h - b - 20.0) * p / 100.0;
    let colors = ["#d62728", "#1f77b4", "#2ca02c"];
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<line x1=\"{l}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n<line x1=\"{l}\" y1=\"20\" x2=\"{l}\" y2=\"{}\" stroke=\"black\"/>\n<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">SYN flood rate (pps)</text>\n<text x=\"15\" y=\"{}\" transform=\"rotate(-90 15 {})\" text-anchor=\"middle\">legit connection success %</text>\n",
        h - b, w - 20.0, h - b, h - b, (w + l) / 2.0, h - 10.0, h / 2.0, h / 2.0
    );
    for r in rates {
        s += &format!(
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n",
            x(*r),
            h - b + 15.0,
            r
        );
    }
    for p in [0.0, 50.0, 100.0] {
        s += &format!(
            "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{p}</text>\n",
            l - 5.0,
            y(p) + 4.0
        );
    }
    for (i, sys) in systems.iter().enumerate() {
        let c = colors[i % colors.len()];
        let pts: Vec<String> = cells
            .iter()
            .filter(|k| &k.system == sys && k.error.is_none())
            .map(|k| format!("{:.1},{:.1}", x(k.flood_pps), y(k.success_pct)))
            .collect();
        s += &format!(
            "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"2\" points=\"{}\"/>\n<text x=\"{}\" y=\"{}\" fill=\"{c}\">{sys}</text>\n",
            pts.join(" "),
            w - 120.0,
            30.0 + 15.0 * i as f64
        );
    }
    s + "</svg>\n"
}

fn opt(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.0}")).unwrap_or_else(|| "-".into())
}

fn table(cells: &[Cell]) -> String {
    let mut s = String::from(
        "| system   | flood pps (achieved) | success % | conn/s  | CPU % (machine) | victim CPU % | NAPI % | other CPU % | victim ns/flood pkt | XDP ns/pkt | sunk pps |\n\
         |----------|----------------------|-----------|---------|-----------------|--------------|--------|-------------|---------------------|------------|----------|\n",
    );
    for c in cells {
        s += &match &c.error {
            None => format!(
                "| {:<8} | {:>9} ({:>9.0}) | {:>9.1} | {:>7.0} | {:>15.0} | {:>12.0} | {:>6.0} | {:>11.0} | {:>19} | {:>10} | {:>8.0} |\n",
                c.system,
                c.flood_pps,
                c.flood_achieved_pps,
                c.success_pct,
                c.cps,
                c.cpu_pct,
                c.victim_cpu_pct,
                c.napi_cpu_pct,
                c.other_cpu_pct,
                opt(c.victim_ns_per_flood_pkt),
                opt(c.xdp_ns_per_pkt),
                c.sunk_pps,
            ),
            Some(e) => format!("| {:<8} | {:>9}             | error: {e}\n", c.system, c.flood_pps),
        };
    }
    s
}

/// Per system, at its highest flood rate that leaves the victim core
/// unsaturated (< 90% busy; else its lowest flood rate: a saturated core
/// drops what it cannot take, which would make packets look cheap): ns per
/// flood packet and the flood rate one victim core absorbs (1e9 / ns).
fn summary(cells: &[Cell], systems: &[String]) -> String {
    let mut s = String::from(
        "| system   | at flood pps | victim-core ns/flood pkt | absorbs pps (core) | NAPI ns/pkt | XDP ns/pkt | absorbs pps (XDP) |\n\
         |----------|--------------|--------------------------|--------------------|-------------|------------|-------------------|\n",
    );
    for sys in systems {
        let rows = || {
            cells
                .iter()
                .filter(|c| &c.system == sys && c.error.is_none() && c.flood_pps > 0)
        };
        let Some(c) = rows()
            .filter(|c| c.victim_cpu_pct < 90.0)
            .max_by_key(|c| c.flood_pps)
            .or_else(|| rows().min_by_key(|c| c.flood_pps))
        else {
            continue;
        };
        s += &format!(
            "| {:<8} | {:>12.0} | {:>24} | {:>18} | {:>11} | {:>10} | {:>17} |\n",
            sys,
            c.flood_achieved_pps,
            opt(c.victim_ns_per_flood_pkt),
            opt(c.victim_ns_per_flood_pkt.and_then(victim::absorbs_pps)),
            opt(c.napi_ns_per_pkt),
            opt(c.xdp_ns_per_pkt),
            opt(c.xdp_ns_per_pkt.and_then(victim::absorbs_pps)),
        );
    }
    s
}

/// Runs the experiment, prints the table, writes JSON and SVG.
pub fn run(a: &SynfloodArgs) -> Result<()> {
    crate::runtime::sys::check_privileges("xstack bench synflood")?;
    if !(a.seconds > 0.0 && a.seconds <= 30.0) {
        bail!("--seconds {} is out of range: 0 < s <= 30", a.seconds);
    }
    let gen_max = generator_max()?;
    println!("synflood: flood generator maximum from one core: {gen_max:.0} pps (AF_XDP copy mode, veth)");
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
    let mut cells = Vec::new();
    for (n, s) in a.systems.iter().enumerate() {
        println!("synflood: {s} ...");
        cells.extend(run_system(s, &rates, a, n));
    }
    drop(_stats);
    println!();
    if victim_core {
        println!("victim core: CPU {VICTIM_CPU} runs the stack-side threaded NAPI and the server; CPU {OTHER_CPU} the generator, legit client and peer NAPI");
    } else {
        println!("no victim core (--no-victim-core): veth receive work runs on the sender's CPU");
    }
    print!("{}", table(&cells));
    println!();
    print!("{}", summary(&cells, &a.systems));
    std::fs::create_dir_all(&a.out)?;
    let doc = serde_json::json!({
        "generator_max_pps": gen_max,
        "seconds": a.seconds,
        "clients": a.clients,
        "victim_core": victim_core,
        "cells": cells,
    });
    std::fs::write(
        a.out.join("synflood.json"),
        serde_json::to_string_pretty(&doc)?,
    )?;
    std::fs::write(a.out.join("synflood.svg"), svg(&cells, &a.systems, &rates))?;
    println!(
        "\nwrote {} and {}",
        a.out.join("synflood.json").display(),
        a.out.join("synflood.svg").display()
    );
    Ok(())
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
}
