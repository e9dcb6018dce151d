//! `xstack flood --generator live`: the template frame, the generator's
//! configuration, the paced loop of live-frames runs, and the receiver's
//! count of frames it accepted and refused (`ethtool -S`).

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use stack_ebpf::{FloodGenConfig, GEN_ACK, GEN_EST, GEN_MIXED, GEN_RST, GEN_SYN};

use super::{build, FloodConfig, FloodKind, FloodReport, Generator, Rng};
use crate::datapath::floodgen::FloodGen;
use crate::wire::ethernet::Mac;

/// Frames per live-frames call when unpaced (the loop checks the clock
/// between calls: about half a millisecond of frames).
const UNPACED_CHUNK: u32 = 1024;
/// Most frames per call when paced. Each call builds a fresh page pool,
/// and initialising its cold pages is most of the generator's cost
/// (`xdp_test_run_init_page`: 74% of its CPU at 256 frames a call, when it
/// reached 307 kpps of 770 asked); bigger calls recycle pages the receiver
/// returned. A call's burst can outrun a veth's 256-slot ring: those
/// frames are counted as refused.
const PACED_CHUNK: u64 = 1024;

/// The first frame of the flood, which the program rewrites per run: it
/// fixes the Ethernet header, the target and the header lengths (a mixed
/// flood's template is a SYN, whose MSS option makes the TCP header 24
/// bytes; its ACKs and RSTs carry four NOPs there instead).
pub fn template(c: &FloodConfig, src_mac: Mac) -> Vec<u8> {
    let first = match c.kind {
        FloodKind::Mixed | FloodKind::Syn => FloodKind::Syn,
        FloodKind::Ack => FloodKind::Ack,
        FloodKind::Rst | FloodKind::Est => FloodKind::Rst,
    };
    let mut buf = vec![0u8; 128];
    let n = build(&mut buf, c, src_mac, first, &mut Rng(0x5eed));
    buf.truncate(n);
    buf
}

/// Words in memory order, as the program reads and writes addresses.
fn words(v: u128) -> [u32; 4] {
    let b = v.to_be_bytes();
    std::array::from_fn(|i| {
        u32::from_ne_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]])
    })
}

/// The program's configuration for `c` and its template frame,
/// redirecting to `ifindex` (0: drop after writing, for tests).
pub fn gen_config(c: &FloodConfig, frame: &[u8], ifindex: u32) -> FloodGenConfig {
    let mut template = [0u32; 20];
    for (w, b) in template.iter_mut().zip(frame.chunks(4)) {
        let mut x = [0u8; 4];
        x[..b.len()].copy_from_slice(b);
        *w = u32::from_ne_bytes(x);
    }
    let (family, net, host) = match c.sources.0 {
        IpAddr::V4(a) => {
            let len = u32::from(c.sources.1.min(32));
            let host = if len >= 32 { 0 } else { u32::MAX >> len };
            (
                4,
                [u32::from_ne_bytes(a.octets()), 0, 0, 0],
                [u32::from_ne_bytes(host.to_be_bytes()), 0, 0, 0],
            )
        }
        IpAddr::V6(a) => {
            let len = u32::from(c.sources.1.min(128));
            let host = if len >= 128 { 0 } else { u128::MAX >> len };
            (6, words(u128::from(a)), words(host))
        }
    };
    let (port_lo, port_span) = match c.src_ports {
        Some((lo, hi)) => (u32::from(lo), u32::from(hi - lo) + 1),
        None => (1024, 64000),
    };
    let mut src_net = net;
    for (n, h) in src_net.iter_mut().zip(host) {
        *n &= !h;
    }
    FloodGenConfig {
        ifindex,
        kind: match c.kind {
            FloodKind::Syn => GEN_SYN,
            FloodKind::Ack => GEN_ACK,
            FloodKind::Rst => GEN_RST,
            FloodKind::Mixed => GEN_MIXED,
            FloodKind::Est => GEN_EST,
        },
        family,
        tcp_len: if matches!(c.kind, FloodKind::Syn | FloodKind::Mixed) {
            24
        } else {
            20
        },
        port_lo,
        port_span,
        src_net,
        src_host: host,
        template,
    }
}

/// `(accepted, refused)` redirected frames from `ethtool -S` text: the
/// sums of the counters named `…xdp_xmit` and `…xdp_xmit_errors` (veth
/// shows the other end's receive ring as `tx_queue_N_xdp_xmit` and
/// `tx_queue_N_xdp_xmit_errors`); None when there are none.
pub fn parse_xmit_counters(text: &str) -> Option<(u64, u64)> {
    let (mut ok, mut err, mut found) = (0u64, 0u64, false);
    for line in text.lines() {
        let Some((name, v)) = line.trim().split_once(':') else {
            continue;
        };
        let Ok(v) = v.trim().parse::<u64>() else {
            continue;
        };
        if name.ends_with("xdp_xmit") {
            ok += v;
            found = true;
        } else if name.ends_with("xdp_xmit_errors") || name.ends_with("xdp_xmit_err") {
            err += v;
            found = true;
        }
    }
    found.then_some((ok, err))
}

/// The receiver's counters of `iface` (in this thread's namespace).
fn xmit_counters(iface: &str) -> Option<(u64, u64)> {
    let out = std::process::Command::new("ethtool")
        .args(["-S", iface])
        .output()
        .ok()?;
    parse_xmit_counters(&String::from_utf8_lossy(&out.stdout))
}

/// Sends the flood with live frames from the calling thread.
pub(super) fn run_live(c: &FloodConfig) -> Result<FloodReport> {
    if c.metrics.is_some() {
        bail!("--metrics needs --generator xsk (the live generator's counts are read once, at the end)");
    }
    let iface = crate::runtime::sys::interface(&c.iface)?;
    let frame = template(c, iface.mac);
    let input = FloodGen::input(&frame);
    let mut gen = FloodGen::load(&gen_config(c, &frame, iface.index))
        .context("the live-frames flood generator (kernel 5.18 or later)")?;
    if let Err(e) = gen.hold_in_dispatcher() {
        eprintln!(
            "flood: the generator runs slowly (each call waits for an XDP dispatcher update): {e}"
        );
    }
    let chunk = if c.rate == 0 {
        UNPACED_CHUNK
    } else {
        (c.rate / 1000).clamp(1, PACED_CHUNK) as u32
    };
    let before = xmit_counters(&iface.name);
    let start = Instant::now();
    let end = start + c.duration;
    let mut generated = 0u64;
    let mut checked = false;
    while Instant::now() < end {
        if c.rate > 0 {
            // Ahead of schedule: sleep until the chunk's last frame is due.
            let due = start
                + Duration::from_secs_f64((generated + u64::from(chunk)) as f64 / c.rate as f64);
            let now = Instant::now();
            if due > now {
                if due >= end {
                    break;
                }
                std::thread::sleep(due - now);
            }
        }
        gen.send(&input, chunk)?;
        generated += u64::from(chunk);
        if !checked {
            checked = true;
            if let (Some(b), Some(a)) = (before, xmit_counters(&iface.name)) {
                if a.0 == b.0 && a.1 == b.1 {
                    bail!(
                        "{}: the receiver neither accepted nor refused the {generated} redirected frames: the other end of a veth must run NAPI (an XDP program attached there, or `ethtool -K IF gro on`); or use --generator xsk",
                        iface.name
                    );
                }
            }
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let after = xmit_counters(&iface.name);
    let (sent, refused, lost) = match (before, after) {
        (Some(b), Some(a)) => {
            let (ok, err) = (a.0.saturating_sub(b.0), a.1.saturating_sub(b.1));
            (ok, err, Some(generated.saturating_sub(ok + err)))
        }
        _ => (generated, 0, None),
    };
    Ok(FloodReport {
        sent,
        seconds,
        requested_pps: c.rate,
        achieved_pps: sent as f64 / seconds.max(1e-9),
        tx_dropped: refused,
        generator: Generator::Live,
        generated,
        lost,
    })
}
