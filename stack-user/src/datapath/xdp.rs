//! Loading, configuring and attaching the XDP program, and reading its
//! per-CPU counters.
//!
//! The program is attached with a BPF link (`bpf_link_create`), so a killed
//! process leaves nothing attached. xstack never replaces or detaches a
//! program it did not attach: when the interface already has one, it says
//! which and stops.
//!
//! # Minimum kernel version
//! 5.9 (BPF links for XDP).

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, Ipv6Addr},
    os::fd::RawFd,
    path::{Path, PathBuf},
    process::Command,
};

use aya::{
    maps::{
        lpm_trie::{Key as LpmKey, LpmTrie},
        Array, MapData, PerCpuArray, XskMap,
    },
    programs::{ProgramError, Xdp, XdpMode},
    Ebpf, EbpfLoader,
};
use serde::Serialize;
use stack_ebpf::{
    cookie::Secrets, table_probe, Addr6Entry, Addr6Key, AddrEntry, AddrProbe, Counter, CounterSet,
    FastpathConfig, FastpathState, OwnedEntry, TcpClass, ADDR_ALL_TCP, ADDR_ARP, ADDR_ICMP,
    ADDR_IN_USE, ADDR_SLOT_SHIFT, ADDR_TABLE_LEN, ADDR_TABLE_PROBES, MAX_OWNED_ADDRS,
    MAX_OWNED_ADDRS6, MAX_QUEUES, PROGRAM_NAME,
};
use thiserror::Error;

/// The XDP object, built by `cargo xtask build` and embedded at compile time.
pub static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/xstack.bpf.o"));

/// Where bpffs is normally mounted.
pub const BPFFS: &str = "/sys/fs/bpf";

/// The bpffs root pins go under: `$XSTACK_BPFFS`, else [`BPFFS`].
pub fn bpffs_root() -> PathBuf {
    std::env::var_os("XSTACK_BPFFS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(BPFFS))
}

/// How to attach the program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachMode {
    /// Driver (native) mode, falling back to generic mode with a warning.
    Auto,
    /// Driver mode only.
    Native,
    /// Generic (skb) mode only.
    Generic,
}

/// Errors from loading or attaching the XDP program.
#[derive(Debug, Error)]
pub enum XdpError {
    /// The binary was built without the XDP object.
    #[error("this xstack binary has no XDP program embedded; build it with `cargo xtask build`")]
    ObjectMissing,
    /// The interface does not exist in this network namespace.
    #[error("interface {0} does not exist in this network namespace; check `ip link` (or run inside the namespace with `ip netns exec`)")]
    UnknownInterface(String),
    /// The object could not be parsed or its maps created.
    #[error("cannot load the XDP object: {0}")]
    Load(String),
    /// The verifier refused the program.
    #[error("the kernel verifier rejected the XDP program ({error}): {detail}; rerun with -v for the full verifier log")]
    Verifier {
        /// errno text.
        error: String,
        /// The most telling line of the verifier log.
        detail: String,
    },
    /// Another program is attached to the interface.
    #[error("interface {iface} already has an XDP program attached (id {id}, name {name:?}){owner}; xstack will not replace it: stop its owner, or remove it with `ip link set dev {iface} xdp off` if it is stale")]
    AlreadyAttached {
        /// Interface.
        iface: String,
        /// Program id.
        id: u32,
        /// Program name.
        name: String,
        /// Who owns it, when known.
        owner: String,
    },
    /// The attach call failed.
    #[error("cannot attach XDP to {iface} in {mode} mode: {detail}")]
    Attach {
        /// Interface.
        iface: String,
        /// Mode tried.
        mode: &'static str,
        /// Error text.
        detail: String,
    },
    /// A map operation failed.
    #[error("XDP map {map}: {detail}")]
    Map {
        /// Map name.
        map: &'static str,
        /// Error text.
        detail: String,
    },
    /// bpffs is not mounted where pins go.
    #[error("bpffs is not mounted at {0}; mount it with `mount -t bpf bpf {0}` (or run `cargo xtask setup`)")]
    BpffsMissing(String),
}

fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> XdpError {
    move |e| XdpError::Map {
        map,
        detail: e.to_string(),
    }
}

/// The port-bitmap slot of `addr` in `slots` (the map called `map`),
/// given it the first time; refused in one line past `max` addresses.
fn slot_of<A: PartialEq + Copy + std::fmt::Display>(
    slots: &mut Vec<A>,
    addr: A,
    max: u32,
    map: &'static str,
) -> Result<u32, XdpError> {
    if let Some(i) = slots.iter().position(|a| *a == addr) {
        return Ok(i as u32);
    }
    if slots.len() >= max as usize {
        return Err(XdpError::Map {
            map,
            detail: format!(
                "{addr} would be owned address number {}, above the limit of {max}; own fewer addresses",
                slots.len() + 1
            ),
        });
    }
    slots.push(addr);
    Ok(slots.len() as u32 - 1)
}

/// Puts `entry` for `key` (the address `shown`) in its entry of the
/// owned-address table `map` (the one it has, or the first free one from
/// its home on, [`table_probe`]) and in `copy`, this program's copy of
/// it; refused in one line when no entry within [`ADDR_TABLE_PROBES`] of
/// its home is free.
fn put_entry<E: OwnedEntry + aya::Pod>(
    map: &mut Array<MapData, E>,
    copy: &mut [E],
    name: &'static str,
    key: &E::Addr,
    entry: E,
    shown: impl std::fmt::Display,
) -> Result<(), XdpError> {
    let i = match table_probe(key, |i| copy.get(i as usize).copied()) {
        AddrProbe::Found(i, _) | AddrProbe::Free(i) => i,
        AddrProbe::Full => {
            return Err(XdpError::Map {
                map: name,
                detail: format!(
                    "{shown} finds no free entry within {ADDR_TABLE_PROBES} of its own; own fewer addresses"
                ),
            })
        }
    };
    map.set(i, entry, 0).map_err(map_err(name))?;
    copy[i as usize] = entry;
    Ok(())
}

/// Sets `port`'s bit in `slot` of the port bitmap `map` (called `name`).
fn set_port_bit(
    map: &mut Array<MapData, u64>,
    name: &'static str,
    slot: u32,
    port: u16,
) -> Result<(), XdpError> {
    let (word, bit) = stack_ebpf::port_bit(slot, port);
    let w = map.get(&word, 0).map_err(map_err(name))?;
    map.set(word, w | bit, 0).map_err(map_err(name))
}

/// Every counter of the set `C`, summed over the CPUs of the per-CPU array
/// `array` (the map called `map`), by name.
fn sum_per_cpu<C: CounterSet>(
    array: &PerCpuArray<MapData, u64>,
    map: &'static str,
) -> Result<BTreeMap<&'static str, u64>, XdpError> {
    let mut out = BTreeMap::new();
    for c in C::ALL {
        let v = array.get(&c.index(), 0).map_err(map_err(map))?;
        out.insert(c.name(), v.iter().sum());
    }
    Ok(out)
}

/// An XDP program attached to an interface, and its maps.
pub struct XdpProgram {
    ebpf: Ebpf,
    xsks: XskMap<MapData>,
    counters: PerCpuArray<MapData, u64>,
    queue_redirects: PerCpuArray<MapData, u64>,
    /// `OWNED_ADDR_TABLE`: the owned IPv4 addresses
    /// ([`stack_ebpf::addr_probe`]).
    addrs: Array<MapData, AddrEntry>,
    /// What this program wrote to `addrs`, to probe without reading the
    /// map back.
    addr_table: Vec<AddrEntry>,
    /// `OWNED_PORT_BITS`: a bit per port of each owned IPv4 address.
    port_bits: Array<MapData, u64>,
    /// Each IPv4 address's slot in `port_bits` (its entry's
    /// `ADDR_SLOT_MASK` bits), in the order they were first claimed.
    slots: Vec<Ipv4Addr>,
    /// `OWNED_ADDR_TABLE6`: the owned IPv6 addresses
    /// ([`stack_ebpf::addr6_probe`]).
    addrs6: Array<MapData, Addr6Entry>,
    /// What this program wrote to `addrs6`.
    addr_table6: Vec<Addr6Entry>,
    /// `OWNED_PORT_BITS6`: a bit per port of each owned IPv6 address.
    port_bits6: Array<MapData, u64>,
    /// Each IPv6 address's slot in `port_bits6`, as `slots`.
    slots6: Vec<Ipv6Addr>,
    classes: PerCpuArray<MapData, u64>,
    config: Array<MapData, FastpathConfig>,
    state: Array<MapData, FastpathState>,
    signals: Array<MapData, u32>,
    filter_until: Array<MapData, u64>,
    secrets: Array<MapData, Secrets>,
    deny: LpmTrie<MapData, u32, u8>,
    allow: LpmTrie<MapData, u32, u8>,
    deny6: LpmTrie<MapData, [u8; 16], u8>,
    allow6: LpmTrie<MapData, [u8; 16], u8>,
    attached: Option<(String, &'static str)>,
    pin_dir: Option<PathBuf>,
    logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
    /// The per-source SYN cells' hash key, stamped on every configuration.
    source_key: stack_ebpf::limit::SourceKey,
}

/// The XDP program currently attached to an interface, per `ip -d link`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachedProgram {
    /// Program id.
    pub id: u32,
    /// Program name.
    pub name: String,
    /// "driver", "generic" or "offload".
    pub mode: String,
}

/// Reads the XDP program attached to `iface` (in the current network
/// namespace) with `ip -details -json link show`.
pub fn attached_program(iface: &str) -> Option<AttachedProgram> {
    let out = Command::new("ip")
        .args(["-details", "-json", "link", "show", "dev", iface])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    parse_attached(v.get(0)?)
}

/// The XDP program in one link object of `ip -details -json link|addr show`.
pub fn parse_attached(link: &serde_json::Value) -> Option<AttachedProgram> {
    let xdp = link.get("xdp")?;
    let mode = match xdp.get("mode").and_then(|m| m.as_u64()) {
        Some(1) => "driver",
        Some(2) => "generic",
        Some(3) => "offload",
        _ => "unknown",
    };
    let prog = xdp.get("prog").or_else(|| {
        xdp.get("attached")
            .and_then(|a| a.as_array())
            .and_then(|a| a.first())
            .and_then(|a| a.get("prog"))
    })?;
    Some(AttachedProgram {
        id: prog.get("id")?.as_u64()? as u32,
        name: prog
            .get("name")
            .and_then(|n| n.as_str())
            .unwrap_or("")
            .to_string(),
        mode: mode.to_string(),
    })
}

/// The last verifier-log line that says what went wrong.
fn verifier_detail(log: &str) -> String {
    log.lines()
        .rev()
        .map(str::trim)
        .find(|l| {
            !l.is_empty()
                && !l.starts_with("processed ")
                && !l.starts_with("verification time")
                && !l.starts_with("stack depth")
        })
        .unwrap_or("no verifier output")
        .to_string()
}

impl XdpProgram {
    /// Loads the embedded object and the program into the kernel (not yet
    /// attached). In-kernel log statements are enabled when `log` is at
    /// debug level or more.
    ///
    /// With `pin_dir`, the counter and configuration maps are pinned there (on
    /// bpffs) so that `bpftool map dump pinned ...` can read them; the pins
    /// are removed on drop.
    pub fn load(pin_dir: Option<&Path>) -> Result<XdpProgram, XdpError> {
        if EBPF_OBJECT.is_empty() {
            return Err(XdpError::ObjectMissing);
        }
        Self::load_bytes(EBPF_OBJECT, pin_dir, stack_ebpf::MAX_FLOWS)
    }

    /// [`XdpProgram::load`] with known-flow tables (`FLOWS`, `FLOWS6`) of
    /// `max_flows` entries each instead of [`stack_ebpf::MAX_FLOWS`]. While
    /// SYN cookies are in use, a segment of a flow the LRU table evicted
    /// is checked as a cookie ACK and dropped, so the table must hold
    /// every connection the engines keep (`xstack serve --xdp-max-flows`).
    pub fn load_sized(pin_dir: Option<&Path>, max_flows: u32) -> Result<XdpProgram, XdpError> {
        if EBPF_OBJECT.is_empty() {
            return Err(XdpError::ObjectMissing);
        }
        Self::load_bytes(EBPF_OBJECT, pin_dir, max_flows)
    }

    /// Loads an XDP object from bytes (see [`XdpProgram::load_sized`]).
    pub fn load_bytes(
        object: &[u8],
        pin_dir: Option<&Path>,
        max_flows: u32,
    ) -> Result<XdpProgram, XdpError> {
        if let Some(dir) = pin_dir {
            prepare_pin_dir(dir)?;
        }
        let level: u8 = match log::max_level() {
            log::LevelFilter::Off => 0,
            log::LevelFilter::Error => 1,
            log::LevelFilter::Warn => 2,
            log::LevelFilter::Info => 3,
            log::LevelFilter::Debug => 4,
            log::LevelFilter::Trace => 5,
        };
        let mut ebpf = EbpfLoader::new()
            .override_global(aya_log::LEVEL, &level, false)
            .map_max_entries("FLOWS", max_flows.max(1))
            .map_max_entries("FLOWS6", max_flows.max(1))
            .load(object)
            .map_err(|e| XdpError::Load(e.to_string()))?;
        let logger = if level >= 4 {
            match aya_log::EbpfLogger::init(&mut ebpf) {
                Ok(l) => Some(l),
                Err(e) => {
                    log::warn!("XDP log messages unavailable: {e}");
                    None
                }
            }
        } else {
            None
        };
        let prog: &mut Xdp = ebpf
            .program_mut(PROGRAM_NAME)
            .ok_or_else(|| XdpError::Load(format!("program {PROGRAM_NAME} not in the object")))?
            .try_into()
            .map_err(|e: ProgramError| XdpError::Load(e.to_string()))?;
        prog.load().map_err(|e| match e {
            ProgramError::LoadError {
                io_error,
                verifier_log,
            } => {
                let log_text = verifier_log.to_string();
                log::debug!("verifier log:\n{log_text}");
                XdpError::Verifier {
                    error: io_error.to_string(),
                    detail: verifier_detail(&log_text),
                }
            }
            other => XdpError::Load(other.to_string()),
        })?;
        let take = |ebpf: &mut Ebpf, name: &'static str| {
            let map = ebpf.take_map(name).ok_or(XdpError::Map {
                map: name,
                detail: "missing from the object".into(),
            })?;
            if let Some(dir) = pin_dir {
                if name != "XSKS" {
                    map.pin(dir.join(name.to_lowercase()))
                        .map_err(|e| XdpError::Map {
                            map: name,
                            detail: format!("pinning: {e}"),
                        })?;
                }
            }
            Ok::<_, XdpError>(map)
        };
        let xsks = XskMap::try_from(take(&mut ebpf, "XSKS")?).map_err(map_err("XSKS"))?;
        let counters =
            PerCpuArray::try_from(take(&mut ebpf, "COUNTERS")?).map_err(map_err("COUNTERS"))?;
        let queue_redirects = PerCpuArray::try_from(take(&mut ebpf, "QUEUE_REDIRECTS")?)
            .map_err(map_err("QUEUE_REDIRECTS"))?;
        let addrs = Array::try_from(take(&mut ebpf, "OWNED_ADDR_TABLE")?)
            .map_err(map_err("OWNED_ADDR_TABLE"))?;
        let port_bits = Array::try_from(take(&mut ebpf, "OWNED_PORT_BITS")?)
            .map_err(map_err("OWNED_PORT_BITS"))?;
        let addrs6 = Array::try_from(take(&mut ebpf, "OWNED_ADDR_TABLE6")?)
            .map_err(map_err("OWNED_ADDR_TABLE6"))?;
        let port_bits6 = Array::try_from(take(&mut ebpf, "OWNED_PORT_BITS6")?)
            .map_err(map_err("OWNED_PORT_BITS6"))?;
        let classes = PerCpuArray::try_from(take(&mut ebpf, "TCP_CLASSES")?)
            .map_err(map_err("TCP_CLASSES"))?;
        let config = Array::try_from(take(&mut ebpf, "FASTPATH_CONFIG")?)
            .map_err(map_err("FASTPATH_CONFIG"))?;
        let state = Array::try_from(take(&mut ebpf, "FASTPATH_STATE")?)
            .map_err(map_err("FASTPATH_STATE"))?;
        let signals = Array::try_from(take(&mut ebpf, "SIGNALS")?).map_err(map_err("SIGNALS"))?;
        let filter_until =
            Array::try_from(take(&mut ebpf, "FILTER_UNTIL")?).map_err(map_err("FILTER_UNTIL"))?;
        let secrets = Array::try_from(take(&mut ebpf, "SECRETS")?).map_err(map_err("SECRETS"))?;
        let deny = LpmTrie::try_from(take(&mut ebpf, "DENY_PREFIXES")?)
            .map_err(map_err("DENY_PREFIXES"))?;
        let allow = LpmTrie::try_from(take(&mut ebpf, "ALLOW_PREFIXES")?)
            .map_err(map_err("ALLOW_PREFIXES"))?;
        let deny6 = LpmTrie::try_from(take(&mut ebpf, "DENY_PREFIXES6")?)
            .map_err(map_err("DENY_PREFIXES6"))?;
        let allow6 = LpmTrie::try_from(take(&mut ebpf, "ALLOW_PREFIXES6")?)
            .map_err(map_err("ALLOW_PREFIXES6"))?;
        let mut p = XdpProgram {
            ebpf,
            xsks,
            counters,
            queue_redirects,
            addrs,
            addr_table: vec![AddrEntry::default(); ADDR_TABLE_LEN as usize],
            port_bits,
            slots: Vec::new(),
            addrs6,
            addr_table6: vec![Addr6Entry::default(); ADDR_TABLE_LEN as usize],
            port_bits6,
            slots6: Vec::new(),
            classes,
            config,
            state,
            signals,
            filter_until,
            secrets,
            deny,
            allow,
            deny6,
            allow6,
            attached: None,
            pin_dir: pin_dir.map(Path::to_path_buf),
            logger,
            source_key: crate::datapath::fastpath::random_source_key(),
        };
        // Safe defaults until the caller configures the fast path: no
        // cookies, no limits, a random secret.
        p.set_config(&crate::datapath::fastpath::FastpathSettings::default().to_config())?;
        p.set_secrets(&Secrets {
            current: crate::datapath::fastpath::random_secret(),
            previous: crate::datapath::fastpath::random_secret(),
            previous_until: 0,
            pad: 0,
        })?;
        Ok(p)
    }

    /// Writes the fast-path configuration; the running program uses it for
    /// the next packet (no reattach). Its `source_key` is replaced by this
    /// program's (random at load, or [`XdpProgram::set_source_key`]).
    pub fn set_config(&mut self, c: &FastpathConfig) -> Result<(), XdpError> {
        let c = FastpathConfig {
            source_key: self.source_key,
            ..*c
        };
        self.config.set(0, c, 0).map_err(map_err("FASTPATH_CONFIG"))
    }

    /// Replaces the key that picks a source's per-source SYN cells
    /// ([`stack_ebpf::limit`]) and rewrites the configuration with it. The
    /// key is random at load so that no one can aim sources at another's
    /// cells; a known key is for tests that need sources to collide.
    pub fn set_source_key(&mut self, key: stack_ebpf::limit::SourceKey) -> Result<(), XdpError> {
        self.source_key = key;
        let c = self.config()?;
        self.set_config(&c)
    }

    /// The fast-path configuration in force.
    pub fn config(&self) -> Result<FastpathConfig, XdpError> {
        self.config.get(&0, 0).map_err(map_err("FASTPATH_CONFIG"))
    }

    /// The program's fast-path state (SYN rate, cookie mode).
    pub fn fastpath_state(&self) -> Result<FastpathState, XdpError> {
        self.state.get(&0, 0).map_err(map_err("FASTPATH_STATE"))
    }

    /// Installs SYN cookie secrets (rotation: new current, old current as previous).
    pub fn set_secrets(&mut self, s: &Secrets) -> Result<(), XdpError> {
        self.secrets.set(0, *s, 0).map_err(map_err("SECRETS"))
    }

    /// The secrets in force.
    pub fn secrets(&self) -> Result<Secrets, XdpError> {
        self.secrets.get(&0, 0).map_err(map_err("SECRETS"))
    }

    /// Sets signal `index` (`stack_ebpf::SIGNAL_*`), e.g. "SYN queue full".
    pub fn set_signal(&mut self, index: u32, value: u32) -> Result<(), XdpError> {
        self.signals
            .set(index, value, 0)
            .map_err(map_err("SIGNALS"))
    }

    /// Arms the unknown-segment filter until `deadline_ns` (CLOCK_MONOTONIC
    /// ns, the clock of `bpf_ktime_get_ns`; see [`monotonic_ns`]): until
    /// then XDP drops segments without SYN for no known flow that are no
    /// valid cookie ACK, as while cookies are in use. 0 disarms it.
    pub fn set_filter_until(&mut self, deadline_ns: u64) -> Result<(), XdpError> {
        self.filter_until
            .set(0, deadline_ns, 0)
            .map_err(map_err("FILTER_UNTIL"))
    }

    /// The unknown-segment filter's deadline (0: never armed).
    pub fn filter_until(&self) -> Result<u64, XdpError> {
        self.filter_until
            .get(&0, 0)
            .map_err(map_err("FILTER_UNTIL"))
    }

    /// Adds (`add`) or removes a prefix of the deny (`deny`) or allow list.
    pub fn prefix(
        &mut self,
        deny: bool,
        net: impl Into<std::net::IpAddr>,
        len: u8,
        add: bool,
    ) -> Result<(), XdpError> {
        let net = match net.into() {
            std::net::IpAddr::V4(a) => a,
            std::net::IpAddr::V6(a) => return self.prefix6(deny, a, len, add),
        };
        let (trie, name) = if deny {
            (&mut self.deny, "DENY_PREFIXES")
        } else {
            (&mut self.allow, "ALLOW_PREFIXES")
        };
        let key = LpmKey::new(u32::from(len.min(32)), u32::from_ne_bytes(net.octets()));
        if add {
            trie.insert(&key, 1, 0).map_err(map_err(name))
        } else {
            match trie.remove(&key) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
                Err(e) => Err(map_err(name)(e)),
            }
        }
    }

    /// [`prefix`](Self::prefix) for an IPv6 prefix (`len` up to 128).
    fn prefix6(&mut self, deny: bool, net: Ipv6Addr, len: u8, add: bool) -> Result<(), XdpError> {
        let (trie, name) = if deny {
            (&mut self.deny6, "DENY_PREFIXES6")
        } else {
            (&mut self.allow6, "ALLOW_PREFIXES6")
        };
        let key = LpmKey::new(u32::from(len.min(128)), net.octets());
        if add {
            trie.insert(&key, 1, 0).map_err(map_err(name))
        } else {
            match trie.remove(&key) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
                Err(e) => Err(map_err(name)(e)),
            }
        }
    }

    /// TCP segments by class, summed over CPUs.
    pub fn tcp_classes(&self) -> Result<BTreeMap<&'static str, u64>, XdpError> {
        sum_per_cpu::<TcpClass>(&self.classes, "TCP_CLASSES")
    }

    /// Loads one of the never-attached benchmark programs of the object
    /// (`xstack_bench_base|ours|kernel`), sharing this program's maps.
    pub fn bench_program(&mut self, name: &str) -> Result<&mut Xdp, XdpError> {
        let prog: &mut Xdp = self
            .ebpf
            .program_mut(name)
            .ok_or_else(|| XdpError::Load(format!("program {name} not in the object")))?
            .try_into()
            .map_err(|e: ProgramError| XdpError::Load(e.to_string()))?;
        if prog.fd().is_err() {
            prog.load().map_err(|e| match e {
                ProgramError::LoadError {
                    io_error,
                    verifier_log,
                } => XdpError::Verifier {
                    error: io_error.to_string(),
                    detail: verifier_detail(&verifier_log.to_string()),
                },
                other => XdpError::Load(other.to_string()),
            })?;
        }
        Ok(prog)
    }

    /// The loaded program, for `BPF_PROG_TEST_RUN`.
    pub fn program(&mut self) -> &mut Xdp {
        // The name was checked in `load_bytes`.
        match self.ebpf.program_mut(PROGRAM_NAME) {
            Some(p) => match p.try_into() {
                Ok(x) => x,
                Err(_) => unreachable!("{PROGRAM_NAME} was loaded as XDP"),
            },
            None => unreachable!("{PROGRAM_NAME} was found at load"),
        }
    }

    /// Attaches to `iface`. Refuses when any XDP program is already there.
    /// Returns the mode actually used ("driver" or "generic").
    pub fn attach(&mut self, iface: &str, mode: AttachMode) -> Result<&'static str, XdpError> {
        let known = std::ffi::CString::new(iface)
            // SAFETY: if_nametoindex with a valid C string.
            .map(|c| unsafe { libc::if_nametoindex(c.as_ptr()) } != 0)
            .unwrap_or(false);
        if !known {
            return Err(XdpError::UnknownInterface(iface.to_string()));
        }
        if let Some(p) = attached_program(iface) {
            let owner = if p.name == PROGRAM_NAME {
                " by another xstack instance".to_string()
            } else {
                String::new()
            };
            return Err(XdpError::AlreadyAttached {
                iface: iface.into(),
                id: p.id,
                name: p.name,
                owner,
            });
        }
        let try_mode = |this: &mut Self, m: XdpMode, name: &'static str| {
            this.program()
                .attach(iface, m)
                .map(|_| name)
                .map_err(|e| XdpError::Attach {
                    iface: iface.into(),
                    mode: name,
                    detail: error_chain(&e),
                })
        };
        let used = match mode {
            AttachMode::Native => try_mode(self, XdpMode::Driver, "driver")?,
            AttachMode::Generic => try_mode(self, XdpMode::Skb, "generic")?,
            AttachMode::Auto => match try_mode(self, XdpMode::Driver, "driver") {
                Ok(m) => m,
                Err(e) => {
                    // Someone may have attached in between: never fall back over them.
                    if let Some(p) = attached_program(iface) {
                        return Err(XdpError::AlreadyAttached {
                            iface: iface.into(),
                            id: p.id,
                            name: p.name,
                            owner: String::new(),
                        });
                    }
                    log::warn!("{e}; falling back to generic (skb) mode, which is slower");
                    try_mode(self, XdpMode::Skb, "generic")?
                }
            },
        };
        self.attached = Some((iface.to_string(), used));
        Ok(used)
    }

    /// Puts the AF_XDP socket `fd` in the XSKMAP slot of `queue`.
    pub fn register_socket(&mut self, queue: u32, fd: RawFd) -> Result<(), XdpError> {
        if queue >= MAX_QUEUES {
            return Err(XdpError::Map {
                map: "XSKS",
                detail: format!("queue {queue} is above the limit of {MAX_QUEUES}"),
            });
        }
        self.xsks.set(queue, fd, 0).map_err(map_err("XSKS"))
    }

    /// The slot of `addr`'s ports in `OWNED_PORT_BITS`, given it the first
    /// time (by [`XdpProgram::own_addr`] or [`XdpProgram::own_port`],
    /// whichever comes first).
    fn slot(&mut self, addr: Ipv4Addr) -> Result<u32, XdpError> {
        slot_of(&mut self.slots, addr, MAX_OWNED_ADDRS, "OWNED_PORT_BITS")
    }

    /// Claims `addr` with `ADDR_*` `flags`, its port slot beside them, in
    /// its entry of the owned-address table (the one it has, or the first
    /// free one from its home on).
    fn claim_addr(&mut self, addr: Ipv4Addr, flags: u32) -> Result<(), XdpError> {
        let slot = self.slot(addr)?;
        let entry = AddrEntry {
            addr: u32::from_ne_bytes(addr.octets()),
            flags: ADDR_IN_USE | flags | slot << ADDR_SLOT_SHIFT,
        };
        put_entry(
            &mut self.addrs,
            &mut self.addr_table,
            "OWNED_ADDR_TABLE",
            &entry.addr,
            entry,
            addr,
        )
    }

    /// Claims `addr`: ARP and ICMP for it go to the engine.
    pub fn own_addr(&mut self, addr: Ipv4Addr) -> Result<(), XdpError> {
        self.claim_addr(addr, ADDR_ARP | ADDR_ICMP)
    }

    /// Claims `addr` as the engine's alone: ARP, ICMP and TCP to every port
    /// (closed ones are answered with RST by the engine, as a host does).
    /// For an address no kernel interface has.
    pub fn own_addr_exclusively(&mut self, addr: Ipv4Addr) -> Result<(), XdpError> {
        self.claim_addr(addr, ADDR_ARP | ADDR_ICMP | ADDR_ALL_TCP)
    }

    /// Claims TCP (`addr`, `port`): its bit in the address's slot of
    /// `OWNED_PORT_BITS`. Takes effect once `addr` is owned
    /// ([`XdpProgram::own_addr`]; until then its TCP stays the kernel's).
    pub fn own_port(&mut self, addr: Ipv4Addr, port: u16) -> Result<(), XdpError> {
        let slot = self.slot(addr)?;
        set_port_bit(&mut self.port_bits, "OWNED_PORT_BITS", slot, port)
    }

    /// Claims the IPv6 `addr`: neighbour discovery (also at its
    /// solicited-node group) and ICMPv6 for it go to the engine; with
    /// `exclusive`, TCP to every port too (closed ones answered with RST).
    /// Its entry in `OWNED_ADDR_TABLE6` carries its slot of
    /// `OWNED_PORT_BITS6`, as over IPv4.
    pub fn own_addr6(&mut self, addr: Ipv6Addr, exclusive: bool) -> Result<(), XdpError> {
        let all = if exclusive { ADDR_ALL_TCP } else { 0 };
        let slot = slot_of(&mut self.slots6, addr, MAX_OWNED_ADDRS6, "OWNED_PORT_BITS6")?;
        let key = Addr6Key::new(addr.octets());
        let entry = Addr6Entry {
            addr: key.addr,
            flags: ADDR_IN_USE | ADDR_ARP | ADDR_ICMP | all | slot << ADDR_SLOT_SHIFT,
        };
        put_entry(
            &mut self.addrs6,
            &mut self.addr_table6,
            "OWNED_ADDR_TABLE6",
            &key,
            entry,
            addr,
        )
    }

    /// Claims TCP (`addr`, `port`) over IPv6: its bit in the address's
    /// slot of `OWNED_PORT_BITS6`. Takes effect once `addr` is owned
    /// ([`XdpProgram::own_addr6`]).
    pub fn own_port6(&mut self, addr: Ipv6Addr, port: u16) -> Result<(), XdpError> {
        let slot = slot_of(&mut self.slots6, addr, MAX_OWNED_ADDRS6, "OWNED_PORT_BITS6")?;
        set_port_bit(&mut self.port_bits6, "OWNED_PORT_BITS6", slot, port)
    }

    /// Sums the per-CPU counters.
    pub fn counters(&self) -> Result<BTreeMap<&'static str, u64>, XdpError> {
        sum_per_cpu::<Counter>(&self.counters, "COUNTERS")
    }

    /// Packets redirected per rx queue, for queues `0..n`.
    pub fn queue_redirects(&self, n: u32) -> Result<Vec<u64>, XdpError> {
        (0..n.min(MAX_QUEUES))
            .map(|q| {
                self.queue_redirects
                    .get(&q, 0)
                    .map(|v| v.iter().sum())
                    .map_err(map_err("QUEUE_REDIRECTS"))
            })
            .collect()
    }

    /// Forwards log records of the XDP program to the `log` crate.
    pub fn flush_logs(&mut self) {
        if let Some(l) = self.logger.as_mut() {
            l.flush();
        }
    }
}

impl Drop for XdpProgram {
    fn drop(&mut self) {
        if let Some(dir) = self.pin_dir.take() {
            let _ = std::fs::remove_dir_all(&dir);
            // The shared `xstack/` directory goes too once no instance has
            // pins in it (remove_dir refuses a non-empty one).
            if let Some(parent) = dir.parent() {
                let _ = std::fs::remove_dir(parent);
            }
        }
        // The link and program are released when `ebpf` drops.
    }
}

/// Checks bpffs and clears `dir` of stale pins (of an instance that was
/// killed; the caller holds the interface lock, so no live instance owns them).
fn prepare_pin_dir(dir: &Path) -> Result<(), XdpError> {
    let root = bpffs_root();
    if !is_bpffs(&root) {
        return Err(XdpError::BpffsMissing(root.display().to_string()));
    }
    if dir.exists() {
        let _ = std::fs::remove_dir_all(dir);
    }
    // Another instance may remove the shared parent, empty, between the
    // two steps of create_dir_all: try again.
    let mut tries = 0;
    loop {
        match std::fs::create_dir_all(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && tries < 3 => tries += 1,
            Err(e) => {
                return Err(XdpError::Map {
                    map: "pins",
                    detail: format!("{}: {e}", dir.display()),
                })
            }
        }
    }
}

/// Whether `path` is a mounted bpffs.
pub fn is_bpffs(path: &Path) -> bool {
    const BPF_FS_MAGIC: i64 = 0xcafe4a11;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: statfs with a valid C string and an out-struct.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == BPF_FS_MAGIC
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of `bpf_ktime_get_ns`.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid out-pointer to a timespec.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifier_detail_picks_the_error_line() {
        let log = "0: (b7) r0 = 0\n1: (95) exit\nR0 !read_ok\nprocessed 2 insns\n";
        assert_eq!(verifier_detail(log), "R0 !read_ok");
        assert_eq!(verifier_detail(""), "no verifier output");
    }
}
