//! End-to-end tests of the tools users run: `xstack load` against a kernel
//! server (`xstack kserve`) and against `xstack serve`, the close modes and
//! where they leave TIME_WAIT, and the JSON summary against its schema.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use serde_json::Value;
use xstack_tests::{counter, testbed, wait_until, xstack_bin, Serve, Testbed};

/// Validates `v` against the subset of JSON Schema the summary schema uses
/// (type, enum, required, properties, additionalProperties: false, items,
/// minimum).
fn validate(schema: &Value, v: &Value, path: &str) -> Result<(), String> {
    if let Some(t) = schema.get("type") {
        let types: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let ok = types.iter().any(|t| match *t {
            "object" => v.is_object(),
            "string" => v.is_string(),
            "integer" => v.is_u64() || v.is_i64(),
            "number" => v.is_number(),
            "null" => v.is_null(),
            "array" => v.is_array(),
            _ => false,
        });
        if !ok {
            return Err(format!("{path}: {v} is not {types:?}"));
        }
    }
    if let (Some(e), true) = (schema.get("enum").and_then(Value::as_array), !v.is_null()) {
        if !e.contains(v) {
            return Err(format!("{path}: {v} not in {e:?}"));
        }
    }
    if let (Some(min), Some(x)) = (schema.get("minimum").and_then(Value::as_f64), v.as_f64()) {
        if x < min {
            return Err(format!("{path}: {x} < {min}"));
        }
    }
    for r in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let k = r.as_str().unwrap_or_default();
        if v.get(k).is_none() {
            return Err(format!("{path}: missing {k}"));
        }
    }
    if let (Some(items), Some(a)) = (schema.get("items"), v.as_array()) {
        for (i, x) in a.iter().enumerate() {
            validate(items, x, &format!("{path}[{i}]"))?;
        }
    }
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        if schema.get("additionalProperties") == Some(&Value::Bool(false)) {
            if let Some(k) = v
                .as_object()
                .and_then(|o| o.keys().find(|k| !props.contains_key(*k)))
            {
                return Err(format!("{path}: unexpected {k}"));
            }
        }
        for (k, s) in props {
            if let Some(x) = v.get(k) {
                validate(s, x, &format!("{path}.{k}"))?;
            }
        }
    }
    Ok(())
}

/// `xstack kserve` in namespace `ns`, stopped by the returned guard.
struct Kserve(Option<std::process::Child>);

impl Kserve {
    fn start(t: &Testbed, ns: &str, listen: &str, extra: &[&str]) -> Kserve {
        let _ = t;
        let child = xstack::tools::testbed::netns_command(ns, xstack_bin().to_str().unwrap())
            .args(["kserve", "--listen", listen, "--duration", "60"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kserve");
        std::thread::sleep(Duration::from_millis(300));
        Kserve(Some(child))
    }

    /// Stops it and returns its stdout (the final counters line).
    fn stop(&mut self) -> String {
        let Some(c) = self.0.take() else {
            return String::new();
        };
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let out = c.wait_with_output().expect("kserve output");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Kserve {
    fn drop(&mut self) {
        self.stop();
    }
}

fn load(ns: &str, args: &[&str], json: &Path) -> Value {
    let out = xstack::tools::testbed::netns_command(ns, xstack_bin().to_str().unwrap())
        .arg("load")
        .args(args)
        .args(["--quiet", "--json", json.to_str().unwrap()])
        .output()
        .expect("run xstack load");
    assert!(
        out.status.success(),
        "xstack load failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&std::fs::read(json).expect("json written")).expect("valid JSON")
}

/// Every error kind of a load summary is 0.
fn assert_no_errors(v: &Value) {
    for k in ["refused", "reset", "timeout", "other"] {
        assert_eq!(counter(v, &format!("/errors/{k}")), 0, "{v:#}");
    }
}

fn time_wait_in(ns: &str) -> usize {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "ss", "-Htan", "state", "time-wait"])
        .output()
        .expect("ss");
    String::from_utf8_lossy(&out.stdout).lines().count()
}

fn tmp(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("xstack-{}-{name}", std::process::id()))
}

#[test]
fn load_against_a_kernel_server_has_no_errors_and_consistent_counts() {
    let tb = testbed('l', 1);
    let t = &tb.testbed;
    let mut ks = Kserve::start(t, &t.peer_ns, "198.18.0.1:80", &["--app", "echo"]);
    let json = tmp("kload.json");
    let v = load(
        &t.stack_ns,
        &[
            "--iface",
            &t.stack_if,
            "--ip",
            "198.18.0.2",
            "--target",
            "198.18.0.1:80",
            "--concurrency",
            "16",
            "--connections",
            "2000",
            "--requests-per-conn",
            "3",
            "--close",
            "rst",
        ],
        &json,
    );
    let schema: Value =
        serde_json::from_str(include_str!("../../docs/load-summary.schema.json")).unwrap();
    validate(&schema, &v, "summary").unwrap();
    assert_eq!(v["stack"], "xstack");
    assert_eq!(counter(&v, "/connections"), 2000, "{v:#}");
    assert_eq!(counter(&v, "/requests"), 6000);
    assert_no_errors(&v);
    assert_eq!(counter(&v, "/bytes_in"), 6000 * 64);
    // RST close: no TIME_WAIT on either side.
    assert_eq!(counter(&v, "/peak_time_wait"), 0);
    assert_eq!(time_wait_in(&t.peer_ns), 0);
    let counters = ks.stop();
    assert!(counters.contains("accepted 2000 "), "kserve: {counters}");
    assert!(
        counters.contains(&format!("bytes_out {} ", 6000 * 64)),
        "kserve: {counters}"
    );
    let _ = std::fs::remove_file(json);
}

#[test]
fn load_over_ipv6_against_a_kernel_server_has_no_errors_and_consistent_counts() {
    let tb = testbed('v', 1);
    let t = &tb.testbed;
    let listen = format!("[{}]:80", t.peer_ip6);
    let mut ks = Kserve::start(t, &t.peer_ns, &listen, &["--app", "echo"]);
    let json = tmp("kload6.json");
    let v = load(
        &t.stack_ns,
        &[
            "--iface",
            &t.stack_if,
            "--ip",
            &t.stack_ip6.to_string(),
            "--target",
            &listen,
            "--concurrency",
            "16",
            "--connections",
            "1000",
            "--requests-per-conn",
            "3",
            "--close",
            "rst",
        ],
        &json,
    );
    assert_eq!(v["stack"], "xstack");
    assert_eq!(v["target"], listen.as_str(), "{v:#}");
    assert_eq!(counter(&v, "/connections"), 1000, "{v:#}");
    assert_eq!(counter(&v, "/requests"), 3000);
    assert_no_errors(&v);
    assert_eq!(counter(&v, "/bytes_in"), 3000 * 64);
    let counters = ks.stop();
    assert!(counters.contains("accepted 1000 "), "kserve: {counters}");
    let _ = std::fs::remove_file(json);
}

/// The owned IPv6 address table live (`OWNED_ADDR_TABLE6`): `--ip` a /120
/// of the testbed's /64 that no kernel interface has gives the engine its
/// 255 addresses (all but the Subnet-Router anycast one), the peer's
/// kernel resolves every one through neighbour discovery (a solicitation
/// at the solicited-node group, handed to the engine when its target is
/// in the table), and connections from each reach the kernel server.
#[test]
fn load_from_every_address_of_an_ipv6_slash_120_reaches_a_kernel_server() {
    let tb = testbed('v', 1);
    let t = &tb.testbed;
    let listen = format!("[{}]:80", t.peer_ip6);
    let mut ks = Kserve::start(t, &t.peer_ns, &listen, &["--app", "echo"]);
    let json = tmp("kload6-120.json");
    let v = load(
        &t.stack_ns,
        &[
            "--iface",
            &t.stack_if,
            "--ip",
            "2001:2::100/120",
            "--target",
            &listen,
            "--concurrency",
            "16",
            "--connections",
            "510",
            "--requests-per-conn",
            "1",
            "--close",
            "rst",
        ],
        &json,
    );
    assert_eq!(counter(&v, "/connections"), 510, "{v:#}");
    assert_no_errors(&v);
    let counters = ks.stop();
    assert!(counters.contains("accepted 510 "), "kserve: {counters}");
    let _ = std::fs::remove_file(json);
    // Every address of the /120 but ::100 resolved by the peer.
    let out = Command::new("ip")
        .args(["-n", &t.peer_ns, "-6", "neigh", "show", "dev", &t.peer_if])
        .output()
        .expect("ip neigh");
    let text = String::from_utf8_lossy(&out.stdout);
    let resolved: std::collections::HashSet<std::net::Ipv6Addr> = text
        .lines()
        .filter(|l| l.contains("lladdr"))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .filter(|a: &std::net::Ipv6Addr| {
            let s = a.segments();
            s[..7] == [0x2001, 2, 0, 0, 0, 0, 0] && (0x101..=0x1ff).contains(&s[7])
        })
        .collect();
    assert_eq!(resolved.len(), 255, "{text}");
}

#[test]
fn load_refuses_an_ip_and_a_target_of_different_families_in_one_line() {
    let out = std::process::Command::new(xstack_bin())
        .args([
            "load",
            "--iface",
            "lo",
            "--ip",
            "198.18.0.2",
            "--target",
            "[2001:2::1]:80",
            "--connections",
            "1",
        ])
        .output()
        .expect("run xstack load");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("different address families"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let out = std::process::Command::new(xstack_bin())
        .args(["load", "--kernel", "--target", "[2001:db8::1]:80"])
        .output()
        .expect("run xstack load");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("2001:2::/48"),
        "{err}"
    );
}

#[test]
fn close_modes_leave_time_wait_on_the_side_that_closes_first() {
    let tb = testbed('w', 1);
    let t = &tb.testbed;
    let _ks = Kserve::start(
        t,
        &t.peer_ns,
        "198.18.0.1:80",
        &["--app", "http", "--response-bytes", "100"],
    );
    let common = [
        "--iface",
        t.stack_if.as_str(),
        "--ip",
        "198.18.0.2",
        "--target",
        "198.18.0.1:80",
        "--http",
        "--concurrency",
        "4",
        "--connections",
        "200",
    ];
    // Client closes first: TIME_WAIT on the load generator, none on the server.
    let json = tmp("close-client.json");
    let v = load(
        &t.stack_ns,
        &[&common[..], &["--close", "client"]].concat(),
        &json,
    );
    assert_eq!(counter(&v, "/connections"), 200, "{v:#}");
    assert!(counter(&v, "/peak_time_wait") > 0, "{v:#}");
    assert_eq!(
        time_wait_in(&t.peer_ns),
        0,
        "server has TIME_WAIT after client close"
    );
    // Server closes first (Connection: close): TIME_WAIT on the server.
    let v = load(
        &t.stack_ns,
        &[&common[..], &["--close", "server"]].concat(),
        &json,
    );
    assert_eq!(counter(&v, "/connections"), 200, "{v:#}");
    assert!(
        time_wait_in(&t.peer_ns) >= 200,
        "no TIME_WAIT on the server after server close"
    );
    let _ = std::fs::remove_file(json);
}

#[test]
fn xstack_load_against_xstack_serve_has_no_errors() {
    let tb = testbed('x', 1);
    let t = &tb.testbed;
    let serve = Serve::start(t, 7, &["--app", "echo"]);
    // The load engine runs on the peer veth with its own address 198.18.0.3
    // (the peer kernel keeps 198.18.0.1).
    let json = tmp("xx.json");
    let v = load(
        &t.peer_ns,
        &[
            "--iface",
            &t.peer_if,
            "--ip",
            "198.18.0.3",
            "--target",
            "198.18.0.2:7",
            "--concurrency",
            "8",
            "--connections",
            "1000",
            "--request-bytes",
            "200",
            "--close",
            "rst",
        ],
        &json,
    );
    assert_eq!(counter(&v, "/connections"), 1000, "{v:#}");
    assert_eq!(counter(&v, "/requests"), 1000);
    assert_eq!(counter(&v, "/bytes_in"), 200_000);
    let ok = wait_until(Duration::from_secs(3), || {
        let s = serve.stats();
        counter(&s, "/engine/app_accepted") == 1000
            && counter(&s, "/engine/app_bytes_in") == 200_000
    });
    assert!(ok, "{:#}", serve.stats());
    let _ = std::fs::remove_file(json);
}

#[test]
fn tw_reuse_lets_a_client_reuse_time_wait_tuples_without_errors() {
    // 100 local ports, 300 connections, client closes first: every port is
    // reused from TIME_WAIT (tcp_tw_reuse=1 after 1 s, timestamps on, so
    // PAWS guards the new incarnation at the Linux server).
    let tb = testbed('y', 1);
    let t = &tb.testbed;
    let _ks = Kserve::start(t, &t.peer_ns, "198.18.0.1:80", &["--app", "echo"]);
    let json = tmp("twreuse.json");
    let v = load(
        &t.stack_ns,
        &[
            "--iface",
            &t.stack_if,
            "--ip",
            "198.18.0.2",
            "--target",
            "198.18.0.1:80",
            "--concurrency",
            "20",
            "--connections",
            "300",
            "--close",
            "client",
            "--timeout",
            "10",
            "--sysctl",
            "ip_local_port_range=40000-40099",
            "--sysctl",
            "tcp_tw_reuse=1",
        ],
        &json,
    );
    assert_eq!(counter(&v, "/connections"), 300, "{v:#}");
    assert_no_errors(&v);
    let peak = counter(&v, "/peak_time_wait");
    assert!(
        (20..=100).contains(&peak),
        "TIME_WAIT peak {peak} outside the port range: {v:#}"
    );
    // Reuse needs 1 s per round: 3 rounds over 100 ports take at least 2 s.
    assert!(v["elapsed_s"].as_f64().unwrap() >= 2.0, "{v:#}");
    let _ = std::fs::remove_file(json);
}

/// Waits up to 3 s for `serve` to have taken `n` connections through SYN
/// cookies, none failing, and returns its counters. XDP checks the final
/// ACK on a 4-tuple it has not seen (`cookie_acks`); on one it knows from
/// an earlier connection it passes the ACK on and the engine checks it;
/// `SyncookiesRecv` counts both.
fn all_through_cookies(serve: &Serve, n: u64) -> Value {
    let ok = wait_until(Duration::from_secs(3), || {
        counter(&serve.stats(), "/tcp/SyncookiesRecv") == n
    });
    let s = serve.stats();
    assert!(ok, "every connection through a cookie: {s:#}");
    assert_eq!(counter(&s, "/tcp/SyncookiesFailed"), 0, "{s:#}");
    s
}

#[test]
fn a_client_reusing_time_wait_tuples_connects_through_xdp_syn_cookies() {
    // Every SYN answered by an XDP SYN cookie, whose TSval is on XDP's
    // clock, not the server's per-pair TSval offset: a connection on a
    // tuple taken over from TIME_WAIT must take it (no PAWS on a SYN,ACK
    // against the inherited TS.Recent, as Linux). The offset is keyed per
    // address pair, so 14 addresses of a /28 (with 20 ports each: 280
    // tuples) make sure some pairs' offsets run ahead of XDP's clock; 1400
    // connections closed by the client reuse each tuple four times.
    let tb = testbed('k', 1);
    let t = &tb.testbed;
    let serve = Serve::start(t, 7, &["--app", "echo", "--syncookies", "always"]);
    let json = tmp("twcookie.json");
    let v = load(
        &t.peer_ns,
        &[
            "--iface",
            &t.peer_if,
            "--ip",
            "198.18.1.0/28",
            "--ports",
            "40000-40019",
            "--target",
            "198.18.0.2:7",
            "--concurrency",
            "50",
            "--connections",
            "1400",
            "--close",
            "client",
            "--timeout",
            "10",
        ],
        &json,
    );
    assert_no_errors(&v);
    assert_eq!(counter(&v, "/errors/connect_timeout"), 0, "{v:#}");
    assert_eq!(counter(&v, "/connections"), 1400, "{v:#}");
    assert!(counter(&v, "/time_wait_reused") >= 1400 - 280, "{v:#}");
    let s = all_through_cookies(&serve, 1400);
    assert!(counter(&s, "/engine/cookie_acks") >= 280, "{s:#}");
    let _ = std::fs::remove_file(json);
}

#[test]
fn a_client_reusing_tuples_xstack_holds_in_time_wait_connects_through_xdp_syn_cookies() {
    // The server closes first (`Connection: close`), so xstack holds each
    // 4-tuple in TIME_WAIT; the client, the passive closer, keeps none and
    // reuses its 10 ports at once. Every SYN gets an XDP cookie. On a
    // reused 4-tuple XDP knows the flow and passes the final ACK on
    // unchecked: the engine checks it at its TIME_WAIT entry and opens the
    // new incarnation (RFC 6191, `syncookies_held_tuple`).
    let tb = testbed('j', 1);
    let t = &tb.testbed;
    let serve = Serve::start(t, 80, &["--app", "http", "--syncookies", "always"]);
    let json = tmp("twheld.json");
    // Bounded: a connection stuck on a refused ACK waits out its 10 s
    // `--timeout`, and the load is killed by its pid past 60 s.
    let (v, _) = load_within(
        &t.peer_ns,
        &[
            "--iface",
            &t.peer_if,
            "--ip",
            "198.18.0.3",
            "--ports",
            "40000-40009",
            "--target",
            "198.18.0.2:80",
            "--http",
            "--close",
            "server",
            "--concurrency",
            "5",
            "--connections",
            "200",
            "--timeout",
            "10",
        ],
        &json,
        Duration::from_secs(60),
    );
    assert_no_errors(&v);
    assert_eq!(counter(&v, "/connections"), 200, "{v:#}");
    let s = all_through_cookies(&serve, 200);
    // The first connection on each of the 10 tuples is XDP's to check; the
    // others met the server's TIME_WAIT entry of the one before.
    assert!(counter(&s, "/engine/cookie_acks") >= 10, "{s:#}");
    assert!(counter(&s, "/tcp/syncookies_held_tuple") >= 150, "{s:#}");
    assert!(counter(&s, "/tcp/TWSynReopen") >= 150, "{s:#}");
    let _ = std::fs::remove_file(json);
}

/// Sums `field` over a load summary's `per_queue` entries.
fn per_queue_sum(v: &Value, field: &str) -> u64 {
    v["per_queue"]
        .as_array()
        .map(|qs| qs.iter().map(|q| counter(q, &format!("/{field}"))).sum())
        .unwrap_or(0)
}

#[test]
fn load_with_two_queues_against_xstack_serve_with_two_queues_steers_every_flow_to_its_engine() {
    let tb = testbed('q', 2);
    let t = &tb.testbed;
    let serve = Serve::start(t, 7, &["--app", "echo", "--queues", "2"]);
    let json = tmp("mq.json");
    let v = load(
        &t.peer_ns,
        &[
            "--iface",
            &t.peer_if,
            "--ip",
            "198.18.0.3",
            "--target",
            "198.18.0.2:7",
            "--queues",
            "2",
            // Four engine threads per side share the 2 CI cores with the
            // other tests' loads: allow a starved step 20 s, not 5, before
            // it counts as a timeout (a flow that is really stuck still
            // fails the test, only later).
            "--timeout",
            "20",
            "--concurrency",
            "8",
            "--connections",
            "2000",
            "--request-bytes",
            "200",
            "--close",
            "rst",
        ],
        &json,
    );
    let schema: Value =
        serde_json::from_str(include_str!("../../docs/load-summary.schema.json")).unwrap();
    validate(&schema, &v, "summary").unwrap();
    assert_eq!(counter(&v, "/queues"), 2);
    assert_eq!(
        counter(&v, "/connections"),
        2000,
        "{v:#}\nserver: {:#}",
        serve.stats()
    );
    assert_eq!(counter(&v, "/requests"), 2000);
    assert_eq!(counter(&v, "/bytes_in"), 400_000);
    assert_no_errors(&v);
    // Both engines worked, and the split adds up.
    let qs = v["per_queue"].as_array().expect("per_queue");
    assert_eq!(qs.len(), 2);
    assert!(qs.iter().all(|q| counter(q, "/connections") > 0), "{v:#}");
    assert_eq!(per_queue_sum(&v, "connections"), 2000);
    // The server's engines send on their own queue, so about half of the
    // replies reach the load side on a queue whose engine does not own the
    // flow: they were handed over, none lost.
    assert!(per_queue_sum(&v, "handed_in") > 0, "{v:#}");
    assert_eq!(
        per_queue_sum(&v, "handed_in"),
        per_queue_sum(&v, "handed_out")
    );
    assert_eq!(per_queue_sum(&v, "handoff_dropped"), 0);
    // Server side: every connection accepted once, every byte read once,
    // whichever queue its segments came in on.
    let ok = wait_until(Duration::from_secs(3), || {
        let s = serve.stats();
        counter(&s, "/engine/app_accepted") == 2000
            && counter(&s, "/engine/app_bytes_in") == 400_000
    });
    let s = serve.stats();
    assert!(ok, "{s:#}");
    let handed: u64 = s["per_queue"]
        .as_array()
        .expect("per_queue")
        .iter()
        .map(|q| counter(q, "/steer/handed_in"))
        .sum();
    assert!(handed > 0, "{s:#}");
    let _ = std::fs::remove_file(json);
}

#[test]
fn load_with_two_queues_against_a_kernel_server_has_no_errors() {
    // The kernel picks each socket's tx queue from a random hash, so its
    // replies land on either queue of the load side.
    let tb = testbed('k', 2);
    let t = &tb.testbed;
    let mut ks = Kserve::start(t, &t.peer_ns, "198.18.0.1:80", &["--app", "echo"]);
    let json = tmp("mqk.json");
    let v = load(
        &t.stack_ns,
        &[
            "--iface",
            &t.stack_if,
            "--ip",
            "198.18.0.2",
            "--target",
            "198.18.0.1:80",
            "--queues",
            "2",
            "--timeout",
            "20",
            "--concurrency",
            "16",
            "--connections",
            "2000",
            "--close",
            "client",
        ],
        &json,
    );
    assert_eq!(counter(&v, "/connections"), 2000, "{v:#}");
    assert_no_errors(&v);
    assert!(per_queue_sum(&v, "handed_in") > 0, "{v:#}");
    assert_eq!(per_queue_sum(&v, "handoff_dropped"), 0);
    // Client FIN first: the TIME_WAIT entries are the load engines', none
    // in the kernel.
    assert!(counter(&v, "/peak_time_wait") > 0, "{v:#}");
    assert_eq!(time_wait_in(&t.peer_ns), 0);
    let counters = ks.stop();
    assert!(counters.contains("accepted 2000 "), "kserve: {counters}");
    let _ = std::fs::remove_file(json);
}

#[test]
fn kernel_load_timeout_bounds_each_wait_not_a_keep_alive_connections_life() {
    // Keep-alive connections live for the whole 3 s run; --timeout 1 is
    // about a step without progress, so none of them is a timeout.
    let tb = testbed('a', 1);
    let t = &tb.testbed;
    let _ks = Kserve::start(t, &t.peer_ns, "198.18.0.1:80", &["--app", "http"]);
    let json = tmp("ka.json");
    let v = load(
        &t.peer_ns,
        &[
            "--kernel",
            "--target",
            "198.18.0.1:80",
            "--http",
            "--concurrency",
            "4",
            "--requests-per-conn",
            "100000000",
            "--close",
            "server",
            "--duration",
            "3",
            "--timeout",
            "1",
        ],
        &json,
    );
    assert_no_errors(&v);
    assert!(counter(&v, "/requests") > 100, "{v:#}");
    // Each connection ends after the run with `Connection: close`.
    assert_eq!(counter(&v, "/connections"), 4, "{v:#}");
    let _ = std::fs::remove_file(json);
}

/// Runs `xstack load` in `ns` like `load`, but kills it (our own child, by
/// pid) and fails when it has not ended within `limit`: a load that hangs
/// fails the test instead of blocking the suite.
fn load_within(ns: &str, args: &[&str], json: &Path, limit: Duration) -> (Value, Duration) {
    let t0 = std::time::Instant::now();
    let mut child = xstack::tools::testbed::netns_command(ns, xstack_bin().to_str().unwrap())
        .arg("load")
        .args(args)
        .args(["--quiet", "--json", json.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn xstack load");
    let ended = wait_until(limit, || child.try_wait().ok().flatten().is_some());
    if !ended {
        let _ = child.kill();
    }
    let out = child.wait_with_output().expect("xstack load output");
    let took = t0.elapsed();
    assert!(
        ended,
        "xstack load {args:?} did not end within {limit:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "xstack load failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v =
        serde_json::from_slice(&std::fs::read(json).expect("json written")).expect("valid JSON");
    (v, took)
}

/// Every connection of a big-message echo load completed, byte for byte.
fn assert_big_echo_complete(v: &Value, conns: u64, bytes: u64) {
    assert_no_errors(v);
    assert_eq!(counter(v, "/connections"), conns, "{v:#}");
    assert_eq!(counter(v, "/requests"), conns, "{v:#}");
    assert_eq!(counter(v, "/bytes_out"), conns * bytes, "{v:#}");
    assert_eq!(counter(v, "/bytes_in"), conns * bytes, "{v:#}");
}

#[test]
fn load_with_requests_bigger_than_the_socket_buffers_completes_in_both_modes() {
    // 4 MiB requests are bigger than both directions' buffers together: a
    // driver that writes the whole request before it reads deadlocks
    // against an echo server (the server stops reading when its output is
    // full, the client stops reading while its write waits).
    const BYTES: u64 = 4 * 1024 * 1024;
    let tb = testbed('b', 1);
    let t = &tb.testbed;
    let serve = Serve::start(t, 7, &["--app", "echo"]);
    let big = [
        "--concurrency",
        "5",
        "--connections",
        "5",
        "--request-bytes",
        "4194304",
        // A step without progress, not a whole response: each 4 MiB echo
        // takes longer than this here, but its bytes keep moving.
        "--timeout",
        "1",
    ];
    let json = tmp("big.json");
    let limit = Duration::from_secs(30);
    // Kernel sockets against the engine's echo.
    let (v, _) = load_within(
        &t.peer_ns,
        &[&["--kernel", "--target", "198.18.0.2:7"][..], &big].concat(),
        &json,
        limit,
    );
    assert_eq!(v["stack"], "kernel");
    assert_big_echo_complete(&v, 5, BYTES);
    // The engine driver against the engine's echo.
    let (v, _) = load_within(
        &t.peer_ns,
        &[
            &[
                "--iface",
                &t.peer_if,
                "--ip",
                "198.18.0.3",
                "--target",
                "198.18.0.2:7",
            ][..],
            &big,
        ]
        .concat(),
        &json,
        limit,
    );
    assert_eq!(v["stack"], "xstack");
    assert_big_echo_complete(&v, 5, BYTES);
    let ok = wait_until(Duration::from_secs(3), || {
        counter(&serve.stats(), "/engine/app_bytes_in") == 10 * BYTES
    });
    assert!(ok, "{:#}", serve.stats());
    // Kernel sockets against a kernel echo server.
    let _ks = Kserve::start(t, &t.peer_ns, "198.18.0.1:80", &["--app", "echo"]);
    let (v, _) = load_within(
        &t.peer_ns,
        &[&["--kernel", "--target", "198.18.0.1:80"][..], &big].concat(),
        &json,
        limit,
    );
    assert_big_echo_complete(&v, 5, BYTES);
    let _ = std::fs::remove_file(json);
}

#[test]
fn a_load_against_a_server_that_never_answers_ends_by_its_own_bound() {
    // A kernel listener that completes handshakes (the backlog) but is
    // never accepted, so nothing is ever read or answered: 16 MiB requests
    // fill every buffer on the way and the writes block for good. Each run
    // must end by --duration plus its drain bound, with the stuck
    // connections counted as timeouts.
    let tb = testbed('n', 1);
    let t = &tb.testbed;
    let _listener = xstack::tools::testbed::in_netns(&t.peer_ns, || {
        std::net::TcpListener::bind("198.18.0.1:9").expect("bind a listener that never accepts")
    });
    let bounds = [
        "--concurrency",
        "2",
        "--duration",
        "2",
        "--timeout",
        "2",
        "--request-bytes",
        "16777216",
    ];
    let json = tmp("never.json");
    // duration 2 s + timeout 2 s + drain 1 s, and start-up on a busy box.
    let limit = Duration::from_secs(12);
    for (ns, mode) in [
        (&t.peer_ns, vec!["--kernel"]),
        (
            &t.stack_ns,
            vec!["--iface", &t.stack_if, "--ip", "198.18.0.2"],
        ),
    ] {
        let (v, took) = load_within(
            ns,
            &[&mode[..], &["--target", "198.18.0.1:9"], &bounds].concat(),
            &json,
            limit,
        );
        assert!(took < limit, "{mode:?} took {took:?}");
        assert_eq!(counter(&v, "/connections"), 0, "{mode:?}: {v:#}");
        assert_eq!(counter(&v, "/requests"), 0, "{mode:?}: {v:#}");
        assert!(counter(&v, "/errors/timeout") >= 2, "{mode:?}: {v:#}");
        assert!(v["elapsed_s"].as_f64().unwrap() < 8.0, "{mode:?}: {v:#}");
    }
    let _ = std::fs::remove_file(json);
}

/// Asserts that `out` is a refusal by the target guard: exit status 1,
/// nothing on stdout, one line on stderr naming `--allow-target`.
fn assert_refused_by_the_guard(out: &std::process::Output, what: &str) {
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(out.status.code(), Some(1), "{what}: {err}");
    assert!(out.stdout.is_empty(), "{what}: printed a summary");
    assert_eq!(lines.len(), 1, "{what}: expected one line, got {err}");
    assert!(
        lines[0].contains("10.0.0.1 is outside 198.18.0.0/15")
            && lines[0].contains("--allow-target"),
        "{what}: {err}"
    );
}

/// The refusal path only (no test ever sends outside 198.18.0.0/15): in a
/// fresh namespace with a veth pair and no routes, `xstack load` to
/// 10.0.0.1 without `--allow-target` exits 1 with one line before it
/// looks at the interface, attaches anything or opens a socket; a
/// malformed or over-broad `--allow-target` is a clap error.
#[test]
fn a_load_outside_the_benchmarking_range_is_refused_before_anything_is_opened() {
    let ns = xstack_tests::EmptyNetns::new('g');
    let bounds = ["--connections", "1", "--timeout", "1", "--quiet"];
    let engine = ["--iface", "xg0", "--ip", "198.18.0.3"];
    // An interface that does not exist: the guard answers before the
    // interface is looked up.
    let missing = ["--iface", "nosuchif0", "--ip", "198.18.0.3"];
    for (what, mode) in [
        ("engine", &engine[..]),
        ("engine, missing interface", &missing[..]),
        ("kernel", &["--kernel"][..]),
    ] {
        let out = ns.xstack(&[&["load"], mode, &["--target", "10.0.0.1:80"], &bounds].concat());
        assert_refused_by_the_guard(&out, what);
    }
    let out = ns.xstack(
        &[
            &["load"],
            &engine[..],
            &["--target", "198.18.0.1:80", "--allow-target", "0.0.0.0/0"],
            &bounds,
        ]
        .concat(),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "clap error: {err}");
    assert!(
        err.lines().next().is_some_and(
            |l| l.contains("'0.0.0.0/0' for '--allow-target") && l.contains("too broad")
        ),
        "{err}"
    );
    for dev in ["xg0", "xg1"] {
        assert_eq!(xstack_tests::attached_xdp(&ns.name, dev), None, "{dev}");
    }
    assert_eq!(ns.packets(), 0, "a refused load sent something");
}

/// A second load process reuses 4-tuples that the Linux server still holds
/// in TIME_WAIT (the server closed first). Linux accepts a SYN on such a
/// tuple only with a newer timestamp (RFC 6191; PAWS, RFC 7323 §5): with
/// TSvals keyed per process, one new process in two sent older ones, and
/// every connection waited a second for its SYN retransmission (51
/// connections/s in `xstack bench` after a row that had used the tuples).
#[test]
fn new_load_processes_reuse_tuples_a_linux_server_holds_in_time_wait_without_stalls() {
    let tb = testbed('t', 1);
    let t = &tb.testbed;
    let _ks = Kserve::start(
        t,
        &t.peer_ns,
        "198.18.0.1:80",
        &["--app", "http", "--response-bytes", "64"],
    );
    let args = [
        "--iface",
        t.stack_if.as_str(),
        "--ip",
        "198.18.0.2",
        "--target",
        "198.18.0.1:80",
        "--http",
        "--close",
        "server",
        "--concurrency",
        "10",
        "--connections",
        "100",
        // 100 ports for 100 connections: every later run meets the
        // server's TIME_WAIT entries of the run before.
        "--sysctl",
        "ip_local_port_range=40000-40099",
    ];
    let json = tmp("twreuse.json");
    for run in 0..4 {
        let (v, took) = load_within(&t.stack_ns, &args, &json, Duration::from_secs(60));
        assert_eq!(counter(&v, "/connections"), 100, "run {run}: {v:#}");
        assert_no_errors(&v);
        // A refused SYN costs a one-second retransmission; 100 connections
        // at concurrency 10 would take 10 s.
        assert!(
            v["elapsed_s"].as_f64().is_some_and(|e| e < 3.0) && took < Duration::from_secs(5),
            "run {run} took {took:?}: SYNs on TIME_WAIT tuples were refused: {v:#}"
        );
        if run == 0 {
            assert!(
                time_wait_in(&t.peer_ns) > 0,
                "the server should hold TIME_WAIT"
            );
        }
    }
    let _ = std::fs::remove_file(json);
}

#[test]
fn two_segments_started_together_merge_into_the_run_the_server_counted() {
    let tb = testbed('g', 1);
    let t = &tb.testbed;
    let serve = Serve::start(t, 8080, &[]);
    let target = format!("{}:8080", t.stack_ip);
    // Both copies start at the same wall-clock second, after bring-up.
    let start_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 2;
    let (json, hdr): (Vec<_>, Vec<_>) = (0..2)
        .map(|i| (tmp(&format!("seg{i}.json")), tmp(&format!("seg{i}.hlog"))))
        .unzip();
    let runs: Vec<_> = (0..2)
        .map(|i| {
            xstack::tools::testbed::netns_command(&t.peer_ns, xstack_bin().to_str().unwrap())
                .args(["load", "--kernel", "--target", &target])
                .args(["--concurrency", "8", "--connections", "601"])
                .args(["--segment", &format!("{i}/2")])
                .args(["--start-at", &start_at.to_string(), "--quiet"])
                .arg("--json")
                .arg(&json[i])
                .arg("--hdr")
                .arg(&hdr[i])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn a segment")
        })
        .collect();
    let mut segs = Vec::new();
    for (i, r) in runs.into_iter().enumerate() {
        let out = r.wait_with_output().expect("segment ends");
        assert!(
            out.status.success(),
            "segment {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&std::fs::read(&json[i]).unwrap()).unwrap();
        assert_no_errors(&v);
        segs.push(v);
    }
    // The shares: 301 and 300 connections.
    assert_eq!(counter(&segs[0], "/connections"), 301);
    assert_eq!(counter(&segs[1], "/connections"), 300);
    let merged_json = tmp("merged.json");
    let out = Command::new(xstack_bin())
        .arg("merge")
        .args([&json[0], &hdr[0], &json[1], &hdr[1]])
        .arg("--json")
        .arg(&merged_json)
        .output()
        .expect("xstack merge");
    assert!(
        out.status.success(),
        "merge: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m: Value = serde_json::from_slice(&std::fs::read(&merged_json).unwrap()).unwrap();
    let schema: Value =
        serde_json::from_str(include_str!("../../docs/load-summary.schema.json")).unwrap();
    validate(&schema, &m, "merged").unwrap();
    assert_eq!(counter(&m, "/connections"), 601, "{m:#}");
    assert_eq!(counter(&m, "/requests"), 601);
    assert_no_errors(&m);
    // Exact percentiles: the slowest request of either run is the max.
    let max = segs
        .iter()
        .map(|v| counter(v, "/latency_us/max"))
        .max()
        .unwrap();
    assert_eq!(counter(&m, "/latency_us/max"), max);
    assert!(counter(&m, "/latency_us/p50") <= counter(&m, "/latency_us/p99"));
    // The server counted the same run.
    let mut opens = 0;
    assert!(
        wait_until(Duration::from_secs(10), || {
            opens = counter(&serve.stats(), "/tcp/passive_opens");
            opens == 601
        }),
        "server passive opens {opens}, merged connections 601"
    );
    // A timed segment measures its rates from --start-at, not from its
    // launch: the window holds (nearly) every request of the run.
    let start_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 2;
    let v = load(
        &t.peer_ns,
        &[
            "--kernel",
            "--target",
            &target,
            "--concurrency",
            "4",
            "--duration",
            "1",
            "--segment",
            "1/2",
            "--start-at",
            &start_at.to_string(),
        ],
        &json[0],
    );
    let (reqs, rate) = (
        counter(&v, "/requests") as f64,
        v["requests_per_s"].as_f64().unwrap(),
    );
    assert!(
        reqs > 0.0 && rate >= 0.8 * reqs,
        "{rate} req/s for {reqs} requests in 1 s: {v:#}"
    );
    for f in json.iter().chain(&hdr).chain([&merged_json]) {
        let _ = std::fs::remove_file(f);
    }
}

#[test]
fn two_engine_segments_from_two_hosts_behind_a_bridge_add_up_to_the_servers_counters() {
    let tb = testbed('h', 1);
    let t = &tb.testbed;
    let serve = Serve::start(t, 8080, &[]);
    let hosts = t.add_load_hosts(2).expect("two load hosts behind a bridge");
    let target = format!("{}:8080", t.stack_ip);
    let start_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3;
    let files: Vec<_> = (0..2)
        .map(|i| (tmp(&format!("hseg{i}.json")), tmp(&format!("hseg{i}.hlog"))))
        .collect();
    let runs: Vec<_> = hosts
        .hosts
        .iter()
        .enumerate()
        .map(|(i, h)| {
            xstack::tools::testbed::netns_command(&h.ns, xstack_bin().to_str().unwrap())
                .args(["load", "--iface", &h.iface, "--ip", &h.ip.to_string()])
                .args([
                    "--target",
                    &target,
                    "--concurrency",
                    "8",
                    "--connections",
                    "1001",
                ])
                .args(["--segment", &format!("{i}/2")])
                .args(["--start-at", &start_at.to_string(), "--quiet"])
                .arg("--json")
                .arg(&files[i].0)
                .arg("--hdr")
                .arg(&files[i].1)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn a segment")
        })
        .collect();
    for (i, r) in runs.into_iter().enumerate() {
        let out = r.wait_with_output().expect("segment ends");
        assert!(
            out.status.success(),
            "segment {i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = Command::new(xstack_bin())
        .arg("merge")
        .args(files.iter().flat_map(|(j, h)| [j, h]))
        .arg("--json")
        .arg(&files[0].0)
        .output()
        .expect("xstack merge");
    assert!(
        out.status.success(),
        "merge: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let m: Value = serde_json::from_slice(&std::fs::read(&files[0].0).unwrap()).unwrap();
    assert_eq!(m["stack"], "xstack");
    assert_eq!(counter(&m, "/connections"), 1001, "{m:#}");
    assert_no_errors(&m);
    let mut stats = serve.stats();
    assert!(
        wait_until(Duration::from_secs(10), || {
            stats = serve.stats();
            counter(&stats, "/tcp/passive_opens") == 1001
        }),
        "server passive opens {} for 1001 merged connections",
        counter(&stats, "/tcp/passive_opens")
    );
    for (j, h) in &files {
        let _ = std::fs::remove_file(j);
        let _ = std::fs::remove_file(h);
    }
}
