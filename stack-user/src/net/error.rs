//! The errors of the socket API and their `std::io::ErrorKind`s.

use std::{io, net::IpAddr};

use thiserror::Error;

use crate::tcp::TcpError;

/// What a socket call fails with, before it becomes the `std::io::Error`
/// the tokio traits return ([`From`] picks the kind a kernel socket would
/// give: `ECONNREFUSED` is `ConnectionRefused`, `ECONNRESET`
/// `ConnectionReset`, `EPIPE` `BrokenPipe`, `ETIMEDOUT` `TimedOut`,
/// `EADDRINUSE` `AddrInUse`, `EADDRNOTAVAIL` `AddrNotAvailable`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum NetError {
    /// The engine refused the call (see [`TcpError`]).
    #[error(transparent)]
    Tcp(#[from] TcpError),
    /// The socket was already closed or its handle given up.
    #[error("socket is not connected")]
    NotConnected,
    /// A bind to an address the stack does not own (`EADDRNOTAVAIL`).
    #[error("{0} is not an address of this stack: bind a port alone, or one of its addresses (rt::Builder::ip)")]
    NotOwned(IpAddr),
    /// A connect to a family the stack has no address of
    /// (`EADDRNOTAVAIL`); `ipv6` says which.
    #[error("the stack has no {} address to connect from: give it one (rt::Builder::ip)", if *.ipv6 { "IPv6" } else { "IPv4" })]
    NoAddress {
        /// The family asked for was IPv6.
        ipv6: bool,
    },
}

impl NetError {
    /// The `std::io::ErrorKind` a Linux socket reports for the same error.
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            NetError::NotConnected => io::ErrorKind::NotConnected,
            NetError::NotOwned(_) | NetError::NoAddress { .. } => io::ErrorKind::AddrNotAvailable,
            NetError::Tcp(e) => match e {
                TcpError::ConnectionReset => io::ErrorKind::ConnectionReset,
                TcpError::BrokenPipe => io::ErrorKind::BrokenPipe,
                TcpError::TimedOut => io::ErrorKind::TimedOut,
                TcpError::ConnectionRefused => io::ErrorKind::ConnectionRefused,
                TcpError::InvalidState | TcpError::NotFound => io::ErrorKind::NotConnected,
                TcpError::AddrInUse => io::ErrorKind::AddrInUse,
                TcpError::ConnectionAborted => io::ErrorKind::ConnectionAborted,
                TcpError::WouldBlock => io::ErrorKind::WouldBlock,
                TcpError::NoBufs => io::ErrorKind::OutOfMemory,
                TcpError::AddrFamily => io::ErrorKind::InvalidInput,
            },
        }
    }
}

impl From<NetError> for io::Error {
    fn from(e: NetError) -> io::Error {
        io::Error::new(e.kind(), e)
    }
}

/// A [`TcpError`] as the `std::io::Error` of a kernel socket.
pub(super) fn io_err(e: TcpError) -> io::Error {
    NetError::Tcp(e).into()
}
