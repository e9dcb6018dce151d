//! `--family` of the benchmarks over the testbed (issue 15): `xstack bench
//! --quick --family both` and `xstack bench bulk --family 6`, one second
//! per measurement, each bounded by a wall-clock limit (the process is
//! killed by its pid past it); every benchmark makes and removes its own
//! testbed. These check that the IPv6 paths run and report, not their
//! figures.

use std::{
    sync::{Mutex, MutexGuard},
    time::Duration,
};

use serde_json::Value;
use xstack_tests::xstack_within;

/// One benchmark at a time: they pin their processes to CPUs 0 and 1.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn bench_quick_family_both_prints_ipv4_and_ipv6_rows_side_by_side_with_ratios() {
    let _turn = serial();
    let out = std::env::temp_dir().join(format!("xstack-bench-family-{}", std::process::id()));
    let out_s = out.to_str().expect("utf-8 path").to_string();
    let (ok, text) = xstack_within(
        &[
            "bench",
            "--quick",
            "--family",
            "both",
            "--seconds",
            "1",
            "--out",
            &out_s,
        ],
        Duration::from_secs(120),
    );
    let json = std::fs::read(out.join("bench.json"));
    let _ = std::fs::remove_dir_all(&out);
    assert!(ok, "xstack bench --family both:\n{text}");
    let v: Value = serde_json::from_slice(&json.expect("bench.json")).expect("JSON");
    assert_eq!(v["families"], serde_json::json!(["ipv4", "ipv6"]), "{v:#}");
    let rows = v["rows"].as_array().expect("rows");
    // Two scenarios × two pairs × two families.
    assert_eq!(rows.len(), 8, "{v:#}");
    for (i, r) in rows.iter().enumerate() {
        // Each IPv6 row right after its IPv4 row.
        let want = if i % 2 == 0 { "ipv4" } else { "ipv6" };
        assert_eq!(r["family"], want, "row {i}: {r:#}");
        let measure = if r["scenario"] == "conn-per-request" {
            "cps"
        } else {
            "rps"
        };
        assert!(
            r[measure].as_f64().unwrap_or(0.0) > 0.0,
            "row {i} measured nothing: {r:#}\n{text}"
        );
        assert_eq!(r["errors"], 0, "row {i}: {r:#}\n{text}");
    }
    let table: Vec<&str> = text.lines().filter(|l| l.starts_with("| ")).collect();
    assert_eq!(table.len(), 9, "{text}");
    assert!(
        table[1].contains("| IPv4   |") && table[2].contains("| IPv6   |"),
        "{text}"
    );
    assert!(
        text.contains("conn-per-request: IPv6 / IPv4 conn/s = ")
            && text.contains("keep-alive: IPv6 / IPv4 req/s = "),
        "{text}"
    );
}

#[test]
fn bench_bulk_family_6_moves_bytes_in_every_direction_over_ipv6() {
    let _turn = serial();
    let (ok, text) = xstack_within(
        &["bench", "bulk", "--family", "6", "--seconds", "1"],
        Duration::from_secs(90),
    );
    // The run itself fails unless the Linux sink got every byte the
    // engine queued (xstack engine → Linux).
    assert!(ok, "xstack bench bulk --family 6:\n{text}");
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("| ")).collect();
    assert_eq!(lines.len(), 4, "{text}");
    let header: Vec<&str> = lines[0].split('|').map(str::trim).collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|c| *c == name)
            .unwrap_or_else(|| panic!("no {name} column: {text}"))
    };
    let (family, gbits) = (col("family"), col("Gbit/s"));
    for l in &lines[1..] {
        let cols: Vec<&str> = l.split('|').map(str::trim).collect();
        assert_eq!(cols[family], "IPv6", "{l}");
        let gbit: f64 = cols[gbits].parse().unwrap_or(0.0);
        assert!(gbit > 0.0, "no throughput: {l}\n{text}");
    }
    assert!(!text.contains("IPv4   |"), "{text}");
}

#[test]
fn bench_runs_out_of_range_is_refused_in_one_line() {
    for runs in ["0", "11"] {
        let (ok, text) = xstack_within(&["bench", "--runs", runs], Duration::from_secs(20));
        assert!(!ok, "xstack bench --runs {runs} succeeded:\n{text}");
        assert_eq!(text.trim().lines().count(), 1, "{text}");
        assert!(
            text.contains(&format!("--runs {runs} is out of range: use 1 to 10")),
            "{text}"
        );
    }
}
