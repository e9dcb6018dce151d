//! `cargo xtask demo`: the main job in about a minute after the build —
//! xstack next to the Linux kernel on fresh testbeds.
//!
//! 1. `xstack bench --quick`: connection per request and keep-alive, the
//!    kernel load against the kernel server and the xstack load against the
//!    xstack server (http app, 64 B body, loads on CPU 0, servers on CPU 1).
//! 2. `xstack bench synflood --systems xstack --rates 0,R`: legitimate
//!    connections (connect, 1-byte echo, close) with and without a SYN flood
//!    of R packets per second from spoofed 198.18.128.0/17 sources.
//!
//! Then a short table from the runs' JSON summaries (nothing in it is
//! written here: every figure is what the run measured), and where to go
//! next. `-v` shows the tools' own tables and progress and adds the round
//! trip of the first demo (ARP, ping and a SYN from the Linux peer) with the
//! engine's counters (`xstack stats`). Every testbed goes down at the end,
//! also when a step fails or overruns its deadline.

use std::{
    io::Read as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::{
    build::build,
    setup::setup,
    util::{is_root, root, run, wait_for},
};

/// Seconds per run of the kernel comparison.
const BENCH_SECONDS: u32 = 4;
/// Seconds per measurement of the SYN-flood run.
const FLOOD_SECONDS: u32 = 3;
/// The SYN-flood rate (packets per second).
const FLOOD_PPS: u64 = 100_000;
/// Deadline of each step: its loads are bounded by their own durations; this
/// bounds the step whatever happens to them.
const STEP_DEADLINE: Duration = Duration::from_secs(120);

pub fn demo(verbose: bool) -> Result<()> {
    setup()?;
    // Release: the figures are the point, and a debug build is 5-10× slower.
    let bin = build(true)?;
    if !is_root() {
        bail!(
            "the demo creates network namespaces and attaches XDP: run `sudo -E cargo xtask demo`"
        );
    }
    let started = Instant::now();
    let out = root().join("target/demo");
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let bench_dir = out.join("bench");
    let flood_dir = out.join("synflood");
    let _ = std::fs::remove_file(bench_dir.join("bench.json"));
    let _ = std::fs::remove_file(flood_dir.join("synflood.json"));

    println!(
        "\ndemo: kernel vs xstack, connection per request and keep-alive, {BENCH_SECONDS} s each, on a fresh testbed ..."
    );
    step(
        &bin,
        &[
            "bench",
            "--quick",
            "--seconds",
            &BENCH_SECONDS.to_string(),
            "--out",
            path_str(&bench_dir)?,
        ],
        verbose,
        // kernel.rs names its testbed b<pid % 100000>.
        |pid| vec![format!("b{}", pid % 100_000)],
    )?;
    println!(
        "demo: legit connections to xstack with and without a {} kpps SYN flood, {FLOOD_SECONDS} s each ...",
        FLOOD_PPS / 1000
    );
    step(
        &bin,
        &[
            "bench",
            "synflood",
            "--systems",
            "xstack",
            "--kinds",
            "syn",
            "--rates",
            &format!("0,{FLOOD_PPS}"),
            "--seconds",
            &FLOOD_SECONDS.to_string(),
            "--out",
            path_str(&flood_dir)?,
        ],
        verbose,
        // synflood.rs: sg<pid % 10000> (generator maximum), sf<pid % 10000><n>
        // (one testbed per row: the no-flood row, then the SYN row).
        |pid| {
            vec![
                format!("sg{}", pid % 10_000),
                format!("sf{}0", pid % 10_000),
                format!("sf{}1", pid % 10_000),
            ]
        },
    )?;
    let bench = read_json(&bench_dir.join("bench.json"))?;
    let flood = read_json(&flood_dir.join("synflood.json"))?;
    println!();
    print!("{}", summary(&bench, &flood, FLOOD_PPS)?);
    if verbose {
        round_trip(&bin)?;
    }
    println!(
        "demo: {:.0} s after the build; every testbed is down (summaries in {})",
        started.elapsed().as_secs_f64(),
        out.display()
    );
    Ok(())
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str()
        .with_context(|| format!("{} is not UTF-8", p.display()))
}

fn read_json(p: &Path) -> Result<Value> {
    let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", p.display()))
}

/// Runs `xstack ARGS` from the workspace root, its output shown (`verbose`)
/// or kept and shown only if it fails; kills it past [`STEP_DEADLINE`]. The
/// testbeds `testbeds(pid)` names go down when it ends, however it ends.
fn step(
    bin: &Path,
    args: &[&str],
    verbose: bool,
    testbeds: impl Fn(u32) -> Vec<String>,
) -> Result<()> {
    let mut cmd = Command::new(bin);
    cmd.current_dir(root()).args(args);
    if !verbose {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("running xstack {}", args.join(" ")))?;
    let _guard = Teardown {
        bin: bin.to_path_buf(),
        names: testbeds(child.id()),
    };
    let readers = [
        child.stdout.take().map(|s| drain(Box::new(s))),
        child.stderr.take().map(|s| drain(Box::new(s))),
    ];
    let status = wait_deadline(&mut child, STEP_DEADLINE);
    let shown: String = readers
        .into_iter()
        .flatten()
        .filter_map(|h| h.join().ok())
        .collect();
    match status {
        Some(s) if s.success() => Ok(()),
        other => {
            eprint!("{shown}");
            match other {
                Some(s) => bail!("xstack {} failed with {s}", args.join(" ")),
                None => bail!(
                    "xstack {} ran past {} s and was stopped",
                    args.join(" "),
                    STEP_DEADLINE.as_secs()
                ),
            }
        }
    }
}

fn drain(mut r: Box<dyn std::io::Read + Send>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = r.read_to_string(&mut s);
        s
    })
}

/// Waits for `child` up to `limit`; past it SIGTERM, 5 s later SIGKILL, and
/// `None`.
fn wait_deadline(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        match child.try_wait() {
            Ok(Some(s)) => return Some(s),
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(_) => break,
        }
    }
    // SAFETY: signalling our own child, by its pid.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        if let Ok(Some(_)) = child.try_wait() {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// 54464.4 → "54,464".
fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.max(0.0));
    let mut s = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            s.push(',');
        }
        s.push(c);
    }
    s
}

/// The demo's table from `bench.json` (`xstack bench --quick`) and
/// `synflood.json` (`xstack bench synflood --systems xstack --rates
/// 0,flood_pps`).
fn summary(bench: &Value, flood: &Value, flood_pps: u64) -> Result<String> {
    use std::fmt::Write as _;
    let rows = bench
        .get("rows")
        .and_then(Value::as_array)
        .context("bench.json has no rows")?;
    let row = |scenario: &str, side: &str| -> Result<&Value> {
        rows.iter()
            .find(|r| r["scenario"] == scenario && r["load"] == side && r["server"] == side)
            .with_context(|| format!("bench.json has no {scenario} row for {side}→{side}"))
    };
    let num = |r: &Value, k: &str| r[k].as_f64().unwrap_or(0.0);
    let mut s = String::new();
    let secs = bench["seconds"].as_u64().unwrap_or(0);
    let _ = writeln!(
        s,
        "kernel vs xstack, each stack on both ends (http app, 64 B body, {secs} s per run, load on CPU 0, server on CPU 1)"
    );
    let _ = writeln!(
        s,
        "{:<18} {:>10} {:>11} {:>9}",
        "", "kernel", "xstack", "ratio"
    );
    let mut errors = Vec::new();
    for (label, scenario, key) in [
        ("connections/s", "conn-per-request", "cps"),
        ("keep-alive req/s", "keep-alive", "rps"),
    ] {
        let (k, x) = (row(scenario, "kernel")?, row(scenario, "xstack")?);
        let (kv, xv) = (num(k, key), num(x, key));
        let ratio = if kv > 0.0 {
            format!("{:.2}×", xv / kv)
        } else {
            "-".into()
        };
        let _ = writeln!(
            s,
            "{label:<18} {:>10} {:>11} {ratio:>9}",
            thousands(kv),
            thousands(xv)
        );
        for (side, r) in [("kernel", k), ("xstack", x)] {
            let e = r["errors"].as_u64().unwrap_or(0);
            if e > 0 {
                errors.push(format!("{scenario} {side}: {e}"));
            }
        }
    }
    if !errors.is_empty() {
        let _ = writeln!(
            s,
            "errors (refused/reset/timeout/other): {}",
            errors.join(", ")
        );
    }
    let cells = flood
        .get("cells")
        .and_then(Value::as_array)
        .context("synflood.json has no cells")?;
    let cell = |pps: u64| {
        cells
            .iter()
            .find(|c| c["system"] == "xstack" && c["flood_pps"].as_u64() == Some(pps))
    };
    let kpps = |p: f64| format!("{:.0} kpps", p / 1000.0);
    match (cell(0), cell(flood_pps)) {
        (Some(calm), Some(under)) => {
            if let Some(e) = [calm, under].iter().find_map(|c| c["error"].as_str()) {
                let _ = writeln!(s, "SYN flood: could not run: {e}");
            } else {
                // The legit load: offered at a fixed rate (open loop), or
                // a closed loop when synflood.json says 0 or nothing.
                let offered = match flood.get("legit_rate").and_then(Value::as_f64) {
                    Some(r) if r > 0.0 => format!(" of {}/s offered", thousands(r)),
                    _ => String::new(),
                };
                let _ = writeln!(
                    s,
                    "SYN flood {} ({} sent) on xstack: legit connections {:.1}% ok, {}/s{offered} (without flood: {:.1}% ok, {}/s)",
                    kpps(flood_pps as f64),
                    kpps(num(under, "flood_achieved_pps")),
                    num(under, "success_pct"),
                    thousands(num(under, "cps")),
                    num(calm, "success_pct"),
                    thousands(num(calm, "cps")),
                );
            }
        }
        _ => bail!("synflood.json has no xstack cells for 0 and {flood_pps} pps"),
    }
    let _ = writeln!(
        s,
        "next: xstack bench (every pair, wrk, latency) · xstack bench synflood (Linux, SYNPROXY, xstack) · xstack doctor --iface IF · README \"Using it\" · cargo xtask demo -v (counters)"
    );
    Ok(s)
}

/// The first demo, shown with `-v`: testbed up, `xstack serve`, ARP, ping
/// and a SYN from the Linux peer, the engine's counters, clean stop,
/// testbed down.
fn round_trip(bin: &Path) -> Result<()> {
    let name = format!("demo{}", std::process::id() % 10000);
    let xs = |args: &[&str]| {
        let mut c = Command::new(bin);
        c.args(args);
        c
    };
    println!(
        "\n== round trip: testbed up, two namespaces and a veth pair, addresses from 198.18.0.0/15"
    );
    let guard = Teardown {
        bin: bin.to_path_buf(),
        names: vec![name.clone()],
    };
    run(&mut xs(&[
        "testbed", "up", "--name", &name, "--queues", "2",
    ]))?;
    let stack_ns = format!("xs-{name}-stack");
    let peer_ns = format!("xs-{name}-peer");
    let stack_if = format!("xs-{name}-s");
    let peer_if = format!("xs-{name}-p");

    println!("\n== xstack serve in {stack_ns}: XDP on {stack_if}, one AF_XDP socket per queue, engine owns 198.18.0.2");
    let mut serve = Command::new("ip")
        .args(["netns", "exec", &stack_ns])
        .arg(bin)
        .args([
            "serve",
            "--iface",
            &stack_if,
            "--ip",
            "198.18.0.2",
            "--port",
            "8080",
            "--duration",
            "30",
        ])
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()?;
    let up = wait_for(|| {
        xs(&["stats", "--iface", &stack_if])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if !up {
        let _ = serve.kill();
        let _ = serve.wait();
        bail!("xstack serve did not come up");
    }
    println!(
        "\n== from the Linux kernel in {peer_ns}: arping, ping and a TCP SYN to 198.18.0.2:8080"
    );
    let peer = |prog: &str, args: &[&str]| {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &peer_ns, prog]).args(args);
        c
    };
    let probes = run(&mut peer(
        "arping",
        &["-c", "2", "-w", "3", "-I", &peer_if, "198.18.0.2"],
    ))
    .and_then(|()| {
        run(&mut peer(
            "ping",
            &["-c", "3", "-i", "0.2", "-W", "2", "198.18.0.2"],
        ))
    });
    // One SYN: connect with a timeout shorter than the kernel's SYN retry (1 s).
    let _ = peer(
        "timeout",
        &["0.5", "bash", "-c", "echo > /dev/tcp/198.18.0.2/8080"],
    )
    .status();
    println!("\n== counters of the running instance (`xstack stats`)");
    let stats = run(&mut xs(&["stats", "--iface", &stack_if]));
    println!("\n== stop with SIGTERM: clean detach and final counters");
    // SAFETY: signalling our own child, by its pid.
    unsafe { libc::kill(serve.id() as i32, libc::SIGTERM) };
    let status = serve.wait()?;
    drop(guard);
    probes?;
    stats?;
    if !status.success() {
        bail!("xstack serve exited with {status}");
    }
    println!("round trip: ARP and ICMP answered by the userspace engine through XDP → AF_XDP → TX, TCP SYNs counted on their queue\n");
    Ok(())
}

/// Takes testbeds down when dropped: after each step, whether it succeeded,
/// failed or overran ("down" of a testbed that is not there does nothing).
struct Teardown {
    bin: PathBuf,
    names: Vec<String>,
}

impl Drop for Teardown {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = Command::new(&self.bin)
                .args(["testbed", "down", "--name", name])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bench(kernel_cps: f64, xstack_cps: f64, kernel_rps: f64, xstack_rps: f64) -> Value {
        let row = |sc: &str, side: &str, cps: f64, rps: f64, errors: u64| json!({"scenario": sc, "load": side, "server": side, "cps": cps, "rps": rps, "errors": errors});
        json!({"seconds": 4, "rows": [
            row("conn-per-request", "kernel", kernel_cps, kernel_cps, 0),
            row("conn-per-request", "xstack", xstack_cps, xstack_cps, 0),
            row("keep-alive", "kernel", 0.0, kernel_rps, 0),
            row("keep-alive", "xstack", 0.0, xstack_rps, 3),
        ]})
    }

    fn flood() -> Value {
        json!({"cells": [
            {"system": "xstack", "flood_pps": 0, "flood_achieved_pps": 0.0, "success_pct": 100.0, "cps": 5009.2, "error": null},
            {"system": "xstack", "flood_pps": 100000, "flood_achieved_pps": 99871.0, "success_pct": 99.84, "cps": 4980.4, "error": null},
        ]})
    }

    #[test]
    fn demo_table_shows_the_measured_figures_and_their_ratios() {
        let s = summary(
            &bench(10569.0, 54464.0, 84155.0, 278319.0),
            &flood(),
            100_000,
        )
        .unwrap();
        let lines: Vec<&str> = s.lines().collect();
        assert!(lines[1].contains("kernel") && lines[1].contains("xstack"));
        assert!(lines[2].starts_with("connections/s"), "{s}");
        assert!(
            lines[2].contains("10,569")
                && lines[2].contains("54,464")
                && lines[2].contains("5.15×"),
            "{s}"
        );
        assert!(
            lines[3].contains("84,155")
                && lines[3].contains("278,319")
                && lines[3].contains("3.31×"),
            "{s}"
        );
        assert!(s.contains("keep-alive xstack: 3"), "errors are shown: {s}");
        assert!(
            s.contains("SYN flood 100 kpps (100 kpps sent) on xstack: legit connections 99.8% ok, 4,980/s (without flood: 100.0% ok, 5,009/s)"),
            "{s}"
        );
        assert!(s.lines().last().unwrap().starts_with("next: "), "{s}");
        // A paced legit load says what was offered.
        let mut paced = flood();
        paced["legit_rate"] = json!(2000);
        let p = summary(&bench(1000.0, 3000.0, 2000.0, 1000.0), &paced, 100_000).unwrap();
        assert!(
            p.contains("4,980/s of 2,000/s offered (without flood"),
            "{p}"
        );
        // Other figures, other table: nothing is fixed in the text.
        let t = summary(&bench(1000.0, 3000.0, 2000.0, 1000.0), &flood(), 100_000).unwrap();
        assert!(t.contains("3.00×") && t.contains("0.50×"), "{t}");
    }

    #[test]
    fn demo_table_says_what_is_missing_instead_of_printing_zeros() {
        let mut b = bench(1.0, 2.0, 3.0, 4.0);
        b["rows"].as_array_mut().unwrap().remove(1);
        let e = summary(&b, &flood(), 100_000).unwrap_err().to_string();
        assert!(e.contains("conn-per-request row for xstack→xstack"), "{e}");
        let e = summary(&bench(1.0, 2.0, 3.0, 4.0), &flood(), 50_000)
            .unwrap_err()
            .to_string();
        assert!(e.contains("50000"), "{e}");
        let mut f = flood();
        f["cells"][1]["error"] = json!("xstack serve did not start");
        let s = summary(&bench(1.0, 2.0, 3.0, 4.0), &f, 100_000).unwrap();
        assert!(
            s.contains("SYN flood: could not run: xstack serve did not start"),
            "{s}"
        );
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(0.0), "0");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(278319.2), "278,319");
        assert_eq!(thousands(1234567.0), "1,234,567");
    }
}
