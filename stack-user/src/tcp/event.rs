//! Handles and events of the application API.

use std::hash::{Hash, Hasher};
use std::net::IpAddr;

/// A connection handle. The generation makes stale handles fail with
/// `NotFound` after the slot is reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    pub(crate) idx: u32,
    pub(crate) gen: u32,
}

/// A listener handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ListenerId(pub(crate) u32);

/// What happened, for the application to react to (`poll_event`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A listener has a connection ready for `accept`.
    Incoming(ListenerId),
    /// An active open completed (ESTABLISHED).
    Connected(ConnId),
    /// New data (or end of stream) can be read.
    Readable(ConnId),
    /// Send buffer space is available again after a short write.
    Writable(ConnId),
    /// The peer sent FIN: reads return end of stream once drained.
    PeerClosed(ConnId),
    /// The connection reached CLOSED after an orderly close.
    Closed(ConnId),
    /// The peer reset the connection.
    Reset(ConnId),
    /// The retransmission limit was reached.
    TimedOut(ConnId),
    /// The peer refused the connection (RST in SYN-SENT).
    Refused(ConnId),
}

/// Something an operator should know, drained with
/// [`TcpEngine::poll_warning`](super::TcpEngine::poll_warning) (the engine
/// does no logging of its own). Rate-limited as Linux's `net_ratelimit`
/// (10 per 5 s); the rest are counted in `warnings_suppressed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Warning {
    /// The TIME_WAIT table is full (`tcp_max_tw_buckets`): connections
    /// close without TIME_WAIT. Linux logs "TCP: time wait bucket table
    /// overflow".
    TimeWaitOverflow {
        /// The bound.
        max: usize,
    },
    /// A connection has been in CLOSE_WAIT longer than `close_wait_warn`:
    /// the peer closed and the application never did.
    CloseWaitTooLong {
        /// The connection.
        id: ConnId,
        /// Its 4-tuple.
        tuple: FourTuple,
        /// The listener it was accepted from, if any.
        listener: Option<ListenerId>,
        /// How long it has been in CLOSE_WAIT.
        age: std::time::Duration,
    },
    /// Segments arrive with only the pseudo-header checksum
    /// (CHECKSUM_PARTIAL) and are dropped because this link is not one
    /// where they can be trusted (`accept_checksum_partial` is off).
    /// Reported once per engine.
    ChecksumPartialDropped {
        /// The sender.
        from: IpAddr,
    },
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Warning::TimeWaitOverflow { max } => write!(
                f,
                "TCP: time wait bucket table overflow (tcp_max_tw_buckets {max})"
            ),
            Warning::CloseWaitTooLong { tuple, age, .. } => write!(
                f,
                "TCP: {} -> {} in CLOSE_WAIT for {} s: the application has not closed it",
                std::net::SocketAddr::new(tuple.local_addr, tuple.local_port),
                std::net::SocketAddr::new(tuple.remote_addr, tuple.remote_port),
                age.as_secs()
            ),
            Warning::ChecksumPartialDropped { from } => write!(
                f,
                "TCP: segments from {from} carry only the pseudo-header checksum (CHECKSUM_PARTIAL: \
                 the sender's tx-checksum offload on a virtual link) and are dropped \
                 (drop_tcp_checksum_partial); turn the offload off on the sender \
                 (`ethtool -K IF tx off`) or run on veth, where xstack accepts them"
            ),
        }
    }
}

/// The 4-tuple a connection is demultiplexed by, from our point of view.
/// Both addresses are of one family (the engine refuses a mixed one).
/// The engine's tables do not key on this type but on a compact key per
/// family (`engine::demux::Key4` / `Key6`), so an IPv4 entry stays as
/// small as before IPv6.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FourTuple {
    /// Our address.
    pub local_addr: IpAddr,
    /// Our port.
    pub local_port: u16,
    /// The peer's address.
    pub remote_addr: IpAddr,
    /// The peer's port.
    pub remote_port: u16,
}

impl FourTuple {
    /// The queue worker (of `count`) that owns this connection when a
    /// stack runs one engine per queue: a fixed mix of the remote address,
    /// the remote port and the local port, so that every worker computes
    /// the same owner for a frame, whichever rx queue it arrived on.
    ///
    /// A NIC's RSS spreads flows by a hash the stack cannot always choose
    /// (veth picks the queue from the sending socket's random `txhash`), so
    /// the owner is this function, not the arrival queue; a worker hands a
    /// frame it does not own to its owner (see `datapath::steer`). A client
    /// picks local ports whose tuple it owns, so the owner of its replies is
    /// itself (`TcpEngine::set_shard`).
    pub fn shard(&self, count: u32) -> u32 {
        if count <= 1 {
            return 0;
        }
        let x = (u64::from(fold_addr(self.remote_addr)) << 32)
            ^ (u64::from(self.remote_port) << 16)
            ^ u64::from(self.local_port);
        // splitmix64's finaliser: every input bit moves every output bit.
        let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        ((z >> 32) % u64::from(count)) as u32
    }
}

/// Which queue worker owns a 4-tuple when a stack runs one engine per
/// queue: the one every worker agrees on, so that a frame reaches its
/// connection whatever queue it arrived on, and the one a client's
/// `connect` picks local ports for.
#[derive(Clone, Debug)]
pub enum Sharding {
    /// [`FourTuple::shard`] over this many workers: a frame the NIC puts
    /// on another queue is handed to its owner in software.
    Mix(u32),
    /// The NIC's RSS: the queue its Toeplitz hash and indirection table
    /// give a frame *from* the peer (source = remote address and port,
    /// destination = local ones), so a client that picks its ports by it
    /// gets every reply on its own queue, with no hand-off. A queue past
    /// the workers' count is nobody's.
    Rss(std::sync::Arc<crate::wire::rss::RssTable>),
}

impl Sharding {
    /// The owner of `t` (for [`Sharding::Rss`], possibly a queue no worker
    /// serves).
    pub fn owner(&self, t: &FourTuple) -> u32 {
        match self {
            Sharding::Mix(count) => t.shard(*count),
            Sharding::Rss(table) => {
                table.queue(t.remote_addr, t.local_addr, t.remote_port, t.local_port)
            }
        }
    }
}

impl FourTuple {
    /// Whether the connection is over IPv6.
    pub fn is_ipv6(&self) -> bool {
        self.remote_addr.is_ipv6()
    }
}

/// An address as 32 bits for [`FourTuple::shard`]: an IPv4 address as it
/// is, an IPv6 one as the XOR of its four words (the datapath's steering
/// computes the same from the frame).
pub fn fold_addr(a: IpAddr) -> u32 {
    match a {
        IpAddr::V4(a) => u32::from(a),
        IpAddr::V6(a) => {
            let x = u128::from(a);
            (x as u32) ^ ((x >> 32) as u32) ^ ((x >> 64) as u32) ^ ((x >> 96) as u32)
        }
    }
}

impl Hash for FourTuple {
    /// The words of the addresses and one of the ports, so the demux
    /// hasher does few multiply-mix rounds per lookup.
    fn hash<H: Hasher>(&self, h: &mut H) {
        match (self.local_addr, self.remote_addr) {
            (IpAddr::V4(l), IpAddr::V4(r)) => {
                h.write_u64((u64::from(u32::from(l)) << 32) | u64::from(u32::from(r)))
            }
            (l, r) => {
                let l = to_v6(l);
                let r = to_v6(r);
                h.write_u64((l >> 64) as u64);
                h.write_u64(l as u64);
                h.write_u64((r >> 64) as u64);
                h.write_u64(r as u64);
            }
        }
        h.write_u32((u32::from(self.local_port) << 16) | u32::from(self.remote_port));
    }
}

fn to_v6(a: IpAddr) -> u128 {
    match a {
        IpAddr::V4(a) => u128::from(a.to_ipv6_mapped()),
        IpAddr::V6(a) => u128::from(a),
    }
}
