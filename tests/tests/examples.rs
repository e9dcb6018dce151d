//! The examples of the application API (`xstack::rt` + `xstack::net`,
//! issue 16) against Linux peers on the testbed: the example runs in the
//! stack namespace on AF_XDP, kernel clients run in the peer namespace.
//!
//! The examples are built by `cargo build -p stack-user --examples`
//! (`cargo xtask test` does it); `$XSTACK_EXAMPLES` names their directory,
//! else the workspace's `target/debug/examples`. Every test is bounded:
//! the example stops by itself (`--duration`), each socket call has a
//! timeout and the whole exchange a deadline.

use std::{
    io::{Read, Write},
    net::{Shutdown, SocketAddr, TcpStream},
    path::PathBuf,
    process::{Child, Stdio},
    thread,
    time::{Duration, Instant},
};

use xstack_tests::{
    hex, in_netns, pattern, read_to_eof_hashing, sha256_hex, testbed_with, Digest, PeerProfile,
    Sha256, Testbed,
};

/// Bytes the echo test sends (and must get back).
const ECHO_BYTES: usize = 16 << 20;
const PORT: u16 = 7007;
/// No exchange of this file may take longer.
const DEADLINE: Duration = Duration::from_secs(60);
/// A socket that moves no byte for this long has stalled.
const IDLE: Duration = Duration::from_secs(10);

/// An example binary.
fn example_bin(name: &str) -> PathBuf {
    let dir = std::env::var_os("XSTACK_EXAMPLES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/examples")
        });
    let bin = dir.join(name);
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build -p stack-user --examples` first",
        bin.display()
    );
    bin
}

/// A running example in the stack namespace; stopped (SIGTERM, then
/// SIGKILL) by its pid when dropped.
struct Example {
    child: Option<Child>,
}

impl Example {
    /// Starts example `name` on xstack in the stack namespace.
    fn start(t: &Testbed, name: &str, extra: &[&str]) -> Example {
        let bin = example_bin(name);
        let mut c = t.stack_command(bin.to_str().expect("utf-8 path"));
        c.args(["--iface", &t.stack_if, "--ip", &t.stack_ip.to_string()])
            .args(extra);
        Example::spawn(c)
    }

    /// Starts example `name` in the peer namespace (its `--kernel` mode).
    fn start_in_peer(t: &Testbed, name: &str, extra: &[&str]) -> Example {
        let bin = example_bin(name);
        let mut c = t.peer_command(bin.to_str().expect("utf-8 path"));
        c.args(extra);
        Example::spawn(c)
    }

    fn spawn(mut c: std::process::Command) -> Example {
        let child = c
            .args(["--duration", "90"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn example");
        Example { child: Some(child) }
    }

    /// Stops it; returns its stderr.
    fn stop(&mut self) -> String {
        let Some(mut child) = self.child.take() else {
            return String::new();
        };
        // SAFETY: signalling the child we spawned, by its pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end && child.try_wait().ok().flatten().is_none() {
            thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        child
            .wait_with_output()
            .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Connects from the current (peer) namespace, retrying while the example
/// is still coming up.
fn connect_retrying(target: SocketAddr) -> Result<TcpStream, String> {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        match TcpStream::connect_timeout(&target, Duration::from_secs(1)) {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() >= end => return Err(format!("connect: {e}")),
            Err(_) => thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// Writes `data` to the echo server while a second thread reads the echo,
/// half-closes, and reads to EOF; returns the echo's length and SHA-256.
fn echo_through(target: SocketAddr, data: &'static [u8]) -> Result<(usize, String), String> {
    let start = Instant::now();
    let mut s = connect_retrying(target)?;
    s.set_read_timeout(Some(IDLE)).map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(IDLE)).map_err(|e| e.to_string())?;
    let mut r = s.try_clone().map_err(|e| e.to_string())?;
    let reader = thread::spawn(move || read_to_eof_hashing(&mut r, start, DEADLINE, IDLE));
    let mut sent = Ok(());
    for (i, chunk) in data.chunks(256 << 10).enumerate() {
        if start.elapsed() > DEADLINE {
            sent = Err(format!("write: deadline passed after {} bytes", i << 18));
            break;
        }
        if let Err(e) = s.write_all(chunk) {
            sent = Err(format!("write: {e} after about {} bytes", i << 18));
            break;
        }
    }
    match &sent {
        Ok(()) => s.shutdown(Shutdown::Write).map_err(|e| e.to_string())?,
        Err(_) => {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
    let got = reader.join().map_err(|_| "reader panicked".to_string())?;
    sent?;
    got
}

/// `conns` Linux clients at once, each echoing its own `len`-byte slice
/// of one stream through the echo example on `queues` queues; every echo
/// must be SHA-equal.
fn linux_clients_echo_through_echo_example(
    profile: PeerProfile,
    queues: u32,
    conns: usize,
    len: usize,
) {
    static DATA: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let data: &'static [u8] = DATA.get_or_init(|| pattern(16, ECHO_BYTES));
    assert!(conns * len <= data.len());
    let tb = testbed_with('e', queues, profile);
    let t = &tb.testbed;
    let mut ex = Example::start(t, "echo_server", &["--port", &PORT.to_string()]);
    let target = SocketAddr::from((t.stack_ip, PORT));
    let start = Instant::now();
    let results = in_netns(&t.peer_ns, move || {
        let threads: Vec<_> = (0..conns)
            .map(|i| thread::spawn(move || echo_through(target, &data[i * len..(i + 1) * len])))
            .collect();
        threads
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("client panicked".into())))
            .collect::<Vec<_>>()
    });
    let took = start.elapsed();
    let log = ex.stop();
    let failures: Vec<String> = results
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let want = sha256_hex(&data[i * len..(i + 1) * len]);
            match r {
                Ok((n, h)) if *n == len && *h == want => None,
                Ok((n, h)) => Some(format!(
                    "connection {i}: echo of {n} bytes, SHA-256 {h}; want {len}, {want}"
                )),
                Err(e) => Some(format!("connection {i}: {e}")),
            }
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {conns} echoes failed:\n{}\nexample:\n{log}",
        failures.len(),
        failures.join("\n")
    );
    // Thread per queue: every queue served some of the connections (the
    // chance that 16 flows all hash to one of two queues is 2^-15).
    for q in 0..queues {
        let served = log
            .lines()
            .find_map(|l| l.strip_prefix(&format!("echo_server: queue {q}: ")))
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse::<usize>().ok());
        assert!(
            served.is_some_and(|n| n > 0 || conns < 8),
            "queue {q} served no connection:\n{log}"
        );
    }
    eprintln!(
        "examples: echo_server ({profile:?} peer, {queues} queue(s)): {conns} x {len} B each way in {:.2} s",
        took.as_secs_f64()
    );
}

#[test]
fn linux_client_echoes_16mib_sha_equal_through_echo_server_example_default_peer() {
    linux_clients_echo_through_echo_example(PeerProfile::Default, 1, 1, ECHO_BYTES);
}

#[test]
fn linux_client_echoes_16mib_sha_equal_through_echo_server_example_tuned_peer() {
    linux_clients_echo_through_echo_example(PeerProfile::Tuned, 1, 1, ECHO_BYTES);
}

#[test]
fn linux_clients_echo_16_parallel_streams_through_echo_server_example_on_two_queues() {
    linux_clients_echo_through_echo_example(PeerProfile::Default, 2, 16, ECHO_BYTES / 16);
}

#[test]
fn dual_stack_echo_server_example_echoes_sha_equal_over_ipv6_and_ipv4() {
    // One listener bound to the port alone on a stack with 198.18.0.2 and
    // 2001:2::2: a Linux client of each family echoes through it at once.
    static DATA: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let data: &'static [u8] = DATA.get_or_init(|| pattern(26, 8 << 20));
    let (v6_part, v4_part) = data.split_at(6 << 20);
    let tb = testbed_with('d', 1, PeerProfile::Default);
    let t = &tb.testbed;
    let v6 = t.stack_ip6.to_string();
    let mut ex = Example::start(
        t,
        "echo_server",
        &["--port", &PORT.to_string(), "--ip", &v6],
    );
    let (to6, to4) = (
        SocketAddr::from((t.stack_ip6, PORT)),
        SocketAddr::from((t.stack_ip, PORT)),
    );
    let (r6, r4) = in_netns(&t.peer_ns, move || {
        let h6 = thread::spawn(move || echo_through(to6, v6_part));
        let h4 = thread::spawn(move || echo_through(to4, v4_part));
        let join = |h: thread::JoinHandle<Result<(usize, String), String>>| {
            h.join().unwrap_or_else(|_| Err("client panicked".into()))
        };
        (join(h6), join(h4))
    });
    let log = ex.stop();
    for (family, r, part) in [("IPv6", r6, v6_part), ("IPv4", r4, v4_part)] {
        let (n, h) = r.unwrap_or_else(|e| panic!("{family} echo: {e}\nexample:\n{log}"));
        assert_eq!(n, part.len(), "{family} echo length\n{log}");
        assert_eq!(h, sha256_hex(part), "{family} echo SHA-256\n{log}");
    }
    assert!(
        log.contains("echo_server: queue 0 listens on [::]:7007"),
        "{log}"
    );
    assert!(
        log.contains("echo_server: queue 0: 2 connection(s)"),
        "{log}"
    );
}

/// curl in the peer namespace (each call bounded by `--max-time`);
/// returns whether it succeeded and its stdout (stderr on failure).
fn curl(t: &Testbed, args: &[&str]) -> (bool, Vec<u8>) {
    let out = t
        .peer_command("curl")
        .args(["-sS", "--max-time", "10"])
        .args(args)
        .output()
        .expect("run curl");
    if out.status.success() {
        (true, out.stdout)
    } else {
        (false, out.stderr)
    }
}

/// The body `hyper_server` answers GET with for `--body-bytes len`.
fn hello_body(len: usize) -> Vec<u8> {
    b"Hello, world\n"
        .iter()
        .copied()
        .cycle()
        .take(len)
        .collect()
}

/// GET (fixed body, twice on one keep-alive connection) and POST (a 4 MiB
/// request body, its length answered) with curl against `url`.
fn curl_get_and_post(
    t: &Testbed,
    extra: &[&str],
    url: &str,
    body_len: usize,
    log: impl Fn() -> String,
) {
    let curl = |t: &Testbed, args: &[&str]| {
        let all: Vec<&str> = extra.iter().chain(args).copied().collect();
        curl(t, &all)
    };
    // The server may still be coming up.
    let end = Instant::now() + Duration::from_secs(20);
    let (mut ok, mut got) = curl(t, &[url]);
    while !ok && Instant::now() < end {
        thread::sleep(Duration::from_millis(200));
        (ok, got) = curl(t, &[url]);
    }
    assert!(
        ok,
        "GET {url}: {}\n{}",
        String::from_utf8_lossy(&got),
        log()
    );
    assert!(
        got == hello_body(body_len),
        "GET {url}: {} bytes, not the fixed body",
        got.len()
    );
    // Two requests, one connection (curl reuses it).
    let (ok, got) = curl(t, &["-w", "%{num_connects}\n", url, url]);
    assert!(ok, "GET x2: {}", String::from_utf8_lossy(&got));
    let mut want = hello_body(body_len);
    want.extend_from_slice(b"1\n");
    want.extend(hello_body(body_len));
    want.extend_from_slice(b"0\n");
    assert!(
        got == want,
        "GET x2 on one connection: {:?}",
        String::from_utf8_lossy(&got[got.len().saturating_sub(40)..])
    );
    // A request body.
    // One directory per test: the xstack and kernel variants run at once
    // in this process, and each removes its own when done.
    let dir = std::env::temp_dir().join(format!(
        "xstack-hyper-{}-{}",
        std::process::id(),
        t.stack_if
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("body");
    std::fs::write(&file, pattern(7, 4 << 20)).expect("write body");
    let arg = format!("@{}", file.display());
    let (ok, got) = curl(t, &["--data-binary", &arg, url]);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(ok, "POST: {}\n{}", String::from_utf8_lossy(&got), log());
    assert_eq!(String::from_utf8_lossy(&got), format!("{}\n", 4 << 20));
}

#[test]
fn curl_gets_fixed_body_and_posts_4mib_to_hyper_server_example() {
    let tb = testbed_with('h', 1, PeerProfile::Default);
    let t = &tb.testbed;
    let ex = Example::start(
        t,
        "hyper_server",
        &["--port", "8080", "--body-bytes", "100000"],
    );
    let url = format!("http://{}:8080/", t.stack_ip);
    let start = Instant::now();
    curl_get_and_post(t, &[], &url, 100_000, || {
        format!("{:?}", ex.child.as_ref().map(|c| c.id()))
    });
    eprintln!(
        "examples: hyper_server: curl GET x3 + POST 4 MiB in {:.2} s",
        start.elapsed().as_secs_f64()
    );
}

#[test]
fn curl_6_gets_and_posts_to_the_hyper_server_example_on_ipv6() {
    // hyper_server on 2001:2::2 alone (an IPv6-only xstack::rt), curl -6
    // from the peer: GET twice on one connection and a 4 MiB POST.
    let tb = testbed_with('6', 1, PeerProfile::Default);
    let t = &tb.testbed;
    let bin = example_bin("hyper_server");
    let mut c = t.stack_command(bin.to_str().expect("utf-8 path"));
    c.args(["--iface", &t.stack_if, "--ip", &t.stack_ip6.to_string()])
        .args(["--port", "8080", "--body-bytes", "100000"]);
    let ex = Example::spawn(c);
    let url = format!("http://[{}]:8080/", t.stack_ip6);
    curl_get_and_post(t, &["-6"], &url, 100_000, || {
        format!("{:?}", ex.child.as_ref().map(|c| c.id()))
    });
}

#[test]
fn wrk_against_hyper_server_example_gets_only_2xx() {
    let tb = testbed_with('w', 1, PeerProfile::Default);
    let t = &tb.testbed;
    let mut ex = Example::start(t, "hyper_server", &["--port", "8080"]);
    let url = format!("http://{}:8080/", t.stack_ip);
    let end = Instant::now() + Duration::from_secs(20);
    while !curl(t, &[&url]).0 && Instant::now() < end {
        thread::sleep(Duration::from_millis(200));
    }
    let out = t
        .peer_command("wrk")
        .args(["-t1", "-c16", "-d2s", "--timeout", "2s", &url])
        .output()
        .expect("run wrk");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let log = ex.stop();
    assert!(
        out.status.success(),
        "wrk: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let requests: u64 = text
        .lines()
        .find_map(|l| l.trim().split_once(" requests in "))
        .and_then(|(n, _)| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(
        requests > 100,
        "wrk made {requests} requests:\n{text}\n{log}"
    );
    assert!(
        !text.contains("Non-2xx") && !text.contains("Socket errors"),
        "wrk saw errors:\n{text}\n{log}"
    );
    let rate = text
        .lines()
        .find(|l| l.starts_with("Requests/sec"))
        .unwrap_or("")
        .trim();
    eprintln!("examples: hyper_server under wrk -c16 -d2s: {requests} requests ({rate})");
}

#[test]
fn hyper_server_example_kernel_mode_serves_the_same_requests() {
    let tb = testbed_with('k', 1, PeerProfile::Default);
    let t = &tb.testbed;
    let ex = Example::start_in_peer(
        t,
        "hyper_server",
        &[
            "--kernel",
            "--ip",
            "127.0.0.1",
            "--port",
            "8080",
            "--body-bytes",
            "100000",
        ],
    );
    curl_get_and_post(t, &[], "http://127.0.0.1:8080/", 100_000, || {
        format!("{:?}", ex.child.as_ref().map(|c| c.id()))
    });
}

/// Runs `c` to its end, killed (by pid) past `limit`.
fn output_within(mut c: std::process::Command, limit: Duration) -> std::process::Output {
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let end = Instant::now() + limit;
    while Instant::now() < end && child.try_wait().ok().flatten().is_none() {
        thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    child.wait_with_output().expect("output")
}

/// A Linux echo server in the peer namespace for `conns` connections: each
/// echoes what it reads and hashes it; returns each connection's byte
/// count and SHA-256 (in accept order) or why it failed.
fn linux_echo_server(
    t: &Testbed,
    ip: std::net::IpAddr,
    port: u16,
    conns: usize,
) -> thread::JoinHandle<Result<Vec<(usize, String)>, String>> {
    let ns = t.peer_ns.clone();
    let (bound_tx, bound_rx) = std::sync::mpsc::channel();
    let h = thread::spawn(move || {
        in_netns(&ns, move || {
            let l = std::net::TcpListener::bind((ip, port)).map_err(|e| format!("bind: {e}"))?;
            l.set_nonblocking(true).map_err(|e| e.to_string())?;
            let _ = bound_tx.send(());
            let start = Instant::now();
            let mut threads = Vec::new();
            while threads.len() < conns {
                match l.accept() {
                    Ok((mut s, _)) => {
                        s.set_nonblocking(false).map_err(|e| e.to_string())?;
                        s.set_read_timeout(Some(IDLE)).map_err(|e| e.to_string())?;
                        s.set_write_timeout(Some(IDLE)).map_err(|e| e.to_string())?;
                        threads.push(thread::spawn(move || {
                            let (mut h, mut n, mut buf) =
                                (Sha256::new(), 0usize, vec![0u8; 1 << 16]);
                            loop {
                                match s.read(&mut buf) {
                                    Ok(0) => break,
                                    Ok(k) => {
                                        h.update(&buf[..k]);
                                        n += k;
                                        s.write_all(&buf[..k])
                                            .map_err(|e| format!("server write: {e} after {n}"))?;
                                    }
                                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                                    Err(e) => return Err(format!("server read: {e} after {n}")),
                                }
                            }
                            let _ = s.shutdown(Shutdown::Write);
                            Ok((n, hex(&h.finalize())))
                        }));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        if start.elapsed() > DEADLINE {
                            return Err(format!(
                                "accepted {} of {conns} by the deadline",
                                threads.len()
                            ));
                        }
                        thread::sleep(Duration::from_millis(20));
                    }
                    Err(e) => return Err(format!("accept: {e}")),
                }
            }
            threads
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err("server thread panicked".into()))
                })
                .collect()
        })
    });
    let _ = bound_rx.recv_timeout(Duration::from_secs(10));
    h
}

/// The client example on xstack against a Linux echo server: `conns`
/// connections of `len` bytes each way on `queues` queues; the server
/// checks SHA-256 of what it received, the client the echo byte for byte.
/// With `v6` the client example's stack has only the testbed's IPv6
/// address and connects to the Linux server's.
fn client_example_against_linux_echo(queues: u32, conns: usize, len: usize, v6: bool) {
    const SEED: u64 = 100;
    let tb = testbed_with('c', queues, PeerProfile::Default);
    let t = &tb.testbed;
    let (own, server_ip): (std::net::IpAddr, std::net::IpAddr) = if v6 {
        (t.stack_ip6.into(), t.peer_ip6.into())
    } else {
        (t.stack_ip.into(), t.peer_ip.into())
    };
    let server = linux_echo_server(t, server_ip, PORT, conns);
    let bin = example_bin("echo_client");
    let mut c = t.stack_command(bin.to_str().expect("utf-8 path"));
    c.args(["--iface", &t.stack_if, "--ip", &own.to_string()])
        .args(["--target", &SocketAddr::new(server_ip, PORT).to_string()])
        .args(["--bytes", &len.to_string(), "--seed", &SEED.to_string()])
        .args(["--conns", &conns.to_string(), "--timeout", "60"]);
    let start = Instant::now();
    let out = output_within(c, Duration::from_secs(90));
    let took = start.elapsed();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "echo_client failed ({:?}):\n{text}",
        out.status
    );
    assert_eq!(text.matches("echo identical").count(), conns, "{text}");
    let got = server
        .join()
        .unwrap_or_else(|_| Err("server panicked".into()))
        .unwrap_or_else(|e| panic!("{e}\nclient:\n{text}"));
    let mut want: Vec<String> = (0..conns)
        .map(|i| sha256_hex(&pattern(SEED + i as u64, len)))
        .collect();
    let mut seen: Vec<String> = got
        .iter()
        .map(|(n, h)| {
            assert_eq!(*n, len, "the server received {n} bytes");
            h.clone()
        })
        .collect();
    want.sort();
    seen.sort();
    assert_eq!(seen, want, "SHA-256 of what the Linux server received");
    eprintln!(
        "examples: echo_client ({queues} queue(s)) -> Linux echo: {conns} x {len} B each way in {:.2} s",
        took.as_secs_f64()
    );
    for l in text.lines().filter(|l| l.contains(": queue ")) {
        eprintln!("examples:   {l}");
    }
    if let Ok(o) = t.peer_command("nstat").args(["-azs"]).output() {
        let keep = [
            "Drop",
            "DSACK",
            "Retrans",
            "OFO",
            "Prune",
            "Reorder",
            "TCPTimeouts",
            "InErrs",
        ];
        let lines: Vec<String> = String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| keep.iter().any(|k| l.contains(k)))
            .filter(|l| l.split_whitespace().nth(1).is_some_and(|v| v != "0"))
            .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join("="))
            .collect();
        eprintln!("examples:   Linux peer: {}", lines.join(" "));
    }
}

#[test]
fn client_example_moves_64mib_each_way_sha_equal_with_a_linux_echo_server() {
    client_example_against_linux_echo(1, 1, 64 << 20, false);
}

#[test]
fn client_example_moves_16mib_each_way_sha_equal_with_a_linux_echo_server_over_ipv6() {
    client_example_against_linux_echo(1, 1, 16 << 20, true);
}

#[test]
fn client_example_runs_8_connections_on_two_queues_against_a_linux_echo_server() {
    client_example_against_linux_echo(2, 8, 4 << 20, false);
}
