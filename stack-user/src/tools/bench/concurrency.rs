//! `xstack bench concurrency`: how many kept-alive connections a load
//! generator and a server hold, and what each costs. On a fresh testbed,
//! `xstack load` (over a /24 of client addresses) opens N connections to
//! `xstack serve` at a paced rate, holds them with one request per
//! connection every `--think-time` seconds, then closes them; then the
//! same with Linux on both sides (`xstack load --kernel` → `xstack
//! kserve`) for an N that fits the open-file limit and the client
//! namespace's ports (set to 1024-65535, with `tcp_tw_reuse=1`:
//! [`super::client_sysctls`]; the default range holds 28,232).
//!
//! Memory per connection: for xstack, heap in use (glibc `mallinfo2`)
//! while every connection is held, less the heap before the load, on each
//! side (the server's from `xstack stats`, the load's from its summary);
//! for Linux, the kernel's: the growth of the slab caches a TCP socket and
//! its file use (TCP or TCPv6, sock_inode_cache, filp, dentry, eventpoll_epi,
//! eventpoll_pwq, tcp_bind_bucket, tcp_bind2_bucket) plus the TCP buffer
//! pages of `/proc/net/sockstat`, for both ends of each connection (both
//! are in this kernel), halved for one side. Slab caches are machine-wide:
//! whatever else runs meanwhile counts too.
//!
//! `--family 6` runs both systems over IPv6 (the server on 2001:2::2, the
//! xstack load from 2001:2::1:0/120), `--family both` each over IPv4 and
//! then IPv6: a family column, and per system the IPv6/IPv4 ratio of
//! requests/s held and of the server's bytes per connection.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    io::Read as _,
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::Value;

use super::family::{ratio, Families, Family};
use super::kernel::{bin, pin, start_server, stop_server, Proc};
use crate::tools::testbed::{netns_command, Testbed, TestbedGuard};

/// Options of `xstack bench concurrency`.
#[derive(clap::Args, Debug, Clone)]
pub struct ConcurrencyArgs {
    /// Connections to open and hold (xstack → xstack).
    #[arg(long, default_value_t = 20_000)]
    pub connections: u32,
    /// Connections for Linux → Linux (default: --connections, at most the
    /// open-file limit less 100 and the client's 64,512 ports).
    #[arg(long)]
    pub kernel_connections: Option<u32>,
    /// Connections opened per second.
    #[arg(long, default_value_t = crate::tools::load::DEFAULT_CONNECT_RATE)]
    pub connect_rate: f64,
    /// Seconds to hold every connection once all are open.
    #[arg(long, default_value_t = 15)]
    pub hold: u32,
    /// Seconds between a connection's requests (default: 5, or
    /// connections / 20,000 when that is longer, so that holding N
    /// connections asks for at most 20,000 requests/s: 50 s at 1,000,000).
    #[arg(long)]
    pub think_time: Option<f64>,
    /// AF_XDP ring entries of both xstack ends (UMEM frames: 4×): room
    /// for the frames that arrive while a busy machine pauses a process.
    #[arg(long, default_value_t = 8192)]
    pub ring_size: u32,
    /// Skip the Linux → Linux run.
    #[arg(long)]
    pub no_kernel: bool,
    /// Address family: 4, 6 or both (each system over IPv4, then IPv6).
    #[arg(long, default_value = "4")]
    pub family: Families,
    /// Where to write concurrency.json, the loads' summaries and progress
    /// lines (`concurrency-*-load.{json,log}`) and the xstack server's last
    /// counters (`concurrency-xstack*-serve-stats.json`); IPv6 runs' files
    /// have `-ipv6` after the system.
    #[arg(long, default_value = "target/bench-concurrency")]
    pub out: PathBuf,
}

/// Requests per second the held connections ask for at most when
/// `--think-time` is not given: what one load core sustains on a veth
/// testbed next to the connects (measured: 1,000,000 held at 16,400
/// requests/s with zero errors on this 2-core box).
pub const HOLD_REQUESTS_PER_S: f64 = 20_000.0;

impl ConcurrencyArgs {
    /// Seconds between a connection's requests when holding `n`.
    pub fn think_time_for(&self, n: u32) -> f64 {
        self.think_time
            .unwrap_or_else(|| (f64::from(n) / HOLD_REQUESTS_PER_S).max(5.0))
    }
}

/// One system's run.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Row {
    /// "xstack → xstack" or "Linux → Linux".
    pub system: String,
    /// The address family it ran over.
    pub family: Option<Family>,
    /// Connections asked for.
    pub connections: u64,
    /// Most established at once.
    pub peak_established: u64,
    /// Seconds until all were established at once (null if never).
    pub time_to_full_s: Option<f64>,
    /// Requests answered per second while every connection was held (the
    /// mean of the load's per-second lines at full concurrency).
    pub requests_per_s_holding: f64,
    /// Seconds between a connection's requests.
    pub think_time_s: f64,
    /// Requests answered in all.
    pub requests: u64,
    /// Errors by kind (the load's summary).
    pub errors: BTreeMap<String, u64>,
    /// Request latency p50 / p99 / p99.9, µs.
    pub latency_us: [u64; 3],
    /// Connect latency p50 / p99 / p99.9, µs.
    pub connect_us: [u64; 3],
    /// Bytes per held connection on the server side.
    pub server_bytes_per_conn: Option<u64>,
    /// Bytes per held connection on the load side.
    pub load_bytes_per_conn: Option<u64>,
    /// How the memory was measured.
    pub memory_from: String,
    /// Wall seconds of the run.
    pub wall_s: f64,
}

/// The result: both rows.
#[derive(Clone, Debug, Serialize)]
pub struct Concurrency {
    /// xstack → xstack, then Linux → Linux.
    pub rows: Vec<Row>,
}

/// Runs the benchmark; returns the printed table.
pub fn run(a: &ConcurrencyArgs) -> Result<String> {
    crate::runtime::sys::check_privileges("xstack bench concurrency")?;
    if !(1..=4_000_000).contains(&a.connections) {
        bail!(
            "--connections {} is out of range: use 1 to 4000000",
            a.connections
        );
    }
    if !(a.connect_rate > 0.0 && a.connect_rate.is_finite() && (1..=600).contains(&a.hold)) {
        bail!("--connect-rate must be positive and --hold 1 to 600 seconds");
    }
    if a.think_time.is_some_and(|t| !(t > 0.0 && t <= 600.0)) {
        bail!("--think-time must be more than 0 and at most 600 seconds");
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let mut rows = Vec::new();
    for &f in a.family.list() {
        rows.push(run_one(a, false, a.connections, f)?);
    }
    if !a.no_kernel {
        let limit = nofile_limit().saturating_sub(100) as u32;
        let n = a
            .kernel_connections
            .unwrap_or(a.connections)
            .min(limit)
            .min(super::CLIENT_PORTS);
        for &f in a.family.list() {
            rows.push(run_one(a, true, n, f)?);
        }
    }
    let result = Concurrency { rows };
    std::fs::write(
        a.out.join("concurrency.json"),
        serde_json::to_string_pretty(&result)?,
    )?;
    let mut out = table(&result.rows);
    let _ = writeln!(out, "wrote {}/concurrency.json", a.out.display());
    Ok(out)
}

fn nofile_limit() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } == 0 {
        r.rlim_cur
    } else {
        1024
    }
}

/// Kernel memory a TCP socket and its file use: the slab caches named in
/// the module doc (bytes, machine-wide).
fn slab_bytes() -> u64 {
    const CACHES: [&str; 9] = [
        "TCP",
        "TCPv6",
        "sock_inode_cache",
        "filp",
        "dentry",
        "eventpoll_epi",
        "eventpoll_pwq",
        "tcp_bind_bucket",
        "tcp_bind2_bucket",
    ];
    std::fs::read_to_string("/proc/slabinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() > 3 && CACHES.contains(&f[0]) {
                Some(f[1].parse::<u64>().ok()? * f[3].parse::<u64>().ok()?)
            } else {
                None
            }
        })
        .sum()
}

/// TCP sockets in use (IPv4 and IPv6: `/proc/net/sockstat` TCP `inuse`
/// plus `/proc/net/sockstat6` TCP6 `inuse`) and TCP `mem` (pages, both
/// families) in namespace `ns`.
fn sockstat(ns: &str) -> (u64, u64) {
    let (v4, v6) = crate::tools::testbed::in_netns(ns, || {
        // This thread's namespace (/proc/net is the process's).
        let read = |f: &str| std::fs::read_to_string(format!("/proc/thread-self/net/{f}"));
        (
            read("sockstat").unwrap_or_default(),
            read("sockstat6").unwrap_or_default(),
        )
    });
    let (inuse, mem) = sockstat_fields(&v4, "TCP:");
    let (inuse6, _) = sockstat_fields(&v6, "TCP6:");
    (inuse + inuse6, mem)
}

/// `inuse` and `mem` of the line starting with `tag` (0 when absent).
fn sockstat_fields(text: &str, tag: &str) -> (u64, u64) {
    let line = text.lines().find(|l| l.starts_with(tag)).unwrap_or("");
    let f: Vec<&str> = line.split_whitespace().collect();
    let get = |k: &str| {
        f.iter()
            .position(|x| *x == k)
            .and_then(|i| f.get(i + 1)?.parse().ok())
            .unwrap_or(0)
    };
    (get("inuse"), get("mem"))
}

/// The client addresses of the xstack load: a /24 of IPv4 ones beside the
/// testbed link, or as many IPv6 ones (a /120) on it.
fn load_prefix(family: Family) -> &'static str {
    match family {
        Family::V4 => "198.18.1.0/24",
        Family::V6 => "2001:2::1:0/120",
    }
}

fn run_one(a: &ConcurrencyArgs, kernel: bool, n: u32, family: Family) -> Result<Row> {
    let guard = TestbedGuard::up(&format!("q{}", std::process::id() % 100_000), 1)?;
    let t: Testbed = guard.testbed.clone();
    if kernel {
        // Every unprivileged port for the held connections (one source
        // address, one server port), and TIME_WAIT reuse as in every
        // Linux client of the benchmarks.
        super::client_sysctls(&t.peer_ns).context("the Linux client's namespace")?;
    }
    let server_name = if kernel { "kernel" } else { "xstack" };
    let server = if kernel {
        start_server(&t, server_name, family)?
    } else {
        start_serve(&t, a, family)?
    };
    let exe = bin()?;
    let v6 = if family == Family::V6 { "-ipv6" } else { "" };
    let json = a
        .out
        .join(format!("concurrency-{server_name}{v6}-load.json"));
    let think = a.think_time_for(n);
    let ramp = f64::from(n) / a.connect_rate;
    let duration = ramp + f64::from(a.hold) + 1.0;
    let page = 4096u64;
    let base_heap = crate::runtime::control::query_stats(Some(&t.stack_if))
        .ok()
        .and_then(|s| {
            s.pointer("/memory/heap_in_use_bytes")
                .and_then(Value::as_u64)
        });
    let base_slab = slab_bytes();
    let base_mem = sockstat(&t.stack_ns).1 + sockstat(&t.peer_ns).1;
    let mut cmd = netns_command(&t.peer_ns, exe.to_str().unwrap_or("xstack"));
    pin(&mut cmd, 0).arg("load");
    if kernel {
        cmd.args(["--kernel"]);
    } else {
        cmd.args(["--iface", &t.peer_if, "--ip", load_prefix(family)])
            .args(["--ring-size", &a.ring_size.to_string()])
            .args(["--frames", &(4 * a.ring_size).to_string()]);
    }
    cmd.args(["--target", &family.target(&t, 80).to_string(), "--http"])
        .args(["--concurrency", &n.to_string()])
        .args(["--requests-per-conn", "1000000000"])
        .args(["--connect-rate", &a.connect_rate.to_string()])
        .args(["--think-time", &think.to_string()])
        .args(["--duration", &format!("{duration:.1}")])
        .arg("--json")
        .arg(&json)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut load = cmd.spawn().context("spawning xstack load")?;
    // The progress lines, read on a thread (they must not fill the pipe).
    let mut err = load.stderr.take().context("load stderr")?;
    let lines = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let bound = Duration::from_secs_f64(duration + think + 60.0);
    // The memory sample taken at the most connections held: (count,
    // heap or slab bytes, sockstat pages).
    let mut held: Option<(u64, u64, u64)> = None;
    let mut next = Instant::now();
    while load.try_wait()?.is_none() {
        if started.elapsed() > bound {
            let _ = load.kill();
            break;
        }
        if Instant::now() >= next {
            next += Duration::from_millis(250);
            let most = held.map_or(0, |h| h.0);
            if kernel {
                // Server-side sockets: the listener and one per connection.
                let (inuse, mem) = sockstat(&t.stack_ns);
                let conns = inuse.saturating_sub(1);
                if conns > most {
                    held = Some((conns, slab_bytes(), mem + sockstat(&t.peer_ns).1));
                }
            } else if let Ok(s) = crate::runtime::control::query_stats(Some(&t.stack_if)) {
                let conns = s
                    .pointer("/states/ESTABLISHED")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                if conns > most {
                    let heap = s
                        .pointer("/memory/heap_in_use_bytes")
                        .and_then(Value::as_u64)
                        .unwrap_or(0);
                    held = Some((conns, heap, 0));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = load.wait();
    let wall_s = started.elapsed().as_secs_f64();
    let progress = lines.join().unwrap_or_default();
    // The load's per-second lines and the server's last counters, kept
    // next to the JSON: where a run went wrong (ring drops, retransmits,
    // the second the established count turned) is read from them.
    let _ = std::fs::write(
        a.out
            .join(format!("concurrency-{server_name}{v6}-load.log")),
        &progress,
    );
    if !kernel {
        if let Ok(stats) = crate::runtime::control::query_stats(Some(&t.stack_if)) {
            let _ = std::fs::write(
                a.out
                    .join(format!("concurrency-xstack{v6}-serve-stats.json")),
                serde_json::to_vec_pretty(&stats).unwrap_or_default(),
            );
        }
    }
    stop_server(&t, server_name, family, server)?;
    drop(guard);
    let v: Value = serde_json::from_slice(
        &std::fs::read(&json).with_context(|| format!("the load wrote no {}", json.display()))?,
    )?;
    let u = |p: &str| v.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    let n64 = u64::from(n);
    let (server_b, load_b, memory_from) = match (kernel, held) {
        (true, Some((conns, slab, mem))) => {
            let both = slab.saturating_sub(base_slab) + mem.saturating_sub(base_mem) * page;
            let side = both / conns.max(1) / 2;
            (
                Some(side),
                Some(side),
                format!("the kernel's slab (TCP/TCPv6, sock_inode_cache, filp, dentry, eventpoll, bind buckets) + sockstat TCP mem pages, growth at {conns} server sockets, both ends / 2"),
            )
        }
        (false, Some((conns, heap, _))) => (
            base_heap.map(|b| heap.saturating_sub(b) / conns.max(1)),
            Some(u("/heap_bytes_per_connection")).filter(|b| *b > 0),
            format!("heap in use (mallinfo2), growth at {conns} established (server; the load at its own peak)"),
        ),
        _ => (None, None, "no connection held".to_string()),
    };
    let holding: Vec<f64> = progress
        .lines()
        .filter(|l| l.contains(&format!("established {n:>7} ")))
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let i = f.iter().position(|x| *x == "req/s")?;
            f.get(i + 1)?.parse().ok()
        })
        .collect();
    let mut errors = BTreeMap::new();
    for k in ["refused", "reset", "timeout", "connect_timeout", "other"] {
        errors.insert(k.to_string(), u(&format!("/errors/{k}")));
    }
    Ok(Row {
        system: if kernel {
            "Linux → Linux".into()
        } else {
            "xstack → xstack".into()
        },
        family: Some(family),
        connections: n64,
        peak_established: u("/peak_established"),
        time_to_full_s: v["time_to_full_concurrency_s"].as_f64(),
        requests_per_s_holding: if holding.is_empty() {
            0.0
        } else {
            holding.iter().sum::<f64>() / holding.len() as f64
        },
        think_time_s: think,
        requests: u("/requests"),
        errors,
        latency_us: [
            u("/latency_us/p50"),
            u("/latency_us/p99"),
            u("/latency_us/p999"),
        ],
        connect_us: [
            u("/connect_latency_us/p50"),
            u("/connect_latency_us/p99"),
            u("/connect_latency_us/p999"),
        ],
        server_bytes_per_conn: server_b,
        load_bytes_per_conn: load_b,
        memory_from,
        wall_s,
    })
}

/// `xstack serve` with the built-in HTTP app (64-byte bodies) in the
/// stack namespace, on CPU 1 as in `xstack bench`, not spinning (held
/// connections are mostly idle), with `--ring-size` rings.
fn start_serve(t: &Testbed, a: &ConcurrencyArgs, family: Family) -> Result<Proc> {
    let exe = bin()?;
    let p = Proc::spawn(
        pin(
            &mut netns_command(&t.stack_ns, exe.to_str().unwrap_or("xstack")),
            1,
        )
        .args(["serve", "--iface", &t.stack_if, "--ip"])
        .arg(family.stack_ip(t).to_string())
        .args(["--port", "80", "--app", "http", "--response-bytes", "64"])
        .args(["--ring-size", &a.ring_size.to_string()])
        .args(["--frames", &(4 * a.ring_size).to_string()])
        // A known-flow table that holds every connection: should a burst
        // of SYNs switch `auto` cookies on, no held flow is taken for a
        // forged cookie ACK.
        .args(["--xdp-max-flows", &flow_table(a.connections).to_string()]),
    )?;
    for _ in 0..100 {
        if crate::runtime::control::query_stats(Some(&t.stack_if)).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(p)
}

/// Entries of the server's XDP known-flow table for `n` held
/// connections: 5/4 of them, at least the default.
fn flow_table(n: u32) -> u32 {
    (n.saturating_add(n / 4)).max(stack_ebpf::MAX_FLOWS)
}

fn table(rows: &[Row]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{:<16} {:<6} {:>9} {:>9} {:>8} {:>9} {:>22} {:>20} {:>16} {:>9} {:>9}",
        "system",
        "family",
        "conns",
        "peak est",
        "full s",
        "req/s",
        "latency p50/p99/p99.9",
        "connect p50/p99 µs",
        "errors",
        "srv B/c",
        "load B/c"
    );
    let opt = |b: Option<u64>| b.map_or("-".to_string(), |b| b.to_string());
    for r in rows {
        let errs: u64 = r.errors.values().sum();
        let _ = writeln!(
            s,
            "{:<16} {:<6} {:>9} {:>9} {:>8} {:>9.0} {:>22} {:>20} {:>16} {:>9} {:>9}",
            r.system,
            r.family.map_or("-", Family::label),
            r.connections,
            r.peak_established,
            r.time_to_full_s.map_or("-".into(), |t| format!("{t:.1}")),
            r.requests_per_s_holding,
            format!(
                "{}/{}/{}",
                r.latency_us[0], r.latency_us[1], r.latency_us[2]
            ),
            format!("{}/{}", r.connect_us[0], r.connect_us[1]),
            if errs == 0 {
                "0".to_string()
            } else {
                r.errors
                    .iter()
                    .filter(|(_, v)| **v > 0)
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            opt(r.server_bytes_per_conn),
            opt(r.load_bytes_per_conn),
        );
    }
    for r in rows {
        let _ = writeln!(
            s,
            "  {} ({}): memory from {}",
            r.system,
            r.family.map_or("-", Family::label),
            r.memory_from
        );
    }
    let mut systems: Vec<&str> = Vec::new();
    for r in rows {
        if !systems.contains(&r.system.as_str()) {
            systems.push(&r.system);
        }
    }
    for sys in systems {
        let of = |f: Family| rows.iter().find(|r| r.system == sys && r.family == Some(f));
        if let (Some(v4), Some(v6)) = (of(Family::V4), of(Family::V6)) {
            let b = |r: &Row| r.server_bytes_per_conn.unwrap_or(0) as f64;
            let _ = writeln!(
                s,
                "{sys}: IPv6 / IPv4 req/s held = {}, server B/conn = {}",
                ratio(v6.requests_per_s_holding, v4.requests_per_s_holding),
                ratio(b(v6), b(v4))
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(system: &str, family: Family, rps: f64, bytes: u64) -> Row {
        Row {
            system: system.into(),
            family: Some(family),
            connections: 100,
            requests_per_s_holding: rps,
            server_bytes_per_conn: Some(bytes),
            ..Row::default()
        }
    }

    #[test]
    fn the_server_flow_table_holds_every_connection() {
        assert_eq!(flow_table(20_000), stack_ebpf::MAX_FLOWS);
        assert_eq!(flow_table(1_000_000), 1_250_000);
    }

    #[test]
    fn think_time_defaults_to_five_seconds_or_connections_over_20000_requests_per_second() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            a: ConcurrencyArgs,
        }
        let a = Cli::parse_from(["x"]).a;
        assert_eq!(a.think_time_for(20_000), 5.0);
        assert_eq!(a.think_time_for(100_000), 5.0);
        assert_eq!(a.think_time_for(1_000_000), 50.0);
        let a = Cli::parse_from(["x", "--think-time", "2"]).a;
        assert_eq!(a.think_time_for(1_000_000), 2.0);
    }

    #[test]
    fn concurrency_table_has_a_family_column_and_ipv6_over_ipv4_per_system() {
        let rows = [
            row("xstack → xstack", Family::V4, 1000.0, 2000),
            row("xstack → xstack", Family::V6, 980.0, 2100),
            row("Linux → Linux", Family::V4, 900.0, 5000),
        ];
        let t = table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("system           family "), "{t}");
        assert!(lines[1].starts_with("xstack → xstack  IPv4 "), "{t}");
        assert!(lines[2].starts_with("xstack → xstack  IPv6 "), "{t}");
        assert!(
            t.contains("xstack → xstack: IPv6 / IPv4 req/s held = 0.98×, server B/conn = 1.05×\n"),
            "{t}"
        );
        // Linux ran over one family only: no ratio line for it.
        assert!(!t.contains("Linux → Linux: IPv6"), "{t}");
        assert_eq!(load_prefix(Family::V6), "2001:2::1:0/120");
    }

    #[test]
    fn sockstat_counts_tcp_and_tcp6_sockets() {
        let v4 = "sockets: used 10\nTCP: inuse 3 orphan 0 tw 0 alloc 5 mem 7\nUDP: inuse 0 mem 0\n";
        let v6 = "TCP6: inuse 101\nUDP6: inuse 0\n";
        assert_eq!(sockstat_fields(v4, "TCP:"), (3, 7));
        assert_eq!(sockstat_fields(v6, "TCP6:"), (101, 0));
        assert_eq!(sockstat_fields("", "TCP6:"), (0, 0));
    }
}
