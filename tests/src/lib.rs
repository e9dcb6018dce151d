//! Helpers for the end-to-end tests: unique testbeds, a `xstack serve`
//! process guard that stops only the process it started (by pid), counters
//! over the control socket, and running code inside a network namespace.

use std::{
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

pub use sha2::{Digest, Sha256};
pub use xstack::tools::testbed::{in_netns, PeerProfile, Testbed, TestbedGuard, PEER_IP, STACK_IP};

mod empty_netns;
pub use empty_netns::EmptyNetns;
pub mod xdp_run;

/// The `xstack` binary under test: `$XSTACK_BIN` (set by `cargo xtask
/// test`), else the workspace's debug build.
pub fn xstack_bin() -> PathBuf {
    std::env::var_os("XSTACK_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debug/xstack"))
}

/// A testbed name unique to this process and call (1-10 chars).
pub fn unique_name(prefix: char) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}{n}", std::process::id() % 100_000)
}

/// A fresh testbed with the `default` peer (a plain veth and a Linux peer
/// as the kernel sets them up: what a user has), removed when the guard
/// drops (also on panic). Scenarios that must also hold on the `tuned`
/// peer call [`testbed_with`] for both.
pub fn testbed(prefix: char, queues: u32) -> TestbedGuard {
    testbed_with(prefix, queues, PeerProfile::Default)
}

/// A fresh testbed whose peer is set up as `profile` says, removed when the
/// guard drops (also on panic).
pub fn testbed_with(prefix: char, queues: u32, profile: PeerProfile) -> TestbedGuard {
    TestbedGuard::up_with(&unique_name(prefix), queues, profile).expect("testbed up")
}

/// Whether `feature` (as `ethtool -k` names it, e.g. `tx-checksumming`)
/// is on for `iface` in namespace `ns`.
pub fn offload_on(ns: &str, iface: &str, feature: &str) -> bool {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "ethtool", "-k", iface])
        .output()
        .expect("ethtool -k");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.trim_start().starts_with(&format!("{feature}: on")))
}

/// Runs `xstack ARGS` to its end, killed (by its pid) past `limit`;
/// returns (success, stdout + stderr).
pub fn xstack_within(args: &[&str], limit: Duration) -> (bool, String) {
    let (ok, text, _) = xstack_within_pid(args, limit);
    (ok, text)
}

/// [`xstack_within`], also returning the process id the run had (a
/// benchmark names its testbeds after it).
pub fn xstack_within_pid(args: &[&str], limit: Duration) -> (bool, String, u32) {
    use std::io::Read;
    let mut child = Command::new(xstack_bin())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn xstack");
    let pid = child.id();
    let (mut out, mut err) = (
        child.stdout.take().expect("stdout"),
        child.stderr.take().expect("stderr"),
    );
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let end = Instant::now() + limit;
    let mut done = false;
    while !done && Instant::now() < end {
        done = matches!(child.try_wait(), Ok(Some(_)));
        if !done {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    if !done {
        let _ = child.kill();
    }
    let status = child.wait();
    let text = format!(
        "{}{}",
        reader.join().unwrap_or_default(),
        err_reader.join().unwrap_or_default()
    );
    (done && status.is_ok_and(|s| s.success()), text, pid)
}

/// Polls `f` every 50 ms until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// A running `xstack serve` in the stack namespace of a testbed.
pub struct Serve {
    child: Option<Child>,
    /// Interface it serves.
    pub iface: String,
}

impl Serve {
    /// Starts `xstack serve` on the testbed's stack interface with `extra`
    /// arguments, and waits until its control socket answers.
    pub fn start(t: &Testbed, port: u16, extra: &[&str]) -> Serve {
        let child = t
            .stack_command(xstack_bin().to_str().expect("utf-8 path"))
            .args([
                "serve",
                "--iface",
                &t.stack_if,
                "--ip",
                &t.stack_ip.to_string(),
            ])
            .args(["--port", &port.to_string(), "--duration", "120"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn xstack serve");
        let mut s = Serve {
            child: Some(child),
            iface: t.stack_if.clone(),
        };
        let up = wait_until(Duration::from_secs(20), || {
            s.try_stats().is_some() || s.exited()
        });
        assert!(
            up && !s.exited(),
            "xstack serve did not start: {}",
            s.stop_output_text()
        );
        s
    }

    fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_some())
    }

    /// Counters over the control socket, if it answers.
    pub fn try_stats(&self) -> Option<serde_json::Value> {
        stats_of(&self.iface)
    }

    /// Counters over the control socket.
    pub fn stats(&self) -> serde_json::Value {
        self.try_stats().expect("xstack stats answers")
    }

    /// Pid of the serve process (`ip netns exec` execs into it).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Sends `signal` and waits for the process; returns its output.
    pub fn stop_with(&mut self, signal: i32) -> Output {
        let mut child = self.child.take().expect("serve running");
        // SAFETY: signalling the child we spawned, by its pid.
        unsafe { libc::kill(child.id() as i32, signal) };
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if child.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        child.wait_with_output().expect("serve output")
    }

    fn stop_output_text(&mut self) -> String {
        let out = self.stop_with(libc::SIGTERM);
        format!(
            "status {:?}\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.stop_with(libc::SIGTERM);
        }
    }
}

/// Reads a counter at a JSON pointer as u64 (0 when absent).
pub fn counter(v: &serde_json::Value, pointer: &str) -> u64 {
    v.pointer(pointer).and_then(|x| x.as_u64()).unwrap_or(0)
}

/// The XDP program attached to `iface` in namespace `ns`, as (id, name).
pub fn attached_xdp(ns: &str, iface: &str) -> Option<(u64, String)> {
    let out = Command::new("ip")
        .args(["-n", ns, "-details", "-json", "link", "show", "dev", iface])
        .output()
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    xstack::datapath::xdp::parse_attached(v.get(0)?).map(|p| (u64::from(p.id), p.name))
}

/// `len` bytes of a fixed pseudo-random stream: SplitMix64 of each 8-byte
/// word's index plus `seed`. No period shorter than a transfer, so a
/// dropped, duplicated or reordered range changes the SHA-256; another
/// `seed` gives another stream (cross-wired directions or connections show).
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut i = 0u64;
    while out.len() < len {
        let mut z = seed.wrapping_add(i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
        i += 1;
    }
    out.truncate(len);
    out
}

/// SHA-256 of `data`, as lowercase hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// A finished [`Sha256`] as lowercase hex.
pub fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Turns generic receive offload on or off at the testbed's peer
/// interface (after `up`, which sets it by profile) and checks it took.
pub fn set_peer_gro(t: &Testbed, on: bool) {
    let out = t
        .peer_command("ethtool")
        .args(["-K", &t.peer_if, "gro", if on { "on" } else { "off" }])
        .output()
        .expect("ethtool -K");
    assert!(
        out.status.success(),
        "ethtool -K {} gro: {}",
        t.peer_if,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        offload_on(&t.peer_ns, &t.peer_if, "generic-receive-offload"),
        on,
        "GRO at the peer did not change"
    );
}

/// `ss -tnoi` in namespace `ns`: the kernel's view of every TCP socket
/// there (windows, rwnd/sndbuf limits, backoff), for failure reports.
pub fn ss_tnoi(ns: &str) -> String {
    Command::new("ip")
        .args(["netns", "exec", ns, "ss", "-tnoi"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_else(|e| format!("ss: {e}"))
}

/// `xstack ss` of the `xstack serve` on `iface`: the engine's view of its
/// connections (windows, cwnd, RTO backoff, timers), for failure reports.
pub fn ss_of(iface: &str) -> String {
    Command::new(xstack_bin())
        .args(["ss", "--iface", iface])
        .output()
        .map(|o| {
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        })
        .unwrap_or_else(|e| format!("xstack ss: {e}"))
}

/// Counters of the `xstack serve` on `iface` over its control socket, if
/// it answers (callable from any thread and namespace).
pub fn stats_of(iface: &str) -> Option<serde_json::Value> {
    let out = Command::new(xstack_bin())
        .args(["stats", "--json", "--iface", iface])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// Reads `r` to EOF, hashing with SHA-256; returns the byte count and the
/// hex digest. `Err` (with the count so far) on an error, a stall of `idle`
/// (the socket's read timeout, which the caller set) or once `deadline`
/// has passed since `start`.
pub fn read_to_eof_hashing(
    r: &mut impl std::io::Read,
    start: Instant,
    deadline: Duration,
    idle: Duration,
) -> Result<(usize, String), String> {
    let (mut h, mut n, mut buf) = (Sha256::new(), 0usize, vec![0u8; 1 << 16]);
    loop {
        if start.elapsed() > deadline {
            return Err(format!("read: deadline passed after {n} bytes"));
        }
        match r.read(&mut buf) {
            Ok(0) => return Ok((n, hex(&h.finalize()))),
            Ok(k) => {
                h.update(&buf[..k]);
                n += k;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => {
                return Err(format!("read: no byte for {idle:?} after {n} bytes"))
            }
            Err(e) => return Err(format!("read: {e} after {n} bytes")),
        }
    }
}

/// Whether a socket call ended by its SO_RCVTIMEO/SO_SNDTIMEO.
pub fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}
