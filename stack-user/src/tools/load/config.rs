//! What `xstack load` runs: the loop, who closes, the bounds.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use anyhow::{bail, Result};
use serde::Serialize;

use crate::tools::guard::{check_target_ip, TargetPrefix};

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
    /// Server address: inside 198.18.0.0/15, 2001:2::/48 or `allow_target`.
    pub target: SocketAddr,
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
    /// Serve Prometheus metrics here while the load runs (`--metrics`).
    pub metrics: Option<std::net::SocketAddr>,
    /// Record the frames the engines receive and send (`--pcap`; engine
    /// driver only).
    pub capture: Option<crate::runtime::capture::CaptureConfig>,
    /// Start at this wall-clock time (`--start-at`), after the bring-up.
    pub start_at: Option<std::time::SystemTime>,
}

/// `--connect-rate` default: 4096 connections per second, at most a
/// tenth of that at once. One default Linux accept queue (`somaxconn`
/// 4096 since 5.4, with `listen(fd, 4096)`) arrives per second, so a server
/// whose application accepts at least once a second never overflows it,
/// and a burst (410 SYNs) stays under the smallest default
/// `tcp_max_syn_backlog` Linux sizes from memory (512 on a 1 GiB machine).
pub const DEFAULT_CONNECT_RATE: f64 = 4096.0;

/// Most addresses one `--ip` may name: what the XDP program's
/// owned-address tables hold (`stack_ebpf::MAX_OWNED_ADDRS` for IPv4,
/// `MAX_OWNED_ADDRS6` for IPv6: the same bound).
pub const MAX_SOURCE_ADDRS: usize = stack_ebpf::MAX_OWNED_ADDRS as usize;
const _: () = assert!(stack_ebpf::MAX_OWNED_ADDRS == stack_ebpf::MAX_OWNED_ADDRS6);

/// Parses `--ip`: one address, a comma-separated list, or a prefix, of
/// one family (IPv4 or IPv6; a mixed list is refused). An IPv4 prefix
/// shorter than /31 gives its host addresses (without the network and
/// broadcast addresses, as a subnet's hosts; `198.18.1.0/26` gives 62); a
/// /31 or /32 gives both or the one. An IPv6 prefix (`2001:2:0:1::/120`)
/// gives every address but the all-zero one, the Subnet-Router anycast
/// address (RFC 4291 §2.6.1); a /127 or /128 gives both or the one (RFC
/// 6164). Duplicates are refused, and so is more than
/// [`MAX_SOURCE_ADDRS`] (an IPv4 /24, an IPv6 /120 at most).
pub fn parse_addrs(s: &str) -> Result<Vec<IpAddr>> {
    const HOW: &str = "give ADDR, ADDR,ADDR or ADDR/LEN, all IPv4 or all IPv6";
    let mut out: Vec<IpAddr> = Vec::new();
    for part in s.split(',').map(str::trim) {
        if let Some((a, len)) = part.split_once('/') {
            let a: IpAddr = a
                .parse()
                .map_err(|_| anyhow::anyhow!("--ip {part}: {a} is not an IP address; {HOW}"))?;
            let bits: u32 = if a.is_ipv4() { 32 } else { 128 };
            let len: u32 = len
                .parse()
                .ok()
                .filter(|l| (0..=bits).contains(l))
                .ok_or_else(|| {
                    anyhow::anyhow!("--ip {part}: the prefix length must be 0 to {bits}")
                })?;
            let host_bits = bits - len;
            if host_bits > 8 {
                bail!(
                    "--ip {part} holds 2^{host_bits} addresses: at most {MAX_SOURCE_ADDRS} (an IPv4 /24, an IPv6 /120); use a longer prefix"
                );
            }
            let count = 1u32 << host_bits;
            match a {
                IpAddr::V4(a) => {
                    let net = u32::from(a) & !(count - 1);
                    if net != u32::from(a) {
                        bail!(
                            "--ip {part}: host bits are set; the prefix is {}/{len}",
                            Ipv4Addr::from(net)
                        );
                    }
                    let (first, last) = if len < 31 { (1, count - 1) } else { (0, count) };
                    out.extend((first..last).map(|i| IpAddr::V4(Ipv4Addr::from(net + i))));
                }
                IpAddr::V6(a) => {
                    let net = u128::from(a) & !(u128::from(count) - 1);
                    if net != u128::from(a) {
                        bail!(
                            "--ip {part}: host bits are set; the prefix is {}/{len}",
                            Ipv6Addr::from(net)
                        );
                    }
                    let first = u32::from(len < 127);
                    out.extend(
                        (first..count).map(|i| IpAddr::V6(Ipv6Addr::from(net + u128::from(i)))),
                    );
                }
            }
        } else {
            out.push(
                part.parse()
                    .map_err(|_| anyhow::anyhow!("--ip {part:?} is not an IP address; {HOW}"))?,
            );
        }
    }
    if let (Some(first), Some(other)) = (
        out.first(),
        out.iter().find(|a| a.is_ipv4() != out[0].is_ipv4()),
    ) {
        bail!("--ip mixes address families ({first} and {other}): give addresses of the target's family only");
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

/// `--segment I/N`: the I-th (from 0) of N equal shares of one run, as
/// k6's execution segments: N copies started anywhere (`--start-at`
/// together) add up to the run the same options describe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Which share, 0 to `count - 1`.
    pub index: u32,
    /// How many shares.
    pub count: u32,
}

impl std::str::FromStr for Segment {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Segment> {
        let bad = || {
            anyhow::anyhow!(
                "--segment {s:?} is not I/N; give the share's index from 0 and the number of shares, e.g. --segment 0/2 and --segment 1/2"
            )
        };
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count): (u32, u32) = (
            i.trim().parse().map_err(|_| bad())?,
            n.trim().parse().map_err(|_| bad())?,
        );
        if count == 0 || count > 1024 || index >= count {
            bail!("--segment {s}: the index must be below the count (0/2 and 1/2 are the two halves), the count 1 to 1024");
        }
        Ok(Segment { index, count })
    }
}

impl Segment {
    /// This share of `0..total`, as a range: shares differ by at most
    /// one, are disjoint and cover it.
    pub fn slice(&self, total: u64) -> std::ops::Range<u64> {
        let (i, n) = (u64::from(self.index), u64::from(self.count));
        let start = i * (total / n) + i.min(total % n);
        start..start + total / n + u64::from(i < total % n)
    }

    /// This share of a local port range (`ip_local_port_range`): the
    /// segments' ports are disjoint, so copies sharing an address never
    /// collide on a 4-tuple.
    pub fn ports(&self, (lo, hi): (u16, u16)) -> Result<(u16, u16)> {
        let r = self.slice(u64::from(hi.saturating_sub(lo)) + 1);
        if r.is_empty() {
            bail!(
                "--segment {}/{}: the local port range {lo}-{hi} has no port left for this share; widen ip_local_port_range",
                self.index, self.count
            );
        }
        Ok((lo + r.start as u16, lo + (r.end - 1) as u16))
    }
}

impl LoadConfig {
    /// Checks the combination of options.
    pub fn validate(&self) -> Result<()> {
        check_target_ip("xstack load", self.target.ip(), &self.allow_target)?;
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

    /// Segment `s` of this run (`--segment`): its share of the rate,
    /// concurrency and connections ([`part`](Self::part)), reported as a
    /// run of its own.
    pub fn segment(&self, s: Segment) -> Result<LoadConfig> {
        let p = self.part(s.index, s.count);
        if p.lp == Loop::Closed(0) || p.connections == Some(0) {
            bail!(
                "--segment {}/{}: this share gets no connection; give --concurrency and --connections of at least {}",
                s.index, s.count, s.count
            );
        }
        Ok(LoadConfig {
            progress: self.progress,
            hdr: self.hdr.clone(),
            queues: self.queues,
            metrics: self.metrics,
            capture: self.capture.clone(),
            ..p
        })
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
            metrics: None,
            capture: None,
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
            vec![IpAddr::V4(Ipv4Addr::new(198, 18, 0, 3))]
        );
        assert_eq!(parse_addrs("198.18.0.3, 198.18.0.9").unwrap().len(), 2);
        let p = parse_addrs("198.18.1.0/26").unwrap();
        assert_eq!(p.len(), 62);
        assert_eq!(p[0], IpAddr::V4(Ipv4Addr::new(198, 18, 1, 1)));
        assert_eq!(p[61], IpAddr::V4(Ipv4Addr::new(198, 18, 1, 62)));
        assert_eq!(parse_addrs("198.18.1.0/24").unwrap().len(), 254);
        assert_eq!(parse_addrs("198.18.1.4/31").unwrap().len(), 2);
        assert_eq!(parse_addrs("198.18.1.4/32").unwrap().len(), 1);
        for (bad, says) in [
            ("198.18.1.0/23", "at most"),
            ("198.18.1.1/26", "host bits"),
            ("198.18.1.0/33", "prefix length"),
            ("198.18.1.3,198.18.1.3", "twice"),
            ("198.18.1.x", "not an IP address"),
        ] {
            let e = parse_addrs(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn ip_takes_an_ipv6_list_or_prefix_and_refuses_mixed_families() {
        let v6 = |s: &str| IpAddr::V6(s.parse().unwrap());
        assert_eq!(
            parse_addrs("2001:2:0:1::5, 2001:2:0:1::9").unwrap(),
            vec![v6("2001:2:0:1::5"), v6("2001:2:0:1::9")]
        );
        // A /120: 256 addresses less the Subnet-Router anycast one.
        let p = parse_addrs("2001:2:0:1::/120").unwrap();
        assert_eq!(p.len(), 255);
        assert_eq!(p[0], v6("2001:2:0:1::1"));
        assert_eq!(p[254], v6("2001:2:0:1::ff"));
        assert!(p.iter().all(IpAddr::is_ipv6));
        assert_eq!(parse_addrs("2001:2::/127").unwrap().len(), 2);
        assert_eq!(parse_addrs("2001:2::7/128").unwrap(), vec![v6("2001:2::7")]);
        for (bad, says) in [
            ("2001:2:0:1::/119", "at most 256"),
            ("2001:2:0:1::1/120", "host bits"),
            ("2001:2::/129", "0 to 128"),
            ("2001:2::1,2001:2::1", "twice"),
            ("198.18.1.1,2001:2::1", "mixes address families"),
            ("2001:2:0:1::/124,198.18.1.0/30", "mixes address families"),
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
