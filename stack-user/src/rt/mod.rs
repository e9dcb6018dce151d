//! The thread-per-queue runtime: user services on the stack.
//!
//! [`Builder::build`] runs the one bring-up ([`crate::runtime::stack`]):
//! XDP attached, one AF_XDP socket and one engine ([`Stack`]) per queue.
//! [`Runtime::run`] then gives each queue its own thread with a
//! current-thread tokio runtime and a `LocalSet`, in which a driver task
//! runs the queue's engine and the user's future runs on the queue's
//! [`Net`] (as Seastar or glommio: nothing is shared between queues, and
//! tasks stay on the queue that owns their flows — the steering of
//! [`crate::datapath::steer`] hands each frame to that queue).
//!
//! The driver sleeps in the runtime, not in poll(2): the AF_XDP socket's
//! descriptor and the steering eventfd are registered with tokio through
//! `AsyncFd` (readable = frames waiting), the engine's next timer
//! ([`Net::next_deadline`]) is a tokio sleep, and an application that
//! queues data wakes it ([`Net::poll_dirty`]). With
//! [`Builder::busy_poll`] it never sleeps (lowest latency, one core per
//! queue at 100%).
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use xstack::net::TcpListener;
//!
//! let rt = xstack::rt::Builder::new().iface("xs-lab-s").ip("198.18.0.2".parse::<std::net::IpAddr>()?).port(7).build()?;
//! rt.run(|net| async move {                        // once per queue, on that queue's thread
//!     let listener = TcpListener::bind(&net, 7).await?;
//!     loop {
//!         let (stream, _peer) = listener.accept().await?;
//!         tokio::task::spawn_local(async move {    // tasks need not be Send
//!             let (mut r, mut w) = stream.into_split();
//!             let _ = tokio::io::copy(&mut r, &mut w).await;
//!         });
//!     }
//! })?;
//! # Ok(())
//! # }
//! ```

use std::{
    future::{poll_fn, Future},
    io,
    net::IpAddr,
    os::fd::{AsRawFd, RawFd},
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use thiserror::Error;
use tokio::io::{unix::AsyncFd, Interest};

use crate::apps::App;
use crate::datapath::xdp::{AttachMode, XdpProgram};
use crate::net::Net;
use crate::runtime::stack::{Stack, StackConfig};
use crate::tcp::TcpConfig;

/// What the runtime fails with.
#[derive(Debug, Error)]
pub enum RtError {
    /// The bring-up failed (interface, privileges, XDP, AF_XDP); the
    /// message says what to do.
    #[error("{0:#}")]
    Bringup(anyhow::Error),
    /// The builder is missing something or has a bad value.
    #[error("{0}")]
    Config(String),
    /// A queue's tokio runtime or descriptor registration failed.
    #[error("queue {queue}: runtime: {source}")]
    Runtime {
        /// The queue.
        queue: u32,
        /// Why.
        source: io::Error,
    },
    /// The user's future on a queue returned an error.
    #[error("queue {queue}: {source}")]
    Service {
        /// The queue.
        queue: u32,
        /// The error it returned.
        source: io::Error,
    },
    /// A queue's thread panicked.
    #[error("queue {0}: the thread panicked")]
    Panicked(u32),
}

/// Settings of the runtime: the interface, the stack's address, the ports
/// XDP hands to the engines, the queues and the TCP settings.
#[derive(Clone, Debug)]
pub struct Builder {
    config: StackConfig,
    client_ports: Option<(u16, u16)>,
    busy_poll: bool,
    backlog: usize,
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

impl Builder {
    /// No interface or address yet, no ports, every rx queue, default TCP
    /// settings, sleeping (not busy-polling) drivers, backlog 4096.
    pub fn new() -> Builder {
        Builder {
            config: StackConfig {
                app: App::Manual,
                ..StackConfig::default()
            },
            client_ports: None,
            busy_poll: false,
            backlog: 4096,
        }
    }

    /// The interface (required).
    pub fn iface(mut self, name: impl Into<String>) -> Builder {
        self.config.iface = name.into();
        self
    }

    /// An address of the stack (at least one is required), either family:
    /// one IPv4 address (a second replaces the first) and any number of
    /// IPv6 ones — dual-stack with both. Not configured on the kernel
    /// interface: the engines answer ARP and neighbour discovery for them.
    pub fn ip(mut self, ip: impl Into<IpAddr>) -> Builder {
        match ip.into().to_canonical() {
            IpAddr::V4(a) => self.config.ip = a,
            IpAddr::V6(a) => {
                if !a.is_unspecified() && !self.config.ip6.contains(&a) {
                    self.config.ip6.push(a);
                }
            }
        }
        self
    }

    /// A port to listen on: XDP hands its traffic to the engines and each
    /// queue's engine opens a listener that
    /// [`TcpListener::bind`](crate::net::TcpListener::bind) takes over.
    pub fn port(mut self, port: u16) -> Builder {
        if !self.config.listen.contains(&port) {
            self.config.listen.push(port);
        }
        self
    }

    /// Local ports `lo..=hi` for [`TcpStream::connect`](crate::net::TcpStream::connect):
    /// XDP hands their traffic to the engines, and they become the
    /// engines' `ip_local_port_range` (each queue picks ports whose flows
    /// it owns).
    pub fn client_ports(mut self, lo: u16, hi: u16) -> Builder {
        self.client_ports = Some((lo.min(hi), hi.max(lo)));
        self
    }

    /// Queues `0..n`, one thread, engine and AF_XDP socket each (default:
    /// every rx queue of the interface).
    pub fn queues(mut self, n: u32) -> Builder {
        self.config.queues = Some(n);
        self
    }

    /// TCP settings (Linux sysctl names; see [`TcpConfig`]).
    pub fn tcp(mut self, tcp: TcpConfig) -> Builder {
        self.config.tcp = tcp;
        self
    }

    /// XDP attach mode (default: native where the driver has it, else
    /// generic).
    pub fn xdp_mode(mut self, mode: AttachMode) -> Builder {
        self.config.xdp_mode = mode;
        self
    }

    /// Busy-poll: the drivers never sleep (lowest latency; each queue's
    /// thread uses a whole core).
    pub fn busy_poll(mut self, on: bool) -> Builder {
        self.busy_poll = on;
        self
    }

    /// Accept queue length of listeners (capped by `somaxconn`).
    pub fn backlog(mut self, n: usize) -> Builder {
        self.backlog = n.max(1);
        self
    }

    /// Brings the stack up: loads and attaches XDP, opens one AF_XDP
    /// socket and engine per queue. Needs CAP_NET_ADMIN, CAP_BPF and
    /// CAP_NET_RAW (or root).
    pub fn build(mut self) -> Result<Runtime, RtError> {
        if self.config.iface.is_empty() {
            return Err(RtError::Config(
                "no interface: call Builder::iface (e.g. --iface veth0)".into(),
            ));
        }
        if self.config.addresses().is_empty() {
            return Err(RtError::Config(
                "no address: call Builder::ip (e.g. --ip 198.18.0.2 or --ip 2001:2::2)".into(),
            ));
        }
        if let Some((lo, hi)) = self.client_ports {
            self.config.client_ports = (lo..=hi).collect();
            self.config.tcp.ip_local_port_range = (lo, hi);
        }
        let (prog, stacks) = Stack::open_queues(&self.config).map_err(RtError::Bringup)?;
        Ok(Runtime {
            _prog: prog,
            stacks,
            busy_poll: self.busy_poll,
            backlog: self.backlog,
        })
    }
}

/// A stack brought up and ready to [`run`](Self::run): XDP stays attached
/// while it lives.
pub struct Runtime {
    _prog: XdpProgram,
    stacks: Vec<Stack>,
    busy_poll: bool,
    backlog: usize,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("queues", &self.stacks.len())
            .field("busy_poll", &self.busy_poll)
            .finish()
    }
}

impl Runtime {
    /// The number of queues (threads [`run`](Self::run) starts).
    pub fn queues(&self) -> u32 {
        self.stacks.len() as u32
    }

    /// Runs `service` once per queue, each on its own thread with its own
    /// current-thread tokio runtime and `LocalSet` (so the future and the
    /// tasks it spawns with `tokio::task::spawn_local` need not be `Send`),
    /// given the queue's [`Net`]. Returns when every queue's future has
    /// returned (each queue's datapath stays up until then, for the frames
    /// it hands to the others; connections still open are then closed and
    /// their FINs sent); the first error wins.
    pub fn run<F, Fut>(self, service: F) -> Result<(), RtError>
    where
        F: Fn(Net) -> Fut + Sync,
        Fut: Future<Output = io::Result<()>>,
    {
        let (busy, backlog) = (self.busy_poll, self.backlog);
        let service = &service;
        let serving = &AtomicUsize::new(self.stacks.len());
        let results: Vec<Result<(), RtError>> = std::thread::scope(|s| {
            let threads: Vec<_> = self
                .stacks
                .into_iter()
                .map(|stack| {
                    let q = stack.queue();
                    let t = std::thread::Builder::new()
                        .name(format!("xstack-q{q}"))
                        .spawn_scoped(s, move || run_queue(stack, service, serving, busy, backlog));
                    (q, t)
                })
                .collect();
            threads
                .into_iter()
                .map(|(q, t)| match t {
                    Ok(t) => t.join().unwrap_or(Err(RtError::Panicked(q))),
                    Err(e) => Err(RtError::Runtime {
                        queue: q,
                        source: e,
                    }),
                })
                .collect()
        });
        results.into_iter().collect()
    }
}

/// How long, once every queue's future has returned, the drivers keep
/// running for connections still closing.
const CLOSE_GRACE: Duration = Duration::from_millis(300);

/// A descriptor registered with tokio; owned by the [`Stack`], which
/// outlives the registration.
struct Fd(RawFd);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// One queue's thread: its runtime, the driver, the user's future.
/// `serving` counts the queues whose future has not returned yet: a queue
/// keeps its datapath up until it is 0, because the NIC (or veth) may still
/// put frames of another queue's flows on this queue's socket, to be handed
/// over — a socket closed early makes XDP drop them (`drop_no_socket`) and
/// the peer retransmit after a timeout.
fn run_queue<F, Fut>(
    stack: Stack,
    service: &F,
    serving: &AtomicUsize,
    busy: bool,
    backlog: usize,
) -> Result<(), RtError>
where
    F: Fn(Net) -> Fut,
    Fut: Future<Output = io::Result<()>>,
{
    let queue = stack.queue();
    let rt_err = |source| RtError::Runtime { queue, source };
    let (xsk_fd, wake_fd) = (stack.xsk_fd(), stack.wake_fd());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(rt_err)?;
    let local = tokio::task::LocalSet::new();
    let net = Net::new(stack, queue, backlog);
    let result = local.block_on(&rt, async {
        // SAFETY: both descriptors belong to the stack inside `net`, which
        // this function keeps alive until the LocalSet (and with it the
        // driver task holding these registrations) has been dropped.
        let xsk = unsafe { AsyncFd::register_with_interest(Fd(xsk_fd), Interest::READABLE) }
            .map_err(|e| rt_err(e.into()))?;
        // SAFETY: as above.
        let wake = unsafe { AsyncFd::register_with_interest(Fd(wake_fd), Interest::READABLE) }
            .map_err(|e| rt_err(e.into()))?;
        let driver = tokio::task::spawn_local(drive(net.clone(), xsk, wake, busy));
        let r = service(net.clone()).await;
        serving.fetch_sub(1, Ordering::SeqCst);
        // Until every queue is done, then a little longer for the closing
        // handshakes of the connections already closed.
        let mut all_done: Option<tokio::time::Instant> = None;
        loop {
            let now = tokio::time::Instant::now();
            if serving.load(Ordering::SeqCst) == 0 {
                let since = *all_done.get_or_insert(now);
                let open = net.with_interface(|i| i.tcp_connections());
                if open == 0 || now >= since + CLOSE_GRACE {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        driver.abort();
        r.map_err(|source| RtError::Service { queue, source })
    });
    // The tasks the service left behind are dropped (their sockets close),
    // then what they queued goes out.
    drop(local);
    net.finish();
    drop(rt);
    result
}

/// The driver of one queue: frames in, the tasks they woke run, frames
/// out; then (unless busy-polling) sleep until frames arrive, frames are
/// handed over by another queue, the engine's next timer, or the
/// application queues something.
async fn drive(net: Net, xsk: AsyncFd<Fd>, wake: AsyncFd<Fd>, busy: bool) {
    // Not longer than this without a round, whatever happens.
    const MAX_SLEEP: Duration = Duration::from_millis(100);
    loop {
        let n = net.receive();
        // Tasks woken by these frames read and write before the round's
        // transmit, so their data carries the ACKs owed.
        tokio::task::yield_now().await;
        net.transmit();
        if busy || n > 0 || !net.prepare_sleep() {
            continue;
        }
        let cap = tokio::time::Instant::now() + MAX_SLEEP;
        let deadline = net.next_deadline().map_or(cap, |d| d.min(cap));
        tokio::select! {
            r = xsk.readable() => if let Ok(mut g) = r { g.clear_ready() },
            r = wake.readable() => if let Ok(mut g) = r { g.clear_ready() },
            _ = tokio::time::sleep_until(deadline) => {}
            _ = poll_fn(|cx| net.poll_dirty(cx)) => {}
        }
        net.woke();
    }
}
