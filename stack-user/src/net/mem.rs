//! Two engines joined in memory, for testing code written on [`Net`]
//! without AF_XDP: [`Pair`] gives two dual-stack [`Net`]s (198.18.0.1 and
//! 2001:2::1, 198.18.0.2 and 2001:2::2) whose Ethernet frames go straight
//! to each other (ARP and neighbour discovery included), and a
//! driver task that runs both on tokio's clock (so a test with tokio's
//! paused time runs timers in virtual time).

use std::{
    cell::{Cell, RefCell},
    collections::VecDeque,
    future::poll_fn,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    rc::Rc,
};

use super::{Datapath, Net};
use crate::apps::App;
use crate::iface::{FrameSink, IfaceConfig, Interface};
use crate::tcp::TcpConfig;
use crate::time::Instant;
use crate::wire::ethernet::Mac;

/// The address of [`Pair::a`].
pub const ADDR_A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// The address of [`Pair::b`].
pub const ADDR_B: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// The IPv6 address of [`Pair::a`] (2001:2::/48, RFC 5180).
pub const ADDR6_A: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 1);
/// The IPv6 address of [`Pair::b`].
pub const ADDR6_B: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2);

/// One direction of the in-memory link: frames in flight.
#[derive(Default)]
struct Wire {
    frames: RefCell<VecDeque<Vec<u8>>>,
    /// Most frames ever in flight at once.
    max_len: Cell<usize>,
    /// Frames sent while it is set are lost (a pulled cable).
    down: Cell<bool>,
}

impl FrameSink for &Wire {
    fn send(&mut self, build: &mut dyn FnMut(&mut [u8]) -> usize) -> bool {
        let mut buf = vec![0u8; 2048];
        let len = build(&mut buf);
        if len > 0 && !self.down.get() {
            buf.truncate(len);
            let mut q = self.frames.borrow_mut();
            q.push_back(buf);
            self.max_len.set(self.max_len.get().max(q.len()));
        }
        true
    }
}

/// One end of the in-memory link: an [`Interface`] whose frames go to the
/// other end. It implements [`Datapath`] with tokio's clock.
pub struct MemLink {
    iface: Interface,
    addrs: Vec<IpAddr>,
    epoch: tokio::time::Instant,
    inbox: Rc<Wire>,
    outbox: Rc<Wire>,
}

impl Datapath for MemLink {
    fn interface(&mut self) -> &mut Interface {
        &mut self.iface
    }

    fn now(&self) -> Instant {
        Instant(
            tokio::time::Instant::now()
                .saturating_duration_since(self.epoch)
                .as_micros() as u64,
        )
    }

    fn addrs(&self) -> Vec<IpAddr> {
        self.addrs.clone()
    }

    fn receive(&mut self) -> u32 {
        let now = self.now();
        let mut n = 0;
        while n < 256 {
            let Some(f) = self.inbox.frames.borrow_mut().pop_front() else {
                break;
            };
            self.iface.handle_frame(now, &f, &mut &*self.outbox);
            n += 1;
        }
        self.iface.dispatch_events(now);
        n
    }

    fn transmit(&mut self) {
        let now = self.now();
        self.iface.poll(now, &mut &*self.outbox);
    }
}

/// Two [`Net`]s joined in memory, and the driver that runs them.
pub struct Pair {
    /// The engine at [`ADDR_A`] and [`ADDR6_A`].
    pub a: Net,
    /// The engine at [`ADDR_B`] and [`ADDR6_B`].
    pub b: Net,
    wires: [Rc<Wire>; 2],
}

impl Pair {
    /// Two engines with the TCP settings `tcp` (listeners get a backlog of
    /// 1024, capped by `somaxconn`).
    pub fn new(tcp: TcpConfig) -> Pair {
        let ab = Rc::new(Wire::default());
        let ba = Rc::new(Wire::default());
        let epoch = tokio::time::Instant::now();
        let end = |n: u8, addr, addr6, inbox: &Rc<Wire>, outbox: &Rc<Wire>| MemLink {
            iface: Interface::new(IfaceConfig {
                mac: Mac([0x02, 0, 0, 0, 0, n]),
                addrs: vec![addr],
                addrs6: vec![addr6],
                ports: vec![],
                app: App::Manual,
                response_bytes: 0,
                echo_body: false,
                max_body: 0,
                tcp: tcp.clone(),
                backlog: 1024,
                secret: [n; 16],
                mtu: 0,
            }),
            addrs: vec![IpAddr::V4(addr), IpAddr::V6(addr6)],
            epoch,
            inbox: inbox.clone(),
            outbox: outbox.clone(),
        };
        Pair {
            a: Net::new(end(1, ADDR_A, ADDR6_A, &ba, &ab), 0, 1024),
            b: Net::new(end(2, ADDR_B, ADDR6_B, &ab, &ba), 0, 1024),
            wires: [ab, ba],
        }
    }

    /// Most frames that were ever in flight in one direction at once (the
    /// link has no bound of its own: the engines' windows bound it).
    pub fn max_in_flight(&self) -> usize {
        self.wires
            .iter()
            .map(|w| w.max_len.get())
            .max()
            .unwrap_or(0)
    }

    /// Takes the link down (every frame sent while it is down is lost, as
    /// are those in flight) or up again: a peer that vanishes, for
    /// retransmission and keepalive timeouts.
    pub fn set_link_up(&self, up: bool) {
        for w in &self.wires {
            w.down.set(!up);
            if !up {
                w.frames.borrow_mut().clear();
            }
        }
    }

    /// Spawns the driver on the current `LocalSet`; it runs until aborted.
    pub fn spawn(&self) -> tokio::task::JoinHandle<()> {
        tokio::task::spawn_local(drive(self.a.clone(), self.b.clone(), self.wires.clone()))
    }
}

/// Rounds on both engines: frames in, the woken tasks run, frames out;
/// when nothing is in flight, sleeps until an application queues
/// something or the earliest engine timer.
async fn drive(a: Net, b: Net, wires: [Rc<Wire>; 2]) {
    loop {
        a.receive();
        b.receive();
        tokio::task::yield_now().await;
        a.transmit();
        b.transmit();
        if wires.iter().any(|w| !w.frames.borrow().is_empty()) {
            continue;
        }
        let deadline = match (a.next_deadline(), b.next_deadline()) {
            (Some(x), Some(y)) => Some(x.min(y)),
            (x, y) => x.or(y),
        };
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = poll_fn(|cx| a.poll_dirty(cx)) => {}
            _ = poll_fn(|cx| b.poll_dirty(cx)) => {}
            _ = sleep => {}
        }
    }
}
