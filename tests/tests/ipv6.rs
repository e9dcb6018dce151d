//! IPv6 end to end against the Linux kernel on the default peer profile
//! (issue 15): `xstack serve` dual-stack on the testbed's 198.18.0.2 and
//! 2001:2::2; from the peer namespace `ping -6`, neighbour discovery,
//! `curl -6` to the HTTP app, a closed port refused with RST, and a 64 MiB
//! echo through the engine SHA-256-equal; the engine as a client too,
//! resolving the Linux server by neighbour discovery and moving 64 MiB
//! each way through it; handshakes on SYN cookies, XDP's (`--syncookies
//! always`) and the engine's. Every transfer and wait is bounded; each
//! test makes and removes its own testbed.

use std::{
    io::Write,
    net::{Shutdown, SocketAddr, TcpStream},
    sync::{Mutex, MutexGuard},
    thread,
    time::{Duration, Instant},
};

use xstack_tests::{
    counter, in_netns, pattern, read_to_eof_hashing, sha256_hex, testbed, wait_until, Serve,
    Testbed,
};

const PORT: u16 = 8080;
/// Bytes of the echo.
const BIG: usize = 64 << 20;
/// A connection that moves no byte for this long has stalled.
const IDLE: Duration = Duration::from_secs(10);
/// No transfer of this file may take longer.
const DEADLINE: Duration = Duration::from_secs(90);

/// The tests of this file one at a time: the echo is CPU-bound on both ends.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn peer(t: &Testbed, prog: &str, args: &[&str]) -> std::process::Output {
    t.peer_command(prog)
        .args(args)
        .output()
        .expect("run in peer netns")
}

/// `xstack serve` on both of the testbed's stack addresses.
fn serve_dual(t: &Testbed, port: u16, extra: &[&str]) -> Serve {
    let v6 = t.stack_ip6.to_string();
    let mut args = vec!["--ip", v6.as_str()];
    args.extend_from_slice(extra);
    Serve::start(t, port, &args)
}

#[test]
fn ping6_curl6_and_a_closed_port_over_ipv6_on_the_default_peer() {
    let _turn = serial();
    let tb = testbed('6', 1);
    let t = &tb.testbed;
    let serve = serve_dual(t, 80, &["--app", "http", "--response-bytes", "1000"]);
    let v6 = t.stack_ip6.to_string();

    // ping -6: the kernel resolves 2001:2::2 by neighbour discovery
    // (answered by the engine), then echo requests are answered.
    let out = peer(t, "ping", &["-6", "-c", "3", "-i", "0.2", "-W", "2", &v6]);
    assert!(
        out.status.success(),
        "ping -6: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let neigh = peer(t, "ip", &["-6", "neigh", "show", "dev", &t.peer_if]);
    let neigh = String::from_utf8_lossy(&neigh.stdout).to_string();
    assert!(
        neigh.contains(&format!("{v6} lladdr 02:78:73:00:00:02")),
        "peer's neighbour table: {neigh}"
    );

    // curl -6 to the HTTP app: two requests on one connection.
    let url = format!("http://[{v6}]:80/");
    let out = peer(
        t,
        "curl",
        &[
            "-6",
            "-sS",
            "--max-time",
            "5",
            "-o",
            "/dev/null",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{size_download} %{num_connects}\n",
            &url,
            &url,
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "curl -6: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        vec!["200 1000 1", "200 1000 0"]
    );

    // A closed port: refused at once (the engine's RST).
    let target = SocketAddr::from((t.stack_ip6, 81));
    let (result, took) = in_netns(&t.peer_ns, move || {
        let t0 = Instant::now();
        let r = TcpStream::connect_timeout(&target, Duration::from_secs(3));
        (r.map(|_| ()).map_err(|e| e.kind()), t0.elapsed())
    });
    assert_eq!(
        result,
        Err(std::io::ErrorKind::ConnectionRefused),
        "after {took:?}"
    );
    assert!(took < Duration::from_secs(1), "refused only after {took:?}");

    // The counters say the engine did it all (published every 50 ms).
    let ok = wait_until(Duration::from_secs(5), || {
        let s = serve.stats();
        counter(&s, "/engine/icmpv6_echo_replies") >= 3
            && counter(&s, "/engine/http_requests") >= 2
            && counter(&s, "/tcp/rst_out") >= 1
    });
    let s = serve.stats();
    assert!(ok, "{s:#}");
    assert!(counter(&s, "/engine/ndp_solicits_in") >= 1, "{s:#}");
    assert!(counter(&s, "/engine/ndp_adverts_out") >= 1, "{s:#}");
    assert!(counter(&s, "/xdp/redirect_tcp6") >= 4, "{s:#}");
    assert!(
        counter(&s, "/xdp/redirect_ndp") + counter(&s, "/xdp/redirect_icmpv6") >= 4,
        "{s:#}"
    );
    // IPv4 still served by the same instance.
    let out = peer(
        t,
        "curl",
        &[
            "-sS",
            "--max-time",
            "5",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("http://{}:80/", t.stack_ip),
        ],
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
}

#[test]
fn a_64_mib_echo_over_ipv6_is_byte_exact_on_the_default_peer() {
    let _turn = serial();
    let tb = testbed('7', 1);
    let t = &tb.testbed;
    let serve = serve_dual(t, PORT, &["--app", "echo"]);
    let data: &'static [u8] = Box::leak(pattern(6, BIG).into_boxed_slice());
    let want = sha256_hex(data);
    let target = SocketAddr::from((t.stack_ip6, PORT));
    let start = Instant::now();
    let got = in_netns(&t.peer_ns, move || -> Result<(usize, String), String> {
        let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(5))
            .map_err(|e| format!("connect: {e}"))?;
        s.set_read_timeout(Some(IDLE)).map_err(|e| e.to_string())?;
        s.set_write_timeout(Some(IDLE)).map_err(|e| e.to_string())?;
        let mut reader = s.try_clone().map_err(|e| e.to_string())?;
        let r = thread::spawn(move || read_to_eof_hashing(&mut reader, start, DEADLINE, IDLE));
        for chunk in data.chunks(256 << 10) {
            if start.elapsed() > DEADLINE {
                let _ = s.shutdown(Shutdown::Both);
                break;
            }
            if let Err(e) = s.write_all(chunk) {
                let _ = s.shutdown(Shutdown::Both);
                let _ = r.join();
                return Err(format!("write: {e}"));
            }
        }
        s.shutdown(Shutdown::Write).map_err(|e| e.to_string())?;
        r.join().map_err(|_| "reader panicked".to_string())?
    });
    let took = start.elapsed();
    let s = serve.stats();
    let (n, hash) = got.unwrap_or_else(|e| panic!("echo over IPv6 failed: {e}\n{s:#}"));
    assert_eq!((n, hash), (BIG, want), "{s:#}");
    eprintln!(
        "ipv6: 64 MiB echo each way in {:.2} s ({:.1} MB/s each way)",
        took.as_secs_f64(),
        BIG as f64 / took.as_secs_f64() / 1e6
    );
    let done = wait_until(Duration::from_secs(5), || {
        let s = serve.stats();
        counter(&s, "/engine/app_bytes_out") == BIG as u64 && counter(&s, "/tcp/connections") == 0
    });
    let s = serve.stats();
    assert!(done, "engine did not finish cleanly: {s:#}");
    assert_eq!(counter(&s, "/engine/app_bytes_in"), BIG as u64, "{s:#}");
}

#[test]
fn an_engine_client_echoes_64_mib_through_a_linux_server_over_ipv6() {
    use std::io::Read;
    use xstack::{
        apps::App,
        runtime::stack::{Stack, StackConfig},
        tcp::TcpError,
    };
    use xstack_tests::{Digest, Sha256};
    let _turn = serial();
    let tb = testbed('8', 1);
    let t = &tb.testbed;
    const SERVER_PORT: u16 = 9000;
    const CLIENT_PORT: u16 = 40001;
    // A Linux echo server on [2001:2::1]: one connection, echo until EOF.
    let peer_ip6 = t.peer_ip6;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let ns = t.peer_ns.clone();
    let server = thread::spawn(move || {
        in_netns(&ns, move || -> Result<usize, String> {
            let l = std::net::TcpListener::bind((peer_ip6, SERVER_PORT))
                .map_err(|e| format!("bind: {e}"))?;
            let _ = ready_tx.send(());
            let (mut c, _) = l.accept().map_err(|e| format!("accept: {e}"))?;
            c.set_read_timeout(Some(IDLE)).map_err(|e| e.to_string())?;
            c.set_write_timeout(Some(IDLE)).map_err(|e| e.to_string())?;
            let mut buf = vec![0u8; 1 << 16];
            let mut total = 0;
            loop {
                let n = c.read(&mut buf).map_err(|e| format!("server read: {e}"))?;
                if n == 0 {
                    return Ok(total);
                }
                c.write_all(&buf[..n])
                    .map_err(|e| format!("server write: {e}"))?;
                total += n;
            }
        })
    });
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("server ready");
    let data: &'static [u8] = Box::leak(pattern(8, BIG).into_boxed_slice());
    let want = sha256_hex(data);
    let (iface, ip6, ns) = (t.stack_if.clone(), t.stack_ip6, t.stack_ns.clone());
    let start = Instant::now();
    let (got, state, stats) = in_netns(&ns, move || {
        let mut st = Stack::open(&StackConfig {
            iface,
            ip6: vec![ip6],
            client_ports: vec![CLIENT_PORT],
            app: App::Discard,
            ..Default::default()
        })
        .expect("stack");
        let now = st.now();
        let c = st
            .engine()
            .connect(now, ip6, CLIENT_PORT, peer_ip6, SERVER_PORT)
            .expect("connect");
        let (mut sent, mut n, mut shut, mut h) = (0usize, 0usize, false, Sha256::new());
        let mut buf = vec![0u8; 1 << 16];
        let mut err = None;
        while start.elapsed() < DEADLINE {
            st.poll();
            let tcp = st.engine().tcp();
            if sent < BIG {
                match tcp.write(c, &data[sent..]) {
                    Ok(k) => sent += k,
                    Err(TcpError::WouldBlock) => {}
                    Err(e) => {
                        err = Some(format!("write: {e} after {sent}"));
                        break;
                    }
                }
            } else if !shut {
                let _ = tcp.shutdown(c);
                shut = true;
            }
            match tcp.read(c, &mut buf) {
                Ok(0) => break,
                Ok(k) => {
                    h.update(&buf[..k]);
                    n += k;
                }
                Err(TcpError::WouldBlock) => {}
                Err(e) => {
                    err = Some(format!("read: {e} after {n}"));
                    break;
                }
            }
        }
        let now = st.now();
        let state = st.engine().tcp().state(c).ok();
        let _ = st.engine().tcp().close(now, c);
        for _ in 0..50 {
            st.poll();
            thread::sleep(Duration::from_millis(2));
        }
        let stats = st.engine().stats().clone();
        let got = match err {
            Some(e) => Err(e),
            None => Ok((n, xstack_tests::hex(&h.finalize()))),
        };
        (got, state, stats)
    });
    let took = start.elapsed();
    let served = server.join().expect("server thread");
    assert_eq!(served, Ok(BIG), "{stats:?}");
    assert_eq!(got, Ok((BIG, want)), "{stats:?}");
    eprintln!(
        "ipv6: engine client, 64 MiB each way through a Linux echo server in {:.2} s ({:.1} MB/s each way)",
        took.as_secs_f64(),
        BIG as f64 / took.as_secs_f64() / 1e6
    );
    // We closed first: TIME_WAIT (RFC 9293 §3.6).
    assert_eq!(state, Some(xstack::tcp::State::TimeWait), "{stats:?}");
    // The engine resolved the server by neighbour discovery.
    assert!(stats.ndp_solicits_out >= 1, "{stats:?}");
    assert!(stats.ndp_adverts_in >= 1, "{stats:?}");
}

/// A Linux client echoes `LEN` bytes over IPv6 through `serve --app echo
/// extra...` on a fresh testbed; returns the server's counters once the
/// echo is in (SHA-256-equal).
fn cookie_echo6(tag: char, extra: &[&str]) -> serde_json::Value {
    let tb = testbed(tag, 1);
    let t = &tb.testbed;
    let mut args = vec!["--app", "echo"];
    args.extend_from_slice(extra);
    let serve = serve_dual(t, PORT, &args);
    const LEN: usize = 1 << 20;
    let data: &'static [u8] = Box::leak(pattern(9, LEN).into_boxed_slice());
    let want = sha256_hex(data);
    let target = SocketAddr::from((t.stack_ip6, PORT));
    let start = Instant::now();
    let got = in_netns(&t.peer_ns, move || -> Result<(usize, String), String> {
        let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(5))
            .map_err(|e| format!("connect: {e}"))?;
        s.set_read_timeout(Some(IDLE)).map_err(|e| e.to_string())?;
        s.set_write_timeout(Some(IDLE)).map_err(|e| e.to_string())?;
        let mut reader = s.try_clone().map_err(|e| e.to_string())?;
        let r = thread::spawn(move || read_to_eof_hashing(&mut reader, start, DEADLINE, IDLE));
        s.write_all(data).map_err(|e| format!("write: {e}"))?;
        s.shutdown(Shutdown::Write).map_err(|e| e.to_string())?;
        r.join().map_err(|_| "reader panicked".to_string())?
    });
    let s = serve.stats();
    assert_eq!(got, Ok((LEN, want)), "{s:#}");
    let done = wait_until(Duration::from_secs(5), || {
        let s = serve.stats();
        counter(&s, "/engine/app_bytes_out") == LEN as u64
            && counter(&s, "/tcp/SyncookiesRecv") >= 1
    });
    let s = serve.stats();
    assert!(done, "{s:#}");
    s
}

/// `--syncookies always`: XDP answers the IPv6 SYN itself with a cookie
/// SYN-ACK (built in XDP; on the default veth sent by the engine, whose
/// peer runs no NAPI), validates the final ACK's cookie and hands the
/// engine the options in the metadata; the engine never sees the SYN.
#[test]
fn an_ipv6_handshake_completes_on_an_xdp_syn_cookie() {
    let _turn = serial();
    let s = cookie_echo6('9', &["--syncookies", "always"]);
    assert_eq!(s["fastpath"]["cookie_path"], "engine", "{s:#}");
    assert!(counter(&s, "/xdp/redirect_cookie_synack6") >= 1, "{s:#}");
    assert!(counter(&s, "/engine/cookie_synacks_sent") >= 1, "{s:#}");
    assert!(counter(&s, "/xdp/redirect_cookie_ack6") >= 1, "{s:#}");
    assert!(counter(&s, "/engine/cookie_acks") >= 1, "{s:#}");
    assert_eq!(
        counter(&s, "/tcp/SyncookiesSent"),
        0,
        "the engine made none: {s:#}"
    );
    // Not the IPv4 counters.
    assert_eq!(counter(&s, "/xdp/redirect_cookie_synack"), 0, "{s:#}");
    assert_eq!(counter(&s, "/xdp/redirect_cookie_ack"), 0, "{s:#}");
}

/// With XDP cookies off, the engine's own IPv6 cookies (`tcp_syncookies=2`
/// answers every SYN with one; the hash covers both 128-bit addresses)
/// complete the handshake, with no state kept until the ACK.
#[test]
fn an_ipv6_handshake_completes_on_an_engine_syn_cookie() {
    let _turn = serial();
    let s = cookie_echo6(
        '5',
        &["--syncookies", "never", "--sysctl", "tcp_syncookies=2"],
    );
    assert!(counter(&s, "/tcp/SyncookiesSent") >= 1, "{s:#}");
    assert_eq!(counter(&s, "/xdp/redirect_cookie_synack6"), 0, "{s:#}");
    assert_eq!(counter(&s, "/xdp/tx_cookie_synack6"), 0, "{s:#}");
}
