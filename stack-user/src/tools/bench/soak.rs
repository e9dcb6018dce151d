//! `xstack bench soak`: xstack load against xstack serve at full speed for
//! a long, bounded run on a fresh testbed, sampling both processes' memory,
//! then a verdict: errors, and memory growth after the first minute.
//!
//! The server reports its RSS and the heap its allocator has handed out
//! (`xstack stats`: `memory`); the load generator's RSS is read from
//! `/proc/PID/statm`. A leak shows as heap in use that keeps rising; a
//! one-off step in RSS with a flat heap is the allocator keeping pages.

use std::{
    fmt::Write as _,
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::Value;

use super::kernel::{bin, pin, start_server, stop_server, wait_cpu};
use crate::tools::testbed::{netns_command, TestbedGuard};

/// Options of `xstack bench soak`.
#[derive(clap::Args, Debug, Clone)]
pub struct SoakArgs {
    /// Seconds of load (the soak is 600).
    #[arg(long, default_value_t = 600)]
    pub seconds: u32,
    /// Connections kept busy (closed loop, one request per connection, the
    /// server closes first: TIME_WAIT on the server).
    #[arg(long, default_value_t = 64)]
    pub concurrency: u32,
    /// Seconds between memory samples.
    #[arg(long, default_value_t = 10)]
    pub sample: u32,
    /// Where to write soak.json and the load's summary.
    #[arg(long, default_value = "target/soak")]
    pub out: PathBuf,
}

/// One memory sample.
#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    /// Seconds since the load started.
    pub t_s: f64,
    /// Server RSS.
    pub server_rss: u64,
    /// Server heap in use.
    pub server_heap: u64,
    /// Load generator RSS.
    pub load_rss: u64,
    /// Server connections in TIME_WAIT.
    pub server_time_wait: u64,
}

/// The result.
#[derive(Clone, Debug, Serialize)]
pub struct Soak {
    /// Memory samples.
    pub samples: Vec<Sample>,
    /// The load generator's summary (`xstack load --json`).
    pub load: Value,
    /// Errors of every kind.
    pub errors: u64,
    /// Growth from the first sample at or after one minute (or half the run
    /// when shorter) to the last, in bytes: server RSS, server heap, load RSS.
    pub growth_after_warmup: [i64; 3],
}

/// Runs the soak; returns the printed report.
pub fn run(a: &SoakArgs) -> Result<String> {
    crate::runtime::sys::check_privileges("xstack bench soak")?;
    if !(10..=3600).contains(&a.seconds) {
        bail!("--seconds {} is out of range: use 10 to 3600", a.seconds);
    }
    if a.sample == 0 || a.concurrency == 0 {
        bail!("--sample and --concurrency must be at least 1");
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let guard = TestbedGuard::up(&format!("k{}", std::process::id() % 100_000), 1)?;
    let t = guard.testbed.clone();
    let server = start_server(&t, "xstack", super::family::Family::V4)?;
    let exe = bin()?;
    let json = a.out.join("soak-load.json");
    let mut cmd = netns_command(&t.peer_ns, exe.to_str().unwrap_or("xstack"));
    // One core each, as in `xstack bench`.
    let mut load = pin(&mut cmd, 0)
        .args(["load", "--iface", &t.peer_if, "--ip", "198.18.0.3"])
        .args(["--target", "198.18.0.2:80", "--http", "--close", "server"])
        .args(["--concurrency", &a.concurrency.to_string()])
        .args([
            "--duration",
            &a.seconds.to_string(),
            "--busy-poll",
            "--connect-rate",
            "0",
            "--quiet",
        ])
        .arg("--json")
        .arg(&json)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawning xstack load")?;
    let started = Instant::now();
    let mut samples = Vec::new();
    let mut next = started;
    let mut report = String::new();
    let _ = writeln!(
        report,
        "{:>7} {:>12} {:>12} {:>12} {:>10}",
        "t s", "serve RSS MB", "serve heap MB", "load RSS MB", "TIME_WAIT"
    );
    while load.try_wait()?.is_none() {
        if Instant::now() >= next {
            let s = crate::runtime::control::query_stats(Some(&t.stack_if)).unwrap_or(Value::Null);
            let u = |p: &str| s.pointer(p).and_then(Value::as_u64).unwrap_or(0);
            let sample = Sample {
                t_s: started.elapsed().as_secs_f64(),
                server_rss: u("/memory/rss_bytes"),
                server_heap: u("/memory/heap_in_use_bytes"),
                load_rss: crate::runtime::sys::rss_bytes(&load.id().to_string()),
                server_time_wait: u("/states/TIME_WAIT"),
            };
            let _ = writeln!(
                report,
                "{:>7.0} {:>12.1} {:>12.1} {:>12.1} {:>10}",
                sample.t_s,
                sample.server_rss as f64 / 1e6,
                sample.server_heap as f64 / 1e6,
                sample.load_rss as f64 / 1e6,
                sample.server_time_wait
            );
            eprint!(
                "{}",
                report
                    .lines()
                    .last()
                    .map(|l| format!("{l}\n"))
                    .unwrap_or_default()
            );
            samples.push(sample);
            next += Duration::from_secs(u64::from(a.sample));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = wait_cpu(&mut load);
    stop_server(&t, "xstack", super::family::Family::V4, server)?;
    drop(guard);
    let summary: Value = serde_json::from_slice(
        &std::fs::read(&json).with_context(|| format!("the load wrote no {}", json.display()))?,
    )?;
    let errors: u64 = ["refused", "reset", "timeout", "connect_timeout", "other"]
        .iter()
        .filter_map(|k| summary["errors"][k].as_u64())
        .sum();
    let warm = f64::from(a.seconds.min(120)) / 2.0;
    let base = samples.iter().find(|s| s.t_s >= warm);
    let growth = match (base, samples.last()) {
        (Some(b), Some(l)) => [
            l.server_rss as i64 - b.server_rss as i64,
            l.server_heap as i64 - b.server_heap as i64,
            l.load_rss as i64 - b.load_rss as i64,
        ],
        _ => [0; 3],
    };
    let _ = writeln!(
        report,
        "load: {} connections ({:.0}/s), errors {} (refused {} reset {} timeout {} other {}), p99 {} µs, p99.9 {} µs, max {} µs",
        summary["connections"],
        summary["connections_per_s"].as_f64().unwrap_or(0.0),
        errors,
        summary["errors"]["refused"],
        summary["errors"]["reset"],
        summary["errors"]["timeout"],
        summary["errors"]["other"],
        summary["latency_us"]["p99"],
        summary["latency_us"]["p999"],
        summary["latency_us"]["max"],
    );
    let _ = writeln!(
        report,
        "growth after {warm:.0} s: serve RSS {:+.2} MB, serve heap {:+.2} MB, load RSS {:+.2} MB",
        growth[0] as f64 / 1e6,
        growth[1] as f64 / 1e6,
        growth[2] as f64 / 1e6
    );
    let soak = Soak {
        samples,
        load: summary,
        errors,
        growth_after_warmup: growth,
    };
    std::fs::write(
        a.out.join("soak.json"),
        serde_json::to_string_pretty(&soak)?,
    )?;
    let _ = writeln!(report, "wrote {}/soak.json", a.out.display());
    Ok(report)
}
