//! The datapath: the XDP program's loader ([`xdp`]), the AF_XDP sockets and
//! rings ([`xsk`]), the peer-side sink for benchmarks ([`sink`]), the live-frames flood
//! generator ([`floodgen`]), the hand-off of frames between queue workers
//! ([`steer`]) and the XDP fast-path settings ([`fastpath`]).

pub mod fastpath;
pub mod floodgen;
pub mod sink;
pub mod steer;
pub mod xdp;
pub mod xsk;
