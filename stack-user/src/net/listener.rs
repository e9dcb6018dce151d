//! [`TcpListener`].

use std::{
    future::poll_fn,
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6},
    task::{Context, Poll},
};

use super::{error::io_err, park, ConnWake, Net, NetError, TcpStream};
use crate::tcp::{ListenerId, TcpError};

/// What [`TcpListener::bind`] listens on: a port alone (`80`: every
/// address of the stack, both families, as a dual-stack Linux socket on
/// `[::]:80`), or a socket address: `[::]:80` (the same), `0.0.0.0:80`
/// (the stack's IPv4 addresses only) or one address the stack owns
/// (`198.18.0.2:80`, `[2001:2::2]:80`; an IPv4-mapped IPv6 address is its
/// IPv4 address).
pub trait ListenAddr {
    /// The address asked for (`None`: the port alone) and the port.
    fn listen_addr(&self) -> (Option<IpAddr>, u16);
}

impl ListenAddr for u16 {
    fn listen_addr(&self) -> (Option<IpAddr>, u16) {
        (None, *self)
    }
}

impl ListenAddr for SocketAddr {
    fn listen_addr(&self) -> (Option<IpAddr>, u16) {
        (Some(self.ip()), self.port())
    }
}

impl ListenAddr for SocketAddrV4 {
    fn listen_addr(&self) -> (Option<IpAddr>, u16) {
        (Some(IpAddr::V4(*self.ip())), self.port())
    }
}

impl ListenAddr for SocketAddrV6 {
    fn listen_addr(&self) -> (Option<IpAddr>, u16) {
        (Some(IpAddr::V6(*self.ip())), self.port())
    }
}

impl ListenAddr for (IpAddr, u16) {
    fn listen_addr(&self) -> (Option<IpAddr>, u16) {
        (Some(self.0), self.1)
    }
}

impl ListenAddr for (Ipv4Addr, u16) {
    fn listen_addr(&self) -> (Option<IpAddr>, u16) {
        (Some(IpAddr::V4(self.0)), self.1)
    }
}

impl ListenAddr for (Ipv6Addr, u16) {
    fn listen_addr(&self) -> (Option<IpAddr>, u16) {
        (Some(IpAddr::V6(self.0)), self.1)
    }
}

/// The stack's addresses (`owned`) a bind to `ip` listens on, and the
/// address `local_addr` then reports (with the port): one address for a
/// specific one, the unspecified address of the family otherwise (`[::]`
/// when any IPv6 address is among them), the stack's only address when it
/// has one.
pub(super) fn listen_addrs(
    owned: &[IpAddr],
    ip: Option<IpAddr>,
) -> Result<(Vec<IpAddr>, IpAddr), NetError> {
    let ip = ip.map(|a| a.to_canonical());
    let addrs: Vec<IpAddr> = match ip {
        None => owned.to_vec(),
        Some(IpAddr::V6(a)) if a.is_unspecified() => owned.to_vec(),
        Some(IpAddr::V4(a)) if a.is_unspecified() => {
            owned.iter().copied().filter(IpAddr::is_ipv4).collect()
        }
        Some(a) if owned.contains(&a) => vec![a],
        Some(a) => return Err(NetError::NotOwned(a)),
    };
    let shown = match (addrs.as_slice(), ip) {
        ([], _) => {
            return Err(NetError::NoAddress {
                ipv6: ip.is_some_and(|a| a.is_ipv6()),
            })
        }
        ([one], _) => *one,
        (_, Some(a)) => a,
        (many, None) if many.iter().any(IpAddr::is_ipv6) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        (_, None) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    };
    Ok((addrs, shown))
}

/// A listening socket on the stack's addresses (either family or both),
/// as tokio's `TcpListener`.
/// Connections are accepted on the queue (thread) of the [`Net`] it was
/// bound on; with several queues, bind the same port on each (steering
/// delivers each flow to the queue that owns it). Dropping it closes the
/// listener: connections still in its accept queue are reset.
pub struct TcpListener {
    net: Net,
    id: ListenerId,
    local: SocketAddr,
}

impl std::fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpListener")
            .field("local", &self.local)
            .finish()
    }
}

impl TcpListener {
    /// Listens on `addr` (see [`ListenAddr`]: a port alone is every
    /// address of the stack, both families). A port the bring-up already
    /// listens on (`rt::Builder::port`, on every address of the stack) is
    /// taken over, with every address it listens on; one that another
    /// `TcpListener` of this queue holds on any of these addresses is
    /// `AddrInUse`; an address the stack does not own is
    /// `AddrNotAvailable`. On AF_XDP only the ports given to
    /// `rt::Builder::port` reach the engines (XDP hands the others to the
    /// kernel).
    pub async fn bind(net: &Net, addr: impl ListenAddr) -> io::Result<TcpListener> {
        let (ip, port) = addr.listen_addr();
        let mut guard = net.core.borrow_mut();
        let core = &mut *guard;
        let (addrs, shown) = listen_addrs(&core.dp.addrs(), ip)?;
        let backlog = core.backlog;
        let tcp = core.dp.interface().tcp();
        let id = match addrs.iter().find_map(|a| tcp.listener_on(*a, port)) {
            Some(id) if core.listeners.contains_key(&id) => {
                return Err(io_err(TcpError::AddrInUse))
            }
            Some(id) => {
                for a in &addrs {
                    if tcp.listener_on(*a, port).is_none() {
                        tcp.listen_also(id, *a).map_err(io_err)?;
                    }
                }
                id
            }
            None => {
                let id = tcp.listen(addrs[0], port, backlog).map_err(io_err)?;
                for a in &addrs[1..] {
                    if let Err(e) = tcp.listen_also(id, *a) {
                        let _ = tcp.unlisten(id);
                        return Err(io_err(e));
                    }
                }
                id
            }
        };
        core.listeners.insert(id, None);
        Ok(TcpListener {
            net: net.clone(),
            id,
            local: SocketAddr::new(shown, port),
        })
    }

    /// Waits for an established connection and returns it with the peer's
    /// address.
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        poll_fn(|cx| self.poll_accept(cx)).await
    }

    /// Takes an established connection if one is queued; otherwise the
    /// task is woken by the listener's next `Incoming` event.
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(TcpStream, SocketAddr)>> {
        let mut guard = self.net.core.borrow_mut();
        let core = &mut *guard;
        loop {
            let tcp = core.dp.interface().tcp();
            let Some(c) = tcp.accept(self.id) else {
                if let Some(slot) = core.listeners.get_mut(&self.id) {
                    park(slot, cx);
                }
                return Poll::Pending;
            };
            // Reset while it waited in the queue: the next one.
            let Some(t) = tcp.tcb(c).map(|t| t.tuple) else {
                continue;
            };
            core.conns.insert(
                c,
                ConnWake {
                    connected: true,
                    ..ConnWake::default()
                },
            );
            let peer = SocketAddr::new(t.remote_addr, t.remote_port);
            let local = SocketAddr::new(t.local_addr, t.local_port);
            drop(guard);
            let s = TcpStream::new(self.net.clone(), c, local, peer);
            return Poll::Ready(Ok((s, peer)));
        }
    }

    /// The address and port it listens on: the one address it was bound
    /// to, or the unspecified address of the family (`[::]` for both).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

impl Drop for TcpListener {
    fn drop(&mut self) {
        let Ok(mut guard) = self.net.core.try_borrow_mut() else {
            return;
        };
        let core = &mut *guard;
        core.listeners.remove(&self.id);
        let _ = core.dp.interface().tcp().unlisten(self.id);
        Net::touch(core);
    }
}
