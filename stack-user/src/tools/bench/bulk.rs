//! `xstack bench bulk` (run by `cargo xtask bench`): bulk TCP throughput on the testbed, in one
//! run: Linux → Linux, Linux → xstack engine, xstack engine → Linux, each for
//! the same bounded time over the same veth pair (MTU 1500, TSO/GSO and TX
//! checksum offload off on both ends, as the testbed sets them). Prints
//! Gbit/s and the ratio to Linux → Linux; with `--family 6` over IPv6
//! (2001:2::/48), with `--family both` each direction over IPv4 and then
//! IPv6, a family column, and the IPv6/IPv4 ratio of each direction.

use std::{
    io::{Read, Write},
    net::{IpAddr, Ipv4Addr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use super::family::{kernel_stack_addr, ratio, Families, Family};
use super::victim::{self, CpuUse, Meter, RX_CPU, TX_CPU};

use crate::{
    apps::App,
    runtime::stack::{Stack, StackConfig},
    tcp::TcpError,
    tools::testbed::{in_netns, Testbed, TestbedGuard},
};

/// The three directions, in the order they run.
const DIRECTIONS: [&str; 3] = [
    "Linux → Linux (kernel)",
    "Linux → xstack engine",
    "xstack engine → Linux",
];
const LL: usize = 0;
const LX: usize = 1;
const XL: usize = 2;

/// `--receiver-gro`: GRO at the Linux receiver, for the rows that have
/// one (Linux → Linux, xstack engine → Linux).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ReceiverGro {
    /// GRO off at every receiver: the same offload settings on both
    /// sides (MTU 1500, no TSO/GSO, no GRO).
    #[default]
    Off,
    /// GRO on at the Linux receiver (the default on real NICs).
    On,
    /// The GRO-off rows, then the GRO-on ones.
    Both,
}

impl std::fmt::Display for ReceiverGro {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ReceiverGro::Off => "off",
            ReceiverGro::On => "on",
            ReceiverGro::Both => "both",
        })
    }
}

/// The rows to run, in order, as (family, direction index, GRO at the
/// receiver): per family, the three directions with GRO off; then, with
/// `on` or `both`, Linux → Linux and xstack engine → Linux with GRO on at
/// the Linux receiver. Linux → xstack engine has no Linux receiver: it
/// runs once, GRO off at its veth end (XDP_REDIRECT to AF_XDP never
/// meets GRO).
fn plan(families: Families, gro: ReceiverGro) -> Vec<(Family, usize, bool)> {
    let mut rows = Vec::new();
    for &f in families.list() {
        if gro != ReceiverGro::On {
            rows.extend([(f, LL, false), (f, LX, false), (f, XL, false)]);
        }
        if gro != ReceiverGro::Off {
            rows.push((f, LL, true));
            if gro == ReceiverGro::On {
                rows.push((f, LX, false));
            }
            rows.push((f, XL, true));
        }
    }
    rows
}

/// One direction over one family, as written to bulk.json.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
struct Row {
    /// "Linux → Linux (kernel)", "Linux → xstack engine" or "xstack engine → Linux".
    direction: &'static str,
    /// IPv4 or IPv6.
    family: Family,
    /// GRO on at the receiving veth end.
    receiver_gro: bool,
    /// Throughput.
    #[serde(rename = "gbit_s")]
    gbit: f64,
    /// Busy % of each CPU while sending (CPU 0 = the receiver core).
    cpu_busy_pct: Vec<f64>,
    /// CPU % of the receiving end's `napi/*` thread (receiver core only).
    rx_napi_cpu_pct: Option<f64>,
    /// CPU % of the receiving thread (the Linux sink's, or the engine's).
    rx_app_cpu_pct: f64,
    /// CPU % of the sending end's `napi/*` thread (receiver core only).
    tx_napi_cpu_pct: Option<f64>,
    /// CPU % of the sending thread.
    tx_app_cpu_pct: f64,
    /// Frames the sending veth end dropped because the receiving end's
    /// ring was full (the receiver's NAPI or backlog did not keep up).
    ring_drops: u64,
}

const PORT: u16 = 5001;
const CLIENT_PORT: u16 = 40100;

/// A discard server on `ip:PORT` in `ns`, on CPU `cpu` if given;
/// announces its thread id when listening and returns bytes received.
fn linux_sink(
    ns: &str,
    ip: IpAddr,
    cpu: Option<usize>,
) -> (std::sync::mpsc::Receiver<i32>, std::thread::JoinHandle<u64>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let ns = ns.to_string();
    let h = std::thread::spawn(move || {
        in_netns(&ns, move || {
            if let Some(c) = cpu {
                let _ = victim::pin(0, c);
            }
            let Ok(l) = TcpListener::bind((ip, PORT)) else {
                return 0;
            };
            let _ = tx.send(victim::tid());
            let Ok((mut c, _)) = l.accept() else {
                return 0;
            };
            let mut buf = vec![0u8; 1 << 20];
            let mut total = 0u64;
            loop {
                match c.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => total += n as u64,
                }
            }
            total
        })
    });
    (rx, h)
}

/// A Linux client in `ns` writing to `ip:PORT` for `secs`, on CPU `cpu`
/// if given, with a [`Meter`] over `groups` and its own thread (last)
/// while it writes; returns (bytes written, seconds, CPU use).
fn linux_source(
    ns: &str,
    ip: IpAddr,
    secs: f64,
    cpu: Option<usize>,
    mut groups: Vec<Vec<i32>>,
) -> Result<(u64, f64, CpuUse)> {
    in_netns(ns, move || {
        if let Some(c) = cpu {
            let _ = victim::pin(0, c);
        }
        groups.push(vec![victim::tid()]);
        let mut s = TcpStream::connect((ip, PORT)).context("connect to the sink")?;
        // Bounded even when the receiver stops reading (a zero window).
        s.set_write_timeout(Some(Duration::from_secs(2)))?;
        let buf = vec![0x5au8; 1 << 20];
        let m = Meter::start(groups);
        let start = Instant::now();
        let end = start + Duration::from_secs_f64(secs);
        let mut total = 0u64;
        while Instant::now() < end {
            match s.write(&buf) {
                Ok(n) => total += n as u64,
                Err(_) => break,
            }
        }
        let el = start.elapsed().as_secs_f64();
        let usage = m.stop();
        let _ = s.shutdown(std::net::Shutdown::Write);
        Ok((total, el, usage))
    })
}

fn stack_config(t: &Testbed, family: Family, listen: Vec<u16>, client: Vec<u16>) -> StackConfig {
    let (ip, ip6) = match family {
        Family::V4 => (t.stack_ip, Vec::new()),
        Family::V6 => (Ipv4Addr::UNSPECIFIED, vec![t.stack_ip6]),
    };
    StackConfig {
        iface: t.stack_if.clone(),
        ip,
        ip6,
        listen,
        client_ports: client,
        app: App::Discard,
        response_bytes: 0,
        tcp: Default::default(),
        xsk: Default::default(),
        ..Default::default()
    }
}

fn gbit(bytes: u64, secs: f64) -> f64 {
    bytes as f64 * 8.0 / secs / 1e9
}

/// The arrangement line of the table header.
fn arrangement(receiver_core: bool) -> String {
    if receiver_core {
        format!("receiver core: CPU {RX_CPU} runs the receiving veth end's threaded NAPI (a Linux receiver with GRO off: a pass-through XDP program; xstack: its XDP program) and the receiver; CPU {TX_CPU} the sender and its end's NAPI")
    } else {
        "no receiver core (--no-receiver-core): no threaded NAPI, no pinning; the receive work runs on the sender's CPU".into()
    }
}

/// Runs the rows of [`plan`] for `secs` seconds each (clamped to
/// 1..=60), each on a testbed of its own, under the receiver core unless
/// `receiver_core` is false; prints the table and writes `OUT/bulk.json`.
pub fn run(
    secs: f64,
    families: Families,
    gro: ReceiverGro,
    receiver_core: bool,
    out: &std::path::Path,
) -> Result<()> {
    let secs = secs.clamp(1.0, 60.0);
    crate::runtime::sys::check_privileges("xstack bench bulk")?;
    if receiver_core && std::thread::available_parallelism()?.get() < 2 {
        bail!("the receiver core needs 2 CPUs: run with --no-receiver-core");
    }
    println!(
        "bulk-bench: 1 queue, MTU 1500, no TSO/GSO, {secs} s per row, each row on a fresh testbed, --family {families}, --receiver-gro {gro}"
    );
    println!("{}", arrangement(receiver_core));
    let base = std::process::id() % 10_000;
    let mut rows = Vec::new();
    for (n, (f, dir, g)) in plan(families, gro).into_iter().enumerate() {
        rows.push(
            run_row(&format!("u{base}{n}"), f, dir, g, secs, receiver_core).with_context(|| {
                format!(
                    "{} over {} with GRO {} at the receiver",
                    DIRECTIONS[dir],
                    f.label(),
                    if g { "on" } else { "off" }
                )
            })?,
        );
    }
    println!();
    print!("{}", table(&rows));
    let json = super::write_json(
        out,
        "bulk.json",
        &serde_json::json!({
            "seconds": secs,
            "receiver_core": receiver_core,
            "arrangement": arrangement(receiver_core),
            "rows": rows,
        }),
    )?;
    println!("wrote {}", json.display());
    Ok(())
}

/// The NAPI threads a row made, by side.
#[derive(Default)]
struct Napi {
    rx: Vec<i32>,
    tx: Vec<i32>,
}

/// One row on a testbed of its own (removed afterwards, its NAPI threads
/// waited for).
fn run_row(
    name: &str,
    family: Family,
    dir: usize,
    gro: bool,
    secs: f64,
    receiver_core: bool,
) -> Result<Row> {
    let tb = TestbedGuard::up(name, 1)?;
    let t = tb.testbed.clone();
    let mut napi = Napi::default();
    let mut sink = None;
    let result = (|| -> Result<Row> {
        // The receiving end and the sending end of the veth.
        let (rx_end, tx_end) = match dir {
            XL => (
                (t.peer_ns.clone(), t.peer_if.clone()),
                (t.stack_ns.clone(), t.stack_if.clone()),
            ),
            _ => (
                (t.stack_ns.clone(), t.stack_if.clone()),
                (t.peer_ns.clone(), t.peer_if.clone()),
            ),
        };
        if dir != LX {
            victim::set_gro(&rx_end.0, &rx_end.1, gro)?;
            if receiver_core && !gro {
                sink = Some(super::rx::pass_through(&rx_end.0, &rx_end.1)?);
            }
        }
        // Once both ends run NAPI (the engine's XDP attached): each end's
        // NAPI threaded, on its side's CPU.
        let arrange = |napi: &mut Napi| -> Result<()> {
            if receiver_core {
                napi.rx = victim::thread_napi(&rx_end.0, &rx_end.1, RX_CPU)?;
                napi.tx = victim::thread_napi(&tx_end.0, &tx_end.1, TX_CPU)?;
            }
            Ok(())
        };
        let cpu = |c: usize| receiver_core.then_some(c);
        let drops0 = victim::tx_dropped(&tx_end.0, &tx_end.1);
        let (got, el, usage) = match dir {
            LL => {
                let stack_ip = family.stack_ip(&t);
                kernel_stack_addr(&t, family, true)?;
                arrange(&mut napi)?;
                let (ready, h) = linux_sink(&t.stack_ns, stack_ip, cpu(RX_CPU));
                let tid = ready
                    .recv_timeout(Duration::from_secs(5))
                    .context("the Linux sink did not start")?;
                let groups = vec![napi.rx.clone(), vec![tid], napi.tx.clone()];
                let (_, el, usage) = linux_source(&t.peer_ns, stack_ip, secs, cpu(TX_CPU), groups)?;
                (h.join().unwrap_or(0), el, usage)
            }
            LX => {
                let stack_ip = family.stack_ip(&t);
                let stop = Arc::new(AtomicBool::new(false));
                let (cfg, ns, stop2) = (
                    stack_config(&t, family, vec![PORT], vec![]),
                    t.stack_ns.clone(),
                    stop.clone(),
                );
                let (up_tx, up_rx) = std::sync::mpsc::channel();
                let rx_cpu = cpu(RX_CPU);
                let engine = std::thread::spawn(move || {
                    in_netns(&ns, move || -> Result<u64> {
                        if let Some(c) = rx_cpu {
                            let _ = victim::pin(0, c);
                        }
                        let mut st = Stack::open(&cfg)?;
                        let _ = up_tx.send(victim::tid());
                        while !stop2.load(Ordering::Relaxed) {
                            st.poll();
                        }
                        Ok(st.engine().stats().app_bytes_in)
                    })
                });
                let Ok(tid) = up_rx.recv_timeout(Duration::from_secs(10)) else {
                    let e = engine.join();
                    bail!("the xstack engine did not come up: {e:?}");
                };
                let run = (|| {
                    arrange(&mut napi)?;
                    let groups = vec![napi.rx.clone(), vec![tid], napi.tx.clone()];
                    linux_source(&t.peer_ns, stack_ip, secs, cpu(TX_CPU), groups)
                })();
                std::thread::sleep(Duration::from_millis(300));
                stop.store(true, Ordering::Relaxed);
                let got = engine
                    .join()
                    .map_err(|_| anyhow::anyhow!("the engine thread panicked"))??;
                let (_, el, usage) = run?;
                (got, el, usage)
            }
            _ => {
                let peer_ip = family.peer_ip(&t);
                let (ready, h) = linux_sink(&t.peer_ns, peer_ip, cpu(RX_CPU));
                let tid = ready
                    .recv_timeout(Duration::from_secs(5))
                    .context("the Linux sink did not start")?;
                let (up_tx, up_rx) = std::sync::mpsc::channel();
                let (go_tx, go_rx) = std::sync::mpsc::channel::<Vec<Vec<i32>>>();
                let (cfg, ns) = (
                    stack_config(&t, family, vec![], vec![CLIENT_PORT]),
                    t.stack_ns.clone(),
                );
                let tx_cpu = cpu(TX_CPU);
                let sender = std::thread::spawn(move || {
                    in_netns(&ns, move || {
                        xstack_source(cfg, peer_ip, secs, tx_cpu, up_tx, go_rx)
                    })
                });
                if up_rx.recv_timeout(Duration::from_secs(10)).is_err() {
                    let e = sender.join();
                    bail!("the xstack engine did not come up: {e:?}");
                }
                let armed = arrange(&mut napi);
                if armed.is_ok() {
                    let _ = go_tx.send(vec![napi.rx.clone(), vec![tid], napi.tx.clone()]);
                }
                drop(go_tx);
                let sent = sender
                    .join()
                    .map_err(|_| anyhow::anyhow!("the engine thread panicked"))?;
                armed?;
                let (sent, el, usage) = sent?;
                let got = h.join().unwrap_or(0);
                if got != sent {
                    bail!("{family}: the Linux sink received {got} of the {sent} bytes the engine queued");
                }
                (got, el, usage)
            }
        };
        let g = |i: usize| usage.threads_pct.get(i).copied().unwrap_or(0.0);
        Ok(Row {
            direction: DIRECTIONS[dir],
            family,
            receiver_gro: gro,
            gbit: gbit(got, el),
            cpu_busy_pct: usage.cpu_busy_pct.clone(),
            rx_napi_cpu_pct: receiver_core.then(|| g(0)),
            rx_app_cpu_pct: g(1),
            tx_napi_cpu_pct: receiver_core.then(|| g(2)),
            tx_app_cpu_pct: g(3),
            ring_drops: victim::tx_dropped(&tx_end.0, &tx_end.1).saturating_sub(drops0),
        })
    })();
    drop(sink);
    drop(tb);
    victim::wait_napi_gone(&[napi.rx, napi.tx].concat(), "bulk-bench");
    result
}

/// The xstack engine as the sender: opens the stack, says so on `up`,
/// waits for the meter's thread groups on `go` (the NAPI threads are
/// arranged meanwhile), connects and writes for `secs`; returns (bytes
/// queued, seconds, CPU use with its own thread last).
fn xstack_source(
    cfg: StackConfig,
    peer_ip: IpAddr,
    secs: f64,
    cpu: Option<usize>,
    up: std::sync::mpsc::Sender<()>,
    go: std::sync::mpsc::Receiver<Vec<Vec<i32>>>,
) -> Result<(u64, f64, CpuUse)> {
    if let Some(c) = cpu {
        let _ = victim::pin(0, c);
    }
    let mut st = Stack::open(&cfg)?;
    let _ = up.send(());
    let mut groups = go
        .recv_timeout(Duration::from_secs(10))
        .context("the NAPI threads were not arranged")?;
    groups.push(vec![victim::tid()]);
    let now = st.now();
    let ip = st.addr_for(peer_ip).context("an address of the family")?;
    let c = st
        .engine()
        .connect(now, ip, CLIENT_PORT, peer_ip, PORT)
        .map_err(|e| anyhow::anyhow!("connect: {e}"))?;
    let buf = vec![0xa5u8; 256 * 1024];
    let m = Meter::start(groups);
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    let mut total = 0u64;
    // One clock read per round, shared by the loop's end test and the
    // engine's round (two reads per round were 7% of this loop's
    // profile).
    loop {
        let wall = Instant::now();
        if wall >= end {
            break;
        }
        let now = st.clock_at(wall);
        st.round_at(now);
        match st.engine().tcp().write(c, &buf) {
            Ok(n) => total += n as u64,
            Err(TcpError::WouldBlock) => {}
            Err(e) => bail!("write: {e}"),
        }
    }
    let el = start.elapsed().as_secs_f64();
    let usage = m.stop();
    let _ = st.engine().tcp().shutdown(c);
    let drain = Instant::now() + Duration::from_secs(5);
    while Instant::now() < drain
        && st
            .engine()
            .tcp()
            .state(c)
            .is_ok_and(|s| s != crate::tcp::State::TimeWait)
    {
        st.poll();
    }
    Ok((total, el, usage))
}

/// The table: the GRO-off rows, then the GRO-on ones; in each, one line
/// per direction and family (each IPv6 line after its IPv4 line when both
/// ran), the ratio to Linux → Linux of the same family and GRO setting,
/// and each side's CPU; then the IPv6/IPv4 ratio of each direction (both
/// families) and the GRO on/off ratio of each direction with a Linux
/// receiver (both settings).
fn table(rows: &[Row]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| direction                 | family | GRO at rx | Gbit/s | vs Linux → Linux | CPU0 % | CPU1 % | rx NAPI % | rx app % | tx NAPI % | tx app % | ring drops |"
    );
    let _ = writeln!(
        s,
        "|---------------------------|--------|-----------|--------|------------------|--------|--------|-----------|----------|-----------|----------|------------|"
    );
    let pos = |d: &str| DIRECTIONS.iter().position(|x| *x == d);
    let mut order: Vec<&Row> = rows.iter().collect();
    order.sort_by_key(|r| (r.receiver_gro, pos(r.direction), r.family));
    let of = |d: &str, f: Family, g: bool| {
        rows.iter()
            .find(|r| r.direction == d && r.family == f && r.receiver_gro == g)
            .map(|r| r.gbit)
    };
    let opt = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.0}"));
    for r in order {
        // Linux → xstack runs once (GRO off); alone with `on` it is
        // compared with the GRO-on Linux → Linux row.
        let base = of(DIRECTIONS[LL], r.family, r.receiver_gro)
            .or_else(|| of(DIRECTIONS[LL], r.family, !r.receiver_gro))
            .unwrap_or(0.0);
        let cpu = |c: usize| r.cpu_busy_pct.get(c).copied().unwrap_or(0.0);
        let _ = writeln!(
            s,
            "| {:<25} | {:<6} | {:<9} | {:>6.2} | {:>16.2} | {:>6.0} | {:>6.0} | {:>9} | {:>8.0} | {:>9} | {:>8.0} | {:>10} |",
            r.direction,
            r.family.label(),
            if r.receiver_gro { "on" } else { "off" },
            r.gbit,
            if base > 0.0 { r.gbit / base } else { 0.0 },
            cpu(0),
            cpu(1),
            opt(r.rx_napi_cpu_pct),
            r.rx_app_cpu_pct,
            opt(r.tx_napi_cpu_pct),
            r.tx_app_cpu_pct,
            r.ring_drops,
        );
    }
    for g in [false, true] {
        let parts: Vec<String> = DIRECTIONS
            .iter()
            .filter_map(|d| {
                let (v6, v4) = (of(d, Family::V6, g)?, of(d, Family::V4, g)?);
                Some(format!("{} {d}", ratio(v6, v4)))
            })
            .collect();
        if !parts.is_empty() {
            let _ = writeln!(
                s,
                "bulk: IPv6 / IPv4 Gbit/s = {}{}",
                parts.join(", "),
                if g { " (GRO on)" } else { "" }
            );
        }
    }
    for f in [Family::V4, Family::V6] {
        let parts: Vec<String> = [DIRECTIONS[LL], DIRECTIONS[XL]]
            .iter()
            .filter_map(|d| {
                let (on, off) = (of(d, f, true)?, of(d, f, false)?);
                Some(format!("{} {d}", ratio(on, off)))
            })
            .collect();
        if !parts.is_empty() {
            let _ = writeln!(
                s,
                "bulk: GRO on / off at the Linux receiver ({}) = {}",
                f.label(),
                parts.join(", ")
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(dir: usize, family: Family, receiver_gro: bool, gbit: f64) -> Row {
        Row {
            direction: DIRECTIONS[dir],
            family,
            receiver_gro,
            gbit,
            cpu_busy_pct: vec![90.0, 40.0],
            rx_napi_cpu_pct: Some(35.0),
            rx_app_cpu_pct: 50.0,
            tx_napi_cpu_pct: None,
            tx_app_cpu_pct: 30.0,
            ring_drops: 0,
        }
    }

    #[test]
    fn bulk_table_puts_each_ipv6_direction_after_its_ipv4_one_with_ratios() {
        let mut rows = Vec::new();
        for (f, g) in [
            (Family::V4, [10.0, 8.0, 6.0]),
            (Family::V6, [9.0, 8.0, 6.6]),
        ] {
            for (d, v) in g.into_iter().enumerate() {
                rows.push(row(d, f, false, v));
            }
        }
        let t = table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[2],
            "| Linux → Linux (kernel)    | IPv4   | off       |  10.00 |             1.00 |     90 |     40 |        35 |       50 |         - |       30 |          0 |"
        );
        assert!(
            lines[3].starts_with(
                "| Linux → Linux (kernel)    | IPv6   | off       |   9.00 |             1.00 |"
            ),
            "{t}"
        );
        assert!(
            lines[5].starts_with(
                "| Linux → xstack engine     | IPv6   | off       |   8.00 |             0.89 |"
            ),
            "{t}"
        );
        assert_eq!(
            lines[8],
            "bulk: IPv6 / IPv4 Gbit/s = 0.90× Linux → Linux (kernel), 1.00× Linux → xstack engine, 1.10× xstack engine → Linux"
        );
        assert_eq!(lines.len(), 9, "{t}");
        // One family: no line between families.
        let t4 = table(&rows[..3]);
        assert_eq!(t4.lines().count(), 5, "{t4}");
        assert!(!t4.contains("IPv6 / IPv4"), "{t4}");
    }

    #[test]
    fn receiver_gro_rows_come_only_for_directions_with_a_linux_receiver() {
        use Family::*;
        assert_eq!(
            plan(Families::V4, ReceiverGro::Off),
            vec![(V4, LL, false), (V4, LX, false), (V4, XL, false)]
        );
        assert_eq!(
            plan(Families::V4, ReceiverGro::Both),
            vec![
                (V4, LL, false),
                (V4, LX, false),
                (V4, XL, false),
                (V4, LL, true),
                (V4, XL, true)
            ]
        );
        // `on` alone still runs Linux → xstack (GRO off: it has no Linux
        // receiver), so every direction has a row.
        assert_eq!(
            plan(Families::V6, ReceiverGro::On),
            vec![(V6, LL, true), (V6, LX, false), (V6, XL, true)]
        );
        assert_eq!(plan(Families::Both, ReceiverGro::Both).len(), 10);
    }

    #[test]
    fn gro_on_rows_are_compared_with_linux_to_linux_with_gro_on_and_with_their_gro_off_row() {
        let rows = vec![
            row(LL, Family::V4, false, 3.0),
            row(LX, Family::V4, false, 2.4),
            row(XL, Family::V4, false, 1.5),
            row(LL, Family::V4, true, 6.0),
            row(XL, Family::V4, true, 3.0),
        ];
        let t = table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        // GRO-off rows first, then the GRO-on ones.
        assert!(
            lines[4].starts_with(
                "| xstack engine → Linux     | IPv4   | off       |   1.50 |             0.50 |"
            ),
            "{t}"
        );
        assert!(
            lines[5].starts_with(
                "| Linux → Linux (kernel)    | IPv4   | on        |   6.00 |             1.00 |"
            ),
            "{t}"
        );
        assert!(
            lines[6].starts_with(
                "| xstack engine → Linux     | IPv4   | on        |   3.00 |             0.50 |"
            ),
            "{t}"
        );
        assert_eq!(
            lines[7],
            "bulk: GRO on / off at the Linux receiver (IPv4) = 2.00× Linux → Linux (kernel), 2.00× xstack engine → Linux"
        );
        assert_eq!(lines.len(), 8, "{t}");
        // `on` alone: Linux → xstack against the GRO-on Linux → Linux.
        let on = table(&[rows[3].clone(), rows[1].clone(), rows[4].clone()]);
        assert!(
            on.contains(
                "| Linux → xstack engine     | IPv4   | off       |   2.40 |             0.40 |"
            ),
            "{on}"
        );
    }
}
