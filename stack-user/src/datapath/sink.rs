//! The peer-side sink: `xstack_sink` from the same XDP object, attached to
//! the *peer* end of a testbed veth, drops frames to one IPv4 prefix and
//! one IPv6 prefix (as an upstream router drops traffic to spoofed,
//! unreachable sources) and
//! passes everything else. `xstack bench synflood` puts it in front of the
//! legit client's kernel so reflected SYN-ACKs cost the peer one XDP run,
//! for every system alike.
//!
//! # Minimum kernel version
//! 5.9 (XDP through a bpf_link, detached when the sink drops).

use std::net::{Ipv4Addr, Ipv6Addr};

use aya::{
    maps::{Array, PerCpuArray},
    programs::{ProgramError, Xdp, XdpMode},
    Ebpf, EbpfLoader,
};

use super::xdp::{XdpError, EBPF_OBJECT};

/// The program's name in the object.
pub const SINK_PROGRAM: &str = "xstack_sink";

/// The loaded sink (attached or not).
pub struct XdpSink {
    ebpf: Ebpf,
}

impl std::fmt::Debug for XdpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("XdpSink")
    }
}

fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> XdpError {
    move |e| XdpError::Map {
        map,
        detail: e.to_string(),
    }
}

impl XdpSink {
    /// Loads the sink dropping frames to `net/len` (len 0: drops nothing).
    pub fn load(net: Ipv4Addr, len: u8) -> Result<XdpSink, XdpError> {
        if EBPF_OBJECT.is_empty() {
            return Err(XdpError::ObjectMissing);
        }
        let mut ebpf = EbpfLoader::new()
            .load(EBPF_OBJECT)
            .map_err(|e| XdpError::Load(e.to_string()))?;
        let mut prefix: Array<_, u32> = ebpf
            .map_mut("SINK_PREFIX")
            .ok_or(XdpError::Map {
                map: "SINK_PREFIX",
                detail: "missing from the object".into(),
            })?
            .try_into()
            .map_err(map_err("SINK_PREFIX"))?;
        let mask = match len.min(32) {
            0 => 0,
            l => u32::MAX << (32 - u32::from(l)),
        };
        prefix
            .set(0, u32::from(net) & mask, 0)
            .map_err(map_err("SINK_PREFIX"))?;
        prefix.set(1, mask, 0).map_err(map_err("SINK_PREFIX"))?;
        let prog = Self::prog(&mut ebpf)?;
        prog.load().map_err(|e| XdpError::Load(e.to_string()))?;
        Ok(XdpSink { ebpf })
    }

    /// Also drops IPv6 frames to `net/len` (len 0: none; the default).
    pub fn set_ipv6_prefix(&mut self, net: Ipv6Addr, len: u8) -> Result<(), XdpError> {
        let mut prefix: Array<_, [u32; 4]> = self
            .ebpf
            .map_mut("SINK_PREFIX6")
            .ok_or(XdpError::Map {
                map: "SINK_PREFIX6",
                detail: "missing from the object".into(),
            })?
            .try_into()
            .map_err(map_err("SINK_PREFIX6"))?;
        let mask = match len.min(128) {
            0 => 0,
            l => u128::MAX << (128 - u32::from(l)),
        };
        // Words in memory order, as the program reads them from a frame.
        let words = |v: u128| {
            let b = v.to_be_bytes();
            std::array::from_fn(|i| {
                u32::from_ne_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]])
            })
        };
        prefix
            .set(0, words(u128::from(net) & mask), 0)
            .map_err(map_err("SINK_PREFIX6"))?;
        prefix
            .set(1, words(mask), 0)
            .map_err(map_err("SINK_PREFIX6"))?;
        Ok(())
    }

    fn prog(ebpf: &mut Ebpf) -> Result<&mut Xdp, XdpError> {
        ebpf.program_mut(SINK_PROGRAM)
            .ok_or_else(|| XdpError::Load(format!("program {SINK_PROGRAM} not in the object")))?
            .try_into()
            .map_err(|e: ProgramError| XdpError::Load(e.to_string()))
    }

    /// Attaches to `iface` (in this thread's network namespace), driver
    /// mode; detached when the sink drops.
    pub fn attach(&mut self, iface: &str) -> Result<(), XdpError> {
        Self::prog(&mut self.ebpf)?
            .attach(iface, XdpMode::Driver)
            .map_err(|e| XdpError::Attach {
                iface: iface.into(),
                mode: "driver",
                detail: e.to_string(),
            })?;
        Ok(())
    }

    /// The loaded program, for `BPF_PROG_TEST_RUN`.
    pub fn program(&mut self) -> Result<&mut Xdp, XdpError> {
        Self::prog(&mut self.ebpf)
    }

    /// (dropped, passed) frames, summed over CPUs.
    pub fn counters(&self) -> Result<(u64, u64), XdpError> {
        let m: PerCpuArray<_, u64> = self
            .ebpf
            .map("SINK_COUNTERS")
            .ok_or(XdpError::Map {
                map: "SINK_COUNTERS",
                detail: "missing from the object".into(),
            })?
            .try_into()
            .map_err(map_err("SINK_COUNTERS"))?;
        let sum = |i: u32| -> Result<u64, XdpError> {
            Ok(m.get(&i, 0).map_err(map_err("SINK_COUNTERS"))?.iter().sum())
        };
        Ok((sum(0)?, sum(1)?))
    }
}
