//! [`TcpListener`].

use std::{
    future::poll_fn,
    io,
    net::{SocketAddr, SocketAddrV4},
    task::{Context, Poll},
};

use super::{error::io_err, park, ConnWake, Net, TcpStream};
use crate::tcp::{ListenerId, TcpError};

/// A listening socket on the stack's address, as tokio's `TcpListener`.
/// Connections are accepted on the queue (thread) of the [`Net`] it was
/// bound on; with several queues, bind the same port on each (steering
/// delivers each flow to the queue that owns it). Dropping it closes the
/// listener: connections still in its accept queue are reset.
pub struct TcpListener {
    net: Net,
    id: ListenerId,
    local: SocketAddrV4,
}

impl std::fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpListener")
            .field("local", &self.local)
            .finish()
    }
}

impl TcpListener {
    /// Listens on `port` of the stack's address. A port the bring-up
    /// already listens on (`rt::Builder::port`) is taken over; a port that
    /// another `TcpListener` of this queue holds is `AddrInUse`. On AF_XDP
    /// only the ports given to `rt::Builder::port` reach the engines (XDP
    /// hands the others to the kernel).
    pub async fn bind(net: &Net, port: u16) -> io::Result<TcpListener> {
        let mut guard = net.core.borrow_mut();
        let core = &mut *guard;
        let addr = core.dp.addr();
        let backlog = core.backlog;
        let tcp = core.dp.interface().tcp();
        let id = match tcp.listener_on(addr, port) {
            Some(id) if core.listeners.contains_key(&id) => {
                return Err(io_err(TcpError::AddrInUse))
            }
            Some(id) => id,
            None => tcp.listen(addr, port, backlog).map_err(io_err)?,
        };
        core.listeners.insert(id, None);
        Ok(TcpListener {
            net: net.clone(),
            id,
            local: SocketAddrV4::new(addr, port),
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

    /// The address and port it listens on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(SocketAddr::V4(self.local))
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
