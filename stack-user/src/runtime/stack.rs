//! The one bring-up and the one worker round. [`open`] loads and attaches
//! XDP and opens one AF_XDP socket + one [`Interface`] per queue, each a
//! [`Stack`] polled by the thread that holds it with [`Stack::round_at`] (or
//! its halves [`Stack::receive`] and [`Stack::transmit`]). Clients, tools
//! and benchmarks that open connections themselves (`xstack load`) drive
//! stacks directly; `xstack serve` ([`super::serve`]) wraps the same
//! bring-up in its policy and runs the same round in its queue workers.
//! With several queues, frames are steered to the engine that owns their
//! flow ([`crate::datapath::steer`]) and each engine picks client ports it
//! owns ([`crate::tcp::TcpEngine::set_shard`]).

use std::net::{Ipv4Addr, Ipv6Addr};

use anyhow::{bail, Context, Result};

use crate::{
    apps::App,
    datapath::fastpath::FastpathSettings,
    datapath::steer::Steering,
    datapath::xdp::{AttachMode, XdpProgram},
    datapath::xsk::{KernelStats, XskConfig, XskSocket},
    iface::{IfaceConfig, Interface},
    runtime::capture::{Direction, Recording, SharedCapture},
    runtime::sys,
    tcp::TcpConfig,
};

/// What the bring-up ([`Stack::open`], [`Stack::open_queues`], `xstack
/// serve`) sets up: the interface, the address and ports XDP hands to the
/// engines, the engines' settings and the AF_XDP and XDP choices.
#[derive(Clone, Debug)]
pub struct StackConfig {
    /// Interface.
    pub iface: String,
    /// The stack's IPv4 address (`0.0.0.0`: none, an IPv6-only stack).
    pub ip: Ipv4Addr,
    /// More IPv4 addresses the engine owns beside `ip` (`xstack load --ip
    /// PREFIX`): ARP for each is answered, TCP to them goes to the engine.
    /// (More IPv6 ones simply go in `ip6`.)
    pub extra_ips: Vec<Ipv4Addr>,
    /// The stack's IPv6 addresses (dual-stack next to `ip`, or alone):
    /// answered in neighbour discovery and ICMPv6, served on the same
    /// listeners as `ip`.
    pub ip6: Vec<Ipv6Addr>,
    /// Ports with a listener running `app`.
    pub listen: Vec<u16>,
    /// Local ports for outgoing connections (owned in XDP, no listener).
    pub client_ports: Vec<u16>,
    /// Application on the listening ports.
    pub app: App,
    /// Body size of `App::Http` responses.
    pub response_bytes: usize,
    /// `App::Http` answers with the request's body instead.
    pub echo_body: bool,
    /// Largest request body `App::Http` accepts (413 above).
    pub max_body: u64,
    /// TCP settings.
    pub tcp: TcpConfig,
    /// AF_XDP settings.
    pub xsk: XskConfig,
    /// Queues `0..N`, one socket and engine each (default: every rx queue
    /// of the interface).
    pub queues: Option<u32>,
    /// XDP attach mode.
    pub xdp_mode: AttachMode,
    /// Pin the XDP maps under `/sys/fs/bpf/xstack/<iface>_<netns>`.
    pub pin_maps: bool,
    /// SYN cookies and SYN-flood filtering in XDP, written to the program's
    /// maps (with the engine's MSS and window scale); `None` leaves the
    /// program's own defaults.
    pub fastpath: Option<FastpathSettings>,
    /// Entries of the XDP known-flow tables (`FLOWS`, `FLOWS6`); `None`:
    /// [`StackConfig::max_flows`]'s default.
    pub xdp_max_flows: Option<u32>,
}

/// Most entries `--xdp-max-flows` takes: both tables preallocate them,
/// at 89 B an IPv4 entry and 113 B an IPv6 one (measured from the maps'
/// `memlock`), 3.4 GB of kernel memory at this limit.
pub const XDP_MAX_FLOWS_LIMIT: u32 = 16 << 20;

/// The accept backlog of `xstack serve`'s listeners (per listener and
/// queue); `xstack bench synflood` gives its Linux listener the same.
pub const SERVE_BACKLOG: usize = 1024;

impl StackConfig {
    /// Entries of each XDP known-flow table: `xdp_max_flows`, else
    /// [`stack_ebpf::MAX_FLOWS`] or 5/4 of `initial_connections` when that
    /// is more (a server sized for N connections gets a table that holds
    /// them), at most [`XDP_MAX_FLOWS_LIMIT`].
    pub fn max_flows(&self) -> u32 {
        let sized =
            u32::try_from(self.tcp.initial_connections.saturating_mul(5) / 4).unwrap_or(u32::MAX);
        self.xdp_max_flows
            .unwrap_or(stack_ebpf::MAX_FLOWS.max(sized))
            .clamp(1, XDP_MAX_FLOWS_LIMIT)
    }

    /// The connections one of `queues` queues may hold before XDP, with
    /// cookies in use, can take its flows for forged cookie ACKs: its
    /// share of [`StackConfig::max_flows`]; unbounded where XDP answers no
    /// SYN with a cookie (no listener, as a load generator, or
    /// `--syncookies never`).
    pub fn flow_share(&self, queues: u32) -> usize {
        let cookies = !self.listen.is_empty()
            && self
                .fastpath
                .as_ref()
                .is_some_and(|f| f.syncookies != crate::datapath::fastpath::SynCookies::Never);
        if cookies {
            (self.max_flows() / queues.max(1)) as usize
        } else {
            usize::MAX
        }
    }
}

impl StackConfig {
    /// Every address the stack owns: the IPv4 one (when set), then the
    /// IPv6 ones.
    pub fn addresses(&self) -> Vec<std::net::IpAddr> {
        let v4 = (!self.ip.is_unspecified()).then_some(std::net::IpAddr::V4(self.ip));
        v4.into_iter()
            .chain(self.ip6.iter().map(|a| std::net::IpAddr::V6(*a)))
            .collect()
    }
}

impl Default for StackConfig {
    /// No interface or address yet, no ports, the discard app, default TCP,
    /// AF_XDP and XDP settings, every rx queue, no fast-path settings.
    fn default() -> Self {
        StackConfig {
            iface: String::new(),
            ip: Ipv4Addr::UNSPECIFIED,
            extra_ips: Vec::new(),
            ip6: Vec::new(),
            listen: Vec::new(),
            client_ports: Vec::new(),
            app: App::Discard,
            response_bytes: 0,
            echo_body: false,
            max_body: crate::apps::http::DEFAULT_MAX_BODY,
            tcp: TcpConfig::default(),
            xsk: XskConfig::default(),
            queues: None,
            xdp_mode: AttachMode::Auto,
            pin_maps: false,
            fastpath: None,
            xdp_max_flows: None,
        }
    }
}

/// What [`open`] brought up.
pub struct Bringup {
    /// The XDP program: attached while it lives.
    pub prog: XdpProgram,
    /// One stack per queue, queue `q` at index `q`; each may move to its
    /// own thread.
    pub stacks: Vec<Stack>,
    /// The interface.
    pub iface: sys::Interface,
    /// XDP attach mode in force (what [`XdpProgram::attach`] reports).
    pub xdp_mode: &'static str,
    /// AF_XDP bind mode: `zerocopy` when every socket is, else `copy`.
    pub xsk_mode: &'static str,
    /// The fast-path settings written to the maps (with the engine's MSS
    /// and window scale), when the config had some.
    pub fastpath: Option<FastpathSettings>,
}

/// The bring-up: looks up `config.iface`, then [`open_on`] it.
pub fn open(config: &StackConfig) -> Result<Bringup> {
    let iface = sys::interface(&config.iface)?;
    open_on(iface, config)
}

/// The MSS to offer and use on a link (RFC 9293 §3.7.1: MTU minus the
/// fixed IPv4 and TCP headers), never above the configured one, and small
/// enough that a frame with its Ethernet header fits one UMEM frame.
fn link_mss(configured: u16, mtu: u32, frame_size: u32) -> u16 {
    let by_mtu = mtu.saturating_sub(40);
    let by_frame = frame_size.saturating_sub(14 + 40);
    let mss = by_mtu.min(by_frame).max(536);
    configured.min(u16::try_from(mss).unwrap_or(u16::MAX))
}

/// The bring-up on an interface already looked up: checks the queue count,
/// loads XDP (its maps pinned when asked), writes the fast-path settings,
/// claims the address and ports, opens and registers one AF_XDP socket per
/// queue with its engine (queue worker `q` of `queues`, see
/// [`crate::tcp::TcpEngine::set_shard`]), then attaches. The TCP MSS follows
/// the link's MTU (see [`link_mss`]). Sockets come before
/// the attach so that nothing the program redirects finds no socket.
pub fn open_on(iface: sys::Interface, config: &StackConfig) -> Result<Bringup> {
    let queues = config.queues.unwrap_or(iface.rx_queues);
    if queues == 0 || queues > iface.rx_queues {
        bail!(
            "--queues {queues} is out of range: {} has {} rx queue(s); pass --queues 1..={} (xstack testbed up --queues N makes more)",
            iface.name,
            iface.rx_queues,
            iface.rx_queues
        );
    }
    if queues < iface.rx_queues {
        log::warn!(
            "{} has {} rx queues but only {queues} are used: owned traffic the NIC puts on the others is dropped (drop_no_socket); pass --queues {}",
            iface.name,
            iface.rx_queues,
            iface.rx_queues
        );
    }

    let pin_dir = config.pin_maps.then(|| {
        crate::datapath::xdp::bpffs_root()
            .join("xstack")
            // bpffs rejects dots in names.
            .join(format!("{}_{}", iface.name, sys::netns_id()))
    });
    let max_flows = config.max_flows();
    let flow_share = config.flow_share(queues);
    let mut prog = XdpProgram::load_sized(pin_dir.as_deref(), max_flows)?;
    if let Some(dir) = &pin_dir {
        log::info!("XDP maps pinned under {}", dir.display());
    }
    // What the bring-up decided, logged once it has succeeded (an error
    // must stay one line).
    let mut notes: Vec<(log::Level, String)> = Vec::new();
    let mss = link_mss(config.tcp.mss, iface.mtu, config.xsk.frame_size);
    if mss < config.tcp.mss {
        notes.push((
            log::Level::Info,
            format!(
                "{}: MTU {}: TCP MSS {mss} (MTU - 40; the configured {} would not fit)",
                iface.name, iface.mtu, config.tcp.mss
            ),
        ));
    }
    let fastpath = match &config.fastpath {
        Some(f) => {
            // Cookie SYN-ACKs sent by XDP must announce what the engine will
            // use for the connection they create: its MSS and window-scale
            // shift.
            let mut f = f.clone();
            f.mss = f.mss.min(mss);
            f.wscale = config.tcp.rcv_wscale();
            f.tx_redirect = iface.driver == "veth";
            let (path, why) = f.cookie_path.resolve(&iface.driver);
            f.cookie_path = path;
            let level = if f.syncookies == crate::datapath::fastpath::SynCookies::Never {
                log::Level::Debug
            } else {
                log::Level::Info
            };
            notes.push((
                level,
                format!(
                    "SYN cookies: answered by {} ({why})",
                    path.describe(f.tx_redirect)
                ),
            ));
            apply_fastpath(&mut prog, &f, &Default::default())?;
            Some(f)
        }
        None => None,
    };
    let has_v4 = !config.ip.is_unspecified();
    match sys::address_on_kernel(config.ip) {
        _ if !has_v4 => {}
        Some(false) => {
            // A host answers a SYN to a closed port with RST ("connection
            // refused", RFC 9293 §3.10.7.1); the kernel cannot, it does not
            // have the address.
            prog.own_addr_exclusively(config.ip)?;
            notes.push((log::Level::Info, format!(
                "{} is on no kernel interface: every TCP port of it is the engine's (closed ones answered with RST)",
                config.ip
            )));
        }
        shared => {
            prog.own_addr(config.ip)?;
            notes.push((
                log::Level::Info,
                format!(
                    "{} {}: TCP ports other than {:?} stay with the kernel",
                    config.ip,
                    if shared.is_some() {
                        "is also a kernel address"
                    } else {
                        "may be a kernel address (`ip addr` unreadable)"
                    },
                    config.listen
                ),
            ));
        }
    }
    if has_v4 {
        for p in config.listen.iter().chain(&config.client_ports) {
            prog.own_port(config.ip, *p)?;
        }
    }
    // IPv6: the first address has its ports claimed; further ones
    // (`xstack load --ip PREFIX`) like the IPv4 extras below: one no kernel
    // interface has is the engine's on every port, one the kernel has gets
    // its ports claimed, a bit each in its slot of the owned-port bitmap.
    // Either takes one of the MAX_OWNED_ADDRS6 slots (`own_addr6` says
    // when none is left).
    for (i, a) in config.ip6.iter().enumerate() {
        let exclusive = sys::address_on_kernel(*a) == Some(false);
        prog.own_addr6(*a, exclusive)?;
        if i == 0 || !exclusive {
            for p in config.listen.iter().chain(&config.client_ports) {
                prog.own_port6(*a, *p)?;
            }
        }
        if i < 4 {
            notes.push((
                log::Level::Info,
                if exclusive {
                    format!("{a} is on no kernel interface: every TCP port of it is the engine's (closed ones answered with RST); neighbour discovery and ICMPv6 for it are the engine's")
                } else {
                    format!("{a} is (or may be) a kernel address: TCP ports other than {:?} stay with the kernel", config.listen)
                },
            ));
        }
    }
    if config.ip6.len() > 4 {
        notes.push((
            log::Level::Info,
            format!(
                "{} more IPv6 address(es) owned beside those",
                config.ip6.len() - 4
            ),
        ));
    }
    // Further addresses: an address no kernel interface has is the
    // engine's on every port; one the kernel also has gets its ports
    // claimed, a bit each in its slot of the owned-port bitmap. Either
    // takes one of the MAX_OWNED_ADDRS slots (`own_addr*` says when none
    // is left).
    for &a in &config.extra_ips {
        if a == config.ip {
            continue;
        }
        if sys::address_on_kernel(a) == Some(false) {
            prog.own_addr_exclusively(a)?;
            continue;
        }
        prog.own_addr(a)?;
        for p in config.listen.iter().chain(&config.client_ports) {
            prog.own_port(a, *p)?;
        }
    }
    if !config.extra_ips.is_empty() {
        notes.push((
            log::Level::Info,
            format!(
                "{} more address(es) owned beside {}",
                config.extra_ips.len(),
                config.ip
            ),
        ));
    }

    let steering =
        crate::datapath::steer::mesh(queues).context("creating the queue steering eventfds")?;
    let epoch = std::time::Instant::now();
    // The engines' time zero (`epoch`) on CLOCK_MONOTONIC.
    let cookie_clock_offset = monotonic_us().saturating_sub(epoch.elapsed().as_micros() as u64);
    let cookie_secrets = prog.secrets()?;
    let mut tcp = config.tcp.clone();
    tcp.mss = mss;
    if iface.driver == "veth" && !tcp.accept_checksum_partial {
        // A Linux peer on veth leaves TCP checksums to its tx offload
        // (CHECKSUM_PARTIAL): XDP sees only the pseudo-header sum.
        tcp.accept_checksum_partial = true;
        notes.push((log::Level::Info, format!(
            "{}: veth: TCP segments whose checksum holds only the pseudo-header sum (the peer's tx-checksum offload) are accepted and counted as checksum_partial_in",
            iface.name
        )));
    }
    let ts_key = sys::boot_key().unwrap_or_else(|| {
        notes.push((
            log::Level::Warn,
            "the boot id is unreadable: TCP timestamps are keyed per process (a new process may have a Linux peer's PAWS refuse tuples it holds in TIME_WAIT)".into(),
        ));
        crate::datapath::fastpath::random_key()
    });
    let mut stacks = Vec::new();
    for (q, steer) in (0..queues).zip(steering) {
        let sock = XskSocket::open(&iface.name, q, &config.xsk)
            .with_context(|| format!("AF_XDP socket on {} queue {q}", iface.name))?;
        prog.register_socket(q, sock.fd())?;
        let mut engine = Interface::new(IfaceConfig {
            mac: iface.mac,
            addrs: has_v4
                .then_some(config.ip)
                .into_iter()
                .chain(config.extra_ips.iter().copied().filter(|a| *a != config.ip))
                .collect(),
            addrs6: config.ip6.clone(),
            ports: config.listen.clone(),
            app: config.app,
            response_bytes: config.response_bytes,
            echo_body: config.echo_body,
            max_body: config.max_body,
            tcp: tcp.clone(),
            backlog: SERVE_BACKLOG,
            secret: crate::datapath::fastpath::random_key(),
            mtu: iface.mtu,
        });
        engine.tcp().set_shard(q, queues);
        // Every engine checks and makes cookies as XDP does: its secrets
        // (`serve` also follows their rotation) and its clock.
        engine.tcp().set_cookie_secrets(cookie_secrets);
        engine.tcp().set_cookie_clock_offset(cookie_clock_offset);
        // XDP passes segments of 4-tuples it knows unchecked: a cookie ACK
        // on one the engine holds is the engine's to check.
        engine.tcp().set_xdp_cookies(
            fastpath
                .as_ref()
                .is_some_and(|f| f.syncookies != crate::datapath::fastpath::SynCookies::Never),
        );
        // TSvals on the host's monotonic clock, offsets keyed per boot: they
        // rise across queues and processes, as a Linux peer's PAWS expects
        // of a host reusing 4-tuples it holds in TIME_WAIT.
        engine
            .tcp()
            .set_timestamp_clock(ts_key, cookie_clock_offset);
        stacks.push(Stack {
            engine,
            sock,
            steer,
            addr: config.ip,
            addr6: config.ip6.first().copied(),
            _prog: None,
            epoch,
            reported_tx_drops: 0,
            capture: None,
            flow_share,
            next_flow_check: crate::time::Instant(0),
        });
    }
    let xsk_mode = if stacks.iter().all(|s| s.sock.is_zero_copy()) {
        "zerocopy"
    } else {
        "copy"
    };
    let xdp_mode = prog.attach(&iface.name, config.xdp_mode)?;
    // A client-only stack (no listener) says so at debug level only.
    let level = if config.listen.is_empty() {
        log::Level::Debug
    } else {
        log::Level::Info
    };
    log::log!(
        level,
        "serving {}:{:?} on {} ({} queue(s), XDP {xdp_mode} mode, AF_XDP {xsk_mode} mode, driver {})",
        config
            .addresses()
            .iter()
            .map(|a| a.to_string())
            .collect::<Vec<_>>()
            .join(","),
        config.listen,
        iface.name,
        queues,
        if iface.driver.is_empty() { "?" } else { &iface.driver }
    );
    for (l, n) in notes {
        log::log!(l.max(level), "{n}");
    }
    Ok(Bringup {
        prog,
        stacks,
        iface,
        xdp_mode,
        xsk_mode,
        fastpath,
    })
}

/// CLOCK_MONOTONIC in microseconds (the clock of the XDP program's cookie
/// minute counter and TSval).
pub(crate) fn monotonic_us() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime into a timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
}

/// Writes `s` to the program's maps: the config entry and the prefix lists
/// (`old` is what was applied before, so removed prefixes leave the tries).
pub fn apply_fastpath(
    prog: &mut XdpProgram,
    s: &FastpathSettings,
    old: &FastpathSettings,
) -> Result<(), crate::datapath::xdp::XdpError> {
    for (deny, now, before) in [(true, &s.deny, &old.deny), (false, &s.allow, &old.allow)] {
        for (net, len) in before.iter().filter(|p| !now.contains(p)) {
            prog.prefix(deny, *net, *len, false)?;
        }
        for (net, len) in now {
            prog.prefix(deny, *net, *len, true)?;
        }
    }
    prog.set_config(&s.to_config())
}

/// Socket, engine and steering end of one queue.
pub struct Stack {
    engine: Interface,
    sock: XskSocket,
    steer: Steering,
    addr: Ipv4Addr,
    addr6: Option<Ipv6Addr>,
    /// Held by a single-queue stack; with several queues the caller holds it.
    _prog: Option<XdpProgram>,
    epoch: std::time::Instant,
    /// Frames the socket dropped for want of a buffer, as already counted
    /// in the engine's `tx_no_buffer`.
    reported_tx_drops: u64,
    /// `--pcap`: frames received and sent are recorded there.
    capture: Option<SharedCapture>,
    /// This queue's share of the XDP known-flow table: more connections
    /// than this and, while SYN cookies are in use, evicted flows' segments
    /// are dropped as invalid cookies (warned about once a minute).
    /// `usize::MAX` where XDP answers no SYN with a cookie.
    flow_share: usize,
    /// When the connection count is next compared with `flow_share`.
    next_flow_check: crate::time::Instant,
}

impl Stack {
    /// The bring-up on queue 0 only (whatever `config.queues` says): loads
    /// and attaches XDP on `iface`, binds queue 0 and starts an engine. The
    /// stack holds the program: it stays attached while the stack lives.
    pub fn open(config: &StackConfig) -> Result<Stack> {
        let mut up = open(&StackConfig {
            queues: Some(1),
            ..config.clone()
        })?;
        let mut stack = up.stacks.pop().context("no queue opened")?;
        stack._prog = Some(up.prog);
        Ok(stack)
    }

    /// The bring-up ([`open`]) on queues `0..config.queues` (default: every
    /// rx queue), one socket and engine each, every engine queue worker `q`
    /// of `queues`. The program stays attached while the returned
    /// [`XdpProgram`] lives; each [`Stack`] may move to its own thread.
    pub fn open_queues(config: &StackConfig) -> Result<(XdpProgram, Vec<Stack>)> {
        let up = open(config)?;
        Ok((up.prog, up.stacks))
    }

    /// Records the frames this stack receives and sends into `capture`
    /// (`--pcap`; `None` stops). Off, it costs one `Option` check per batch.
    pub fn set_capture(&mut self, capture: Option<SharedCapture>) {
        self.capture = capture;
    }

    /// The stack's address.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The stack's addresses: the IPv4 one (when set), then the first
    /// IPv6 one (when set).
    pub fn addrs(&self) -> Vec<std::net::IpAddr> {
        let v4 = (!self.addr.is_unspecified()).then_some(std::net::IpAddr::V4(self.addr));
        v4.into_iter()
            .chain(self.addr6.map(std::net::IpAddr::V6))
            .collect()
    }

    /// The stack's address of `remote`'s family (its first IPv6 one for
    /// IPv6), if it has one.
    pub fn addr_for(&self, remote: std::net::IpAddr) -> Option<std::net::IpAddr> {
        match remote {
            std::net::IpAddr::V4(_) => {
                (!self.addr.is_unspecified()).then_some(std::net::IpAddr::V4(self.addr))
            }
            std::net::IpAddr::V6(_) => self.addr6.map(std::net::IpAddr::V6),
        }
    }

    /// Makes `sharding` decide which queue owns a TCP 4-tuple, for this
    /// stack's engine (the local ports its `connect` picks) and its
    /// steering alike (see [`crate::tcp::Sharding`]). Every stack of one
    /// bring-up must get the same, before any connection opens.
    pub fn set_sharding(&mut self, sharding: crate::tcp::Sharding) {
        let q = self.steer.index();
        self.engine.tcp().set_sharding(q, sharding.clone());
        self.steer.set_sharding(sharding);
    }

    /// The queue this stack serves.
    pub fn queue(&self) -> u32 {
        self.steer.index()
    }

    /// Frames handed between queue workers.
    pub fn steer_counts(&self) -> crate::datapath::steer::SteerCounts {
        self.steer.stats.snapshot()
    }

    /// The engine's clock.
    pub fn now(&self) -> crate::time::Instant {
        self.clock_at(std::time::Instant::now())
    }

    /// The engine's clock at `wall`: a worker that reads the clock once per
    /// round passes it to [`round_at`](Self::round_at).
    pub fn clock_at(&self, wall: std::time::Instant) -> crate::time::Instant {
        crate::time::Instant(wall.saturating_duration_since(self.epoch).as_micros() as u64)
    }

    /// One round: [`round_at`](Self::round_at) the current time. Returns
    /// the number of frames received.
    pub fn poll(&mut self) -> u32 {
        let now = self.now();
        self.round_at(now)
    }

    /// The worker round (`xstack serve`'s queue workers run it too): frames
    /// received and handed over into the engine, then timers, the
    /// application and everything queued out, all at `now` (one clock read
    /// per round: a spinning loop that read it twice had clock_gettime as
    /// the top symbol of the server's profile). Returns the number of
    /// frames received.
    pub fn round_at(&mut self, now: crate::time::Instant) -> u32 {
        let n = self.receive_frames(now);
        self.transmit_at(now);
        n
    }

    /// First half of a round: completions, fill ring, received frames
    /// (and frames other queues handed over) into the engine, then their
    /// events to the application. Returns how many frames. An application
    /// that reads and writes before [`transmit`](Self::transmit) lets its
    /// data carry the ACKs those frames owe (a request with the ACK of a
    /// SYN-ACK, a FIN with the ACK of the response) instead of bare ACKs
    /// going first, as Linux's delayed ACK does for an application that
    /// answers at once.
    pub fn receive(&mut self) -> u32 {
        let now = self.now();
        let n = self.receive_frames(now);
        self.engine.dispatch_events(now);
        n
    }

    /// Second half of a round: timers, then everything the engine has
    /// queued goes out.
    pub fn transmit(&mut self) {
        let now = self.now();
        self.transmit_at(now);
    }

    /// Completions, fill ring, the frames of the socket into the engine
    /// (those of flows another queue's engine owns go to it), then the
    /// frames other queues handed over. Replies the frames call for are
    /// queued, not yet sent. Returns how many frames were taken.
    fn receive_frames(&mut self, now: crate::time::Instant) -> u32 {
        let (sock, engine, steer) = (&mut self.sock, &mut self.engine, &self.steer);
        sock.complete();
        sock.refill();
        // `--pcap`: one lock per batch; off, the branches below all take
        // the first arm.
        let mut capture = self.capture.as_ref().and_then(|c| c.lock().ok());
        let mut n = sock.receive_with_meta(64, |meta, frame, tx| {
            // A cookie SYN-ACK to send is stateless: whoever receives it
            // sends it, without a hand-over.
            let ours = crate::iface::is_cookie_synack(meta) || steer.route(meta, frame);
            match capture.as_deref_mut() {
                None if ours => engine.handle_frame_meta(now, meta, frame, tx),
                None => {}
                Some(cap) => {
                    cap.record(frame, Direction::Rx);
                    if ours {
                        let mut tx = Recording {
                            inner: tx,
                            capture: cap,
                        };
                        engine.handle_frame_meta(now, meta, frame, &mut tx)
                    }
                }
            }
        });
        sock.transmit_with(|tx| {
            n += steer.receive(64, |h| match capture.as_deref_mut() {
                None => engine.handle_handoff(now, h.meta(), &h.frame, h.learn_only, tx),
                Some(cap) => {
                    let mut tx = Recording {
                        inner: tx,
                        capture: cap,
                    };
                    engine.handle_handoff(now, h.meta(), &h.frame, h.learn_only, &mut tx)
                }
            }) as u32;
        });
        n
    }

    /// Timers, the application, then everything queued goes out; frames
    /// the socket had no buffer for are counted in the engine's
    /// `tx_no_buffer`.
    fn transmit_at(&mut self, now: crate::time::Instant) {
        let engine = &mut self.engine;
        match self.capture.as_ref().and_then(|c| c.lock().ok()) {
            None => self.sock.transmit_with(|tx| engine.poll(now, tx)),
            Some(mut cap) => self.sock.transmit_with(|tx| {
                let mut tx = Recording {
                    inner: tx,
                    capture: &mut cap,
                };
                engine.poll(now, &mut tx)
            }),
        }
        let dropped = self.sock.tx_dropped();
        if dropped != self.reported_tx_drops {
            self.engine
                .count_tx_no_buffer(dropped - self.reported_tx_drops);
            self.reported_tx_drops = dropped;
        }
        self.log_warnings();
        if now >= self.next_flow_check {
            self.next_flow_check = now + std::time::Duration::from_secs(1);
            let c = self.engine.tcp_ref().state_counts();
            let live = c.established
                + c.syn_sent
                + c.syn_recv
                + c.fin_wait1
                + c.fin_wait2
                + c.close_wait
                + c.last_ack
                + c.closing;
            if live > self.flow_share {
                self.next_flow_check = now + std::time::Duration::from_secs(60);
                log::warn!(
                    "{live} connections on this queue exceed its share of the XDP known-flow table ({}): while SYN cookies are in use, segments of flows the table evicted are dropped as invalid cookies (drop_cookie_invalid); raise --xdp-max-flows",
                    self.flow_share
                );
            }
        }
    }

    /// Logs what TCP warned about (rate-limited by the engine), so every
    /// user of the round — `serve` and the load generator alike — reports
    /// a full TIME_WAIT table, a forgotten CLOSE_WAIT or refused checksums.
    fn log_warnings(&mut self) {
        while let Some(w) = self.engine.tcp().poll_warning() {
            match w {
                crate::tcp::Warning::TimeWaitOverflow { max } => {
                    log::warn!("TCP: time wait bucket table overflow (tcp_max_tw_buckets {max})")
                }
                crate::tcp::Warning::CloseWaitTooLong { tuple, age, .. } => log::warn!(
                    "connection {}:{} <- {}:{} has been in CLOSE_WAIT for {:.0} s: the application never closed it",
                    tuple.local_addr, tuple.local_port, tuple.remote_addr, tuple.remote_port, age.as_secs_f64()
                ),
                w @ crate::tcp::Warning::ChecksumPartialDropped { .. } => log::warn!("{w}"),
            }
        }
    }

    /// Lets frames already handed to the kernel leave before the socket
    /// closes: waits up to `max` for their completions.
    pub fn drain_tx(&mut self, max: std::time::Duration) {
        let deadline = std::time::Instant::now() + max;
        while self.sock.tx_in_flight() > 0 && std::time::Instant::now() < deadline {
            self.sock.complete();
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    /// The kernel's counters of this queue's AF_XDP socket.
    pub fn kernel_stats(&self) -> KernelStats {
        self.sock.kernel_stats()
    }

    /// Sleeps until a frame arrives (from the wire or another queue's
    /// worker), the engine's next timer, or `max`, whichever is first.
    pub fn wait(&mut self, max: std::time::Duration) {
        let now = self.now();
        let until_timer = self
            .engine
            .next_timeout()
            .map_or(u64::MAX, |t| t.0.saturating_sub(now.0) / 1000);
        let ms = until_timer.min(max.as_millis() as u64) as i32;
        if ms > 0 && self.steer.prepare_sleep() {
            self.sock.wait_also(Some(self.steer.wake_fd()), ms);
            self.steer.woke();
        }
    }

    /// The AF_XDP socket's descriptor: readable when frames are waiting
    /// (an async runtime registers it for readiness instead of calling
    /// [`wait`](Self::wait)).
    pub fn xsk_fd(&self) -> std::os::fd::RawFd {
        self.sock.fd()
    }

    /// The steering eventfd: readable when another queue's worker handed
    /// frames over while this one announced a sleep
    /// ([`prepare_sleep`](Self::prepare_sleep)).
    pub fn wake_fd(&self) -> std::os::fd::RawFd {
        self.steer.wake_fd()
    }

    /// Before an async sleep on [`xsk_fd`](Self::xsk_fd) and
    /// [`wake_fd`](Self::wake_fd): announces it to the other queues' workers
    /// and returns false (do not sleep) when handed-over frames are waiting;
    /// after a true, call [`woke`](Self::woke) when the sleep ends. This is
    /// what [`wait`](Self::wait) does around its poll(2).
    pub fn prepare_sleep(&mut self) -> bool {
        self.steer.prepare_sleep()
    }

    /// After a sleep announced with [`prepare_sleep`](Self::prepare_sleep):
    /// no longer sleeping; clears the eventfd.
    pub fn woke(&mut self) {
        self.steer.woke()
    }

    /// The engine (connect, read, write, close, counters).
    pub fn engine(&mut self) -> &mut Interface {
        &mut self.engine
    }

    /// The engine, read-only (counters, state counts, listener queues).
    pub fn engine_ref(&self) -> &Interface {
        &self.engine
    }
}

#[cfg(test)]
mod tests {
    use super::{link_mss, StackConfig};
    use crate::datapath::fastpath::{FastpathSettings, SynCookies};

    #[test]
    fn the_xdp_flow_table_follows_initial_connections_and_only_a_cookie_server_gets_a_share() {
        let mut c = StackConfig::default();
        assert_eq!(c.max_flows(), stack_ebpf::MAX_FLOWS);
        c.tcp.initial_connections = 1_000_000;
        assert_eq!(c.max_flows(), 1_250_000);
        c.xdp_max_flows = Some(64);
        assert_eq!(c.max_flows(), 64);
        // A load generator (no listener): XDP answers none of its SYNs
        // with cookies, so however many connections it holds, no warning.
        assert_eq!(c.flow_share(2), usize::MAX);
        c.listen = vec![80];
        c.fastpath = Some(FastpathSettings {
            syncookies: SynCookies::Never,
            ..FastpathSettings::default()
        });
        assert_eq!(c.flow_share(2), usize::MAX);
        c.fastpath = Some(FastpathSettings {
            syncookies: SynCookies::Auto,
            ..FastpathSettings::default()
        });
        assert_eq!(c.flow_share(2), 32);
    }

    #[test]
    fn the_mss_follows_the_link_mtu_and_the_umem_frame() {
        // A standard Ethernet link: the configured 1460.
        assert_eq!(link_mss(1460, 1500, 4096), 1460);
        // A tunnel or a lab link with a smaller MTU: MTU - 40, or our
        // full-sized segments would be dropped by the link.
        assert_eq!(link_mss(1460, 1400, 4096), 1360);
        // Jumbo frames never exceed what was configured, nor one frame.
        assert_eq!(link_mss(1460, 9000, 4096), 1460);
        assert_eq!(link_mss(9000, 9000, 4096), 4042);
        // RFC 9293's 536 is the floor.
        assert_eq!(link_mss(1460, 296, 4096), 536);
    }
}
