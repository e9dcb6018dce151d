//! End-to-end test of `--pcap`: what `xstack serve` captures while a Linux
//! peer (the default profile: CHECKSUM_PARTIAL on the veth) runs a bounded
//! load reads in tshark with no malformed packet and no checksum error
//! (checksum validation on), every TCP conversation is there and
//! followed, and the frames match the engine's rx_frames / tx_frames.
//!
//! Needs `tshark` (installed by `cargo xtask test`): without it, it fails
//! and says so.

use std::process::{Command, Stdio};

use xstack_tests::{counter, testbed, wait_until, xstack_bin, Serve};

fn tshark(args: &[&str]) -> String {
    let out = Command::new("tshark")
        .args(args)
        .stderr(Stdio::piped())
        .output()
        .unwrap_or_else(|e| {
            panic!("tshark: {e}; install Debian's tshark package (`cargo xtask setup` does)")
        });
    assert!(
        out.status.success(),
        "tshark {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `N` after `key ` in the text line of the final counters that starts
/// with `prefix` (serve prints them when it stops).
fn final_counter(text: &str, prefix: &str, key: &str) -> u64 {
    let line = text
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` line in:\n{text}"));
    let mut words = line.split_whitespace();
    while let Some(w) = words.next() {
        if w == key {
            if let Some(v) = words.next().and_then(|v| v.parse().ok()) {
                return v;
            }
        }
    }
    panic!("no {key} in {line}")
}

#[test]
fn a_serve_capture_reads_clean_in_tshark_and_matches_the_frame_counters() {
    let tb = testbed('c', 1);
    let t = &tb.testbed;
    let pcap = std::env::temp_dir().join(format!("xstack-capture-{}.pcap", std::process::id()));
    let _ = std::fs::remove_file(&pcap);
    let mut serve = Serve::start(t, 8080, &["--pcap", pcap.to_str().expect("utf-8")]);
    let conns = 20u64;
    let out = xstack::tools::testbed::netns_command(&t.peer_ns, xstack_bin().to_str().unwrap())
        .args([
            "load",
            "--kernel",
            "--target",
            &format!("{}:8080", t.stack_ip),
        ])
        .args(["--concurrency", "2", "--connections", &conns.to_string()])
        .args(["--request-bytes", "300", "--quiet"])
        .output()
        .expect("xstack load");
    assert!(
        out.status.success(),
        "load: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every connection has reached the server and closed there.
    let stats = {
        let mut s = serve.stats();
        wait_until(std::time::Duration::from_secs(10), || {
            s = serve.stats();
            counter(&s, "/tcp/passive_opens") >= conns && counter(&s, "/tcp/connections") == 0
        });
        s
    };
    assert!(
        counter(&stats, "/tcp/checksum_partial_in") > 0,
        "the default peer sent no CHECKSUM_PARTIAL segment: the completion is untested\n{stats}"
    );
    let stopped = serve.stop_with(libc::SIGTERM);
    let text = String::from_utf8_lossy(&stopped.stdout).into_owned();
    let rx = final_counter(&text, "queue 0:", "rx_frames");
    let tx = final_counter(&text, "queue 0:", "tx_frames");

    let file = pcap.to_str().unwrap();
    let checks = [
        "-o",
        "tcp.check_checksum:TRUE",
        "-o",
        "ip.check_checksum:TRUE",
    ];
    let expert = tshark(&[&["-r", file, "-q", "-z", "expert,warn"][..], &checks[..]].concat());
    for bad in ["Errors", "Malformed", "Checksum", "checksum"] {
        assert!(
            !expert.contains(bad),
            "tshark expert info has {bad}:\n{expert}"
        );
    }
    // Frames by direction: the engine sends from the stack interface's MAC.
    let mac = t.status().stack.mac.expect("stack MAC");
    let srcs = tshark(&["-r", file, "-T", "fields", "-e", "eth.src"]);
    let sent = srcs.lines().filter(|l| l.trim() == mac).count() as u64;
    let received = srcs.lines().count() as u64 - sent;
    assert_eq!(
        (received, sent),
        (rx, tx),
        "pcap (received, sent) vs the engine's (rx_frames, tx_frames)"
    );
    // Every connection is a conversation, and tshark follows the first:
    // the 300-byte request one way and its echo the other.
    let convs = tshark(&["-r", file, "-q", "-z", "conv,tcp"]);
    let n = convs.lines().filter(|l| l.contains("<->")).count() as u64;
    assert_eq!(n, conns, "{convs}");
    let follow = tshark(&["-r", file, "-q", "-z", "follow,tcp,raw,0"]);
    let hex: Vec<&str> = follow
        .lines()
        .filter(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_hexdigit() || c == '\t'))
        .collect();
    let bytes = |pred: fn(&&&str) -> bool| -> usize {
        hex.iter().filter(pred).map(|l| l.trim().len() / 2).sum()
    };
    assert_eq!(bytes(|l| !l.starts_with('\t')), 300, "{follow}");
    assert_eq!(bytes(|l| l.starts_with('\t')), 300, "{follow}");
    let _ = std::fs::remove_file(&pcap);
}

/// `xstack kserve` (an echo server on kernel sockets) in the peer
/// namespace, stopped by pid when dropped.
struct Kserve(std::process::Child);

impl Drop for Kserve {
    fn drop(&mut self) {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

/// `xstack load` (engine) from the stack namespace with `--pcap` and
/// `extra`; returns its stderr (where the capture's lines go).
fn engine_load_with_capture(t: &xstack_tests::Testbed, pcap: &str, extra: &[&str]) -> String {
    let out = xstack::tools::testbed::netns_command(&t.stack_ns, xstack_bin().to_str().unwrap())
        .args([
            "load",
            "--iface",
            &t.stack_if,
            "--ip",
            &t.stack_ip.to_string(),
        ])
        .args(["--target", &format!("{}:7", t.peer_ip)])
        .args(["--concurrency", "4", "--connections", "40", "--quiet"])
        .args(["--pcap", pcap])
        .args(extra)
        .output()
        .expect("xstack load");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "load: {err}");
    err
}

#[test]
fn a_load_capture_holds_the_engines_frames_and_stops_at_its_size_bound() {
    let tb = testbed('k', 1);
    let t = &tb.testbed;
    let _server = Kserve(
        xstack::tools::testbed::netns_command(&t.peer_ns, xstack_bin().to_str().unwrap())
            .args([
                "kserve",
                "--listen",
                &format!("{}:7", t.peer_ip),
                "--app",
                "echo",
            ])
            .args(["--duration", "60"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn kserve"),
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    let pcap =
        std::env::temp_dir().join(format!("xstack-load-capture-{}.pcap", std::process::id()));
    let file = pcap.to_str().unwrap().to_string();
    let err = engine_load_with_capture(t, &file, &[]);
    // "--pcap F: R frames received and S sent written (engines: rx_frames R' tx_frames S')"
    let line = err
        .lines()
        .find(|l| l.contains("frames received and"))
        .unwrap_or_else(|| panic!("no capture line:\n{err}"));
    let nums: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .rev()
        .take(4)
        .collect();
    let (engine_tx, engine_rx, sent, received) = (nums[0], nums[1], nums[2], nums[3]);
    assert_eq!((received, sent), (engine_rx, engine_tx), "{line}");
    let srcs = tshark(&["-r", &file, "-T", "fields", "-e", "eth.src"]);
    assert_eq!(srcs.lines().count() as u64, received + sent, "{line}");
    let checks = [
        "-o",
        "tcp.check_checksum:TRUE",
        "-o",
        "ip.check_checksum:TRUE",
    ];
    let expert = tshark(
        &[
            &["-r", &file[..], "-q", "-z", "expert,warn"][..],
            &checks[..],
        ]
        .concat(),
    );
    for bad in ["Errors", "Malformed", "Checksum", "checksum"] {
        assert!(
            !expert.contains(bad),
            "tshark expert info has {bad}:\n{expert}"
        );
    }
    let convs = tshark(&["-r", &file, "-q", "-z", "conv,tcp"]);
    assert_eq!(
        convs.lines().filter(|l| l.contains("<->")).count(),
        40,
        "{convs}"
    );

    // Bounded: the file stops short of the bound, and one line says so.
    let max = 4096u64;
    let err = engine_load_with_capture(t, &file, &["--pcap-max-bytes", &max.to_string()]);
    assert_eq!(
        err.lines()
            .filter(|l| l.contains("capture stopped"))
            .count(),
        1,
        "{err}"
    );
    let len = std::fs::metadata(&pcap).expect("pcap").len();
    assert!(
        len <= max && len > max / 2,
        "{len} bytes for a {max}-byte bound"
    );
    assert!(
        tshark(&["-r", &file, "-T", "fields", "-e", "frame.number"])
            .lines()
            .count()
            > 0
    );
    let _ = std::fs::remove_file(&pcap);
}

#[test]
fn bad_capture_options_are_refused_in_one_line() {
    for (extra, want) in [
        (&["--kernel", "--pcap", "/tmp/x.pcap"][..], "tcpdump"),
        (
            &["--kernel", "--pcap", "/tmp/x.pcap", "--pcap-snaplen", "0"][..],
            "--pcap-snaplen",
        ),
        (&["--kernel", "--pcap-max-bytes", "1000"][..], "--pcap"),
    ] {
        let out = Command::new(xstack_bin())
            .args(["load", "--target", "198.18.0.2:8080", "--concurrency", "1"])
            .args(["--duration", "1"])
            .args(extra)
            .output()
            .expect("run xstack");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{extra:?} accepted");
        assert!(err.contains(want), "{extra:?}: {err}");
        if want != "--pcap" {
            // Ours (the last is clap's: --pcap-max-bytes needs --pcap).
            assert_eq!(err.trim().lines().count(), 1, "{extra:?}: {err}");
        }
    }
}
