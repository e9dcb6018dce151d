//! SYN cookie cost in XDP: ours (`stack_ebpf::cookie`, SipHash-2-4, shared
//! with the engine, rotatable secret, options in the timestamp) against the
//! kernel's `bpf_tcp_raw_gen_syncookie_ipv4` + `bpf_tcp_raw_check_syncookie_ipv4`.
//!
//! Three never-attached programs of the XDP object run on one crafted SYN
//! under BPF_PROG_TEST_RUN with `repeat`: a baseline that only parses, ours
//! (generate + check), the kernel's (generate + check). The kernel reports
//! the mean time per run; the baseline is subtracted. Variants alternate over
//! three rounds and the best round of each is kept (the machine is shared).

use std::{fmt, net::Ipv4Addr};

use anyhow::{bail, Context, Result};
use aya::programs::TestRunOptions;
use serde::Serialize;

use crate::{
    datapath::xdp::XdpProgram,
    wire::{
        build::{Endpoints, TcpSegment},
        ethernet::Mac,
        tcp::SYN,
    },
};

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
        )
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
    Ok(CookieBench {
        repeat,
        base_ns: base,
        ours_ns: (ours - base).max(0.0),
        kernel_ns: (kernel - base).max(0.0),
    })
}
