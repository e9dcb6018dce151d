//! A client on xstack: `TcpStream::connect` from the stack's address to an
//! echo server (the kernel's, say), then `--bytes` of a fixed pseudo-random
//! stream written while the echo is read back and compared byte for byte;
//! half-close after the last byte, read to EOF.
//!
//! ```text
//! sudo target/release/examples/echo_client --iface veth0 --ip 198.18.0.2 --target 198.18.0.1:7
//! sudo target/release/examples/echo_client --iface veth0 --ip 2001:2::2 --target '[2001:2::1]:7'
//! ```
//!
//! Exits 0 when every echo was identical; prints one line per connection.

use std::{
    net::{IpAddr, SocketAddr},
    time::{Duration, Instant},
};

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use xstack::net::{Net, TcpStream};

#[derive(Parser, Debug)]
#[command(about = "Echo client on xstack: writes a stream, checks the echo")]
struct Args {
    /// Interface to attach to.
    #[arg(long)]
    iface: String,
    /// The stack's addresses, either family (comma-separated or repeated;
    /// not configured on the kernel interface): connections go from the
    /// one of the target's family.
    #[arg(long, value_delimiter = ',', required = true)]
    ip: Vec<IpAddr>,
    /// The echo server (`198.18.0.1:7`, `[2001:2::1]:7`).
    #[arg(long)]
    target: SocketAddr,
    /// Bytes to send on each connection (and expect back).
    #[arg(long, default_value_t = 64 << 20)]
    bytes: u64,
    /// Seed of the stream (connection `i` uses seed + i).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Connections, spread over the queues.
    #[arg(long, default_value_t = 1)]
    conns: u32,
    /// Queues (default: every rx queue of the interface).
    #[arg(long)]
    queues: Option<u32>,
    /// Local ports for the connections (`LO-HI`).
    #[arg(long, default_value = "40000-40999")]
    client_ports: String,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
}

/// Byte `i` of stream `seed`: SplitMix64 of each 8-byte word's index plus
/// the seed, little-endian (the tests' `xstack_tests::pattern`).
struct Pattern {
    seed: u64,
}

impl Pattern {
    fn fill(&self, off: u64, buf: &mut [u8]) {
        let mut k = 0;
        while k < buf.len() {
            let pos = off + k as u64;
            let i = pos / 8;
            let mut z = self
                .seed
                .wrapping_add(i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            let word = (z ^ (z >> 31)).to_le_bytes();
            let from = (pos % 8) as usize;
            let n = (8 - from).min(buf.len() - k);
            buf[k..k + n].copy_from_slice(&word[from..from + n]);
            k += n;
        }
    }
}

/// One connection: write the stream while reading the echo; `Ok` when the
/// echo was exactly the stream.
async fn one(net: Net, target: SocketAddr, seed: u64, total: u64) -> Result<(), String> {
    let s = TcpStream::connect(&net, target)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let (mut r, mut w) = s.into_split();
    let p = Pattern { seed };
    let writer = tokio::task::spawn_local(async move {
        let p = Pattern { seed };
        let mut buf = vec![0u8; 256 << 10];
        let mut off = 0u64;
        while off < total {
            let n = (total - off).min(buf.len() as u64) as usize;
            p.fill(off, &mut buf[..n]);
            w.write_all(&buf[..n])
                .await
                .map_err(|e| format!("write: {e} after {off} bytes"))?;
            off += n as u64;
        }
        w.shutdown().await.map_err(|e| format!("shutdown: {e}"))?;
        Ok::<_, String>(w)
    });
    let (mut buf, mut want) = (vec![0u8; 64 << 10], vec![0u8; 64 << 10]);
    let mut got = 0u64;
    loop {
        let n = r
            .read(&mut buf)
            .await
            .map_err(|e| format!("read: {e} after {got} bytes"))?;
        if n == 0 {
            break;
        }
        p.fill(got, &mut want[..n]);
        if buf[..n] != want[..n] {
            return Err(format!("echo differs in bytes {got}..{}", got + n as u64));
        }
        got += n as u64;
    }
    let _w = writer.await.map_err(|e| format!("writer: {e}"))??;
    if got != total {
        return Err(format!("echo ended after {got} of {total} bytes"));
    }
    Ok(())
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();
    let Some((lo, hi)) = args
        .client_ports
        .split_once('-')
        .and_then(|(a, b)| Some((a.parse::<u16>().ok()?, b.parse::<u16>().ok()?)))
    else {
        eprintln!("echo_client: --client-ports wants LO-HI, e.g. 40000-40999");
        std::process::exit(2);
    };
    let mut b = xstack::rt::Builder::new()
        .iface(&args.iface)
        .client_ports(lo, hi);
    for ip in &args.ip {
        b = b.ip(*ip);
    }
    if let Some(q) = args.queues {
        b = b.queues(q);
    }
    let rt = match b.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("echo_client: {e}");
            std::process::exit(1);
        }
    };
    let queues = rt.queues();
    let (conns, target, bytes, seed) = (args.conns, args.target, args.bytes, args.seed);
    let limit = Duration::from_secs(args.timeout);
    let failed = std::sync::atomic::AtomicU32::new(0);
    let r = rt.run(|net| {
        let failed = &failed;
        async move {
            let start = Instant::now();
            let mine: Vec<u32> = (0..conns).filter(|i| i % queues == net.queue()).collect();
            let tasks: Vec<_> = mine
                .iter()
                .map(|&i| {
                    let net = net.clone();
                    let f = one(net, target, seed + u64::from(i), bytes);
                    (i, tokio::task::spawn_local(tokio::time::timeout(limit, f)))
                })
                .collect();
            for (i, t) in tasks {
                let r = match t.await {
                    Ok(Ok(r)) => r,
                    Ok(Err(_)) => Err(format!("no end within {limit:?}")),
                    Err(e) => Err(format!("task: {e}")),
                };
                match r {
                    Ok(()) => println!(
                        "echo_client: connection {i}: {bytes} bytes each way, echo identical ({:.2} s)",
                        start.elapsed().as_secs_f64()
                    ),
                    Err(e) => {
                        failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        println!("echo_client: connection {i}: {e}");
                    }
                }
            }
            let (retrans, rtos, no_buf, held, held_drop) = net.with_interface(|i| {
                let (t, s) = (i.tcp_stats(), i.stats());
                (t.retransmits, t.rto_timeouts, s.tx_no_buffer, s.tx_held_for_arp, s.tx_no_neighbor)
            });
            let d = net.datapath_counters();
            eprintln!(
                "echo_client: queue {}: retransmits {retrans}, RTOs {rtos}, tx_no_buffer {no_buf}, held for ARP {held} (dropped {held_drop}); {:?}; {:?}",
                net.queue(), d.kernel, d.steer
            );
            Ok(())
        }
    });
    if let Err(e) = r {
        eprintln!("echo_client: {e}");
        std::process::exit(1);
    }
    if failed.into_inner() > 0 {
        std::process::exit(1);
    }
}
