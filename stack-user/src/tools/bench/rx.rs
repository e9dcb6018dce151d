//! `xstack bench rx` (run by `cargo xtask bench`): packets per second one AF_XDP socket receives on the
//! testbed in copy mode, next to what the Linux stack receives of the same
//! traffic, in one run.
//!
//! Sender: one thread in the peer namespace transmitting pre-built 60-byte
//! ICMP echo-reply frames (198.18.0.1 → 198.18.0.2, 1024 identifiers, valid
//! checksums) through an AF_XDP socket in copy mode on the peer veth, as fast
//! as it can, for a bounded time. Echo replies need no answer, so this
//! measures reception alone. Receiver (a): `xstack serve --queues 1
//! --xsk-mode copy` (see [`serve_args`] for the rest), counted by the
//! engine after it parsed and checksummed each frame. Receiver (b): the Linux stack with 198.18.0.2
//! configured on the same veth, counted by `Icmp: InEchoReps`. Each
//! receiver runs on a testbed of its own.
//!
//! The receiver core (unless `--no-receiver-core`): a NIC does its receive
//! work on the receiver's side, but veth does it on the sender's CPU
//! unless the receiving end's NAPI runs threaded. So the stack end's NAPI
//! runs threaded (xstack's XDP program gives it NAPI; for Linux the
//! pass-through XDP program, GRO staying off) and that `napi/*` thread
//! and the receiver are pinned to CPU 0, the sender (and the peer end's
//! NAPI) to CPU 1: the receiver pays for everything it receives, the
//! generator only for sending, identically for both receivers. The table
//! gives each side's CPU so the reader sees which side is the limit.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::kernel::{bin, Proc};
use super::victim::{self, CpuUse, Meter, RX_CPU, TX_CPU};
use crate::{
    datapath::sink::XdpSink,
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

/// Transmits the echo-reply frames on `iface` (in the calling thread's
/// namespace) for `secs`, on CPU `cpu` if given, with `meter` (thread
/// groups) measuring the sending; returns (frames sent, seconds, CPU use
/// with the sender's own thread as the last group).
fn blast(
    iface: &str,
    secs: f64,
    cpu: Option<usize>,
    mut meter: Vec<Vec<i32>>,
) -> (u64, f64, CpuUse) {
    if let Some(c) = cpu {
        let _ = victim::pin(0, c);
    }
    meter.push(vec![victim::tid()]);
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
    let m = Meter::start(meter);
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
    let cpu = m.stop();
    // Let the ring drain before counting.
    let drain = Instant::now() + Duration::from_millis(500);
    while sock.tx_in_flight() > 0 && Instant::now() < drain {
        sock.complete();
        std::thread::sleep(Duration::from_millis(5));
    }
    (sock.tx_completed(), elapsed, cpu)
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
    fn start(t: &Testbed, port: u16, extra: &[&str], cpu: Option<usize>) -> Result<Serve> {
        let exe = bin()?;
        let mut cmd = netns_command(&t.stack_ns, exe.to_str().unwrap_or("xstack"));
        if let Some(c) = cpu {
            super::kernel::pin(&mut cmd, c);
        }
        let proc = Proc::spawn(
            cmd.args([
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

/// One receiver's run.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
struct RxRow {
    /// Frames the sender completed, per second.
    sent_pps: f64,
    /// Frames the receiver counted, per second.
    received_pps: f64,
    /// Busy % of CPU 0 (receiver core) and CPU 1 while sending.
    cpu_busy_pct: Vec<f64>,
    /// CPU % of the receiving end's `napi/*` thread (receiver core only).
    rx_napi_cpu_pct: Option<f64>,
    /// CPU % of the receiving process (xstack serve; none for Linux,
    /// whose receive work is all in NAPI or softirq).
    rx_app_cpu_pct: Option<f64>,
    /// CPU % of the sending thread.
    tx_cpu_pct: f64,
    /// Frames the pass-through XDP program passed (Linux, receiver core).
    xdp_passed: Option<u64>,
    /// Frames the peer end dropped because the stack end's receive ring
    /// was full (its NAPI or backlog did not keep up).
    ring_drops: u64,
}

/// `xstack serve`'s arguments. Under the receiver core the server shares
/// its CPU with the NAPI thread that feeds it: it sleeps in poll() when
/// idle instead of spinning (`--busy-poll` took half the core from that
/// thread: 0.30-0.43× Linux and 82k-281k `fill_ring_empty` in 3 s), and
/// its rings hold 8192 frames (16384 UMEM frames) so a scheduling delay of
/// a few ms does not empty the fill ring (with the default 2048: 83k-546k
/// `fill_ring_empty` in 3 s; with 8192: 0-5.6k). Without the receiver
/// core, the arguments the bench always had.
fn serve_args(receiver_core: bool) -> &'static [&'static str] {
    if receiver_core {
        &[
            "--queues",
            "1",
            "--xsk-mode",
            "copy",
            "--frames",
            "16384",
            "--ring-size",
            "8192",
        ]
    } else {
        &["--queues", "1", "--busy-poll", "--xsk-mode", "copy"]
    }
}

/// The arrangement line of the table header.
fn arrangement(receiver_core: bool) -> String {
    if receiver_core {
        format!("receiver core: CPU {RX_CPU} runs the stack end's threaded NAPI (xstack: its XDP program; Linux: a pass-through XDP program, GRO off) and the receiver; CPU {TX_CPU} the sender and the peer end's NAPI")
    } else {
        "no receiver core (--no-receiver-core): no threaded NAPI, no pinning; the receive work runs on the sender's CPU".into()
    }
}

/// The table: one line per receiver with each side's CPU.
fn table(a: &RxRow, b: &RxRow) -> String {
    use std::fmt::Write as _;
    let opt = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.0}"));
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| receiver                         | sent (pps)  | received (pps) | received / sent | CPU0 % | CPU1 % | rx NAPI % | rx app % | sender % | ring drops |"
    );
    let _ = writeln!(
        s,
        "|----------------------------------|-------------|----------------|-----------------|--------|--------|-----------|----------|----------|------------|"
    );
    for (name, r) in [
        ("xstack, 1 AF_XDP socket, copy", a),
        ("Linux stack (Icmp InEchoReps)", b),
    ] {
        let cpu = |c: usize| r.cpu_busy_pct.get(c).copied().unwrap_or(0.0);
        let _ = writeln!(
            s,
            "| {name:<32} | {:>11.0} | {:>14.0} | {:>15.3} | {:>6.0} | {:>6.0} | {:>9} | {:>8} | {:>8.0} | {:>10} |",
            r.sent_pps,
            r.received_pps,
            r.received_pps / r.sent_pps.max(1.0),
            cpu(0),
            cpu(1),
            opt(r.rx_napi_cpu_pct),
            opt(r.rx_app_cpu_pct),
            r.tx_cpu_pct,
            r.ring_drops,
        );
    }
    s
}

/// Runs both receivers for `secs` seconds (clamped to 1..=60), each on a
/// testbed of its own, under the receiver core unless `receiver_core` is
/// false; prints the table and writes `OUT/rx.json`.
pub fn run(secs: f64, receiver_core: bool, out: &std::path::Path) -> Result<()> {
    let secs = secs.clamp(1.0, 60.0);
    crate::runtime::sys::check_privileges("xstack bench rx")?;
    if receiver_core && std::thread::available_parallelism()?.get() < 2 {
        anyhow::bail!("the receiver core needs 2 CPUs: run with --no-receiver-core");
    }
    let base = std::process::id() % 10_000;
    println!(
        "rx-bench: 1 queue, sender = 1 thread, AF_XDP copy-mode TX on the peer end, {secs} s per receiver, each on a fresh testbed"
    );
    println!("{}", arrangement(receiver_core));
    println!("xstack serve {}", serve_args(receiver_core).join(" "));

    // (a) xstack: one AF_XDP socket in copy mode.
    let (a, detail) = xstack_row(&format!("r{base}a"), secs, receiver_core)?;
    // (b) the Linux stack on the same kind of veth, same traffic.
    let b = linux_row(&format!("r{base}b"), secs, receiver_core)?;

    println!();
    print!("{}", table(&a, &b));
    println!();
    let ratio = a.received_pps / b.received_pps.max(1.0);
    println!("ratio xstack/kernel received pps: {ratio:.2}");
    println!("{detail}");
    if let Some(p) = b.xdp_passed {
        println!("linux detail: pass-through XDP program passed {p} frames");
    }
    let json = super::write_json(
        out,
        "rx.json",
        &serde_json::json!({
            "seconds": secs,
            "receiver_core": receiver_core,
            "arrangement": arrangement(receiver_core),
            "xstack_serve_args": serve_args(receiver_core).join(" "),
            "xstack": a,
            "linux": b,
            "ratio": ratio,
        }),
    )?;
    println!("wrote {}", json.display());
    Ok(())
}

/// Threads the peer end's NAPI (GRO is on there on the testbed) onto the
/// sender's CPU, and the stack end's onto the receiver's.
fn thread_both(t: &Testbed) -> Result<(Vec<i32>, Vec<i32>)> {
    let rx = victim::thread_napi(&t.stack_ns, &t.stack_if, RX_CPU)?;
    let tx = victim::thread_napi(&t.peer_ns, &t.peer_if, TX_CPU)?;
    Ok((rx, tx))
}

/// xstack serve receiving on a testbed of its own; returns its row and
/// the detail line (XDP and AF_XDP counters).
fn xstack_row(name: &str, secs: f64, receiver_core: bool) -> Result<(RxRow, String)> {
    let tb = TestbedGuard::up(name, 1)?;
    let t = tb.testbed.clone();
    let mut napi = (Vec::new(), Vec::new());
    let result = (|| -> Result<(RxRow, String)> {
        let serve = Serve::start(
            &t,
            PORT,
            serve_args(receiver_core),
            receiver_core.then_some(RX_CPU),
        )?;
        let pid = serve.proc.as_ref().map_or(0, |p| p.id());
        if receiver_core {
            napi = thread_both(&t)?;
        }
        let before = serve.stats()?;
        let drops0 = victim::tx_dropped(&t.peer_ns, &t.peer_if);
        let peer_if = t.peer_if.clone();
        let groups = vec![napi.0.clone(), vec![pid]];
        let cpu = receiver_core.then_some(TX_CPU);
        let (sent, el, usage) = in_netns(&t.peer_ns, move || blast(&peer_if, secs, cpu, groups));
        std::thread::sleep(Duration::from_millis(300));
        let after = serve.stats()?;
        drop(serve);
        let d = |p: &str| counter(&after, p).saturating_sub(counter(&before, p));
        let rx = d("/engine/rx_frames");
        let detail = format!(
            "xstack detail: xdp rx_packets {}, engine rx_frames {rx} (icmp echo replies parsed {}), kernel AF_XDP rx_ring_full {}, fill_ring_empty {}, rx_dropped {}",
            d("/xdp/rx_packets"),
            d("/engine/icmp_other"),
            d("/per_queue/0/kernel/rx_ring_full"),
            d("/per_queue/0/kernel/rx_fill_ring_empty"),
            d("/per_queue/0/kernel/rx_dropped"),
        );
        let mut r = row(sent, rx, el, &usage, receiver_core, true);
        r.ring_drops = victim::tx_dropped(&t.peer_ns, &t.peer_if).saturating_sub(drops0);
        Ok((r, detail))
    })();
    drop(tb);
    victim::wait_napi_gone(&[napi.0, napi.1].concat(), "rx-bench");
    result
}

/// The row from a run's counts and CPU use (groups: receiving NAPI,
/// receiving process, sender).
fn row(sent: u64, rx: u64, el: f64, u: &CpuUse, receiver_core: bool, app: bool) -> RxRow {
    let g = |i: usize| u.threads_pct.get(i).copied().unwrap_or(0.0);
    RxRow {
        sent_pps: sent as f64 / el,
        received_pps: rx as f64 / el,
        cpu_busy_pct: u.cpu_busy_pct.clone(),
        rx_napi_cpu_pct: receiver_core.then(|| g(0)),
        rx_app_cpu_pct: app.then(|| g(1)),
        tx_cpu_pct: g(2),
        xdp_passed: None,
        ring_drops: 0,
    }
}

/// The Linux stack receiving on a testbed of its own.
fn linux_row(name: &str, secs: f64, receiver_core: bool) -> Result<RxRow> {
    let tb = TestbedGuard::up(name, 1)?;
    let t = tb.testbed.clone();
    let mut napi = (Vec::new(), Vec::new());
    let mut sink = None;
    let result = (|| -> Result<RxRow> {
        let cidr = format!("{}/24", STACK_IP);
        let ok = std::process::Command::new("ip")
            .args(["-n", &t.stack_ns, "addr", "add", &cidr, "dev", &t.stack_if])
            .status()
            .context("ip addr add")?
            .success();
        if !ok {
            anyhow::bail!("cannot add {cidr} to {}", t.stack_if);
        }
        if receiver_core {
            sink = Some(pass_through(&t.stack_ns, &t.stack_if)?);
            napi = thread_both(&t)?;
        }
        let in0 = icmp_in_echo_reps(&t.stack_ns);
        let drops0 = victim::tx_dropped(&t.peer_ns, &t.peer_if);
        let peer_if = t.peer_if.clone();
        let groups = vec![napi.0.clone(), vec![]];
        let cpu = receiver_core.then_some(TX_CPU);
        let (sent, el, usage) = in_netns(&t.peer_ns, move || blast(&peer_if, secs, cpu, groups));
        std::thread::sleep(Duration::from_millis(300));
        let rx = icmp_in_echo_reps(&t.stack_ns).saturating_sub(in0);
        let mut r = row(sent, rx, el, &usage, receiver_core, false);
        r.ring_drops = victim::tx_dropped(&t.peer_ns, &t.peer_if).saturating_sub(drops0);
        r.xdp_passed = sink
            .as_ref()
            .and_then(|s: &XdpSink| s.counters().ok())
            .map(|(_, passed)| passed);
        Ok(r)
    })();
    drop(sink);
    drop(tb);
    victim::wait_napi_gone(&[napi.0, napi.1].concat(), "rx-bench");
    result
}

/// Attaches the pass-through XDP program (the peer-side sink with no
/// prefix: it drops nothing) to `iface` in `ns`, so veth runs NAPI there
/// without GRO, and checks that GRO stayed off. veth's NAPI hands XDP_PASS
/// frames to `napi_gro_receive`, which skips GRO when the device's GRO
/// feature is off (`netif_elide_gro`); since Linux 6.9 attaching XDP no
/// longer turns GRO on at a veth end.
pub(crate) fn pass_through(ns: &str, iface: &str) -> Result<XdpSink> {
    let iface2 = iface.to_string();
    let sink = in_netns(ns, move || -> Result<XdpSink> {
        let mut s = XdpSink::load(std::net::Ipv4Addr::UNSPECIFIED, 0)?;
        s.attach(&iface2)?;
        Ok(s)
    })
    .context("the pass-through XDP program")?;
    if victim::gro(ns, iface)? {
        anyhow::bail!("GRO came on at {iface} with the pass-through XDP program (a kernel before 6.9 turns it on): the GRO-off rows would not be GRO-off");
    }
    Ok(sink)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rx_table_gives_each_sides_cpu_and_dashes_what_a_receiver_does_not_have() {
        let a = RxRow {
            sent_pps: 200_000.0,
            received_pps: 150_000.0,
            cpu_busy_pct: vec![97.0, 60.0],
            rx_napi_cpu_pct: Some(20.0),
            rx_app_cpu_pct: Some(75.0),
            tx_cpu_pct: 55.0,
            xdp_passed: None,
            ring_drops: 12,
        };
        let b = RxRow {
            rx_napi_cpu_pct: None,
            rx_app_cpu_pct: None,
            ring_drops: 0,
            ..a.clone()
        };
        let t = table(&a, &b);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[2],
            "| xstack, 1 AF_XDP socket, copy    |      200000 |         150000 |           0.750 |     97 |     60 |        20 |       75 |       55 |         12 |"
        );
        assert!(
            lines[3]
                .ends_with("|     97 |     60 |         - |        - |       55 |          0 |"),
            "{t}"
        );
        assert!(arrangement(true).starts_with("receiver core: CPU 0"));
        assert!(arrangement(false).contains("--no-receiver-core"));
        // No spinning on the CPU the NAPI thread needs; the old
        // arrangement keeps the arguments it always had.
        assert!(!serve_args(true).contains(&"--busy-poll"));
        assert!(serve_args(false).contains(&"--busy-poll"));
    }
}
