//! The per-queue engine: a sans-IO frame handler.
//!
//! It takes one received Ethernet frame at a time and emits replies through a
//! [`Transmit`] sink. It has no I/O and no clock of its own, so it is tested in
//! memory. It answers ARP requests (RFC 826) and ICMP echo (RFC 792) for the
//! stack's own addresses and hands TCP segments for owned ports to the TCP
//! layer; everything malformed is dropped and counted by reason.

use std::{collections::HashMap, net::Ipv4Addr};

use serde::Serialize;

use crate::tcp::{time::Instant, Event, TcpConfig, TcpEngine};
use crate::wire::{
    arp::{self, ArpRepr},
    ethernet::{self, EthernetRepr, Mac},
    icmp::{self, IcmpRepr},
    ipv4::{self, Ipv4Repr},
    WireError,
};

/// Something that can send frames: `build` writes a frame into the buffer it
/// is given and returns its length. Returns false when the frame could not be
/// queued (no free buffer).
pub trait Transmit {
    /// Queues one frame built by `build`.
    fn send(&mut self, build: &mut dyn FnMut(&mut [u8]) -> usize) -> bool;
}

impl Transmit for crate::datapath::xsk::TxBatch<'_> {
    fn send(&mut self, build: &mut dyn FnMut(&mut [u8]) -> usize) -> bool {
        crate::datapath::xsk::TxBatch::send(self, build)
    }
}

/// A [`Transmit`] that collects frames in memory (tests, benchmarks).
#[derive(Default, Debug)]
pub struct VecTransmit {
    /// Frames sent, in order.
    pub frames: Vec<Vec<u8>>,
}

impl Transmit for VecTransmit {
    fn send(&mut self, build: &mut dyn FnMut(&mut [u8]) -> usize) -> bool {
        let mut buf = vec![0u8; 2048];
        let len = build(&mut buf);
        if len > 0 {
            buf.truncate(len);
            self.frames.push(buf);
        }
        true
    }
}

/// What the engine owns.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// The interface's MAC address, used as the source of every frame.
    pub mac: Mac,
    /// The stack's IPv4 addresses (not configured on the kernel interface).
    pub addrs: Vec<Ipv4Addr>,
    /// TCP ports served on those addresses.
    pub ports: Vec<u16>,
    /// The application on the listening ports.
    pub app: App,
    /// Body size of the HTTP application's responses.
    pub response_bytes: usize,
    /// TCP settings (Linux sysctl names).
    pub tcp: TcpConfig,
    /// Listen backlog per port.
    pub backlog: usize,
    /// Secret for ISNs (RFC 6528); random per run.
    pub secret: [u8; 16],
}

pub use crate::apps::App;

/// Counters of one engine. Plain integers: each queue's worker owns its
/// engine and publishes a copy for `xstack stats`.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct EngineStats {
    /// Frames received from the socket.
    pub rx_frames: u64,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Frames queued for transmission.
    pub tx_frames: u64,
    /// Frames that could not be queued (no free UMEM frame or ring slot).
    pub tx_no_buffer: u64,
    /// ARP requests for an owned address.
    pub arp_requests: u64,
    /// ARP replies sent.
    pub arp_replies: u64,
    /// ARP packets not asking for an owned address (ignored).
    pub arp_ignored: u64,
    /// ICMP echo requests for an owned address.
    pub icmp_echo_requests: u64,
    /// ICMP echo replies sent.
    pub icmp_echo_replies: u64,
    /// Other ICMP messages (ignored).
    pub icmp_other: u64,
    /// TCP segments for an owned (address, port).
    pub tcp_segments: u64,
    /// Of those, SYNs without ACK (connection attempts).
    pub tcp_syns: u64,
    /// TCP segments for an address the engine does not own.
    pub tcp_not_owned: u64,
    /// TCP segments to a port without a listener (client connections, or
    /// closed ports answered with RST).
    pub tcp_not_listened: u64,
    /// IPv4 packets for an address the engine does not own.
    pub ip_not_owned: u64,
    /// IPv4 packets of a protocol the engine does not handle.
    pub ip_other_proto: u64,
    /// TCP header shorter than 20 bytes or data offset invalid.
    pub drop_tcp_malformed: u64,
    /// ARP replies received (neighbours learned).
    pub arp_replies_in: u64,
    /// ARP requests sent to resolve a peer.
    pub arp_requests_out: u64,
    /// Segments held while their next hop was being resolved.
    pub tx_held_for_arp: u64,
    /// Segments dropped because the hold queue was full.
    pub tx_no_neighbor: u64,
    /// Connections accepted by the application.
    pub app_accepted: u64,
    /// Bytes the application read.
    pub app_bytes_in: u64,
    /// Bytes the application wrote.
    pub app_bytes_out: u64,
    /// HTTP requests answered.
    pub http_requests: u64,
    /// Malformed HTTP requests (answered 400, connection closed).
    pub http_errors: u64,
    /// Final ACKs whose SYN cookie the XDP program validated (metadata
    /// present and well formed).
    pub cookie_acks: u64,
    /// Frames with cookie metadata that failed its checks (bad magic or MSS).
    pub cookie_meta_invalid: u64,
    /// Malformed frames, by reason (indexed by [`WireError::index`]).
    #[serde(skip)]
    pub drop_wire: [u64; 12],
}

impl EngineStats {
    /// Adds another engine's counters to these.
    pub fn add(&mut self, o: &EngineStats) {
        self.rx_frames += o.rx_frames;
        self.rx_bytes += o.rx_bytes;
        self.tx_frames += o.tx_frames;
        self.tx_no_buffer += o.tx_no_buffer;
        self.arp_requests += o.arp_requests;
        self.arp_replies += o.arp_replies;
        self.arp_ignored += o.arp_ignored;
        self.icmp_echo_requests += o.icmp_echo_requests;
        self.icmp_echo_replies += o.icmp_echo_replies;
        self.icmp_other += o.icmp_other;
        self.tcp_segments += o.tcp_segments;
        self.tcp_syns += o.tcp_syns;
        self.tcp_not_owned += o.tcp_not_owned;
        self.tcp_not_listened += o.tcp_not_listened;
        self.ip_not_owned += o.ip_not_owned;
        self.ip_other_proto += o.ip_other_proto;
        self.drop_tcp_malformed += o.drop_tcp_malformed;
        self.arp_replies_in += o.arp_replies_in;
        self.arp_requests_out += o.arp_requests_out;
        self.tx_held_for_arp += o.tx_held_for_arp;
        self.tx_no_neighbor += o.tx_no_neighbor;
        self.app_accepted += o.app_accepted;
        self.app_bytes_in += o.app_bytes_in;
        self.app_bytes_out += o.app_bytes_out;
        self.http_requests += o.http_requests;
        self.http_errors += o.http_errors;
        self.cookie_acks += o.cookie_acks;
        self.cookie_meta_invalid += o.cookie_meta_invalid;
        for (a, b) in self.drop_wire.iter_mut().zip(o.drop_wire.iter()) {
            *a += b;
        }
    }

    /// Malformed-frame drops as (counter name, value) pairs.
    pub fn wire_drops(&self) -> Vec<(&'static str, u64)> {
        WireError::ALL
            .iter()
            .map(|e| (e.counter_name(), self.drop_wire[e.index()]))
            .collect()
    }

    /// Total malformed-frame drops.
    pub fn wire_drops_total(&self) -> u64 {
        self.drop_wire.iter().sum::<u64>() + self.drop_tcp_malformed
    }
}

/// The cookie metadata XDP put in front of a frame, if `meta` holds one.
pub fn cookie_meta(meta: &[u8]) -> Option<stack_ebpf::CookieMeta> {
    let m: stack_ebpf::CookieMeta =
        bytemuck::try_pod_read_unaligned(meta.get(..stack_ebpf::COOKIE_META_LEN)?).ok()?;
    (m.magic == stack_ebpf::COOKIE_META_MAGIC).then_some(m)
}

/// Segments waiting for ARP to resolve their next hop, at most this many.
const HOLD_MAX: usize = 256;

/// The per-queue frame handler.
pub struct Engine {
    config: EngineConfig,
    stats: EngineStats,
    ident: u16,
    tcp: TcpEngine,
    /// IPv4 → MAC, learned from ARP and from received frames (RFC 826
    /// "merge" rule).
    neighbors: HashMap<Ipv4Addr, Mac>,
    /// Last ARP request sent per unresolved address.
    arp_pending: HashMap<Ipv4Addr, Instant>,
    /// Complete IPv4 packets waiting for their next hop's MAC.
    held: Vec<(Ipv4Addr, Vec<u8>)>,
    scratch: Vec<u8>,
    /// Connections the application accepted; others (opened with
    /// [`Engine::connect`]) belong to the caller.
    app_conns: HashMap<crate::tcp::ConnId, crate::apps::AppConn>,
    /// Events on caller-owned connections, for [`Engine::poll_event`].
    events: std::collections::VecDeque<Event>,
    /// The applications' read buffer.
    app_buf: Vec<u8>,
}

const TCP_FLAG_SYN: u8 = 0x02;
const TCP_FLAG_ACK: u8 = 0x10;

impl Engine {
    /// A new engine for `config`: listens on every (address, port).
    pub fn new(config: EngineConfig) -> Engine {
        let mut tcp = TcpEngine::new(config.tcp.clone(), config.secret);
        for a in &config.addrs {
            for p in &config.ports {
                // Distinct (address, port) pairs cannot collide.
                let _ = tcp.listen(*a, *p, config.backlog);
            }
        }
        Engine {
            config,
            stats: EngineStats::default(),
            ident: 1,
            tcp,
            neighbors: HashMap::new(),
            arp_pending: HashMap::new(),
            held: Vec::new(),
            scratch: vec![0u8; 2048],
            app_conns: HashMap::new(),
            events: std::collections::VecDeque::new(),
            app_buf: vec![0u8; 16 * 1024],
        }
    }

    /// The TCP engine's counters.
    pub fn tcp_stats(&self) -> &crate::tcp::Stats {
        self.tcp.stats()
    }

    /// Live TCP connections.
    pub fn tcp_connections(&self) -> usize {
        self.tcp.connection_count()
    }

    /// When [`Engine::poll`] must run next at the latest.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.tcp.poll_timeout()
    }

    /// Counters so far.
    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// Records frames the datapath could not queue.
    pub fn count_tx_no_buffer(&mut self, n: u64) {
        self.stats.tx_no_buffer += n;
    }

    fn owns(&self, ip: Ipv4Addr) -> bool {
        self.config.addrs.contains(&ip)
    }

    fn drop_wire(&mut self, e: WireError) {
        self.stats.drop_wire[e.index()] += 1;
    }

    /// Handles one received frame at `now`; replies go to `tx`.
    pub fn handle_frame(&mut self, now: Instant, frame: &[u8], tx: &mut dyn Transmit) {
        self.stats.rx_frames += 1;
        self.stats.rx_bytes += frame.len() as u64;
        if let Err(e) = self.dispatch(now, frame, tx) {
            self.drop_wire(e);
        }
    }

    /// Handles one received frame with the XDP metadata in front of it
    /// (see [`crate::datapath::xsk::XskSocket::receive_with_meta`]).
    pub fn handle_frame_meta(
        &mut self,
        now: Instant,
        meta: &[u8],
        frame: &[u8],
        tx: &mut dyn Transmit,
    ) {
        self.stats.rx_frames += 1;
        self.stats.rx_bytes += frame.len() as u64;
        if let Some(m) = cookie_meta(meta) {
            if !stack_ebpf::cookie::MSS_TABLE.contains(&m.mss) {
                self.stats.cookie_meta_invalid += 1;
            } else if self.on_cookie_ack(now, &m, frame) {
                return;
            }
        }
        // Not a cookie ACK (or not a TCP/IPv4 frame after all): the usual way.
        if let Err(e) = self.dispatch(now, frame, tx) {
            self.drop_wire(e);
        }
    }

    /// Handles a frame another queue's worker handed over (see
    /// [`crate::datapath::steer`]); an ARP copy marked `learn_only` teaches the
    /// sender's address without answering it (the receiving worker did).
    pub fn handle_handoff(
        &mut self,
        now: Instant,
        h: &crate::datapath::steer::Handoff,
        tx: &mut dyn Transmit,
    ) {
        if !h.learn_only {
            return self.handle_frame_meta(now, h.meta(), &h.frame, tx);
        }
        let Ok((eth, payload)) = EthernetRepr::parse(&h.frame) else {
            return;
        };
        if eth.ethertype != ethernet::ETHERTYPE_ARP {
            return;
        }
        if let Ok(arp) = ArpRepr::parse(payload) {
            if self.owns(arp.tpa) {
                self.learn(arp.spa, arp.sha);
            }
        }
    }

    /// A final ACK whose cookie XDP validated, with the options the cookie
    /// restored (MSS, window scale, SACK, ECN): the TCP engine creates the
    /// connection straight in ESTABLISHED on the listener's accept queue
    /// (Linux `cookie_v4_check` → `tcp_get_cookie_sock`). Returns false when
    /// the frame is not an IPv4/TCP frame for us.
    fn on_cookie_ack(&mut self, now: Instant, m: &stack_ebpf::CookieMeta, frame: &[u8]) -> bool {
        let Ok((eth, payload)) = EthernetRepr::parse(frame) else {
            return false;
        };
        let Ok((ip, seg)) = Ipv4Repr::parse(payload) else {
            return false;
        };
        if eth.ethertype != ethernet::ETHERTYPE_IPV4
            || ip.protocol != ipv4::PROTO_TCP
            || !self.owns(ip.dst)
        {
            return false;
        }
        self.learn(ip.src, eth.src);
        self.stats.cookie_acks += 1;
        self.stats.tcp_segments += 1;
        let opts = stack_ebpf::cookie::CookieOptions {
            mss: m.mss,
            wscale: (m.wscale != stack_ebpf::META_NO_WSCALE).then_some(m.wscale),
            sack: m.flags & stack_ebpf::META_SACK != 0,
            ecn: m.flags & stack_ebpf::META_ECN != 0,
        };
        let _ = self.tcp.on_cookie_ack(now, ip.src, ip.dst, seg, opts);
        true
    }

    fn dispatch(
        &mut self,
        now: Instant,
        frame: &[u8],
        tx: &mut dyn Transmit,
    ) -> Result<(), WireError> {
        let (eth, payload) = EthernetRepr::parse(frame)?;
        match eth.ethertype {
            ethernet::ETHERTYPE_ARP => self.handle_arp(&eth, payload, tx),
            ethernet::ETHERTYPE_IPV4 => self.handle_ipv4(now, &eth, payload, tx),
            other => Err(WireError::UnsupportedEtherType(other)),
        }
    }

    /// Runs timers and the application, then sends what TCP has queued.
    pub fn poll(&mut self, now: Instant, tx: &mut dyn Transmit) {
        if self.tcp.poll_timeout().is_some_and(|t| t <= now) {
            self.tcp.handle_timeout(now);
        }
        self.run_app(now);
        self.flush_held(tx);
        self.drain_tcp(now, tx);
    }

    /// Actively opens a connection (the engine as a client); `local_port` 0
    /// picks one from `ip_local_port_range`. The XDP program must own the
    /// local port for the replies to reach the engine.
    pub fn connect(
        &mut self,
        now: Instant,
        local: Ipv4Addr,
        local_port: u16,
        remote: Ipv4Addr,
        remote_port: u16,
    ) -> Result<crate::tcp::ConnId, crate::tcp::TcpError> {
        self.tcp
            .connect(now, local, local_port, remote, remote_port)
    }

    /// The TCP engine, read-only (state counts, listener queues).
    pub fn tcp_ref(&self) -> &TcpEngine {
        &self.tcp
    }

    /// The TCP engine, for applications driving connections directly.
    pub fn tcp(&mut self) -> &mut TcpEngine {
        &mut self.tcp
    }

    /// Hands what TCP reported since the last call to the built-in app and
    /// the caller's event queue ([`poll_event`](Self::poll_event)) without
    /// transmitting: a caller that answers before [`poll`](Self::poll)
    /// lets its data carry the ACKs owed.
    pub fn dispatch_events(&mut self, now: Instant) {
        self.run_app(now);
    }

    /// Next event on a connection opened with [`Engine::connect`].
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn run_app(&mut self, now: Instant) {
        // A buffer kept across calls: zeroing 16 KiB on every poll cost the
        // busy-polling server a fifth of its time (perf).
        let mut buf = std::mem::take(&mut self.app_buf);
        buf.resize(16 * 1024, 0);
        self.run_app_with(now, &mut buf);
        self.app_buf = buf;
    }

    fn run_app_with(&mut self, now: Instant, buf: &mut [u8]) {
        while let Some(ev) = self.tcp.poll_event() {
            match ev {
                Event::Incoming(l) if self.config.app == App::Manual => {
                    self.events.push_back(Event::Incoming(l));
                }
                Event::Incoming(l) => {
                    while let Some(c) = self.tcp.accept(l) {
                        self.stats.app_accepted += 1;
                        self.app_conns.insert(c, Default::default());
                        self.app_io(now, c, buf);
                    }
                }
                Event::Readable(c) | Event::Writable(c) | Event::PeerClosed(c)
                    if self.app_conns.contains_key(&c) =>
                {
                    self.app_io(now, c, buf)
                }
                Event::Closed(c) | Event::Reset(c) | Event::TimedOut(c)
                    if self.app_conns.contains_key(&c) =>
                {
                    // The handle was given up by `close`; nothing to do.
                    self.app_conns.remove(&c);
                }
                other => {
                    if self.events.len() < 65536 {
                        self.events.push_back(other);
                    }
                }
            }
        }
    }

    /// Runs the application on an accepted connection after an event.
    fn app_io(&mut self, now: Instant, c: crate::tcp::ConnId, buf: &mut [u8]) {
        let Some(st) = self.app_conns.get_mut(&c) else {
            return;
        };
        let mut n = crate::apps::AppCounters::default();
        let cfg = crate::apps::AppConfig {
            app: self.config.app,
            response_bytes: self.config.response_bytes,
        };
        let done = crate::apps::service(cfg, &mut self.tcp, now, c, st, &mut n, buf);
        if done == crate::apps::Service::Closed {
            self.app_conns.remove(&c);
        }
        self.stats.app_bytes_in += n.bytes_in;
        self.stats.app_bytes_out += n.bytes_out;
        self.stats.http_requests += n.http_requests;
        self.stats.http_errors += n.http_errors;
    }

    /// Wraps each segment TCP wants to send in IPv4 and Ethernet.
    fn drain_tcp(&mut self, now: Instant, tx: &mut dyn Transmit) {
        const IP_OFF: usize = ethernet::HEADER_LEN;
        const TCP_OFF: usize = IP_OFF + ipv4::HEADER_LEN;
        loop {
            let mut out: Option<(crate::tcp::Transmit, Option<Mac>)> = None;
            let (tcp, neighbors, mac) = (&mut self.tcp, &self.neighbors, self.config.mac);
            let ident = &mut self.ident;
            let sent = tx.send(&mut |buf| {
                if buf.len() < TCP_OFF + 60 {
                    return 0;
                }
                let Some(t) = tcp.poll_transmit(now, &mut buf[TCP_OFF..]) else {
                    return 0;
                };
                let dst_mac = neighbors.get(&t.dst).copied();
                out = Some((t, dst_mac));
                *ident = ident.wrapping_add(1);
                let ip = Ipv4Repr {
                    src: t.src,
                    dst: t.dst,
                    protocol: ipv4::PROTO_TCP,
                    ttl: 64,
                    tos: 0,
                    ident: *ident,
                    dont_frag: true,
                    payload_len: t.len,
                };
                if ip.emit(&mut buf[IP_OFF..]).is_err() {
                    return 0;
                }
                let eth = EthernetRepr {
                    dst: dst_mac.unwrap_or(Mac::BROADCAST),
                    src: mac,
                    ethertype: ethernet::ETHERTYPE_IPV4,
                };
                if eth.emit(buf).is_err() {
                    return 0;
                }
                let len = TCP_OFF + t.len;
                if dst_mac.is_none() {
                    // Hold a copy until ARP resolves; send nothing now.
                    self.scratch.clear();
                    self.scratch.extend_from_slice(&buf[..len]);
                    return 0;
                }
                len.max(60)
            });
            match out {
                None => {
                    if !sent {
                        self.stats.tx_no_buffer += 1;
                    }
                    return;
                }
                Some((_, Some(_))) => self.count_sent(sent, |_| {}),
                Some((t, None)) => {
                    let frame = std::mem::take(&mut self.scratch);
                    self.hold(now, t.dst, frame, tx);
                    self.scratch = vec![0u8; 2048];
                }
            }
        }
    }

    fn hold(&mut self, now: Instant, dst: Ipv4Addr, frame: Vec<u8>, tx: &mut dyn Transmit) {
        if self.held.len() >= HOLD_MAX {
            self.stats.tx_no_neighbor += 1;
        } else {
            self.stats.tx_held_for_arp += 1;
            self.held.push((dst, frame));
        }
        let due = self
            .arp_pending
            .get(&dst)
            .is_none_or(|t| now.saturating_since(*t) >= std::time::Duration::from_secs(1));
        if due {
            self.arp_pending.insert(dst, now);
            self.send_arp_request(dst, tx);
        }
    }

    fn send_arp_request(&mut self, target: Ipv4Addr, tx: &mut dyn Transmit) {
        let Some(spa) = self.config.addrs.first().copied() else {
            return;
        };
        let req = ArpRepr {
            op: arp::OP_REQUEST,
            sha: self.config.mac,
            spa,
            tha: Mac::default(),
            tpa: target,
        };
        let eth_out = EthernetRepr {
            dst: Mac::BROADCAST,
            src: self.config.mac,
            ethertype: ethernet::ETHERTYPE_ARP,
        };
        let sent = tx.send(&mut |buf| {
            if eth_out.emit(buf).is_err() || req.emit(&mut buf[ethernet::HEADER_LEN..]).is_err() {
                return 0;
            }
            let len = ethernet::HEADER_LEN + arp::PACKET_LEN;
            buf[len..60].fill(0);
            60
        });
        self.count_sent(sent, |s| s.arp_requests_out += 1);
    }

    /// Sends held frames whose next hop is now known.
    fn flush_held(&mut self, tx: &mut dyn Transmit) {
        if self.held.is_empty() {
            return;
        }
        let held = std::mem::take(&mut self.held);
        for (dst, mut frame) in held {
            match self.neighbors.get(&dst) {
                Some(mac) => {
                    frame[0..6].copy_from_slice(&mac.0);
                    let sent = tx.send(&mut |buf| {
                        let n = frame.len().min(buf.len());
                        buf[..n].copy_from_slice(&frame[..n]);
                        n.max(60).min(buf.len())
                    });
                    self.count_sent(sent, |_| {});
                }
                None => self.held.push((dst, frame)),
            }
        }
    }

    /// RFC 826 merge: remember the sender of anything addressed to us.
    fn learn(&mut self, ip: Ipv4Addr, mac: Mac) {
        if mac.0[0] & 1 == 0 && !ip.is_unspecified() {
            self.neighbors.insert(ip, mac);
            self.arp_pending.remove(&ip);
        }
    }

    /// RFC 826, "Packet Reception": answer requests for our addresses.
    fn handle_arp(
        &mut self,
        eth: &EthernetRepr,
        payload: &[u8],
        tx: &mut dyn Transmit,
    ) -> Result<(), WireError> {
        let req = ArpRepr::parse(payload)?;
        if !self.owns(req.tpa) {
            self.stats.arp_ignored += 1;
            return Ok(());
        }
        self.learn(req.spa, req.sha);
        if req.op == arp::OP_REPLY {
            self.stats.arp_replies_in += 1;
            self.flush_held(tx);
            return Ok(());
        }
        if req.op != arp::OP_REQUEST {
            self.stats.arp_ignored += 1;
            return Ok(());
        }
        self.stats.arp_requests += 1;
        let reply = ArpRepr {
            op: arp::OP_REPLY,
            sha: self.config.mac,
            spa: req.tpa,
            tha: req.sha,
            tpa: req.spa,
        };
        let eth_out = EthernetRepr {
            dst: eth.src,
            src: self.config.mac,
            ethertype: ethernet::ETHERTYPE_ARP,
        };
        let sent = tx.send(&mut |buf| {
            let len = ethernet::HEADER_LEN + arp::PACKET_LEN;
            if eth_out.emit(buf).is_err() || reply.emit(&mut buf[ethernet::HEADER_LEN..]).is_err() {
                return 0;
            }
            // Pad to the Ethernet minimum of 60 bytes (without FCS).
            let padded = len.max(60).min(buf.len());
            buf[len..padded].fill(0);
            padded
        });
        self.count_sent(sent, |s| s.arp_replies += 1);
        Ok(())
    }

    fn count_sent(&mut self, sent: bool, f: impl FnOnce(&mut EngineStats)) {
        if sent {
            self.stats.tx_frames += 1;
            f(&mut self.stats);
        } else {
            self.stats.tx_no_buffer += 1;
        }
    }

    fn handle_ipv4(
        &mut self,
        now: Instant,
        eth: &EthernetRepr,
        payload: &[u8],
        tx: &mut dyn Transmit,
    ) -> Result<(), WireError> {
        let (ip, body) = Ipv4Repr::parse(payload)?;
        if !self.owns(ip.dst) {
            self.stats.ip_not_owned += 1;
            return Ok(());
        }
        if !self.neighbors.contains_key(&ip.src) {
            self.learn(ip.src, eth.src);
        }
        match ip.protocol {
            ipv4::PROTO_ICMP => self.handle_icmp(eth, &ip, body, tx),
            ipv4::PROTO_TCP => {
                self.handle_tcp(now, &ip, body);
                Ok(())
            }
            _ => {
                self.stats.ip_other_proto += 1;
                Ok(())
            }
        }
    }

    /// RFC 792, "Echo or Echo Reply Message": swap addresses, type 0, same
    /// identifier, sequence and data.
    fn handle_icmp(
        &mut self,
        eth: &EthernetRepr,
        ip: &Ipv4Repr,
        body: &[u8],
        tx: &mut dyn Transmit,
    ) -> Result<(), WireError> {
        let msg = IcmpRepr::parse(body)?;
        if msg.kind != icmp::ECHO_REQUEST || msg.code != 0 {
            self.stats.icmp_other += 1;
            return Ok(());
        }
        self.stats.icmp_echo_requests += 1;
        let reply = IcmpRepr {
            kind: icmp::ECHO_REPLY,
            ..msg
        };
        self.ident = self.ident.wrapping_add(1);
        let ip_out = Ipv4Repr {
            src: ip.dst,
            dst: ip.src,
            protocol: ipv4::PROTO_ICMP,
            ttl: 64,
            tos: ip.tos,
            ident: self.ident,
            dont_frag: false,
            payload_len: reply.len(),
        };
        let eth_out = EthernetRepr {
            dst: eth.src,
            src: self.config.mac,
            ethertype: ethernet::ETHERTYPE_IPV4,
        };
        let sent = tx.send(&mut |buf| {
            let ip_off = ethernet::HEADER_LEN;
            let icmp_off = ip_off + ipv4::HEADER_LEN;
            let len = icmp_off + reply.len();
            if buf.len() < len
                || eth_out.emit(buf).is_err()
                || ip_out.emit(&mut buf[ip_off..]).is_err()
                || reply.emit(&mut buf[icmp_off..]).is_err()
            {
                return 0;
            }
            let padded = len.max(60).min(buf.len());
            buf[len..padded].fill(0);
            padded
        });
        self.count_sent(sent, |s| s.icmp_echo_replies += 1);
        Ok(())
    }

    /// Counts a TCP segment for an owned port (RFC 9293 §3.1 header: ports,
    /// data offset, flags) and hands it to the `tcp` state machine, which
    /// verifies the checksum and counts its own drops.
    fn handle_tcp(&mut self, now: Instant, ip: &Ipv4Repr, seg: &[u8]) {
        if seg.len() < 20 {
            self.stats.drop_tcp_malformed += 1;
            return;
        }
        let dport = u16::from_be_bytes([seg[2], seg[3]]);
        let doff = usize::from(seg[12] >> 4) * 4;
        if doff < 20 || doff > seg.len() {
            self.stats.drop_tcp_malformed += 1;
            return;
        }
        if !self.owns(ip.dst) {
            self.stats.tcp_not_owned += 1;
            return;
        }
        // Segments to a port nobody listens on (and no connection) are for
        // the TCP layer too: it answers with RST (RFC 9293 §3.10.7.1).
        self.stats.tcp_segments += 1;
        if !self.config.ports.contains(&dport) {
            self.stats.tcp_not_listened += 1;
        }
        let flags = seg[13];
        if flags & TCP_FLAG_SYN != 0 && flags & TCP_FLAG_ACK == 0 {
            self.stats.tcp_syns += 1;
        }
        self.tcp.on_segment(now, ip.src, ip.dst, seg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::checksum;

    const OUR_MAC: Mac = Mac([0x02, 0, 0, 0, 0, 0x02]);
    const PEER_MAC: Mac = Mac([0x02, 0, 0, 0, 0, 0x01]);
    const OUR_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
    const PEER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);

    fn engine() -> Engine {
        Engine::new(EngineConfig {
            mac: OUR_MAC,
            addrs: vec![OUR_IP],
            ports: vec![8080],
            app: App::Echo,
            response_bytes: 0,
            tcp: TcpConfig::default(),
            backlog: 128,
            secret: [7; 16],
        })
    }

    fn arp_request(target: Ipv4Addr) -> Vec<u8> {
        let mut f = vec![0u8; 42];
        EthernetRepr {
            dst: Mac::BROADCAST,
            src: PEER_MAC,
            ethertype: ethernet::ETHERTYPE_ARP,
        }
        .emit(&mut f)
        .unwrap();
        ArpRepr {
            op: arp::OP_REQUEST,
            sha: PEER_MAC,
            spa: PEER_IP,
            tha: Mac::default(),
            tpa: target,
        }
        .emit(&mut f[14..])
        .unwrap();
        f
    }

    fn ipv4_frame(proto: u8, body: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 34 + body.len()];
        EthernetRepr {
            dst: OUR_MAC,
            src: PEER_MAC,
            ethertype: ethernet::ETHERTYPE_IPV4,
        }
        .emit(&mut f)
        .unwrap();
        Ipv4Repr {
            src: PEER_IP,
            dst: OUR_IP,
            protocol: proto,
            ttl: 64,
            tos: 0,
            ident: 1,
            dont_frag: true,
            payload_len: body.len(),
        }
        .emit(&mut f[14..])
        .unwrap();
        f[34..].copy_from_slice(body);
        f
    }

    fn echo_request(data: &[u8]) -> Vec<u8> {
        let mut body = vec![0u8; 8 + data.len()];
        IcmpRepr {
            kind: icmp::ECHO_REQUEST,
            code: 0,
            rest: [0x12, 0x34, 0, 1],
            data,
        }
        .emit(&mut body)
        .unwrap();
        ipv4_frame(ipv4::PROTO_ICMP, &body)
    }

    fn tcp_syn(dport: u16) -> Vec<u8> {
        let mut seg = vec![0u8; 20];
        seg[0..2].copy_from_slice(&40000u16.to_be_bytes());
        seg[2..4].copy_from_slice(&dport.to_be_bytes());
        seg[4..8].copy_from_slice(&1000u32.to_be_bytes());
        seg[12] = 5 << 4;
        seg[13] = TCP_FLAG_SYN;
        seg[14..16].copy_from_slice(&65535u16.to_be_bytes());
        let sum = checksum::sum(
            checksum::pseudo_header(PEER_IP, OUR_IP, ipv4::PROTO_TCP, 20),
            &seg,
        );
        let c = checksum::finish(sum);
        seg[16..18].copy_from_slice(&c.to_be_bytes());
        ipv4_frame(ipv4::PROTO_TCP, &seg)
    }

    #[test]
    fn arp_request_for_our_address_gets_a_reply() {
        let mut e = engine();
        let mut tx = VecTransmit::default();
        e.handle_frame(Instant(0), &arp_request(OUR_IP), &mut tx);
        assert_eq!(tx.frames.len(), 1);
        let (eth, payload) = EthernetRepr::parse(&tx.frames[0]).unwrap();
        assert_eq!(eth.dst, PEER_MAC);
        assert_eq!(eth.src, OUR_MAC);
        assert_eq!(tx.frames[0].len(), 60);
        let reply = ArpRepr::parse(payload).unwrap();
        assert_eq!(reply.op, arp::OP_REPLY);
        assert_eq!((reply.sha, reply.spa), (OUR_MAC, OUR_IP));
        assert_eq!((reply.tha, reply.tpa), (PEER_MAC, PEER_IP));
        assert_eq!(e.stats().arp_replies, 1);
    }

    #[test]
    fn an_arp_copy_from_another_queue_teaches_the_neighbour_without_a_reply() {
        let mut e = engine();
        let mut tx = VecTransmit::default();
        let h = crate::datapath::steer::Handoff::new(&[], &arp_request(OUR_IP), true);
        e.handle_handoff(Instant(0), &h, &mut tx);
        assert!(
            tx.frames.is_empty(),
            "the receiving queue answers, not this one"
        );
        assert_eq!(e.stats().arp_replies, 0);
        // The neighbour is known: a SYN leaves at once, with no ARP request.
        e.connect(Instant(0), OUR_IP, 0, PEER_IP, 80).unwrap();
        e.poll(Instant(0), &mut tx);
        assert_eq!(tx.frames.len(), 1);
        let (eth, _) = EthernetRepr::parse(&tx.frames[0]).unwrap();
        assert_eq!(
            (eth.dst, eth.ethertype),
            (PEER_MAC, ethernet::ETHERTYPE_IPV4)
        );
        assert_eq!(e.stats().arp_requests_out, 0);
        // Not marked learn-only, the same copy is answered like any request.
        let h = crate::datapath::steer::Handoff::new(&[], &arp_request(OUR_IP), false);
        e.handle_handoff(Instant(0), &h, &mut tx);
        assert_eq!(e.stats().arp_replies, 1);
    }

    #[test]
    fn arp_request_for_another_address_is_ignored() {
        let mut e = engine();
        let mut tx = VecTransmit::default();
        e.handle_frame(
            Instant(0),
            &arp_request(Ipv4Addr::new(198, 18, 0, 9)),
            &mut tx,
        );
        assert!(tx.frames.is_empty());
        assert_eq!(e.stats().arp_ignored, 1);
    }

    #[test]
    fn icmp_echo_request_gets_an_echo_reply_with_the_same_data() {
        let mut e = engine();
        let mut tx = VecTransmit::default();
        e.handle_frame(Instant(0), &echo_request(b"abcdefgh12345"), &mut tx);
        assert_eq!(tx.frames.len(), 1);
        let (eth, payload) = EthernetRepr::parse(&tx.frames[0]).unwrap();
        assert_eq!(eth.dst, PEER_MAC);
        let (ip, body) = Ipv4Repr::parse(payload).unwrap();
        assert_eq!((ip.src, ip.dst), (OUR_IP, PEER_IP));
        let reply = IcmpRepr::parse(body).unwrap();
        assert_eq!(reply.kind, icmp::ECHO_REPLY);
        assert_eq!(reply.rest, [0x12, 0x34, 0, 1]);
        assert_eq!(reply.data, b"abcdefgh12345");
        assert_eq!(checksum::checksum(body), 0);
        assert_eq!(e.stats().icmp_echo_replies, 1);
    }

    /// RFC 9293 §3.10.7.2 (LISTEN: SYN → SYN-ACK) and §3.10.7.1 (no
    /// listener: RST carrying ACK of the SYN), through Ethernet and IPv4.
    /// A segment from the peer's port 80 to our `dport`, as a frame.
    fn peer_segment(dport: u16, seq: u32, ack: u32, flags: u8, data: &[u8]) -> Vec<u8> {
        let repr = crate::wire::tcp::TcpRepr {
            src_port: 80,
            dst_port: dport,
            seq: crate::tcp::SeqNumber(seq),
            ack: Some(crate::tcp::SeqNumber(ack)),
            flags,
            window: 65535,
            urgent: 0,
            options: Default::default(),
            payload: data,
        };
        let mut seg = vec![0u8; repr.header_len() + data.len()];
        repr.emit(PEER_IP, OUR_IP, &mut seg).unwrap();
        ipv4_frame(ipv4::PROTO_TCP, &seg)
    }

    /// The TCP segments in `frames`: (flags, seq, ack, payload).
    fn sent_segments(frames: &[Vec<u8>]) -> Vec<(u8, u32, Option<u32>, Vec<u8>)> {
        frames
            .iter()
            .map(|f| {
                let (_, payload) = EthernetRepr::parse(f).unwrap();
                let (ip, seg) = Ipv4Repr::parse(payload).unwrap();
                let t = crate::wire::tcp::TcpRepr::parse(ip.src, ip.dst, seg).unwrap();
                (t.flags, t.seq.0, t.ack.map(|a| a.0), t.payload.to_vec())
            })
            .collect()
    }

    #[test]
    fn a_client_that_answers_before_poll_sends_its_request_with_the_ack_and_its_fin_with_the_last_ack(
    ) {
        use crate::wire::tcp::{FIN, PSH, SYN};
        let mut e = engine();
        let mut tx = VecTransmit::default();
        // Learn the peer's MAC, then drop the ARP reply.
        e.handle_frame(Instant(0), &arp_request(OUR_IP), &mut tx);
        tx.frames.clear();
        let id = e.connect(Instant(0), OUR_IP, 50000, PEER_IP, 80).unwrap();
        e.poll(Instant(0), &mut tx);
        let syn = sent_segments(&tx.frames);
        assert_eq!(syn.len(), 1);
        assert_eq!(syn[0].0, SYN);
        let iss = syn[0].1;
        tx.frames.clear();
        // SYN-ACK in: nothing leaves while the frame is handled.
        let t = Instant(1000);
        e.handle_frame(t, &peer_segment(50000, 7000, iss + 1, SYN, &[]), &mut tx);
        assert!(tx.frames.is_empty());
        e.dispatch_events(t);
        assert_eq!(e.poll_event(), Some(Event::Connected(id)));
        assert_eq!(e.tcp().write(id, b"GET"), Ok(3));
        e.poll(t, &mut tx);
        // One segment: the request, carrying the ACK of the SYN-ACK.
        let out = sent_segments(&tx.frames);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].0 & !PSH, 0);
        assert_eq!((out[0].1, out[0].2), (iss + 1, Some(7001)));
        assert_eq!(out[0].3, b"GET");
        tx.frames.clear();
        // Response and FIN in one segment; the client reads to the end and
        // closes before the next poll.
        let t = Instant(2000);
        e.handle_frame(
            t,
            &peer_segment(50000, 7001, iss + 4, FIN | PSH, b"OK"),
            &mut tx,
        );
        assert!(tx.frames.is_empty());
        e.dispatch_events(t);
        assert!(e.poll_event().is_some());
        let mut buf = [0u8; 16];
        assert_eq!(e.tcp().read(id, &mut buf), Ok(2));
        assert_eq!(e.tcp().read(id, &mut buf), Ok(0));
        e.tcp().close(t, id).unwrap();
        e.poll(t, &mut tx);
        // One segment: the FIN, acknowledging data and FIN (no bare ACK first).
        let out = sent_segments(&tx.frames);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out[0].0, FIN);
        assert_eq!((out[0].1, out[0].2), (iss + 4, Some(7004)));
    }

    #[test]
    fn syn_to_a_listening_port_gets_syn_ack_and_to_a_closed_port_rst() {
        let mut e = engine();
        let mut tx = VecTransmit::default();
        e.handle_frame(Instant(0), &tcp_syn(8080), &mut tx);
        e.handle_frame(Instant(0), &tcp_syn(9999), &mut tx);
        e.poll(Instant(0), &mut tx);
        assert_eq!(e.stats().tcp_segments, 2);
        assert_eq!(e.stats().tcp_syns, 2);
        assert_eq!(e.stats().tcp_not_listened, 1);
        assert_eq!(tx.frames.len(), 2, "{:?}", tx.frames);
        let mut flags = Vec::new();
        for f in &tx.frames {
            let (eth, payload) = EthernetRepr::parse(f).unwrap();
            assert_eq!((eth.src, eth.dst), (OUR_MAC, PEER_MAC));
            let (ip, seg) = Ipv4Repr::parse(payload).unwrap();
            assert_eq!((ip.src, ip.dst), (OUR_IP, PEER_IP));
            let tcp = crate::wire::tcp::TcpRepr::parse(ip.src, ip.dst, seg).unwrap();
            assert_eq!(tcp.ack.map(|a| a.0), Some(1001));
            flags.push((tcp.src_port, tcp.flags));
        }
        flags.sort();
        // `TcpRepr::flags` carries the ACK bit as `ack: Some(..)`, checked above.
        use crate::wire::tcp::{RST, SYN};
        assert_eq!(flags, vec![(8080, SYN), (9999, RST)]);
    }

    #[test]
    fn malformed_frames_are_counted_by_reason() {
        let mut e = engine();
        let mut tx = VecTransmit::default();
        // Truncated Ethernet header.
        e.handle_frame(Instant(0), &[0u8; 5], &mut tx);
        // Truncated ARP.
        e.handle_frame(Instant(0), &arp_request(OUR_IP)[..30], &mut tx);
        // IPv4 with a bad header checksum.
        let mut bad = echo_request(b"x");
        bad[14 + 10] ^= 0xff;
        e.handle_frame(Instant(0), &bad, &mut tx);
        // IPv4 total length past the frame (oversized claim).
        let mut long = echo_request(b"x");
        long[14 + 2..14 + 4].copy_from_slice(&9000u16.to_be_bytes());
        e.handle_frame(Instant(0), &long, &mut tx);
        // ICMP with a bad checksum.
        let mut icmp_bad = echo_request(b"x");
        let last = icmp_bad.len() - 1;
        icmp_bad[last] ^= 0xff;
        e.handle_frame(Instant(0), &icmp_bad, &mut tx);
        // TCP with data offset 15 in a 20-byte segment.
        let mut tcp_bad = tcp_syn(8080);
        tcp_bad[34 + 12] = 0xf0;
        e.handle_frame(Instant(0), &tcp_bad, &mut tx);
        // IPv6 EtherType.
        let mut v6 = echo_request(b"x");
        v6[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
        e.handle_frame(Instant(0), &v6, &mut tx);

        assert!(tx.frames.is_empty());
        let s = e.stats();
        assert_eq!(s.rx_frames, 7);
        assert_eq!(s.drop_wire[WireError::EthernetTruncated.index()], 1);
        assert_eq!(s.drop_wire[WireError::ArpTruncated.index()], 1);
        assert_eq!(s.drop_wire[WireError::Ipv4BadChecksum.index()], 1);
        assert_eq!(s.drop_wire[WireError::Ipv4BadLength.index()], 1);
        assert_eq!(s.drop_wire[WireError::IcmpBadChecksum.index()], 1);
        assert_eq!(s.drop_wire[WireError::UnsupportedEtherType(0).index()], 1);
        assert_eq!(s.drop_tcp_malformed, 1);
        assert_eq!(s.wire_drops_total(), 7);
    }

    #[test]
    fn random_and_truncated_frames_never_panic() {
        let mut e = engine();
        let mut tx = VecTransmit::default();
        let templates = [arp_request(OUR_IP), echo_request(b"hello"), tcp_syn(8080)];
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut n = 0u64;
        for t in &templates {
            for len in 0..=t.len() {
                e.handle_frame(Instant(0), &t[..len], &mut tx);
                n += 1;
            }
            for _ in 0..2000 {
                let mut f = t.clone();
                let flips = 1 + next() % 4;
                for _ in 0..flips {
                    let i = (next() as usize) % f.len();
                    f[i] = next() as u8;
                }
                e.handle_frame(Instant(0), &f, &mut tx);
                n += 1;
            }
        }
        for _ in 0..2000 {
            let len = (next() % 1600) as usize;
            let f: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            e.handle_frame(Instant(0), &f, &mut tx);
            n += 1;
        }
        assert_eq!(e.stats().rx_frames, n);
    }
}
