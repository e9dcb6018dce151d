//! `xstack merge`: the results of N copies of one load (`--segment I/N`,
//! run on N hosts) as one run. Counts, bytes, errors and rates are summed
//! from the JSON summaries; percentiles come from the sum of every
//! interval histogram of the runs' `--hdr` logs — exact, never an average
//! of percentiles (which is not a percentile of anything).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use base64::Engine as _;
use hdrhistogram::{
    serialization::{
        interval_log::{IntervalLogIterator, LogEntry},
        Deserializer,
    },
    Histogram,
};

use super::{Errors, Latency, QueueSummary, Summary};

/// One histogram of every latency in `logs` (HdrHistogram interval logs,
/// as `--hdr` writes them): the sum of all their intervals.
pub fn add_logs(logs: &[(String, Vec<u8>)]) -> Result<Histogram<u64>> {
    let mut total = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    let mut de = Deserializer::new();
    for (name, bytes) in logs {
        for entry in IntervalLogIterator::new(bytes) {
            let entry =
                entry.map_err(|e| anyhow::anyhow!("{name}: not an HdrHistogram log ({e:?})"))?;
            let LogEntry::Interval(h) = entry else {
                continue;
            };
            let raw = base64::engine::general_purpose::STANDARD
                .decode(h.encoded_histogram())
                .with_context(|| format!("{name}: an interval is not base64"))?;
            let part: Histogram<u64> = de
                .deserialize(&mut std::io::Cursor::new(raw))
                .map_err(|e| anyhow::anyhow!("{name}: an interval does not decode ({e:?})"))?;
            total
                .add(&part)
                .map_err(|e| anyhow::anyhow!("{name}: {e:?}"))?;
        }
    }
    Ok(total)
}

fn num(v: &serde_json::Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or(0.0)
}

fn int(v: &serde_json::Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or(0)
}

/// The summaries of N concurrent runs, and the sum of their latency
/// logs, as the summary of one run (the layout `xstack load --json`
/// writes). Rates add up (the runs ran together); the elapsed time is the
/// longest; peak TIME_WAIT adds up (an upper bound, as with `--queues`).
pub fn merge(summaries: &[serde_json::Value], hist: &Histogram<u64>) -> Result<Summary> {
    if summaries.is_empty() {
        bail!("nothing to merge: give the runs' --json summaries and --hdr logs");
    }
    let requests: u64 = summaries.iter().map(|s| int(s, "requests")).sum();
    if requests > 0 && hist.is_empty() {
        bail!("exact percentiles need the runs' --hdr logs (percentiles are never averaged); pass them with the JSON summaries");
    }
    if hist.len() != requests {
        log::warn!(
            "the --hdr logs hold {} latencies, the summaries {} requests: are they of the same runs?",
            hist.len(),
            requests
        );
    }
    let stacks: Vec<&str> = summaries
        .iter()
        .filter_map(|s| s["stack"].as_str())
        .collect();
    let stack = match stacks.first().copied() {
        Some("kernel") if stacks.iter().all(|s| *s == "kernel") => "kernel",
        Some("xstack") if stacks.iter().all(|s| *s == "xstack") => "xstack",
        _ => "mixed",
    };
    let mut targets: Vec<String> = summaries
        .iter()
        .filter_map(|s| s["target"].as_str().map(str::to_string))
        .collect();
    targets.dedup();
    let sum = |k: &str| summaries.iter().map(|s| int(s, k)).sum::<u64>();
    let fsum = |k: &str| summaries.iter().map(|s| num(s, k)).sum::<f64>();
    let err = |k: &str| summaries.iter().map(|s| int(&s["errors"], k)).sum::<u64>();
    let mut per_queue = Vec::new();
    for s in summaries {
        for q in s["per_queue"].as_array().into_iter().flatten() {
            per_queue.push(QueueSummary {
                queue: per_queue.len() as u32,
                connections: int(q, "connections"),
                requests: int(q, "requests"),
                errors: int(q, "errors"),
                handed_out: int(q, "handed_out"),
                handed_in: int(q, "handed_in"),
                handoff_dropped: int(q, "handoff_dropped"),
                rx_ring_full: int(q, "rx_ring_full"),
            });
        }
    }
    let q = |x: f64| {
        if hist.is_empty() {
            0
        } else {
            hist.value_at_quantile(x)
        }
    };
    // Connect latency has no log to add up: each field is the largest of
    // the runs' (an upper bound: a quantile of the union is at most the
    // largest of the parts' quantiles), never an average.
    let cmax = |k: &str| {
        summaries
            .iter()
            .map(|s| int(&s["connect_latency_us"], k))
            .max()
            .unwrap_or(0)
    };
    let peak_established = sum("peak_established");
    let (heap_baseline, heap_at_peak) = (sum("heap_baseline_bytes"), sum("heap_at_peak_bytes"));
    Ok(Summary {
        stack,
        target: targets.join(","),
        elapsed_s: summaries
            .iter()
            .map(|s| num(s, "elapsed_s"))
            .fold(0.0, f64::max),
        connections: sum("connections"),
        connections_per_s: fsum("connections_per_s"),
        requests,
        requests_per_s: fsum("requests_per_s"),
        bytes_out: sum("bytes_out"),
        bytes_in: sum("bytes_in"),
        throughput_bps: fsum("throughput_bps"),
        latency_us: Latency {
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            p999: q(0.999),
            max: hist.max(),
            mean: if hist.is_empty() { 0.0 } else { hist.mean() },
        },
        connect_latency_us: Latency {
            p50: cmax("p50"),
            p90: cmax("p90"),
            p99: cmax("p99"),
            p999: cmax("p999"),
            max: cmax("max"),
            mean: summaries
                .iter()
                .map(|s| num(&s["connect_latency_us"], "mean"))
                .fold(0.0, f64::max),
        },
        // Full when the last run was (the runs start together,
        // `--start-at`); never if one never was.
        time_to_full_concurrency_s: summaries
            .iter()
            .map(|s| s["time_to_full_concurrency_s"].as_f64())
            .try_fold(0.0, |a: f64, t| t.map(|t| a.max(t))),
        peak_established,
        heap_baseline_bytes: heap_baseline,
        heap_at_peak_bytes: heap_at_peak,
        heap_bytes_per_connection: heap_at_peak
            .saturating_sub(heap_baseline)
            .checked_div(peak_established)
            .unwrap_or(0),
        errors: Errors {
            refused: err("refused"),
            reset: err("reset"),
            timeout: err("timeout"),
            connect_timeout: err("connect_timeout"),
            other: err("other"),
        },
        peak_time_wait: sum("peak_time_wait"),
        time_wait_reused: sum("time_wait_reused"),
        first_error: summaries
            .iter()
            .find_map(|s| s["first_error"].as_str().map(str::to_string)),
        port_exhausted_waits: sum("port_exhausted_waits"),
        queues: summaries.iter().map(|s| int(s, "queues") as u32).sum(),
        per_queue,
    })
}

/// Reads `files` (each a `--json` summary or a `--hdr` log, told apart by
/// their first byte) and merges them.
pub fn merge_files(files: &[PathBuf]) -> Result<Summary> {
    let mut summaries = Vec::new();
    let mut logs = Vec::new();
    for f in files {
        let bytes = std::fs::read(f).with_context(|| {
            format!(
                "reading {}; give the runs' --json and --hdr files",
                f.display()
            )
        })?;
        let name = f.display().to_string();
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
            summaries.push(
                serde_json::from_slice(&bytes)
                    .with_context(|| format!("{name}: not an xstack load --json summary"))?,
            );
        } else {
            logs.push((name, bytes));
        }
    }
    merge(&summaries, &add_logs(&logs)?)
}

/// Writes the merged summary where `--json` asks.
pub fn write_json(s: &Summary, path: &Path) -> Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(s)?)
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::tools::load::recorder::HdrLog;

    /// A `--hdr` log of `samples`, one interval per `per` samples.
    fn log_of(samples: &[u64], per: usize) -> Vec<u8> {
        let mut out = Vec::new();
        let mut log = HdrLog::begin(&mut out, "198.18.0.2:80", SystemTime::UNIX_EPOCH).unwrap();
        for (i, chunk) in samples.chunks(per).enumerate() {
            let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
            for &s in chunk {
                h.record(s).unwrap();
            }
            log.write(&h, Duration::from_secs(i as u64), Duration::from_secs(1))
                .unwrap();
        }
        drop(log);
        out
    }

    /// A deterministic spread of latencies (µs), `seed` apart.
    fn samples(seed: u64, n: usize) -> Vec<u64> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                1 + x % 50_000
            })
            .collect()
    }

    #[test]
    fn merging_interval_logs_equals_the_histogram_of_all_samples() {
        let (a, b) = (samples(1, 3000), samples(2, 1700));
        let merged =
            add_logs(&[("a".into(), log_of(&a, 400)), ("b".into(), log_of(&b, 333))]).unwrap();
        let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        for s in a.iter().chain(&b) {
            all.record(*s).unwrap();
        }
        assert_eq!(merged.len(), 4700);
        for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(
                merged.value_at_quantile(q),
                all.value_at_quantile(q),
                "q {q}"
            );
        }
        assert!(
            merged == all,
            "the summed histogram differs from the histogram of the samples"
        );
        // Averaging two runs' p99s is not the p99 of the whole (which is
        // why merge never does it): a fast run and a slow one.
        let (fast, slow) = (vec![100u64; 1000], vec![10_000u64; 1000]);
        let whole = add_logs(&[
            ("f".into(), log_of(&fast, 100)),
            ("s".into(), log_of(&slow, 100)),
        ])
        .unwrap()
        .value_at_quantile(0.99);
        assert!(whole >= 9_990, "{whole} (the average of the p99s is 5050)");
    }

    #[test]
    fn summaries_add_up_and_percentiles_come_only_from_the_logs() {
        let one = |conns: u64, rate: f64, refused: u64| {
            serde_json::json!({
                "stack": "xstack", "target": "198.18.0.2:80", "elapsed_s": 10.0 + rate / 1000.0,
                "connections": conns, "connections_per_s": rate, "requests": conns,
                "requests_per_s": rate, "bytes_out": conns * 64, "bytes_in": conns * 64,
                "throughput_bps": rate * 512.0, "latency_us": {"p50": 1, "p90": 1, "p99": 1, "p999": 1, "max": 1, "mean": 1.0},
                "errors": {"refused": refused, "reset": 0, "timeout": 1, "other": 0},
                "peak_time_wait": 5, "first_error": null, "port_exhausted_waits": 0,
                "queues": 1, "per_queue": [{"queue": 0, "connections": conns, "requests": conns,
                    "errors": refused + 1, "handed_out": 0, "handed_in": 0, "handoff_dropped": 0}],
            })
        };
        let runs = [one(300, 30.0, 2), one(200, 20.0, 0)];
        assert!(merge(&runs, &Histogram::new(3).unwrap())
            .unwrap_err()
            .to_string()
            .contains("--hdr"));
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        for v in 1..=500 {
            h.record(v).unwrap();
        }
        let m = merge(&runs, &h).unwrap();
        assert_eq!((m.connections, m.requests, m.bytes_out), (500, 500, 32_000));
        assert_eq!((m.connections_per_s, m.requests_per_s), (50.0, 50.0));
        assert_eq!((m.errors.refused, m.errors.timeout), (2, 2));
        assert_eq!(
            (m.queues, m.per_queue.len(), m.per_queue[1].queue),
            (2, 2, 1)
        );
        assert_eq!(m.elapsed_s, 10.03);
        assert_eq!(m.latency_us.max, 500);
        assert!(
            (249..=251).contains(&m.latency_us.p50),
            "{:?}",
            m.latency_us
        );
        assert_eq!(m.stack, "xstack");
        assert_eq!(m.target, "198.18.0.2:80");
    }
}
