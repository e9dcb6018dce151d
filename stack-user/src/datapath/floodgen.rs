//! The live-frames flood generator: `xstack_flood_gen` from the same XDP
//! object, never attached. [`FloodGen::send`] runs it with
//! `BPF_PROG_TEST_RUN` and `BPF_F_TEST_XDP_LIVE_FRAMES`: the kernel runs
//! it `repeat` times on page-pool pages holding a template frame, and each
//! run's `XDP_REDIRECT` sends the rewritten frame, as an `xdp_frame`, to
//! the interface in the configuration. Into a veth that is what a NIC
//! driver does: the receiving end's NAPI runs its XDP program on the page
//! directly, with no skb and no copy (frames sent by `AF_XDP` in copy
//! mode arrive as skbs and are copied into a page before XDP runs).
//!
//! # Minimum kernel version
//! 5.18 (`BPF_F_TEST_XDP_LIVE_FRAMES`).

use aya::{
    maps::{Array, PerCpuArray},
    programs::{ProgramError, TestRun, TestRunAttrs, TestRunOptions, Xdp, XdpMode},
    Ebpf, EbpfLoader,
};
use stack_ebpf::{FloodGenConfig, GEN_TAIL};

use super::xdp::{XdpError, EBPF_OBJECT};

/// The program's name in the object.
pub const GEN_PROGRAM: &str = "xstack_flood_gen";

/// Frames per batch the kernel runs before it flushes the redirects (its
/// maximum is 256).
pub const BATCH: u32 = 64;

/// The loaded generator.
pub struct FloodGen {
    ebpf: Ebpf,
}

impl std::fmt::Debug for FloodGen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FloodGen")
    }
}

fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> XdpError {
    move |e| XdpError::Map {
        map,
        detail: e.to_string(),
    }
}

fn missing(map: &'static str) -> XdpError {
    XdpError::Map {
        map,
        detail: "missing from the object".into(),
    }
}

impl FloodGen {
    /// Loads the generator with `config`.
    pub fn load(config: &FloodGenConfig) -> Result<FloodGen, XdpError> {
        if EBPF_OBJECT.is_empty() {
            return Err(XdpError::ObjectMissing);
        }
        let mut ebpf = EbpfLoader::new()
            .load(EBPF_OBJECT)
            .map_err(|e| XdpError::Load(e.to_string()))?;
        let mut m: Array<_, FloodGenConfig> = ebpf
            .map_mut("GEN_CONFIG")
            .ok_or_else(|| missing("GEN_CONFIG"))?
            .try_into()
            .map_err(map_err("GEN_CONFIG"))?;
        m.set(0, *config, 0).map_err(map_err("GEN_CONFIG"))?;
        Self::prog(&mut ebpf)?
            .load()
            .map_err(|e| XdpError::Load(e.to_string()))?;
        Ok(FloodGen { ebpf })
    }

    fn prog(ebpf: &mut Ebpf) -> Result<&mut Xdp, XdpError> {
        ebpf.program_mut(GEN_PROGRAM)
            .ok_or_else(|| XdpError::Load(format!("program {GEN_PROGRAM} not in the object")))?
            .try_into()
            .map_err(|e: ProgramError| XdpError::Load(e.to_string()))
    }

    /// Attaches the program in generic mode to this namespace's loopback
    /// device, where it passes every frame (loopback frames carry zero
    /// MACs; see [`GEN_TAIL`]), only so that it stays in the kernel's XDP
    /// dispatcher: otherwise every `BPF_PROG_TEST_RUN` with `repeat > 1`
    /// adds it to the dispatcher and removes it again, each an RCU grace
    /// period (about 25 ms here), which caps the generator at some 40
    /// kpps. Detached when the generator drops.
    pub fn hold_in_dispatcher(&mut self) -> Result<(), XdpError> {
        Self::prog(&mut self.ebpf)?
            .attach("lo", XdpMode::Skb)
            .map_err(|e| XdpError::Attach {
                iface: "lo".into(),
                mode: "generic",
                detail: e.to_string(),
            })?;
        Ok(())
    }

    /// The loaded program, for `BPF_PROG_TEST_RUN` without live frames
    /// (tests: the frame it writes comes back in `data_out`).
    pub fn program(&mut self) -> Result<&mut Xdp, XdpError> {
        Self::prog(&mut self.ebpf)
    }

    /// What to run the program on for `frame` (the template in the
    /// config): the frame and [`GEN_TAIL`] more bytes, which every run
    /// drops (see [`GEN_TAIL`] for why).
    pub fn input(frame: &[u8]) -> Vec<u8> {
        let mut v = frame.to_vec();
        v.resize(frame.len() + GEN_TAIL, 0);
        v
    }

    /// Runs the program `repeat` times on `input` ([`FloodGen::input`])
    /// in live-frames mode: every run's frame is sent. Returns the
    /// kernel's run time.
    pub fn send(&mut self, input: &[u8], repeat: u32) -> Result<std::time::Duration, XdpError> {
        let mut o = TestRunOptions::new();
        o.data_in = Some(input);
        o.repeat = repeat.max(1);
        o.attrs = TestRunAttrs::new().xdp_live_frames(BATCH);
        let r = Self::prog(&mut self.ebpf)?
            .test_run(o)
            .map_err(|e| XdpError::Load(format!("live-frames BPF_PROG_TEST_RUN: {e}")))?;
        Ok(r.duration)
    }

    /// Frames written, `[SYN, ACK, RST]`, summed over CPUs.
    pub fn counters(&self) -> Result<[u64; 3], XdpError> {
        let m: PerCpuArray<_, u64> = self
            .ebpf
            .map("GEN_COUNTERS")
            .ok_or_else(|| missing("GEN_COUNTERS"))?
            .try_into()
            .map_err(map_err("GEN_COUNTERS"))?;
        let mut out = [0u64; 3];
        for (i, o) in out.iter_mut().enumerate() {
            *o = m
                .get(&(i as u32), 0)
                .map_err(map_err("GEN_COUNTERS"))?
                .iter()
                .sum();
        }
        Ok(out)
    }
}
