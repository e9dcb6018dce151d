//! Benchmarks run from the `xstack` binary: `xstack bench synflood` and
//! `xstack bench cookies`.

pub mod cookies;
pub mod synflood;
