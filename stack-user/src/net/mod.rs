//! The application API: [`TcpListener`] and [`TcpStream`], tokio-compatible
//! sockets (`AsyncRead`/`AsyncWrite`) on one queue's sans-IO engine.
//!
//! A [`Net`] is the handle of one queue: the engine ([`Interface`] and its
//! [`crate::tcp::TcpEngine`]) behind a [`Datapath`], plus the wakers of the
//! tasks waiting on its connections. It is `!Send`: sockets stay on the
//! thread (and the current-thread tokio runtime) of the queue that owns
//! their flows, as in Seastar or glommio. Something must drive it — call
//! [`Net::receive`] and [`Net::transmit`] and sleep until
//! [`Net::next_deadline`], new frames or [`Net::poll_dirty`]: the
//! thread-per-queue runtime [`crate::rt`] does that on AF_XDP, and
//! [`mem::Pair`] does it for two engines joined in memory (tests).
//!
//! Waiting is edge-driven by the engine's events: a read that finds nothing
//! registers the task's waker and the connection's next `Readable` (or
//! `PeerClosed`, `Reset`, ...) wakes it; a write that finds the send buffer
//! full registers its waker and arms the engine's `Writable` event, so a
//! writer is paused (backpressure) until ACKs free space. There is no
//! queue between the application and the engine other than the engine's
//! own bounded send and receive buffers.
//!
//! Errors are `std::io::Error`s of the kinds the kernel's sockets give
//! (see [`NetError`]): `ConnectionRefused`, `ConnectionReset` on read after
//! an RST, `BrokenPipe` on write after it or after `shutdown`, `TimedOut`,
//! `AddrInUse`, `AddrNotAvailable`.
//!
//! Both families: a stack with an IPv4 address, IPv6 addresses or both
//! (dual-stack) listens and connects on each. [`TcpListener::bind`] takes a
//! port (every address of the stack, as Linux's `[::]:port`) or a
//! [`SocketAddr`] (one address, or the unspecified address of a family);
//! [`TcpStream::connect`] takes a [`SocketAddr`] of either family and picks
//! the stack's address of that family as the local one; `local_addr` and
//! `peer_addr` are `SocketAddr`s of the connection's family.

mod error;
mod listener;
pub mod mem;
mod stream;

use std::{
    cell::RefCell,
    collections::HashMap,
    net::IpAddr,
    rc::Rc,
    task::{Context, Poll, Waker},
};

/// TCP_KEEPIDLE / TCP_KEEPINTVL / TCP_KEEPCNT for
/// [`TcpStream::set_keepalive`].
pub use crate::tcp::KeepaliveConfig;
pub use error::NetError;
pub use listener::{ListenAddr, TcpListener};
pub use stream::{OwnedReadHalf, OwnedWriteHalf, TcpStream};

use crate::iface::Interface;
use crate::runtime::stack::Stack;
use crate::tcp::{ConnId, Event, ListenerId, TcpError};
use crate::time::Instant;

/// What a [`Net`] drives: one queue's engine and the frames in and out of
/// it. [`Stack`] (AF_XDP) implements it; so does [`mem::MemLink`].
pub trait Datapath {
    /// The engine.
    fn interface(&mut self) -> &mut Interface;
    /// The engine's clock now.
    fn now(&self) -> Instant;
    /// The stack's addresses, both families: its IPv4 address first (when
    /// it has one), then its IPv6 ones. A connection's local address is the
    /// first of its peer's family; a listener bound to a port alone listens
    /// on all of them.
    fn addrs(&self) -> Vec<IpAddr>;
    /// Received frames into the engine and the engine's events to the
    /// caller's queue ([`Interface::poll_event`]); returns how many frames.
    fn receive(&mut self) -> u32;
    /// Timers, then every frame the engine has queued goes out.
    fn transmit(&mut self);
    /// Before sleeping: false when the sleep must not start (frames waiting
    /// elsewhere); see [`Stack::prepare_sleep`].
    fn prepare_sleep(&mut self) -> bool {
        true
    }
    /// After a sleep that [`prepare_sleep`](Self::prepare_sleep) allowed.
    fn woke(&mut self) {}
    /// Lets frames already queued leave before the datapath is dropped.
    fn finish(&mut self) {}
    /// Counters of the way below the engine (none for an in-memory link).
    fn counters(&self) -> DatapathCounters {
        DatapathCounters::default()
    }
}

/// Counters below the engine of one queue: what the kernel dropped at the
/// AF_XDP socket and the frames handed between queues.
#[derive(Clone, Copy, Debug, Default)]
pub struct DatapathCounters {
    /// The AF_XDP socket's `XDP_STATISTICS`.
    pub kernel: crate::datapath::xsk::KernelStats,
    /// Frames handed to and from the other queues' workers.
    pub steer: crate::datapath::steer::SteerCounts,
}

impl Datapath for Stack {
    fn interface(&mut self) -> &mut Interface {
        self.engine()
    }
    fn now(&self) -> Instant {
        Stack::now(self)
    }
    fn addrs(&self) -> Vec<IpAddr> {
        Stack::addrs(self)
    }
    fn receive(&mut self) -> u32 {
        Stack::receive(self)
    }
    fn transmit(&mut self) {
        Stack::transmit(self)
    }
    fn prepare_sleep(&mut self) -> bool {
        Stack::prepare_sleep(self)
    }
    fn woke(&mut self) {
        Stack::woke(self)
    }
    fn finish(&mut self) {
        // Each round already handed the FINs of closed connections to the
        // socket; let them leave.
        self.drain_tx(std::time::Duration::from_millis(200));
    }
    fn counters(&self) -> DatapathCounters {
        DatapathCounters {
            kernel: self.kernel_stats(),
            steer: self.steer_counts(),
        }
    }
}

/// Who waits on one connection.
#[derive(Default)]
struct ConnWake {
    read: Option<Waker>,
    write: Option<Waker>,
    /// `Event::Connected` was seen (an active open completed).
    connected: bool,
    /// An error the engine reported by event only (a refused or timed-out
    /// active open).
    error: Option<TcpError>,
}

/// The shared state behind a [`Net`] handle.
struct Core {
    dp: Box<dyn Datapath>,
    conns: HashMap<ConnId, ConnWake>,
    /// Listeners bound by a [`TcpListener`], with the accepting task.
    listeners: HashMap<ListenerId, Option<Waker>>,
    /// The driver task, woken when the application queued something to
    /// send.
    driver: Option<Waker>,
    dirty: bool,
    backlog: usize,
    queue: u32,
}

/// One queue's engine as the sockets see it: a cheap, `!Send` handle
/// (clones share the engine). Sockets are opened on it
/// ([`TcpListener::bind`], [`TcpStream::connect`]); a driver runs it.
#[derive(Clone)]
pub struct Net {
    core: Rc<RefCell<Core>>,
}

impl std::fmt::Debug for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Net").field("queue", &self.queue()).finish()
    }
}

impl Net {
    /// A handle on `dp`, queue `queue`; listeners get a backlog of
    /// `backlog` (capped by `somaxconn`).
    pub fn new(dp: impl Datapath + 'static, queue: u32, backlog: usize) -> Net {
        Net {
            core: Rc::new(RefCell::new(Core {
                dp: Box::new(dp),
                conns: HashMap::new(),
                listeners: HashMap::new(),
                driver: None,
                dirty: true,
                backlog,
                queue,
            })),
        }
    }

    /// The queue this handle drives (0 for a single-queue stack).
    pub fn queue(&self) -> u32 {
        self.core.borrow().queue
    }

    /// The stack's addresses: the IPv4 one first (when it has one), then
    /// the IPv6 ones.
    pub fn local_addrs(&self) -> Vec<IpAddr> {
        self.core.borrow().dp.addrs()
    }

    /// The stack's address of `remote`'s family (the local address a
    /// connection to `remote` gets), if it has one.
    pub fn local_addr_for(&self, remote: IpAddr) -> Option<IpAddr> {
        let remote = remote.to_canonical();
        self.core
            .borrow()
            .dp
            .addrs()
            .into_iter()
            .find(|a| a.is_ipv4() == remote.is_ipv4())
    }

    /// Open connections that a socket holds.
    pub fn connection_count(&self) -> usize {
        self.core.borrow().conns.len()
    }

    /// Counters below the engine (AF_XDP drops, hand-overs between
    /// queues).
    pub fn datapath_counters(&self) -> DatapathCounters {
        self.core.borrow().dp.counters()
    }

    /// Runs `f` on the engine (counters, state, options the socket types do
    /// not cover). The sockets of this `Net` must not be used inside `f`.
    pub fn with_interface<R>(&self, f: impl FnOnce(&mut Interface) -> R) -> R {
        f(self.core.borrow_mut().dp.interface())
    }

    /// Driver: received frames into the engine, then the tasks their
    /// events concern are woken. Returns how many frames.
    pub fn receive(&self) -> u32 {
        let n = self.core.borrow_mut().dp.receive();
        self.dispatch();
        n
    }

    /// Driver: timers, then everything queued goes out; the tasks that
    /// timer events concern are woken.
    pub fn transmit(&self) {
        {
            let mut core = self.core.borrow_mut();
            core.dirty = false;
            core.dp.transmit();
        }
        self.dispatch();
    }

    /// Driver: when the engine wants to run next (its earliest timer), on
    /// tokio's clock.
    pub fn next_deadline(&self) -> Option<tokio::time::Instant> {
        let mut core = self.core.borrow_mut();
        let now = core.dp.now();
        let t = core.dp.interface().next_timeout()?;
        Some(
            tokio::time::Instant::now()
                + std::time::Duration::from_micros(t.0.saturating_sub(now.0)),
        )
    }

    /// Driver: ready when the application queued something since the last
    /// [`transmit`](Self::transmit) (data, a FIN, a connect); otherwise the
    /// waker is kept and woken when it does.
    pub fn poll_dirty(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut core = self.core.borrow_mut();
        if core.dirty {
            return Poll::Ready(());
        }
        match &core.driver {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => core.driver = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Driver: see [`Datapath::prepare_sleep`].
    pub fn prepare_sleep(&self) -> bool {
        self.core.borrow_mut().dp.prepare_sleep()
    }

    /// Driver: see [`Datapath::woke`].
    pub fn woke(&self) {
        self.core.borrow_mut().dp.woke()
    }

    /// Driver, at the end: one last transmit, then [`Datapath::finish`].
    pub fn finish(&self) {
        self.transmit();
        self.core.borrow_mut().dp.finish();
    }

    /// Marks that something is queued to send and wakes the driver.
    fn touch(core: &mut Core) {
        core.dirty = true;
        if let Some(w) = core.driver.take() {
            w.wake();
        }
    }

    /// The engine's events since the last call, to the wakers of the
    /// tasks that wait on them.
    fn dispatch(&self) {
        let mut wake = Vec::new();
        {
            let mut guard = self.core.borrow_mut();
            let core = &mut *guard;
            while let Some(ev) = core.dp.interface().poll_event() {
                match ev {
                    Event::Incoming(l) => {
                        if let Some(w) = core.listeners.get_mut(&l).and_then(Option::take) {
                            wake.push(w);
                        }
                    }
                    Event::Connected(c)
                    | Event::Readable(c)
                    | Event::Writable(c)
                    | Event::PeerClosed(c)
                    | Event::Closed(c)
                    | Event::Reset(c)
                    | Event::TimedOut(c)
                    | Event::Refused(c) => {
                        let Some(cw) = core.conns.get_mut(&c) else {
                            continue;
                        };
                        match ev {
                            Event::Connected(_) => cw.connected = true,
                            Event::Refused(_) => {
                                cw.error.get_or_insert(TcpError::ConnectionRefused);
                            }
                            Event::TimedOut(_) => {
                                cw.error.get_or_insert(TcpError::TimedOut);
                            }
                            Event::Reset(_) => {
                                cw.error.get_or_insert(TcpError::ConnectionReset);
                            }
                            _ => {}
                        }
                        wake.extend(cw.read.take());
                        wake.extend(cw.write.take());
                    }
                }
            }
        }
        for w in wake {
            w.wake();
        }
    }
}

/// Keeps `cx`'s waker in `slot` (unless the one there wakes the same task).
fn park(slot: &mut Option<Waker>, cx: &Context<'_>) {
    match slot {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

#[cfg(test)]
mod tests;
