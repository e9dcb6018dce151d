//! The runtime: bring-up and the worker rounds ([`stack`] for library use,
//! [`serve`] for `xstack serve`), the [`control`] socket that `xstack stats`
//! and `xstack config` talk to, and the OS helpers ([`sys`]).

pub mod capture;
pub mod control;
pub mod metrics;
pub mod serve;
pub mod stack;
pub mod sys;
