//! The errors of the socket API and their `std::io::ErrorKind`s.

use std::io;

use thiserror::Error;

use crate::tcp::TcpError;

/// What a socket call fails with, before it becomes the `std::io::Error`
/// the tokio traits return ([`From`] picks the kind a kernel socket would
/// give: `ECONNREFUSED` is `ConnectionRefused`, `ECONNRESET`
/// `ConnectionReset`, `EPIPE` `BrokenPipe`, `ETIMEDOUT` `TimedOut`,
/// `EADDRINUSE` `AddrInUse`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum NetError {
    /// The engine refused the call (see [`TcpError`]).
    #[error(transparent)]
    Tcp(#[from] TcpError),
    /// The socket was already closed or its handle given up.
    #[error("socket is not connected")]
    NotConnected,
}

impl NetError {
    /// The `std::io::ErrorKind` a Linux socket reports for the same error.
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            NetError::NotConnected => io::ErrorKind::NotConnected,
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
