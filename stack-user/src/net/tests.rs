//! The socket API on two engines joined in memory ([`mem::Pair`]), under a
//! current-thread tokio runtime with paused (virtual) time: every timer
//! the engines arm runs without waiting for real time.

use std::{cell::Cell, future::Future, io::ErrorKind, net::SocketAddrV4, rc::Rc, time::Duration};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::mem::{Pair, ADDR_B};
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
