//! [`TcpStream`] and its halves.

use std::{
    cell::Cell,
    future::poll_fn,
    io,
    net::SocketAddr,
    pin::Pin,
    rc::Rc,
    task::{Context, Poll},
    time::Duration,
};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::{error::io_err, park, ConnWake, Net, NetError};
use crate::tcp::{ConnId, KeepaliveConfig, State, TcpError};

/// One connection's handle, shared by a stream and its split halves; the
/// last one dropped closes the connection (close(2)).
struct Shared {
    net: Net,
    id: ConnId,
    local: SocketAddr,
    peer: SocketAddr,
    /// `shutdown` already sent (or queued) our FIN.
    shut: Cell<bool>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // A drop inside `Net::with_interface` cannot reach the engine: the
        // handle then stays open until the engine is dropped.
        let Ok(mut guard) = self.net.core.try_borrow_mut() else {
            return;
        };
        let core = &mut *guard;
        core.conns.remove(&self.id);
        let now = core.dp.now();
        // Graceful FIN, or RST with linger 0 or unread data (as Linux).
        let _ = core.dp.interface().tcp().close(now, self.id);
        Net::touch(core);
    }
}

impl Shared {
    fn poll_read(&self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let mut guard = self.net.core.borrow_mut();
        let core = &mut *guard;
        let dst = buf.initialize_unfilled();
        match core.dp.interface().tcp().read(self.id, dst) {
            Ok(n) => {
                buf.advance(n);
                if n > 0 {
                    // The window may have opened: let the driver send the
                    // update.
                    Net::touch(core);
                }
                Poll::Ready(Ok(()))
            }
            Err(TcpError::WouldBlock) => {
                if let Some(cw) = core.conns.get_mut(&self.id) {
                    park(&mut cw.read, cx);
                }
                Poll::Pending
            }
            Err(e) => Poll::Ready(Err(io_err(e))),
        }
    }

    fn poll_write(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let mut guard = self.net.core.borrow_mut();
        let core = &mut *guard;
        let tcp = core.dp.interface().tcp();
        match tcp.write(self.id, data) {
            Ok(n) => {
                Net::touch(core);
                Poll::Ready(Ok(n))
            }
            Err(TcpError::WouldBlock) => {
                // Full: arm the engine's Writable event (ACKs freeing space
                // wake us) and wait — backpressure.
                let _ = tcp.send_space(self.id);
                if let Some(cw) = core.conns.get_mut(&self.id) {
                    park(&mut cw.write, cx);
                }
                Poll::Pending
            }
            Err(e) => Poll::Ready(Err(io_err(e))),
        }
    }

    fn poll_shutdown(&self) -> Poll<io::Result<()>> {
        if self.shut.get() {
            return Poll::Ready(Ok(()));
        }
        let mut guard = self.net.core.borrow_mut();
        let core = &mut *guard;
        match core.dp.interface().tcp().shutdown(self.id) {
            Ok(()) => {
                self.shut.set(true);
                Net::touch(core);
                Poll::Ready(Ok(()))
            }
            // Already shut (FIN_WAIT, LAST_ACK, CLOSING ...) is not an error
            // on Linux either.
            Err(TcpError::InvalidState) => {
                self.shut.set(true);
                Poll::Ready(Ok(()))
            }
            Err(e) => Poll::Ready(Err(io_err(e))),
        }
    }

    /// Ready when the active open completed (or failed).
    fn poll_connected(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut guard = self.net.core.borrow_mut();
        let core = &mut *guard;
        let state = core.dp.interface().tcp().state(self.id);
        let Some(cw) = core.conns.get_mut(&self.id) else {
            return Poll::Ready(Err(NetError::NotConnected.into()));
        };
        if let Some(e) = cw.error {
            return Poll::Ready(Err(io_err(e)));
        }
        match state {
            Err(e) => Poll::Ready(Err(io_err(e))),
            Ok(State::SynSent) if !cw.connected => {
                park(&mut cw.write, cx);
                Poll::Pending
            }
            Ok(_) => Poll::Ready(Ok(())),
        }
    }

    fn with_tcp<R>(
        &self,
        f: impl FnOnce(&mut crate::tcp::TcpEngine, crate::time::Instant) -> Result<R, TcpError>,
    ) -> io::Result<R> {
        let mut guard = self.net.core.borrow_mut();
        let core = &mut *guard;
        let now = core.dp.now();
        let r = f(core.dp.interface().tcp(), now).map_err(io_err);
        Net::touch(core);
        r
    }
}

/// A TCP connection on the engine, as tokio's `TcpStream`: `AsyncRead`,
/// `AsyncWrite` (`poll_shutdown` is a half-close: FIN after the queued
/// data, reading goes on), options, [`into_split`](Self::into_split).
/// Dropping it closes the connection as close(2) does: gracefully, or with
/// an RST when unread data remains or linger is 0.
pub struct TcpStream {
    shared: Rc<Shared>,
}

impl std::fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpStream")
            .field("local", &self.shared.local)
            .field("peer", &self.shared.peer)
            .finish()
    }
}

impl TcpStream {
    pub(super) fn new(net: Net, id: ConnId, local: SocketAddr, peer: SocketAddr) -> TcpStream {
        TcpStream {
            shared: Rc::new(Shared {
                net,
                id,
                local,
                peer,
                shut: Cell::new(false),
            }),
        }
    }

    /// Opens a connection to `addr` (either family; an IPv4-mapped IPv6
    /// address is its IPv4 address) from the stack's address of that
    /// family (an ephemeral port from `ip_local_port_range` that this queue
    /// owns) and waits for the handshake. Fails with `ConnectionRefused`
    /// (RST answered the SYN), `TimedOut` (`tcp_syn_retries` SYNs
    /// unanswered), `AddrInUse` (no free port) or `AddrNotAvailable` (the
    /// stack has no address of that family).
    pub async fn connect(net: &Net, addr: impl Into<SocketAddr>) -> io::Result<TcpStream> {
        let addr = addr.into();
        let peer = SocketAddr::new(addr.ip().to_canonical(), addr.port());
        let (id, local) = {
            let mut guard = net.core.borrow_mut();
            let core = &mut *guard;
            let now = core.dp.now();
            let ip = core
                .dp
                .addrs()
                .into_iter()
                .find(|a| a.is_ipv4() == peer.is_ipv4())
                .ok_or(NetError::NoAddress {
                    ipv6: peer.is_ipv6(),
                })?;
            let iface = core.dp.interface();
            let id = iface
                .connect(now, ip, 0, peer.ip(), peer.port())
                .map_err(io_err)?;
            let port = iface.tcp_ref().tcb(id).map_or(0, |t| t.tuple.local_port);
            core.conns.insert(id, ConnWake::default());
            Net::touch(core);
            (id, SocketAddr::new(ip, port))
        };
        let s = TcpStream::new(net.clone(), id, local, peer);
        poll_fn(|cx| s.shared.poll_connected(cx)).await?;
        Ok(s)
    }

    /// The connection's engine handle.
    pub fn id(&self) -> ConnId {
        self.shared.id
    }

    /// Our address and port.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.shared.local)
    }

    /// The peer's address and port.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.shared.peer)
    }

    /// TCP_NODELAY: `true` turns Nagle's algorithm off.
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.shared
            .with_tcp(|tcp, _| tcp.set_nodelay(self.shared.id, nodelay))
    }

    /// SO_LINGER: `Some(Duration::ZERO)` makes dropping the stream send an
    /// RST (no TIME_WAIT), and the peer's reads fail with
    /// `ConnectionReset`. Other values behave as `None` (the close
    /// finishes in the background, as on Linux for a non-blocking socket).
    pub fn set_linger(&self, linger: Option<Duration>) -> io::Result<()> {
        self.shared
            .with_tcp(|tcp, _| tcp.set_linger(self.shared.id, linger))
    }

    /// SO_KEEPALIVE with TCP_KEEPIDLE / TCP_KEEPINTVL / TCP_KEEPCNT
    /// (`KeepaliveConfig::time`, `intvl`, `probes`), or off with `None`. A
    /// peer that answers no probe is reset and reads fail with `TimedOut`.
    pub fn set_keepalive(&self, keepalive: Option<KeepaliveConfig>) -> io::Result<()> {
        self.shared
            .with_tcp(|tcp, now| tcp.set_keepalive(now, self.shared.id, keepalive))
    }

    /// The connection's state (for tests and diagnostics).
    pub fn state(&self) -> io::Result<State> {
        self.shared.with_tcp(|tcp, _| tcp.state(self.shared.id))
    }

    /// Aborts the connection now: RST instead of FIN, whatever is queued
    /// is discarded (as close(2) with linger 0).
    pub fn abort(self) -> io::Result<()> {
        self.set_linger(Some(Duration::ZERO))
    }

    /// Splits the stream into a read half and a write half that may live
    /// in different tasks (of this queue's thread). Dropping the write half
    /// shuts the write direction down (FIN), as tokio's does; the
    /// connection closes when both are dropped.
    pub fn into_split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        (
            OwnedReadHalf {
                shared: self.shared.clone(),
            },
            OwnedWriteHalf {
                shared: self.shared,
            },
        )
    }
}

impl AsyncRead for TcpStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.shared.poll_read(cx, buf)
    }
}

impl AsyncWrite for TcpStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.shared.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Written data is in the engine's send buffer, which the driver
        // sends on its next round (as a kernel socket's flush).
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.shared.poll_shutdown()
    }
}

/// The read half of a [`TcpStream`] ([`TcpStream::into_split`]).
pub struct OwnedReadHalf {
    shared: Rc<Shared>,
}

/// The write half of a [`TcpStream`] ([`TcpStream::into_split`]); dropping
/// it sends FIN.
pub struct OwnedWriteHalf {
    shared: Rc<Shared>,
}

impl std::fmt::Debug for OwnedReadHalf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnedReadHalf")
            .field("peer", &self.shared.peer)
            .finish()
    }
}

impl std::fmt::Debug for OwnedWriteHalf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnedWriteHalf")
            .field("peer", &self.shared.peer)
            .finish()
    }
}

impl OwnedReadHalf {
    /// The peer's address and port.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.shared.peer)
    }
}

impl OwnedWriteHalf {
    /// The peer's address and port.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.shared.peer)
    }
}

impl Drop for OwnedWriteHalf {
    fn drop(&mut self) {
        if self.shared.net.core.try_borrow_mut().is_ok() {
            let _ = self.shared.poll_shutdown();
        }
    }
}

impl AsyncRead for OwnedReadHalf {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.shared.poll_read(cx, buf)
    }
}

impl AsyncWrite for OwnedWriteHalf {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.shared.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.shared.poll_shutdown()
    }
}
