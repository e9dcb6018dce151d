//! `--family 4|6|both` of the benchmarks that compare xstack with the
//! kernel (`xstack bench`, `bench bulk`, `bench concurrency`, `bench
//! synflood`): which address family each measurement runs over, the
//! testbed's addresses of that family, the kernel's IPv6 on the stack
//! side while a Linux server runs there, and the IPv6/IPv4 ratio lines
//! printed with `both`.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    process::Command,
    str::FromStr,
};

use anyhow::{bail, Result};
use serde::Serialize;

use crate::tools::testbed::Testbed;

/// One address family a measurement runs over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Family {
    /// IPv4 (198.18.0.0/15).
    #[default]
    #[serde(rename = "ipv4")]
    V4,
    /// IPv6 (2001:2::/48).
    #[serde(rename = "ipv6")]
    V6,
}

/// The load generator's own address on the peer veth (`xstack load`
/// beside the peer's kernel address).
const LOAD_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 3);
/// The IPv6 one.
const LOAD_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 3);

impl Family {
    /// "IPv4" or "IPv6", as printed in the tables.
    pub fn label(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }

    /// The stack side's address on testbed `t` (the server's).
    pub fn stack_ip(self, t: &Testbed) -> IpAddr {
        match self {
            Family::V4 => t.stack_ip.into(),
            Family::V6 => t.stack_ip6.into(),
        }
    }

    /// The peer's kernel address on testbed `t`.
    pub fn peer_ip(self, t: &Testbed) -> IpAddr {
        match self {
            Family::V4 => t.peer_ip.into(),
            Family::V6 => t.peer_ip6.into(),
        }
    }

    /// The address `xstack load` owns on the peer veth.
    pub fn load_ip(self) -> IpAddr {
        match self {
            Family::V4 => LOAD_IP.into(),
            Family::V6 => LOAD_IP6.into(),
        }
    }

    /// The server's `ip:port` (`[v6]:port` for IPv6).
    pub fn target(self, t: &Testbed, port: u16) -> SocketAddr {
        SocketAddr::new(self.stack_ip(t), port)
    }

    /// `http://ADDR:PORT/` of the server (IPv6 in brackets).
    pub fn url(self, t: &Testbed, port: u16) -> String {
        format!("http://{}/", self.target(t, port))
    }

    /// The stack address as a prefix of the testbed link (`/24`, `/64`).
    pub fn stack_cidr(self, t: &Testbed) -> String {
        match self {
            Family::V4 => format!("{}/24", t.stack_ip),
            Family::V6 => format!("{}/64", t.stack_ip6),
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// The value of `--family`: 4, 6 or both.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Families {
    /// IPv4 only (the default: what the benchmarks ran before IPv6).
    #[default]
    V4,
    /// IPv6 only.
    V6,
    /// IPv4 and IPv6, side by side.
    Both,
}

impl Families {
    /// The families to run, IPv4 first.
    pub fn list(self) -> &'static [Family] {
        match self {
            Families::V4 => &[Family::V4],
            Families::V6 => &[Family::V6],
            Families::Both => &[Family::V4, Family::V6],
        }
    }
}

impl FromStr for Families {
    type Err = String;

    fn from_str(s: &str) -> Result<Families, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "4" | "ipv4" | "v4" => Ok(Families::V4),
            "6" | "ipv6" | "v6" => Ok(Families::V6),
            "both" | "4,6" | "6,4" | "46" => Ok(Families::Both),
            other => Err(format!("--family {other}: use 4 (IPv4), 6 (IPv6) or both")),
        }
    }
}

impl fmt::Display for Families {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Families::V4 => "4",
            Families::V6 => "6",
            Families::Both => "both",
        })
    }
}

/// `value / base` as printed in a ratio line ("1.03×"), or "-" when either
/// side was not measured (0).
pub fn ratio(value: f64, base: f64) -> String {
    if value > 0.0 && base > 0.0 {
        format!("{:.2}×", value / base)
    } else {
        "-".into()
    }
}

/// Puts the stack address of `family` on the kernel interface of the
/// stack namespace (a Linux server's turn) or takes it off (`on` false).
/// For IPv6 the interface's IPv6 is switched on first (no DAD, no
/// autoconfiguration: the address is usable at once) and off again after,
/// as the testbed leaves it for the engine.
pub fn kernel_stack_addr(t: &Testbed, family: Family, on: bool) -> Result<()> {
    let cidr = family.stack_cidr(t);
    let (ns, dev) = (t.stack_ns.as_str(), t.stack_if.as_str());
    if family == Family::V6 && on {
        let conf = format!("/proc/sys/net/ipv6/conf/{dev}");
        let script = format!(
            "for k in autoconf accept_ra router_solicitations accept_dad dad_transmits; do echo 0 > {conf}/$k; done; echo 0 > {conf}/disable_ipv6"
        );
        sh(&["ip", "netns", "exec", ns, "sh", "-c", &script])?;
    }
    let op = if on { "add" } else { "del" };
    let mut args = vec!["ip", "-n", ns, "addr", op, cidr.as_str(), "dev", dev];
    if family == Family::V6 && on {
        args.push("nodad");
    }
    let r = sh(&args);
    if family == Family::V6 && !on {
        let conf = format!("/proc/sys/net/ipv6/conf/{dev}/disable_ipv6");
        sh(&[
            "ip",
            "netns",
            "exec",
            ns,
            "sh",
            "-c",
            &format!("echo 1 > {conf}"),
        ])?;
    }
    r
}

fn sh(args: &[&str]) -> Result<()> {
    let out = Command::new(args[0]).args(&args[1..]).output()?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn family_parses_4_6_and_both_and_refuses_others_in_one_line() {
        assert_eq!("4".parse::<Families>(), Ok(Families::V4));
        assert_eq!("6".parse::<Families>(), Ok(Families::V6));
        assert_eq!("both".parse::<Families>(), Ok(Families::Both));
        assert_eq!("IPv6".parse::<Families>(), Ok(Families::V6));
        assert_eq!(Families::default(), Families::V4);
        assert_eq!(Families::Both.list(), &[Family::V4, Family::V6]);
        let e = "5".parse::<Families>().unwrap_err();
        assert_eq!(e, "--family 5: use 4 (IPv4), 6 (IPv6) or both");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn addresses_of_each_family_on_the_testbed() {
        let t = Testbed::new("x").unwrap();
        assert_eq!(Family::V4.url(&t, 80), "http://198.18.0.2:80/");
        assert_eq!(Family::V6.url(&t, 80), "http://[2001:2::2]:80/");
        assert_eq!(Family::V6.target(&t, 80).to_string(), "[2001:2::2]:80");
        assert_eq!(Family::V6.load_ip().to_string(), "2001:2::3");
        assert_eq!(Family::V4.stack_cidr(&t), "198.18.0.2/24");
        assert_eq!(Family::V6.stack_cidr(&t), "2001:2::2/64");
        assert_eq!(Family::V6.peer_ip(&t).to_string(), "2001:2::1");
        assert_eq!(
            serde_json::to_string(&[Family::V4, Family::V6]).unwrap(),
            r#"["ipv4","ipv6"]"#
        );
    }

    #[test]
    fn ratio_is_dash_when_a_side_is_missing() {
        assert_eq!(ratio(95.0, 100.0), "0.95×");
        assert_eq!(ratio(0.0, 100.0), "-");
        assert_eq!(ratio(5.0, 0.0), "-");
    }
}
