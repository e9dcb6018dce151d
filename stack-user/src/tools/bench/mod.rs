//! Every benchmark, run from the `xstack` binary: `xstack bench` (xstack vs
//! the kernel: load generators and servers), `xstack bench synflood`,
//! `cookies`, `soak`, `concurrency` (kept-alive connections held, and
//! their memory, vs the kernel), `rx` (AF_XDP receive rate vs the kernel), `bulk` (bulk
//! TCP throughput vs the kernel), `engine` (alias `tcp-mem`: two TCP engines in memory) and
//! `timer` (the timing wheel vs a binary heap). `family` is the
//! `--family 4|6|both` the kernel comparisons take.

pub mod bulk;
pub mod concurrency;
pub mod cookies;
pub mod engine;
pub mod family;
pub mod kernel;
pub mod rx;
pub mod soak;
pub mod synflood;
pub mod timer;
pub mod victim;

/// `net.ipv4.tcp_tw_reuse` of a benchmark's Linux client namespace (with
/// [`CLIENT_PORT_RANGE`], as a load tester sets up the host it runs wrk
/// on): `connect()` may take over a port whose
/// last connection is in TIME_WAIT once that is over 1 s old, the
/// timestamps telling the new connection's segments from the old one's
/// (`tcp_tw_reuse=1`: Linux `tcp_twsk_unique`, safe by PAWS, RFC 7323 §5;
/// the namespace default 2 allows it on loopback only), and every
/// unprivileged port. A client that closes first keeps a TIME_WAIT socket
/// per connection for 60 s: at 2,000 connections/s the default range
/// (32768-60999, whose ports of `connect()`'s parity it searches first)
/// fills in about 7 s, and each `connect()` then walks thousands of
/// taken ports (`__inet_hash_connect`) on the client's core. Both
/// settings belong to the namespace: the client's, the same for every
/// system under test.
pub const CLIENT_TW_REUSE: u8 = 1;

/// The client namespace's `ip_local_port_range`: every unprivileged port.
pub const CLIENT_PORT_RANGE: (u16, u16) = (1024, 65535);

/// Ports in [`CLIENT_PORT_RANGE`]: the most connections a client namespace
/// holds open to one server address and port.
pub const CLIENT_PORTS: u32 = CLIENT_PORT_RANGE.1 as u32 - CLIENT_PORT_RANGE.0 as u32 + 1;

/// The client namespace's settings in words, for a benchmark's header.
pub fn client_words() -> String {
    let (lo, hi) = CLIENT_PORT_RANGE;
    format!("tcp_tw_reuse={CLIENT_TW_REUSE}, ip_local_port_range {lo}-{hi}")
}

/// Sets [`CLIENT_TW_REUSE`] and [`CLIENT_PORT_RANGE`] in network
/// namespace `ns` (both are per-namespace sysctls).
pub fn client_sysctls(ns: &str) -> anyhow::Result<()> {
    use anyhow::Context;
    let (lo, hi) = CLIENT_PORT_RANGE;
    for kv in [
        format!("net.ipv4.tcp_tw_reuse={CLIENT_TW_REUSE}"),
        format!("net.ipv4.ip_local_port_range={lo} {hi}"),
    ] {
        let out = crate::tools::testbed::netns_command(ns, "sysctl")
            .args(["-qw", &kv])
            .output()
            .with_context(|| format!("sysctl -w {kv} in {ns} (install procps)"))?;
        if !out.status.success() {
            anyhow::bail!(
                "sysctl -w {kv} in {ns}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    Ok(())
}

/// Writes `value` as pretty JSON to `OUT/name` (creating OUT); returns the
/// path. Every benchmark `cargo xtask bench` runs writes its figures so.
pub fn write_json(
    out: &std::path::Path,
    name: &str,
    value: &impl serde::Serialize,
) -> anyhow::Result<std::path::PathBuf> {
    use anyhow::Context;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let path = out.join(name);
    std::fs::write(&path, serde_json::to_string_pretty(value)? + "\n")
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_header_words_name_the_settings_the_namespace_gets() {
        assert_eq!(
            client_words(),
            "tcp_tw_reuse=1, ip_local_port_range 1024-65535"
        );
        assert_eq!(CLIENT_PORTS, 64_512);
    }
}
