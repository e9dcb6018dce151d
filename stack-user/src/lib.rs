//! xstack: an eBPF/XDP-accelerated kernel-bypass TCP stack.
//!
//! Layers (see DESIGN.md): [`wire`] formats; the sans-IO [`iface`] (frame
//! handling: ARP, ICMP, demux) and [`tcp`] (the connection state machine);
//! the AF_XDP datapath ([`datapath::xsk`]) and the XDP program's loader ([`datapath::xdp`]); the
//! [`runtime::serve`] runtime that wires them together; the [`tools::testbed`]; and the
//! [`runtime::control`] socket that `xstack stats` reads.

pub mod apps;
pub mod cli;
pub mod datapath;
pub mod iface;
pub mod runtime;
pub mod sysctl;
pub mod tcp;
pub mod tools;
pub mod wire;
