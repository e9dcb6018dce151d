//! The socket API on two engines joined in memory ([`mem::Pair`]), under a
//! current-thread tokio runtime with paused (virtual) time: every timer
//! the engines arm runs without waiting for real time.

use std::{
    cell::Cell,
    future::Future,
    io::ErrorKind,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4},
    rc::Rc,
    time::Duration,
};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::listener::listen_addrs;
use super::mem::{Pair, ADDR6_A, ADDR6_B, ADDR_A, ADDR_B};
use super::*;
use crate::tcp::TcpConfig;

/// Runs `f` with a fresh pair and its driver on a LocalSet, with paused
/// time and a virtual-time bound.
fn run<F, Fut>(tcp: TcpConfig, f: F)
where
    F: FnOnce(Rc<Pair>) -> Fut,
    Fut: Future<Output = ()>,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let pair = Rc::new(Pair::new(tcp));
        let driver = pair.spawn();
        tokio::time::timeout(Duration::from_secs(600), f(pair))
            .await
            .expect("test bounded in virtual time");
        driver.abort();
    });
}

const PORT: u16 = 8080;

fn server_addr() -> SocketAddrV4 {
    SocketAddrV4::new(ADDR_B, PORT)
}

/// A connected (client on a, server on b) stream pair.
async fn connected(p: &Pair) -> (TcpStream, TcpStream) {
    let l = TcpListener::bind(&p.b, PORT).await.expect("bind");
    let (c, s) = tokio::join!(TcpStream::connect(&p.a, server_addr()), l.accept());
    (c.expect("connect"), s.expect("accept").0)
}

#[test]
fn connect_accept_echo_and_addresses() {
    run(TcpConfig::default(), |p| async move {
        let l = TcpListener::bind(&p.b, PORT).await.unwrap();
        let server = tokio::task::spawn_local(async move {
            let (mut s, peer) = l.accept().await.unwrap();
            assert_eq!(s.peer_addr().unwrap(), peer);
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(&buf).await.unwrap();
        });
        let mut c = TcpStream::connect(&p.a, server_addr()).await.unwrap();
        assert_eq!(c.peer_addr().unwrap(), server_addr().into());
        assert_eq!(c.local_addr().unwrap().ip(), super::mem::ADDR_A);
        c.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 5];
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello");
        server.await.unwrap();
    });
}

#[test]
fn half_close_by_client_server_reads_eof_and_still_writes() {
    run(TcpConfig::default(), |p| async move {
        let (mut c, mut s) = connected(&p).await;
        c.write_all(b"request").await.unwrap();
        c.shutdown().await.unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"request");
        s.write_all(b"response after FIN").await.unwrap();
        s.shutdown().await.unwrap();
        let mut back = Vec::new();
        c.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"response after FIN");
        // Writing after our own shutdown is EPIPE.
        let e = c.write_all(b"x").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BrokenPipe);
    });
}

#[test]
fn half_close_by_server_client_reads_eof_and_still_writes() {
    run(TcpConfig::default(), |p| async move {
        let (mut c, mut s) = connected(&p).await;
        s.write_all(b"banner").await.unwrap();
        s.shutdown().await.unwrap();
        let mut got = Vec::new();
        c.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"banner");
        c.write_all(b"late request").await.unwrap();
        c.shutdown().await.unwrap();
        let mut back = Vec::new();
        s.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"late request");
    });
}

#[test]
fn linger_zero_close_resets_peer_read_with_connection_reset() {
    run(TcpConfig::default(), |p| async move {
        let (c, mut s) = connected(&p).await;
        c.set_linger(Some(Duration::ZERO)).unwrap();
        drop(c);
        let mut buf = [0u8; 16];
        let e = s.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionReset);
    });
}

#[test]
fn write_after_peer_reset_is_broken_pipe() {
    run(TcpConfig::default(), |p| async move {
        let (c, mut s) = connected(&p).await;
        c.abort().unwrap();
        // Wait for the RST to arrive.
        let mut buf = [0u8; 16];
        let _ = s.read(&mut buf).await;
        let e = s.write_all(b"anyone?").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BrokenPipe);
    });
}

#[test]
fn connect_to_port_without_listener_is_refused() {
    run(TcpConfig::default(), |p| async move {
        let e = TcpStream::connect(&p.a, SocketAddrV4::new(ADDR_B, 9))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionRefused);
    });
}

#[test]
fn bind_twice_on_one_queue_is_addr_in_use_and_free_after_drop() {
    run(TcpConfig::default(), |p| async move {
        let l = TcpListener::bind(&p.b, PORT).await.unwrap();
        let e = TcpListener::bind(&p.b, PORT).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AddrInUse);
        drop(l);
        TcpListener::bind(&p.b, PORT).await.unwrap();
    });
}

#[test]
fn into_split_halves_read_and_write_in_separate_tasks() {
    run(TcpConfig::default(), |p| async move {
        let (c, mut s) = connected(&p).await;
        let (mut r, mut w) = c.into_split();
        let writer = tokio::task::spawn_local(async move {
            for i in 0..100u8 {
                w.write_all(&[i; 1000]).await.unwrap();
            }
            // Dropping the write half sends FIN.
        });
        let echo = tokio::task::spawn_local(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                s.write_all(&buf[..n]).await.unwrap();
            }
            s.shutdown().await.unwrap();
        });
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap();
        writer.await.unwrap();
        echo.await.unwrap();
        assert_eq!(got.len(), 100_000);
        assert!(got
            .chunks(1000)
            .enumerate()
            .all(|(i, c)| c == [i as u8; 1000]));
    });
}

/// A deterministic byte pattern, position-dependent so that a reordered or
/// duplicated chunk is caught.
fn pattern(off: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        let x = off + i as u64;
        *b = (x ^ (x >> 8) ^ (x >> 16)) as u8;
    }
}

#[test]
fn transfer_64mib_to_slow_reader_is_exact_with_bounded_memory() {
    const TOTAL: u64 = 64 << 20;
    let tcp = TcpConfig::default();
    let bound = u64::from(tcp.tcp_wmem) + u64::from(tcp.tcp_rmem);
    run(tcp, |p| async move {
        let (mut c, mut s) = connected(&p).await;
        let written = Rc::new(Cell::new(0u64));
        let read = Rc::new(Cell::new(0u64));
        let max_gap = Rc::new(Cell::new(0u64));
        let (w2, r2, g2) = (written.clone(), read.clone(), max_gap.clone());
        let writer = tokio::task::spawn_local(async move {
            let mut buf = vec![0u8; 256 * 1024];
            while w2.get() < TOTAL {
                let n = (TOTAL - w2.get()).min(buf.len() as u64) as usize;
                pattern(w2.get(), &mut buf[..n]);
                let k = c.write(&buf[..n]).await.unwrap();
                w2.set(w2.get() + k as u64);
                g2.set(g2.get().max(w2.get() - r2.get()));
            }
            c.shutdown().await.unwrap();
            c
        });
        let mut buf = vec![0u8; 64 * 1024];
        let mut want = vec![0u8; 64 * 1024];
        loop {
            // A slow reader: 1 ms (virtual) per 64 KiB.
            tokio::time::sleep(Duration::from_millis(1)).await;
            let n = s.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            pattern(read.get(), &mut want[..n]);
            assert!(buf[..n] == want[..n], "data differs at {}", read.get());
            read.set(read.get() + n as u64);
        }
        let _c = writer.await.unwrap();
        assert_eq!(read.get(), TOTAL);
        // Backpressure: the writer was never ahead of the reader by more
        // than the two buffers (send + receive), and the link never held
        // more than the windows allow.
        assert!(
            max_gap.get() <= bound + 256 * 1024,
            "writer ran {} bytes ahead (bound {bound})",
            max_gap.get()
        );
        assert!(
            p.max_in_flight() < 4096,
            "{} frames in flight",
            p.max_in_flight()
        );
    });
}

#[test]
fn many_concurrent_streams_on_one_queue_echo_exactly() {
    const STREAMS: usize = 200;
    const BYTES: usize = 64 * 1024;
    run(TcpConfig::default(), |p| async move {
        let l = TcpListener::bind(&p.b, PORT).await.unwrap();
        let server = tokio::task::spawn_local(async move {
            let mut tasks = Vec::new();
            for _ in 0..STREAMS {
                let (s, _) = l.accept().await.unwrap();
                tasks.push(tokio::task::spawn_local(async move {
                    let (mut r, mut w) = s.into_split();
                    tokio::io::copy(&mut r, &mut w).await.unwrap();
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        });
        let mut clients = Vec::new();
        for i in 0..STREAMS {
            let net = p.a.clone();
            clients.push(tokio::task::spawn_local(async move {
                let s = TcpStream::connect(&net, server_addr()).await.unwrap();
                let (mut r, mut w) = s.into_split();
                let data: Vec<u8> = (0..BYTES).map(|j| (i * 7 + j) as u8).collect();
                let expect = data.clone();
                let send = tokio::task::spawn_local(async move {
                    w.write_all(&data).await.unwrap();
                    w.shutdown().await.unwrap();
                    w
                });
                let mut got = Vec::new();
                r.read_to_end(&mut got).await.unwrap();
                let _w = send.await.unwrap();
                assert!(got == expect, "stream {i} differs");
            }));
        }
        for c in clients {
            c.await.unwrap();
        }
        server.await.unwrap();
        assert_eq!(p.b.connection_count(), 0);
    });
}

#[test]
fn connect_to_vanished_peer_times_out_after_syn_retries() {
    let tcp = TcpConfig {
        tcp_syn_retries: 3,
        ..TcpConfig::default()
    };
    run(tcp, |p| async move {
        p.set_link_up(false);
        let start = tokio::time::Instant::now();
        let e = TcpStream::connect(&p.a, server_addr()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut);
        // 1 + 2 + 4 + 8 s of RTO backoff (virtual time).
        assert!(
            start.elapsed() >= Duration::from_secs(7),
            "{:?}",
            start.elapsed()
        );
    });
}

#[test]
fn keepalive_unanswered_probes_time_out_the_reader() {
    run(TcpConfig::default(), |p| async move {
        let (c, mut s) = connected(&p).await;
        s.set_keepalive(Some(crate::tcp::KeepaliveConfig {
            time: Duration::from_secs(30),
            intvl: Duration::from_secs(5),
            probes: 3,
        }))
        .unwrap();
        p.set_link_up(false);
        let start = tokio::time::Instant::now();
        let mut buf = [0u8; 16];
        let e = s.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut);
        let took = start.elapsed();
        // TCP_KEEPIDLE + TCP_KEEPCNT * TCP_KEEPINTVL, as Linux.
        assert!(
            took >= Duration::from_secs(44) && took <= Duration::from_secs(50),
            "{took:?}"
        );
        drop(c);
    });
}

// --- IPv6 and both families -------------------------------------------

fn server_addr6() -> SocketAddr {
    SocketAddr::new(IpAddr::V6(ADDR6_B), PORT)
}

/// A connected pair over IPv6 (client on a, server on b, listener on the
/// port alone: both families).
async fn connected6(p: &Pair) -> (TcpStream, TcpStream) {
    let l = TcpListener::bind(&p.b, PORT).await.expect("bind");
    let (c, s) = tokio::join!(TcpStream::connect(&p.a, server_addr6()), l.accept());
    (c.expect("connect"), s.expect("accept").0)
}

#[test]
fn connect_accept_echo_and_addresses_over_ipv6() {
    run(TcpConfig::default(), |p| async move {
        let l = TcpListener::bind(&p.b, server_addr6()).await.unwrap();
        assert_eq!(l.local_addr().unwrap(), server_addr6());
        let server = tokio::task::spawn_local(async move {
            let (mut s, peer) = l.accept().await.unwrap();
            assert_eq!(s.peer_addr().unwrap(), peer);
            assert_eq!(peer.ip(), IpAddr::V6(ADDR6_A));
            assert_eq!(s.local_addr().unwrap(), server_addr6());
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(&buf).await.unwrap();
            peer
        });
        let mut c = TcpStream::connect(&p.a, server_addr6()).await.unwrap();
        assert_eq!(c.peer_addr().unwrap(), server_addr6());
        assert_eq!(c.local_addr().unwrap().ip(), IpAddr::V6(ADDR6_A));
        c.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 5];
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello");
        let peer = server.await.unwrap();
        assert_eq!(peer, c.local_addr().unwrap());
    });
}

#[test]
fn a_listener_on_a_port_alone_accepts_both_families() {
    run(TcpConfig::default(), |p| async move {
        let l = TcpListener::bind(&p.b, PORT).await.unwrap();
        assert_eq!(
            l.local_addr().unwrap(),
            SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), PORT)
        );
        let c4 = TcpStream::connect(&p.a, server_addr()).await.unwrap();
        let (s4, peer4) = l.accept().await.unwrap();
        let c6 = TcpStream::connect(&p.a, server_addr6()).await.unwrap();
        let (s6, peer6) = l.accept().await.unwrap();
        assert_eq!(peer4, c4.local_addr().unwrap());
        assert_eq!(peer4.ip(), IpAddr::V4(ADDR_A));
        assert_eq!(s4.local_addr().unwrap(), SocketAddr::V4(server_addr()));
        assert_eq!(peer6, c6.local_addr().unwrap());
        assert_eq!(peer6.ip(), IpAddr::V6(ADDR6_A));
        assert_eq!(s6.local_addr().unwrap(), server_addr6());
    });
}

#[test]
fn half_close_by_client_over_ipv6_server_reads_eof_and_still_writes() {
    run(TcpConfig::default(), |p| async move {
        let (mut c, mut s) = connected6(&p).await;
        let request: Vec<u8> = (0..300_000u32).map(|i| (i * 7) as u8).collect();
        c.write_all(&request).await.unwrap();
        c.shutdown().await.unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        assert!(got == request, "{} bytes, not the request", got.len());
        s.write_all(b"response after FIN").await.unwrap();
        s.shutdown().await.unwrap();
        let mut back = Vec::new();
        c.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"response after FIN");
        let e = c.write_all(b"x").await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::BrokenPipe);
    });
}

#[test]
fn connect_over_ipv6_to_port_without_listener_is_refused() {
    run(TcpConfig::default(), |p| async move {
        let e = TcpStream::connect(&p.a, (IpAddr::V6(ADDR6_B), 9))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionRefused);
    });
}

#[test]
fn a_listener_on_one_family_leaves_the_other_refused() {
    run(TcpConfig::default(), |p| async move {
        let l6 = TcpListener::bind(&p.b, server_addr6()).await.unwrap();
        let e = TcpStream::connect(&p.a, server_addr()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionRefused);
        // The IPv4 side of the port is still free for another listener.
        let l4 = TcpListener::bind(&p.b, (Ipv4Addr::UNSPECIFIED, PORT))
            .await
            .unwrap();
        assert_eq!(l4.local_addr().unwrap(), SocketAddr::V4(server_addr()));
        // A port-alone bind overlaps both.
        let e = TcpListener::bind(&p.b, PORT).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AddrInUse);
        let (c, s) = tokio::join!(TcpStream::connect(&p.a, server_addr()), l4.accept());
        assert!(c.is_ok() && s.is_ok());
        let (c, s) = tokio::join!(TcpStream::connect(&p.a, server_addr6()), l6.accept());
        assert_eq!(s.unwrap().1, c.unwrap().local_addr().unwrap());
    });
}

#[test]
fn bind_to_an_address_the_stack_does_not_own_is_addr_not_available() {
    run(TcpConfig::default(), |p| async move {
        let e = TcpListener::bind(&p.b, SocketAddr::new(IpAddr::V6(ADDR6_A), PORT))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AddrNotAvailable);
        assert!(e.to_string().contains("2001:2::1"), "{e}");
    });
}

#[test]
fn connect_to_an_ipv4_mapped_ipv6_address_goes_over_ipv4() {
    run(TcpConfig::default(), |p| async move {
        let l = TcpListener::bind(&p.b, PORT).await.unwrap();
        let mapped = SocketAddr::new(IpAddr::V6(ADDR_B.to_ipv6_mapped()), PORT);
        let (c, s) = tokio::join!(TcpStream::connect(&p.a, mapped), l.accept());
        let c = c.unwrap();
        assert_eq!(c.peer_addr().unwrap(), SocketAddr::V4(server_addr()));
        assert_eq!(s.unwrap().1.ip(), IpAddr::V4(ADDR_A));
    });
}

#[test]
fn listen_addrs_of_a_bind_by_family_and_address() {
    let v4 = IpAddr::V4(ADDR_B);
    let v6 = IpAddr::V6(ADDR6_B);
    let any6 = IpAddr::V6(Ipv6Addr::UNSPECIFIED);
    let any4 = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    let dual = [v4, v6];
    // Port alone or [::]: every address, shown as [::].
    assert_eq!(listen_addrs(&dual, None).unwrap(), (dual.to_vec(), any6));
    assert_eq!(
        listen_addrs(&dual, Some(any6)).unwrap(),
        (dual.to_vec(), any6)
    );
    // 0.0.0.0: the IPv4 ones; one address is shown as itself.
    assert_eq!(listen_addrs(&dual, Some(any4)).unwrap(), (vec![v4], v4));
    assert_eq!(listen_addrs(&dual, Some(v6)).unwrap(), (vec![v6], v6));
    // An IPv4-only stack's port alone is its address (as before IPv6).
    assert_eq!(listen_addrs(&[v4], None).unwrap(), (vec![v4], v4));
    // Two IPv4 addresses: 0.0.0.0.
    let other = IpAddr::V4(ADDR_A);
    assert_eq!(
        listen_addrs(&[v4, other], None).unwrap(),
        (vec![v4, other], any4)
    );
    // Not owned, or no address of the family asked for.
    assert_eq!(
        listen_addrs(&dual, Some(IpAddr::V6(ADDR6_A))),
        Err(NetError::NotOwned(IpAddr::V6(ADDR6_A)))
    );
    assert_eq!(
        listen_addrs(&[v6], Some(any4)),
        Err(NetError::NoAddress { ipv6: false })
    );
    let e: std::io::Error = NetError::NoAddress { ipv6: true }.into();
    assert_eq!(e.kind(), ErrorKind::AddrNotAvailable);
    assert!(e.to_string().contains("no IPv6 address"), "{e}");
}
