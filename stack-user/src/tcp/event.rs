//! Handles and events of the application API.

use std::hash::{Hash, Hasher};
use std::net::Ipv4Addr;

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
                "TCP: {}:{} -> {}:{} in CLOSE_WAIT for {} s: the application has not closed it",
                tuple.local_addr,
                tuple.local_port,
                tuple.remote_addr,
                tuple.remote_port,
                age.as_secs()
            ),
        }
    }
}

/// The 4-tuple a connection is demultiplexed by, from our point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FourTuple {
    /// Our address.
    pub local_addr: Ipv4Addr,
    /// Our port.
    pub local_port: u16,
    /// The peer's address.
    pub remote_addr: Ipv4Addr,
    /// The peer's port.
    pub remote_port: u16,
}

impl Hash for FourTuple {
    /// Two words instead of four fields, so the demux hasher does two
    /// multiply-mix rounds per lookup.
    fn hash<H: Hasher>(&self, h: &mut H) {
        let addrs =
            (u64::from(u32::from(self.local_addr)) << 32) | u64::from(u32::from(self.remote_addr));
        h.write_u64(addrs);
        h.write_u32((u32::from(self.local_port) << 16) | u32::from(self.remote_port));
    }
}
