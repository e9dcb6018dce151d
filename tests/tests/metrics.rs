//! End-to-end tests of `--metrics`: what `xstack serve` and `xstack load`
//! expose passes `promtool check metrics`, and a real Prometheus server,
//! started inside the test's namespace, scrapes `xstack serve` and
//! answers a query with the counter `xstack stats --json` shows.
//!
//! They need `promtool` and `prometheus` (Debian's `prometheus` package,
//! which `cargo xtask test` installs): without them they fail and say so.

use std::{
    path::Path,
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use xstack_tests::{counter, testbed, wait_until, xstack_bin, Serve};

/// The serve endpoint, inside the stack namespace.
const SERVE_METRICS: &str = "127.0.0.1:9464";
/// The load endpoint, inside the peer namespace.
const LOAD_METRICS: &str = "127.0.0.1:9465";
/// The Prometheus server's own HTTP API, inside the stack namespace.
const PROMETHEUS_WEB: &str = "127.0.0.1:9090";

/// `bin`'s path, or a failure that says how to get it.
fn need(bin: &str) -> String {
    let found = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(bin))
                .find(|f| f.is_file())
        })
        .unwrap_or_default();
    match found {
        Some(p) => p.display().to_string(),
        None => panic!(
            "`{bin}` is missing: install Debian's prometheus package (`cargo xtask setup` does, `cargo xtask test` runs it)"
        ),
    }
}

/// `GET /metrics` of `addr` from inside namespace `ns`.
fn scrape(ns: &str, addr: &'static str) -> String {
    xstack_tests::in_netns(ns, move || {
        xstack::runtime::metrics::scrape(addr, false).expect("scrape /metrics")
    })
}

/// Runs `promtool check metrics` on `text`; panics with its complaints.
fn promtool_check(what: &str, text: &str) {
    use std::io::Write;
    let mut child = Command::new(need("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics on {what}'s output:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A Prometheus server in a namespace, killed by its pid when dropped;
/// its data directory goes with the guard's temporary directory.
struct Prometheus {
    child: Option<Child>,
    dir: std::path::PathBuf,
}

impl Prometheus {
    fn start(ns: &str, target: &str) -> Prometheus {
        let bin = need("prometheus");
        let dir = std::env::temp_dir().join(format!("xstack-prom-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data")).expect("prometheus dir");
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 200ms\n  scrape_timeout: 200ms\nscrape_configs:\n  - job_name: xstack\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .expect("prometheus.yml");
        let child = xstack::tools::testbed::netns_command(ns, &bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={PROMETHEUS_WEB}"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn prometheus");
        Prometheus {
            child: Some(child),
            dir,
        }
    }

    /// The value of instant query `q` (a single-sample result), if any.
    fn query(&self, ns: &str, q: &str) -> Option<f64> {
        let out = xstack::tools::testbed::netns_command(ns, "curl")
            .args(["-s", "--max-time", "2", "-G"])
            .arg(format!("http://{PROMETHEUS_WEB}/api/v1/query"))
            .args(["--data-urlencode", &format!("query={q}")])
            .output()
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        v.pointer("/data/result/0/value/1")?.as_str()?.parse().ok()
    }

    fn stop(&mut self) -> Option<Output> {
        let child = self.child.take()?;
        // SAFETY: signalling the child we spawned, by its pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let end = Instant::now() + Duration::from_secs(10);
        let mut child = child;
        while Instant::now() < end && child.try_wait().ok().flatten().is_none() {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        child.wait_with_output().ok()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn load_in_background(ns: &str, target: &str, json: &Path) -> Child {
    xstack::tools::testbed::netns_command(ns, xstack_bin().to_str().expect("utf-8"))
        .args(["load", "--kernel", "--target", target])
        .args(["--concurrency", "4", "--duration", "3", "--quiet"])
        .args(["--metrics", LOAD_METRICS, "--json"])
        .arg(json)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn xstack load")
}

#[test]
fn serve_and_load_metrics_pass_promtool_and_prometheus_reads_what_stats_shows() {
    need("promtool");
    need("prometheus");
    let tb = testbed('m', 1);
    let t = &tb.testbed;
    let serve = Serve::start(t, 8080, &["--metrics", SERVE_METRICS]);
    let json =
        std::env::temp_dir().join(format!("xstack-metrics-load-{}.json", std::process::id()));
    let target = format!("{}:8080", t.stack_ip);
    let load = load_in_background(&t.peer_ns, &target, &json);

    // While the load runs: its endpoint counts requests and has latencies.
    let peer = t.peer_ns.clone();
    let mut load_text = String::new();
    let seen = wait_until(Duration::from_secs(10), || {
        load_text = xstack_tests::in_netns(&peer.clone(), move || {
            xstack::runtime::metrics::scrape(LOAD_METRICS, false).unwrap_or_default()
        });
        load_text.lines().any(|l| {
            l.starts_with("xstack_load_request_latency_seconds_count") && !l.ends_with(" 0")
        })
    });
    assert!(
        seen,
        "no request latency on the load's endpoint:\n{load_text}"
    );
    promtool_check("xstack load", &load_text);
    let out = load.wait_with_output().expect("load ends");
    assert!(
        out.status.success(),
        "load: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("load json")).expect("json");
    let _ = std::fs::remove_file(&json);
    let connections = counter(&summary, "/connections");
    assert!(connections > 0, "{summary}");

    // The server's counters settle (published every 50 ms) once every
    // connection of the load has been opened on it.
    let mut stats = serve.stats();
    assert!(
        wait_until(Duration::from_secs(10), || {
            stats = serve.stats();
            counter(&stats, "/tcp/passive_opens") >= connections
        }),
        "server saw {} passive opens for {connections} connections",
        counter(&stats, "/tcp/passive_opens")
    );
    let text = scrape(&t.stack_ns, SERVE_METRICS);
    promtool_check("xstack serve", &text);
    for family in [
        "xstack_xdp_verdicts_total{verdict=\"redirect\",reason=\"tcp\"}",
        "xstack_tcp_sockets{",
        "xstack_tcp_time_wait_max{",
        "xstack_listen_accept_queue_max{",
        "xstack_xsk_rx_ring_full_total{queue=\"0\"}",
        "xstack_engine_drops_total{",
        // No flood here: cookies and the ACK/RST filter are off.
        "xstack_xdp_cookie_active 0",
        "xstack_xdp_unknown_filter_active 0",
        "xstack_xdp_unknown_filter_arms_total 0",
    ] {
        assert!(text.contains(family), "{family} missing:\n{text}");
    }

    // A real Prometheus scrapes it; its answer is what `stats --json` says.
    let mut prom = Prometheus::start(&t.stack_ns, SERVE_METRICS);
    let expect = counter(&serve.stats(), "/tcp/passive_opens") as f64;
    let q = "sum(xstack_tcp_total{counter=\"passive_opens\"})";
    let mut got = None;
    let answered = wait_until(Duration::from_secs(30), || {
        got = prom.query(&t.stack_ns, q);
        got == Some(expect)
    });
    let log = if answered {
        String::new()
    } else {
        prom.stop()
            .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
            .unwrap_or_default()
    };
    assert!(
        answered,
        "Prometheus answered {got:?} to {q}, stats --json says {expect}\n{log}"
    );
    let xdp_tcp = counter(&serve.stats(), "/xdp/redirect_tcp") as f64;
    let q = "xstack_xdp_verdicts_total{verdict=\"redirect\",reason=\"tcp\"}";
    assert!(
        wait_until(Duration::from_secs(10), || prom.query(&t.stack_ns, q)
            == Some(xdp_tcp)),
        "Prometheus: {:?}, stats --json: {xdp_tcp}",
        prom.query(&t.stack_ns, q)
    );
}

#[test]
fn a_bad_metrics_address_is_refused_in_one_line() {
    // Not ADDR:PORT, no port, port 0, a port out of range, an address
    // this host does not have.
    for bad in [
        "localhost",
        "127.0.0.1",
        "127.0.0.1:0",
        "1.2.3.4:99999",
        "192.0.2.1:9464",
    ] {
        let out = Command::new(xstack_bin())
            .args(["load", "--kernel", "--target", "198.18.0.2:8080"])
            .args(["--concurrency", "1", "--duration", "1", "--metrics", bad])
            .output()
            .expect("run xstack");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bad} accepted");
        assert_eq!(err.trim().lines().count(), 1, "{bad}: {err}");
        assert!(err.contains("--metrics"), "{bad}: {err}");
    }
}

#[test]
fn flood_metrics_pass_promtool_and_count_what_the_kernel_sent() {
    need("promtool");
    let tb = testbed('f', 1);
    let t = &tb.testbed;
    let _serve = Serve::start(t, 8080, &[]);
    let mac = t.status().stack.mac.expect("stack MAC");
    let flood = xstack::tools::testbed::netns_command(&t.peer_ns, xstack_bin().to_str().unwrap())
        .args(["flood", "--iface", &t.peer_if])
        .args([
            "--target",
            &format!("{}:8080", t.stack_ip),
            "--dst-mac",
            &mac,
        ])
        .args([
            "--rate",
            "2000",
            "--duration",
            "3",
            "--metrics",
            LOAD_METRICS,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn xstack flood");
    let peer = t.peer_ns.clone();
    let mut text = String::new();
    let sent = |text: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix("xstack_flood_sent_packets_total "))
            .and_then(|v| v.parse::<u64>().ok())
    };
    let seen = wait_until(Duration::from_secs(10), || {
        text = xstack_tests::in_netns(&peer.clone(), move || {
            xstack::runtime::metrics::scrape(LOAD_METRICS, false).unwrap_or_default()
        });
        sent(&text).is_some_and(|n| n > 0)
    });
    assert!(seen, "no packets sent on the flood's endpoint:\n{text}");
    promtool_check("xstack flood", &text);
    let out = flood.wait_with_output().expect("flood ends");
    assert!(
        out.status.success(),
        "flood: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The report's total is at least what the endpoint showed mid-run.
    let report = String::from_utf8_lossy(&out.stdout);
    let total: u64 = report
        .split_whitespace()
        .nth(2)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("flood report: {report}"));
    assert!(total >= sent(&text).unwrap_or(0), "{report} vs\n{text}");
}
