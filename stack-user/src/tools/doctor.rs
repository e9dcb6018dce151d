//! `xstack doctor`: whether an interface will work with xstack, and how
//! fast, on one screen.
//!
//! [`gather`] reads the facts (links over rtnetlink with `ip -json`,
//! offloads and channels over the ethtool ioctls, the veth peer from its own
//! network namespace, and with `--probe` a real attach and bind);
//! [`assess`] turns them into checks, each `ok`, `warn` or `fail` with the
//! reason and, for a problem, the exact command that fixes it. `assess` is
//! pure, so every rule is unit-tested on made-up facts.

use std::net::IpAddr;
#[cfg(test)]
use std::net::Ipv4Addr;

use serde::Serialize;

use crate::{
    datapath::{
        xdp::{self, AttachMode, XdpProgram},
        xsk::{XskConfig, XskMode, XskSocket},
    },
    runtime::sys::{self, Offloads, SysError},
};

/// `XDP_PACKET_HEADROOM`: what the kernel keeps in front of every frame an
/// AF_XDP socket receives (include/uapi/linux/bpf.h).
pub const XDP_PACKET_HEADROOM: u32 = 256;
/// Ethernet header without a VLAN tag.
pub const ETH_HLEN: u32 = 14;

/// The largest MTU whose frames fit one AF_XDP frame: the UMEM frame size
/// xstack uses ([`XskConfig`]'s default, 4096) less the kernel's headroom
/// and the Ethernet header: 4096 − 256 − 14 = 3826. A longer frame is
/// dropped by the kernel before the socket sees it (`xsk_rcv`: `len >
/// xsk_pool_get_rx_frame_size`).
pub fn max_mtu() -> u32 {
    XskConfig::default().frame_size - XDP_PACKET_HEADROOM - ETH_HLEN
}

/// The largest MTU of a veth's *peer* with which the kernel attaches an XDP
/// program (without fragment support, as ours is) in driver mode: one page
/// less `VETH_XDP_HEADROOM` (256 + `NET_IP_ALIGN`, which is 0 on x86 and 2
/// elsewhere), `struct skb_shared_info` (320 bytes on 64-bit) and the
/// Ethernet header (drivers/net/veth.c, `veth_xdp_set`: "Peer MTU is too
/// large to set XDP", ERANGE). 3506 on x86-64 with 4 KiB pages (measured:
/// 3506 attaches, 3507 does not).
pub fn veth_peer_max_mtu() -> u32 {
    const NET_IP_ALIGN: u32 = if cfg!(any(target_arch = "x86", target_arch = "x86_64")) {
        0
    } else {
        2
    };
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.clamp(4096, 65536) as u32;
    page - (XDP_PACKET_HEADROOM + NET_IP_ALIGN) - 320 - ETH_HLEN
}

/// Oldest kernel xstack runs on (BPF links for XDP, `XDP_STATISTICS` v2).
pub const MIN_KERNEL: (u32, u32) = (5, 9);

/// Drivers with native (driver-mode) XDP in mainline Linux.
const NATIVE_XDP_DRIVERS: &[&str] = &[
    "veth",
    "virtio_net",
    "tun",
    "i40e",
    "ice",
    "ixgbe",
    "ixgbevf",
    "igb",
    "igc",
    "idpf",
    "mlx4_en",
    "mlx4_core",
    "mlx5_core",
    "bnxt_en",
    "nfp",
    "qede",
    "ena",
    "gve",
    "sfc",
    "hv_netvsc",
    "stmmac",
    "fec",
    "mvneta",
    "mvpp2",
    "dpaa2-eth",
    "tsnep",
    "atlantic",
    "bonding",
];

/// Drivers with AF_XDP zero-copy (`XDP_SETUP_XSK_POOL`) in mainline Linux.
const ZERO_COPY_DRIVERS: &[&str] = &[
    "i40e",
    "ice",
    "ixgbe",
    "igb",
    "igc",
    "idpf",
    "mlx5_core",
    "stmmac",
    "gve",
    "virtio_net",
    "tsnep",
];

/// What to check.
#[derive(Clone, Debug)]
pub struct Options {
    /// The interface xstack would serve on (in this network namespace).
    pub iface: String,
    /// The address it would own (IPv4 or IPv6), when given.
    pub ip: Option<IpAddr>,
    /// Load and attach the program in driver mode and bind an AF_XDP socket
    /// with zero-copy to queue 0, then undo both (root only).
    pub probe: bool,
}

/// The veth peer, read in its own network namespace.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PeerFacts {
    /// Namespace of the peer (its /run/netns name); `None` when it is this
    /// one.
    pub netns: Option<String>,
    /// Peer interface name, when found.
    pub iface: Option<String>,
    /// Why the peer could not be read (then the fields below are unset).
    pub unknown: Option<String>,
    /// Administratively up.
    pub up: bool,
    /// MTU.
    pub mtu: Option<u32>,
    /// The XDP program attached there, as "name (mode)".
    pub xdp: Option<String>,
    /// Its offloads.
    pub offloads: Option<Offloads>,
}

impl PeerFacts {
    /// Whether the peer runs NAPI, which veth only does with GRO on or an
    /// XDP program attached (`veth_gro_requested`, `veth_enable_xdp`):
    /// without it, `XDP_TX` and redirects into this veth are dropped.
    pub fn napi(&self) -> Option<bool> {
        if self.unknown.is_some() {
            return None;
        }
        Some(self.xdp.is_some() || self.offloads.is_some_and(|o| o.gro))
    }

    /// `cmd` run where the peer lives.
    fn in_ns(&self, cmd: &str) -> String {
        match &self.netns {
            Some(ns) => format!("ip netns exec {ns} {cmd}"),
            None => cmd.to_string(),
        }
    }

    fn name(&self) -> &str {
        self.iface.as_deref().unwrap_or("PEER")
    }
}

/// What `--probe` found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ProbeFacts {
    /// Why nothing was probed.
    pub skipped: Option<String>,
    /// Whether the program attached in driver mode (`None`: not tried).
    pub native: Option<bool>,
    /// The attach error.
    pub native_error: Option<String>,
    /// Whether a zero-copy bind on queue 0 succeeded (`None`: not tried).
    pub zero_copy: Option<bool>,
    /// The bind error.
    pub zero_copy_error: Option<String>,
}

/// The program attached to the interface now.
#[derive(Clone, Debug, Serialize)]
pub struct AttachedFacts {
    /// Program name.
    pub name: String,
    /// Program id.
    pub id: u32,
    /// "driver", "generic" or "offload".
    pub mode: String,
    /// Whether it is xstack's.
    pub xstack: bool,
}

/// Everything [`assess`] looks at.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Facts {
    /// Interface.
    pub iface: String,
    /// Driver (`veth`, `mlx5_core`, ...; empty when unknown).
    pub driver: String,
    /// Kernel release.
    pub kernel: String,
    /// Kernel major.minor, when it parses.
    pub kernel_version: Option<(u32, u32)>,
    /// Administratively up.
    pub up: bool,
    /// Carrier (`LOWER_UP`).
    pub carrier: bool,
    /// MTU.
    pub mtu: u32,
    /// Active rx channels (what xstack serves by default).
    pub rx_queues: u32,
    /// Rx queues allocated (the channel maximum).
    pub max_rx_queues: u32,
    /// Offloads, when the driver reports them.
    pub offloads: Option<Offloads>,
    /// VLAN devices stacked on the interface.
    pub vlan_devices: Vec<String>,
    /// The XDP program attached now.
    pub attached: Option<AttachedFacts>,
    /// Why `xstack serve` would be refused for privileges, if it would.
    pub serve_privileges: Option<String>,
    /// `--ip`.
    pub ip: Option<IpAddr>,
    /// Whether `--ip` is on a kernel interface (`None`: unknown / not given).
    pub ip_on_kernel: Option<bool>,
    /// The veth peer (veth only).
    pub peer: Option<PeerFacts>,
    /// `--probe` results.
    pub probe: Option<ProbeFacts>,
}

/// How a check came out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Fine (or handled by xstack).
    Ok,
    /// Works, but slower or with a caveat.
    Warn,
    /// xstack will not work until this is fixed.
    Fail,
}

/// One line of the report.
#[derive(Clone, Debug, Serialize)]
pub struct Check {
    /// Stable name for scripts (`mtu`, `peer_napi`, ...).
    pub key: &'static str,
    /// Outcome.
    pub level: Level,
    /// What was found.
    pub what: String,
    /// Why it matters (or why it is fine).
    pub why: String,
    /// The command that fixes it, for a problem.
    pub fix: Option<String>,
}

/// The whole answer.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Interface.
    pub iface: String,
    /// True when nothing failed: `xstack serve` will work here.
    pub works: bool,
    /// One line.
    pub summary: String,
    /// "driver", "generic" or "unknown" (until attach).
    pub xdp_mode: &'static str,
    /// AF_XDP zero-copy (`None`: unknown until bind).
    pub zero_copy: Option<bool>,
    /// The largest MTU that fits an AF_XDP frame.
    pub max_mtu: u32,
    /// Whether the veth peer runs NAPI (veth only; `None` elsewhere or
    /// when unknown).
    pub peer_napi: Option<bool>,
    /// How cookie SYN-ACKs leave: "xdp_tx" (from the XDP program) or
    /// "engine" (through AF_XDP TX; what xstack uses on veth).
    pub cookie_path: &'static str,
    /// The checks, in screen order.
    pub checks: Vec<Check>,
    /// The facts they were made from.
    pub facts: Facts,
}

impl Report {
    /// The check called `key`.
    pub fn check(&self, key: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.key == key)
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let d = &self.facts;
        writeln!(
            f,
            "xstack doctor: {} ({}, kernel {})",
            self.iface,
            if d.driver.is_empty() {
                "driver unknown"
            } else {
                &d.driver
            },
            d.kernel
        )?;
        for c in &self.checks {
            let level = match c.level {
                Level::Ok => "ok",
                Level::Warn => "warn",
                Level::Fail => "fail",
            };
            write!(f, "{level:<5} {}", c.what)?;
            match (&c.why, &c.fix) {
                (why, Some(fix)) if !why.is_empty() => write!(f, "  ({why}; fix: {fix})")?,
                (_, Some(fix)) => write!(f, "  (fix: {fix})")?,
                (why, None) if !why.is_empty() => write!(f, "  ({why})")?,
                _ => {}
            }
            writeln!(f)?;
        }
        writeln!(f, "{}", self.summary)
    }
}

/// Reads the facts about `opts.iface` in the calling thread's network
/// namespace. Fails only when the interface does not exist, or when
/// `--probe` is asked for without the privileges it needs.
pub fn gather(opts: &Options) -> Result<Facts, SysError> {
    let itf = sys::interface(&opts.iface)?;
    if opts.probe {
        sys::check_privileges("xstack doctor --probe")?;
    }
    let link = sys::link_details(Some(&opts.iface))
        .and_then(|v| v.into_iter().next())
        .unwrap_or_default();
    let flags: Vec<&str> = link["flags"]
        .as_array()
        .map(|a| a.iter().filter_map(|f| f.as_str()).collect())
        .unwrap_or_default();
    let attached = xdp::parse_attached(&link).map(|p| AttachedFacts {
        xstack: p.name == stack_ebpf::PROGRAM_NAME,
        name: p.name,
        id: p.id,
        mode: p.mode,
    });
    let vlan_devices = sys::link_details(None)
        .unwrap_or_default()
        .iter()
        .filter(|l| {
            l["linkinfo"]["info_kind"].as_str() == Some("vlan")
                && l["link"].as_str() == Some(opts.iface.as_str())
        })
        .filter_map(|l| l["ifname"].as_str().map(str::to_string))
        .collect();
    let (kernel, kernel_version) = sys::kernel_release();
    let peer = (itf.driver == "veth").then(|| veth_peer(&link));
    let probe = opts.probe.then(|| probe(&opts.iface, attached.is_some()));
    Ok(Facts {
        iface: opts.iface.clone(),
        driver: itf.driver.clone(),
        kernel,
        kernel_version,
        up: flags.contains(&"UP"),
        carrier: flags.contains(&"LOWER_UP"),
        mtu: link["mtu"].as_u64().unwrap_or(1500) as u32,
        rx_queues: itf.rx_queues,
        max_rx_queues: itf.max_rx_queues,
        offloads: sys::offloads(&opts.iface),
        vlan_devices,
        attached,
        serve_privileges: sys::check_privileges("xstack serve")
            .err()
            .map(|e| e.to_string()),
        ip: opts.ip,
        ip_on_kernel: opts.ip.and_then(sys::address_on_kernel),
        peer,
        probe,
    })
}

/// Finds the other end of veth `link` (`link_index`, in the namespace
/// `link_netnsid` names) and reads it there.
fn veth_peer(link: &serde_json::Value) -> PeerFacts {
    // Same namespace: `ip` names the peer ("link": "NAME"); another one:
    // its index there and the namespace id.
    let by_name = link["link"].as_str().map(str::to_string);
    let index = link["link_index"].as_u64();
    let read = |want_name: Option<String>, want_index: Option<u64>| {
        move || -> Option<PeerFacts> {
            let links = sys::link_details(None)?;
            let l = links.iter().find(|l| {
                want_name
                    .as_deref()
                    .is_some_and(|n| l["ifname"].as_str() == Some(n))
                    || want_index.is_some_and(|i| l["ifindex"].as_u64() == Some(i))
            })?;
            let name = l["ifname"].as_str()?.to_string();
            Some(PeerFacts {
                netns: None,
                up: l["flags"]
                    .as_array()
                    .is_some_and(|f| f.iter().any(|x| x.as_str() == Some("UP"))),
                mtu: l["mtu"].as_u64().map(|m| m as u32),
                xdp: xdp::parse_attached(l).map(|p| format!("{} ({})", p.name, p.mode)),
                offloads: sys::offloads(&name),
                iface: Some(name),
                unknown: None,
            })
        }
    };
    let unknown = |netns: Option<String>, why: String| PeerFacts {
        netns,
        unknown: Some(why),
        ..Default::default()
    };
    let Some(nsid) = link["link_netnsid"].as_u64() else {
        return read(by_name, index)()
            .unwrap_or_else(|| unknown(None, "the peer was not found in this namespace".into()));
    };
    let Some(ns) = sys::netns_ids()
        .into_iter()
        .find_map(|(id, name)| (id == nsid).then_some(name))
    else {
        return unknown(
            None,
            format!(
                "the peer (ifindex {}) is in namespace id {nsid}, which has no name under /run/netns",
                index.unwrap_or(0)
            ),
        );
    };
    match sys::in_named_netns(&ns, read(None, index)) {
        Ok(Some(mut p)) => {
            p.netns = Some(ns);
            p
        }
        Ok(None) => unknown(
            Some(ns.clone()),
            format!("no interface with index {} in {ns}", index.unwrap_or(0)),
        ),
        Err(e) => unknown(Some(ns.clone()), format!("cannot enter {ns}: {e}")),
    }
}

/// `--probe`: attach in driver mode, bind zero-copy on queue 0, undo both.
/// Skipped while a program is attached (the interface is in use).
fn probe(iface: &str, attached: bool) -> ProbeFacts {
    if attached {
        return ProbeFacts {
            skipped: Some("an XDP program is attached (the interface is in use)".into()),
            ..Default::default()
        };
    }
    let mut p = ProbeFacts::default();
    match XdpProgram::load(None) {
        Ok(mut prog) => {
            match prog.attach(iface, AttachMode::Native) {
                Ok(_) => p.native = Some(true),
                Err(e) => {
                    p.native = Some(false);
                    p.native_error = Some(e.to_string());
                }
            }
            // Dropping the program closes its BPF link: detached.
            drop(prog);
        }
        Err(e) => p.native_error = Some(e.to_string()),
    }
    let config = XskConfig {
        frames: 64,
        ring_size: 64,
        mode: XskMode::Zerocopy,
        ..XskConfig::default()
    };
    match XskSocket::open(iface, 0, &config) {
        Ok(sock) => {
            p.zero_copy = Some(sock.is_zero_copy());
            drop(sock);
        }
        Err(e @ crate::datapath::xsk::XskError::Socket { call: "bind", .. }) => {
            p.zero_copy = Some(false);
            p.zero_copy_error = Some(e.to_string());
        }
        Err(e) => p.zero_copy_error = Some(e.to_string()),
    }
    p
}

/// Turns facts into the report.
pub fn assess(facts: Facts) -> Report {
    let d = &facts;
    let iface = d.iface.as_str();
    let veth = d.driver == "veth";
    let mut checks = Vec::new();
    let mut add = |key, level, what: String, why: String, fix: Option<String>| {
        checks.push(Check {
            key,
            level,
            what,
            why,
            fix,
        })
    };

    // The link itself.
    if !d.up {
        add(
            "link",
            Level::Fail,
            format!("{iface} is down"),
            "nothing is received on a down interface".into(),
            Some(format!("ip link set dev {iface} up")),
        );
    } else if !d.carrier {
        let (why, fix) = match d.peer.as_ref() {
            Some(p) if !p.up && p.unknown.is_none() => (
                format!("its veth peer {} is down", p.name()),
                Some(p.in_ns(&format!("ip link set dev {} up", p.name()))),
            ),
            _ => ("no carrier: check the cable or the other end".into(), None),
        };
        add(
            "link",
            Level::Fail,
            format!("{iface} has no carrier"),
            why,
            fix,
        );
    } else {
        add(
            "link",
            Level::Ok,
            format!("{iface} is up"),
            format!(
                "driver {}",
                if d.driver.is_empty() {
                    "unknown"
                } else {
                    &d.driver
                }
            ),
            None,
        );
    }

    // Kernel.
    match d.kernel_version {
        Some(v) if v < MIN_KERNEL => add(
            "kernel",
            Level::Fail,
            format!("kernel {} is older than 5.9", d.kernel),
            "xstack attaches XDP with BPF links and reads XDP_STATISTICS v2".into(),
            Some("upgrade the kernel to 5.9 or newer".into()),
        ),
        _ => add(
            "kernel",
            Level::Ok,
            format!("kernel {}", d.kernel),
            String::new(),
            None,
        ),
    }

    // XDP attach mode.
    let peer_mtu_too_big = d
        .peer
        .as_ref()
        .and_then(|p| p.mtu)
        .is_some_and(|m| m > veth_peer_max_mtu());
    let probe = d.probe.as_ref();
    let xdp_mode: &'static str = if let Some(a) = &d.attached {
        if a.xstack {
            add(
                "xdp",
                Level::Ok,
                format!("XDP: an xstack instance is attached in {} mode", a.mode),
                format!("program id {}", a.id),
                None,
            );
        } else {
            add(
                "xdp",
                Level::Fail,
                format!("XDP: another program is attached ({} id {})", a.name, a.id),
                "xstack never replaces an attached program".into(),
                Some(format!(
                    "stop its owner, or if it is stale: ip link set dev {iface} xdp off"
                )),
            );
        }
        match a.mode.as_str() {
            "driver" => "driver",
            "generic" => "generic",
            _ => "unknown",
        }
    } else if let Some(native) = probe.and_then(|p| p.native) {
        if native {
            add(
                "xdp",
                Level::Ok,
                "XDP: driver (native) mode".into(),
                "probe: attached in driver mode and detached".into(),
                None,
            );
            "driver"
        } else {
            let err = probe
                .and_then(|p| p.native_error.clone())
                .unwrap_or_default();
            let fix = peer_mtu_too_big.then(|| {
                let p = d.peer.as_ref().expect("peer_mtu_too_big implies a peer");
                p.in_ns(&format!("ip link set dev {} mtu 1500", p.name()))
            });
            add(
                "xdp",
                Level::Warn,
                "XDP: generic (skb) mode only".into(),
                format!("probe: driver-mode attach failed ({err}); generic mode builds an skb per packet, several times slower"),
                fix,
            );
            "generic"
        }
    } else if veth && peer_mtu_too_big {
        let p = d.peer.as_ref().expect("peer_mtu_too_big implies a peer");
        add(
            "xdp",
            Level::Warn,
            "XDP: generic (skb) mode: the veth peer's MTU is too big for driver mode".into(),
            format!(
                "veth attaches XDP in driver mode only while the peer's MTU is at most {} (peer {}: {})",
                veth_peer_max_mtu(),
                p.name(),
                p.mtu.unwrap_or(0)
            ),
            Some(p.in_ns(&format!("ip link set dev {} mtu 1500", p.name()))),
        );
        "generic"
    } else if NATIVE_XDP_DRIVERS.contains(&d.driver.as_str()) {
        add(
            "xdp",
            Level::Ok,
            "XDP: driver (native) mode".into(),
            if veth {
                "veth runs XDP in driver mode".to_string()
            } else {
                format!(
                    "{} implements XDP; confirmed only at attach (xstack doctor --iface {iface} --probe)",
                    d.driver
                )
            },
            None,
        );
        "driver"
    } else {
        add(
            "xdp",
            Level::Warn,
            "XDP: native mode unknown until attach".into(),
            format!(
                "{} is not known to implement XDP; xstack then falls back to generic (skb) mode, several times slower; `--probe` attaches once to find out",
                if d.driver.is_empty() { "the driver".to_string() } else { format!("driver {}", d.driver) }
            ),
            None,
        );
        "unknown"
    };

    // Zero-copy.
    let zero_copy = match probe.and_then(|p| p.zero_copy) {
        Some(true) => {
            add(
                "zero_copy",
                Level::Ok,
                "AF_XDP zero-copy: yes".into(),
                "probe: bound queue 0 with XDP_ZEROCOPY".into(),
                None,
            );
            Some(true)
        }
        Some(false) => {
            add(
                "zero_copy",
                Level::Ok,
                "AF_XDP zero-copy: no (copy mode)".into(),
                "probe: the driver refused XDP_ZEROCOPY; copy mode copies each frame once".into(),
                None,
            );
            Some(false)
        }
        None if veth => {
            add(
                "zero_copy",
                Level::Ok,
                "AF_XDP zero-copy: no (copy mode)".into(),
                "veth has none; copy mode copies each frame once".into(),
                None,
            );
            Some(false)
        }
        None if ZERO_COPY_DRIVERS.contains(&d.driver.as_str()) => {
            add(
                "zero_copy",
                Level::Ok,
                "AF_XDP zero-copy: expected".into(),
                format!(
                    "{} supports XDP_ZEROCOPY; `--xsk-mode auto` tries it first; `--probe` binds once to confirm",
                    d.driver
                ),
                None,
            );
            None
        }
        None => {
            add(
                "zero_copy",
                Level::Ok,
                "AF_XDP zero-copy: unknown until bind".into(),
                "`--xsk-mode auto` tries zero-copy and falls back to copy mode; `--probe` binds once to find out".into(),
                None,
            );
            None
        }
    };

    // Channels.
    let (q, max) = (d.rx_queues, d.max_rx_queues.max(d.rx_queues));
    add(
        "queues",
        Level::Ok,
        format!("channels: {q} active of {max}"),
        if q < max {
            let cmd = if veth {
                format!("ethtool -L {iface} rx {max} tx {max}")
            } else {
                format!("ethtool -L {iface} combined {max}")
            };
            format!("xstack serves the active ones, one engine each; for {max}: {cmd}")
        } else {
            "xstack serves all, one engine each".to_string()
        },
        None,
    );

    // MTU against the AF_XDP frame.
    let limit = max_mtu();
    if d.mtu > limit {
        add(
            "mtu",
            Level::Fail,
            format!("MTU {} is above {limit}", d.mtu),
            format!(
                "a frame of MTU + {ETH_HLEN} bytes must fit an AF_XDP frame ({} − {XDP_PACKET_HEADROOM} headroom): longer ones are dropped, and the engine would advertise an MSS the frames cannot carry",
                XskConfig::default().frame_size
            ),
            Some(format!("ip link set dev {iface} mtu 1500")),
        );
    } else {
        add(
            "mtu",
            Level::Ok,
            format!("MTU {} (limit {limit})", d.mtu),
            format!(
                "fits an AF_XDP frame: {} − {XDP_PACKET_HEADROOM} headroom − {ETH_HLEN}",
                XskConfig::default().frame_size
            ),
            None,
        );
    }

    // Offloads of the interface itself.
    match d.offloads {
        None => add(
            "offloads",
            Level::Warn,
            "offloads: unknown".into(),
            format!("the driver answers no ethtool queries; check `ethtool -k {iface}` for large-receive-offload and rx-vlan-offload"),
            None,
        ),
        Some(o) => {
            if o.lro {
                add(
                    "lro",
                    Level::Fail,
                    "LRO on".into(),
                    "merged frames break XDP: drivers refuse driver mode with LRO on, and merged frames do not fit an AF_XDP frame".into(),
                    Some(format!("ethtool -K {iface} lro off")),
                );
            } else {
                add("lro", Level::Ok, "LRO off".into(), String::new(), None);
            }
            if !o.gro {
                add("gro", Level::Ok, "GRO off".into(), String::new(), None);
            } else if xdp_mode == "driver" {
                add(
                    "gro",
                    Level::Ok,
                    "GRO on".into(),
                    "in driver mode XDP runs before GRO; only what xstack passes to the kernel is merged".into(),
                    None,
                );
            } else {
                add(
                    "gro",
                    Level::Warn,
                    "GRO on".into(),
                    format!(
                        "{}XDP runs after GRO and sees merged frames bigger than an AF_XDP frame, which are dropped",
                        if xdp_mode == "generic" { "in generic mode " } else { "if XDP ends up in generic mode, " }
                    ),
                    Some(format!("ethtool -K {iface} gro off")),
                );
            }
            if !o.rx_vlan {
                add(
                    "rx_vlan",
                    Level::Ok,
                    "rx-vlan-offload off".into(),
                    String::new(),
                    None,
                );
            } else if d.vlan_devices.is_empty() {
                add(
                    "rx_vlan",
                    Level::Ok,
                    "rx-vlan-offload on".into(),
                    format!("no VLAN devices on {iface}; if this link carries VLANs: ethtool -K {iface} rxvlan off"),
                    None,
                );
            } else {
                add(
                    "rx_vlan",
                    Level::Warn,
                    format!("rx-vlan-offload on with VLAN devices ({})", d.vlan_devices.join(", ")),
                    "tagged frames reach XDP with the tag stripped: xstack would answer VLAN traffic as untagged".into(),
                    Some(format!("ethtool -K {iface} rxvlan off")),
                );
            }
        }
    }

    // The veth peer.
    let mut peer_napi = None;
    if let Some(p) = &d.peer {
        let where_ = p
            .netns
            .as_deref()
            .map(|ns| format!(" in netns {ns}"))
            .unwrap_or_default();
        if let Some(why) = &p.unknown {
            add(
                "peer",
                Level::Warn,
                "veth peer: unknown".into(),
                format!("{why}; check its GRO in the peer's namespace with `ethtool -k PEER | grep generic-receive-offload` (XDP_TX into this veth needs it on)"),
                None,
            );
        } else {
            let name = p.name();
            if let Some(o) = p.offloads {
                add(
                    "peer_checksum",
                    Level::Ok,
                    format!(
                        "veth peer {name}{where_}: tx-checksum {}, TSO {}",
                        on_off(o.tx_checksum),
                        on_off(o.tso)
                    ),
                    format!(
                        "{}{}",
                        if o.tx_checksum {
                            "handled: pseudo-header-only checksums are accepted, counted checksum_partial_in"
                        } else {
                            "full checksums"
                        },
                        if o.tso {
                            "; the kernel turns its TSO off while XDP is attached here"
                        } else {
                            ""
                        }
                    ),
                    None,
                );
            }
            if let Some(m) = p.mtu.filter(|&m| m > limit) {
                add(
                    "peer_mtu",
                    Level::Warn,
                    format!("veth peer MTU {m} is above {limit}"),
                    "frames longer than an AF_XDP frame are dropped".into(),
                    Some(p.in_ns(&format!("ip link set dev {name} mtu 1500"))),
                );
            }
            let napi = p.napi().unwrap_or(false);
            peer_napi = Some(napi);
            let how = match (&p.xdp, p.offloads.is_some_and(|o| o.gro)) {
                (Some(x), _) => format!("XDP program {x} attached"),
                (None, true) => "GRO on".to_string(),
                (None, false) => "GRO off, no XDP program".to_string(),
            };
            if napi {
                add(
                    "peer_napi",
                    Level::Ok,
                    format!("veth peer NAPI on ({how})"),
                    "XDP_TX into this veth is delivered; xstack uses the engine path on veth all the same".into(),
                    None,
                );
            } else {
                add(
                    "peer_napi",
                    Level::Warn,
                    format!("veth peer NAPI off ({how})"),
                    "XDP_TX into this veth is dropped: the XDP_TX path needs the peer's NAPI; xstack uses the engine path on veth (cookie SYN-ACKs through AF_XDP TX)".into(),
                    Some(p.in_ns(&format!("ethtool -K {name} gro on"))),
                );
            }
        }
    } else {
        add(
            "checksum",
            Level::Ok,
            "checksums".into(),
            "frames from the wire carry full checksums; the engine computes its own".into(),
            None,
        );
    }

    // The address.
    if let Some(ip) = d.ip {
        match d.ip_on_kernel {
            Some(true) => add(
                "address",
                Level::Ok,
                format!("{ip} is shared with the kernel"),
                format!(
                    "ports xstack does not serve stay with the kernel; {} for it goes to the engine",
                    if ip.is_ipv6() { "neighbour discovery" } else { "ARP" }
                ),
                None,
            ),
            Some(false) => add(
                "address",
                Level::Ok,
                format!("{ip} belongs to xstack alone"),
                format!(
                    "on no kernel interface: the engine answers its {}, and RST on closed ports",
                    if ip.is_ipv6() { "neighbour discovery" } else { "ARP" }
                ),
                None,
            ),
            None => add(
                "address",
                Level::Warn,
                format!("{ip}: unknown whether the kernel has it"),
                "`ip -4 addr show` could not be read".into(),
                None,
            ),
        }
    }

    // Privileges of `xstack serve`.
    if let Some(why) = &d.serve_privileges {
        add(
            "privileges",
            Level::Warn,
            "this user cannot run xstack serve".into(),
            why.split(';').next().unwrap_or(why).trim().to_string(),
            Some(
                "sudo, or `setcap cap_bpf,cap_net_admin,cap_net_raw,cap_perfmon+ep $(command -v xstack)`"
                    .into(),
            ),
        );
    }

    let fails = checks.iter().filter(|c| c.level == Level::Fail).count();
    let warns = checks.iter().filter(|c| c.level == Level::Warn).count();
    let works = fails == 0;
    let speed = format!(
        "{} mode, {}, {} queue{}, MTU {}",
        xdp_mode,
        match zero_copy {
            Some(true) => "zero-copy",
            Some(false) => "copy",
            None => "copy or zero-copy",
        },
        d.rx_queues,
        if d.rx_queues == 1 { "" } else { "s" },
        d.mtu
    );
    let summary = if works {
        format!(
            "will work: {iface}, {speed}; {warns} warning{}",
            if warns == 1 { "" } else { "s" }
        )
    } else {
        let keys: Vec<&str> = checks
            .iter()
            .filter(|c| c.level == Level::Fail)
            .map(|c| c.key)
            .collect();
        format!(
            "will not work: {iface}: {fails} problem{} ({}); fix {} and run xstack doctor again",
            if fails == 1 { "" } else { "s" },
            keys.join(", "),
            if fails == 1 { "it" } else { "them" }
        )
    };
    Report {
        iface: iface.to_string(),
        works,
        summary,
        xdp_mode,
        zero_copy,
        max_mtu: limit,
        peer_napi,
        cookie_path: if veth { "engine" } else { "xdp_tx" },
        checks,
        facts,
    }
}

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn veth(peer_gro: bool, peer_tx_checksum: bool) -> Facts {
        Facts {
            iface: "xs-t-s".into(),
            driver: "veth".into(),
            kernel: "6.8.0".into(),
            kernel_version: Some((6, 8)),
            up: true,
            carrier: true,
            mtu: 1500,
            rx_queues: 1,
            max_rx_queues: 2,
            offloads: Some(Offloads {
                tx_checksum: true,
                rx_checksum: true,
                tso: true,
                gso: true,
                gro: false,
                lro: false,
                rx_vlan: true,
            }),
            ip: Some(Ipv4Addr::new(198, 18, 0, 2).into()),
            ip_on_kernel: Some(false),
            peer: Some(PeerFacts {
                netns: Some("xs-t-peer".into()),
                iface: Some("xs-t-p".into()),
                up: true,
                mtu: Some(1500),
                offloads: Some(Offloads {
                    tx_checksum: peer_tx_checksum,
                    gro: peer_gro,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn level(r: &Report, key: &str) -> Level {
        r.check(key)
            .unwrap_or_else(|| panic!("no {key}: {r}"))
            .level
    }

    #[test]
    fn the_frame_limit_is_the_xsk_frame_less_headroom_and_ethernet() {
        assert_eq!(max_mtu(), 4096 - 256 - 14);
        #[cfg(target_arch = "x86_64")]
        assert_eq!(veth_peer_max_mtu(), 3506);
    }

    #[test]
    fn a_default_veth_works_with_peer_napi_off_as_a_warning_and_checksums_handled() {
        let r = assess(veth(false, true));
        assert!(r.works, "{r}");
        assert_eq!(r.peer_napi, Some(false));
        assert_eq!(r.cookie_path, "engine");
        assert_eq!(r.xdp_mode, "driver");
        assert_eq!(r.zero_copy, Some(false));
        let napi = r.check("peer_napi").unwrap();
        assert_eq!(napi.level, Level::Warn);
        assert_eq!(
            napi.fix.as_deref(),
            Some("ip netns exec xs-t-peer ethtool -K xs-t-p gro on")
        );
        assert!(napi.why.contains("engine path"), "{}", napi.why);
        let csum = r.check("peer_checksum").unwrap();
        assert_eq!(csum.level, Level::Ok);
        assert!(csum.why.contains("checksum_partial_in"), "{}", csum.why);
        // rxvlan on with no VLAN devices is fine.
        assert_eq!(level(&r, "rx_vlan"), Level::Ok);
        assert!(r.summary.starts_with("will work"), "{}", r.summary);
    }

    #[test]
    fn a_veth_peer_with_gro_on_runs_napi() {
        let r = assess(veth(true, false));
        assert_eq!(r.peer_napi, Some(true));
        assert_eq!(level(&r, "peer_napi"), Level::Ok);
        let mut f = veth(false, false);
        f.peer.as_mut().unwrap().xdp = Some("prog (driver)".into());
        assert_eq!(assess(f).peer_napi, Some(true));
    }

    #[test]
    fn an_mtu_above_the_frame_limit_fails_with_the_fix() {
        let mut f = veth(true, false);
        f.mtu = 9000;
        let r = assess(f);
        assert!(!r.works);
        let c = r.check("mtu").unwrap();
        assert_eq!(c.level, Level::Fail);
        assert_eq!(c.fix.as_deref(), Some("ip link set dev xs-t-s mtu 1500"));
        assert!(r.summary.contains("will not work") && r.summary.contains("mtu"));
        let mut f = veth(true, false);
        f.mtu = max_mtu();
        assert_eq!(level(&assess(f), "mtu"), Level::Ok);
    }

    #[test]
    fn lro_on_fails_with_the_fix() {
        let mut f = veth(true, false);
        f.offloads.as_mut().unwrap().lro = true;
        let r = assess(f);
        assert!(!r.works);
        assert_eq!(
            r.check("lro").unwrap().fix.as_deref(),
            Some("ethtool -K xs-t-s lro off")
        );
    }

    #[test]
    fn gro_on_matters_only_in_generic_mode() {
        let mut f = veth(true, false);
        f.offloads.as_mut().unwrap().gro = true;
        assert_eq!(level(&assess(f.clone()), "gro"), Level::Ok);
        f.driver = "weird".into();
        f.peer = None;
        let r = assess(f);
        assert_eq!(r.xdp_mode, "unknown");
        assert_eq!(level(&r, "gro"), Level::Warn);
    }

    #[test]
    fn vlan_stripping_with_vlan_devices_is_a_warning_with_the_fix() {
        let mut f = veth(true, false);
        f.vlan_devices = vec!["xs-t-s.10".into()];
        let c = assess(f).check("rx_vlan").cloned().unwrap();
        assert_eq!(c.level, Level::Warn);
        assert_eq!(c.fix.as_deref(), Some("ethtool -K xs-t-s rxvlan off"));
    }

    #[test]
    fn a_veth_peer_mtu_too_big_for_driver_mode_means_generic_mode() {
        let mut f = veth(true, false);
        f.peer.as_mut().unwrap().mtu = Some(4000);
        let r = assess(f);
        assert_eq!(r.xdp_mode, "generic");
        assert_eq!(
            r.check("xdp").unwrap().fix.as_deref(),
            Some("ip netns exec xs-t-peer ip link set dev xs-t-p mtu 1500")
        );
    }

    #[test]
    fn another_programs_xdp_fails_and_a_down_link_fails() {
        let mut f = veth(true, false);
        f.attached = Some(AttachedFacts {
            name: "other".into(),
            id: 7,
            mode: "driver".into(),
            xstack: false,
        });
        let r = assess(f);
        assert_eq!(level(&r, "xdp"), Level::Fail);
        assert!(r
            .check("xdp")
            .unwrap()
            .fix
            .as_deref()
            .unwrap()
            .contains("xdp off"));
        let mut f = veth(true, false);
        f.up = false;
        assert_eq!(
            assess(f).check("link").unwrap().fix.as_deref(),
            Some("ip link set dev xs-t-s up")
        );
    }

    #[test]
    fn an_address_on_a_kernel_interface_is_reported_as_shared() {
        let mut f = veth(true, false);
        f.ip_on_kernel = Some(true);
        let r = assess(f);
        assert!(r.check("address").unwrap().what.contains("shared"));
        let r = assess(veth(true, false));
        assert!(r.check("address").unwrap().what.contains("alone"));
    }

    #[test]
    fn an_ipv6_address_is_checked_like_an_ipv4_one_with_neighbour_discovery() {
        let mut f = veth(true, false);
        f.ip = Some("2001:2::2".parse().unwrap());
        let r = assess(f);
        let c = r.check("address").unwrap();
        assert!(
            c.what.contains("2001:2::2") && c.what.contains("alone"),
            "{c:?}"
        );
        assert!(c.why.contains("neighbour discovery"), "{c:?}");
    }

    #[test]
    fn the_screen_is_one_line_per_check_with_the_fix() {
        let r = assess(veth(false, true));
        let s = r.to_string();
        assert_eq!(s.lines().count(), r.checks.len() + 2, "{s}");
        assert!(s.contains("warn  veth peer NAPI off (GRO off, no XDP program)  ("));
        assert!(s.contains("; fix: ip netns exec xs-t-peer ethtool -K xs-t-p gro on)"));
    }
}
