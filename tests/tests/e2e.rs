//! End-to-end: real XDP, real AF_XDP, the Linux kernel as the peer in another
//! network namespace. Each test makes its own testbed (unique names) and
//! removes it, also when it fails.

use std::{
    net::{SocketAddr, TcpStream},
    process::Command,
    time::Duration,
};

use xstack_tests::{
    attached_xdp, counter, in_netns, offload_on, testbed, testbed_with, wait_until, xstack_bin,
    PeerProfile, Serve,
};

const PORT: u16 = 8080;

fn peer(t: &xstack_tests::Testbed, prog: &str, args: &[&str]) -> std::process::Output {
    t.peer_command(prog)
        .args(args)
        .output()
        .expect("run in peer netns")
}

#[test]
fn ping_and_arping_to_the_stack_address_are_answered_by_the_engine() {
    let tb = testbed('p', 2);
    let t = &tb.testbed;
    let serve = Serve::start(t, PORT, &[]);
    let ip = t.stack_ip.to_string();

    let arping = peer(t, "arping", &["-c", "3", "-w", "5", "-I", &t.peer_if, &ip]);
    assert!(
        arping.status.success(),
        "arping: {}",
        String::from_utf8_lossy(&arping.stdout)
    );
    assert!(String::from_utf8_lossy(&arping.stdout).contains("02:78:73:00:00:02"));

    let ping = peer(t, "ping", &["-c", "5", "-i", "0.2", "-W", "2", &ip]);
    let text = String::from_utf8_lossy(&ping.stdout);
    assert!(ping.status.success(), "ping: {text}");
    assert!(text.contains("5 received"), "ping: {text}");

    let ok = wait_until(Duration::from_secs(3), || {
        counter(&serve.stats(), "/engine/icmp_echo_replies") == 5
    });
    let s = serve.stats();
    assert!(ok, "engine did not count 5 echo replies: {s:#}");
    // Every ARP and ICMP packet the XDP program redirected reached the
    // engine, and every request was answered.
    assert_eq!(counter(&s, "/engine/icmp_echo_requests"), 5);
    assert_eq!(counter(&s, "/xdp/redirect_icmp"), 5);
    let arp_req = counter(&s, "/engine/arp_requests");
    assert!(arp_req >= 3, "{s:#}");
    assert_eq!(counter(&s, "/engine/arp_replies"), arp_req);
    assert_eq!(counter(&s, "/xdp/redirect_arp"), arp_req);
    assert_eq!(counter(&s, "/engine/tx_no_buffer"), 0);
}

#[test]
fn tcp_segments_on_either_queue_reach_the_engine_that_owns_their_flow() {
    let tb = testbed('q', 2);
    let t = &tb.testbed;
    let serve = Serve::start(t, PORT, &[]);
    let target = SocketAddr::from((t.stack_ip, PORT));
    const SYNS: u64 = 32;
    // Each connect sends exactly one SYN, answered by the engine's SYN-ACK
    // well before the kernel's first SYN retransmission (1 s).
    in_netns(&t.peer_ns, move || {
        let handles: Vec<_> = (0..SYNS)
            .map(|_| {
                std::thread::spawn(move || {
                    TcpStream::connect_timeout(&target, Duration::from_millis(900)).map(drop)
                })
            })
            .collect();
        for h in handles {
            // Threads spawned here inherit the peer namespace.
            h.join().unwrap().expect("connect to the engine");
        }
    });
    let ok = wait_until(Duration::from_secs(3), || {
        let s = serve.stats();
        counter(&s, "/engine/tcp_syns") == SYNS
            && counter(&s, "/xdp/redirect_tcp") == counter(&s, "/engine/tcp_segments")
    });
    let s = serve.stats();
    assert!(ok, "engine did not count {SYNS} SYNs: {s:#}");
    // Every TCP segment XDP redirected reached the engine.
    assert_eq!(
        counter(&s, "/xdp/redirect_tcp"),
        counter(&s, "/engine/tcp_segments")
    );
    assert!(counter(&s, "/engine/tcp_segments") >= SYNS);
    let queues = s["per_queue"].as_array().expect("per_queue");
    assert_eq!(queues.len(), 2);
    let (mut arrived, mut owned) = (0, 0);
    for q in queues {
        // What XDP redirected on queue q is what its engine handled, less
        // what other queues handed to it, plus what it handed to others.
        assert_eq!(
            counter(q, "/xdp_redirects"),
            counter(q, "/engine/rx_frames") - counter(q, "/steer/handed_in")
                + counter(q, "/steer/handed_out"),
            "queue {}: {q:#}",
            q["queue"]
        );
        assert_eq!(counter(q, "/steer/handoff_dropped"), 0);
        arrived += u32::from(counter(q, "/xdp_redirects") > 0);
        owned += u32::from(counter(q, "/engine/tcp_segments") > 0);
    }
    // 32 flows over 2 queues all on one: probability 2^-31, for where the
    // kernel sent them and for which engine owns them.
    assert_eq!((arrived, owned), (2, 2), "all SYNs on one queue: {s:#}");
}

/// `-v` turns on the XDP program's own log lines (aya-log): the program
/// must still pass the verifier with them live, and its verdicts on owned
/// traffic must reach the log. Before the one log site in the entry
/// function, `xstack -v serve` failed to load (1M-instruction limit).
#[test]
fn verbose_serve_loads_the_xdp_program_and_logs_its_verdicts() {
    let tb = testbed('v', 1);
    let t = &tb.testbed;
    let mut serve = Serve::start(t, PORT, &["-v"]);
    let ping = peer(
        t,
        "ping",
        &["-c", "2", "-i", "0.2", "-W", "2", &t.stack_ip.to_string()],
    );
    assert!(ping.status.success());
    let out = serve.stop_with(libc::SIGINT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    assert!(
        stderr.contains("redirect_icmp (action 4) on queue 0"),
        "no XDP verdict in the -v log:\n{stderr}"
    );
}

#[test]
fn sigint_detaches_cleanly_and_prints_final_counters() {
    let tb = testbed('s', 1);
    let t = &tb.testbed;
    let mut serve = Serve::start(t, PORT, &["--pin-maps"]);
    assert_eq!(
        attached_xdp(&t.stack_ns, &t.stack_if).map(|(_, n)| n),
        Some("xstack_xdp".to_string())
    );
    let pins = std::fs::read_dir("/sys/fs/bpf/xstack")
        .map(|d| {
            d.filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().starts_with(&t.stack_if))
        })
        .unwrap_or(false);
    assert!(pins, "--pin-maps made no pins");
    let ping = peer(
        t,
        "ping",
        &["-c", "2", "-i", "0.2", "-W", "2", &t.stack_ip.to_string()],
    );
    assert!(ping.status.success());

    let out = serve.stop_with(libc::SIGINT);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("final counters:"), "{stdout}");
    assert!(
        stdout.contains("icmp_echo_replies            2"),
        "{stdout}"
    );
    // Nothing left: no program, no pins, no control socket.
    assert_eq!(attached_xdp(&t.stack_ns, &t.stack_if), None);
    let leftover_pins = std::fs::read_dir("/sys/fs/bpf/xstack")
        .map(|d| {
            d.filter_map(Result::ok)
                .any(|e| e.file_name().to_string_lossy().starts_with(&t.stack_if))
        })
        .unwrap_or(false);
    assert!(!leftover_pins, "pins left behind");
    // Nor an empty /sys/fs/bpf/xstack (it stays only while another
    // instance has pins there).
    let empty_parent =
        std::fs::read_dir("/sys/fs/bpf/xstack").is_ok_and(|mut d| d.next().is_none());
    assert!(!empty_parent, "an empty /sys/fs/bpf/xstack left behind");
    let sockets = xstack::runtime::control::instances();
    assert!(
        !sockets.iter().any(|(i, _)| i == &t.stack_if),
        "control socket left behind"
    );
}

#[test]
fn a_killed_instance_leaves_no_program_attached() {
    let tb = testbed('k', 1);
    let t = &tb.testbed;
    let mut serve = Serve::start(t, PORT, &[]);
    assert!(attached_xdp(&t.stack_ns, &t.stack_if).is_some());
    let out = serve.stop_with(libc::SIGKILL);
    assert!(!out.status.success());
    // The BPF link dies with the process's file descriptors.
    assert!(
        wait_until(Duration::from_secs(5), || attached_xdp(
            &t.stack_ns,
            &t.stack_if
        )
        .is_none()),
        "XDP program still attached after SIGKILL"
    );
    // A new instance starts on the same interface and address.
    let again = Serve::start(t, PORT, &[]);
    assert!(again.try_stats().is_some());
}

#[test]
fn testbed_down_leaves_nothing_behind() {
    let name = xstack_tests::unique_name('d');
    let t = xstack::tools::testbed::Testbed::new(&name).unwrap();
    // Removed also when an assertion below fails (down is idempotent).
    struct Down(xstack::tools::testbed::Testbed);
    impl Drop for Down {
        fn drop(&mut self) {
            let _ = self.0.down();
        }
    }
    let _down = Down(xstack::tools::testbed::Testbed::new(&name).unwrap());
    t.up(2, PeerProfile::Default).unwrap();
    t.up(2, PeerProfile::Default).unwrap(); // idempotent
    assert!(t.exists());
    // The default profile leaves the kernel's defaults alone: the peer
    // offloads checksums and does not run GRO, as on a user's own veth.
    assert!(offload_on(&t.peer_ns, &t.peer_if, "tx-checksumming"));
    assert!(!offload_on(
        &t.peer_ns,
        &t.peer_if,
        "generic-receive-offload"
    ));
    let st = t.status();
    // Dual-stack: the benchmarking addresses of both families, and the
    // IPv6 link-local address every IPv6 interface has; nothing else.
    let addrs = &st.peer.kernel_addrs;
    assert!(addrs.contains(&"198.18.0.1/24".to_string()), "{addrs:?}");
    assert!(addrs.contains(&"2001:2::1/64".to_string()), "{addrs:?}");
    assert!(
        addrs
            .iter()
            .all(|a| a == "198.18.0.1/24" || a == "2001:2::1/64" || a.starts_with("fe80:")),
        "{addrs:?}"
    );
    assert!(
        st.stack.kernel_addrs.is_empty(),
        "the stack address must not be on the kernel interface"
    );
    // No route out of either namespace.
    for ns in [&t.stack_ns, &t.peer_ns] {
        let routes = Command::new("ip")
            .args(["-n", ns, "route", "show", "default"])
            .output()
            .unwrap();
        assert!(routes.stdout.is_empty(), "default route in {ns}");
    }
    t.down().unwrap();
    t.down().unwrap(); // idempotent
    let netns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let list = String::from_utf8_lossy(&netns.stdout);
    assert!(
        !list.contains(&t.stack_ns) && !list.contains(&t.peer_ns),
        "{list}"
    );
    let links = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&links.stdout).contains(&format!("xs-{name}-")));
}

fn serve_error(t: &xstack_tests::Testbed, args: &[&str]) -> (bool, String) {
    let out = t
        .stack_command(xstack_bin().to_str().unwrap())
        .arg("serve")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_one_line(stderr: &str, needle: &str) {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line, got: {stderr}");
    assert!(
        lines[0].contains(needle),
        "expected {needle:?} in {stderr:?}"
    );
}

#[test]
fn bad_input_gives_one_line_errors_and_leaves_nothing_attached() {
    let tb = testbed('b', 1);
    let t = &tb.testbed;
    let ip = t.stack_ip.to_string();
    let iface = t.stack_if.as_str();

    let (ok, err) = serve_error(t, &["--iface", "nosuchif0", "--ip", &ip, "--port", "80"]);
    assert!(!ok);
    assert_one_line(&err, "interface nosuchif0 does not exist");

    let (ok, err) = serve_error(
        t,
        &[
            "--iface", iface, "--ip", &ip, "--port", "80", "--queues", "4",
        ],
    );
    assert!(!ok);
    assert_one_line(&err, "--queues 4 is out of range");

    // Not root: drop every capability and switch to nobody.
    let out = t
        .stack_command("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ])
        .arg(xstack_bin())
        .args(["serve", "--iface", iface, "--ip", &ip, "--port", "80"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_one_line(
        &String::from_utf8_lossy(&out.stderr),
        "needs root or the capabilities",
    );

    // bpffs missing where pins should go.
    let out = t
        .stack_command(xstack_bin().to_str().unwrap())
        .env("XSTACK_BPFFS", "/tmp")
        .args([
            "serve",
            "--iface",
            iface,
            "--ip",
            &ip,
            "--port",
            "80",
            "--pin-maps",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_one_line(
        &String::from_utf8_lossy(&out.stderr),
        "bpffs is not mounted at /tmp",
    );

    assert_eq!(
        attached_xdp(&t.stack_ns, iface),
        None,
        "a failed start left XDP attached"
    );

    // A running instance owns the address and the interface.
    let _first = Serve::start(t, PORT, &[]);
    let (ok, err) = serve_error(t, &["--iface", iface, "--ip", &ip, "--port", "81"]);
    assert!(!ok);
    assert_one_line(&err, "already driven by another xstack instance");
}

#[test]
fn an_xdp_program_attached_by_someone_else_is_not_replaced() {
    let tb = testbed('f', 1);
    let t = &tb.testbed;
    let (ns, iface) = (t.stack_ns.clone(), t.stack_if.clone());
    // "Someone else": this test process attaches the program itself.
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        in_netns(&ns, move || {
            let mut p = xstack::datapath::xdp::XdpProgram::load(None).expect("load");
            p.attach(&iface, xstack::datapath::xdp::AttachMode::Generic)
                .expect("attach");
            ready_tx.send(()).unwrap();
            let _ = rx.recv_timeout(Duration::from_secs(60));
            drop(p);
        })
    });
    ready_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("holder attached");
    let before = attached_xdp(&t.stack_ns, &t.stack_if).expect("holder's program");

    let (ok, err) = serve_error(
        t,
        &[
            "--iface",
            &t.stack_if,
            "--ip",
            &t.stack_ip.to_string(),
            "--port",
            "80",
        ],
    );
    assert!(!ok);
    assert_one_line(&err, "already has an XDP program attached");
    assert_eq!(
        attached_xdp(&t.stack_ns, &t.stack_if),
        Some(before),
        "the program was replaced"
    );

    tx.send(()).unwrap();
    holder.join().unwrap();
    assert!(wait_until(Duration::from_secs(5), || attached_xdp(
        &t.stack_ns,
        &t.stack_if
    )
    .is_none()));
}

#[test]
fn a_linux_client_exchanges_data_with_the_echo_app_and_both_sides_close_on_the_tuned_peer() {
    linux_client_echo(PeerProfile::Tuned);
}

/// Issue 11, failure 2: with the peer's default tx-checksum offload every
/// segment reached the engine with only the pseudo-header checksum and was
/// dropped as `drop_tcp_bad_checksum`.
#[test]
fn a_linux_client_with_default_checksum_offload_exchanges_data_with_the_echo_app() {
    let s = linux_client_echo(PeerProfile::Default);
    assert!(
        counter(&s, "/tcp/checksum_partial_in") > 0,
        "the default peer offloads checksums; the engine should have accepted them as such: {s:#}"
    );
    assert_eq!(counter(&s, "/tcp/drop_tcp_bad_checksum"), 0);
}

/// A Linux client sends 256 KiB to the echo app, half-closes and reads
/// the echo to EOF; both sides close. Returns the server's counters.
fn linux_client_echo(profile: PeerProfile) -> serde_json::Value {
    use std::io::{Read, Write};
    let tb = testbed_with('e', 1, profile);
    let t = &tb.testbed;
    if profile == PeerProfile::Default {
        assert!(offload_on(&t.peer_ns, &t.peer_if, "tx-checksumming"));
    }
    let serve = Serve::start(t, PORT, &["--app", "echo"]);
    let target = SocketAddr::from((t.stack_ip, PORT));
    const LEN: usize = 256 * 1024;
    let echoed = in_netns(&t.peer_ns, move || {
        let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(3)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let data: Vec<u8> = (0..LEN).map(|i| (i * 7 + i / 251) as u8).collect();
        let mut reader = s.try_clone().unwrap();
        let expect = data.clone();
        let r = std::thread::spawn(move || {
            let mut got = Vec::new();
            // Reads until the engine's FIN (sent after it echoed everything).
            reader.read_to_end(&mut got).map(|_| got)
        });
        s.write_all(&data).expect("write");
        // Half-close: the echo app sees EOF, finishes echoing, then closes.
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let got = r.join().unwrap().expect("read echo");
        got == expect
    });
    assert!(echoed, "echoed bytes differ");
    // The engine saw the whole exchange and both sides closed: the client
    // closed first, so TIME_WAIT is on the kernel side and the engine's
    // connection is gone once the last ACK arrives.
    let ok = wait_until(Duration::from_secs(5), || {
        let s = serve.stats();
        counter(&s, "/engine/app_bytes_out") == LEN as u64 && counter(&s, "/tcp/connections") == 0
    });
    let s = serve.stats();
    assert!(ok, "{s:#}");
    assert_eq!(counter(&s, "/engine/app_bytes_in"), LEN as u64);
    assert_eq!(counter(&s, "/engine/app_accepted"), 1);
    let ss = peer(t, "ss", &["-tan", "state", "time-wait"]);
    assert!(
        String::from_utf8_lossy(&ss.stdout).contains(&format!("{}:{PORT}", t.stack_ip)),
        "no TIME_WAIT on the Linux side: {}",
        String::from_utf8_lossy(&ss.stdout)
    );
    s
}

#[test]
fn an_engine_client_exchanges_data_with_a_linux_server_on_the_default_peer() {
    an_engine_client_exchanges_data_with_a_linux_server(PeerProfile::Default);
}

#[test]
fn an_engine_client_exchanges_data_with_a_linux_server_on_the_tuned_peer() {
    an_engine_client_exchanges_data_with_a_linux_server(PeerProfile::Tuned);
}

/// The engine's own handshake as a client (SYN out, ARP for the server),
/// 200 KiB echoed by a Linux server, the engine closes first.
fn an_engine_client_exchanges_data_with_a_linux_server(profile: PeerProfile) {
    use std::io::{Read, Write};
    use xstack::{
        apps::App,
        runtime::stack::{Stack, StackConfig},
        tcp::TcpError,
    };
    let tb = testbed_with('c', 1, profile);
    let t = &tb.testbed;
    const SERVER_PORT: u16 = 9000;
    const CLIENT_PORT: u16 = 40001;
    const LEN: usize = 200 * 1024;
    // A Linux echo server in the peer namespace: one connection, echo until
    // EOF, then close.
    let peer_ip = t.peer_ip;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let ns = t.peer_ns.clone();
    let server = std::thread::spawn(move || {
        in_netns(&ns, move || {
            let l = std::net::TcpListener::bind((peer_ip, SERVER_PORT)).expect("bind");
            ready_tx.send(()).unwrap();
            let (mut c, _) = l.accept().expect("accept");
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut buf = [0u8; 16384];
            let mut total = 0;
            loop {
                let n = c.read(&mut buf).expect("server read");
                if n == 0 {
                    break;
                }
                c.write_all(&buf[..n]).expect("server write");
                total += n;
            }
            total
        })
    });
    ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();

    let (iface, ip, ns) = (t.stack_if.clone(), t.stack_ip, t.stack_ns.clone());
    let (got, stats) = in_netns(&ns, move || {
        let mut st = Stack::open(&StackConfig {
            iface,
            ip,
            listen: vec![],
            client_ports: vec![CLIENT_PORT],
            app: App::Discard,
            response_bytes: 0,
            tcp: Default::default(),
            xsk: Default::default(),
            ..Default::default()
        })
        .expect("stack");
        let now = st.now();
        let c = st
            .engine()
            .connect(now, ip, CLIENT_PORT, peer_ip, SERVER_PORT)
            .expect("connect");
        let data: Vec<u8> = (0..LEN).map(|i| (i % 253) as u8).collect();
        let (mut sent, mut got, mut shut) = (0usize, Vec::new(), false);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut buf = vec![0u8; 65536];
        while std::time::Instant::now() < deadline {
            st.poll();
            let tcp = st.engine().tcp();
            if sent < LEN {
                match tcp.write(c, &data[sent..]) {
                    Ok(n) => sent += n,
                    Err(TcpError::WouldBlock) => {}
                    Err(e) => panic!("write: {e}"),
                }
            } else if !shut {
                tcp.shutdown(c).expect("shutdown");
                shut = true;
            }
            match tcp.read(c, &mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(TcpError::WouldBlock) => {}
                Err(e) => panic!("read: {e}"),
            }
        }
        let now = st.now();
        let state = st.engine().tcp().state(c).ok();
        let _ = st.engine().tcp().close(now, c);
        // Let the last ACK leave before the socket closes.
        for _ in 0..50 {
            st.poll();
            std::thread::sleep(Duration::from_millis(2));
        }
        let stats = st.engine().stats().clone();
        (got == data, (state, stats))
    });
    assert_eq!(server.join().unwrap(), LEN, "server echoed everything");
    assert!(got, "echoed bytes differ: {stats:?}");
    // The Linux server closed after our FIN: we closed first, so after the
    // exchange our side was in TIME_WAIT (RFC 9293 §3.6), theirs is gone.
    assert_eq!(stats.0, Some(xstack::tcp::State::TimeWait), "{stats:?}");
    assert!(
        stats.1.arp_requests_out >= 1,
        "the engine resolved the server by ARP"
    );
}

#[test]
fn curl_and_wrk_against_the_http_app_succeed() {
    let tb = testbed('h', 1);
    let t = &tb.testbed;
    let serve = Serve::start(t, 80, &["--app", "http", "--response-bytes", "1000"]);
    let url = format!("http://{}:80/", t.stack_ip);
    // Two requests on one keep-alive connection, then one with Connection: close.
    let out = peer(
        t,
        "curl",
        &[
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
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "curl: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        vec!["200 1000 1", "200 1000 0"],
        "keep-alive reused the connection"
    );
    let close = peer(
        t,
        "curl",
        &[
            "-sS",
            "--max-time",
            "5",
            "-i",
            "-H",
            "Connection: close",
            &url,
        ],
    );
    let head = String::from_utf8_lossy(&close.stdout);
    assert!(head.contains("Connection: close"), "{head}");

    let wrk = peer(t, "wrk", &["-t1", "-c8", "-d2s", "--timeout", "2s", &url]);
    let report = String::from_utf8_lossy(&wrk.stdout);
    assert!(wrk.status.success(), "wrk: {report}");
    assert!(
        !report.contains("Socket errors") && !report.contains("Non-2xx"),
        "{report}"
    );
    let requests: u64 = report
        .lines()
        .find_map(|l| l.trim().split_once(" requests in "))
        .and_then(|(n, _)| n.trim().parse().ok())
        .expect("wrk request count");
    assert!(requests > 100, "{report}");
    // Every request wrk counted and curl made was answered; wrk stops with
    // at most one request in flight per connection (8), answered but not
    // counted by it. The server publishes its counters every 50 ms or when
    // it goes idle: wait for the last requests to show.
    let in_range = |n: u64| (requests + 3..=requests + 3 + 8).contains(&n);
    wait_until(Duration::from_secs(3), || {
        in_range(counter(&serve.stats(), "/engine/http_requests"))
    });
    let s = serve.stats();
    let served = counter(&s, "/engine/http_requests");
    assert!(
        (requests + 3..=requests + 3 + 8).contains(&served),
        "served {served}, wrk {requests}: {s:#}"
    );
    assert_eq!(counter(&s, "/engine/http_errors"), 0);
}

#[test]
fn time_wait_table_overflow_is_counted_warned_and_shown_in_stats() {
    let tb = testbed('t', 1);
    let t = &tb.testbed;
    let mut serve = Serve::start(
        t,
        80,
        &["--app", "http", "--sysctl", "tcp_max_tw_buckets=50"],
    );
    let url = format!("http://{}:80/", t.stack_ip);
    // Connection: close: the server closes first, so TIME_WAIT is ours.
    let wrk = peer(
        t,
        "wrk",
        &["-t1", "-c4", "-d1s", "-H", "Connection: close", &url],
    );
    assert!(wrk.status.success());
    let s = serve.stats();
    assert_eq!(counter(&s, "/states/TIME_WAIT"), 50, "{s:#}");
    assert_eq!(counter(&s, "/states/time_wait_max"), 50);
    assert!(counter(&s, "/tcp/TCPTimeWaitOverflow") > 0, "{s:#}");
    assert!(counter(&s, "/tcp/TWEntered") >= 50);
    let text = Command::new(xstack_bin())
        .args(["stats", "--iface", &t.stack_if])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("timewait 50/50"), "{text}");
    assert!(text.contains("TCPTimeWaitOverflow"), "{text}");
    // Memory next to the counters: RSS, and the heap the allocator handed out.
    assert!(text.contains("memory: rss "), "{text}");
    let rss = counter(&s, "/memory/rss_bytes");
    let heap = counter(&s, "/memory/heap_in_use_bytes");
    assert!(rss > 1_000_000 && heap > 100_000 && heap < 1 << 32, "{s:#}");
    let out = serve.stop_with(libc::SIGTERM);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("time wait bucket table overflow"), "{log}");
}

/// A namespace holding a veth pair made exactly as a user would make it
/// (`ip link add a type veth peer name b`: no queue or offload settings),
/// removed on drop, also when the test fails.
struct PlainVeth {
    ns: String,
}

impl PlainVeth {
    fn new() -> PlainVeth {
        let ns = format!("xs-{}-plain", xstack_tests::unique_name('v'));
        let ip = |args: &[&str]| {
            let st = Command::new("ip").args(args).status().expect("run ip");
            assert!(st.success(), "ip {args:?} failed");
        };
        ip(&["netns", "add", &ns]);
        let guard = PlainVeth { ns };
        ip(&[
            "-n", &guard.ns, "link", "add", "veth0", "type", "veth", "peer", "name", "veth1",
        ]);
        ip(&["-n", &guard.ns, "link", "set", "veth0", "up"]);
        ip(&["-n", &guard.ns, "link", "set", "veth1", "up"]);
        guard
    }
}

impl Drop for PlainVeth {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

#[test]
fn serve_starts_on_a_plain_veth_using_its_active_queue_count() {
    let v = PlainVeth::new();
    // What the kernel gives a plain veth: as many allocated rx queues as
    // possible CPUs, one of them active.
    let link = Command::new("ip")
        .args(["-n", &v.ns, "-d", "-j", "link", "show", "veth1"])
        .output()
        .unwrap();
    let link: serde_json::Value = serde_json::from_slice(&link.stdout).unwrap();
    let allocated = link[0]["num_rx_queues"].as_u64().unwrap_or(1);
    let out = Command::new("ip")
        .args(["netns", "exec", &v.ns])
        .arg(xstack_bin())
        .args([
            "serve",
            "--iface",
            "veth1",
            "--ip",
            "198.18.0.2",
            "--port",
            "7000",
        ])
        .args(["--duration", "1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "serve on a plain veth ({allocated} allocated rx queues) failed: {stderr}"
    );
    assert!(!stderr.contains("Invalid argument"), "{stderr}");
    // Serving one of the allocated queues is no reason to warn: it is the only active one.
    assert!(!stderr.contains("only 1 are served"), "{stderr}");
    let left = Command::new("ip")
        .args(["-n", &v.ns, "-j", "link", "show", "veth1"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&left.stdout).contains("\"xdp\""),
        "XDP left attached after --duration ended"
    );
}

// --- The control socket and the lock files (issue 11, "Also") ---

/// Directory of control sockets and lock files, as `xstack` computes it.
fn run_dir() -> std::path::PathBuf {
    std::env::var_os("XSTACK_RUN_DIR")
        .map(Into::into)
        .unwrap_or_else(|| "/run/xstack".into())
}

/// Inode of network namespace `ns`: what names its sockets and locks.
fn netns_inode(ns: &str) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/run/netns/{ns}"))
        .expect("netns file")
        .ino()
}

/// The control socket and the two lock files of a serve on the testbed's
/// stack interface and address.
fn instance_files(t: &xstack_tests::Testbed) -> [std::path::PathBuf; 3] {
    let (dir, ns) = (run_dir(), netns_inode(&t.stack_ns));
    [
        dir.join(format!("{}.{ns}.sock", t.stack_if)),
        dir.join(format!("iface-{}.{ns}.lock", t.stack_if)),
        dir.join(format!("addr-{}.{ns}.lock", t.stack_ip)),
    ]
}

/// `xstack ARGS` run as the unprivileged uid/gid 65534 with no groups.
fn xstack_as_nobody(args: &[&str]) -> std::process::Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(xstack_bin())
        .args(args)
        .output()
        .expect("setpriv (util-linux)")
}

#[test]
fn the_control_socket_is_private_to_its_owner() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let tb = testbed('c', 1);
    let t = &tb.testbed;
    let serve = Serve::start(t, PORT, &[]);
    let [sock, _, _] = instance_files(t);
    let m = std::fs::metadata(&sock).expect("control socket");
    assert_eq!(m.permissions().mode() & 0o7777, 0o600, "{}", sock.display());
    // SAFETY: geteuid has no preconditions.
    assert_eq!(m.uid(), unsafe { libc::geteuid() });
    let dir = std::fs::metadata(run_dir()).unwrap();
    assert_eq!(
        dir.permissions().mode() & 0o022,
        0,
        "run dir writable by others"
    );
    // Another user cannot even connect; the owner can.
    let out = xstack_as_nobody(&["stats", "--json", "--iface", &serve.iface]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert_one_line(&err, "permission denied");
    serve.stats();
}

/// Proves the server's SO_PEERCRED check on a real connection from another
/// uid. The socket is 0600, so such a peer cannot connect in normal use:
/// the test widens this one socket to 0666 to reach the check behind it.
#[test]
fn set_from_another_user_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let tb = testbed('u', 1);
    let t = &tb.testbed;
    let serve = Serve::start(t, PORT, &[]);
    let [sock, _, _] = instance_files(t);
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    let before = serve.stats()["fastpath"]["syncookies"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let want = if before == "always" {
        "never"
    } else {
        "always"
    };
    let setting = format!("syncookies={want}");

    // Reading is allowed to whoever can connect.
    let out = xstack_as_nobody(&["stats", "--json", "--iface", &serve.iface]);
    assert!(
        out.status.success(),
        "stats as uid 65534: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Changing is not.
    let out = xstack_as_nobody(&["config", "--iface", &serve.iface, &setting]);
    assert!(!out.status.success(), "set as uid 65534 was accepted");
    assert_one_line(&String::from_utf8_lossy(&out.stderr), "refused");
    assert_eq!(serve.stats()["fastpath"]["syncookies"], before.as_str());

    // The owner (root here) still may.
    let out = Command::new(xstack_bin())
        .args(["config", "--iface", &serve.iface, &setting])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "set as the owner: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(serve.stats()["fastpath"]["syncookies"], want);
}

#[test]
fn a_stale_lock_file_is_reclaimed() {
    let tb = testbed('k', 1);
    let t = &tb.testbed;
    let [_, iface_lock, addr_lock] = instance_files(t);
    std::fs::create_dir_all(run_dir()).unwrap();
    // As an instance killed with SIGKILL leaves them: its pid inside, no
    // flock held. One names a dead pid, the other a live process that does
    // not hold the lock (a reused pid): the flock, not the pid, decides.
    let mut dead = Command::new("true").spawn().unwrap();
    let dead_pid = dead.id();
    dead.wait().unwrap();
    let leave_stale = || {
        std::fs::write(&iface_lock, dead_pid.to_string()).unwrap();
        std::fs::write(&addr_lock, std::process::id().to_string()).unwrap();
    };

    // An error after the locks: still one line, and the files are gone.
    leave_stale();
    let out = t
        .stack_command(xstack_bin().to_str().unwrap())
        .env("XSTACK_BPFFS", "/tmp")
        .args(["serve", "--iface", &t.stack_if, "--ip"])
        .args([&t.stack_ip.to_string(), "--port", "80", "--pin-maps"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_one_line(&err, "bpffs is not mounted");
    assert!(!iface_lock.exists() && !addr_lock.exists(), "{err}");

    leave_stale();
    let mut serve = Serve::start(t, PORT, &[]);
    let out = serve.stop_with(libc::SIGTERM);
    let stderr = String::from_utf8_lossy(&out.stderr);
    for lock in [&iface_lock, &addr_lock] {
        let name = lock.display().to_string();
        assert!(
            stderr
                .lines()
                .any(|l| l.contains("reclaimed a stale lock file") && l.contains(&name)),
            "no reclaim line for {name}: {stderr}"
        );
        assert!(!lock.exists(), "{name} left after exit");
    }
    assert!(stderr.contains(&format!("pid {dead_pid}")), "{stderr}");
}

#[test]
fn lock_files_are_removed_on_exit() {
    let tb = testbed('l', 1);
    let t = &tb.testbed;
    let files = instance_files(t);
    let assert_gone = |how: &str| {
        for f in &files {
            assert!(!f.exists(), "{} left after {how}", f.display());
        }
    };

    for signal in [libc::SIGINT, libc::SIGTERM] {
        let mut serve = Serve::start(t, PORT, &[]);
        assert!(files.iter().all(|f| f.exists()), "{files:?}");
        let out = serve.stop_with(signal);
        assert!(out.status.success(), "{out:?}");
        assert_gone(&format!("signal {signal}"));
    }

    let base = [
        "serve",
        "--iface",
        &t.stack_if,
        "--ip",
        &t.stack_ip.to_string(),
        "--port",
        "80",
    ]
    .map(String::from);
    let out = t
        .stack_command(xstack_bin().to_str().unwrap())
        .args(&base)
        .args(["--duration", "1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_gone("--duration");

    // An error after the locks were taken (bpffs missing for --pin-maps).
    let out = t
        .stack_command(xstack_bin().to_str().unwrap())
        .env("XSTACK_BPFFS", "/tmp")
        .args(&base)
        .arg("--pin-maps")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_one_line(
        &String::from_utf8_lossy(&out.stderr),
        "bpffs is not mounted",
    );
    assert_gone("an error");
}

/// Issue 11, failure 4: `connect` to a port the engine does not serve on
/// its own address waited for the client's timeout (the kernel got the SYN
/// and did not have the address). A host answers RST at once.
fn closed_port_is_refused_at_once(profile: PeerProfile) {
    let tb = testbed_with('c', 1, profile);
    let t = &tb.testbed;
    let serve = Serve::start(t, PORT, &["--app", "echo"]);
    let target = SocketAddr::from((t.stack_ip, PORT + 1));
    let (result, took) = in_netns(&t.peer_ns, move || {
        let t0 = std::time::Instant::now();
        let r = TcpStream::connect_timeout(&target, Duration::from_secs(3));
        (r.map(|_| ()).map_err(|e| e.kind()), t0.elapsed())
    });
    assert_eq!(
        result,
        Err(std::io::ErrorKind::ConnectionRefused),
        "after {took:?}"
    );
    assert!(took < Duration::from_secs(1), "refused only after {took:?}");
    // Engine counters publish every 50 ms.
    wait_until(Duration::from_secs(5), || {
        counter(&serve.stats(), "/tcp/rst_out") >= 1
    });
    let s = serve.stats();
    assert!(counter(&s, "/xdp/redirect_tcp_closed_port") >= 1, "{s:#}");
    assert!(counter(&s, "/tcp/rst_out") >= 1, "{s:#}");
    // The served port still works.
    let ok = in_netns(&t.peer_ns, move || {
        TcpStream::connect_timeout(&SocketAddr::from((STACK, PORT)), Duration::from_secs(3)).is_ok()
    });
    assert!(ok);
}

const STACK: std::net::Ipv4Addr = xstack_tests::STACK_IP;

#[test]
fn a_closed_port_on_the_engines_own_address_is_refused_at_once_on_the_default_peer() {
    closed_port_is_refused_at_once(PeerProfile::Default);
}

#[test]
fn a_closed_port_on_the_engines_own_address_is_refused_at_once_on_the_tuned_peer() {
    closed_port_is_refused_at_once(PeerProfile::Tuned);
}

/// When the kernel has the address too, ports the engine does not serve
/// stay with the kernel: a kernel listener on another port of the same
/// address is reached.
#[test]
fn ports_the_engine_does_not_serve_on_a_shared_address_stay_with_the_kernel() {
    use std::io::Read;
    let tb = testbed_with('k', 1, PeerProfile::Default);
    let t = &tb.testbed;
    let ip = |args: &[&str]| {
        let st = Command::new("ip").args(args).status().unwrap();
        assert!(st.success(), "ip {args:?}");
    };
    ip(&[
        "-n",
        &t.stack_ns,
        "addr",
        "add",
        &format!("{}/24", t.stack_ip),
        "dev",
        &t.stack_if,
    ]);
    // ARP for the shared address goes to the engine (XDP redirects it), so
    // the kernel learns the peer's MAC from nothing: give it a neighbour.
    ip(&[
        "-n",
        &t.stack_ns,
        "neigh",
        "replace",
        &t.peer_ip.to_string(),
        "lladdr",
        &xstack::tools::testbed::PEER_MAC.to_string(),
        "dev",
        &t.stack_if,
    ]);
    let addr = SocketAddr::from((t.stack_ip, PORT + 1));
    let listener = in_netns(&t.stack_ns, move || {
        std::net::TcpListener::bind(addr).unwrap()
    });
    let server = std::thread::spawn(move || {
        let (mut c, _) = listener.accept().unwrap();
        let mut b = [0u8; 5];
        c.read_exact(&mut b).map(|_| b)
    });
    let serve = Serve::start(t, PORT, &["--app", "echo"]);
    let sent = in_netns(&t.peer_ns, move || {
        use std::io::Write;
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3)).expect("kernel port");
        s.write_all(b"hello").is_ok()
    });
    assert!(sent);
    assert_eq!(&server.join().unwrap().unwrap(), b"hello");
    let s = serve.stats();
    assert_eq!(counter(&s, "/xdp/redirect_tcp_closed_port"), 0, "{s:#}");
    assert!(counter(&s, "/xdp/pass_port_not_owned") >= 1, "{s:#}");
}

/// A file of `len` pseudo-random bytes (xorshift, seeded by `len`) in a new
/// temporary directory, readable from the peer namespace (namespaces share
/// the file system).
fn random_file(dir: &std::path::Path, len: usize) -> std::path::PathBuf {
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ len as u64;
    let mut data = Vec::with_capacity(len + 8);
    while data.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    data.truncate(len);
    let path = dir.join(format!("body-{len}"));
    std::fs::write(&path, data).expect("write body file");
    path
}

/// SHA-256 of a file, by coreutils' sha256sum.
fn sha256(path: &std::path::Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("sha256sum output")
        .to_string()
}

/// A directory for request and response bodies, removed when dropped.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let p = std::env::temp_dir().join(xstack_tests::unique_name('b'));
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `curl --data-binary @body url...` from the peer namespace, the responses
/// written to `out`; returns curl's `-w` lines: code, bytes uploaded, bytes
/// downloaded, new connections.
fn curl_post(
    t: &xstack_tests::Testbed,
    body: &std::path::Path,
    out: &std::path::Path,
    urls: &[&str],
) -> Vec<String> {
    let data = format!("@{}", body.display());
    let out = out.display().to_string();
    let mut args = vec!["-sS", "--max-time", "30", "--data-binary", &data];
    for u in urls {
        args.extend(["-o", &out, *u]);
    }
    args.extend([
        "-w",
        "%{http_code} %{size_upload} %{size_download} %{num_connects}\n",
    ]);
    let r = peer(t, "curl", &args);
    let text = String::from_utf8_lossy(&r.stdout).to_string();
    assert!(
        r.status.success(),
        "curl: {text} {}",
        String::from_utf8_lossy(&r.stderr)
    );
    text.lines().map(str::to_string).collect()
}

#[test]
fn curl_request_bodies_of_1_and_16_mib_are_accepted_and_echoed_byte_exact() {
    let tb = testbed('c', 1);
    let t = &tb.testbed;
    let dir = TempDir::new();
    let url = format!("http://{}:80/", t.stack_ip);
    let out = dir.0.join("response");
    let sizes = [1 << 20, 16 << 20];
    let files: Vec<_> = sizes.iter().map(|&n| random_file(&dir.0, n)).collect();

    // Read and dropped: the fixed response, twice on one connection (curl
    // sends the second POST where the first body ended).
    let mut serve = Serve::start(t, 80, &["--app", "http", "--response-bytes", "1000"]);
    for (f, n) in files.iter().zip(sizes) {
        assert_eq!(
            curl_post(t, f, &out, &[&url, &url]),
            vec![format!("200 {n} 1000 1"), format!("200 {n} 1000 0")],
            "POST of {n} bytes"
        );
    }
    wait_until(Duration::from_secs(5), || {
        counter(&serve.stats(), "/engine/http_requests") >= 4
    });
    let s = serve.stats();
    assert_eq!(counter(&s, "/engine/http_requests"), 4, "{s:#}");
    assert_eq!(counter(&s, "/engine/http_errors"), 0, "{s:#}");
    serve.stop_with(libc::SIGTERM);

    // Echoed: what comes back is what was sent.
    let serve = Serve::start(t, 80, &["--app", "http", "--echo-body"]);
    for (f, n) in files.iter().zip(sizes) {
        assert_eq!(
            curl_post(t, f, &out, &[&url]),
            vec![format!("200 {n} {n} 1")],
            "echoed POST of {n} bytes"
        );
        assert_eq!(sha256(&out), sha256(f), "echoed body of {n} bytes");
    }
    wait_until(Duration::from_secs(5), || {
        counter(&serve.stats(), "/engine/http_requests") >= 2
    });
    let s = serve.stats();
    assert_eq!(counter(&s, "/engine/http_requests"), 2, "{s:#}");
    assert_eq!(counter(&s, "/engine/http_errors"), 0, "{s:#}");
}

#[test]
fn request_bodies_over_max_body_get_413() {
    let tb = testbed('m', 1);
    let t = &tb.testbed;
    let dir = TempDir::new();
    let url = format!("http://{}:80/", t.stack_ip);
    let out = dir.0.join("response");
    let serve = Serve::start(t, 80, &["--app", "http", "--max-body", "1048576"]);
    // At the limit: accepted.
    let ok = random_file(&dir.0, 1 << 20);
    assert_eq!(
        curl_post(t, &ok, &out, &[&url]),
        vec![format!("200 {} 64 1", 1 << 20)]
    );
    // Over it with `Expect: 100-continue` (curl sends it above 1 MiB): 413
    // before any body byte is sent.
    let big = random_file(&dir.0, (1 << 20) + 1);
    assert_eq!(curl_post(t, &big, &out, &[&url]), vec!["413 0 0 1"]);
    // Over it without Expect: the body is already on its way; the 413 still
    // reaches curl (half-close and drain, no RST).
    let nexp = {
        let data = format!("@{}", big.display());
        let r = peer(
            t,
            "curl",
            &[
                "-sS",
                "--max-time",
                "10",
                "-H",
                "Expect:",
                "--data-binary",
                &data,
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                &url,
            ],
        );
        String::from_utf8_lossy(&r.stdout).to_string()
    };
    assert_eq!(nexp, "413");
    // The counters publish every 50 ms: wait for the last error to show.
    wait_until(Duration::from_secs(5), || {
        counter(&serve.stats(), "/engine/http_errors") >= 2
    });
    let s = serve.stats();
    assert_eq!(counter(&s, "/engine/http_requests"), 1, "{s:#}");
    assert_eq!(counter(&s, "/engine/http_errors"), 2, "{s:#}");
}

/// `xstack ss` lists the engine's connections as `ss -tnoi` lists the
/// kernel's: a Linux client that sent 1,000 bytes to the echo app and read
/// them back shows as ESTAB (ss's name) with its own port, the bytes both ways,
/// empty queues, a window and an RTT; `--state` filters; `--json` parses.
#[test]
fn xstack_ss_lists_a_connection_with_its_bytes_windows_and_rtt() {
    use std::io::{Read, Write};
    let tb = testbed('q', 1);
    let t = &tb.testbed;
    let serve = Serve::start(t, PORT, &["--app", "echo"]);
    let target = SocketAddr::from((t.stack_ip, PORT));
    let iface = t.stack_if.clone();
    let (local, json, text, none) = in_netns(&t.peer_ns, move || {
        let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(5)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(&[7u8; 1000]).unwrap();
        let mut back = [0u8; 1000];
        s.read_exact(&mut back).expect("echo");
        let ss = |args: &[&str]| {
            let o = Command::new(xstack_bin())
                .args(["ss", "--iface", &iface])
                .args(args)
                .output()
                .expect("run xstack ss");
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            String::from_utf8_lossy(&o.stdout).into_owned()
        };
        // The delayed ACK of the last echo may still be on its way.
        std::thread::sleep(Duration::from_millis(300));
        let json = ss(&["--json"]);
        let text = ss(&[]);
        let none = ss(&["--state", "close-wait", "--json"]);
        (s.local_addr().unwrap(), json, text, none)
    });
    let list: serde_json::Value = serde_json::from_str(&json).expect("ss --json is JSON");
    let list = list.as_array().expect("a list");
    assert_eq!(list.len(), 1, "{json}");
    let c = &list[0];
    assert_eq!(c["state"], "ESTAB", "{c:#}");
    assert_eq!(c["peer"], local.to_string(), "{c:#}");
    assert_eq!(c["local"], target.to_string(), "{c:#}");
    assert_eq!(c["bytes_received"], 1000, "{c:#}");
    assert_eq!(c["bytes_acked"], 1000, "{c:#}");
    assert_eq!(c["bytes_sent"], 1000, "{c:#}");
    assert_eq!(c["unacked"], 0, "{c:#}");
    assert_eq!(c["recv_q"], 0, "{c:#}");
    assert_eq!(c["send_q"], 0, "{c:#}");
    assert!(c["snd_wnd"].as_u64().unwrap_or(0) > 0, "{c:#}");
    assert!(c["rcv_wnd"].as_u64().unwrap_or(0) > 0, "{c:#}");
    assert!(c["rtt_ms"].as_f64().is_some(), "{c:#}");
    assert_eq!(c["ts"], true, "Linux offers timestamps: {c:#}");
    assert!(text.starts_with("State"), "{text}");
    assert!(text.contains("ESTAB "), "{text}");
    assert!(text.contains(&local.to_string()), "{text}");
    assert!(text.contains("bytes_received:1000"), "{text}");
    assert_eq!(none.trim(), "[]", "no CLOSE_WAIT connection: {none}");
    drop(serve);
}

/// A link whose MTU is below 1,500 on the stack side (a tunnel, a lab
/// VLAN) while the Linux peer keeps 1,500: the MSS xstack offers follows
/// its own link (MTU − 40), so the peer's full-sized segments fit, and a
/// 4 MiB echo each way is byte-exact. With a fixed MSS of 1460 every
/// full-sized segment from the peer was dropped by the stack's interface.
#[test]
fn a_stack_link_mtu_below_1500_sets_the_mss_and_transfers_complete() {
    use std::io::{Read, Write};
    use xstack_tests::{hex, Digest, Sha256};
    let tb = testbed('m', 1);
    let t = &tb.testbed;
    let st = Command::new("ip")
        .args([
            "netns",
            "exec",
            &t.stack_ns,
            "ip",
            "link",
            "set",
            "dev",
            &t.stack_if,
            "mtu",
            "1400",
        ])
        .status()
        .expect("ip link set mtu");
    assert!(st.success());
    let serve = Serve::start(t, PORT, &["--app", "echo"]);
    let target = SocketAddr::from((t.stack_ip, PORT));
    let data: Vec<u8> = (0..4u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let want = hex(&Sha256::digest(&data));
    let (got, mss) = in_netns(&t.peer_ns, move || {
        let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(5)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut r = s.try_clone().unwrap();
        let reader = std::thread::spawn(move || {
            let (mut h, mut buf) = (Sha256::new(), vec![0u8; 65536]);
            loop {
                match r.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => h.update(&buf[..n]),
                    Err(e) => return format!("read: {e}"),
                }
            }
            hex(&h.finalize())
        });
        if let Err(e) = s.write_all(&data) {
            let _ = s.shutdown(std::net::Shutdown::Both);
            return (format!("write: {e}"), String::new());
        }
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let ss = Command::new("ss")
            .args(["-tni", "dst", &target.to_string()])
            .output()
            .unwrap();
        (
            reader.join().expect("reader"),
            String::from_utf8_lossy(&ss.stdout).into_owned(),
        )
    });
    assert_eq!(got, want, "echo differs");
    // The peer's effective MSS: our 1360 less its timestamps option.
    assert!(mss.contains(" mss:1348 "), "{mss}");
    drop(serve);
}
