//! End-to-end: when the stack sends RST, keepalive against a peer that stops
//! answering, and accept-queue overflow, with the Linux kernel as the peer.
//! The engine runs in-process ([`Stack`], one queue) in the stack namespace;
//! the Linux side runs in a thread that joined the peer namespace. Every
//! scenario runs on both peer profiles (`default`: the veth as `ip link add`
//! leaves it; `tuned`: the benchmark settings), issue 11's test matrix.

use std::{
    io::{ErrorKind, Read, Write},
    net::{SocketAddr, TcpStream},
    sync::mpsc,
    time::{Duration, Instant},
};

use xstack::{
    apps::App,
    runtime::stack::{Stack, StackConfig},
    tcp::{ConnId, Event, KeepaliveConfig, TcpConfig, TcpError},
};
use xstack_tests::{in_netns, testbed_with, PeerProfile, Testbed};

const PORT: u16 = 8080;
const CLOSED_PORT: u16 = 9;

fn config(t: &Testbed, tcp: TcpConfig) -> StackConfig {
    StackConfig {
        iface: t.stack_if.clone(),
        ip: t.stack_ip,
        listen: vec![PORT],
        // Owned in XDP, nobody listens: the engine answers.
        client_ports: vec![CLOSED_PORT],
        app: App::Manual,
        response_bytes: 0,
        tcp,
        xsk: Default::default(),
        ..Default::default()
    }
}

/// Polls `st` until `f` returns Some or `secs` pass. A round that took no
/// frame sleeps until the next frame or timer (at most 2 ms) instead of
/// spinning, so that the scenarios (16, on two peer profiles) can run side
/// by side on a small machine.
fn until<T>(st: &mut Stack, secs: f64, mut f: impl FnMut(&mut Stack) -> Option<T>) -> Option<T> {
    let end = Instant::now() + Duration::from_secs_f64(secs);
    while Instant::now() < end {
        let frames = st.poll();
        if let Some(v) = f(st) {
            return Some(v);
        }
        if frames == 0 {
            st.wait(Duration::from_millis(2));
        }
    }
    None
}

fn accept_one(st: &mut Stack) -> Option<ConnId> {
    until(st, 5.0, |st| {
        while let Some(ev) = st.engine().poll_event() {
            if let Event::Incoming(l) = ev {
                return st.engine().tcp().accept(l);
            }
        }
        None
    })
}

/// Runs the engine side `engine` in the stack namespace and the Linux side
/// `linux` in the peer namespace, concurrently; `linux` starts once the
/// stack is up.
fn run<E, L, A, B>(t: &Testbed, tcp: TcpConfig, engine: E, linux: L) -> (A, B)
where
    E: FnOnce(&mut Stack) -> A + Send + 'static,
    L: FnOnce(SocketAddr) -> B + Send + 'static,
    A: Send + 'static,
    B: Send + 'static,
{
    let cfg = config(t, tcp);
    let (up_tx, up_rx) = mpsc::channel();
    let ns = t.stack_ns.clone();
    let eng = std::thread::spawn(move || {
        in_netns(&ns, move || {
            let mut st = Stack::open(&cfg).expect("stack");
            up_tx.send(()).unwrap();
            let r = engine(&mut st);
            // Let the last segments leave.
            until(&mut st, 0.2, |_| None::<()>);
            r
        })
    });
    up_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("stack up");
    let target = SocketAddr::from((t.stack_ip, PORT));
    let l = in_netns(&t.peer_ns, move || linux(target));
    (eng.join().expect("engine thread"), l)
}

#[test]
fn rst_for_a_segment_to_a_port_nobody_listens_on_on_the_default_peer() {
    rst_for_a_segment_to_a_port_nobody_listens_on(PeerProfile::Default);
}

#[test]
fn rst_for_a_segment_to_a_port_nobody_listens_on_on_the_tuned_peer() {
    rst_for_a_segment_to_a_port_nobody_listens_on(PeerProfile::Tuned);
}

fn rst_for_a_segment_to_a_port_nobody_listens_on(profile: PeerProfile) {
    let tb = testbed_with('r', 1, profile);
    let t = &tb.testbed;
    let ip = t.stack_ip;
    let (rst_out, err) = run(
        t,
        TcpConfig::default(),
        |st| {
            until(st, 3.0, |st| {
                (st.engine().tcp_stats().rst_out > 0).then_some(())
            });
            st.engine().tcp_stats().rst_out
        },
        move |_| {
            TcpStream::connect_timeout(&SocketAddr::from((ip, CLOSED_PORT)), Duration::from_secs(2))
                .map(drop)
                .unwrap_err()
                .kind()
        },
    );
    assert_eq!(err, ErrorKind::ConnectionRefused);
    assert!(rst_out >= 1);
}

#[test]
fn close_with_unread_data_sends_rst_and_discards_it_on_the_default_peer() {
    close_with_unread_data_sends_rst_and_discards_it(PeerProfile::Default);
}

#[test]
fn close_with_unread_data_sends_rst_and_discards_it_on_the_tuned_peer() {
    close_with_unread_data_sends_rst_and_discards_it(PeerProfile::Tuned);
}

fn close_with_unread_data_sends_rst_and_discards_it(profile: PeerProfile) {
    let tb = testbed_with('u', 1, profile);
    let (aborts, err) = run(
        &tb.testbed,
        TcpConfig::default(),
        |st| {
            let c = accept_one(st).expect("accept");
            until(st, 3.0, |st| {
                (st.engine().tcp().recv_queue(c).unwrap_or(0) >= 100).then_some(())
            });
            let now = st.now();
            st.engine().tcp().close(now, c).unwrap();
            until(st, 0.3, |_| None::<()>);
            st.engine()
                .tcp_stats()
                .iter()
                .find(|(k, _)| *k == "TCPAbortOnClose")
                .map(|(_, v)| v)
        },
        |target| {
            let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(3)).unwrap();
            s.write_all(&[7u8; 100]).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut b = [0u8; 10];
            s.read(&mut b).map_err(|e| e.kind())
        },
    );
    assert_eq!(err, Err(ErrorKind::ConnectionReset));
    assert_eq!(aborts, Some(1));
}

#[test]
fn linger_zero_close_sends_rst_and_leaves_no_time_wait_on_the_default_peer() {
    linger_zero_close_sends_rst_and_leaves_no_time_wait(PeerProfile::Default);
}

#[test]
fn linger_zero_close_sends_rst_and_leaves_no_time_wait_on_the_tuned_peer() {
    linger_zero_close_sends_rst_and_leaves_no_time_wait(PeerProfile::Tuned);
}

fn linger_zero_close_sends_rst_and_leaves_no_time_wait(profile: PeerProfile) {
    let tb = testbed_with('z', 1, profile);
    let (tw, err) = run(
        &tb.testbed,
        TcpConfig::default(),
        |st| {
            let c = accept_one(st).expect("accept");
            st.engine()
                .tcp()
                .set_linger(c, Some(Duration::ZERO))
                .unwrap();
            let now = st.now();
            st.engine().tcp().close(now, c).unwrap();
            until(st, 0.3, |_| None::<()>);
            (
                st.engine().tcp().state_counts().time_wait,
                st.engine().tcp_connections(),
            )
        },
        |target| {
            // The engine aborts as soon as it accepts, so the RST may come
            // before this thread runs again: connect (which checks
            // SO_ERROR after the handshake) or setsockopt then reports it.
            let mut b = [0u8; 10];
            TcpStream::connect_timeout(&target, Duration::from_secs(3))
                .and_then(|mut s| {
                    s.set_read_timeout(Some(Duration::from_secs(5)))?;
                    s.read(&mut b)
                })
                .map_err(|e| e.kind())
        },
    );
    assert_eq!(err, Err(ErrorKind::ConnectionReset));
    assert_eq!(tw, (0, 0), "linger 0 left TIME_WAIT or a connection behind");
}

#[test]
fn data_for_a_fully_closed_connection_gets_rst_on_the_default_peer() {
    data_for_a_fully_closed_connection_gets_rst(PeerProfile::Default);
}

#[test]
fn data_for_a_fully_closed_connection_gets_rst_on_the_tuned_peer() {
    data_for_a_fully_closed_connection_gets_rst(PeerProfile::Tuned);
}

fn data_for_a_fully_closed_connection_gets_rst(profile: PeerProfile) {
    let tb = testbed_with('a', 1, profile);
    let (on_data, res) = run(
        &tb.testbed,
        TcpConfig::default(),
        |st| {
            let c = accept_one(st).expect("accept");
            let now = st.now();
            st.engine().tcp().close(now, c).unwrap(); // FIN; the handle is gone
            until(st, 3.0, |st| {
                st.engine()
                    .tcp_stats()
                    .iter()
                    .find(|(k, v)| *k == "TCPAbortOnData" && *v > 0)
                    .map(|(_, v)| v)
            })
        },
        |target| {
            let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(3)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut b = [0u8; 10];
            let eof = s.read(&mut b).unwrap(); // the engine's FIN
            s.write_all(b"late data").unwrap(); // half-closed peer keeps sending
            std::thread::sleep(Duration::from_millis(300));
            (
                eof,
                s.write_all(b"more")
                    .and_then(|_| s.write_all(b"more"))
                    .map_err(|e| e.kind()),
            )
        },
    );
    assert_eq!(res.0, 0, "expected EOF from the engine's FIN");
    assert!(
        matches!(
            res.1,
            Err(ErrorKind::ConnectionReset) | Err(ErrorKind::BrokenPipe)
        ),
        "{:?}",
        res.1
    );
    assert_eq!(on_data, Some(1));
}

#[test]
fn a_segment_for_no_known_connection_gets_rst_on_the_default_peer() {
    a_segment_for_no_known_connection_gets_rst(PeerProfile::Default);
}

#[test]
fn a_segment_for_no_known_connection_gets_rst_on_the_tuned_peer() {
    a_segment_for_no_known_connection_gets_rst(PeerProfile::Tuned);
}

fn a_segment_for_no_known_connection_gets_rst(profile: PeerProfile) {
    let tb = testbed_with('n', 1, profile);
    let t = &tb.testbed;
    // First engine: the connection is established, then the engine goes
    // away without a word (its state is lost).
    let (to_linux_tx, to_linux_rx) = mpsc::channel::<()>();
    let (from_linux_tx, from_linux_rx) = mpsc::channel::<()>();
    let cfg = config(t, TcpConfig::default());
    let ns = t.stack_ns.clone();
    let first = std::thread::spawn(move || {
        in_netns(&ns, move || {
            let mut st = Stack::open(&cfg).expect("stack");
            to_linux_tx.send(()).unwrap();
            let _c = accept_one(&mut st).expect("accept");
            from_linux_rx.recv_timeout(Duration::from_secs(5)).unwrap();
            drop(st);
            to_linux_tx.send(()).unwrap();
        })
    });
    to_linux_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let target = SocketAddr::from((t.stack_ip, PORT));
    let s = in_netns(&t.peer_ns, move || {
        TcpStream::connect_timeout(&target, Duration::from_secs(3)).unwrap()
    });
    from_linux_tx.send(()).unwrap();
    to_linux_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    first.join().unwrap();
    // Second engine: knows nothing of that connection.
    let cfg = config(t, TcpConfig::default());
    let ns = t.stack_ns.clone();
    let (up_tx, up_rx) = mpsc::channel();
    let second = std::thread::spawn(move || {
        in_netns(&ns, move || {
            let mut st = Stack::open(&cfg).expect("stack");
            up_tx.send(()).unwrap();
            until(&mut st, 3.0, |st| {
                (st.engine().tcp_stats().rst_out > 0).then_some(())
            });
            until(&mut st, 0.2, |_| None::<()>);
            st.engine().tcp_stats().rst_out
        })
    });
    up_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    let mut s2 = s;
    let err = in_netns(&t.peer_ns, move || {
        s2.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s2.write_all(b"hello?").unwrap();
        let mut b = [0u8; 8];
        s2.read(&mut b).map_err(|e| e.kind())
    });
    assert_eq!(err, Err(ErrorKind::ConnectionReset));
    assert!(second.join().unwrap() >= 1);
}

#[test]
fn an_rst_received_gives_connection_reset_and_releases_the_state_at_once_on_the_default_peer() {
    an_rst_received_gives_connection_reset_and_releases_the_state_at_once(PeerProfile::Default);
}

#[test]
fn an_rst_received_gives_connection_reset_and_releases_the_state_at_once_on_the_tuned_peer() {
    an_rst_received_gives_connection_reset_and_releases_the_state_at_once(PeerProfile::Tuned);
}

fn an_rst_received_gives_connection_reset_and_releases_the_state_at_once(profile: PeerProfile) {
    let tb = testbed_with('x', 1, profile);
    let (res, ()) = run(
        &tb.testbed,
        TcpConfig::default(),
        |st| {
            let c = accept_one(st).expect("accept");
            let got_rst = until(st, 5.0, |st| {
                let mut b = [0u8; 16];
                match st.engine().tcp().read(c, &mut b) {
                    Err(TcpError::ConnectionReset) => Some(()),
                    _ => None,
                }
            });
            let write = st.engine().tcp().write(c, b"x");
            (
                got_rst.is_some(),
                write,
                st.engine().tcp().state_counts().established,
            )
        },
        |target| {
            let s = TcpStream::connect_timeout(&target, Duration::from_secs(3)).unwrap();
            std::thread::sleep(Duration::from_millis(200));
            // SO_LINGER 0: close sends RST.
            let l = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            use std::os::fd::AsRawFd;
            // SAFETY: setsockopt on our own socket with a valid linger struct.
            unsafe {
                libc::setsockopt(
                    s.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    (&l as *const libc::linger).cast(),
                    std::mem::size_of::<libc::linger>() as u32,
                )
            };
            drop(s);
        },
    );
    assert!(res.0, "no ConnectionReset on read");
    assert_eq!(res.1, Err(TcpError::BrokenPipe));
    assert_eq!(res.2, 0, "state kept after RST");
}

#[test]
fn accept_queue_overflow_with_abort_on_overflow_answers_rst_on_the_default_peer() {
    accept_queue_overflow_with_abort_on_overflow_answers_rst(PeerProfile::Default);
}

#[test]
fn accept_queue_overflow_with_abort_on_overflow_answers_rst_on_the_tuned_peer() {
    accept_queue_overflow_with_abort_on_overflow_answers_rst(PeerProfile::Tuned);
}

fn accept_queue_overflow_with_abort_on_overflow_answers_rst(profile: PeerProfile) {
    let tb = testbed_with('o', 1, profile);
    let tcp = TcpConfig {
        somaxconn: 1,
        tcp_abort_on_overflow: true,
        ..TcpConfig::default()
    };
    let (overflows, results) = run(
        &tb.testbed,
        tcp,
        |st| {
            // Let the four SYNs queue up in the AF_XDP ring so that they are
            // all answered before any handshake completes.
            std::thread::sleep(Duration::from_millis(300));
            // Never accept: the accept queue (1) fills with the first connection.
            until(st, 3.0, |st| {
                let n = st
                    .engine()
                    .tcp_stats()
                    .iter()
                    .find(|(k, _)| *k == "ListenOverflows")
                    .map(|(_, v)| v)?;
                (n >= 1).then_some(())
            });
            until(st, 0.3, |_| None::<()>);
            st.engine()
                .tcp_stats()
                .iter()
                .find(|(k, _)| *k == "ListenOverflows")
                .map(|(_, v)| v)
        },
        |target| {
            // Four handshakes at once: their SYNs find the accept queue empty
            // and get SYN-ACKs; the final ACKs after the first overflow it.
            // (A SYN that found the queue full would be dropped, as on Linux.)
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    std::thread::spawn(move || {
                        let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(2))
                            .map_err(|e| e.kind())?;
                        std::thread::sleep(Duration::from_millis(500));
                        let mut b = [0u8; 4];
                        s.set_read_timeout(Some(Duration::from_millis(500)))
                            .and_then(|_| s.read(&mut b))
                            .map_err(|e| e.kind())
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .collect::<Vec<_>>()
        },
    );
    let queued = results
        .iter()
        .filter(|r| matches!(r, Err(ErrorKind::WouldBlock) | Err(ErrorKind::TimedOut)))
        .count();
    let reset = results
        .iter()
        .filter(|r| **r == Err(ErrorKind::ConnectionReset))
        .count();
    // Exactly one connection waits in the accept queue; overflowing final
    // ACKs were answered with RST.
    assert_eq!(queued, 1, "{results:?}");
    assert_eq!(reset, 3, "{results:?}");
    assert!(overflows >= Some(3), "{overflows:?}");
}

#[test]
fn keepalive_reports_a_peer_that_stops_answering_as_timed_out_on_the_default_peer() {
    keepalive_reports_a_peer_that_stops_answering_as_timed_out(PeerProfile::Default);
}

#[test]
fn keepalive_reports_a_peer_that_stops_answering_as_timed_out_on_the_tuned_peer() {
    keepalive_reports_a_peer_that_stops_answering_as_timed_out(PeerProfile::Tuned);
}

fn keepalive_reports_a_peer_that_stops_answering_as_timed_out(profile: PeerProfile) {
    let tb = testbed_with('k', 1, profile);
    let t = tb.testbed.clone();
    let peer_ns = t.peer_ns.clone();
    let peer_if = t.peer_if.clone();
    let (res, ()) = run(
        &t,
        TcpConfig::default(),
        move |st| {
            let c = accept_one(st).expect("accept");
            let now = st.now();
            let ka = KeepaliveConfig {
                time: Duration::from_secs(1),
                intvl: Duration::from_millis(500),
                probes: 3,
            };
            st.engine().tcp().set_keepalive(now, c, Some(ka)).unwrap();
            // The peer answers probes for a while: the connection survives.
            until(st, 2.5, |_| None::<()>);
            let alive = st.engine().tcp().state(c).is_ok();
            // Now the peer goes silent (its link goes down).
            let down = std::process::Command::new("ip")
                .args(["-n", &peer_ns, "link", "set", &peer_if, "down"])
                .status()
                .unwrap()
                .success();
            let started = Instant::now();
            let timed_out = until(st, 10.0, |st| {
                while let Some(ev) = st.engine().poll_event() {
                    if ev == Event::TimedOut(c) {
                        return Some(());
                    }
                }
                None
            });
            let mut b = [0u8; 4];
            let read = st.engine().tcp().read(c, &mut b);
            (alive, down, timed_out.is_some(), started.elapsed(), read)
        },
        |target| {
            let s = TcpStream::connect_timeout(&target, Duration::from_secs(3)).unwrap();
            // Hold the connection open while the engine probes it.
            std::thread::sleep(Duration::from_secs(4));
            drop(s);
        },
    );
    assert!(res.0, "the connection died while the peer answered probes");
    assert!(res.1);
    assert!(res.2, "no TimedOut event");
    // idle 1 s (already passed) + 3 probes × 0.5 s: well under 10 s.
    assert!(res.3 < Duration::from_secs(6), "{:?}", res.3);
    assert_eq!(res.4, Err(TcpError::TimedOut));
}
