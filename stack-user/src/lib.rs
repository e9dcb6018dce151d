//! xstack: an eBPF/XDP-accelerated kernel-bypass TCP stack.
//!
//! Layers (see DESIGN.md): [`wire`] formats, the sans-IO [`engine`], the
//! AF_XDP datapath ([`xsk`], [`xdp`]), the [`testbed`], and the [`control`]
//! socket that `xstack stats` reads.

pub mod tcp;
pub mod wire;
