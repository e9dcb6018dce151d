//! The frame layer: one [`Interface`] per queue, a sans-IO frame handler.
//!
//! It takes one received Ethernet frame at a time and emits replies through a
//! [`FrameSink`] sink. It has no I/O and no clock of its own, so it is tested in
//! memory. It answers ARP requests (RFC 826) and ICMP echo (RFC 792) for the
//! stack's own addresses and hands TCP segments for owned ports to the TCP
//! layer; everything malformed is dropped and counted by reason.
//!
//! This file holds the handler and the Ethernet/IPv4 dispatch; beside it:
//! `neighbor` (ARP and the hold queue), `icmp`, `tcp` (the TCP entry and
//! the cookie metadata path), [`stats`](IfaceStats) and the output
//! [`sink`](FrameSink).

mod icmp;
mod ipv6;
mod neighbor;
mod sink;
mod stats;
mod tcp;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests6;

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

pub use sink::{FrameSink, VecSink};
pub use stats::IfaceStats;
pub use tcp::{cookie_meta, is_cookie_synack};

use crate::apps::App;
use crate::tcp::{Event, TcpConfig, TcpEngine};
use crate::time::Instant;
use crate::wire::{
    arp::ArpRepr,
    ethernet::{self, EthernetRepr, Mac},
    ipv4::{self, Ipv4Repr},
    WireError,
};

/// What the engine owns.
#[derive(Clone, Debug)]
pub struct IfaceConfig {
    /// The interface's MAC address, used as the source of every frame.
    pub mac: Mac,
    /// The stack's IPv4 addresses (not configured on the kernel interface).
    pub addrs: Vec<Ipv4Addr>,
    /// The stack's IPv6 addresses (likewise; answered in neighbour
    /// discovery, also when solicited at their solicited-node group).
    pub addrs6: Vec<Ipv6Addr>,
    /// TCP ports served on those addresses.
    pub ports: Vec<u16>,
    /// The application on the listening ports.
    pub app: App,
    /// Body size of the HTTP application's responses.
    pub response_bytes: usize,
    /// The HTTP application echoes request bodies instead.
    pub echo_body: bool,
    /// Largest request body the HTTP application accepts (413 above).
    pub max_body: u64,
    /// TCP settings (Linux sysctl names).
    pub tcp: TcpConfig,
    /// Listen backlog per port.
    pub backlog: usize,
    /// Secret for ISNs (RFC 6528); random per run.
    pub secret: [u8; 16],
    /// The link's MTU (largest IP packet). A TCP frame above it would be
    /// dropped by the link without a trace; it is counted as `tx_oversize`
    /// and not sent instead. 0: no check.
    pub mtu: u32,
}

/// The per-queue frame handler.
pub struct Interface {
    config: IfaceConfig,
    /// `config.addrs`, sorted: what [`Interface::owns`] searches (a load
    /// owns up to a /24).
    owned: Vec<Ipv4Addr>,
    /// `config.addrs6`, sorted: what [`Interface::owns6`] searches.
    owned6: Vec<Ipv6Addr>,
    stats: IfaceStats,
    ident: u16,
    tcp: TcpEngine,
    /// IPv4 → MAC, learned from ARP and from received frames (RFC 826
    /// "merge" rule).
    neighbors: HashMap<Ipv4Addr, Mac>,
    /// Last ARP request sent per unresolved address.
    arp_pending: HashMap<Ipv4Addr, Instant>,
    /// IPv6 → MAC, learned from neighbour discovery (RFC 4861 §7.2.3,
    /// §7.2.5) and from received frames.
    neighbors6: HashMap<Ipv6Addr, Mac>,
    /// Last neighbour solicitation sent per unresolved address.
    nd_pending: HashMap<Ipv6Addr, Instant>,
    /// Complete IP packets (either family) waiting for their next hop's
    /// MAC; one bound for both.
    held: Vec<(IpAddr, Vec<u8>)>,
    scratch: Vec<u8>,
    /// Connections the application accepted; others (opened with
    /// [`Interface::connect`]) belong to the caller.
    app_conns: HashMap<crate::tcp::ConnId, crate::apps::AppConn>,
    /// Events on caller-owned connections, for [`Interface::poll_event`].
    events: std::collections::VecDeque<Event>,
    /// The applications' read buffer.
    app_buf: Vec<u8>,
    /// Lingering closes by deadline, oldest first (one fixed duration, so
    /// a FIFO is ordered).
    lingering: std::collections::VecDeque<(Instant, crate::tcp::ConnId)>,
}

impl Interface {
    /// A new engine for `config`: listens on every (address, port).
    pub fn new(config: IfaceConfig) -> Interface {
        let mut tcp = TcpEngine::new(config.tcp.clone(), config.secret);
        // One listener per port, bound to every address of both
        // families (dual-stack: one accept queue).
        let addrs: Vec<IpAddr> = config
            .addrs
            .iter()
            .map(|a| IpAddr::V4(*a))
            .chain(config.addrs6.iter().map(|a| IpAddr::V6(*a)))
            .collect();
        if let Some((first, rest)) = addrs.split_first() {
            for p in &config.ports {
                // Distinct (address, port) pairs cannot collide.
                if let Ok(id) = tcp.listen(*first, *p, config.backlog) {
                    for a in rest {
                        let _ = tcp.listen_also(id, *a);
                    }
                }
            }
        }
        let app_cap = config.tcp.initial_connections;
        let mut owned = config.addrs.clone();
        owned.sort_unstable();
        let mut owned6 = config.addrs6.clone();
        owned6.sort_unstable();
        Interface {
            config,
            owned,
            owned6,
            stats: IfaceStats::default(),
            ident: 1,
            tcp,
            neighbors: HashMap::new(),
            arp_pending: HashMap::new(),
            neighbors6: HashMap::new(),
            nd_pending: HashMap::new(),
            held: Vec::new(),
            scratch: vec![0u8; 2048],
            app_conns: HashMap::with_capacity(app_cap),
            events: std::collections::VecDeque::new(),
            app_buf: vec![0u8; 16 * 1024],
            lingering: std::collections::VecDeque::new(),
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

    /// When [`Interface::poll`] must run next at the latest.
    pub fn next_timeout(&self) -> Option<Instant> {
        self.tcp.poll_timeout()
    }

    /// Counters so far.
    pub fn stats(&self) -> &IfaceStats {
        &self.stats
    }

    /// Records frames the datapath could not queue.
    pub fn count_tx_no_buffer(&mut self, n: u64) {
        self.stats.tx_no_buffer += n;
    }

    fn owns(&self, ip: Ipv4Addr) -> bool {
        self.owned.binary_search(&ip).is_ok()
    }

    fn owns6(&self, ip: Ipv6Addr) -> bool {
        self.owned6.binary_search(&ip).is_ok()
    }

    fn drop_wire(&mut self, e: WireError) {
        self.stats.drop_wire[e.index()] += 1;
    }

    /// Handles one received frame at `now`; replies go to `tx`.
    pub fn handle_frame(&mut self, now: Instant, frame: &[u8], tx: &mut dyn FrameSink) {
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
        tx: &mut dyn FrameSink,
    ) {
        self.stats.rx_frames += 1;
        self.stats.rx_bytes += frame.len() as u64;
        if is_cookie_synack(meta) {
            return self.send_cookie_synack(frame, tx);
        }
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
    /// [`crate::datapath::steer`]): its XDP metadata `meta` and the frame; an
    /// ARP copy marked `learn_only` teaches the sender's address without
    /// answering it (the receiving worker did); so does a neighbour
    /// solicitation or advertisement copy.
    pub fn handle_handoff(
        &mut self,
        now: Instant,
        meta: &[u8],
        frame: &[u8],
        learn_only: bool,
        tx: &mut dyn FrameSink,
    ) {
        if !learn_only {
            return self.handle_frame_meta(now, meta, frame, tx);
        }
        let Ok((eth, payload)) = EthernetRepr::parse(frame) else {
            return;
        };
        if eth.ethertype == ethernet::ETHERTYPE_IPV6 {
            return self.learn_ndp(&eth, payload, tx);
        }
        if eth.ethertype != ethernet::ETHERTYPE_ARP {
            return;
        }
        if let Ok(arp) = ArpRepr::parse(payload) {
            if self.owns(arp.tpa) {
                self.learn(arp.spa, arp.sha);
            }
        }
    }

    fn dispatch(
        &mut self,
        now: Instant,
        frame: &[u8],
        tx: &mut dyn FrameSink,
    ) -> Result<(), WireError> {
        let (eth, payload) = EthernetRepr::parse(frame)?;
        match eth.ethertype {
            ethernet::ETHERTYPE_ARP => self.handle_arp(&eth, payload, tx),
            ethernet::ETHERTYPE_IPV4 => self.handle_ipv4(now, &eth, payload, tx),
            ethernet::ETHERTYPE_IPV6 => self.handle_ipv6(now, &eth, payload, tx),
            other => Err(WireError::UnsupportedEtherType(other)),
        }
    }

    /// Runs timers and the application, then sends what TCP has queued.
    pub fn poll(&mut self, now: Instant, tx: &mut dyn FrameSink) {
        if self.tcp.poll_timeout().is_some_and(|t| t <= now) {
            self.tcp.handle_timeout(now);
        }
        self.run_app(now);
        self.end_lingering(now);
        self.flush_held(tx);
        self.drain_tcp(now, tx);
    }

    /// Closes the lingering closes whose time cap has passed (RFC 9112
    /// §9.6 leaves the duration to the server; see
    /// [`crate::apps::http::LINGER_TIME`]).
    fn end_lingering(&mut self, now: Instant) {
        while let Some(&(at, c)) = self.lingering.front() {
            if at > now {
                break;
            }
            self.lingering.pop_front();
            if self.app_conns.get(&c).is_some_and(|st| st.lingering()) {
                self.app_conns.remove(&c);
                let _ = self.tcp.close(now, c);
                self.stats.http_linger_timeouts += 1;
            }
        }
    }

    /// Actively opens a connection (the engine as a client); `local_port` 0
    /// picks one from `ip_local_port_range`. The XDP program must own the
    /// local port for the replies to reach the engine.
    pub fn connect(
        &mut self,
        now: Instant,
        local: impl Into<IpAddr>,
        local_port: u16,
        remote: impl Into<IpAddr>,
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

    /// Next event on a connection opened with [`Interface::connect`].
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
            http: crate::apps::http::ServerConfig {
                response_bytes: self.config.response_bytes,
                echo_body: self.config.echo_body,
                max_body: self.config.max_body,
            },
        };
        let done = crate::apps::service(cfg, &mut self.tcp, now, c, st, &mut n, buf);
        if done == crate::apps::Service::Closed {
            self.app_conns.remove(&c);
        } else if st.start_linger_timer() {
            self.lingering
                .push_back((now + crate::apps::http::LINGER_TIME, c));
        }
        self.stats.app_bytes_in += n.bytes_in;
        self.stats.app_bytes_out += n.bytes_out;
        self.stats.http_requests += n.http_requests;
        self.stats.http_errors += n.http_errors;
    }

    fn count_sent(&mut self, sent: bool, f: impl FnOnce(&mut IfaceStats)) {
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
        tx: &mut dyn FrameSink,
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
}
