//! Settings of the XDP fast path (SYN cookies and SYN-flood filtering), as
//! users write them (`xstack serve --syncookies auto --syn-source-rate 50`,
//! `xstack config --iface IF key=value`), and their translation into the
//! [`FastpathConfig`] map entry the XDP program reads per packet.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;
use stack_ebpf::{
    cookie::{Secret, Secrets},
    FastpathConfig, CFG_ALLOW_LIST, CFG_ALLOW_ONLY, CFG_DENY_LIST, CFG_ECN, SYNCOOKIES_ALWAYS,
    SYNCOOKIES_AUTO, SYNCOOKIES_NEVER,
};
use thiserror::Error;

/// `tcp_syncookies` as the XDP program applies it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SynCookies {
    /// SYNs always go to the engine.
    Never,
    /// Cookies while the SYN rate is above `syn_rate_on` (until it falls
    /// below `syn_rate_off`) or the engine's SYN queue is full.
    Auto,
    /// Every SYN is answered by XDP with a cookie.
    Always,
}

impl SynCookies {
    fn code(self) -> u32 {
        match self {
            SynCookies::Never => SYNCOOKIES_NEVER,
            SynCookies::Auto => SYNCOOKIES_AUTO,
            SynCookies::Always => SYNCOOKIES_ALWAYS,
        }
    }
}

/// Who sends cookie SYN-ACKs (`--cookie-path`). XDP builds them in place
/// either way, with the same bytes; only the way out differs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CookiePath {
    /// `engine` on veth, `xdp` on any other driver ([`CookiePath::resolve`]).
    #[default]
    Auto,
    /// XDP sends them itself: `XDP_TX` (on veth `bpf_redirect` to the
    /// ingress interface, which reaches the peer only when the peer runs
    /// NAPI: GRO on or an XDP program).
    Xdp,
    /// XDP hands them to the engine, which sends them through AF_XDP TX
    /// (`CFG_COOKIE_VIA_ENGINE`): works on any interface, at the cost of a
    /// trip through the socket.
    Engine,
}

impl CookiePath {
    /// The path for an interface of driver `driver`, with the reason to
    /// log: `auto` takes the engine on veth, where a peer without NAPI (the
    /// kernel's default) never receives what `XDP_TX` or a redirect sends,
    /// and XDP everywhere else.
    pub fn resolve(self, driver: &str) -> (CookiePath, &'static str) {
        let veth = driver == "veth";
        match self {
            CookiePath::Xdp if veth => (
                CookiePath::Xdp,
                "forced by --cookie-path xdp; on veth they reach the peer only if it runs NAPI (GRO on or an XDP program)",
            ),
            CookiePath::Xdp => (CookiePath::Xdp, "forced by --cookie-path xdp"),
            CookiePath::Engine => (CookiePath::Engine, "forced by --cookie-path engine"),
            CookiePath::Auto if veth => (
                CookiePath::Engine,
                "veth: XDP_TX and redirects reach the peer only if it runs NAPI (GRO on or an XDP program), which a default veth does not; --cookie-path xdp to override",
            ),
            CookiePath::Auto => (CookiePath::Xdp, "the driver transmits XDP_TX itself"),
        }
    }

    /// The path a `FastpathConfig::flags` selects (`Xdp` or `Engine`).
    pub fn from_flags(flags: u32) -> CookiePath {
        if flags & stack_ebpf::CFG_COOKIE_VIA_ENGINE != 0 {
            CookiePath::Engine
        } else {
            CookiePath::Xdp
        }
    }

    /// How the log and `xstack stats` name the path (`tx_redirect`: the XDP
    /// path sends with `bpf_redirect`).
    pub fn describe(self, tx_redirect: bool) -> &'static str {
        match (self, tx_redirect) {
            (CookiePath::Engine, _) => "the engine (AF_XDP TX)",
            (_, true) => "XDP (bpf_redirect to the ingress interface)",
            (_, false) => "XDP (XDP_TX)",
        }
    }
}

/// Errors of fast-path settings.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SettingError {
    /// Unknown key.
    #[error("unknown setting {0:?}; known: {keys}", keys = KEYS.join(", "))]
    UnknownKey(String),
    /// Bad value.
    #[error("bad value {value:?} for {key}: {why}")]
    BadValue {
        /// Key.
        key: String,
        /// Value.
        value: String,
        /// What is expected.
        why: &'static str,
    },
    /// Not key=value.
    #[error("{0:?} is not key=value")]
    NotKeyValue(String),
}

/// Keys `xstack config` accepts.
pub const KEYS: &[&str] = &[
    "tcp_syncookies",
    "syn_rate_on",
    "syn_rate_off",
    "syn_window_ms",
    "syn_source_rate",
    "syn_source_burst",
    "syn_global_rate",
    "syn_global_burst",
    "syn_source_prefix6",
    "unknown_rate_on",
    "mss",
    "wscale",
    "window",
    "ecn",
    "allow_only",
    "deny",
    "undeny",
    "allow",
    "unallow",
];

/// The fast path's settings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FastpathSettings {
    /// Cookie mode (`tcp_syncookies`).
    pub syncookies: SynCookies,
    /// Auto mode: SYN/s at or above which cookies turn on.
    pub syn_rate_on: u64,
    /// Auto mode: SYN/s below which cookies turn off again (hysteresis).
    pub syn_rate_off: u64,
    /// Auto mode: rate window, ms.
    pub syn_window_ms: u64,
    /// SYN/s per source address (0: unlimited).
    pub syn_source_rate: u64,
    /// Burst per source, SYNs.
    pub syn_source_burst: u64,
    /// SYN/s over all sources (0: unlimited).
    pub syn_global_rate: u64,
    /// Global burst, SYNs.
    pub syn_global_burst: u64,
    /// Prefix length an IPv6 source is bucketed by for
    /// `syn_source_rate` (default 64: one bucket per /64).
    pub syn_source_prefix6: u8,
    /// Segments for no connection per second (the engine's `no_socket`,
    /// `listen_ack_reset` and `listen_rst_ignored`, over all queues) at or
    /// above which XDP
    /// drops segments without SYN for no known flow, as while cookies are
    /// in use ([`UnknownFilter`]; 0: never).
    pub unknown_rate_on: u64,
    /// MSS announced in cookie SYN-ACKs (client MSS is clamped to it).
    pub mss: u16,
    /// Window-scale shift announced in cookie SYN-ACKs.
    pub wscale: u8,
    /// Window of cookie SYN-ACKs.
    pub window: u16,
    /// Negotiate ECN in cookie SYN-ACKs.
    pub ecn: bool,
    /// Only sources on the allow list may open connections.
    pub allow_only: bool,
    /// Send cookie SYN-ACKs with `bpf_redirect` to the ingress interface
    /// instead of `XDP_TX` (needed on veth; see `CFG_TX_REDIRECT`).
    pub tx_redirect: bool,
    /// Who sends cookie SYN-ACKs (the bring-up resolves `auto`).
    pub cookie_path: CookiePath,
    /// Deny-list prefixes.
    pub deny: Vec<(IpAddr, u8)>,
    /// Allow-list prefixes (exempt from rate limits).
    pub allow: Vec<(IpAddr, u8)>,
}

impl Default for FastpathSettings {
    /// Linux-like defaults: cookies in auto mode with the threshold of a
    /// busy server; no rate limits until configured.
    fn default() -> Self {
        FastpathSettings {
            syncookies: SynCookies::Never,
            syn_rate_on: 10_000,
            syn_rate_off: 5_000,
            syn_window_ms: 100,
            syn_source_rate: 0,
            syn_source_burst: 16,
            syn_global_rate: 0,
            syn_global_burst: 1024,
            syn_source_prefix6: 64,
            unknown_rate_on: 10_000,
            mss: 1460,
            wscale: 7,
            window: 65535,
            ecn: false,
            allow_only: false,
            tx_redirect: false,
            cookie_path: CookiePath::Auto,
            deny: Vec::new(),
            allow: Vec::new(),
        }
    }
}

/// How long one arming of the unknown-segment filter lasts: a cookie's
/// lifetime, the window in which XDP also checks segments after its last
/// cookie SYN-ACK.
pub const UNKNOWN_FILTER_NS: u64 = stack_ebpf::cookie::MAX_AGE as u64 * 60_000_000_000;

/// The unknown-segment filter's arming decision, fed every ~100 ms with
/// the engines' running total of segments for no connection (`no_socket`,
/// `listen_ack_reset`, `listen_rst_ignored`: each cost the engine a copy,
/// a lookup and most an RST). While that rate is at or above `unknown_rate_on`, the deadline it
/// returns is written to the XDP program's `FILTER_UNTIL`, and until then
/// XDP drops such segments itself (unanswered: RFC 9293 §3.10.7.1 would
/// send an RST).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnknownFilter {
    last: Option<(u64, u64)>,
    /// The deadline in force (CLOCK_MONOTONIC ns; 0: never armed).
    pub until_ns: u64,
    /// Times the filter went from lapsed to armed.
    pub arms: u64,
    /// Whether the last observation found it armed.
    pub active: bool,
}

/// What an [`UnknownFilter::observe`] asks of the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FilterStep {
    /// Nothing changes.
    Keep,
    /// The filter was off and arms: write this deadline (and log it).
    Arm(u64),
    /// The filter was on and the rate is still high: write this deadline.
    Extend(u64),
    /// The deadline passed: the filter is off again (log it).
    Lapse,
}

impl UnknownFilter {
    /// The rate of segments for no connection, per second, between the
    /// last observation and this one (`None` on the first).
    pub fn rate(&self, now_ns: u64, total: u64) -> Option<u64> {
        let (t0, n0) = self.last?;
        let dt = now_ns.checked_sub(t0).filter(|d| *d > 0)?;
        let dn = total.saturating_sub(n0);
        Some((u128::from(dn) * 1_000_000_000 / u128::from(dt)).min(u128::from(u64::MAX)) as u64)
    }

    /// Observes `total` segments for no connection at `now_ns` with the
    /// threshold `rate_on` per second (0: never arm).
    pub fn observe(&mut self, now_ns: u64, total: u64, rate_on: u64) -> FilterStep {
        let rate = self.rate(now_ns, total);
        self.last = Some((now_ns, total));
        if rate_on != 0 && rate.is_some_and(|r| r >= rate_on) {
            self.until_ns = now_ns.saturating_add(UNKNOWN_FILTER_NS);
            return if self.active {
                FilterStep::Extend(self.until_ns)
            } else {
                self.active = true;
                self.arms += 1;
                FilterStep::Arm(self.until_ns)
            };
        }
        if self.active && now_ns >= self.until_ns {
            self.active = false;
            return FilterStep::Lapse;
        }
        FilterStep::Keep
    }
}

/// Parses `A.B.C.D/LEN` (or a bare address, /32) inside 0.0.0.0/0, or an
/// IPv6 prefix `X:Y::/LEN` (a bare address is a /128); host bits cleared.
pub fn parse_prefix(s: &str) -> Result<(IpAddr, u8), &'static str> {
    if s.contains(':') {
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (
                a,
                l.parse::<u8>().map_err(|_| "IPv6 prefix length 0..=128")?,
            ),
            None => (s, 128),
        };
        if l > 128 {
            return Err("IPv6 prefix length 0..=128");
        }
        let a: Ipv6Addr = a
            .parse()
            .map_err(|_| "an IPv6 prefix like 2001:2:0:8::/64")?;
        let mask = if l == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(l))
        };
        return Ok((IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask)), l));
    }
    let (a, l) = match s.split_once('/') {
        Some((a, l)) => (a, l.parse::<u8>().map_err(|_| "prefix length 0..=32")?),
        None => (s, 32),
    };
    if l > 32 {
        return Err("prefix length 0..=32");
    }
    let a: Ipv4Addr = a
        .parse()
        .map_err(|_| "an IPv4 prefix like 198.18.64.0/18")?;
    let mask = if l == 0 { 0 } else { u32::MAX << (32 - l) };
    Ok((IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask)), l))
}

fn gcra(rate: u64, burst: u64) -> (u64, u64) {
    if rate == 0 {
        return (0, 0);
    }
    let interval = (1_000_000_000 / rate).max(1);
    (interval, interval.saturating_mul(burst.max(1) - 1))
}

impl FastpathSettings {
    /// The map entry for these settings.
    pub fn to_config(&self) -> FastpathConfig {
        let window_ns = self.syn_window_ms.max(1) * 1_000_000;
        let per_window = |rate: u64| (rate.saturating_mul(window_ns) / 1_000_000_000).max(1);
        let (si, st) = gcra(self.syn_source_rate, self.syn_source_burst);
        let (gi, gt) = gcra(self.syn_global_rate, self.syn_global_burst);
        let mut flags = 0;
        if !self.deny.is_empty() {
            flags |= CFG_DENY_LIST;
        }
        if !self.allow.is_empty() {
            flags |= CFG_ALLOW_LIST;
        }
        if self.allow_only {
            flags |= CFG_ALLOW_ONLY;
        }
        if self.ecn {
            flags |= CFG_ECN;
        }
        if self.tx_redirect {
            flags |= stack_ebpf::CFG_TX_REDIRECT;
        }
        if self.cookie_path == CookiePath::Engine {
            flags |= stack_ebpf::CFG_COOKIE_VIA_ENGINE;
        }
        FastpathConfig {
            syncookies: self.syncookies.code(),
            flags,
            mss: u32::from(self.mss),
            wscale: u32::from(self.wscale.min(14)),
            window: u32::from(self.window),
            ttl: 64,
            window_ns,
            syn_on: per_window(self.syn_rate_on),
            syn_off: per_window(self.syn_rate_off.min(self.syn_rate_on)),
            source_interval_ns: si,
            source_tolerance_ns: st,
            global_interval_ns: gi,
            global_tolerance_ns: gt,
            source6_prefix_len: u32::from(self.syn_source_prefix6.clamp(1, 128)),
            pad: 0,
            // The loaded program's own key, stamped by `XdpProgram::set_config`.
            source_key: [[0; 5]; 2],
        }
    }

    /// Applies one `key=value` setting.
    pub fn apply(&mut self, kv: &str) -> Result<(), SettingError> {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| SettingError::NotKeyValue(kv.into()))?;
        let (k, v) = (k.trim(), v.trim());
        let bad = |why| SettingError::BadValue {
            key: k.into(),
            value: v.into(),
            why,
        };
        let num = |max: u64| -> Result<u64, SettingError> {
            v.parse::<u64>()
                .ok()
                .filter(|n| *n <= max)
                .ok_or_else(|| bad("a non-negative integer in range"))
        };
        let boolean = || match v {
            "1" | "true" | "on" | "yes" => Ok(true),
            "0" | "false" | "off" | "no" => Ok(false),
            _ => Err(bad("0 or 1")),
        };
        match k {
            // Linux: 0 never, 1 when the queue overflows, 2 always.
            "tcp_syncookies" | "syncookies" => {
                self.syncookies = match v {
                    "0" | "never" => SynCookies::Never,
                    "1" | "auto" => SynCookies::Auto,
                    "2" | "always" => SynCookies::Always,
                    _ => return Err(bad("never|auto|always (or 0|1|2)")),
                }
            }
            "syn_rate_on" => self.syn_rate_on = num(1 << 40)?.max(1),
            "syn_rate_off" => self.syn_rate_off = num(1 << 40)?,
            "syn_window_ms" => self.syn_window_ms = num(60_000)?.max(1),
            "syn_source_rate" => self.syn_source_rate = num(1 << 30)?,
            "syn_source_burst" => self.syn_source_burst = num(1 << 30)?.max(1),
            "syn_global_rate" => self.syn_global_rate = num(1 << 30)?,
            "syn_global_burst" => self.syn_global_burst = num(1 << 30)?.max(1),
            "syn_source_prefix6" => self.syn_source_prefix6 = num(128)?.max(1) as u8,
            "unknown_rate_on" => self.unknown_rate_on = num(1 << 40)?,
            "mss" => self.mss = num(65535)?.max(88) as u16,
            "wscale" => self.wscale = num(14)? as u8,
            "window" => self.window = num(65535)? as u16,
            "ecn" => self.ecn = boolean()?,
            "allow_only" => self.allow_only = boolean()?,
            "deny" | "undeny" | "allow" | "unallow" => {
                let p = parse_prefix(v).map_err(bad)?;
                let list = if k.ends_with("deny") {
                    &mut self.deny
                } else {
                    &mut self.allow
                };
                list.retain(|x| *x != p);
                if !k.starts_with("un") {
                    list.push(p);
                }
            }
            other => return Err(SettingError::UnknownKey(other.into())),
        }
        Ok(())
    }
}

/// 16 random bytes from the kernel (getrandom), for keyed hashes (ISNs,
/// SYN cookie secrets).
pub fn random_key() -> [u8; 16] {
    let mut b = [0u8; 16];
    let mut filled = 0;
    while filled < b.len() {
        // SAFETY: writes at most the remaining bytes of `b`.
        let n = unsafe { libc::getrandom(b[filled..].as_mut_ptr().cast(), b.len() - filled, 0) };
        if n <= 0 {
            // getrandom only fails on a kernel without it (< 3.17): fall
            // back to time and pid.
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            b.copy_from_slice(&(t ^ u128::from(std::process::id()) << 64).to_le_bytes());
            break;
        }
        filled += n as usize;
    }
    b
}

/// A random 128-bit SipHash key ([`random_key`]).
pub fn random_secret() -> Secret {
    let b = random_key();
    let (k0, k1) = b.split_at(8);
    Secret {
        k0: u64::from_le_bytes(k0.try_into().unwrap_or([0; 8])),
        k1: u64::from_le_bytes(k1.try_into().unwrap_or([0; 8])),
    }
}

/// A random key for the per-source SYN cells' hash
/// ([`stack_ebpf::limit::SourceKey`]).
pub fn random_source_key() -> stack_ebpf::limit::SourceKey {
    let mut k = [[0u64; 5]; 2];
    for w in k.iter_mut().flatten() {
        let b = random_key();
        *w = u64::from_le_bytes(b[..8].try_into().unwrap_or([0; 8]));
    }
    k
}

/// Secrets after a rotation in cookie minute `count` (the XDP program's
/// clock, [`stack_ebpf::cookie::count_from_ns`] of CLOCK_MONOTONIC): a
/// fresh current one, the old current kept as previous until the cookies
/// issued before expire ([`Secrets::rotated`]).
pub fn rotate(s: &Secrets, count: u32) -> Secrets {
    s.rotated(random_secret(), count)
}

/// How often `xstack serve` rotates the cookie secret: hourly, so that a
/// forged ACK is checked under one secret in 57 minutes of 60 (the
/// previous one is tried only while its cookies can live; the reasons, and
/// Linux's one secret per boot, at [`Secrets`]).
pub const SECRET_ROTATION: std::time::Duration = std::time::Duration::from_secs(3600);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_and_translate() {
        let mut s = FastpathSettings::default();
        s.apply("tcp_syncookies=auto").unwrap();
        s.apply("syn_rate_on=20000").unwrap();
        s.apply("syn_rate_off=1000").unwrap();
        s.apply("syn_source_rate=100").unwrap();
        s.apply("syn_source_burst=10").unwrap();
        s.apply("deny=198.18.200.7/16").unwrap();
        assert_eq!(s.deny, vec![(Ipv4Addr::new(198, 18, 0, 0).into(), 16)]);
        let c = s.to_config();
        assert_eq!(c.syncookies, SYNCOOKIES_AUTO);
        assert_eq!(c.syn_on, 2000, "20000/s over 100 ms");
        assert_eq!(c.syn_off, 100);
        assert_eq!(c.source_interval_ns, 10_000_000);
        assert_eq!(c.source_tolerance_ns, 90_000_000);
        assert_eq!(c.global_interval_ns, 0);
        assert_eq!(c.flags, CFG_DENY_LIST);
        s.apply("undeny=198.18.0.0/16").unwrap();
        assert!(s.deny.is_empty());
        assert!(matches!(
            s.apply("nope=1"),
            Err(SettingError::UnknownKey(_))
        ));
        assert!(matches!(
            s.apply("wscale=15"),
            Err(SettingError::BadValue { .. })
        ));
        assert!(matches!(s.apply("mss"), Err(SettingError::NotKeyValue(_))));
        assert!(parse_prefix("198.18.0.0/33").is_err());
    }

    #[test]
    fn cookie_syn_acks_go_through_the_engine_on_veth_unless_forced() {
        assert_eq!(CookiePath::Auto.resolve("veth").0, CookiePath::Engine);
        assert_eq!(CookiePath::Auto.resolve("ixgbe").0, CookiePath::Xdp);
        assert_eq!(CookiePath::Xdp.resolve("veth").0, CookiePath::Xdp);
        assert_eq!(CookiePath::Engine.resolve("ixgbe").0, CookiePath::Engine);
        let mut s = FastpathSettings {
            cookie_path: CookiePath::Engine,
            ..Default::default()
        };
        assert_ne!(s.to_config().flags & stack_ebpf::CFG_COOKIE_VIA_ENGINE, 0);
        assert_eq!(
            CookiePath::from_flags(s.to_config().flags),
            CookiePath::Engine
        );
        s.cookie_path = CookiePath::Xdp;
        assert_eq!(s.to_config().flags & stack_ebpf::CFG_COOKIE_VIA_ENGINE, 0);
    }

    #[test]
    fn rotation_keeps_the_previous_secret() {
        let s = Secrets {
            current: random_secret(),
            previous: random_secret(),
            ..Secrets::default()
        };
        let r = rotate(&s, 1000);
        assert_eq!(r.previous, s.current);
        assert_ne!(r.current, s.current);
        assert!(r.tries_previous(1000 + stack_ebpf::cookie::MAX_AGE));
        assert!(!r.tries_previous(1000 + stack_ebpf::cookie::MAX_AGE + 1));
    }

    #[test]
    fn ipv6_prefixes_parse_with_host_bits_cleared() {
        assert_eq!(
            parse_prefix("2001:2:0:8::1/64").unwrap(),
            ("2001:2:0:8::".parse().unwrap(), 64)
        );
        assert_eq!(
            parse_prefix("2001:2::5").unwrap(),
            ("2001:2::5".parse().unwrap(), 128)
        );
        assert_eq!(
            parse_prefix("2001:2::/129").unwrap_err(),
            "IPv6 prefix length 0..=128"
        );
        assert!(parse_prefix("2001:zz::/64").is_err());
        let mut s = FastpathSettings::default();
        s.apply("deny=2001:2:0:66::/64").unwrap();
        s.apply("syn_source_prefix6=56").unwrap();
        assert_eq!(s.deny, vec![("2001:2:0:66::".parse().unwrap(), 64)]);
        assert_eq!(s.to_config().source6_prefix_len, 56);
        assert!(s.apply("syn_source_prefix6=129").is_err());
    }

    const MS: u64 = 1_000_000;

    #[test]
    fn unknown_filter_arms_at_the_rate_and_not_below() {
        let mut f = UnknownFilter::default();
        assert_eq!(
            f.observe(1000 * MS, 0, 10_000),
            FilterStep::Keep,
            "first look: no rate yet"
        );
        // 999 in 100 ms: 9,990/s, below 10,000/s.
        assert_eq!(f.observe(1100 * MS, 999, 10_000), FilterStep::Keep);
        assert!(!f.active);
        // 1,000 more in 100 ms: 10,000/s.
        assert_eq!(
            f.observe(1200 * MS, 1999, 10_000),
            FilterStep::Arm(1200 * MS + UNKNOWN_FILTER_NS)
        );
        assert!(f.active);
        assert_eq!(f.arms, 1);
    }

    #[test]
    fn unknown_filter_zero_never_arms() {
        let mut f = UnknownFilter::default();
        f.observe(0, 0, 0);
        assert_eq!(f.observe(100 * MS, 1 << 40, 0), FilterStep::Keep);
        assert!(!f.active);
        assert_eq!(f.until_ns, 0);
        assert_eq!(f.arms, 0);
    }

    #[test]
    fn unknown_filter_rearm_extends_the_deadline_and_lapses_after_it() {
        let mut f = UnknownFilter::default();
        f.observe(0, 0, 10_000);
        assert_eq!(
            f.observe(100 * MS, 5000, 10_000),
            FilterStep::Arm(100 * MS + UNKNOWN_FILTER_NS)
        );
        assert_eq!(
            f.observe(200 * MS, 10_000, 10_000),
            FilterStep::Extend(200 * MS + UNKNOWN_FILTER_NS),
            "still high: the deadline moves on"
        );
        assert_eq!(f.arms, 1, "an extension is no new arming");
        // Quiet from now: kept until the deadline, then lapsed once.
        assert_eq!(f.observe(300 * MS, 10_000, 10_000), FilterStep::Keep);
        assert!(f.active);
        let end = 200 * MS + UNKNOWN_FILTER_NS;
        assert_eq!(f.observe(end - 1, 10_000, 10_000), FilterStep::Keep);
        assert_eq!(f.observe(end, 10_000, 10_000), FilterStep::Lapse);
        assert!(!f.active);
        assert_eq!(f.observe(end + 100 * MS, 10_000, 10_000), FilterStep::Keep);
        // A new flood arms it again.
        assert!(matches!(
            f.observe(end + 200 * MS, 20_000, 10_000),
            FilterStep::Arm(_)
        ));
        assert_eq!(f.arms, 2);
    }

    #[test]
    fn unknown_rate_on_is_a_setting() {
        let mut s = FastpathSettings::default();
        assert_eq!(s.unknown_rate_on, 10_000);
        s.apply("unknown_rate_on=0").unwrap();
        assert_eq!(s.unknown_rate_on, 0);
        s.apply("unknown_rate_on=50000").unwrap();
        assert_eq!(s.unknown_rate_on, 50_000);
        assert!(s.apply("unknown_rate_on=-1").is_err());
    }
}
