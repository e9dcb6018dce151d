//! `xstack bench`: xstack next to the Linux kernel stack, in one run, on a
//! fresh testbed.
//!
//! Servers run in the stack namespace on 198.18.0.2 (kernel: `xstack
//! kserve`; xstack: `xstack serve`), load generators in the peer namespace
//! (kernel: `xstack load --kernel` from 198.18.0.1; xstack: `xstack load` on
//! the peer veth with its own address 198.18.0.3). Each pair runs for the
//! same time with the same application; wrk runs against both servers as an
//! outside reference. CPU is the user+system time of each process (softirq
//! work is not attributed to processes). The xstack server runs with
//! `--busy-poll` (it spins on its rings instead of sleeping in poll(), the
//! setting a user tuning for throughput picks; it shows as ~100% CPU); so
//! does the xstack load generator (`--busy-poll`). Every load generator
//! (wrk included) runs on CPU 0 and every server on CPU 1 ([`pin`]).
//!
//! The full comparison adds the user-service rows (issue 16): the
//! `hyper_server` example (hyper 1.x, 64-byte body) as the server, on
//! kernel sockets (`--kernel`, one tokio worker: `hyper/kernel`) and on
//! xstack (`xstack::rt`, busy-polling: `hyper/xstack`), loaded by xstack
//! load and by wrk. The example is looked up next to the `xstack` binary
//! (`target/<profile>/examples/hyper_server`: `cargo build --release -p
//! stack-user --examples`); without it those rows are skipped with a note.
//!
//! `--family 4|6|both` ([`Families`]): the same pairs over IPv4 (the
//! servers on 198.18.0.2, the xstack load on 198.18.0.3), over IPv6
//! (2001:2::2 and 2001:2::3; the kernel server's turn switches the stack
//! side's kernel IPv6 on) or both, each IPv6 row next to its IPv4 row, a
//! family column in the table and `family` in `bench.json`; with both, one
//! IPv6/IPv4 line per scenario.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::Value;

use super::family::{kernel_stack_addr, ratio, Families, Family};
use crate::tools::testbed::{netns_command, Testbed, TestbedGuard};

/// One measured pair.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// Scenario name.
    pub scenario: String,
    /// The address family the pair ran over.
    pub family: Family,
    /// Load side: "kernel", "xstack" or "wrk".
    pub load: String,
    /// Server side: "kernel" or "xstack".
    pub server: String,
    /// Connections per second.
    pub cps: f64,
    /// Requests per second.
    pub rps: f64,
    /// Latency percentiles (µs): p50, p90, p99, p99.9, max.
    pub latency_us: [u64; 5],
    /// Errors of all kinds.
    pub errors: u64,
    /// Load process CPU, % of one core.
    pub load_cpu: f64,
    /// Server process CPU, % of one core.
    pub server_cpu: f64,
    /// Which run of `--runs` measured it, from 1.
    pub run: u32,
}

pub(crate) struct Proc {
    child: Child,
}

impl Proc {
    pub(crate) fn spawn(cmd: &mut Command) -> Result<Proc> {
        let child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawning a benchmark process")?;
        Ok(Proc { child })
    }

    /// Its process id.
    pub(crate) fn id(&self) -> i32 {
        self.child.id() as i32
    }

    /// Stops it with SIGTERM and returns (CPU seconds, stdout).
    pub(crate) fn stop(mut self) -> (f64, String) {
        // SAFETY: signalling the child we spawned, by pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        wait_cpu(&mut self.child)
    }
}

/// Waits for `child` and returns its user+system CPU seconds and stdout.
pub(crate) fn wait_cpu(child: &mut Child) -> (f64, String) {
    let mut out = String::new();
    if let Some(mut s) = child.stdout.take() {
        use std::io::Read;
        let _ = s.read_to_string(&mut out);
    }
    let mut status = 0;
    // SAFETY: wait4 on our own child, with out-pointers we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut ru) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(ru.ru_utime) + secs(ru.ru_stime), out)
}

/// Runs `cmd`'s process (and every thread it starts) on CPU `cpu` when the
/// machine has more than one: load generators on CPU 0, servers on CPU 1,
/// one core each, as `taskset` would. Left to the scheduler, a spinning
/// load generator and a server thread land on the same core in some runs
/// and not in others, which made keep-alive figures vary fivefold between
/// runs. The softirq work a sender's transmit triggers on veth runs on the
/// sender's CPU either way.
pub(crate) fn pin(cmd: &mut Command, cpu: usize) -> &mut Command {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: sysconf has no preconditions.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if cpus <= 1 || cpu >= cpus as usize {
        return cmd;
    }
    // SAFETY: the hook runs in the forked child before exec and only calls
    // sched_setaffinity on itself, which is async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        })
    }
}

/// CPU of the load generators.
const LOAD_CPU: usize = 0;
/// CPU of the servers.
const SERVER_CPU: usize = 1;

pub(crate) fn bin() -> Result<PathBuf> {
    std::env::current_exe().context("locating the xstack binary")
}

fn wait_port(ns: &str, port: u16) {
    for _ in 0..100 {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                "ss",
                "-Hltn",
                &format!("sport = :{port}"),
            ])
            .output();
        if out.is_ok_and(|o| !o.stdout.is_empty()) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_serve(iface: &str) {
    for _ in 0..100 {
        if crate::runtime::control::query_stats(Some(iface)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts the kernel (`xstack kserve`, with the stack address of `family`
/// on the kernel interface) or the xstack server in the stack namespace on
/// the stack address of `family` and waits until it answers.
pub(crate) fn start_server(t: &Testbed, server: &str, family: Family) -> Result<Proc> {
    let bin = bin()?;
    let exe = bin.to_str().unwrap_or("xstack");
    let ip = family.stack_ip(t).to_string();
    if let Some(on) = server.strip_prefix("hyper/") {
        let hyper = hyper_bin().context("the hyper_server example is not built")?;
        let hyper = hyper.to_str().unwrap_or("hyper_server");
        let mut cmd = netns_command(&t.stack_ns, hyper);
        pin(&mut cmd, SERVER_CPU).args(["--port", "80", "--body-bytes", "64"]);
        if on == "kernel" {
            kernel_stack_addr(t, family, true)?;
            let p = Proc::spawn(cmd.args(["--kernel", "--ip", &ip, "--queues", "1"]))?;
            wait_port(&t.stack_ns, 80);
            return Ok(p);
        }
        let p = Proc::spawn(cmd.args(["--iface", &t.stack_if, "--ip", &ip, "--busy-poll"]))?;
        wait_connect(&t.peer_ns, family.target(t, 80));
        return Ok(p);
    }
    if server == "kernel" {
        kernel_stack_addr(t, family, true)?;
        let p = Proc::spawn(
            pin(&mut netns_command(&t.stack_ns, exe), SERVER_CPU)
                .args(["kserve", "--listen", &family.target(t, 80).to_string()])
                .args(["--app", "http", "--response-bytes", "64", "--threads", "1"]),
        )?;
        wait_port(&t.stack_ns, 80);
        Ok(p)
    } else {
        let p = Proc::spawn(
            pin(&mut netns_command(&t.stack_ns, exe), SERVER_CPU)
                .args(["serve", "--iface", &t.stack_if, "--ip", &ip, "--port", "80"])
                .args(["--app", "http", "--response-bytes", "64", "--busy-poll"]),
        )?;
        wait_serve(&t.stack_if);
        Ok(p)
    }
}

/// The `hyper_server` example next to this binary, if it was built.
pub(crate) fn hyper_bin() -> Option<PathBuf> {
    let p = bin().ok()?.parent()?.join("examples").join("hyper_server");
    p.exists().then_some(p)
}

/// Waits until `to` accepts a connection from the peer namespace (a server
/// without a control socket: the hyper example on xstack).
fn wait_connect(peer_ns: &str, to: std::net::SocketAddr) {
    crate::tools::testbed::in_netns(peer_ns, move || {
        for _ in 0..100 {
            if std::net::TcpStream::connect_timeout(&to, Duration::from_millis(200)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
}

/// Stops a server from [`start_server`]; returns its CPU seconds.
pub(crate) fn stop_server(t: &Testbed, server: &str, family: Family, p: Proc) -> Result<f64> {
    let (cpu, _) = p.stop();
    if server == "kernel" || server == "hyper/kernel" {
        kernel_stack_addr(t, family, false)?;
    }
    Ok(cpu)
}

/// One scenario's load arguments.
struct Scenario {
    name: &'static str,
    args: Vec<String>,
    wrk_close: bool,
}

fn load_row(
    t: &Testbed,
    sc: &Scenario,
    (load, server): (&str, &str),
    family: Family,
    secs: u32,
    dir: &Path,
) -> Result<Row> {
    let bin = bin()?;
    let server_proc = start_server(t, server, family)?;
    let json = dir.join(format!(
        "{}-{load}-{}{}.json",
        sc.name,
        server.replace('/', "-"),
        if family == Family::V6 { "-ipv6" } else { "" }
    ));
    let (load_ip, target) = (family.load_ip().to_string(), family.target(t, 80));
    let started = Instant::now();
    let mut cmd = netns_command(&t.peer_ns, bin.to_str().unwrap_or("xstack"));
    pin(&mut cmd, LOAD_CPU);
    cmd.arg("load");
    if load == "kernel" {
        cmd.args(["--kernel", "--threads", "1"]);
    } else {
        // Spinning, like the xstack server (serve --busy-poll); unpaced,
        // as the kernel load is: these rows measure connections per second.
        cmd.args([
            "--iface",
            &t.peer_if,
            "--ip",
            &load_ip,
            "--busy-poll",
            "--connect-rate",
            "0",
        ]);
    }
    cmd.args([
        "--target",
        &target.to_string(),
        "--duration",
        &secs.to_string(),
        "--quiet",
    ])
    .args(&sc.args)
    .arg("--json")
    .arg(&json);
    let mut lp = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawning xstack load")?;
    let (load_cpu_s, _) = wait_cpu(&mut lp);
    let wall = started.elapsed().as_secs_f64();
    let server_cpu_s = stop_server(t, server, family, server_proc)?;
    // Let TIME_WAIT and ARP state of this pair fade out of the next one's way.
    std::thread::sleep(Duration::from_millis(300));
    let v: Value =
        serde_json::from_slice(&std::fs::read(&json).with_context(|| {
            format!("{load} load against the {server} server wrote no summary")
        })?)?;
    let u = |p: &str| v.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    let f = |p: &str| v.pointer(p).and_then(Value::as_f64).unwrap_or(0.0);
    Ok(Row {
        scenario: sc.name.into(),
        family,
        load: load.into(),
        server: server.into(),
        cps: f("/connections_per_s"),
        rps: f("/requests_per_s"),
        latency_us: [
            u("/latency_us/p50"),
            u("/latency_us/p90"),
            u("/latency_us/p99"),
            u("/latency_us/p999"),
            u("/latency_us/max"),
        ],
        errors: ["refused", "reset", "timeout", "other"]
            .iter()
            .map(|k| u(&format!("/errors/{k}")))
            .sum(),
        load_cpu: 100.0 * load_cpu_s / wall,
        server_cpu: 100.0 * server_cpu_s / wall,
        run: 1,
    })
}

/// wrk from the peer namespace against one server.
fn wrk_row(t: &Testbed, sc: &Scenario, server: &str, family: Family, secs: u32) -> Result<Row> {
    let server_proc = start_server(t, server, family)?;
    let started = Instant::now();
    let mut cmd = netns_command(&t.peer_ns, "wrk");
    pin(&mut cmd, LOAD_CPU);
    cmd.args([
        "-t1",
        "-c64",
        &format!("-d{secs}s"),
        "--latency",
        "--timeout",
        "2s",
    ]);
    if sc.wrk_close {
        cmd.args(["-H", "Connection: close"]);
    }
    cmd.arg(family.url(t, 80));
    let mut w = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("running wrk (apt-get install wrk, or cargo xtask setup)")?;
    let (wrk_cpu_s, text) = wait_cpu(&mut w);
    let wall = started.elapsed().as_secs_f64();
    let server_cpu_s = stop_server(t, server, family, server_proc)?;
    std::thread::sleep(Duration::from_millis(300));
    let rps = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    let pct = |p: &str| -> u64 {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(p))
            .map(|v| parse_wrk_time(v.trim()))
            .unwrap_or(0)
    };
    let errors = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Socket errors:"))
        .map(|v| {
            v.split(',')
                .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    Ok(Row {
        scenario: sc.name.into(),
        family,
        load: "wrk".into(),
        server: server.into(),
        cps: if sc.wrk_close { rps } else { 0.0 },
        rps,
        latency_us: [pct("50%"), pct("90%"), pct("99%"), 0, 0],
        errors,
        load_cpu: 100.0 * wrk_cpu_s / wall,
        server_cpu: 100.0 * server_cpu_s / wall,
        run: 1,
    })
}

/// "1.23ms" → 1230 µs.
fn parse_wrk_time(s: &str) -> u64 {
    let (num, mul) = if let Some(v) = s.strip_suffix("us") {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix("ms") {
        (v, 1e3)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1e6)
    } else {
        (s, 1.0)
    };
    num.parse::<f64>().map(|x| (x * mul) as u64).unwrap_or(0)
}

fn svg_bars(rows: &[Row], path: &Path) -> Result<()> {
    let bars: Vec<(&Row, f64)> = rows
        .iter()
        .map(|r| {
            (
                r,
                if r.scenario == "conn-per-request" {
                    r.cps
                } else {
                    r.rps
                },
            )
        })
        .collect();
    let max = bars.iter().map(|b| b.1).fold(1.0, f64::max);
    let (w, bar_h, pad) = (760.0, 22.0, 260.0);
    let h = 40.0 + bars.len() as f64 * (bar_h + 6.0);
    let mut s = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' font-family='monospace' font-size='12'>\n<text x='10' y='20'>connections/s (conn-per-request) or requests/s (keep-alive)</text>\n"
    );
    for (i, (r, v)) in bars.iter().enumerate() {
        let y = 30.0 + i as f64 * (bar_h + 6.0);
        let len = (w - pad - 90.0) * v / max;
        let color = match (r.load.as_str(), r.server.as_str()) {
            ("xstack", "xstack") => "#2a7",
            ("kernel", "kernel") => "#888",
            ("wrk", _) => "#c84",
            _ => "#58c",
        };
        s += &format!(
            "<text x='5' y='{}'>{} {}→{}{}</text><rect x='{pad}' y='{y}' width='{len:.1}' height='{bar_h}' fill='{color}'/><text x='{:.1}' y='{}'>{v:.0}</text>\n",
            y + 15.0,
            r.scenario,
            r.load,
            r.server,
            if r.family == Family::V6 { " v6" } else { "" },
            pad + len + 4.0,
            y + 15.0
        );
    }
    s += "</svg>\n";
    std::fs::write(path, s)?;
    Ok(())
}

fn svg_cdf(rows: &[Row], path: &Path) -> Result<()> {
    // Latency CDF from the measured percentiles (log-scaled x axis).
    let (w, h, left, bottom) = (760.0, 420.0, 60.0, 40.0);
    let max_us = rows.iter().flat_map(|r| r.latency_us).fold(10u64, u64::max) as f64;
    let x = |us: f64| left + (w - left - 20.0) * (us.max(1.0).ln() / max_us.ln());
    let y = |q: f64| (h - bottom) - (h - bottom - 20.0) * q;
    let mut s = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' font-family='monospace' font-size='11'>\n<text x='10' y='14'>latency CDF (µs, log scale) from p50/p90/p99/p99.9/max</text>\n<line x1='{left}' y1='{}' x2='{}' y2='{}' stroke='black'/>\n",
        h - bottom,
        w - 20.0,
        h - bottom
    );
    for tick in [10.0, 100.0, 1_000.0, 10_000.0, 100_000.0, 1_000_000.0] {
        if tick <= max_us {
            s += &format!(
                "<text x='{:.1}' y='{}'>{tick}</text>\n",
                x(tick),
                h - bottom + 15.0
            );
        }
    }
    let colors = [
        "#2a7", "#888", "#58c", "#c84", "#a3a", "#3aa", "#aa3", "#333", "#f55", "#55f",
    ];
    for (i, r) in rows.iter().filter(|r| r.latency_us[0] > 0).enumerate() {
        let qs = [0.5, 0.9, 0.99, 0.999, 1.0];
        let pts: Vec<String> = r
            .latency_us
            .iter()
            .zip(qs)
            .filter(|(v, _)| **v > 0)
            .map(|(v, q)| format!("{:.1},{:.1}", x(*v as f64), y(q)))
            .collect();
        let c = colors[i % colors.len()];
        s += &format!(
            "<polyline fill='none' stroke='{c}' stroke-width='2' points='{}'/>\n<text x='{}' y='{}' fill='{c}'>{} {}→{}{}</text>\n",
            pts.join(" "),
            left + 10.0,
            40.0 + i as f64 * 14.0,
            r.scenario,
            r.load,
            r.server,
            if r.family == Family::V6 { " v6" } else { "" }
        );
    }
    s += "</svg>\n";
    std::fs::write(path, s)?;
    Ok(())
}

/// Every load → server pair of the full comparison.
const ALL_PAIRS: [(&str, &str); 4] = [
    ("kernel", "kernel"),
    ("kernel", "xstack"),
    ("xstack", "kernel"),
    ("xstack", "xstack"),
];

/// The servers of the user-service rows: the hyper example on kernel
/// sockets and on xstack.
const HYPER_SERVERS: [&str; 2] = ["hyper/kernel", "hyper/xstack"];

/// The pairs of `--quick`: each stack against itself.
const QUICK_PAIRS: [(&str, &str); 2] = [("kernel", "kernel"), ("xstack", "xstack")];

/// Runs the whole comparison; writes `bench.json`, `cps.svg` and
/// `latency-cdf.svg` under `out`, and returns the printed table.
pub fn run(secs: u32, runs: u32, out: &Path, families: Families) -> Result<String> {
    run_pairs(secs, runs, out, &ALL_PAIRS, true, families)
}

/// `xstack bench --quick` (what `cargo xtask demo` runs): both scenarios,
/// kernel→kernel and xstack→xstack only, no wrk; the same files and table
/// as [`run`] with those rows.
pub fn run_quick(secs: u32, runs: u32, out: &Path, families: Families) -> Result<String> {
    run_pairs(secs, runs, out, &QUICK_PAIRS, false, families)
}

/// Most runs `--runs` takes.
pub const MAX_RUNS: u32 = 10;

fn run_pairs(
    secs: u32,
    runs: u32,
    out: &Path,
    pairs: &[(&str, &str)],
    wrk: bool,
    families: Families,
) -> Result<String> {
    crate::runtime::sys::check_privileges("xstack bench")?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let name = format!("b{}", std::process::id() % 100_000);
    let guard = TestbedGuard::up(&name, 1)?;
    let t = guard.testbed.clone();
    let scenarios = [
        Scenario {
            name: "conn-per-request",
            args: [
                "--http",
                "--concurrency",
                "64",
                "--requests-per-conn",
                "1",
                "--close",
                "server",
            ]
            .map(String::from)
            .to_vec(),
            wrk_close: true,
        },
        Scenario {
            name: "keep-alive",
            args: [
                "--http",
                "--concurrency",
                "64",
                "--requests-per-conn",
                "1000000",
                "--close",
                "server",
            ]
            .map(String::from)
            .to_vec(),
            wrk_close: false,
        },
    ];
    let mut rows: Vec<Row> = Vec::new();
    // Each IPv6 row right after its IPv4 row.
    let fams = families.list();
    for run in 1..=runs {
        if runs > 1 {
            eprintln!("bench: run {run} of {runs}");
        }
        let first = rows.len();
        for sc in &scenarios {
            for &(load, server) in pairs {
                for &f in fams {
                    eprintln!(
                        "bench: {} {load} load → {server} server, {f} ({secs} s)",
                        sc.name
                    );
                    rows.push(load_row(&t, sc, (load, server), f, secs, out)?);
                }
            }
            for server in ["kernel", "xstack"].into_iter().filter(|_| wrk) {
                for &f in fams {
                    eprintln!("bench: {} wrk → {server} server, {f} ({secs} s)", sc.name);
                    rows.push(wrk_row(&t, sc, server, f, secs)?);
                }
            }
            if wrk && hyper_bin().is_some() {
                for server in HYPER_SERVERS {
                    for &f in fams {
                        eprintln!(
                            "bench: {} xstack load → {server} server, {f} ({secs} s)",
                            sc.name
                        );
                        rows.push(load_row(&t, sc, ("xstack", server), f, secs, out)?);
                        eprintln!("bench: {} wrk → {server} server, {f} ({secs} s)", sc.name);
                        rows.push(wrk_row(&t, sc, server, f, secs)?);
                    }
                }
            }
        }
        for r in &mut rows[first..] {
            r.run = run;
        }
    }
    if wrk && hyper_bin().is_none() {
        eprintln!(
            "bench: no hyper_server example next to this binary: the hyper rows are skipped \
             (cargo build --release -p stack-user --examples)"
        );
    }
    drop(guard);
    let table = runs_table(&rows, runs, wrk);
    let json = serde_json::json!({
        "seconds": secs,
        "runs": runs,
        "families": fams,
        "rows": rows,
    });
    // The plots show the first run.
    let rows: Vec<Row> = rows.into_iter().filter(|r| r.run == 1).collect();
    let mut f = std::fs::File::create(out.join("bench.json"))?;
    writeln!(f, "{}", serde_json::to_string_pretty(&json)?)?;
    svg_bars(&rows, &out.join("cps.svg"))?;
    svg_cdf(&rows, &out.join("latency-cdf.svg"))?;
    Ok(table)
}

/// The tables of every run (one heading each when there are several) and,
/// with several runs, each scenario's xstack↔xstack / kernel↔kernel ratio
/// per run with its minimum and median: a ratio is only as good as its
/// spread on a shared machine.
fn runs_table(rows: &[Row], runs: u32, wrk: bool) -> String {
    use std::fmt::Write as _;
    if runs <= 1 {
        return table(rows, wrk);
    }
    let mut out = String::new();
    for run in 1..=runs {
        let these: Vec<Row> = rows.iter().filter(|r| r.run == run).cloned().collect();
        let _ = writeln!(out, "run {run} of {runs}");
        out.push_str(&table(&these, wrk));
    }
    let mut fams: Vec<Family> = rows.iter().map(|r| r.family).collect();
    fams.sort();
    fams.dedup();
    for &f in &fams {
        for sc in ["conn-per-request", "keep-alive"] {
            let get = |run: u32, side: &str| {
                rows.iter()
                    .find(|r| {
                        r.run == run
                            && r.scenario == sc
                            && r.family == f
                            && r.load == side
                            && r.server == side
                    })
                    .map(headline)
            };
            let ratios: Vec<f64> = (1..=runs)
                .filter_map(|run| Some(get(run, "xstack")? / get(run, "kernel")?.max(1.0)))
                .collect();
            if ratios.is_empty() {
                continue;
            }
            let mut sorted = ratios.clone();
            sorted.sort_by(f64::total_cmp);
            let each: Vec<String> = ratios.iter().map(|r| format!("{r:.2}×")).collect();
            let _ = writeln!(
                out,
                "{sc} ({f}), {} runs: xstack↔xstack / kernel↔kernel = {} (min {:.2}×, median {:.2}×)",
                ratios.len(),
                each.join(", "),
                sorted[0],
                sorted[sorted.len() / 2],
            );
        }
    }
    out
}

/// The measure a scenario is compared on: conn/s for conn-per-request,
/// req/s otherwise.
fn headline(r: &Row) -> f64 {
    if r.scenario == "conn-per-request" {
        r.cps
    } else {
        r.rps
    }
}

/// The printed table and the ratio lines; the wrk ratio only when wrk ran.
/// With rows of both families every ratio line names its family, and one
/// more line per scenario gives IPv6 / IPv4 for each pair measured over
/// both.
fn table(rows: &[Row], wrk: bool) -> String {
    let mut table = String::new();
    use std::fmt::Write as _;
    let _ = writeln!(
        table,
        "| scenario         | family | load   | server       | conn/s   | req/s    | p50 µs | p99 µs | p99.9 µs | errors | load CPU % | server CPU % |"
    );
    let _ = writeln!(
        table,
        "|------------------|--------|--------|--------------|----------|----------|--------|--------|----------|--------|------------|--------------|"
    );
    for r in rows {
        let _ = writeln!(
            table,
            "| {:<16} | {:<6} | {:<6} | {:<12} | {:>8.0} | {:>8.0} | {:>6} | {:>6} | {:>8} | {:>6} | {:>10.0} | {:>12.0} |",
            r.scenario, r.family.label(), r.load, r.server, r.cps, r.rps, r.latency_us[0], r.latency_us[2], r.latency_us[3], r.errors, r.load_cpu, r.server_cpu
        );
    }
    let mut fams: Vec<Family> = rows.iter().map(|r| r.family).collect();
    fams.sort();
    fams.dedup();
    let find = |sc: &str, f: Family, l: &str, s: &str| {
        rows.iter()
            .find(|r| r.scenario == sc && r.family == f && r.load == l && r.server == s)
            .map(headline)
            .unwrap_or(0.0)
    };
    for &f in &fams {
        // IPv4 alone prints as before IPv6 existed.
        let tag = if fams == [Family::V4] {
            String::new()
        } else {
            format!(" ({f})")
        };
        for sc in ["conn-per-request", "keep-alive"] {
            let kk = find(sc, f, "kernel", "kernel").max(1.0);
            let _ = write!(
                table,
                "{sc}{tag}: xstack↔xstack / kernel↔kernel = {:.2}×",
                find(sc, f, "xstack", "xstack") / kk,
            );
            if wrk {
                let _ = write!(
                    table,
                    "; xstack load / wrk against the kernel server = {:.2}×",
                    find(sc, f, "xstack", "kernel") / find(sc, f, "wrk", "kernel").max(1.0)
                );
            }
            let _ = writeln!(table);
        }
        for sc in ["conn-per-request", "keep-alive"] {
            let (hx, hk) = (
                find(sc, f, "xstack", "hyper/xstack"),
                find(sc, f, "xstack", "hyper/kernel"),
            );
            if hx == 0.0 && hk == 0.0 {
                continue;
            }
            let _ = writeln!(
                table,
                "{sc}{tag}: hyper on xstack / hyper on kernel = {:.2}× (xstack load), {:.2}× (wrk); hyper on xstack / built-in http on xstack = {:.2}× (xstack load)",
                hx / hk.max(1.0),
                find(sc, f, "wrk", "hyper/xstack") / find(sc, f, "wrk", "hyper/kernel").max(1.0),
                hx / find(sc, f, "xstack", "xstack").max(1.0),
            );
        }
    }
    if fams == [Family::V4, Family::V6] {
        for sc in ["conn-per-request", "keep-alive"] {
            let what = if sc == "conn-per-request" {
                "conn/s"
            } else {
                "req/s"
            };
            let mut pairs: Vec<(&str, &str)> = Vec::new();
            for r in rows.iter().filter(|r| r.scenario == sc) {
                if !pairs.contains(&(r.load.as_str(), r.server.as_str())) {
                    pairs.push((r.load.as_str(), r.server.as_str()));
                }
            }
            let parts: Vec<String> = pairs
                .iter()
                .map(|&(l, s)| {
                    format!(
                        "{} {l}→{s}",
                        ratio(find(sc, Family::V6, l, s), find(sc, Family::V4, l, s))
                    )
                })
                .collect();
            if !parts.is_empty() {
                let _ = writeln!(table, "{sc}: IPv6 / IPv4 {what} = {}", parts.join(", "));
            }
        }
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(scenario: &str, side: &str, v: f64) -> Row {
        Row {
            scenario: scenario.into(),
            family: Family::V4,
            load: side.into(),
            server: side.into(),
            cps: v,
            rps: v,
            latency_us: [0; 5],
            errors: 0,
            load_cpu: 0.0,
            server_cpu: 0.0,
            run: 1,
        }
    }

    #[test]
    fn quick_table_has_each_stack_against_itself_and_no_wrk_ratio() {
        let rows = [
            row("conn-per-request", "kernel", 100.0),
            row("conn-per-request", "xstack", 250.0),
            row("keep-alive", "kernel", 1000.0),
            row("keep-alive", "xstack", 3000.0),
        ];
        let t = table(&rows, false);
        assert_eq!(t.lines().filter(|l| l.starts_with("| ")).count(), 5, "{t}");
        assert!(
            t.contains("conn-per-request: xstack↔xstack / kernel↔kernel = 2.50×\n"),
            "{t}"
        );
        assert!(
            t.contains("keep-alive: xstack↔xstack / kernel↔kernel = 3.00×\n"),
            "{t}"
        );
        assert!(!t.contains("wrk"), "{t}");
        assert!(table(&rows, true).contains("wrk against the kernel server"));
        assert_eq!(QUICK_PAIRS, [("kernel", "kernel"), ("xstack", "xstack")]);
    }

    #[test]
    fn three_runs_print_each_table_and_the_ratio_per_run_with_min_and_median() {
        let mut rows = Vec::new();
        for (run, ka) in [(1, 2300.0), (2, 3100.0), (3, 2700.0)] {
            for (sc, side, v) in [
                ("conn-per-request", "kernel", 100.0),
                ("conn-per-request", "xstack", 600.0),
                ("keep-alive", "kernel", 1000.0),
                ("keep-alive", "xstack", ka),
            ] {
                rows.push(Row {
                    run,
                    ..row(sc, side, v)
                });
            }
        }
        let t = runs_table(&rows, 3, false);
        for run in 1..=3 {
            assert!(t.contains(&format!("run {run} of 3\n")), "{t}");
        }
        assert_eq!(t.lines().filter(|l| l.starts_with("| ")).count(), 15, "{t}");
        assert!(
            t.contains("keep-alive (IPv4), 3 runs: xstack↔xstack / kernel↔kernel = 2.30×, 3.10×, 2.70× (min 2.30×, median 2.70×)\n"),
            "{t}"
        );
        assert!(
            t.contains("conn-per-request (IPv4), 3 runs: xstack↔xstack / kernel↔kernel = 6.00×, 6.00×, 6.00× (min 6.00×, median 6.00×)\n"),
            "{t}"
        );
        // One run prints as before.
        let one: Vec<Row> = rows.iter().filter(|r| r.run == 1).cloned().collect();
        assert_eq!(runs_table(&one, 1, false), table(&one, false));
    }

    #[test]
    fn hyper_rows_get_their_ratio_lines() {
        let mut rows = vec![row("keep-alive", "xstack", 3000.0)];
        for (load, server, v) in [
            ("xstack", "hyper/xstack", 2400.0),
            ("xstack", "hyper/kernel", 1200.0),
            ("wrk", "hyper/xstack", 1000.0),
            ("wrk", "hyper/kernel", 800.0),
        ] {
            rows.push(Row {
                server: server.into(),
                ..row("keep-alive", load, v)
            });
        }
        let t = table(&rows, true);
        assert!(
            t.contains("keep-alive: hyper on xstack / hyper on kernel = 2.00× (xstack load), 1.25× (wrk); hyper on xstack / built-in http on xstack = 0.80× (xstack load)\n"),
            "{t}"
        );
        assert!(!t.contains("conn-per-request: hyper"), "{t}");
        assert!(!table(&rows[..1], true).contains("hyper"));
    }

    #[test]
    fn both_families_side_by_side_with_a_family_column_and_ipv6_over_ipv4_lines() {
        let mut rows = Vec::new();
        for (sc, side, v4, v6) in [
            ("conn-per-request", "kernel", 100.0, 90.0),
            ("conn-per-request", "xstack", 250.0, 240.0),
            ("keep-alive", "kernel", 1000.0, 950.0),
            ("keep-alive", "xstack", 3000.0, 3300.0),
        ] {
            rows.push(row(sc, side, v4));
            rows.push(Row {
                family: Family::V6,
                ..row(sc, side, v6)
            });
        }
        let t = table(&rows, false);
        let data: Vec<&str> = t.lines().filter(|l| l.starts_with("| ")).collect();
        assert_eq!(data.len(), 9, "{t}");
        assert!(data[0].contains("| family |"), "{t}");
        assert!(
            data[1].starts_with("| conn-per-request | IPv4   | kernel | kernel "),
            "{t}"
        );
        assert!(
            data[2].starts_with("| conn-per-request | IPv6   | kernel | kernel "),
            "{t}"
        );
        assert!(
            t.contains("conn-per-request (IPv4): xstack↔xstack / kernel↔kernel = 2.50×\n"),
            "{t}"
        );
        assert!(
            t.contains("keep-alive (IPv6): xstack↔xstack / kernel↔kernel = 3.47×\n"),
            "{t}"
        );
        assert!(
            t.contains(
                "conn-per-request: IPv6 / IPv4 conn/s = 0.90× kernel→kernel, 0.96× xstack→xstack\n"
            ),
            "{t}"
        );
        assert!(
            t.contains(
                "keep-alive: IPv6 / IPv4 req/s = 0.95× kernel→kernel, 1.10× xstack→xstack\n"
            ),
            "{t}"
        );
        // The JSON rows carry their family.
        let v = serde_json::to_value(&rows[1]).unwrap();
        assert_eq!(v["family"], "ipv6");
    }

    #[test]
    fn ipv6_alone_names_its_family_and_prints_no_ratio_between_families() {
        let rows: Vec<Row> = [
            ("conn-per-request", "kernel", 100.0),
            ("conn-per-request", "xstack", 200.0),
        ]
        .iter()
        .map(|&(sc, side, v)| Row {
            family: Family::V6,
            ..row(sc, side, v)
        })
        .collect();
        let t = table(&rows, false);
        assert!(
            t.contains("conn-per-request (IPv6): xstack↔xstack / kernel↔kernel = 2.00×\n"),
            "{t}"
        );
        assert!(!t.contains("IPv6 / IPv4"), "{t}");
        assert!(!t.contains("IPv4"), "{t}");
    }

    #[test]
    fn wrk_times_parse_to_microseconds() {
        assert_eq!(parse_wrk_time("512.00us"), 512);
        assert_eq!(parse_wrk_time("1.25ms"), 1250);
        assert_eq!(parse_wrk_time("2.00s"), 2_000_000);
    }
}
