//! The sans-IO TCP engine (RFC 9293): connection state machine, reliable
//! and congestion-controlled transfer, demultiplexing and an application
//! API. No I/O and no clock: the caller passes segments and time in and
//! takes segments out (see [`TcpEngine`]).
//!
//! Rooms: `tcb/` (one connection's control block), `engine/` (every
//! connection of a queue worker: demux, listeners, SYN cookies, TIME_WAIT,
//! the application API), `shared` (what both need), and the parts they
//! are built from: `buffer`, `sack`, `rtt`, `cc/`, `wheel` (timers),
//! `isn`, `ratelimit`; the types of the API (`config`, `event`, `error`,
//! `state`, `stats`) and the `sysctl` parser for `TcpConfig`. Imports go
//! down only: `tcb/` never imports `engine/`, and nothing here is imported
//! by `wire/` or `time`.

pub mod buffer;
pub mod cc;
pub mod config;
pub mod engine;
pub mod error;
pub mod event;
pub mod isn;
pub(crate) mod ratelimit;
pub mod rtt;
pub mod sack;
pub(crate) mod shared;
pub mod state;
pub mod stats;
pub mod sysctl;
pub mod tcb;
pub mod wheel;

#[cfg(test)]
pub(crate) mod tests;

pub use cc::CcAlgorithm;
pub use config::TcpConfig;
pub use config::{KeepaliveConfig, RateLimit};
pub use engine::{ListenerStats, StateCounts, TcpEngine, Transmit};
pub use error::TcpError;
pub use event::{ConnId, Event, FourTuple, ListenerId, Sharding, Warning};
pub use state::State;
pub use stats::Stats;
