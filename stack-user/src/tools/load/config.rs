//! What `xstack load` runs: the loop, who closes, the bounds.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

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
    /// Serve Prometheus metrics here while the load runs (`--metrics`).
    pub metrics: Option<std::net::SocketAddr>,
    /// Record the frames the engines receive and send (`--pcap`; engine
    /// driver only).
    pub capture: Option<crate::runtime::capture::CaptureConfig>,
    /// Start at this wall-clock time (`--start-at`), after the bring-up.
    pub start_at: Option<std::time::SystemTime>,
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
