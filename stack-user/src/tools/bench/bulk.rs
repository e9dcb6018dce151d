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

/// One direction over one family, as written to bulk.json.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
struct Row {
    /// "Linux → Linux (kernel)", "Linux → xstack engine" or "xstack engine → Linux".
    direction: &'static str,
    /// IPv4 or IPv6.
    family: Family,
    /// Throughput.
    #[serde(rename = "gbit_s")]
    gbit: f64,
}

const PORT: u16 = 5001;
const CLIENT_PORT: u16 = 40100;

/// A discard server on `ip:PORT` in `ns`; returns bytes received.
fn linux_sink(
    ns: &str,
    ip: IpAddr,
) -> (std::sync::mpsc::Receiver<()>, std::thread::JoinHandle<u64>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let ns = ns.to_string();
    let h = std::thread::spawn(move || {
        in_netns(&ns, move || {
            let l = TcpListener::bind((ip, PORT)).expect("bind sink");
            tx.send(()).unwrap();
            let (mut c, _) = l.accept().expect("accept");
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

/// A Linux client in `ns` writing to `ip:PORT` for `secs`; returns
/// (bytes written, seconds).
fn linux_source(ns: &str, ip: IpAddr, secs: f64) -> (u64, f64) {
    in_netns(ns, move || {
        let mut s = TcpStream::connect((ip, PORT)).expect("connect");
        let buf = vec![0x5au8; 1 << 20];
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
        let _ = s.shutdown(std::net::Shutdown::Write);
        (total, el)
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

/// Runs the three directions over each family of `families` for `secs`
/// seconds each (clamped to 1..=60), prints the table and writes
/// `OUT/bulk.json`.
pub fn run(secs: f64, families: Families, out: &std::path::Path) -> Result<()> {
    let secs = secs.clamp(1.0, 60.0);
    crate::runtime::sys::check_privileges("xstack bench bulk")?;
    let tb = TestbedGuard::up(&format!("u{}", std::process::id() % 100_000), 1)?;
    let t = tb.testbed.clone();
    println!(
        "bulk-bench: testbed {} (1 queue, MTU 1500, no TSO/GSO), {secs} s per direction, --family {families}",
        t.name
    );
    let mut rows = Vec::new();
    for &f in families.list() {
        let [a, b, c] = directions(&t, f, secs)?;
        for (direction, gbit) in DIRECTIONS.into_iter().zip([a, b, c]) {
            rows.push(Row {
                direction,
                family: f,
                gbit,
            });
        }
    }
    println!();
    print!("{}", table(&rows));
    let json = super::write_json(out, "bulk.json", &rows)?;
    println!("wrote {}", json.display());
    Ok(())
}

/// Gbit/s of the three directions over `family`.
fn directions(t: &Testbed, family: Family, secs: f64) -> Result<[f64; 3]> {
    let (stack_ip, peer_ip) = (family.stack_ip(t), family.peer_ip(t));
    // (a) Linux → Linux: the stack address on the kernel interface for this run.
    kernel_stack_addr(t, family, true)?;
    let (ready, sink) = linux_sink(&t.stack_ns, stack_ip);
    ready
        .recv_timeout(Duration::from_secs(5))
        .context("the Linux sink did not start")?;
    let (_w, el_a) = linux_source(&t.peer_ns, stack_ip, secs);
    let got_a = sink.join().unwrap_or(0);
    kernel_stack_addr(t, family, false)?;
    std::thread::sleep(Duration::from_millis(200));

    // (b) Linux → xstack (discard app), the engine polled in its own thread.
    let stop = Arc::new(AtomicBool::new(false));
    let (cfg, ns, stop2) = (
        stack_config(t, family, vec![PORT], vec![]),
        t.stack_ns.clone(),
        stop.clone(),
    );
    let (up_tx, up_rx) = std::sync::mpsc::channel();
    let engine = std::thread::spawn(move || {
        in_netns(&ns, move || {
            let mut st = Stack::open(&cfg).expect("stack");
            up_tx.send(()).unwrap();
            while !stop2.load(Ordering::Relaxed) {
                st.poll();
            }
            st.engine().stats().app_bytes_in
        })
    });
    up_rx
        .recv_timeout(Duration::from_secs(10))
        .context("the xstack engine did not come up")?;
    let (_w, el_b) = linux_source(&t.peer_ns, stack_ip, secs);
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let got_b = engine.join().unwrap_or(0);

    // (c) xstack → Linux.
    let (ready, sink) = linux_sink(&t.peer_ns, peer_ip);
    ready
        .recv_timeout(Duration::from_secs(5))
        .context("the Linux sink did not start")?;
    let (cfg, ns) = (
        stack_config(t, family, vec![], vec![CLIENT_PORT]),
        t.stack_ns.clone(),
    );
    let (sent_c, el_c) = in_netns(&ns, move || {
        let mut st = Stack::open(&cfg).expect("stack");
        let now = st.now();
        let ip = st.addr_for(peer_ip).expect("an address of the family");
        let c = st
            .engine()
            .connect(now, ip, CLIENT_PORT, peer_ip, PORT)
            .expect("connect");
        let buf = vec![0xa5u8; 256 * 1024];
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
                Err(e) => panic!("write: {e}"),
            }
        }
        let el = start.elapsed().as_secs_f64();
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
        (total, el)
    });
    let got_c = sink.join().unwrap_or(0);
    if got_c != sent_c {
        bail!("{family}: the Linux sink received {got_c} of the {sent_c} bytes the engine queued");
    }
    Ok([gbit(got_a, el_a), gbit(got_b, el_b), gbit(got_c, el_c)])
}

/// The table: one line per direction and family (each IPv6 line after its
/// IPv4 line when both ran), the ratio to Linux → Linux of the same
/// family, and with both families the IPv6/IPv4 ratio of each direction.
fn table(rows: &[Row]) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| direction                 | family | Gbit/s | vs Linux → Linux |"
    );
    let _ = writeln!(
        s,
        "|---------------------------|--------|--------|------------------|"
    );
    let mut order: Vec<&Row> = rows.iter().collect();
    order.sort_by_key(|r| (DIRECTIONS.iter().position(|d| *d == r.direction), r.family));
    let of = |d: &str, f: Family| {
        rows.iter()
            .find(|r| r.direction == d && r.family == f)
            .map_or(0.0, |r| r.gbit)
    };
    for r in order {
        let base = of(DIRECTIONS[0], r.family);
        let _ = writeln!(
            s,
            "| {:<25} | {:<6} | {:>6.2} | {:>16.2} |",
            r.direction,
            r.family.label(),
            r.gbit,
            if base > 0.0 { r.gbit / base } else { 0.0 }
        );
    }
    let both = [Family::V4, Family::V6]
        .iter()
        .all(|f| rows.iter().any(|r| r.family == *f));
    if both {
        let parts: Vec<String> = DIRECTIONS
            .iter()
            .map(|d| format!("{} {d}", ratio(of(d, Family::V6), of(d, Family::V4))))
            .collect();
        let _ = writeln!(s, "bulk: IPv6 / IPv4 Gbit/s = {}", parts.join(", "));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bulk_table_puts_each_ipv6_direction_after_its_ipv4_one_with_ratios() {
        let mut rows = Vec::new();
        for (f, g) in [
            (Family::V4, [10.0, 8.0, 6.0]),
            (Family::V6, [9.0, 8.0, 6.6]),
        ] {
            for (d, v) in DIRECTIONS.into_iter().zip(g) {
                rows.push(Row {
                    direction: d,
                    family: f,
                    gbit: v,
                });
            }
        }
        let t = table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[2],
            "| Linux → Linux (kernel)    | IPv4   |  10.00 |             1.00 |"
        );
        assert_eq!(
            lines[3],
            "| Linux → Linux (kernel)    | IPv6   |   9.00 |             1.00 |"
        );
        assert_eq!(
            lines[5],
            "| Linux → xstack engine     | IPv6   |   8.00 |             0.89 |"
        );
        assert_eq!(
            lines[8],
            "bulk: IPv6 / IPv4 Gbit/s = 0.90× Linux → Linux (kernel), 1.00× Linux → xstack engine, 1.10× xstack engine → Linux"
        );
        // One family: no line between families.
        let t4 = table(&rows[..3]);
        assert_eq!(t4.lines().count(), 5, "{t4}");
        assert!(!t4.contains("IPv6 / IPv4"), "{t4}");
    }
}
