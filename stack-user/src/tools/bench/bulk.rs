//! `xstack bench bulk` (run by `cargo xtask bench`): bulk TCP throughput on the testbed, in one
//! run: Linux → Linux, Linux → xstack engine, xstack engine → Linux, each for
//! the same bounded time over the same veth pair (MTU 1500, TSO/GSO and TX
//! checksum offload off on both ends, as the testbed sets them). Prints
//! Gbit/s and the ratio to Linux → Linux.

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::Result;

use crate::{
    apps::App,
    runtime::stack::{Stack, StackConfig},
    tcp::TcpError,
    tools::testbed::{in_netns, Testbed, TestbedGuard},
};

const PORT: u16 = 5001;
const CLIENT_PORT: u16 = 40100;

/// A discard server on `ip:PORT` in `ns`; returns bytes received.
fn linux_sink(
    ns: &str,
    ip: Ipv4Addr,
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
fn linux_source(ns: &str, ip: Ipv4Addr, secs: f64) -> (u64, f64) {
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

fn stack_config(t: &Testbed, listen: Vec<u16>, client: Vec<u16>) -> StackConfig {
    StackConfig {
        iface: t.stack_if.clone(),
        ip: t.stack_ip,
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

/// One direction of `xstack bench bulk`, as written to bulk.json.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BulkRow {
    /// "linux-linux", "linux-xstack" or "xstack-linux".
    pub direction: &'static str,
    /// Bytes received.
    pub bytes: u64,
    /// Seconds the sender ran.
    pub seconds: f64,
    /// Throughput.
    pub gbit_s: f64,
    /// Throughput over Linux → Linux's.
    pub vs_linux: f64,
}

/// Runs the three directions for `secs` seconds each (clamped to 1..=60),
/// prints the table and writes `OUT/bulk.json`.
pub fn run(secs: f64, out: &std::path::Path) -> Result<()> {
    let secs = secs.clamp(1.0, 60.0);
    crate::runtime::sys::check_privileges("xstack bench bulk")?;
    let tb = TestbedGuard::up(&format!("u{}", std::process::id() % 100_000), 1)?;
    let t = tb.testbed.clone();
    println!(
        "bulk-bench: testbed {} (1 queue, MTU 1500, no TSO/GSO), {secs} s per direction",
        t.name
    );

    // (a) Linux → Linux: the stack address on the kernel interface for this run.
    let cidr = format!("{}/24", t.stack_ip);
    let ip_addr = |op: &str| {
        std::process::Command::new("ip")
            .args(["-n", &t.stack_ns, "addr", op, &cidr, "dev", &t.stack_if])
            .status()
            .expect("ip addr")
            .success()
    };
    assert!(ip_addr("add"));
    let (ready, sink) = linux_sink(&t.stack_ns, t.stack_ip);
    ready.recv_timeout(Duration::from_secs(5)).unwrap();
    let (_w, el_a) = linux_source(&t.peer_ns, t.stack_ip, secs);
    let got_a = sink.join().unwrap();
    assert!(ip_addr("del"));
    std::thread::sleep(Duration::from_millis(200));

    // (b) Linux → xstack (discard app), the engine polled in its own thread.
    let stop = Arc::new(AtomicBool::new(false));
    let (cfg, ns, stop2) = (
        stack_config(&t, vec![PORT], vec![]),
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
    up_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let (_w, el_b) = linux_source(&t.peer_ns, t.stack_ip, secs);
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let got_b = engine.join().unwrap();

    // (c) xstack → Linux.
    let (ready, sink) = linux_sink(&t.peer_ns, t.peer_ip);
    ready.recv_timeout(Duration::from_secs(5)).unwrap();
    let (cfg, ns, peer_ip) = (
        stack_config(&t, vec![], vec![CLIENT_PORT]),
        t.stack_ns.clone(),
        t.peer_ip,
    );
    let (sent_c, el_c) = in_netns(&ns, move || {
        let mut st = Stack::open(&cfg).expect("stack");
        let now = st.now();
        let ip = cfg.ip;
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
    let got_c = sink.join().unwrap();
    assert_eq!(
        got_c, sent_c,
        "the Linux sink must receive every byte queued"
    );

    let a = gbit(got_a, el_a);
    let b = gbit(got_b, el_b);
    let c = gbit(got_c, el_c);
    println!();
    println!("| direction                 | Gbit/s | vs Linux → Linux |");
    println!("|---------------------------|--------|------------------|");
    println!("| Linux → Linux (kernel)    | {a:>6.2} | {:>16.2} |", 1.0);
    println!("| Linux → xstack engine     | {b:>6.2} | {:>16.2} |", b / a);
    println!("| xstack engine → Linux     | {c:>6.2} | {:>16.2} |", c / a);
    let row = |direction, bytes, seconds, gbit_s: f64| BulkRow {
        direction,
        bytes,
        seconds,
        gbit_s,
        vs_linux: gbit_s / a,
    };
    let rows = [
        row("linux-linux", got_a, el_a, a),
        row("linux-xstack", got_b, el_b, b),
        row("xstack-linux", got_c, el_c, c),
    ];
    let json = super::write_json(
        out,
        "bulk.json",
        &serde_json::json!({ "seconds": secs, "mtu": 1500, "rows": rows }),
    )?;
    println!("wrote {}", json.display());
    Ok(())
}
