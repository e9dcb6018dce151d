//! What `xstack load` runs: the loop, who closes, the bounds.

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    path::PathBuf,
    time::Duration,
};

use anyhow::{bail, Result};
use serde::Serialize;

use crate::tools::guard::{check_target, TargetPrefix};

/// How connections are started.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Loop {
    /// Keep this many connections busy.
    Closed(u32),
    /// Start this many connections per second, on schedule.
    Open(f64),
}

/// Who ends each connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CloseBy {
    /// The load generator sends FIN first (TIME_WAIT lands here).
    Client,
    /// The server closes first (needs `--http`: the last request says
    /// `Connection: close`; TIME_WAIT lands on the server).
    Server,
    /// The load generator resets (RST, no TIME_WAIT anywhere).
    Rst,
}

/// What to run.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// Server address: inside 198.18.0.0/15 or `allow_target`.
    pub target: SocketAddrV4,
    /// Prefixes beyond 198.18.0.0/15 the target may lie in (`--allow-target`).
    pub allow_target: Vec<TargetPrefix>,
    /// Open or closed loop.
    pub lp: Loop,
    /// Requests per connection (1 = a new connection per request).
    pub requests_per_conn: u32,
    /// Request size (echo protocol).
    pub request_bytes: usize,
    /// HTTP/1.1 GET instead of the echo protocol.
    pub http: bool,
    /// Who closes.
    pub close: CloseBy,
    /// Stop starting connections after this long.
    pub duration: Option<Duration>,
    /// Stop after this many connections.
    pub connections: Option<u64>,
    /// How long a connection may go without progress (connect, bytes of
    /// a request or its response, the server's FIN) before it counts as
    /// timed out; past `duration`, open connections get this plus 1 s to
    /// finish before the run ends and counts them as timeouts.
    pub timeout: Duration,
    /// Print a progress line every second.
    pub progress: bool,
    /// Write an HdrHistogram interval log here.
    pub hdr: Option<PathBuf>,
    /// Engines, one per AF_XDP queue and thread (xstack only).
    pub queues: u32,
    /// Never sleep: spin on the rings (lowest latency, a whole core per
    /// queue). Otherwise an idle engine sleeps until a frame or timer.
    pub busy_poll: bool,
    /// Closed loop: most connections started per second (SYNs, not
    /// counting retransmissions); `None` unpaced. See
    /// [`DEFAULT_CONNECT_RATE`].
    pub connect_rate: Option<f64>,
    /// Closed loop: reach the full concurrency linearly over this long.
    pub ramp: Option<Duration>,
    /// Pause between a response and the connection's next request, so
    /// that kept-alive connections sit idle between requests.
    pub think_time: Option<Duration>,
}

/// `--connect-rate` default: 4096 connections per second, at most a
/// tenth of that at once. One default Linux accept queue (`somaxconn`
/// 4096 since 5.4, with `listen(fd, 4096)`) arrives per second, so a server
/// whose application accepts at least once a second never overflows it,
/// and a burst (410 SYNs) stays under the smallest default
/// `tcp_max_syn_backlog` Linux sizes from memory (512 on a 1 GiB machine).
pub const DEFAULT_CONNECT_RATE: f64 = 4096.0;

/// Most addresses one `--ip` may name: what the XDP program's
/// owned-address table holds (`stack_ebpf::MAX_OWNED_ADDRS`).
pub const MAX_SOURCE_ADDRS: usize = stack_ebpf::MAX_OWNED_ADDRS as usize;

/// Parses `--ip`: one address, a comma-separated list, or a prefix
/// (`198.18.1.0/24`). A prefix shorter than /31 gives its host addresses
/// (without the network and broadcast addresses, as a subnet's hosts; a
/// /26 gives 62); a /31 or /32 gives both or the one. Duplicates are
/// refused, and so is more than [`MAX_SOURCE_ADDRS`].
pub fn parse_addrs(s: &str) -> Result<Vec<Ipv4Addr>> {
    let mut out: Vec<Ipv4Addr> = Vec::new();
    for part in s.split(',').map(str::trim) {
        if let Some((a, len)) = part.split_once('/') {
            let a: Ipv4Addr = a.parse().map_err(|_| {
                anyhow::anyhow!(
                    "--ip {part}: {a} is not an IPv4 address; give ADDR, ADDR,ADDR or ADDR/LEN"
                )
            })?;
            let len: u32 = len
                .parse()
                .ok()
                .filter(|l| (0..=32).contains(l))
                .ok_or_else(|| anyhow::anyhow!("--ip {part}: the prefix length must be 0 to 32"))?;
            let host_bits = 32 - len;
            if host_bits > 8 {
                bail!(
                    "--ip {part} holds {} addresses: at most {MAX_SOURCE_ADDRS} (a /24); use a longer prefix",
                    1u64 << host_bits
                );
            }
            let net = u32::from(a) & !((1u64 << host_bits) - 1) as u32;
            if net != u32::from(a) {
                bail!(
                    "--ip {part}: host bits are set; the prefix is {}/{len}",
                    Ipv4Addr::from(net)
                );
            }
            let count = 1u32 << host_bits;
            let (first, last) = if len < 31 { (1, count - 1) } else { (0, count) };
            out.extend((first..last).map(|i| Ipv4Addr::from(net + i)));
        } else {
            out.push(part.parse().map_err(|_| {
                anyhow::anyhow!(
                    "--ip {part:?} is not an IPv4 address; give ADDR, ADDR,ADDR or ADDR/LEN"
                )
            })?);
        }
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(d) = out.iter().find(|a| !seen.insert(**a)) {
        bail!("--ip names {d} twice");
    }
    if out.len() > MAX_SOURCE_ADDRS {
        bail!(
            "--ip names {} addresses: at most {MAX_SOURCE_ADDRS} (the XDP program's owned-address table)",
            out.len()
        );
    }
    Ok(out)
}

/// Parses `--ports LO-HI` (the local port range, as Linux's
/// `ip_local_port_range`).
pub fn parse_ports(s: &str) -> Result<(u16, u16)> {
    let bad = || {
        anyhow::anyhow!("--ports {s:?}: give LO-HI with 1 <= LO <= HI <= 65535, e.g. 32768-60999")
    };
    let (lo, hi) = s.split_once('-').ok_or_else(bad)?;
    let lo: u16 = lo.trim().parse().map_err(|_| bad())?;
    let hi: u16 = hi.trim().parse().map_err(|_| bad())?;
    if lo == 0 || lo > hi {
        return Err(bad());
    }
    Ok((lo, hi))
}

impl LoadConfig {
    /// Checks the combination of options.
    pub fn validate(&self) -> Result<()> {
        check_target("xstack load", *self.target.ip(), &self.allow_target)?;
        if self.close == CloseBy::Server && !self.http {
            bail!("--close server needs --http (the last request asks the server to close)");
        }
        if self.duration.is_none() && self.connections.is_none() {
            bail!("give --duration S or --connections N: every load is bounded");
        }
        if self.requests_per_conn == 0 {
            bail!("--requests-per-conn must be at least 1");
        }
        if self.queues == 0 || self.queues > 64 {
            bail!("--queues {} is out of range: use 1 to 64", self.queues);
        }
        match self.lp {
            Loop::Closed(0) => bail!("--concurrency must be at least 1"),
            Loop::Closed(n) if n < self.queues => bail!(
                "--concurrency {n} is below --queues {}: every queue's engine needs a connection; raise --concurrency or lower --queues",
                self.queues
            ),
            Loop::Open(r) if !(r > 0.0 && r.is_finite()) => bail!("--rate must be positive"),
            _ => {}
        }
        if let Some(r) = self.connect_rate {
            if !(r > 0.0 && r.is_finite()) {
                bail!("--connect-rate {r} is invalid: give connections per second (0 = unpaced)");
            }
            if r < f64::from(self.queues) {
                bail!("--connect-rate {r} is below --queues {}: every engine needs at least one per second", self.queues);
            }
        }
        Ok(())
    }

    /// Worker `i`'s share of `n`: the concurrency, rate and connection
    /// count split as evenly as whole numbers allow; no progress line or
    /// HdrHistogram log of its own (the caller reports for all).
    pub(super) fn part(&self, i: u32, n: u32) -> LoadConfig {
        let share =
            |total: u64| total / u64::from(n) + u64::from(u64::from(i) < total % u64::from(n));
        LoadConfig {
            lp: match self.lp {
                Loop::Closed(c) => Loop::Closed(share(u64::from(c)) as u32),
                Loop::Open(r) => Loop::Open(r / f64::from(n)),
            },
            connect_rate: self.connect_rate.map(|r| r / f64::from(n)),
            connections: self.connections.map(share),
            progress: false,
            hdr: None,
            queues: 1,
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_takes_one_address_a_list_or_a_prefix() {
        assert_eq!(
            parse_addrs("198.18.0.3").unwrap(),
            vec![Ipv4Addr::new(198, 18, 0, 3)]
        );
        assert_eq!(parse_addrs("198.18.0.3, 198.18.0.9").unwrap().len(), 2);
        let p = parse_addrs("198.18.1.0/26").unwrap();
        assert_eq!(p.len(), 62);
        assert_eq!(p[0], Ipv4Addr::new(198, 18, 1, 1));
        assert_eq!(p[61], Ipv4Addr::new(198, 18, 1, 62));
        assert_eq!(parse_addrs("198.18.1.0/24").unwrap().len(), 254);
        assert_eq!(parse_addrs("198.18.1.4/31").unwrap().len(), 2);
        assert_eq!(parse_addrs("198.18.1.4/32").unwrap().len(), 1);
        for (bad, says) in [
            ("198.18.1.0/23", "at most"),
            ("198.18.1.1/26", "host bits"),
            ("198.18.1.0/33", "prefix length"),
            ("198.18.1.3,198.18.1.3", "twice"),
            ("fe80::1", "not an IPv4"),
        ] {
            let e = parse_addrs(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn ports_take_a_range_like_ip_local_port_range() {
        assert_eq!(parse_ports("32768-60999").unwrap(), (32768, 60999));
        assert_eq!(parse_ports("5000-5000").unwrap(), (5000, 5000));
        for bad in ["0-10", "10-5", "100", "a-b", "1-70000"] {
            assert!(
                parse_ports(bad).unwrap_err().to_string().contains("LO-HI"),
                "{bad}"
            );
        }
    }
}
