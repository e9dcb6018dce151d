//! Transfers against the Linux kernel as peer, checked byte for byte
//! (issue 11, "The test matrix"): SHA-256 of what each side sent against
//! what the other received.
//!
//! - Linux client → engine server: kernel sockets in the peer namespace
//!   write to `xstack serve --app echo` while a second thread reads the
//!   echo, half-close, and read to EOF.
//! - Engine client → Linux server: the engine, driven from this process
//!   through [`Stack`], writes one stream while the kernel server writes
//!   another back; both half-close after their last byte.
//!
//! Each runs as one 64 MiB connection and as 64 parallel connections of
//! 1 MiB (distinct slices of one stream, so cross-wired connections show),
//! on both peer profiles with GRO on and off at the peer: 64 MiB fills the
//! engine's and the kernel's socket buffers (hundreds of KiB) hundreds of
//! times, so every window-full, zero-window and wake-up path runs many
//! times; 64 × 1 MiB runs the same paths on many flows at once.
//!
//! Every transfer is bounded: a connection that moves no byte for
//! [`IDLE`] or runs past [`DEADLINE`] fails the test with both sides'
//! state (`ss -tnoi` in the peer namespace, the engine's counters) instead
//! of hanging. The tests of this file take turns ([`serial`]): they are
//! CPU-bound on both ends, and two at once would measure the machine, not
//! the stack. Each prints its time and rate (`--nocapture` shows them).

use std::{
    io::Write,
    net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream},
    sync::{Arc, Mutex, MutexGuard, OnceLock},
    thread,
    time::{Duration, Instant},
};

use xstack::{
    apps::App,
    runtime::stack::{Stack, StackConfig},
    tcp::TcpError,
};
use xstack_tests::{
    counter, hex, in_netns, is_timeout, pattern, read_to_eof_hashing, set_peer_gro, sha256_hex,
    ss_of, ss_tnoi, stats_of, testbed_with, wait_until, Digest, PeerProfile, Serve, Sha256,
    TestbedGuard,
};

/// One big connection's bytes each way.
const BIG: usize = 64 << 20;
/// Parallel connections, and each one's bytes each way.
const PARALLEL: usize = 64;
const SMALL: usize = 1 << 20;
/// A connection that moves no byte for this long has stalled.
const IDLE: Duration = Duration::from_secs(10);
/// No transfer of this file may take longer.
const DEADLINE: Duration = Duration::from_secs(60);
const PORT: u16 = 8080;
const SERVER_PORT: u16 = 9000;
const CLIENT_BASE: u16 = 40000;
/// Chunk of a write: bounds how long one blocking write may go unchecked
/// against the deadline.
const CHUNK: usize = 256 << 10;

/// The tests of this file one at a time (see the module doc).
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Client → server bytes (made once per process).
fn upstream() -> &'static [u8] {
    static P: OnceLock<Vec<u8>> = OnceLock::new();
    P.get_or_init(|| pattern(1, BIG))
}

/// Server → client bytes, another stream than [`upstream`].
fn downstream() -> &'static [u8] {
    static P: OnceLock<Vec<u8>> = OnceLock::new();
    P.get_or_init(|| pattern(2, BIG))
}

/// Connection `i`'s slice of `data` when each carries `len` bytes.
fn slice(data: &'static [u8], i: usize, len: usize) -> &'static [u8] {
    &data[i * len..(i + 1) * len]
}

/// A fresh testbed with GRO at the peer set as asked.
fn bed(prefix: char, profile: PeerProfile, gro: bool) -> TestbedGuard {
    let tb = testbed_with(prefix, 1, profile);
    set_peer_gro(&tb.testbed, gro);
    tb
}

fn report_rate(what: &str, conns: usize, len: usize, took: Duration) {
    let total = (conns * len) as f64;
    eprintln!(
        "transfer: {what}: {conns} x {len} B each way in {:.2} s ({:.1} MB/s each way)",
        took.as_secs_f64(),
        total / took.as_secs_f64() / 1e6
    );
}

/// Writes `data` in chunks, each bounded by the socket's write timeout.
fn write_bounded(w: &mut impl Write, data: &[u8], start: Instant) -> Result<(), String> {
    for (i, chunk) in data.chunks(CHUNK).enumerate() {
        if start.elapsed() > DEADLINE {
            return Err(format!("write: deadline passed after {} bytes", i * CHUNK));
        }
        w.write_all(chunk).map_err(|e| {
            let why = if is_timeout(&e) {
                format!("no room for {IDLE:?}")
            } else {
                e.to_string()
            };
            format!("write: {why} after about {} bytes", i * CHUNK)
        })?;
    }
    Ok(())
}

/// The first failure's view of both sides, taken while its sockets are
/// still open: the peer's `ss -tnoi` and the server's counters.
#[derive(Clone, Default)]
struct Snapshot(Arc<OnceLock<String>>);

impl Snapshot {
    fn take(&self, peer_ns: &str, iface: &str) {
        self.0.get_or_init(|| {
            format!(
                "ss -tnoi in {peer_ns}:\n{}\nnstat -a in {peer_ns} (the peer kernel's TCP counters):\n{}\nxstack ss:\n{}\nengine counters:\n{}",
                ss_tnoi(peer_ns),
                nstat(peer_ns),
                ss_of(iface),
                stats_of(iface).map_or("(no answer)".into(), |s| brief(&s))
            )
        });
    }

    fn text(&self) -> Option<String> {
        self.0.get().cloned()
    }
}

/// The peer kernel's non-zero TCP/IP counters (`nstat -a`): PAWS, checksum,
/// receive-queue and out-of-order drops that explain a stall.
fn nstat(ns: &str) -> String {
    std::process::Command::new("ip")
        .args(["netns", "exec", ns, "nstat", "-a"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_else(|e| format!("nstat: {e}"))
}

/// The parts of `xstack stats --json` that tell a stall: connection
/// states, TCP counters, frame counters and the listeners' queues.
fn brief(s: &serde_json::Value) -> String {
    ["states", "tcp", "engine", "listeners"]
        .iter()
        .map(|k| format!("{k}: {}", s[k]))
        .collect::<Vec<_>>()
        .join("\n")
}

/// One Linux client connection to the echo app: writes `data` while
/// another thread reads the echo, half-closes, reads to EOF. Returns the
/// bytes and SHA-256 of the echo; on a failure `failed` runs first, while
/// the socket is still open.
fn echo_once(
    target: SocketAddr,
    data: &'static [u8],
    start: Instant,
    failed: impl Fn(),
) -> Result<(usize, String), String> {
    let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(5))
        .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(IDLE)).map_err(|e| e.to_string())?;
    s.set_write_timeout(Some(IDLE)).map_err(|e| e.to_string())?;
    let mut reader = s.try_clone().map_err(|e| e.to_string())?;
    let r = thread::spawn(move || read_to_eof_hashing(&mut reader, start, DEADLINE, IDLE));
    let sent = write_bounded(&mut s, data, start);
    if sent.is_ok() {
        // Half-close: the echo app sees EOF, finishes echoing, then closes.
        s.shutdown(Shutdown::Write).map_err(|e| e.to_string())?;
    } else {
        failed();
        // Unblock the reader: the transfer has failed already.
        let _ = s.shutdown(Shutdown::Both);
    }
    let got = r.join().map_err(|_| "reader panicked".to_string())?;
    if sent.is_ok() && got.is_err() {
        failed();
    }
    sent?;
    got
}

/// `conns` Linux clients in the peer namespace, each moving `len` bytes
/// through `xstack serve --app echo` at once (see [`echo_once`]). Every
/// echo must be byte-exact, the engine must have moved every byte and end
/// with no connection.
fn linux_clients_echo_through_the_engine(
    profile: PeerProfile,
    gro: bool,
    conns: usize,
    len: usize,
) {
    let _turn = serial();
    let data = upstream();
    let want: Vec<String> = (0..conns)
        .map(|i| sha256_hex(slice(data, i, len)))
        .collect();
    let tb = bed('x', profile, gro);
    let t = &tb.testbed;
    let serve = Serve::start(t, PORT, &["--app", "echo"]);
    let target = SocketAddr::from((t.stack_ip, PORT));
    let snap = Snapshot::default();
    let (peer_ns, iface) = (t.peer_ns.clone(), t.stack_if.clone());
    let snap_c = snap.clone();
    let start = Instant::now();
    let results = in_netns(&t.peer_ns, move || {
        let handles: Vec<_> = (0..conns)
            .map(|i| {
                let (snap, peer_ns, iface) = (snap_c.clone(), peer_ns.clone(), iface.clone());
                // Threads spawned here inherit the peer namespace.
                thread::spawn(move || {
                    echo_once(target, slice(data, i, len), start, || {
                        snap.take(&peer_ns, &iface)
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("client panicked".into())))
            .collect::<Vec<_>>()
    });
    let took = start.elapsed();
    let failures: Vec<String> = results
        .iter()
        .enumerate()
        .filter_map(|(i, r)| match r {
            Ok((n, h)) if *n == len && *h == want[i] => None,
            Ok((n, h)) => Some(format!(
                "connection {i}: echo of {n} bytes, SHA-256 {h}, want {len} bytes, {}",
                want[i]
            )),
            Err(e) => Some(format!("connection {i}: {e}")),
        })
        .collect();
    if !failures.is_empty() {
        let view = snap.text().unwrap_or_else(|| {
            format!(
                "ss -tnoi:\n{}\nxstack ss:\n{}\nengine counters:\n{}",
                ss_tnoi(&t.peer_ns),
                ss_of(&t.stack_if),
                brief(&serve.stats())
            )
        });
        panic!(
            "{} of {conns} echoes failed after {:.1} s:\n{}\n{view}",
            failures.len(),
            took.as_secs_f64(),
            failures
                .iter()
                .take(8)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    report_rate(
        &format!(
            "linux client -> engine echo, {profile:?} peer, GRO {}",
            on_off(gro)
        ),
        conns,
        len,
        took,
    );
    let total = (conns * len) as u64;
    let done = wait_until(Duration::from_secs(5), || {
        let s = serve.stats();
        counter(&s, "/engine/app_bytes_out") == total && counter(&s, "/tcp/connections") == 0
    });
    let s = serve.stats();
    assert!(done, "engine did not finish cleanly: {s:#}");
    assert_eq!(counter(&s, "/engine/app_bytes_in"), total, "{s:#}");
    assert_eq!(counter(&s, "/engine/app_accepted"), conns as u64, "{s:#}");
    // No segment outgrew the link (SACK blocks on full segments did).
    assert_eq!(counter(&s, "/engine/tx_oversize"), 0, "{s:#}");
}

fn on_off(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}

/// One engine connection's progress.
struct Leg {
    id: xstack::tcp::ConnId,
    data: &'static [u8],
    sent: usize,
    got: usize,
    hash: Sha256,
    shut: bool,
    eof: bool,
    err: Option<String>,
}

impl Leg {
    fn done(&self) -> bool {
        self.err.is_some() || (self.shut && self.eof)
    }
}

/// What the kernel server saw on one connection: the client's index (by
/// its port) and the bytes and SHA-256 it received.
type ServerLeg = (usize, Result<(usize, String), String>);

/// The kernel server: accepts `conns` connections and on each writes the
/// client's slice of [`downstream`] while reading to EOF; half-closes
/// after its last byte.
fn kernel_server(
    listener: TcpListener,
    conns: usize,
    len: usize,
    start: Instant,
) -> Result<Vec<ServerLeg>, String> {
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let mut handles = Vec::new();
    while handles.len() < conns {
        if start.elapsed() > DEADLINE {
            return Err(format!(
                "accepted {} of {conns} by the deadline",
                handles.len()
            ));
        }
        let (c, from) = match listener.accept() {
            Ok(x) => x,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(2));
                continue;
            }
            Err(e) => return Err(format!("accept: {e}")),
        };
        let i = usize::from(from.port().wrapping_sub(CLIENT_BASE));
        if i >= conns {
            return Err(format!("connection from unexpected port {from}"));
        }
        handles.push(thread::spawn(move || -> ServerLeg {
            let leg = || -> Result<(usize, String), String> {
                let mut c = c;
                c.set_nonblocking(false).map_err(|e| e.to_string())?;
                c.set_read_timeout(Some(IDLE)).map_err(|e| e.to_string())?;
                c.set_write_timeout(Some(IDLE)).map_err(|e| e.to_string())?;
                let mut w = c.try_clone().map_err(|e| e.to_string())?;
                let writer = thread::spawn(move || {
                    let r = write_bounded(&mut w, slice(downstream(), i, len), start);
                    let _ = w.shutdown(if r.is_ok() {
                        Shutdown::Write
                    } else {
                        Shutdown::Both
                    });
                    r
                });
                let got = read_to_eof_hashing(&mut c, start, DEADLINE, IDLE);
                writer
                    .join()
                    .map_err(|_| "server writer panicked".to_string())??;
                got
            };
            (i, leg())
        }));
    }
    Ok(handles
        .into_iter()
        .map(|h| {
            h.join()
                .unwrap_or((usize::MAX, Err("server panicked".into())))
        })
        .collect())
}

/// The engine, driven from this process on the stack's queue 0, opens
/// `conns` connections to a kernel server in the peer namespace; on each
/// it writes `len` bytes of [`upstream`] while the server writes `len`
/// bytes of [`downstream`]; each side half-closes after its last byte.
/// Both directions of every connection must be byte-exact.
fn engine_clients_exchange_with_a_linux_server(
    profile: PeerProfile,
    gro: bool,
    conns: usize,
    len: usize,
) {
    let _turn = serial();
    let (up, down) = (upstream(), downstream());
    let want_up: Vec<String> = (0..conns).map(|i| sha256_hex(slice(up, i, len))).collect();
    let want_down: Vec<String> = (0..conns)
        .map(|i| sha256_hex(slice(down, i, len)))
        .collect();
    let tb = bed('y', profile, gro);
    let t = &tb.testbed;
    let peer_ip = t.peer_ip;
    let start = Instant::now();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let ns = t.peer_ns.clone();
    let server = thread::spawn(move || {
        in_netns(&ns, move || {
            let l = TcpListener::bind((peer_ip, SERVER_PORT)).map_err(|e| format!("bind: {e}"));
            let l = match l {
                Ok(l) => {
                    let _ = ready_tx.send(());
                    l
                }
                Err(e) => return Err(e),
            };
            kernel_server(l, conns, len, start)
        })
    });
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("kernel server listening");

    let (iface, ip, stack_ns, peer_ns) = (
        t.stack_if.clone(),
        t.stack_ip,
        t.stack_ns.clone(),
        t.peer_ns.clone(),
    );
    let (legs, stall) = in_netns(&stack_ns, move || {
        engine_side(&iface, ip, peer_ip, &peer_ns, up, conns, len, start)
    });
    let took = start.elapsed();
    let server = server.join().expect("server thread");

    let mut failures = Vec::new();
    for (i, (sent, got, hash, err)) in legs.iter().enumerate() {
        if let Some(e) = err {
            failures.push(format!(
                "engine connection {i}: {e} (sent {sent}, got {got})"
            ));
        } else if *sent != len || *got != len || *hash != want_down[i] {
            failures.push(format!(
                "engine connection {i}: sent {sent}, got {got} bytes with SHA-256 {hash}, want {len} and {}",
                want_down[i]
            ));
        }
    }
    match &server {
        Err(e) => failures.push(format!("kernel server: {e}")),
        Ok(legs) => {
            for (i, r) in legs {
                match r {
                    Ok((n, h)) if *n == len && Some(h) == want_up.get(*i) => {}
                    Ok((n, h)) => failures.push(format!(
                        "kernel server connection {i}: got {n} bytes with SHA-256 {h}, want {len}"
                    )),
                    Err(e) => failures.push(format!("kernel server connection {i}: {e}")),
                }
            }
        }
    }
    if !failures.is_empty() || stall.is_some() {
        panic!(
            "{} failures after {:.1} s:\n{}\n{}",
            failures.len(),
            took.as_secs_f64(),
            failures
                .iter()
                .take(8)
                .cloned()
                .collect::<Vec<_>>()
                .join("\n"),
            stall.unwrap_or_default()
        );
    }
    report_rate(
        &format!(
            "engine client <-> linux server, {profile:?} peer, GRO {}",
            on_off(gro)
        ),
        conns,
        len,
        took,
    );
}

/// What [`engine_side`] returns: per connection (sent, received, SHA-256
/// of what it received, error), and a report of both sides when it stalled.
type EngineResult = (Vec<(usize, usize, String, Option<String>)>, Option<String>);

/// The engine's half of [`engine_clients_exchange_with_a_linux_server`],
/// run in the stack namespace.
#[allow(clippy::too_many_arguments)]
fn engine_side(
    iface: &str,
    ip: Ipv4Addr,
    peer_ip: Ipv4Addr,
    peer_ns: &str,
    up: &'static [u8],
    conns: usize,
    len: usize,
    start: Instant,
) -> EngineResult {
    let ports: Vec<u16> = (0..conns as u16).map(|i| CLIENT_BASE + i).collect();
    let mut st = Stack::open(&StackConfig {
        iface: iface.to_string(),
        ip,
        client_ports: ports.clone(),
        app: App::Manual,
        ..Default::default()
    })
    .expect("stack");
    let now = st.now();
    let mut legs: Vec<Leg> = ports
        .iter()
        .enumerate()
        .map(|(i, &p)| Leg {
            id: st
                .engine()
                .connect(now, ip, p, peer_ip, SERVER_PORT)
                .expect("connect"),
            data: slice(up, i, len),
            sent: 0,
            got: 0,
            hash: Sha256::new(),
            shut: false,
            eof: false,
            err: None,
        })
        .collect();
    let mut buf = vec![0u8; 1 << 16];
    let mut last_progress = Instant::now();
    let mut stall = None;
    while !legs.iter().all(Leg::done) {
        // Half the kernel's idle limit: the report sees its sockets open.
        if start.elapsed() > DEADLINE || last_progress.elapsed() > IDLE / 2 {
            stall = Some(stall_report(&mut st, &legs, peer_ns, start));
            break;
        }
        let frames = st.poll();
        let tcp = st.engine().tcp();
        let mut moved = false;
        for l in legs.iter_mut().filter(|l| !l.done()) {
            if l.sent < l.data.len() {
                match tcp.write(l.id, &l.data[l.sent..]) {
                    Ok(n) => {
                        l.sent += n;
                        moved |= n > 0;
                    }
                    Err(TcpError::WouldBlock) => {}
                    Err(e) => l.err = Some(format!("write: {e}")),
                }
            } else if !l.shut {
                match tcp.shutdown(l.id) {
                    Ok(()) => l.shut = true,
                    Err(e) => l.err = Some(format!("shutdown: {e}")),
                }
                moved = true;
            }
            while !l.eof && l.err.is_none() {
                match tcp.read(l.id, &mut buf) {
                    Ok(0) => l.eof = true,
                    Ok(n) => {
                        l.hash.update(&buf[..n]);
                        l.got += n;
                        moved = true;
                    }
                    Err(TcpError::WouldBlock) => break,
                    Err(e) => l.err = Some(format!("read: {e}")),
                }
            }
        }
        if moved {
            last_progress = Instant::now();
        } else if frames == 0 {
            st.wait(Duration::from_millis(1));
        }
    }
    let now = st.now();
    for l in &legs {
        let _ = st.engine().tcp().close(now, l.id);
    }
    // Let the last ACKs and FINs leave before the socket closes.
    for _ in 0..50 {
        st.poll();
        thread::sleep(Duration::from_millis(2));
    }
    let out = legs
        .into_iter()
        .map(|l| (l.sent, l.got, hex(&l.hash.finalize()), l.err))
        .collect();
    (out, stall)
}

/// Both sides' view of a stalled exchange: the engine's connections that
/// had not finished (state, windows, queues) and counters, and the
/// kernel's sockets (`ss -tnoi`).
fn stall_report(st: &mut Stack, legs: &[Leg], peer_ns: &str, start: Instant) -> String {
    let mut out = format!(
        "stalled after {:.1} s; unfinished engine connections:\n",
        start.elapsed().as_secs_f64()
    );
    let tcp = st.engine().tcp();
    for l in legs.iter().filter(|l| !l.done()).take(8) {
        let (queued, space) = (tcp.recv_queue(l.id), tcp.send_space(l.id));
        let tcb = tcp.tcb(l.id).map(|b| {
            format!(
                "{:?} cwnd {} snd_wnd {} rto {:?} srtt {:?}",
                b.state(),
                b.cwnd(),
                b.snd_wnd(),
                b.rto(),
                b.srtt()
            )
        });
        out += &format!(
            "  {:?}: sent {} got {} shut {} eof {} recv_queue {queued:?} send_space {space:?} {tcb:?}\n",
            l.id, l.sent, l.got, l.shut, l.eof
        );
    }
    out += &format!(
        "engine tcp counters: {:?}\nengine frame counters: {:?}\nss -tnoi in {peer_ns}:\n{}",
        st.engine_ref().tcp_ref().stats(),
        st.engine_ref().stats(),
        ss_tnoi(peer_ns)
    );
    out
}

// --- Linux client -> engine server: one 64 MiB echo ---

#[test]
fn a_64_mib_echo_through_the_engine_is_byte_exact_on_the_default_peer_with_gro_off() {
    linux_clients_echo_through_the_engine(PeerProfile::Default, false, 1, BIG);
}

#[test]
fn a_64_mib_echo_through_the_engine_is_byte_exact_on_the_default_peer_with_gro_on() {
    linux_clients_echo_through_the_engine(PeerProfile::Default, true, 1, BIG);
}

#[test]
fn a_64_mib_echo_through_the_engine_is_byte_exact_on_the_tuned_peer_with_gro_on() {
    linux_clients_echo_through_the_engine(PeerProfile::Tuned, true, 1, BIG);
}

#[test]
fn a_64_mib_echo_through_the_engine_is_byte_exact_on_the_tuned_peer_with_gro_off() {
    linux_clients_echo_through_the_engine(PeerProfile::Tuned, false, 1, BIG);
}

// --- Linux clients -> engine server: 64 parallel 1 MiB echoes ---

#[test]
fn sixty_four_parallel_1_mib_echoes_are_byte_exact_on_the_default_peer_with_gro_off() {
    linux_clients_echo_through_the_engine(PeerProfile::Default, false, PARALLEL, SMALL);
}

#[test]
fn sixty_four_parallel_1_mib_echoes_are_byte_exact_on_the_default_peer_with_gro_on() {
    linux_clients_echo_through_the_engine(PeerProfile::Default, true, PARALLEL, SMALL);
}

#[test]
fn sixty_four_parallel_1_mib_echoes_are_byte_exact_on_the_tuned_peer_with_gro_on() {
    linux_clients_echo_through_the_engine(PeerProfile::Tuned, true, PARALLEL, SMALL);
}

#[test]
fn sixty_four_parallel_1_mib_echoes_are_byte_exact_on_the_tuned_peer_with_gro_off() {
    linux_clients_echo_through_the_engine(PeerProfile::Tuned, false, PARALLEL, SMALL);
}

// --- Engine client -> Linux server: 64 MiB each way ---

#[test]
fn an_engine_client_moves_64_mib_each_way_with_a_linux_server_on_the_default_peer_with_gro_off() {
    engine_clients_exchange_with_a_linux_server(PeerProfile::Default, false, 1, BIG);
}

#[test]
fn an_engine_client_moves_64_mib_each_way_with_a_linux_server_on_the_default_peer_with_gro_on() {
    engine_clients_exchange_with_a_linux_server(PeerProfile::Default, true, 1, BIG);
}

#[test]
fn an_engine_client_moves_64_mib_each_way_with_a_linux_server_on_the_tuned_peer_with_gro_on() {
    engine_clients_exchange_with_a_linux_server(PeerProfile::Tuned, true, 1, BIG);
}

#[test]
fn an_engine_client_moves_64_mib_each_way_with_a_linux_server_on_the_tuned_peer_with_gro_off() {
    engine_clients_exchange_with_a_linux_server(PeerProfile::Tuned, false, 1, BIG);
}

// --- Engine clients -> Linux server: 64 parallel connections, 1 MiB each way ---

#[test]
fn sixty_four_engine_clients_move_1_mib_each_way_with_a_linux_server_on_the_default_peer_with_gro_off(
) {
    engine_clients_exchange_with_a_linux_server(PeerProfile::Default, false, PARALLEL, SMALL);
}

#[test]
fn sixty_four_engine_clients_move_1_mib_each_way_with_a_linux_server_on_the_default_peer_with_gro_on(
) {
    engine_clients_exchange_with_a_linux_server(PeerProfile::Default, true, PARALLEL, SMALL);
}

#[test]
fn sixty_four_engine_clients_move_1_mib_each_way_with_a_linux_server_on_the_tuned_peer_with_gro_on()
{
    engine_clients_exchange_with_a_linux_server(PeerProfile::Tuned, true, PARALLEL, SMALL);
}

#[test]
fn sixty_four_engine_clients_move_1_mib_each_way_with_a_linux_server_on_the_tuned_peer_with_gro_off(
) {
    engine_clients_exchange_with_a_linux_server(PeerProfile::Tuned, false, PARALLEL, SMALL);
}
