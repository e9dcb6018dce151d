//! SYN cookie cost in XDP: ours (`stack_ebpf::cookie`, SipHash-2-4, shared
//! with the engine, rotatable secret, options in the timestamp) against the
//! kernel's `bpf_tcp_raw_gen_syncookie_ipv4` + `bpf_tcp_raw_check_syncookie_ipv4`,
//! and beside them what the whole XDP program costs per flood packet.
//!
//! Three never-attached programs of the XDP object run on one crafted SYN
//! under BPF_PROG_TEST_RUN with `repeat`: a baseline that only parses, ours
//! (generate + check), the kernel's (generate + check). The kernel reports
//! the mean time per run; the baseline is subtracted. Variants alternate over
//! three rounds and the best round of each is kept (the machine is shared).
//!
//! The whole program (`xstack_xdp`, [`ProgramRow`]) cannot run under
//! `repeat`: it turns a SYN into a SYN-ACK in place, so every run after the
//! first would see the SYN-ACK, and a flood's SYNs come from a new source
//! each. So each of [`PROGRAM_FRAMES`] frames, each from its own source (as
//! `xstack flood` sends them: a SYN with an MSS option, a bare ACK with
//! random numbers, a bare RST), is one BPF_PROG_TEST_RUN, and a row is the
//! median of those runs, less the median of the baseline program run the
//! same way (which holds the kernel's per-run overhead). The program is
//! configured as `xstack serve --syncookies always`; the SYN rows answer
//! with a cookie SYN-ACK (`XDP_TX`), one without limits and one with the
//! per-source limit on (every source within its budget: the row measures
//! the limiter's cost, not its drops); the ACK row is a forged final ACK
//! while cookies are in use (its cookie checked and dropped), the RST row a
//! RST for no known flow (dropped). This is the figure `xstack bench
//! synflood` measures on a flood as the XDP run time per packet (there
//! with the NIC driver's cache misses; here the frame is hot).

use std::{fmt, net::Ipv4Addr};

use anyhow::{bail, Context, Result};
use aya::programs::TestRunOptions;
use serde::Serialize;
use stack_ebpf::Counter;

use crate::{
    datapath::{
        fastpath::{FastpathSettings, SynCookies},
        xdp::XdpProgram,
    },
    wire::{
        build::{Endpoints, TcpSegment},
        ethernet::Mac,
        tcp::{ACK, RST, SYN},
    },
};

/// Frames per whole-program row and round, one BPF_PROG_TEST_RUN each.
pub const PROGRAM_FRAMES: u32 = 20_000;

/// One row of the whole program's cost.
#[derive(Clone, Debug, Serialize)]
pub struct ProgramRow {
    /// What the frames are and how the program is configured.
    pub case: &'static str,
    /// The counter every frame moved (checked).
    pub verdict: &'static str,
    /// Median ns per frame, baseline subtracted (best of 3 rounds).
    pub ns: f64,
}

/// Result of `xstack bench cookies`.
#[derive(Clone, Debug, Serialize)]
pub struct CookieBench {
    /// Repetitions per run.
    pub repeat: u32,
    /// Baseline ns per run (parse only).
    pub base_ns: f64,
    /// Ours: ns per generate + check, baseline subtracted.
    pub ours_ns: f64,
    /// Kernel helpers: ns per generate + check, baseline subtracted.
    pub kernel_ns: f64,
    /// Frames per whole-program row and round.
    pub program_frames: u32,
    /// Median ns of the baseline program run once per frame (subtracted
    /// from the rows below).
    pub program_base_ns: f64,
    /// The whole XDP program per flood packet.
    pub program: Vec<ProgramRow>,
}

impl fmt::Display for CookieBench {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "SYN cookie generate + check in XDP, BPF_PROG_TEST_RUN, repeat {} (best of 3 rounds, baseline {:.1} ns subtracted)",
            self.repeat, self.base_ns
        )?;
        writeln!(
            f,
            "| variant                                         | ns/op |"
        )?;
        writeln!(
            f,
            "|-------------------------------------------------|-------|"
        )?;
        writeln!(
            f,
            "| xstack cookie (SipHash-2-4, shared with engine) | {:>5.1} |",
            self.ours_ns
        )?;
        writeln!(
            f,
            "| kernel bpf_tcp_raw_{{gen,check}}_syncookie_ipv4   | {:>5.1} |",
            self.kernel_ns
        )?;
        writeln!(
            f,
            "ratio ours / kernel: {:.2}",
            self.ours_ns / self.kernel_ns.max(0.001)
        )?;
        writeln!(
            f,
            "\nThe whole XDP program per flood packet: {} frames from distinct sources, one BPF_PROG_TEST_RUN each (median, best of 3 rounds, baseline {:.1} ns subtracted)",
            self.program_frames, self.program_base_ns
        )?;
        writeln!(
            f,
            "| packet (syncookies always)                              | verdict              | ns/pkt |"
        )?;
        writeln!(
            f,
            "|---------------------------------------------------------|----------------------|--------|"
        )?;
        for r in &self.program {
            writeln!(f, "| {:<55} | {:<20} | {:>6.1} |", r.case, r.verdict, r.ns)?;
        }
        Ok(())
    }
}

/// A SYN from 198.18.0.1:40000 to 198.18.0.2:8080, 20-byte TCP header.
pub fn syn_frame() -> Vec<u8> {
    Endpoints {
        src_mac: Mac([2, 0, 0, 0, 0, 1]),
        dst_mac: Mac([2, 0, 0, 0, 0, 2]),
        src_ip: Ipv4Addr::new(198, 18, 0, 1),
        dst_ip: Ipv4Addr::new(198, 18, 0, 2),
    }
    .tcp(&TcpSegment {
        src_port: 40000,
        dst_port: 8080,
        seq: 0x1234_5678,
        flags: SYN,
        window: 64240,
        ..TcpSegment::default()
    })
}

/// The `i`th frame of a whole-program case from a source of its own:
/// 198.18.0.0/15 counted from 198.18.0.1 (`i` below 131,000), the flood's
/// shapes (SYN with MSS 1460, bare ACK with random numbers, bare RST).
pub fn flood_frame(flags: u8, i: u32) -> Vec<u8> {
    let src = u32::from(Ipv4Addr::new(198, 18, 0, 1)) + i % 131_000;
    let r = (u64::from(i) + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    Endpoints {
        src_mac: Mac([2, 0, 0, 0, 0, 1]),
        dst_mac: Mac([2, 0, 0, 0, 0, 2]),
        src_ip: Ipv4Addr::from(src),
        dst_ip: BENCH_DST,
    }
    .tcp(&TcpSegment {
        src_port: 1024 + (r >> 48) as u16 % 64000,
        dst_port: BENCH_PORT,
        seq: (r >> 16) as u32,
        ack: if flags == ACK { r as u32 } else { 0 },
        flags,
        window: 64240,
        options: if flags == SYN {
            &[2, 4, 0x05, 0xb4]
        } else {
            &[]
        },
        checksum: true,
        ..TcpSegment::default()
    })
}

/// The address and port the whole-program rows' frames are sent to.
const BENCH_DST: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const BENCH_PORT: u16 = 8080;

/// The whole-program cases: name, TCP flags, per-source limit on, the
/// counter each frame must move.
const CASES: [(&str, u8, bool, Counter); 4] = [
    (
        "SYN -> cookie SYN-ACK, no limits",
        SYN,
        false,
        Counter::TxCookieSynAck,
    ),
    (
        "SYN -> cookie SYN-ACK, per-source limit on",
        SYN,
        true,
        Counter::TxCookieSynAck,
    ),
    (
        "forged ACK, cookies in use -> bad cookie, drop",
        ACK,
        false,
        Counter::DropCookieInvalid,
    ),
    (
        "RST for no known flow -> drop",
        RST,
        false,
        Counter::DropNoFlow,
    ),
];

/// Each frame once through `p`: the kernel's ns for each run.
fn run_each(p: &mut aya::programs::Xdp, frames: &[Vec<u8>]) -> Result<Vec<u64>> {
    frames
        .iter()
        .map(|f| {
            let mut o = TestRunOptions::new();
            o.data_in = Some(f);
            let r = aya::programs::TestRun::test_run(p, o).context("BPF_PROG_TEST_RUN")?;
            Ok(r.duration.as_nanos() as u64)
        })
        .collect()
}

/// The median of `v` (0 when empty).
fn median(mut v: Vec<u64>) -> f64 {
    v.sort_unstable();
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2] as f64,
        n => (v[n / 2 - 1] + v[n / 2]) as f64 / 2.0,
    }
}

/// Configures `prog` for a case: cookies always, the per-source limit
/// (100 SYN/s, burst 16, far above one SYN per source) on or off.
fn configure(prog: &mut XdpProgram, per_source: bool) -> Result<()> {
    let s = FastpathSettings {
        syncookies: SynCookies::Always,
        syn_source_rate: if per_source { 100 } else { 0 },
        ..FastpathSettings::default()
    };
    prog.set_config(&s.to_config())?;
    Ok(())
}

/// The whole program's rows: for each case, [`PROGRAM_FRAMES`] frames per
/// round, 3 rounds alternating with the baseline, the best median kept.
fn program_rows(prog: &mut XdpProgram) -> Result<(f64, Vec<ProgramRow>)> {
    prog.own_addr(BENCH_DST)?;
    prog.own_port(BENCH_DST, BENCH_PORT)?;
    let mut best = [f64::MAX; CASES.len()];
    let mut base = f64::MAX;
    for round in 0..3u32 {
        // New sources every round (the per-source cells stay fresh).
        let first = round * PROGRAM_FRAMES;
        let syns: Vec<Vec<u8>> = (first..first + PROGRAM_FRAMES)
            .map(|i| flood_frame(SYN, i))
            .collect();
        base = base.min(median(run_each(
            prog.bench_program("xstack_bench_base")?,
            &syns,
        )?));
        for (k, (case, flags, per_source, verdict)) in CASES.iter().enumerate() {
            configure(prog, *per_source)?;
            let frames: Vec<Vec<u8>> = if *flags == SYN {
                syns.clone()
            } else {
                (first..first + PROGRAM_FRAMES)
                    .map(|i| flood_frame(*flags, i))
                    .collect()
            };
            let before = prog.counters()?;
            let ns = median(run_each(prog.program(), &frames)?);
            let after = prog.counters()?;
            let moved = after[verdict.name()] - before[verdict.name()];
            if moved != u64::from(PROGRAM_FRAMES) {
                bail!(
                    "{case}: {moved} of {PROGRAM_FRAMES} frames counted as {}",
                    verdict.name()
                );
            }
            best[k] = best[k].min(ns);
        }
    }
    let rows = CASES
        .iter()
        .zip(best)
        .map(|((case, _, _, verdict), ns)| ProgramRow {
            case,
            verdict: verdict.name(),
            ns: (ns - base).max(0.0),
        })
        .collect();
    Ok((base, rows))
}

/// Runs the benchmark.
pub fn run(repeat: u32) -> Result<CookieBench> {
    crate::runtime::sys::check_privileges("xstack bench cookies")?;
    let repeat = repeat.clamp(1000, 100_000_000);
    let mut prog = XdpProgram::load(None)?;
    let frame = syn_frame();
    let mut time = |name: &str| -> Result<f64> {
        let p = prog.bench_program(name)?;
        let mut o = TestRunOptions::new();
        o.data_in = Some(&frame);
        o.repeat = repeat;
        let r = aya::programs::TestRun::test_run(p, o)
            .with_context(|| format!("BPF_PROG_TEST_RUN of {name}"))?;
        // 1 = XDP_DROP: the cookie was generated and checked back.
        if name != "xstack_bench_base" && r.return_value != 1 {
            bail!(
                "{name}: the cookie did not check (verdict {})",
                r.return_value
            );
        }
        Ok(r.duration.as_nanos() as f64)
    };
    let (mut base, mut ours, mut kernel) = (f64::MAX, f64::MAX, f64::MAX);
    for _ in 0..3 {
        base = base.min(time("xstack_bench_base")?);
        ours = ours.min(time("xstack_bench_ours")?);
        kernel = kernel.min(time("xstack_bench_kernel")?);
    }
    let (program_base_ns, program) = program_rows(&mut prog)?;
    Ok(CookieBench {
        repeat,
        base_ns: base,
        ours_ns: (ours - base).max(0.0),
        kernel_ns: (kernel - base).max(0.0),
        program_frames: PROGRAM_FRAMES,
        program_base_ns,
        program,
    })
}
