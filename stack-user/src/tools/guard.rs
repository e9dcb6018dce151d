//! The target guard of `xstack load` and `xstack flood`: where they may send.
//!
//! By default only to 198.18.0.0/15, the range RFC 2544 §C.2.2 (and RFC 5735
//! §3) sets aside for benchmarking, which no production network routes, and
//! its IPv6 counterpart 2001:2::/48 (RFC 5180 §5.1).
//! `--allow-target CIDR` (repeatable) widens it for a user's own lab, one
//! prefix at a time, of either family. An IPv4 prefix must be at least a /8
//! ([`MIN_ALLOWED_PREFIX_LEN`]), must not have host bits set, and must lie in
//! unicast space (not 0.0.0.0/8, not 224.0.0.0/3: multicast, reserved and the
//! broadcast address, RFC 5735 §3); an IPv6 prefix at least a /32
//! ([`MIN_ALLOWED_PREFIX_LEN6`], an RIR allocation: a lab has a /48 or a /64)
//! inside global unicast 2000::/3 or unique local fc00::/7 (RFC 4291 §2.4,
//! RFC 4193): `--allow-target 0.0.0.0/0` or `::/0` is refused, so the guard
//! can never be switched off wholesale. The check runs before any socket is
//! opened or packet built.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
};

use anyhow::{bail, Result};

/// The shortest IPv4 prefix `--allow-target` takes: a /8 at most, never the
/// whole address space.
pub const MIN_ALLOWED_PREFIX_LEN: u8 = 8;

/// The shortest IPv6 prefix `--allow-target` takes: a /32.
pub const MIN_ALLOWED_PREFIX_LEN6: u8 = 32;

/// True when `a` lies in 198.18.0.0/15 (RFC 2544 benchmarking range).
pub fn in_benchmark_range(a: Ipv4Addr) -> bool {
    let o = a.octets();
    o[0] == 198 && o[1] & 0xfe == 18
}

/// True when `a` lies in 2001:2::/48 (RFC 5180 §5.1 benchmarking range).
pub fn in_benchmark_range6(a: Ipv6Addr) -> bool {
    let s = a.segments();
    s[0] == 0x2001 && s[1] == 2 && s[2] == 0
}

/// [`check_target`] for either family: an IPv6 target must lie in
/// 2001:2::/48 or in an IPv6 `--allow-target` prefix.
pub fn check_target_ip(tool: &str, target: IpAddr, allowed: &[TargetPrefix]) -> Result<()> {
    match target {
        IpAddr::V4(a) => check_target(tool, a, allowed),
        IpAddr::V6(a)
            if in_benchmark_range6(a) || allowed.iter().any(|p| p.contains_ip(target)) =>
        {
            Ok(())
        }
        IpAddr::V6(a) => {
            let mine: Vec<String> = allowed
                .iter()
                .filter(|p| p.addr.is_ipv6())
                .map(ToString::to_string)
                .collect();
            if mine.is_empty() {
                bail!(
                    "target {a} is outside 2001:2::/48; {tool} only sends IPv6 to the benchmarking range unless you add --allow-target CIDR for your own lab"
                )
            }
            bail!(
                "target {a} is outside 2001:2::/48 and every IPv6 --allow-target ({}); {tool} sends nowhere else",
                mine.join(", ")
            )
        }
    }
}

/// One `--allow-target` prefix, validated: IPv4 at least a /8, IPv6 at
/// least a /32, no host bits, unicast space only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TargetPrefix {
    addr: IpAddr,
    len: u8,
}

fn mask6(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len))
    }
}

fn mask(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    }
}

impl TargetPrefix {
    /// Whether the IPv4 address `a` lies in this prefix.
    pub fn contains(&self, a: Ipv4Addr) -> bool {
        self.contains_ip(IpAddr::V4(a))
    }

    /// Whether `a` (either family) lies in this prefix.
    pub fn contains_ip(&self, a: IpAddr) -> bool {
        match (self.addr, a) {
            (IpAddr::V4(net), IpAddr::V4(a)) => u32::from(a) & mask(self.len) == u32::from(net),
            (IpAddr::V6(net), IpAddr::V6(a)) => u128::from(a) & mask6(self.len) == u128::from(net),
            _ => false,
        }
    }
}

impl fmt::Display for TargetPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for TargetPrefix {
    type Err = String;

    /// `A.B.C.D/LEN` or `X:X::X/LEN` (a bare address is a host prefix).
    fn from_str(s: &str) -> Result<Self, String> {
        if s.contains(':') {
            return prefix6(s);
        }
        let (a, l) = s.split_once('/').unwrap_or((s, "32"));
        let addr: Ipv4Addr = a.parse().map_err(|_| {
            format!("{s} is not an IPv4 prefix like 10.1.0.0/16 (nor IPv6 like 2001:db8:1::/48)")
        })?;
        let len: u8 = l
            .parse()
            .ok()
            .filter(|l| *l <= 32)
            .ok_or_else(|| format!("{s}: the prefix length must be 0 to 32"))?;
        if len < MIN_ALLOWED_PREFIX_LEN {
            return Err(format!(
                "{s} is too broad: at most a /{MIN_ALLOWED_PREFIX_LEN}; name your own lab's prefix"
            ));
        }
        let net = Ipv4Addr::from(u32::from(addr) & mask(len));
        if net != addr {
            return Err(format!("{s} has host bits set; did you mean {net}/{len}?"));
        }
        let first = addr.octets()[0];
        if first == 0 || first >= 224 {
            return Err(format!(
                "{s} is not unicast space (0.0.0.0/8, multicast, reserved or broadcast)"
            ));
        }
        Ok(TargetPrefix {
            addr: IpAddr::V4(addr),
            len,
        })
    }
}

/// An IPv6 `--allow-target` prefix: at least a /32, no host bits, inside
/// global unicast 2000::/3 or unique local fc00::/7.
fn prefix6(s: &str) -> Result<TargetPrefix, String> {
    let (a, l) = s.split_once('/').unwrap_or((s, "128"));
    let addr: Ipv6Addr = a
        .parse()
        .map_err(|_| format!("{s} is not an IPv6 prefix like 2001:db8:1::/48"))?;
    let len: u8 = l
        .parse()
        .ok()
        .filter(|l| *l <= 128)
        .ok_or_else(|| format!("{s}: the prefix length must be 0 to 128"))?;
    if len < MIN_ALLOWED_PREFIX_LEN6 {
        return Err(format!(
            "{s} is too broad: at most a /{MIN_ALLOWED_PREFIX_LEN6}; name your own lab's prefix"
        ));
    }
    let net = Ipv6Addr::from(u128::from(addr) & mask6(len));
    if net != addr {
        return Err(format!("{s} has host bits set; did you mean {net}/{len}?"));
    }
    let first = addr.segments()[0];
    let global = first & 0xe000 == 0x2000;
    let unique_local = first & 0xfe00 == 0xfc00;
    if !(global || unique_local) {
        return Err(format!(
            "{s} is not unicast space (IPv6: 2000::/3 or fc00::/7; not multicast, link-local, loopback or unspecified)"
        ));
    }
    Ok(TargetPrefix {
        addr: IpAddr::V6(addr),
        len,
    })
}

/// Refuses `target` unless it lies in 198.18.0.0/15 or in one of `allowed`;
/// the error is one line that names `--allow-target`. `tool` names the
/// command in it (`xstack load`).
pub fn check_target(tool: &str, target: Ipv4Addr, allowed: &[TargetPrefix]) -> Result<()> {
    if in_benchmark_range(target) || allowed.iter().any(|p| p.contains(target)) {
        return Ok(());
    }
    if allowed.is_empty() {
        bail!(
            "target {target} is outside 198.18.0.0/15; {tool} only sends to the benchmarking range unless you add --allow-target CIDR for your own lab"
        );
    }
    let list: Vec<String> = allowed.iter().map(ToString::to_string).collect();
    bail!(
        "target {target} is outside 198.18.0.0/15 and every --allow-target ({}); {tool} sends nowhere else",
        list.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> TargetPrefix {
        s.parse().unwrap()
    }

    #[test]
    fn without_allow_target_only_the_benchmarking_range_passes() {
        for ok in ["198.18.0.1", "198.19.255.254", "198.18.0.0"] {
            assert!(check_target("xstack load", ok.parse().unwrap(), &[]).is_ok());
        }
        for bad in ["10.0.0.1", "198.17.255.255", "198.20.0.0", "8.8.8.8"] {
            let e = check_target("xstack load", bad.parse().unwrap(), &[])
                .unwrap_err()
                .to_string();
            assert!(e.contains("--allow-target"), "{e}");
            assert!(e.contains("198.18.0.0/15") && e.contains(bad), "{e}");
            assert!(!e.contains('\n'), "one line: {e}");
        }
    }

    #[test]
    fn ipv6_targets_pass_only_inside_2001_2_slash_48() {
        for ok in ["2001:2::2", "2001:2:0:ffff::1", "2001:2::"] {
            assert!(check_target_ip("xstack load", ok.parse().unwrap(), &[]).is_ok());
        }
        for bad in ["2001:3::1", "2001:2:1::1", "2001:db8::1", "::1", "fe80::1"] {
            let e = check_target_ip("xstack load", bad.parse().unwrap(), &[p("10.0.0.0/8")])
                .unwrap_err()
                .to_string();
            assert!(e.contains("2001:2::/48") && e.contains(bad), "{e}");
            assert!(e.contains("--allow-target"), "{e}");
            assert!(!e.contains('\n'), "one line: {e}");
        }
        // IPv4 goes through the IPv4 guard.
        assert!(check_target_ip("x", "198.18.0.2".parse().unwrap(), &[]).is_ok());
        assert!(check_target_ip("x", "10.0.0.1".parse().unwrap(), &[]).is_err());
    }

    #[test]
    fn a_target_inside_an_allowed_prefix_passes_and_outside_it_is_refused() {
        let allowed = [p("10.1.0.0/16"), p("192.168.7.9/32")];
        let ok = |a: &str| check_target("xstack flood", a.parse().unwrap(), &allowed).is_ok();
        assert!(ok("10.1.0.1") && ok("10.1.255.255") && ok("192.168.7.9"));
        assert!(ok("198.18.0.2"), "the benchmarking range stays allowed");
        let e = check_target("xstack flood", "10.2.0.1".parse().unwrap(), &allowed)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--allow-target") && e.contains("10.1.0.0/16, 192.168.7.9/32"),
            "{e}"
        );
        assert!(!e.contains('\n'), "one line: {e}");
        assert!(!ok("192.168.7.8"));
    }

    #[test]
    fn allow_target_refuses_malformed_over_broad_and_non_unicast_prefixes() {
        assert_eq!(p("10.0.0.0/8").to_string(), "10.0.0.0/8");
        assert_eq!(p("10.0.0.7").to_string(), "10.0.0.7/32");
        for (bad, why) in [
            ("10.0.0/8", "not an IPv4 prefix"),
            ("10.0.0.0/33", "0 to 32"),
            ("10.0.0.0/", "0 to 32"),
            ("lab", "not an IPv4 prefix"),
            ("0.0.0.0/0", "too broad"),
            ("10.0.0.0/7", "too broad"),
            ("10.0.0.1/24", "did you mean 10.0.0.0/24"),
            ("0.0.0.0/8", "not unicast"),
            ("224.0.0.0/8", "not unicast"),
            ("255.255.255.255/32", "not unicast"),
        ] {
            let e = bad.parse::<TargetPrefix>().unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
            assert!(!e.contains('\n'));
        }
    }

    #[test]
    fn ipv6_allow_target_prefixes_widen_the_guard_for_their_family_only() {
        // Only the refusal path is exercised beyond parsing: nothing here sends.
        let allowed = [p("2001:db8:1::/48"), p("10.1.0.0/16")];
        let ok = |a: &str| check_target_ip("xstack load", a.parse().unwrap(), &allowed).is_ok();
        assert!(ok("2001:db8:1::5") && ok("2001:db8:1:ffff::1"));
        assert!(ok("2001:2::2"), "the benchmarking range stays allowed");
        assert!(!ok("2001:db8:2::1"));
        // An IPv4 prefix never lets an IPv6 target through, nor the reverse.
        assert!(!p("10.1.0.0/16").contains_ip("::ffff:10.1.0.1".parse().unwrap()));
        assert!(!p("2001:db8:1::/48").contains_ip("10.1.0.1".parse().unwrap()));
        let e = check_target_ip("xstack flood", "2001:db8:2::1".parse().unwrap(), &allowed)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("2001:db8:1::/48") && !e.contains("10.1.0.0/16"),
            "{e}"
        );
        assert!(!e.contains('\n'), "one line: {e}");
        assert_eq!(p("fd00:1::/32").to_string(), "fd00:1::/32");
        assert_eq!(p("2001:db8::7").to_string(), "2001:db8::7/128");
        for (bad, why) in [
            ("::/0", "too broad"),
            ("2001:db8::/31", "too broad"),
            ("2001:db8::1/64", "did you mean 2001:db8::/64"),
            ("2001:db8::/129", "0 to 128"),
            ("ff02::/32", "not unicast"),
            ("fe80::/32", "not unicast"),
            ("::1/128", "not unicast"),
            ("::/128", "not unicast"),
            ("2001:db8::g/64", "not an IPv6 prefix"),
        ] {
            let e = bad.parse::<TargetPrefix>().unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
            assert!(!e.contains('\n'));
        }
    }
}
