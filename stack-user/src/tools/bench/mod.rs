//! Benchmarks run from the `xstack` binary: `xstack bench` (xstack vs the
//! kernel: load generators and servers), `xstack bench synflood` and
//! `xstack bench cookies` and `xstack bench soak`.

pub mod cookies;
pub mod kernel;
pub mod soak;
pub mod synflood;
