//! End-to-end: SYN cookie handshakes with a Linux client on both peer
//! profiles (issue 11, failure 3). On a plain veth (the `default` profile:
//! GRO off at the peer, so the peer runs no NAPI) frames sent with `XDP_TX`
//! or `bpf_redirect` never arrive; the cookie SYN-ACKs must take the
//! engine's AF_XDP TX there, and the path in use is logged and shown in
//! `xstack stats`.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use xstack_tests::{counter, in_netns, testbed_with, wait_until, PeerProfile, Serve};

const PORT: u16 = 7300;
const LEN: usize = 64 * 1024;

/// A Linux client connects to `serve --app echo --syncookies always
/// extra...` on a testbed with `profile`, sends LEN bytes, half-closes and
/// reads the echo to EOF. Returns the server's counters and its log.
fn cookie_echo(profile: PeerProfile, extra: &[&str]) -> (serde_json::Value, String) {
    let tb = testbed_with('y', 1, profile);
    let t = &tb.testbed;
    let mut args = vec!["--app", "echo", "--syncookies", "always"];
    args.extend_from_slice(extra);
    let mut serve = Serve::start(t, PORT, &args);
    let target = SocketAddr::from((t.stack_ip, PORT));
    let result = in_netns(&t.peer_ns, move || -> Result<bool, String> {
        // The kernel retransmits an unanswered SYN after 1 s and 3 s: 5 s
        // is plenty for an answered one and ends a black-holed one.
        let mut s = TcpStream::connect_timeout(&target, Duration::from_secs(5))
            .map_err(|e| format!("connect: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        let data: Vec<u8> = (0..LEN).map(|i| (i * 13 + i / 253) as u8).collect();
        let mut reader = s.try_clone().map_err(|e| e.to_string())?;
        let r = std::thread::spawn(move || {
            let mut got = Vec::new();
            reader.read_to_end(&mut got).map(|_| got)
        });
        s.write_all(&data).map_err(|e| format!("write: {e}"))?;
        s.shutdown(std::net::Shutdown::Write)
            .map_err(|e| e.to_string())?;
        let got = r
            .join()
            .map_err(|_| "reader panicked".to_string())?
            .map_err(|e| format!("read: {e}"))?;
        Ok(got == data)
    });
    let done = wait_until(Duration::from_secs(5), || {
        counter(&serve.stats(), "/engine/app_bytes_out") == LEN as u64
    });
    let s = serve.stats();
    let out = serve.stop_with(libc::SIGTERM);
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    match result {
        Ok(true) => {}
        Ok(false) => panic!("echoed bytes differ\n{s:#}"),
        Err(e) => panic!("{e}\n{s:#}\n{log}"),
    }
    assert!(done, "{s:#}");
    // The connection was made from a cookie: XDP validated the final ACK
    // and the engine created it from the metadata.
    assert!(counter(&s, "/xdp/redirect_cookie_ack") >= 1, "{s:#}");
    assert!(counter(&s, "/engine/cookie_acks") >= 1, "{s:#}");
    assert!(counter(&s, "/tcp/SyncookiesRecv") >= 1, "{s:#}");
    assert_eq!(counter(&s, "/engine/app_bytes_in"), LEN as u64);
    (s, log)
}

/// The engine path's counters moved, the XDP path's did not.
fn assert_engine_path(s: &serde_json::Value, log: &str) {
    assert_eq!(s["fastpath"]["cookie_path"], "engine", "{s:#}");
    assert!(counter(s, "/xdp/redirect_cookie_synack") >= 1, "{s:#}");
    assert!(counter(s, "/engine/cookie_synacks_sent") >= 1, "{s:#}");
    assert_eq!(counter(s, "/xdp/tx_cookie_synack"), 0, "{s:#}");
    assert!(
        log.contains("SYN cookies: answered by the engine (AF_XDP TX) (veth:"),
        "{log}"
    );
}

/// Issue 11, failure 3: with `--syncookies always` on a plain veth XDP
/// counted `tx_cookie_synack` but no SYN-ACK reached the client.
#[test]
fn cookie_handshake_completes_on_a_plain_veth() {
    let (s, log) = cookie_echo(PeerProfile::Default, &[]);
    assert_engine_path(&s, &log);
}

#[test]
fn cookie_handshake_completes_on_a_tuned_veth() {
    let (s, log) = cookie_echo(PeerProfile::Tuned, &[]);
    assert_engine_path(&s, &log);
}

/// With GRO on at the peer (it runs NAPI) the XDP path still works when the
/// user forces it.
#[test]
fn cookie_handshake_completes_through_xdp_when_forced_on_a_tuned_veth() {
    let (s, log) = cookie_echo(PeerProfile::Tuned, &["--cookie-path", "xdp"]);
    assert_eq!(s["fastpath"]["cookie_path"], "xdp", "{s:#}");
    assert!(counter(&s, "/xdp/tx_cookie_synack") >= 1, "{s:#}");
    assert_eq!(counter(&s, "/xdp/redirect_cookie_synack"), 0, "{s:#}");
    assert_eq!(counter(&s, "/engine/cookie_synacks_sent"), 0, "{s:#}");
    assert!(
        log.contains("SYN cookies: answered by XDP (bpf_redirect to the ingress interface) (forced by --cookie-path xdp"),
        "{log}"
    );
}
