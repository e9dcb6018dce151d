//! RSS-aware source ports: on a NIC with receive-side scaling, each
//! queue's engine picks only (address, port) pairs whose *replies* the NIC
//! hashes to that queue, so every reply arrives where its connection
//! lives and nothing is handed between queues. The reply is what the NIC
//! hashes: source = the target's address and port, destination = ours
//! (Toeplitz over the key, then the indirection table; see
//! [`crate::wire::rss`]).
//!
//! Where the driver has no RSS (veth: `EOPNOTSUPP`), or one that cannot
//! be predicted (another hash function, a symmetric transform, ports not
//! hashed), the software mix and the hand-off between queues stay
//! ([`crate::datapath::steer`]), and one log line says so.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use anyhow::{bail, Result};

use crate::{tcp::Sharding, wire::rss::RssTable};

/// The (address, port) pairs of `addrs` × `lo..=hi` whose replies from
/// `target` the NIC puts on each of queues `0..queues`. A queue with none
/// is an error that says how to fix it: its engine could open nothing.
///
/// One Toeplitz hash per address and per port (the hash is linear: the
/// hash of a tuple is the XOR of its parts' hashes), so a /24 times the
/// whole port range costs a table lookup per pair.
pub(super) fn plan(
    iface: &str,
    table: &RssTable,
    queues: u32,
    addrs: &[IpAddr],
    target: SocketAddr,
    (lo, hi): (u16, u16),
) -> Result<Vec<u64>> {
    let mut per_queue = vec![0u64; queues as usize];
    let of_port: Vec<u32> = (lo..=hi).map(|p| port_hash(table, target, p)).collect();
    for &a in addrs {
        let (input, n) = crate::wire::rss::tcp_input(target.ip(), a, target.port(), 0);
        let base = table.hash(&input[..n]);
        for h in &of_port {
            if let Some(c) = per_queue.get_mut(table.queue_of_hash(base ^ h) as usize) {
                *c += 1;
            }
        }
    }
    if let Some(q) = per_queue.iter().position(|&n| n == 0) {
        bail!(
            "queue {q} gets none of the {} local (address, port) pairs: the RSS indirection table of {iface} sends all their replies to other queues; spread it over the queues (ethtool -X {iface} equal {queues}), widen --ports or --ip, or pass fewer --queues",
            addrs.len() as u64 * (u64::from(hi) - u64::from(lo) + 1),
        );
    }
    Ok(per_queue)
}

/// The hash of the destination port `port` alone (every other input byte
/// zero) in a reply from `target`.
fn port_hash(table: &RssTable, target: SocketAddr, port: u16) -> u32 {
    let zero = match target.ip() {
        IpAddr::V4(_) => IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
    };
    let (input, n) = crate::wire::rss::tcp_input(zero, zero, 0, port);
    table.hash(&input[..n])
}

/// How `queues` engines on `iface` share the 4-tuples of a load from
/// `addrs` × `ports` to `target`: by the NIC's RSS when it has a usable
/// one (the error when a queue would get no pair), else the software mix.
/// Logs one line saying which and why.
pub(super) fn sharding(
    iface: &str,
    queues: u32,
    addrs: &[IpAddr],
    target: SocketAddr,
    ports: (u16, u16),
) -> Result<Sharding> {
    let table = crate::runtime::sys::rss(iface)
        .map_err(|e| e.to_string())
        .and_then(|s| s.table(target.is_ipv6()));
    let table = match table {
        Ok(t) => t,
        Err(why) => {
            let driver = crate::runtime::sys::interface(iface)
                .map(|i| i.driver)
                .unwrap_or_default();
            log::info!(
                "{iface} (driver {}): no usable RSS ({why}): local ports by the software hash; a reply on another queue is handed to its engine in software",
                if driver.is_empty() { "?" } else { &driver }
            );
            return Ok(Sharding::Mix(queues));
        }
    };
    let per_queue = plan(iface, &table, queues, addrs, target, ports)?;
    log::info!(
        "{iface}: RSS (Toeplitz, {}-byte key, {}-entry indirection table): each queue's engine picks local ports whose replies the NIC puts on its own queue (pairs per queue: {per_queue:?})",
        table.key().len(),
        table.indirection().len()
    );
    Ok(Sharding::Rss(Arc::new(table)))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::net::Ipv4Addr;

    use super::*;
    use crate::tcp::{TcpConfig, TcpEngine, TcpError};
    use crate::time::Instant;
    use crate::tools::load::driver::Sources;
    use crate::wire::rss::VERIFICATION_KEY;

    fn table(queues: u32) -> Arc<RssTable> {
        // What `ethtool -X IF equal N` writes.
        Arc::new(RssTable::new(&VERIFICATION_KEY, (0..128).map(|i| i % queues).collect()).unwrap())
    }

    fn addrs4(n: u8) -> Vec<IpAddr> {
        (1..=n)
            .map(|i| IpAddr::V4(Ipv4Addr::new(198, 18, 1, i)))
            .collect()
    }

    fn addrs6(n: u8) -> Vec<IpAddr> {
        (1..=n)
            .map(|i| IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 2, 0, 1, 0, 0, 0, i.into())))
            .collect()
    }

    #[test]
    fn rss_port_choice_yields_only_pairs_whose_replies_reach_the_engines_queue_and_covers_them_all()
    {
        let targets: [SocketAddr; 2] = [
            "198.18.0.2:80".parse().unwrap(),
            "[2001:2::2]:443".parse().unwrap(),
        ];
        for (addrs, target) in [(addrs4(4), targets[0]), (addrs6(4), targets[1])] {
            let rss = table(3);
            let ports = (40000, 40299);
            let planned = plan("eth0", &rss, 3, &addrs, target, ports).unwrap();
            assert_eq!(planned.iter().sum::<u64>(), 4 * 300);
            let mut all = HashSet::new();
            for q in 0..3u32 {
                let mut tcp = TcpEngine::new(
                    TcpConfig {
                        ip_local_port_range: ports,
                        ..Default::default()
                    },
                    [q as u8; 16],
                );
                tcp.set_sharding(q, Sharding::Rss(rss.clone()));
                let mut src = Sources::new(addrs.clone());
                let mut n = 0u64;
                // Every pair the engine may use, then AddrInUse (bounded:
                // at most the range once per address).
                loop {
                    match src.open(|a| tcp.connect(Instant::ZERO, a, 0, target.ip(), target.port()))
                    {
                        Ok(c) => {
                            let t = tcp.tcb(c).unwrap().tuple;
                            // The reply: from the target to us.
                            assert_eq!(
                                rss.queue(t.remote_addr, t.local_addr, t.remote_port, t.local_port),
                                q,
                                "{t:?}"
                            );
                            assert!(all.insert((t.local_addr, t.local_port)), "{t:?} twice");
                            n += 1;
                        }
                        Err(e) => {
                            assert_eq!(e, TcpError::AddrInUse);
                            break;
                        }
                    }
                    assert!(n <= 4 * 300);
                }
                // The engine reaches every pair the plan gives its queue,
                // about a third of them.
                assert_eq!(n, planned[q as usize], "queue {q}");
                assert!((300..=500).contains(&n), "{planned:?}");
            }
            // Between them the queues use every pair once.
            assert_eq!(all.len(), 4 * 300);
        }
    }

    #[test]
    fn a_queue_the_rss_table_gives_no_port_is_a_clear_error() {
        // Everything to queue 0, two engines: queue 1 could open nothing.
        let rss = RssTable::new(&VERIFICATION_KEY, vec![0; 128]).unwrap();
        let e = plan(
            "eth0",
            &rss,
            2,
            &addrs4(2),
            "198.18.0.2:80".parse().unwrap(),
            (40000, 40099),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("queue 1 gets none of the 200"), "{e}");
        assert!(e.contains("ethtool -X eth0 equal 2"), "{e}");
        // One engine on queue 0 is fine.
        let one = plan(
            "eth0",
            &rss,
            1,
            &addrs4(2),
            "198.18.0.2:80".parse().unwrap(),
            (40000, 40099),
        )
        .unwrap();
        assert_eq!(one, vec![200]);
    }

    #[test]
    fn without_rss_the_engines_keep_the_software_mix() {
        // The loopback device has no RSS, as veth.
        let s = sharding(
            "lo",
            2,
            &addrs4(1),
            "198.18.0.2:80".parse().unwrap(),
            (40000, 40099),
        )
        .unwrap();
        assert!(matches!(s, Sharding::Mix(2)), "{s:?}");
    }
}
