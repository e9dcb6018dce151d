//! `xstack bench synflood` (issue 14), end to end: its legit client over
//! a row longer than the default (the Linux peer opens 2,000
//! connections/s and closes each first, so each leaves a TIME_WAIT socket
//! on the client for 60 s; the bench must set the client namespace up so
//! that `connect()` still finds a port at once), and its Linux victim's
//! server, which must keep the listener's accept queue drained under a
//! flood. Each run is bounded (the process is killed by its pid past the
//! limit); the bench makes and removes its own testbeds, and the tests
//! check that none is left.

use std::{process::Command, time::Duration};

use serde_json::Value;
use xstack_tests::xstack_within_pid;

/// One bench at a time in this file: two at once share the 2 cores of CI's
/// machine, and the legit client of one starves for the other's flood.
fn one_bench_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

/// The namespaces `xstack bench synflood` (process `pid`) makes for its
/// generator measurement and its `rows` rows.
fn bench_namespaces(pid: u32, rows: u32) -> Vec<String> {
    let id = pid % 10_000;
    ["stack", "peer"]
        .iter()
        .flat_map(|side| {
            std::iter::once(format!("xs-sg{id}-{side}"))
                .chain((0..rows).map(move |r| format!("xs-sf{id}{r}-{side}")))
        })
        .collect()
}

/// Those of `names` that exist now; each is removed (a killed bench
/// cannot remove its own), so the test leaves nothing behind either way.
fn left_behind(names: &[String]) -> Vec<String> {
    let left: Vec<String> = names
        .iter()
        .filter(|n| std::path::Path::new("/run/netns").join(n).exists())
        .cloned()
        .collect();
    for n in &left {
        let _ = Command::new("ip").args(["netns", "del", n]).status();
    }
    left
}

/// Runs `xstack bench synflood ARGS --out DIR` (killed by its pid past
/// 120 s) and returns its `synflood.json` and its output, after checking
/// that it succeeded and left none of the namespaces of its generator
/// measurement and its `rows` rows behind (they are removed either way,
/// as is DIR).
fn bench(args: &[&str], rows: u32) -> (Value, String) {
    static RUN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let out =
        std::env::temp_dir().join(format!("xstack-bench-synflood-{}-{n}", std::process::id()));
    let out_s = out.to_str().expect("utf-8 path").to_string();
    let mut all = vec!["bench", "synflood"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--out", &out_s]);
    let (ok, text, pid) = xstack_within_pid(&all, Duration::from_secs(120));
    let left = left_behind(&bench_namespaces(pid, rows));
    let json = std::fs::read(out.join("synflood.json"));
    let _ = std::fs::remove_dir_all(&out);
    assert!(ok, "xstack bench synflood:\n{text}");
    assert!(left.is_empty(), "namespaces left behind: {left:?}\n{text}");
    let v = serde_json::from_slice(&json.expect("synflood.json")).expect("JSON");
    (v, text)
}

#[test]
fn a_long_no_flood_row_keeps_every_legit_connection() {
    let _turn = one_bench_at_a_time();
    // 8 s at the default 2,000 connections/s: 16,000 client-closed
    // connections, more than half the default ephemeral range (32768-60999)
    // and more than all its ports of connect()'s parity.
    let (v, text) = bench(
        &[
            "--systems",
            "xstack",
            "--kinds",
            "syn",
            "--rates",
            "0",
            "--seconds",
            "8",
        ],
        1,
    );
    let cells = v["cells"].as_array().expect("cells");
    assert_eq!(cells.len(), 1, "{v:#}");
    let c = &cells[0];
    assert_eq!(c["kind"], "none", "{c:#}");
    assert!(c["error"].is_null(), "{c:#}\n{text}");
    let n = |p: &str| c.pointer(p).and_then(Value::as_u64).unwrap_or(u64::MAX);
    let offered = n("/attempts");
    assert_eq!(offered, 16_000, "{c:#}");
    let (timeout, late) = (n("/outcomes/timeout"), n("/outcomes/late"));
    assert!(
        timeout * 100 < offered,
        "{timeout} of {offered} legit connections timed out:\n{text}"
    );
    // Late arrivals measure the client's core: under 1%, or under 5% in a
    // row the host stole over 2% of a core from (the bench names it; one
    // fresh-clone CI run lost 35% and had 395 late). Ports running out
    // made 1,850 late (11.6%).
    let steal = c["steal_pct"].as_f64().unwrap_or(0.0);
    let late_pct = if steal > 2.0 { 5 } else { 1 };
    assert!(
        late * 100 < offered * late_pct,
        "{late} of {offered} legit arrivals started late (the client's core busy in connect(); steal {steal:.0}%):\n{text}"
    );
    let success = c["success_pct"].as_f64().unwrap_or(0.0);
    assert!(success >= 99.0, "success {success}%:\n{text}");
    assert!(
        text.contains("tcp_tw_reuse=1") && text.contains("ip_local_port_range 1024-65535"),
        "the legit client's settings are not in the header:\n{text}"
    );
}

#[test]
fn a_linux_victim_answers_flood_syns_without_overflowing_its_accept_queue() {
    let _turn = one_bench_at_a_time();
    // Linux answers a SYN with a cookie only while the listener's accept
    // queue has room; the bench's Linux server must keep it drained (it
    // once used std's backlog of 128 and blocking threads: 69% of a 300
    // kpps flood's SYNs were dropped unanswered, `ListenOverflows`). The
    // rate is well under what Linux absorbs on one core here (about 200
    // kpps): at saturation the SCHED_FIFO NAPI thread can starve any server
    // (the bench names such rows), and a row at 150 kpps overflowed in one
    // of three runs (20,928 SYNs, in a fresh-clone CI run). The server's own property is unit-tested
    // (`the_linux_rows_server_echoes_at_once_behind_connections_that_send_nothing`).
    let (v, text) = bench(
        &[
            "--systems",
            "linux",
            "--kinds",
            "syn",
            "--rates",
            "0,60000",
            "--seconds",
            "2",
        ],
        2,
    );
    let cells = v["cells"].as_array().expect("cells");
    assert_eq!(cells.len(), 2, "{v:#}");
    for c in cells {
        assert!(c["error"].is_null(), "{c:#}\n{text}");
        assert_eq!(c["listen_overflows"], 0, "{c:#}\n{text}");
    }
    let flood = &cells[1];
    assert_eq!(flood["kind"], "syn", "{flood:#}");
    assert!(
        flood["flood_achieved_pps"].as_f64().unwrap_or(0.0) > 10_000.0,
        "{flood:#}"
    );
    assert!(!text.contains("full accept queue"), "{text}");
}
