//! The sans-IO TCP engine (RFC 9293): connection state machine, reliable
//! and congestion-controlled transfer, demultiplexing and an application
//! API. No I/O and no clock: the caller passes segments and time in and
//! takes segments out (see [`TcpEngine`]).

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
pub mod seq;
pub(crate) mod shared;
pub mod state;
pub mod stats;
pub mod sysctl;
pub mod tcb;
pub mod wheel;

pub use crate::time;

#[cfg(test)]
mod tests;

pub use cc::CcAlgorithm;
pub use config::TcpConfig;
pub use config::{KeepaliveConfig, RateLimit};
pub use engine::{ListenerStats, StateCounts, TcpEngine, Transmit};
pub use error::TcpError;
pub use event::{ConnId, Event, FourTuple, ListenerId, Warning};
pub use seq::SeqNumber;
pub use state::State;
pub use stats::Stats;
pub use time::Instant;
