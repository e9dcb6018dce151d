//! `xstack bench rx` (run by `cargo xtask bench`): packets per second one AF_XDP socket receives on the
//! testbed in copy mode, next to what the Linux stack receives of the same
//! traffic, in one run.
//!
//! Sender: one thread in the peer namespace transmitting pre-built 60-byte
//! ICMP echo-reply frames (198.18.0.1 → 198.18.0.2, 1024 identifiers, valid
//! checksums) through an AF_XDP socket in copy mode on the peer veth, as fast
//! as it can, for a bounded time. Echo replies need no answer, so this
//! measures reception alone. Receiver (a): `xstack serve --queues 1
//! --busy-poll --xsk-mode copy`, counted by the engine after it parsed and
//! checksummed each frame. Receiver (b): the Linux stack with 198.18.0.2
//! configured on the same veth, counted by `Icmp: InEchoReps`.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::kernel::{bin, Proc};
use crate::{
    datapath::xsk::{XskConfig, XskMode, XskSocket},
    tools::testbed::{
        in_netns, netns_command, Testbed, TestbedGuard, PEER_IP, PEER_MAC, STACK_IP, STACK_MAC,
    },
    wire::{
        ethernet::{EthernetRepr, ETHERTYPE_IPV4},
        icmp::{self, IcmpRepr},
        ipv4::{Ipv4Repr, PROTO_ICMP},
    },
};

const PORT: u16 = 8080;

fn echo_reply_frame(id: u16) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    EthernetRepr {
        dst: STACK_MAC,
        src: PEER_MAC,
        ethertype: ETHERTYPE_IPV4,
    }
    .emit(&mut f)
    .expect("eth");
    Ipv4Repr {
        src: PEER_IP,
        dst: STACK_IP,
        protocol: PROTO_ICMP,
        ttl: 64,
        tos: 0,
        ident: id,
        dont_frag: true,
        payload_len: 26,
    }
    .emit(&mut f[14..])
    .expect("ip");
    let data = [0x78u8; 18];
    IcmpRepr {
        kind: icmp::ECHO_REPLY,
        code: 0,
        rest: [(id >> 8) as u8, id as u8, 0, 1],
        data: &data,
    }
    .emit(&mut f[34..])
    .expect("icmp");
    f
}

/// Transmits SYN frames on `iface` (in the calling thread's namespace) for
/// `secs`; returns (frames sent, seconds).
fn blast(iface: &str, secs: f64) -> (u64, f64) {
    let frames: Vec<Vec<u8>> = (0..1024u16).map(echo_reply_frame).collect();
    let mut sock = XskSocket::open(
        iface,
        0,
        &XskConfig {
            frames: 4096,
            ring_size: 2048,
            mode: XskMode::Copy,
            ..XskConfig::default()
        },
    )
    .expect("sender AF_XDP socket");
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(secs);
    let mut i = 0usize;
    while Instant::now() < end {
        sock.complete();
        sock.transmit_with(|tx| {
            for _ in 0..64 {
                let f = &frames[i % frames.len()];
                let ok = tx.send(|buf| {
                    buf[..f.len()].copy_from_slice(f);
                    f.len()
                });
                if !ok {
                    break;
                }
                i += 1;
            }
        });
    }
    let elapsed = start.elapsed().as_secs_f64();
    // Let the ring drain before counting.
    let drain = Instant::now() + Duration::from_millis(500);
    while sock.tx_in_flight() > 0 && Instant::now() < drain {
        sock.complete();
        std::thread::sleep(Duration::from_millis(5));
    }
    (sock.tx_completed(), elapsed)
}

fn icmp_in_echo_reps(ns: &str) -> u64 {
    let out = netns_command(ns, "cat")
        .arg("/proc/net/snmp")
        .output()
        .expect("read snmp");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut tcp = text.lines().filter(|l| l.starts_with("Icmp:"));
    let (Some(h), Some(v)) = (tcp.next(), tcp.next()) else {
        return 0;
    };
    h.split_whitespace()
        .zip(v.split_whitespace())
        .find(|(k, _)| *k == "InEchoReps")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// Reads a counter at a JSON pointer as u64 (0 when absent).
fn counter(v: &serde_json::Value, pointer: &str) -> u64 {
    v.pointer(pointer).and_then(|x| x.as_u64()).unwrap_or(0)
}

/// `xstack serve` in the stack namespace, as the end-to-end tests start it,
/// with its counters read over the control socket.
struct Serve {
    proc: Option<Proc>,
    iface: String,
}

impl Serve {
    fn start(t: &Testbed, port: u16, extra: &[&str]) -> Result<Serve> {
        let exe = bin()?;
        let proc = Proc::spawn(
            netns_command(&t.stack_ns, exe.to_str().unwrap_or("xstack"))
                .args([
                    "serve",
                    "--iface",
                    &t.stack_if,
                    "--ip",
                    &t.stack_ip.to_string(),
                ])
                .args(["--port", &port.to_string(), "--duration", "120"])
                .args(extra),
        )?;
        let s = Serve {
            proc: Some(proc),
            iface: t.stack_if.clone(),
        };
        for _ in 0..200 {
            if s.try_stats().is_some() {
                return Ok(s);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        anyhow::bail!("xstack serve on {} did not start", t.stack_if)
    }

    fn try_stats(&self) -> Option<serde_json::Value> {
        crate::runtime::control::query_stats(Some(&self.iface)).ok()
    }

    fn stats(&self) -> Result<serde_json::Value> {
        crate::runtime::control::query_stats(Some(&self.iface)).context("reading serve's counters")
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(p) = self.proc.take() {
            p.stop();
        }
    }
}

/// Runs both receivers for `secs` seconds (clamped to 1..=60), prints
/// the table and writes `OUT/rx.json`.
pub fn run(secs: f64, out: &std::path::Path) -> Result<()> {
    let secs = secs.clamp(1.0, 60.0);
    crate::runtime::sys::check_privileges("xstack bench rx")?;
    let tb = TestbedGuard::up(&format!("r{}", std::process::id() % 100_000), 1)?;
    let t = tb.testbed.clone();
    println!(
        "rx-bench: testbed {} (1 queue), sender = 1 thread, AF_XDP copy-mode TX on {} (peer), {} s per run",
        t.name, t.peer_if, secs
    );

    // (a) xstack: one AF_XDP socket in copy mode.
    let serve = Serve::start(
        &t,
        PORT,
        &["--queues", "1", "--busy-poll", "--xsk-mode", "copy"],
    )?;
    let before = serve.stats()?;
    let peer_if = t.peer_if.clone();
    let (sent_a, el_a) = in_netns(&t.peer_ns, move || blast(&peer_if, secs));
    std::thread::sleep(Duration::from_millis(300));
    let after = serve.stats()?;
    drop(serve);
    let d = |p: &str| counter(&after, p) - counter(&before, p);
    let rx_a = d("/engine/rx_frames");
    let icmp_a = d("/engine/icmp_other");
    let xdp_a = d("/xdp/rx_packets");
    let ring_full = d("/per_queue/0/kernel/rx_ring_full");
    let fill_empty = d("/per_queue/0/kernel/rx_fill_ring_empty");
    let kdrop = d("/per_queue/0/kernel/rx_dropped");

    // (b) the Linux stack on the same veth, same traffic.
    let cidr = format!("{}/24", STACK_IP);
    let ok = std::process::Command::new("ip")
        .args(["-n", &t.stack_ns, "addr", "add", &cidr, "dev", &t.stack_if])
        .status()
        .expect("ip addr add")
        .success();
    assert!(ok, "cannot add {cidr} to {}", t.stack_if);
    let in0 = icmp_in_echo_reps(&t.stack_ns);
    let peer_if = t.peer_if.clone();
    let (sent_b, el_b) = in_netns(&t.peer_ns, move || blast(&peer_if, secs));
    std::thread::sleep(Duration::from_millis(300));
    let rx_b = icmp_in_echo_reps(&t.stack_ns) - in0;

    let pps = |n: u64, s: f64| n as f64 / s;
    println!();
    println!(
        "| receiver                         | sent (pps)  | received (pps) | received / sent |"
    );
    println!(
        "|----------------------------------|-------------|----------------|-----------------|"
    );
    println!(
        "| xstack, 1 AF_XDP socket, copy    | {:>11.0} | {:>14.0} | {:>15.3} |",
        pps(sent_a, el_a),
        pps(rx_a, el_a),
        rx_a as f64 / sent_a.max(1) as f64
    );
    println!(
        "| Linux stack (Icmp InEchoReps)    | {:>11.0} | {:>14.0} | {:>15.3} |",
        pps(sent_b, el_b),
        pps(rx_b, el_b),
        rx_b as f64 / sent_b.max(1) as f64
    );
    println!();
    println!(
        "ratio xstack/kernel received pps: {:.2}",
        pps(rx_a, el_a) / pps(rx_b, el_b).max(1.0)
    );
    println!(
        "xstack detail: xdp rx_packets {xdp_a}, engine rx_frames {rx_a} (icmp echo replies parsed {icmp_a}), kernel AF_XDP rx_ring_full {ring_full}, fill_ring_empty {fill_empty}, rx_dropped {kdrop}"
    );
    let json = super::write_json(
        out,
        "rx.json",
        &serde_json::json!({
            "seconds": secs,
            "xstack": {
                "sent_pps": pps(sent_a, el_a),
                "received_pps": pps(rx_a, el_a),
                "xdp_rx_packets": xdp_a,
                "rx_frames": rx_a,
                "rx_ring_full": ring_full,
                "fill_ring_empty": fill_empty,
                "rx_dropped": kdrop,
            },
            "linux": { "sent_pps": pps(sent_b, el_b), "received_pps": pps(rx_b, el_b) },
            "ratio": pps(rx_a, el_a) / pps(rx_b, el_b).max(1.0),
        }),
    )?;
    println!("wrote {}", json.display());
    Ok(())
}
