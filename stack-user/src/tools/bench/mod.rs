//! Every benchmark, run from the `xstack` binary: `xstack bench` (xstack vs
//! the kernel: load generators and servers), `xstack bench synflood`,
//! `cookies`, `soak`, `concurrency` (kept-alive connections held, and
//! their memory, vs the kernel), `rx` (AF_XDP receive rate vs the kernel), `bulk` (bulk
//! TCP throughput vs the kernel), `tcp-mem` (two TCP engines in memory) and
//! `timer` (the timing wheel vs a binary heap). `family` is the
//! `--family 4|6|both` the kernel comparisons take.

pub mod bulk;
pub mod concurrency;
pub mod cookies;
pub mod family;
pub mod kernel;
pub mod rx;
pub mod soak;
pub mod synflood;
pub mod tcp_mem;
pub mod timer;
pub mod victim;
