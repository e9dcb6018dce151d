//! `--sysctl key=value`: TCP settings under the Linux sysctl names users
//! already know (net.ipv4.tcp_*, net.core.somaxconn), with the same units:
//! seconds for `tcp_fin_timeout` and `tcp_keepalive_*`, counts elsewhere.

use std::time::Duration;

use thiserror::Error;

use crate::tcp::TcpConfig;

/// A bad `--sysctl` argument.
#[derive(Debug, Error)]
pub enum SysctlError {
    /// Not `key=value`.
    #[error("--sysctl {0:?}: expected key=value, e.g. tcp_tw_reuse=1")]
    Syntax(String),
    /// Unknown key.
    #[error("--sysctl {0}: unknown key; known: {KEYS}")]
    UnknownKey(String),
    /// Value out of range or not a number.
    #[error("--sysctl {key}={value}: {why}")]
    BadValue {
        /// Key.
        key: String,
        /// Value.
        value: String,
        /// What is wrong.
        why: &'static str,
    },
}

/// The keys `apply` knows.
pub const KEYS: &str = "tcp_timestamps, tcp_sack, tcp_window_scaling, tcp_syncookies, tcp_max_syn_backlog, somaxconn, tcp_abort_on_overflow, tcp_synack_retries, tcp_syn_retries, tcp_retries2, tcp_fin_timeout, tcp_max_tw_buckets, tcp_tw_reuse, tw_isn_above_last, tcp_keepalive_time, tcp_keepalive_intvl, tcp_keepalive_probes, tcp_rfc1337, tcp_invalid_ratelimit, close_wait_warn, tcp_rmem, tcp_wmem, ip_local_port_range, initial_connections";

/// Applies one `key=value` (an optional `net.ipv4.`/`net.core.` prefix is
/// accepted) to `cfg`.
pub fn apply(cfg: &mut TcpConfig, arg: &str) -> Result<(), SysctlError> {
    let (key, value) = arg
        .split_once('=')
        .ok_or_else(|| SysctlError::Syntax(arg.into()))?;
    let key = key.trim();
    let value = value.trim();
    let key = key
        .strip_prefix("net.ipv4.")
        .or_else(|| key.strip_prefix("net.core."))
        .unwrap_or(key);
    let bad = |why: &'static str| SysctlError::BadValue {
        key: key.into(),
        value: value.into(),
        why,
    };
    let num = || {
        value
            .parse::<u64>()
            .map_err(|_| bad("not a non-negative integer"))
    };
    let flag = || match value {
        "0" => Ok(false),
        "1" => Ok(true),
        _ => Err(bad("use 0 or 1")),
    };
    let secs = || num().map(Duration::from_secs);
    let small = |max: u64| {
        num().and_then(|v| {
            if v <= max {
                Ok(v as u8)
            } else {
                Err(bad("out of range"))
            }
        })
    };
    match key {
        "tcp_timestamps" => cfg.tcp_timestamps = flag()?,
        "tcp_sack" => cfg.tcp_sack = flag()?,
        "tcp_window_scaling" => cfg.tcp_window_scaling = flag()?,
        "tcp_rfc1337" => cfg.tcp_rfc1337 = flag()?,
        "tcp_invalid_ratelimit" => cfg.tcp_invalid_ratelimit = Duration::from_millis(num()?),
        "tcp_syncookies" => cfg.tcp_syncookies = small(2)?,
        "tcp_max_syn_backlog" => cfg.tcp_max_syn_backlog = num()?.max(1) as usize,
        "somaxconn" => cfg.somaxconn = num()?.max(1) as usize,
        "tcp_abort_on_overflow" => cfg.tcp_abort_on_overflow = flag()?,
        "tcp_synack_retries" => cfg.tcp_synack_retries = small(255)?,
        "tcp_syn_retries" => cfg.tcp_syn_retries = small(255)?,
        "tcp_retries2" => cfg.tcp_retries2 = small(255)?,
        "tcp_fin_timeout" => cfg.tcp_fin_timeout = secs()?,
        "tcp_max_tw_buckets" => cfg.tcp_max_tw_buckets = num()? as usize,
        "tcp_tw_reuse" => cfg.tcp_tw_reuse = small(2)?,
        "tw_isn_above_last" => cfg.tw_isn_above_last = flag()?,
        "tcp_keepalive_time" => cfg.tcp_keepalive_time = secs()?,
        "tcp_keepalive_intvl" => cfg.tcp_keepalive_intvl = secs()?,
        "tcp_keepalive_probes" => cfg.tcp_keepalive_probes = small(255)?,
        "close_wait_warn" => {
            cfg.close_wait_warn = match num()? {
                0 => None,
                s => Some(Duration::from_secs(s)),
            }
        }
        "ip_local_port_range" => {
            let mut it = value
                .split(|c: char| c == '-' || c.is_whitespace())
                .filter(|p| !p.is_empty());
            let (Some(lo), Some(hi), None) = (it.next(), it.next(), it.next()) else {
                return Err(bad("use LOW-HIGH or \"LOW HIGH\""));
            };
            let (Ok(lo), Ok(hi)) = (lo.parse::<u16>(), hi.parse::<u16>()) else {
                return Err(bad("ports are 1-65535"));
            };
            if lo == 0 || lo > hi {
                return Err(bad("need 0 < LOW <= HIGH"));
            }
            cfg.ip_local_port_range = (lo, hi);
        }
        "initial_connections" => {
            let n = num()? as usize;
            if n > cfg.max_connections {
                return Err(bad("above the engine's max_connections"));
            }
            cfg.initial_connections = n;
        }
        "tcp_rmem" => cfg.tcp_rmem = u32::try_from(num()?).map_err(|_| bad("too large"))?,
        "tcp_wmem" => cfg.tcp_wmem = u32::try_from(num()?).map_err(|_| bad("too large"))?,
        other => return Err(SysctlError::UnknownKey(other.into())),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_names_set_the_config() {
        let mut c = TcpConfig::default();
        apply(&mut c, "tcp_max_tw_buckets=10").unwrap();
        apply(&mut c, "net.ipv4.tcp_tw_reuse=1").unwrap();
        apply(&mut c, "net.core.somaxconn=8").unwrap();
        apply(&mut c, "tcp_fin_timeout=5").unwrap();
        apply(&mut c, "tcp_abort_on_overflow=1").unwrap();
        apply(&mut c, "ip_local_port_range=40000-40099").unwrap();
        apply(&mut c, "initial_connections=1000000").unwrap();
        assert_eq!(c.initial_connections, 1_000_000);
        assert!(apply(&mut c, "initial_connections=100000000").is_err());
        assert_eq!(c.ip_local_port_range, (40000, 40099));
        assert!(apply(&mut c, "ip_local_port_range=5-1").is_err());
        assert_eq!(c.tcp_max_tw_buckets, 10);
        assert_eq!(c.tcp_tw_reuse, 1);
        assert_eq!(c.somaxconn, 8);
        assert_eq!(c.tcp_fin_timeout, Duration::from_secs(5));
        assert!(c.tcp_abort_on_overflow);
    }

    #[test]
    fn bad_sysctls_say_what_is_wrong() {
        let mut c = TcpConfig::default();
        assert!(apply(&mut c, "tcp_tw_reuse")
            .unwrap_err()
            .to_string()
            .contains("key=value"));
        assert!(apply(&mut c, "tcp_nope=1")
            .unwrap_err()
            .to_string()
            .contains("unknown key"));
        assert!(apply(&mut c, "tcp_syncookies=3")
            .unwrap_err()
            .to_string()
            .contains("out of range"));
        assert!(apply(&mut c, "tcp_sack=yes")
            .unwrap_err()
            .to_string()
            .contains("0 or 1"));
    }
}
