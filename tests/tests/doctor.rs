//! End-to-end: `xstack doctor` on the testbed's veth, with the peer as
//! `ip link add type veth` leaves it (`default`) and as the benchmarks set
//! it up (`tuned`), an MTU above the AF_XDP frame limit, and a missing
//! interface. The report is read as JSON (`--json`), not as screen text.

use std::process::{Command, Output};

use serde_json::Value;
use xstack_tests::{testbed_with, xstack_bin, PeerProfile, Testbed};

/// Runs `xstack doctor ARGS` in the stack namespace.
fn doctor(t: &Testbed, args: &[&str]) -> Output {
    t.stack_command(xstack_bin().to_str().expect("utf-8 path"))
        .args(["doctor", "--iface", &t.stack_if, "--json"])
        .args(args)
        .output()
        .expect("run xstack doctor")
}

fn report(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor printed no JSON ({e}): stdout {} stderr {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// The check called `key`.
fn check<'a>(r: &'a Value, key: &str) -> &'a Value {
    r["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["key"] == key))
        .unwrap_or_else(|| panic!("no check {key} in {r:#}"))
}

#[test]
fn doctor_on_a_default_veth_reports_peer_napi_off_and_offloads_handled() {
    let g = testbed_with('d', 1, PeerProfile::Default);
    let t = &g.testbed;
    let ip = t.stack_ip.to_string();
    let out = doctor(t, &["--ip", &ip]);
    let r = report(&out);
    assert_eq!(out.status.code(), Some(0), "{r:#}");
    assert_eq!(r["works"], true);
    assert_eq!(r["xdp_mode"], "driver");
    assert_eq!(r["zero_copy"], false);
    assert_eq!(r["facts"]["driver"], "veth");
    // A plain veth: 1 active channel of the allocated ones.
    assert_eq!(r["facts"]["rx_queues"], 1);
    // The peer is found in its own namespace and read there.
    let peer = &r["facts"]["peer"];
    assert_eq!(peer["netns"], t.peer_ns.as_str(), "{peer:#}");
    assert_eq!(peer["iface"], t.peer_if.as_str());
    assert_eq!(peer["offloads"]["gro"], false);
    assert_eq!(peer["offloads"]["tx_checksum"], true);
    // Peer NAPI off: a warning, with the engine path named and the fix.
    assert_eq!(r["peer_napi"], false);
    assert_eq!(r["cookie_path"], "engine");
    let napi = check(&r, "peer_napi");
    assert_eq!(napi["level"], "warn");
    assert!(
        napi["why"].as_str().unwrap().contains("engine path"),
        "{napi}"
    );
    assert_eq!(
        napi["fix"].as_str().unwrap(),
        format!(
            "ip netns exec {} ethtool -K {} gro on",
            t.peer_ns, t.peer_if
        )
    );
    // The peer's tx-checksum offload is handled by xstack, not a problem.
    let csum = check(&r, "peer_checksum");
    assert_eq!(csum["level"], "ok");
    assert!(
        csum["why"]
            .as_str()
            .unwrap()
            .contains("checksum_partial_in"),
        "{csum}"
    );
    assert_eq!(check(&r, "mtu")["level"], "ok");
    assert_eq!(check(&r, "lro")["level"], "ok");
    let addr = check(&r, "address");
    assert_eq!(addr["level"], "ok");
    assert!(
        addr["what"].as_str().unwrap().contains("xstack alone"),
        "{addr}"
    );
    // The only warning is the peer's NAPI.
    let warns: Vec<&Value> = r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["level"] != "ok")
        .collect();
    assert_eq!(warns.len(), 1, "{warns:#?}");
}

#[test]
fn doctor_on_a_tuned_veth_reports_peer_napi_on() {
    let g = testbed_with('d', 1, PeerProfile::Tuned);
    let t = &g.testbed;
    // --probe: a real driver-mode attach and a zero-copy bind, both undone.
    let out = doctor(t, &["--probe"]);
    let r = report(&out);
    assert_eq!(out.status.code(), Some(0), "{r:#}");
    assert_eq!(r["peer_napi"], true, "{r:#}");
    assert_eq!(check(&r, "peer_napi")["level"], "ok");
    assert_eq!(r["facts"]["peer"]["offloads"]["gro"], true);
    assert_eq!(r["facts"]["probe"]["native"], true, "{r:#}");
    assert_eq!(r["facts"]["probe"]["zero_copy"], false);
    assert_eq!(r["xdp_mode"], "driver");
    // Nothing left attached by the probe.
    let link = t
        .stack_command("ip")
        .args(["-d", "-j", "link", "show", "dev", &t.stack_if])
        .output()
        .expect("ip link");
    let v: Value = serde_json::from_slice(&link.stdout).expect("ip json");
    assert!(v[0].get("xdp").is_none(), "probe left XDP attached: {v:#}");
    assert_eq!(r["works"], true);
}

#[test]
fn doctor_flags_an_mtu_above_the_frame_limit_with_the_fix() {
    let g = testbed_with('d', 1, PeerProfile::Default);
    let t = &g.testbed;
    let set = Command::new("ip")
        .args(["-n", &t.stack_ns, "link", "set", &t.stack_if, "mtu", "9000"])
        .status()
        .expect("ip link set mtu");
    assert!(set.success());
    let out = doctor(t, &[]);
    let r = report(&out);
    assert_eq!(out.status.code(), Some(1), "{r:#}");
    assert_eq!(r["works"], false);
    assert_eq!(r["max_mtu"], 3826);
    let mtu = check(&r, "mtu");
    assert_eq!(mtu["level"], "fail");
    assert_eq!(
        mtu["fix"].as_str().unwrap(),
        format!("ip link set dev {} mtu 1500", t.stack_if)
    );
    assert!(r["summary"].as_str().unwrap().contains("mtu"), "{r:#}");
    // The screen says the same, fix included, and exits 1 as well.
    let screen = t
        .stack_command(xstack_bin().to_str().unwrap())
        .args(["doctor", "--iface", &t.stack_if])
        .output()
        .expect("run xstack doctor");
    let text = String::from_utf8_lossy(&screen.stdout);
    assert_eq!(screen.status.code(), Some(1), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("fail  MTU 9000")
            && l.contains(&format!("fix: ip link set dev {} mtu 1500", t.stack_if))),
        "{text}"
    );
}

#[test]
fn doctor_on_a_missing_interface_is_one_line() {
    let out = Command::new(xstack_bin())
        .args(["doctor", "--iface", "xs-nosuch0", "--json"])
        .output()
        .expect("run xstack doctor");
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty(), "{:?}", out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("xstack: error: interface xs-nosuch0 does not exist"),
        "{err}"
    );
}
