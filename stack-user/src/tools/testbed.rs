//! The built-in testbed: two network namespaces joined by a veth pair.
//!
//! ```text
//!  netns xs-NAME-peer                     netns xs-NAME-stack
//!  ┌──────────────────────┐               ┌──────────────────────────┐
//!  │ Linux kernel         │               │ xstack (XDP + AF_XDP)    │
//!  │ xs-NAME-p            │◄── veth ────► │ xs-NAME-s                │
//!  │ 198.18.0.1/24        │               │ engine owns 198.18.0.2   │
//!  │ 2001:2::1/64         │               │         and 2001:2::2    │
//!  └──────────────────────┘               └──────────────────────────┘
//! ```
//! Dual-stack: addresses come from 198.18.0.0/15 (RFC 2544) and
//! 2001:2::/48 (RFC 5180); no default route exists in either namespace, so
//! nothing can leave. The stack's addresses are not configured on the
//! kernel interface: the engine answers ARP and neighbour discovery for
//! them. The peer's IPv6 runs without autoconfiguration, router
//! solicitations or duplicate address detection (no noise in captures, the
//! address usable at once); the stack side's kernel has IPv6 off.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    process::Command,
};

use serde::Serialize;
use thiserror::Error;

use crate::wire::ethernet::Mac;

/// Address of the Linux kernel in the peer namespace.
pub const PEER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// Address owned by the xstack engine in the stack namespace.
pub const STACK_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// Prefix length of the testbed link.
pub const PREFIX_LEN: u8 = 24;
/// IPv6 address of the Linux kernel in the peer namespace.
pub const PEER_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 1);
/// IPv6 address owned by the xstack engine in the stack namespace.
pub const STACK_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2);
/// IPv6 prefix length of the testbed link.
pub const PREFIX6_LEN: u8 = 64;
/// MAC of the peer veth ("xs" + 1).
pub const PEER_MAC: Mac = Mac([0x02, 0x78, 0x73, 0x00, 0x00, 0x01]);
/// MAC of the stack veth ("xs" + 2).
pub const STACK_MAC: Mac = Mac([0x02, 0x78, 0x73, 0x00, 0x00, 0x02]);

/// Errors of testbed management.
#[derive(Debug, Error)]
pub enum TestbedError {
    /// Bad name.
    #[error("testbed name {0:?} is invalid: use 1 to 10 characters from a-z, 0-9")]
    BadName(String),
    /// Bad queue count.
    #[error("--queues {0} is out of range: use 1 to 64")]
    BadQueues(u32),
    /// Bad number of load hosts.
    #[error("{0} load hosts is out of range: use 1 to 8")]
    BadHosts(u32),
    /// `ip` missing.
    #[error("the `ip` command (iproute2) is missing; install it with `apt-get install iproute2` or run `cargo xtask setup`")]
    NoIproute,
    /// Not root.
    #[error(
        "managing network namespaces needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN); run with sudo"
    )]
    NotPrivileged,
    /// A command failed.
    #[error("`{cmd}` failed: {stderr}")]
    Command {
        /// The command line.
        cmd: String,
        /// Its error output.
        stderr: String,
    },
}

/// Names and addresses of one testbed.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Testbed {
    /// Testbed name.
    pub name: String,
    /// Namespace where xstack runs.
    pub stack_ns: String,
    /// Namespace of the Linux peer.
    pub peer_ns: String,
    /// veth end in the stack namespace (XDP attaches here).
    pub stack_if: String,
    /// veth end in the peer namespace.
    pub peer_if: String,
    /// Kernel address in the peer namespace.
    pub peer_ip: Ipv4Addr,
    /// Address the engine owns.
    pub stack_ip: Ipv4Addr,
    /// Kernel IPv6 address in the peer namespace.
    pub peer_ip6: Ipv6Addr,
    /// IPv6 address the engine owns.
    pub stack_ip6: Ipv6Addr,
}

/// How the Linux peer's end of the veth is set up.
///
/// `default` is exactly what `ip link add type veth` and a Linux host give
/// (tx-checksum, TSO and GSO offloads on, GRO off, the kernel's queue
/// count): what a user's own setup looks like, and what every correctness
/// test must pass on. `tuned` is the testbed's former setup: checksums
/// computed in software on both ends, no TSO/GSO, GRO on at the peer (so
/// its NAPI runs and `XDP_TX` frames from the stack end are delivered).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PeerProfile {
    /// Kernel defaults: nothing set.
    #[default]
    Default,
    /// tx-checksum/TSO/GSO off on both ends, GRO on at the peer.
    Tuned,
}

impl std::fmt::Display for PeerProfile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PeerProfile::Default => "default",
            PeerProfile::Tuned => "tuned",
        })
    }
}

/// What `status` reports about one side.
#[derive(Clone, Debug, Serialize)]
pub struct SideStatus {
    /// Namespace.
    pub netns: String,
    /// Whether the namespace exists.
    pub exists: bool,
    /// Interface.
    pub iface: String,
    /// MAC address, when up.
    pub mac: Option<String>,
    /// Addresses configured on the kernel interface.
    pub kernel_addrs: Vec<String>,
    /// Number of rx queues.
    pub rx_queues: Option<u32>,
    /// Attached XDP program as "name (id N, mode)".
    pub xdp: Option<String>,
}

/// `testbed status` output.
#[derive(Clone, Debug, Serialize)]
pub struct Status {
    /// Testbed names.
    pub testbed: Testbed,
    /// The stack side.
    pub stack: SideStatus,
    /// The peer side.
    pub peer: SideStatus,
}

fn run(args: &[&str]) -> Result<String, TestbedError> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound && args[0] == "ip" {
                TestbedError::NoIproute
            } else {
                TestbedError::Command {
                    cmd: args.join(" "),
                    stderr: e.to_string(),
                }
            }
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        if stderr.contains("Operation not permitted") {
            return Err(TestbedError::NotPrivileged);
        }
        Err(TestbedError::Command {
            cmd: args.join(" "),
            stderr,
        })
    }
}

impl Testbed {
    /// The testbed called `name`.
    pub fn new(name: &str) -> Result<Testbed, TestbedError> {
        let ok = !name.is_empty()
            && name.len() <= 10
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if !ok {
            return Err(TestbedError::BadName(name.into()));
        }
        Ok(Testbed {
            name: name.into(),
            stack_ns: format!("xs-{name}-stack"),
            peer_ns: format!("xs-{name}-peer"),
            stack_if: format!("xs-{name}-s"),
            peer_if: format!("xs-{name}-p"),
            peer_ip: PEER_IP,
            stack_ip: STACK_IP,
            peer_ip6: PEER_IP6,
            stack_ip6: STACK_IP6,
        })
    }

    fn ns_exists(ns: &str) -> bool {
        std::path::Path::new("/run/netns").join(ns).exists()
    }

    fn link_exists(ns: &str, iface: &str) -> bool {
        Self::ns_exists(ns) && run(&["ip", "-n", ns, "link", "show", "dev", iface]).is_ok()
    }

    /// Creates the namespaces, the veth pair and the peer address, with the
    /// peer set up as `profile` says. Idempotent: what exists is kept, what
    /// is missing is made. With one queue and the `default` profile the
    /// veth is made with no queue count at all, as a user makes one (the
    /// kernel then allocates a queue per possible CPU, one of them active).
    pub fn up(&self, queues: u32, profile: PeerProfile) -> Result<(), TestbedError> {
        if queues == 0 || queues > 64 {
            return Err(TestbedError::BadQueues(queues));
        }
        let q = queues.to_string();
        let set_queues = queues > 1 || profile == PeerProfile::Tuned;
        for ns in [&self.stack_ns, &self.peer_ns] {
            if !Self::ns_exists(ns) {
                run(&["ip", "netns", "add", ns])?;
            }
            run(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
        }
        let have_stack = Self::link_exists(&self.stack_ns, &self.stack_if);
        let have_peer = Self::link_exists(&self.peer_ns, &self.peer_if);
        if have_stack != have_peer {
            // Half a pair (an interrupted `up`): start that link over.
            if have_stack {
                run(&["ip", "-n", &self.stack_ns, "link", "del", &self.stack_if])?;
            } else {
                run(&["ip", "-n", &self.peer_ns, "link", "del", &self.peer_if])?;
            }
        }
        if !(have_stack && have_peer) {
            let (sm, pm) = (STACK_MAC.to_string(), PEER_MAC.to_string());
            let qs: &[&str] = if set_queues {
                &["numtxqueues", &q, "numrxqueues", &q]
            } else {
                &[]
            };
            let mut args: Vec<&str> = vec![
                "ip",
                "link",
                "add",
                "name",
                &self.stack_if,
                "netns",
                &self.stack_ns,
                "address",
                &sm,
            ];
            args.extend_from_slice(qs);
            args.extend_from_slice(&[
                "type",
                "veth",
                "peer",
                "name",
                &self.peer_if,
                "netns",
                &self.peer_ns,
                "address",
                &pm,
            ]);
            args.extend_from_slice(qs);
            run(&args)?;
        }
        for (ns, iface) in [
            (&self.stack_ns, &self.stack_if),
            (&self.peer_ns, &self.peer_if),
        ] {
            // The stack side's kernel has no IPv6 (the engine owns the
            // address); the peer's has it without autoconfiguration, router
            // solicitations or DAD, which would add noise to every capture.
            let conf = format!("/proc/sys/net/ipv6/conf/{iface}");
            let script = if *ns == self.stack_ns {
                format!("echo 1 > {conf}/disable_ipv6")
            } else {
                format!(
                    "for k in autoconf accept_ra router_solicitations accept_dad dad_transmits; do echo 0 > {conf}/$k; done; echo 0 > {conf}/disable_ipv6"
                )
            };
            let _ = run(&["ip", "netns", "exec", ns, "sh", "-c", &script]);
            if profile == PeerProfile::Tuned {
                // Checksums computed by the kernel instead of left to a
                // "hardware" offload veth does not have; no TSO/GSO.
                let _ = run(&[
                    "ip", "netns", "exec", ns, "ethtool", "-K", iface, "tx", "off", "tso", "off",
                    "gso", "off",
                ]);
            }
            run(&["ip", "-n", ns, "link", "set", iface, "up"])?;
        }
        if profile == PeerProfile::Tuned {
            // XDP_TX on a veth end delivers through the peer's NAPI, which
            // veth only runs with GRO on (or an XDP program there).
            let _ = run(&[
                "ip",
                "netns",
                "exec",
                &self.peer_ns,
                "ethtool",
                "-K",
                &self.peer_if,
                "gro",
                "on",
            ]);
        }
        let cidr = format!("{}/{}", self.peer_ip, PREFIX_LEN);
        let addrs = run(&[
            "ip",
            "-n",
            &self.peer_ns,
            "-4",
            "-o",
            "addr",
            "show",
            "dev",
            &self.peer_if,
        ])?;
        if !addrs.contains(&format!("{} ", cidr)) && !addrs.contains(&cidr) {
            run(&[
                "ip",
                "-n",
                &self.peer_ns,
                "addr",
                "add",
                &cidr,
                "dev",
                &self.peer_if,
            ])?;
        }
        let cidr6 = format!("{}/{}", self.peer_ip6, PREFIX6_LEN);
        let addrs6 = run(&[
            "ip",
            "-n",
            &self.peer_ns,
            "-6",
            "-o",
            "addr",
            "show",
            "dev",
            &self.peer_if,
        ])?;
        if !addrs6.contains(&cidr6) {
            run(&[
                "ip",
                "-n",
                &self.peer_ns,
                "addr",
                "add",
                &cidr6,
                "dev",
                &self.peer_if,
                "nodad",
            ])?;
        }
        Ok(())
    }

    /// Removes everything `up` made. Idempotent.
    pub fn down(&self) -> Result<(), TestbedError> {
        // Deleting a namespace deletes its veth end, and with it the pair.
        let mut first_err = None;
        for ns in [&self.stack_ns, &self.peer_ns] {
            if Self::ns_exists(ns) {
                if let Err(e) = run(&["ip", "netns", "del", ns]) {
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// True when both namespaces exist.
    pub fn exists(&self) -> bool {
        Self::ns_exists(&self.stack_ns) && Self::ns_exists(&self.peer_ns)
    }

    fn side(&self, ns: &str, iface: &str) -> SideStatus {
        let exists = Self::ns_exists(ns);
        let mut st = SideStatus {
            netns: ns.into(),
            exists,
            iface: iface.into(),
            mac: None,
            kernel_addrs: Vec::new(),
            rx_queues: None,
            xdp: None,
        };
        if !exists {
            return st;
        }
        let Ok(out) = run(&[
            "ip", "-n", ns, "-details", "-json", "addr", "show", "dev", iface,
        ]) else {
            return st;
        };
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&out) else {
            return st;
        };
        let link = &v[0];
        st.mac = link["address"].as_str().map(str::to_string);
        st.rx_queues = link["num_rx_queues"].as_u64().map(|n| n as u32);
        if let Some(addrs) = link["addr_info"].as_array() {
            st.kernel_addrs = addrs
                .iter()
                .filter_map(|a| Some(format!("{}/{}", a["local"].as_str()?, a["prefixlen"])))
                .collect();
        }
        st.xdp = crate::datapath::xdp::parse_attached(link)
            .map(|p| format!("{} (id {}, {} mode)", p.name, p.id, p.mode));
        st
    }

    /// Names, addresses, MACs and attached programs.
    pub fn status(&self) -> Status {
        Status {
            testbed: self.clone(),
            stack: self.side(&self.stack_ns, &self.stack_if),
            peer: self.side(&self.peer_ns, &self.peer_if),
        }
    }

    /// A command that runs `program` in the peer namespace.
    pub fn peer_command(&self, program: &str) -> Command {
        netns_command(&self.peer_ns, program)
    }

    /// A command that runs `program` in the stack namespace.
    pub fn stack_command(&self, program: &str) -> Command {
        netns_command(&self.stack_ns, program)
    }
}

/// Runs `f` on a new thread that has joined network namespace `ns`
/// (`/run/netns/<ns>`); sockets it creates live in that namespace. A test
/// and benchmark helper: it panics when the namespace cannot be joined.
pub fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    use std::os::fd::AsRawFd;
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        // SAFETY: setns on a namespace fd, affecting only this thread.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("netns thread")
}

/// A command that runs `program` in network namespace `ns` with
/// `nsenter --net`: unlike `ip netns exec`, it keeps the mount namespace, so
/// /sys/fs/bpf (pins) stays the host's.
pub fn netns_command(ns: &str, program: &str) -> Command {
    let mut c = Command::new("nsenter");
    c.arg(format!("--net=/run/netns/{ns}"))
        .arg("--")
        .arg(program);
    c
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = &self.testbed;
        writeln!(f, "testbed {}", t.name)?;
        for (role, side, ip) in [
            (
                "stack",
                &self.stack,
                format!(
                    "{} {} (owned by the xstack engine)",
                    t.stack_ip, t.stack_ip6
                ),
            ),
            (
                "peer",
                &self.peer,
                format!("{} {} (Linux kernel)", t.peer_ip, t.peer_ip6),
            ),
        ] {
            if !side.exists {
                writeln!(f, "  {role:5} netns {:18} missing", side.netns)?;
                continue;
            }
            writeln!(
                f,
                "  {role:5} netns {:18} if {:12} mac {:17} rxq {:2} addr {}",
                side.netns,
                side.iface,
                side.mac.as_deref().unwrap_or("-"),
                side.rx_queues.map(|q| q.to_string()).unwrap_or("-".into()),
                ip
            )?;
            if !side.kernel_addrs.is_empty() {
                writeln!(
                    f,
                    "        kernel addresses: {}",
                    side.kernel_addrs.join(", ")
                )?;
            }
            writeln!(
                f,
                "        xdp: {}",
                side.xdp.as_deref().unwrap_or("none attached")
            )?;
        }
        Ok(())
    }
}

/// More hosts on a testbed's link, for loads from several machines: the
/// peer end of the veth becomes a port of a bridge in the peer namespace,
/// and each load host is a namespace of its own with a veth whose other
/// end is another port of that bridge. Every host's engine owns
/// 198.18.0.(21 + i) on its interface (not configured on the kernel
/// side); the server stays in the stack namespace.
///
/// ```text
///  xs-NAME-load0 (xl0-NAME) ─┐
///  xs-NAME-load1 (xl1-NAME) ─┼─ bridge xbr-NAME in xs-NAME-peer ─ xs-NAME-p ◄─veth─► xs-NAME-s (server)
/// ```
/// Removed when dropped (also on panic): the namespaces (and with them
/// the veths), then the bridge.
pub struct LoadHosts {
    /// The load hosts.
    pub hosts: Vec<LoadHost>,
    peer_ns: String,
    bridge: String,
}

/// One load host of [`LoadHosts`].
#[derive(Clone, Debug)]
pub struct LoadHost {
    /// Its namespace.
    pub ns: String,
    /// Its interface (XDP attaches here).
    pub iface: String,
    /// The address its engine owns.
    pub ip: Ipv4Addr,
}

impl Testbed {
    /// Adds `n` (1 to 8) load hosts behind a bridge (see [`LoadHosts`]).
    pub fn add_load_hosts(&self, n: u32) -> Result<LoadHosts, TestbedError> {
        if n == 0 || n > 8 {
            return Err(TestbedError::BadHosts(n));
        }
        let bridge = format!("xbr-{}", self.name);
        let mut made = LoadHosts {
            hosts: Vec::new(),
            peer_ns: self.peer_ns.clone(),
            bridge: bridge.clone(),
        };
        let p = &self.peer_ns;
        run(&["ip", "-n", p, "link", "add", &bridge, "type", "bridge"])?;
        run(&[
            "ip",
            "-n",
            p,
            "link",
            "set",
            &self.peer_if,
            "master",
            &bridge,
        ])?;
        run(&["ip", "-n", p, "link", "set", &bridge, "up"])?;
        for i in 0..n {
            let host = LoadHost {
                ns: format!("xs-{}-load{i}", self.name),
                iface: format!("xl{i}-{}", self.name),
                ip: Ipv4Addr::new(198, 18, 0, 21 + i as u8),
            };
            let port = format!("xb{i}-{}", self.name);
            run(&["ip", "netns", "add", &host.ns])?;
            made.hosts.push(host.clone());
            run(&["ip", "-n", &host.ns, "link", "set", "lo", "up"])?;
            run(&[
                "ip",
                "link",
                "add",
                "name",
                &host.iface,
                "netns",
                &host.ns,
                "type",
                "veth",
                "peer",
                "name",
                &port,
                "netns",
                p,
            ])?;
            let _ = run(&[
                "ip",
                "netns",
                "exec",
                &host.ns,
                "sh",
                "-c",
                &format!(
                    "echo 1 > /proc/sys/net/ipv6/conf/{}/disable_ipv6",
                    host.iface
                ),
            ]);
            run(&["ip", "-n", p, "link", "set", &port, "master", &bridge])?;
            run(&["ip", "-n", p, "link", "set", &port, "up"])?;
            run(&["ip", "-n", &host.ns, "link", "set", &host.iface, "up"])?;
        }
        Ok(made)
    }
}

impl Drop for LoadHosts {
    fn drop(&mut self) {
        for h in &self.hosts {
            if Testbed::ns_exists(&h.ns) {
                if let Err(e) = run(&["ip", "netns", "del", &h.ns]) {
                    eprintln!("load host {}: teardown failed: {e}", h.ns);
                }
            }
        }
        if Testbed::link_exists(&self.peer_ns, &self.bridge) {
            let _ = run(&["ip", "-n", &self.peer_ns, "link", "del", &self.bridge]);
        }
    }
}

/// Brings a testbed up and takes it down when dropped, on success, failure
/// and panic alike. Tests use unique names so they can run in parallel.
pub struct TestbedGuard {
    /// The testbed.
    pub testbed: Testbed,
}

impl TestbedGuard {
    /// Brings up testbed `name` with `queues` queues and the `tuned` peer
    /// (what the benchmarks compare on).
    pub fn up(name: &str, queues: u32) -> Result<TestbedGuard, TestbedError> {
        TestbedGuard::up_with(name, queues, PeerProfile::Tuned)
    }

    /// Brings up testbed `name` with `queues` queues and the peer set up as
    /// `profile` says.
    pub fn up_with(
        name: &str,
        queues: u32,
        profile: PeerProfile,
    ) -> Result<TestbedGuard, TestbedError> {
        let testbed = Testbed::new(name)?;
        let guard = TestbedGuard { testbed };
        guard.testbed.up(queues, profile)?;
        Ok(guard)
    }
}

impl Drop for TestbedGuard {
    fn drop(&mut self) {
        if let Err(e) = self.testbed.down() {
            eprintln!("testbed {}: teardown failed: {e}", self.testbed.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_interface_name_limits() {
        let t = Testbed::new("abcdefghij").unwrap();
        assert!(t.stack_if.len() <= 15 && t.peer_if.len() <= 15);
        assert!(Testbed::new("abcdefghijk").is_err());
        assert!(Testbed::new("Bad").is_err());
        assert!(Testbed::new("").is_err());
        assert!(Testbed::new("a/b").is_err());
    }

    #[test]
    fn addresses_are_in_the_benchmarking_range() {
        for ip in [PEER_IP, STACK_IP] {
            let o = ip.octets();
            assert!(
                o[0] == 198 && (o[1] & 0xfe) == 18,
                "{ip} outside 198.18.0.0/15"
            );
        }
        for ip in [PEER_IP6, STACK_IP6] {
            let s = ip.segments();
            assert!(
                s[0] == 0x2001 && s[1] == 2 && s[2] == 0,
                "{ip} outside 2001:2::/48"
            );
        }
    }
}
