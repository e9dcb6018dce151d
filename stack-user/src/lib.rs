//! xstack: an eBPF/XDP-accelerated kernel-bypass TCP stack.
//!
//! Rooms by layer; each imports only the ones below it (see
//! docs/ARCHITECTURE.md):
//!
//! - L0 [`time`] (the µs [`time::Instant`] passed into the sans-IO layers)
//!   and [`wire`]: validated views and reprs per protocol (Ethernet, ARP,
//!   IPv4, ICMP, TCP with its `SeqNumber`), checksums.
//! - L1 [`tcp`]: the sans-IO TCP engine (RFC 9293), its config and the
//!   [`tcp::sysctl`] parser that fills it.
//! - L2 [`apps`]: the built-in echo/discard/HTTP applications and the app
//!   host; imports only `tcp`, `wire` and time.
//! - L3 [`iface`]: the frame layer, one [`iface::Interface`] per queue
//!   (Ethernet dispatch, ARP neighbour cache, ICMP, TCP entry, counters)
//!   writing to an [`iface::FrameSink`]; it knows no AF_XDP type.
//! - L4 [`datapath`]: the XDP loader, the AF_XDP sockets (which implement
//!   `FrameSink`), queue steering and the fast-path settings.
//! - L5 [`runtime`]: bring-up and worker rounds (`Stack`, `serve`), the
//!   control socket, OS helpers.
//! - [`net`] and [`rt`]: the application API — tokio-compatible
//!   [`net::TcpListener`] / [`net::TcpStream`] on one queue's engine, and
//!   the thread-per-queue runtime that drives the engines on AF_XDP.
//! - L6 [`tools`] (load and flood generators, kernel baseline server,
//!   testbed, every benchmark) and [`cli`] (one module per `xstack`
//!   subcommand).

pub mod apps;
pub mod cli;
pub mod datapath;
pub mod iface;
pub mod net;
pub mod rt;
pub mod runtime;
pub mod tcp;
pub mod time;
pub mod tools;
pub mod wire;
