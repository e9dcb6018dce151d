//! A fresh network namespace with nothing in it but a veth pair whose both
//! ends stay inside (`xg0` ↔ `xg1`, up, no addresses, IPv6 off so the
//! kernel sends nothing of its own) and no routes: whatever a command run
//! there sends cannot leave it, and the pair's counters show whether it
//! sent anything at all. Removed when the guard drops (also on panic).

use std::process::{Command, Output};

use crate::unique_name;

/// An empty namespace, deleted on drop.
pub struct EmptyNetns {
    /// Its name (`xs-` + a unique suffix).
    pub name: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl EmptyNetns {
    /// Creates it (needs root).
    pub fn new(prefix: char) -> EmptyNetns {
        let name = format!("xs-{}", unique_name(prefix));
        ip(&["netns", "add", &name]);
        let ns = EmptyNetns { name };
        let n = ns.name.as_str();
        for key in ["all", "default"] {
            ip(&[
                "netns",
                "exec",
                n,
                "sysctl",
                "-qw",
                &format!("net.ipv6.conf.{key}.disable_ipv6=1"),
            ]);
        }
        ip(&[
            "-n", n, "link", "add", "xg0", "type", "veth", "peer", "name", "xg1",
        ]);
        ip(&["-n", n, "link", "set", "xg0", "up"]);
        ip(&["-n", n, "link", "set", "xg1", "up"]);
        ns
    }

    /// Runs `xstack ARGS` in the namespace and waits for it.
    pub fn xstack(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .arg(crate::xstack_bin())
            .args(args)
            .output()
            .expect("run xstack in the namespace")
    }

    /// Packets `xg0` sent plus packets `xg1` received, and every packet
    /// the namespace's loopback saw.
    pub fn packets(&self) -> u64 {
        let count = |dev: &str, dir: &str| {
            let out = Command::new("ip")
                .args(["-n", &self.name, "-s", "-j", "link", "show", "dev", dev])
                .output()
                .expect("ip -s link");
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            v.pointer(&format!("/0/stats64/{dir}/packets"))
                .and_then(|x| x.as_u64())
                .expect("a packet counter")
        };
        count("xg0", "tx") + count("xg1", "rx") + count("lo", "tx")
    }
}

impl Drop for EmptyNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}
