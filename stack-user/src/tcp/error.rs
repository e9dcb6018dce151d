//! Errors of the application API of the TCP engine.

use thiserror::Error;

/// What an application call on the engine can fail with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum TcpError {
    /// The peer reset the connection (read side after an RST).
    #[error("connection reset by peer")]
    ConnectionReset,
    /// Writing to a connection that was reset or whose send side is shut.
    #[error("broken pipe")]
    BrokenPipe,
    /// The retransmission limit was reached (RFC 9293 §3.8.3, R2).
    #[error("connection timed out")]
    TimedOut,
    /// An RST answered our SYN (RFC 9293 §3.10.7.3).
    #[error("connection refused")]
    ConnectionRefused,
    /// The call is not valid in the connection's current state.
    #[error("operation not valid in the current state")]
    InvalidState,
    /// No connection or listener has that identifier.
    #[error("no such connection or listener")]
    NotFound,
    /// A listener or connection already uses that address and port.
    #[error("address already in use")]
    AddrInUse,
    /// The connection was aborted locally.
    #[error("connection aborted")]
    ConnectionAborted,
    /// Nothing to read yet, or no room in the send buffer; try again after
    /// a Readable / Writable event.
    #[error("operation would block")]
    WouldBlock,
    /// No buffer space or connection slot is left.
    #[error("no buffer space available")]
    NoBufs,
    /// The local and remote addresses are of different families.
    #[error("address family mismatch (IPv4 and IPv6 in one connection)")]
    AddrFamily,
}
