//! Connection lifecycle as network engineers know it (issue 4): listen
//! queues and SYN cookies, TIME_WAIT, closing timers and keepalive, when
//! the stack sends RST, and the per-state counts. One packet-level test
//! per behaviour, with Linux's sysctl semantics.

use std::time::Duration;

use stack_ebpf::cookie::{self, CookieOptions, Flow, Secret, Secrets};

use super::util::*;
use crate::tcp::{Event, KeepaliveConfig, RateLimit, State, TcpConfig, TcpError, Warning};
use crate::wire::tcp::SeqNumber;
use crate::wire::tcp::{TcpOptions, TcpRepr, Timestamps, ACK, FIN, RST, SYN};

fn ts(tsval: u32, tsecr: u32) -> TcpOptions {
    TcpOptions {
        timestamps: Some(Timestamps { tsval, tsecr }),
        ..TcpOptions::default()
    }
}

fn flow() -> Flow {
    Flow {
        saddr: u32::from(REMOTE),
        daddr: u32::from(LOCAL),
        sport: RPORT,
        dport: LPORT,
    }
}

const SECRETS: Secrets = Secrets {
    current: Secret { k0: 11, k1: 22 },
    previous: Secret { k0: 33, k1: 44 },
    previous_until: 0,
    pad: 0,
};

/// A SYN with window scale 7, SACK-permitted and timestamps.
fn rich_syn(tsval: u32) -> TcpRepr<'static> {
    let mut syn = peer_syn();
    syn.options.window_scale = Some(7);
    syn.options.sack_permitted = true;
    syn.options.timestamps = Some(Timestamps { tsval, tsecr: 0 });
    syn
}

// ----------------------------------------------------------------------
// Listen queues and SYN handling
// ----------------------------------------------------------------------

#[test]
fn syn_queue_full_without_syncookies_drops_syn() {
    let mut t = Sut::new(TcpConfig {
        tcp_max_syn_backlog: 1,
        tcp_syncookies: 0,
        ..cfg()
    });
    t.e.listen(LOCAL, LPORT, 16).unwrap();
    t.send(peer_syn());
    assert_eq!(t.recv().ctl(), SYN);
    t.send(TcpRepr {
        src_port: 5000,
        ..peer_syn()
    });
    t.assert_silent();
    let s = t.e.stats();
    assert_eq!((s.req_q_full_drop, s.listen_drops), (1, 1));
    assert_eq!(t.e.state_counts().syn_recv, 1);
}

#[test]
fn syn_queue_full_with_syncookies_answers_with_a_cookie() {
    let mut t = Sut::new(TcpConfig {
        tcp_max_syn_backlog: 1,
        tcp_syncookies: 1,
        ..cfg()
    });
    t.e.set_cookie_secrets(SECRETS);
    t.e.listen(LOCAL, LPORT, 16).unwrap();
    t.send(TcpRepr {
        src_port: 5000,
        ..peer_syn()
    });
    assert_eq!(t.recv().ctl(), SYN);
    t.send(peer_syn());
    let sa = t.recv();
    assert_eq!((sa.ctl(), sa.ack), (SYN, Some(PEER_ISS + 1u32)));
    // Stateless: only the first SYN holds a control block.
    assert_eq!(t.e.connection_count(), 1);
    let count = t.e.cookie_count(t.now);
    assert_eq!(
        cookie::check(&SECRETS, &flow(), PEER_ISS.get(), sa.seq.get(), count),
        Some(cookie::mss_index(1460))
    );
    let s = t.e.stats();
    assert_eq!((s.req_q_full_do_cookies, s.syncookies_sent), (1, 1));
}

#[test]
fn syncookies_2_always_answers_with_a_cookie() {
    let mut t = Sut::new(TcpConfig {
        tcp_syncookies: 2,
        ..cfg()
    });
    t.e.listen(LOCAL, LPORT, 16).unwrap();
    t.send(peer_syn());
    assert_eq!(t.recv().ctl(), SYN);
    assert_eq!(t.e.connection_count(), 0);
    assert_eq!(t.e.stats().syncookies_sent, 1);
}

#[test]
fn syncookie_ack_rebuilds_connection_with_wscale_sack() {
    let mut t = Sut::new(TcpConfig {
        tcp_syncookies: 2,
        ..cfg()
    });
    t.e.set_cookie_secrets(SECRETS);
    // The XDP program's clock: cookies count minutes of CLOCK_MONOTONIC.
    t.e.set_cookie_clock_offset(3_600_000_000);
    assert_eq!(t.e.cookie_count(t.now), 60);
    let l = t.e.listen(LOCAL, LPORT, 16).unwrap();
    t.send(rich_syn(5000));
    let sa = t.recv();
    assert_eq!(sa.ctl(), SYN);
    assert_eq!(sa.options.window_scale, Some(2));
    assert!(sa.options.sack_permitted);
    let sts = sa.options.timestamps.unwrap();
    assert_eq!(sts.tsecr, 5000);
    // Linux cookie_init_timestamp: wscale 7 and SACK in the low bits.
    assert_eq!(sts.tsval & cookie::TS_OPT_WSCALE_MASK, 7);
    assert_ne!(sts.tsval & cookie::TS_OPT_SACK, 0);
    assert_eq!(t.e.connection_count(), 0);
    // The final ACK, 30 s later (same cookie minute window).
    t.advance(Duration::from_secs(30));
    t.send(TcpRepr {
        seq: PEER_ISS + 1u32,
        ack: Some(sa.seq + 1u32),
        flags: ACK,
        window: 1000,
        options: ts(5001, sts.tsval),
        ..seg()
    });
    let id = t.e.accept(l).expect("cookie connection accepted");
    assert_eq!(t.e.state(id), Ok(State::Established));
    assert_eq!(t.e.stats().syncookies_recv, 1);
    // Window scale 7 applies to the peer's windows from now on.
    assert_eq!(t.e.tcb(id).unwrap().snd_wnd(), 1000 << 7);
    // SACK is on: out-of-order data is SACKed; timestamps are echoed.
    t.send(TcpRepr {
        seq: PEER_ISS + 11u32,
        ack: Some(sa.seq + 1u32),
        payload: b"later",
        options: ts(5002, sts.tsval),
        ..seg()
    });
    let a = t.recv();
    assert_eq!(a.ack, Some(PEER_ISS + 1u32));
    assert_eq!(
        a.options.sack.as_slice(),
        &[(PEER_ISS + 11u32, PEER_ISS + 16u32)]
    );
    let ats = a.options.timestamps.unwrap();
    assert_eq!(ats.tsecr, 5001);
    assert!(
        ats.tsval.wrapping_sub(sts.tsval) as i32 >= 0,
        "TSval never goes back"
    );
}

#[test]
fn syncookie_ack_without_timestamps_keeps_the_mss_only() {
    let mut t = Sut::new(TcpConfig {
        tcp_syncookies: 2,
        ..cfg()
    });
    let l = t.e.listen(LOCAL, LPORT, 16).unwrap();
    let mut syn = peer_syn();
    syn.options.mss = Some(1300);
    syn.options.window_scale = Some(7);
    syn.options.sack_permitted = true;
    t.send(syn);
    let sa = t.recv();
    // Nothing to carry window scale and SACK in: Linux offers neither.
    assert_eq!(sa.options.window_scale, None);
    assert!(!sa.options.sack_permitted);
    t.send(TcpRepr {
        seq: PEER_ISS + 1u32,
        ack: Some(sa.seq + 1u32),
        flags: ACK,
        ..seg()
    });
    let id = t.e.accept(l).unwrap();
    assert_eq!(t.e.tcb(id).unwrap().smss(), 1300);
    assert_eq!(t.e.tcb(id).unwrap().snd_wnd(), 65_535);
}

#[test]
fn syncookie_forged_ack_fails_and_is_reset() {
    let mut t = Sut::new(TcpConfig {
        tcp_syncookies: 2,
        ..cfg()
    });
    t.e.listen(LOCAL, LPORT, 16).unwrap();
    t.send(TcpRepr {
        seq: PEER_ISS + 1u32,
        ack: Some(SeqNumber(0x1234_5678)),
        flags: ACK,
        ..seg()
    });
    let r = t.recv();
    assert_eq!((r.ctl(), r.seq), (RST, SeqNumber(0x1234_5678)));
    assert_eq!(t.e.stats().syncookies_failed, 1);
    assert_eq!(t.e.connection_count(), 0);
}

#[test]
fn syncookie_expires_after_two_minutes() {
    let mut t = Sut::new(TcpConfig {
        tcp_syncookies: 2,
        ..cfg()
    });
    t.e.listen(LOCAL, LPORT, 16).unwrap();
    t.send(peer_syn());
    let sa = t.recv();
    t.advance(Duration::from_secs(180));
    t.send(TcpRepr {
        seq: PEER_ISS + 1u32,
        ack: Some(sa.seq + 1u32),
        flags: ACK,
        ..seg()
    });
    assert_eq!(t.recv().ctl(), RST);
    assert_eq!(t.e.stats().syncookies_failed, 1);
}

#[test]
fn cookie_ack_validated_by_xdp_creates_established_connection() {
    let mut t = Sut::new(cfg());
    let l = t.e.listen(LOCAL, LPORT, 16).unwrap();
    // The XDP program answered the SYN (ISN 0x5000_0000, TSval 777000 with
    // the options in its low bits) and validated the ACK.
    let xdp_ts = cookie::encode_ts(777_000, Some(5), true, false);
    let ack = TcpRepr {
        seq: PEER_ISS + 1u32,
        ack: Some(SeqNumber(0x5000_0001)),
        flags: ACK,
        window: 512,
        options: ts(9, xdp_ts),
        payload: b"GET /",
        ..seg()
    };
    let mut bytes = vec![0u8; ack.len()];
    ack.emit(REMOTE, LOCAL, &mut bytes).unwrap();
    let opts = CookieOptions {
        mss: 1460,
        wscale: Some(5),
        sack: true,
        ecn: false,
    };
    let id =
        t.e.on_cookie_ack(t.now, REMOTE, LOCAL, &bytes, opts)
            .unwrap();
    assert_eq!(t.e.accept(l), Some(id));
    assert_eq!(t.e.state(id), Ok(State::Established));
    assert_eq!(t.e.tcb(id).unwrap().snd_wnd(), 512 << 5);
    assert_eq!(t.read_all(id), b"GET /");
    assert_eq!(t.events(), vec![Event::Incoming(l), Event::Readable(id)]);
    // Our first segment: SEQ = the cookie + 1, TSval not below the XDP one.
    t.e.write(id, b"200").unwrap();
    let d = t.recv();
    assert_eq!(d.seq, SeqNumber(0x5000_0001));
    let dts = d.options.timestamps.unwrap();
    assert!(dts.tsval.wrapping_sub(xdp_ts) as i32 >= 0);
    assert_eq!(dts.tsecr, 9);
}

/// The final ACK of a handshake XDP answered with a cookie (ISN `cookie`),
/// as `on_cookie_ack` gets it after XDP validated it.
fn xdp_cookie_ack(t: &mut Sut, cookie: SeqNumber) -> Option<crate::tcp::ConnId> {
    let ack = TcpRepr {
        seq: PEER_ISS + 1u32,
        ack: Some(cookie + 1u32),
        flags: ACK,
        ..seg()
    };
    let mut bytes = vec![0u8; ack.len()];
    ack.emit(REMOTE, LOCAL, &mut bytes).unwrap();
    let opts = CookieOptions {
        mss: 1460,
        wscale: None,
        sack: false,
        ecn: false,
    };
    t.e.on_cookie_ack(t.now, REMOTE, LOCAL, &bytes, opts)
}

#[test]
fn cookie_ack_for_a_retransmitted_syn_replaces_the_half_open_request_instead_of_rst() {
    // Cookies off in XDP: the SYN reaches the engine, whose SYN-ACK is lost.
    let mut t = Sut::new(cfg());
    let l = t.e.listen(LOCAL, LPORT, 16).unwrap();
    t.send(peer_syn());
    let lost = t.recv();
    assert_eq!(lost.ctl(), SYN);
    assert_eq!(t.e.state_counts().syn_recv, 1);
    // Cookies came on: XDP answered the client's retransmitted SYN (same
    // ISN) with a cookie and validated the client's ACK of it.
    t.advance(Duration::from_millis(999));
    let cookie = lost.seq + 0x1000_0000u32;
    let id = xdp_cookie_ack(&mut t, cookie).expect("the cookie ACK opens the connection");
    // No RST: the request gave way to the cookie connection.
    t.assert_silent();
    assert_eq!(t.e.accept(l), Some(id));
    assert_eq!(t.e.state(id), Ok(State::Established));
    assert_eq!(t.e.state_counts().syn_recv, 0);
    assert_eq!(t.e.connection_count(), 1);
    assert_eq!(t.e.stats().syncookies_replaced_request, 1);
    assert_eq!(t.e.stats().rst_out, 0);
    // The request's SYN-ACK retransmission timer went with it.
    t.advance(Duration::from_secs(2));
    t.assert_silent();
    // Our segments use the cookie's sequence space.
    t.e.write(id, b"HTTP/1.1 200 OK").unwrap();
    let d = t.recv();
    assert_eq!((d.seq, d.ack), (cookie + 1u32, Some(PEER_ISS + 1u32)));
}

#[test]
fn cookie_ack_that_acknowledges_the_engines_syn_ack_completes_the_request() {
    let mut t = Sut::new(cfg());
    let l = t.e.listen(LOCAL, LPORT, 16).unwrap();
    t.send(peer_syn());
    let sa = t.recv();
    // Our SYN-ACK's ISN passes as a cookie: the request itself completes.
    assert_eq!(xdp_cookie_ack(&mut t, sa.seq), None);
    let id = t.e.accept(l).expect("the request completed");
    assert_eq!(t.e.state(id), Ok(State::Established));
    assert_eq!(t.e.stats().syncookies_replaced_request, 0);
    t.assert_silent();
}

fn handshake_ack(t: &mut Sut, src_port: u16, sa_seq: SeqNumber) {
    t.send(TcpRepr {
        src_port,
        seq: PEER_ISS + 1u32,
        ack: Some(sa_seq + 1u32),
        flags: ACK,
        ..seg()
    });
}

#[test]
fn accept_queue_full_abort_on_overflow_sends_rst() {
    let mut t = Sut::new(TcpConfig {
        tcp_abort_on_overflow: true,
        ..cfg()
    });
    let l = t.e.listen(LOCAL, LPORT, 1).unwrap();
    // Two SYNs get SYN-ACKs (the SYN queue has room), one ACK fills the
    // accept queue, the other finds it full.
    t.send(peer_syn());
    let sa1 = t.recv();
    t.send(TcpRepr {
        src_port: 5000,
        ..peer_syn()
    });
    let sa2 = t.recv();
    handshake_ack(&mut t, RPORT, sa1.seq);
    handshake_ack(&mut t, 5000, sa2.seq);
    let r = t.recv();
    assert_eq!((r.ctl(), r.dst_port, r.seq), (RST, 5000, sa2.seq + 1u32));
    assert_eq!(t.e.stats().listen_overflows, 1);
    assert_eq!(t.e.state_counts().syn_recv, 0);
    assert!(t.e.accept(l).is_some());
    assert!(t.e.accept(l).is_none());
}

#[test]
fn accept_queue_full_keeps_request_and_retransmits_syn_ack() {
    let mut t = Sut::new(cfg());
    let l = t.e.listen(LOCAL, LPORT, 1).unwrap();
    t.send(peer_syn());
    let sa1 = t.recv();
    t.send(TcpRepr {
        src_port: 5000,
        ..peer_syn()
    });
    let sa2 = t.recv();
    handshake_ack(&mut t, RPORT, sa1.seq);
    handshake_ack(&mut t, 5000, sa2.seq);
    // tcp_abort_on_overflow 0: the ACK is dropped, the request stays.
    t.assert_silent();
    assert_eq!(t.e.stats().listen_overflows, 1);
    assert_eq!(t.e.state_counts().syn_recv, 1);
    // The application makes room; the SYN-ACK is retransmitted after 1 s
    // and the client's new ACK completes the handshake.
    assert!(t.e.accept(l).is_some());
    assert_eq!(t.advance_to_timer(), Duration::from_secs(1));
    let again = t.recv();
    assert_eq!((again.ctl(), again.dst_port), (SYN, 5000));
    handshake_ack(&mut t, 5000, sa2.seq);
    let id = t.e.accept(l).expect("accepted after retry");
    assert_eq!(t.e.state(id), Ok(State::Established));
}

#[test]
fn synack_retransmits_double_from_one_second_and_half_open_dropped_after_63s() {
    let mut t = Sut::new(cfg());
    t.e.listen(LOCAL, LPORT, 16).unwrap();
    t.send(peer_syn());
    assert_eq!(t.recv().ctl(), SYN);
    let mut gaps = vec![];
    let start = t.now;
    for _ in 0..5 {
        gaps.push(t.advance_to_timer().as_secs());
        assert_eq!(t.recv().ctl(), SYN);
    }
    assert_eq!(gaps, vec![1, 2, 4, 8, 16]);
    assert_eq!(t.e.connection_count(), 1);
    t.advance_to_timer();
    assert_eq!(t.now - start, Duration::from_secs(63));
    assert_eq!(t.e.connection_count(), 0);
    t.assert_silent();
}

// ----------------------------------------------------------------------
// TIME_WAIT
// ----------------------------------------------------------------------

/// A passive open with timestamps (peer TSval 100), then we close first
/// and reach TIME_WAIT. Returns the connection and the peer's next TSval.
fn time_wait_with_ts(t: &mut Sut) -> (Conn, u32) {
    let mut syn = peer_syn();
    syn.options.timestamps = Some(Timestamps {
        tsval: 100,
        tsecr: 0,
    });
    let mut c = t.accept_with(syn);
    t.e.shutdown(c.id).unwrap();
    let fin = t.recv();
    let our_ts = fin.options.timestamps.unwrap().tsval;
    c.ours += 1;
    t.send(TcpRepr {
        seq: c.theirs,
        ack: Some(c.ours),
        flags: FIN,
        options: ts(102, our_ts),
        ..seg()
    });
    c.theirs += 1;
    let a = t.recv();
    assert_eq!((a.ctl(), a.ack), (0, Some(c.theirs)));
    t.events();
    (c, 103)
}

#[test]
fn only_the_side_that_closes_first_enters_time_wait() {
    // We close second: LAST-ACK, then CLOSED — no TIME_WAIT entry.
    let mut t = Sut::new(cfg());
    let mut c = t.accept();
    t.send_fin(&mut c);
    t.recv();
    t.e.close(t.now, c.id).unwrap();
    assert_eq!(t.recv().ctl(), FIN);
    c.ours += 1;
    t.send_ack(&c);
    assert_eq!(t.e.state_counts().time_wait, 0);
    assert_eq!(t.e.connection_count(), 0);
    // We close first: TIME_WAIT, in the table, not a control block.
    let mut t = Sut::new(cfg());
    let (c, _) = time_wait_with_ts(&mut t);
    assert_eq!(t.e.state(c.id), Ok(State::TimeWait));
    t.e.close(t.now, c.id).unwrap();
    let counts = t.e.state_counts();
    assert_eq!((counts.time_wait, counts.established), (1, 0));
    assert!(t.e.in_time_wait(&tuple()));
    assert_eq!(t.e.connection_count(), 1);
}

#[test]
fn time_wait_lasts_two_msl_and_is_configurable() {
    let mut t = Sut::new(TcpConfig {
        msl: Duration::from_secs(5),
        ..cfg()
    });
    let (c, _) = time_wait_with_ts(&mut t);
    t.e.close(t.now, c.id).unwrap();
    assert_eq!(t.advance_to_timer(), Duration::from_secs(10));
    assert!(!t.e.in_time_wait(&tuple()));
    assert_eq!(t.e.stats().time_waited, 1);
    assert_eq!(t.e.connection_count(), 0);
}

#[test]
fn time_wait_syn_with_newer_timestamp_opens_new_incarnation() {
    let mut t = Sut::new(cfg());
    let (c, tsval) = time_wait_with_ts(&mut t);
    // A sequence number below the old RCV.NXT, but a newer timestamp.
    let mut syn = peer_syn();
    syn.seq = c.theirs - 1000u32;
    syn.options.timestamps = Some(Timestamps { tsval, tsecr: 0 });
    t.send(syn);
    let sa = t.recv();
    assert_eq!((sa.ctl(), sa.ack), (SYN, Some(c.theirs - 999u32)));
    assert_eq!(sa.seq, c.ours + 65_537u32);
    assert_eq!(t.e.state_counts().syn_recv, 1);
    assert_eq!(t.e.state_counts().time_wait, 0);
}

#[test]
fn time_wait_syn_with_old_timestamp_is_acked_not_accepted() {
    let mut t = Sut::new(cfg());
    let (c, _) = time_wait_with_ts(&mut t);
    let mut syn = peer_syn();
    syn.seq = c.theirs + 5000u32;
    syn.options.timestamps = Some(Timestamps {
        tsval: 50,
        tsecr: 0,
    });
    t.send(syn);
    // PAWS rejects it even though its sequence number is higher.
    let a = t.recv();
    assert_eq!((a.ctl(), a.seq, a.ack), (0, c.ours, Some(c.theirs)));
    assert!(t.e.in_time_wait(&tuple()));
    assert_eq!(t.e.stats().drop_paws, 1);
}

#[test]
fn time_wait_ack_carries_timestamps() {
    let mut t = Sut::new(cfg());
    let (c, tsval) = time_wait_with_ts(&mut t);
    t.send(TcpRepr {
        seq: c.theirs - 1u32,
        ack: Some(c.ours),
        flags: FIN,
        options: ts(tsval, 0),
        ..seg()
    });
    let a = t.recv();
    assert_eq!(a.ack, Some(c.theirs));
    // TS.Recent only moves for in-window segments (RFC 7323 §4.3).
    assert_eq!(a.options.timestamps.map(|t| t.tsecr), Some(102));
}

#[test]
fn tw_bucket_overflow_closes_without_time_wait() {
    let mut t = Sut::new(TcpConfig {
        tcp_max_tw_buckets: 0,
        ..cfg()
    });
    let (c, _) = time_wait_with_ts(&mut t);
    // The FIN was still ACKed (above); no TIME_WAIT entry exists.
    assert_eq!(t.e.state(c.id), Ok(State::Closed));
    assert!(!t.e.in_time_wait(&tuple()));
    assert_eq!(t.e.state_counts().time_wait, 0);
    assert_eq!(t.e.stats().time_wait_overflow, 1);
    assert_eq!(t.e.connection_count(), 0);
    let w = t.e.poll_warning().unwrap();
    assert_eq!(w, Warning::TimeWaitOverflow { max: 0 });
    assert!(w.to_string().contains("time wait bucket table overflow"));
    t.e.close(t.now, c.id).unwrap();
}

/// A passive connection from REMOTE:`port` (listener already open), not
/// accepted.
fn passive(t: &mut Sut, port: u16) -> Conn {
    t.send(TcpRepr {
        src_port: port,
        ..peer_syn()
    });
    let sa = t.recv();
    handshake_ack(t, port, sa.seq);
    let id =
        t.e.lookup(&crate::tcp::FourTuple {
            remote_port: port,
            ..tuple()
        })
        .unwrap();
    Conn {
        id,
        ours: sa.seq + 1u32,
        theirs: PEER_ISS + 1u32,
    }
}

/// We close first; the peer ACKs our FIN and sends its own.
fn close_first(t: &mut Sut, c: &mut Conn, port: u16) {
    t.e.close(t.now, c.id).unwrap();
    assert_eq!(t.recv().ctl(), FIN);
    c.ours += 1;
    t.send(TcpRepr {
        src_port: port,
        seq: c.theirs,
        ack: Some(c.ours),
        flags: FIN,
        ..seg()
    });
    c.theirs += 1;
    assert_eq!(t.recv().ack, Some(c.theirs));
}

#[test]
fn tw_overflow_warning_is_rate_limited() {
    let mut t = Sut::new(TcpConfig {
        tcp_max_tw_buckets: 2,
        ..cfg()
    });
    t.e.listen(LOCAL, LPORT, 64).unwrap();
    for port in 1000..1030 {
        let mut c = passive(&mut t, port);
        close_first(&mut t, &mut c, port);
    }
    let s = t.e.state_counts();
    assert_eq!(
        (s.time_wait, s.time_wait_max, s.time_wait_high_water),
        (2, 2, 2)
    );
    assert_eq!(t.e.stats().time_wait_overflow, 28);
    // net_ratelimit: a burst of 10 warnings, the rest counted.
    let warned = std::iter::from_fn(|| t.e.poll_warning()).count();
    assert_eq!(warned, 10);
    assert_eq!(t.e.stats().warnings_suppressed, 18);
}

/// An active open with timestamps (peer TSval 1000) that we close first:
/// TIME_WAIT on LOCAL:LPORT -> REMOTE:RPORT. Returns our last SND.NXT.
fn client_time_wait(t: &mut Sut) -> SeqNumber {
    let id = t.e.connect(t.now, LOCAL, LPORT, REMOTE, RPORT).unwrap();
    let syn = t.recv();
    let our_ts = syn.options.timestamps.unwrap().tsval;
    t.send(TcpRepr {
        seq: PEER_ISS,
        ack: Some(syn.seq + 1u32),
        options: TcpOptions {
            timestamps: Some(Timestamps {
                tsval: 1000,
                tsecr: our_ts,
            }),
            ..peer_syn().options
        },
        flags: SYN | ACK,
        ..peer_syn()
    });
    t.recv();
    let ours = syn.seq + 1u32;
    t.e.close(t.now, id).unwrap();
    let fin = t.recv();
    assert_eq!(fin.ctl(), FIN);
    t.send(TcpRepr {
        seq: PEER_ISS + 1u32,
        ack: Some(ours + 1u32),
        flags: FIN,
        options: ts(1001, fin.options.timestamps.unwrap().tsval),
        ..seg()
    });
    t.recv();
    assert!(t.e.in_time_wait(&tuple()));
    ours + 1u32
}

#[test]
fn tw_reuse_after_one_second_with_timestamps() {
    let mut t = Sut::new(TcpConfig {
        tcp_tw_reuse: 1,
        ..cfg()
    });
    let snd_nxt = client_time_wait(&mut t);
    // Too soon: the last timestamp is less than 1 s old.
    t.advance(Duration::from_millis(500));
    assert_eq!(
        t.e.connect(t.now, LOCAL, LPORT, REMOTE, RPORT),
        Err(TcpError::AddrInUse)
    );
    t.advance(Duration::from_millis(500));
    let id = t.e.connect(t.now, LOCAL, LPORT, REMOTE, RPORT).unwrap();
    let syn = t.recv();
    assert_eq!(syn.ctl(), SYN);
    // Linux tcp_twsk_unique: ISN = old SND.NXT + 65535 + 2.
    assert_eq!(syn.seq, snd_nxt + 65_537u32);
    assert!(!t.e.in_time_wait(&tuple()));
    assert_eq!(t.e.stats().time_wait_recycled, 1);
    // An old duplicate SYN,ACK (of the old incarnation: it acknowledges
    // the old ISS) is refused by its ACK: RST, and the connect goes on.
    t.send(TcpRepr {
        seq: PEER_ISS,
        ack: Some(snd_nxt - 1u32),
        flags: SYN | ACK,
        options: ts(999, 1),
        ..peer_syn()
    });
    let rst = t.recv();
    assert_eq!(rst.ctl(), RST);
    assert_eq!(rst.seq, snd_nxt - 1u32);
    assert_eq!(t.e.state(id), Ok(State::SynSent));
    // The new incarnation's SYN,ACK is taken even with a TSval below the
    // inherited TS.Recent (a server's SYN cookie on another clock), as
    // Linux takes it: PAWS in SYN-SENT is for a bare SYN.
    t.send(TcpRepr {
        seq: PEER_ISS + 7u32,
        ack: Some(syn.seq + 1u32),
        flags: SYN | ACK,
        options: ts(999, syn.options.timestamps.unwrap().tsval),
        ..peer_syn()
    });
    let ack = t.recv();
    assert_eq!(ack.ack, Some(PEER_ISS + 8u32));
    assert_eq!(t.e.state(id), Ok(State::Established));
    assert_eq!(t.e.stats().drop_paws, 0);
}

#[test]
fn tw_reuse_refuses_a_bare_syn_older_than_the_inherited_timestamp() {
    let mut t = Sut::new(TcpConfig {
        tcp_tw_reuse: 1,
        ..cfg()
    });
    client_time_wait(&mut t);
    t.advance(Duration::from_secs(1));
    let id = t.e.connect(t.now, LOCAL, LPORT, REMOTE, RPORT).unwrap();
    let syn = t.recv();
    assert_eq!(syn.ctl(), SYN);
    // A simultaneous-open SYN with a TSval older than the last one of the
    // old incarnation: an old duplicate (PAWS, RFC 7323 §5).
    t.send(TcpRepr {
        seq: PEER_ISS + 7u32,
        ack: None,
        flags: SYN,
        options: ts(999, 0),
        ..peer_syn()
    });
    t.assert_silent();
    assert_eq!(t.e.state(id), Ok(State::SynSent));
    assert_eq!(t.e.stats().drop_paws, 1);
}

#[test]
fn tw_reuse_default_2_acts_as_0() {
    // Linux's default 2 means "loopback only"; the engine has none.
    let mut t = Sut::new(cfg());
    assert_eq!(t.e.config().tcp_tw_reuse, 2);
    client_time_wait(&mut t);
    t.advance(Duration::from_secs(5));
    assert_eq!(
        t.e.connect(t.now, LOCAL, LPORT, REMOTE, RPORT),
        Err(TcpError::AddrInUse)
    );
    // An ephemeral port skips the TIME_WAIT 4-tuple.
    let id = t.e.connect(t.now, LOCAL, 0, REMOTE, RPORT).unwrap();
    assert_ne!(t.e.tcb(id).unwrap().tuple.local_port, LPORT);
}

#[test]
fn tw_isn_above_last_allows_reuse_without_timestamps() {
    let mut t = Sut::new(TcpConfig {
        tcp_timestamps: false,
        tw_isn_above_last: true,
        ..cfg()
    });
    let c = t.connect();
    t.e.close(t.now, c.id).unwrap();
    assert_eq!(t.recv().ctl(), FIN);
    t.send(TcpRepr {
        seq: c.theirs,
        ack: Some(c.ours + 1u32),
        flags: FIN,
        ..seg()
    });
    t.recv();
    assert!(t.e.in_time_wait(&tuple()));
    let id = t.e.connect(t.now, LOCAL, LPORT, REMOTE, RPORT).unwrap();
    let syn = t.recv();
    assert_eq!(syn.seq, c.ours + 1u32 + 65_537u32);
    assert!(
        syn.seq.diff(c.ours + 1u32) > 0,
        "above the old sequence space"
    );
    assert_eq!(t.e.state(id), Ok(State::SynSent));
}

// ----------------------------------------------------------------------
// Closing, timers, keepalive
// ----------------------------------------------------------------------

#[test]
fn orphan_fin_wait_2_times_out_after_fin_timeout() {
    let mut t = Sut::new(cfg());
    let c = t.accept();
    t.e.close(t.now, c.id).unwrap();
    assert_eq!(t.recv().ctl(), FIN);
    t.send_ack(&Conn {
        ours: c.ours + 1u32,
        ..c
    });
    assert_eq!(t.e.state_counts().fin_wait2, 1);
    // Default tcp_fin_timeout: 60 s.
    assert_eq!(t.advance_to_timer(), Duration::from_secs(60));
    assert_eq!(t.e.connection_count(), 0);
    assert_eq!(t.e.state_counts().fin_wait2, 0);
    t.assert_silent();
}

#[test]
fn close_wait_age_is_reported() {
    let mut t = Sut::new(cfg());
    let mut c = t.accept();
    t.send_fin(&mut c);
    t.recv();
    assert_eq!(t.e.state(c.id), Ok(State::CloseWait));
    t.advance(Duration::from_secs(42));
    let ls = t.e.listener_stats(t.now);
    assert_eq!(ls.len(), 1);
    assert_eq!(ls[0].close_wait, 1);
    assert_eq!(ls[0].oldest_close_wait, Some(Duration::from_secs(42)));
    assert_eq!((ls[0].port, ls[0].accept_queue_max), (LPORT, 16));
    assert_eq!(t.e.state_counts().close_wait, 1);
}

#[test]
fn close_wait_longer_than_limit_is_warned_about() {
    let mut t = Sut::new(TcpConfig {
        close_wait_warn: Some(Duration::from_secs(30)),
        ..cfg()
    });
    let mut c = t.accept();
    t.send_fin(&mut c);
    t.recv();
    assert_eq!(t.advance_to_timer(), Duration::from_secs(30));
    match t.e.poll_warning() {
        Some(Warning::CloseWaitTooLong {
            id, age, listener, ..
        }) => {
            assert_eq!((id, age), (c.id, Duration::from_secs(30)));
            assert!(listener.is_some());
        }
        other => panic!("{other:?}"),
    }
    // Once per connection.
    assert!(t.e.poll_timeout().is_none());
}

#[test]
fn keepalive_defaults_are_linux() {
    let k = cfg().keepalive();
    assert_eq!(
        (k.time, k.intvl, k.probes),
        (Duration::from_secs(7200), Duration::from_secs(75), 9)
    );
}

#[test]
fn keepalive_dead_peer_times_out_after_probes() {
    let mut t = Sut::new(cfg());
    let c = t.accept();
    let ka = KeepaliveConfig {
        time: Duration::from_secs(10),
        intvl: Duration::from_secs(2),
        probes: 3,
    };
    t.e.set_keepalive(t.now, c.id, Some(ka)).unwrap();
    assert_eq!(t.advance_to_timer(), Duration::from_secs(10));
    for i in 0..3 {
        let p = t.recv();
        // <SEQ=SND.UNA-1>, no data: the peer must answer.
        assert_eq!((p.ctl(), p.seq, p.payload.len()), (0, c.ours - 1u32, 0));
        assert_eq!(t.advance_to_timer(), Duration::from_secs(2), "probe {i}");
    }
    // No answer to 3 probes: RST, TimedOut.
    assert_eq!(t.recv().ctl(), RST);
    assert_eq!(t.events(), vec![Event::TimedOut(c.id)]);
    assert_eq!(t.e.read(c.id, &mut [0; 8]), Err(TcpError::TimedOut));
    let s = t.e.stats();
    assert_eq!((s.keepalive_probes, s.abort_on_timeout), (3, 1));
    assert_eq!(t.e.connection_count(), 0);
}

#[test]
fn keepalive_answered_probe_keeps_the_connection() {
    let mut t = Sut::new(cfg());
    let c = t.accept();
    let ka = KeepaliveConfig {
        time: Duration::from_secs(10),
        intvl: Duration::from_secs(2),
        probes: 1,
    };
    t.e.set_keepalive(t.now, c.id, Some(ka)).unwrap();
    for _ in 0..3 {
        // The next probe comes `time` after the last answer.
        let start = t.now;
        let probe = loop {
            t.advance_to_timer();
            if let Some(p) = t.try_recv() {
                break p;
            }
        };
        assert_eq!(t.now - start, Duration::from_secs(10));
        assert_eq!(probe.seq, c.ours - 1u32);
        t.send_ack(&c);
    }
    assert_eq!(t.e.state(c.id), Ok(State::Established));
    // Off again: no more timers.
    t.e.set_keepalive(t.now, c.id, None).unwrap();
    assert!(t.e.poll_timeout().is_none());
}

#[test]
fn keepalive_waits_for_idle_time_after_traffic() {
    let mut t = Sut::new(cfg());
    let mut c = t.accept();
    let ka = KeepaliveConfig {
        time: Duration::from_secs(10),
        intvl: Duration::from_secs(2),
        probes: 1,
    };
    t.e.set_keepalive(t.now, c.id, Some(ka)).unwrap();
    t.advance(Duration::from_secs(6));
    t.send_data(&mut c, b"hi");
    t.read_all(c.id);
    // Delayed ACK first, then the probe 10 s after the data (not 10 s
    // after set_keepalive).
    let start = t.now;
    t.advance_to_timer();
    assert_eq!(t.recv().ack, Some(c.theirs));
    let probe = loop {
        t.advance_to_timer();
        if let Some(p) = t.try_recv() {
            break p;
        }
    };
    assert_eq!(t.now - start, Duration::from_secs(10));
    assert_eq!(probe.seq, c.ours - 1u32);
}

// ----------------------------------------------------------------------
// When the stack sends RST
// ----------------------------------------------------------------------

#[test]
fn rst_for_closed_port_is_rate_limited() {
    let mut t = Sut::new(TcpConfig {
        rst_ratelimit: Some(RateLimit {
            per_sec: 10,
            burst: 5,
        }),
        ..cfg()
    });
    for i in 0..20u16 {
        t.send(TcpRepr {
            src_port: 2000 + i,
            ..peer_syn()
        });
    }
    let rsts = t.recv_all();
    assert_eq!(rsts.len(), 5);
    // SYN → <SEQ=0><ACK=SEG.SEQ+1><CTL=RST,ACK>.
    assert!(rsts
        .iter()
        .all(|r| r.ctl() == RST && r.ack == Some(PEER_ISS + 1u32)));
    assert_eq!(t.e.stats().rst_ratelimited, 15);
    // 100 ms later one more token.
    t.advance(Duration::from_millis(100));
    t.send(peer_syn());
    assert_eq!(t.recv().ctl(), RST);
}

#[test]
fn segment_for_no_connection_that_is_not_rst_gets_rst() {
    let mut t = Sut::new(cfg());
    t.e.listen(LOCAL, LPORT, 4).unwrap();
    // Data with an ACK on a listening port but no connection.
    t.send(TcpRepr {
        seq: PEER_ISS,
        ack: Some(SeqNumber(4242)),
        payload: b"stale",
        ..seg()
    });
    let r = t.recv();
    assert_eq!((r.ctl(), r.seq, r.ack), (RST, SeqNumber(4242), None));
    // To a port nobody listens on, a FIN without ACK.
    t.send(TcpRepr {
        dst_port: 81,
        flags: FIN,
        ..seg()
    });
    let r = t.recv();
    assert_eq!(
        (r.ctl(), r.seq, r.ack),
        (RST, SeqNumber(0), Some(PEER_ISS + 1u32))
    );
    // An RST is never answered.
    t.send(TcpRepr {
        dst_port: 81,
        flags: RST,
        ..seg()
    });
    t.assert_silent();
}

#[test]
fn close_with_unread_data_sends_rst() {
    let mut t = Sut::new(cfg());
    let mut c = t.accept();
    t.send_data(&mut c, b"unread");
    t.recv_all();
    t.e.close(t.now, c.id).unwrap();
    let r = t.recv();
    assert_eq!((r.ctl(), r.seq), (RST, c.ours));
    t.assert_silent();
    assert_eq!(t.e.stats().abort_on_close, 1);
    assert_eq!(t.e.connection_count(), 0);
    assert!(!t.e.in_time_wait(&tuple()));
}

#[test]
fn abortive_close_linger_zero_sends_rst_without_time_wait() {
    let mut t = Sut::new(cfg());
    let c = t.accept();
    t.e.write(c.id, b"queued").unwrap();
    t.e.set_linger(c.id, Some(Duration::ZERO)).unwrap();
    t.e.close(t.now, c.id).unwrap();
    let segs = t.recv_all();
    assert_eq!(segs.last().map(|s| s.ctl()), Some(RST));
    assert!(segs.iter().all(|s| s.ctl() != FIN));
    assert_eq!(t.e.stats().abort_on_linger, 1);
    assert_eq!(t.e.connection_count(), 0);
    assert!(!t.e.in_time_wait(&tuple()));
    // `abort` is the same without set_linger.
    let mut t = Sut::new(cfg());
    let c = t.accept();
    t.e.abort(c.id).unwrap();
    assert_eq!(t.recv().ctl(), RST);
    assert_eq!(t.e.stats().abort_on_linger, 1);
    assert_eq!(t.e.connection_count(), 0);
}

#[test]
fn data_for_a_fully_closed_connection_sends_rst() {
    // FIN_WAIT_1 orphan.
    let mut t = Sut::new(cfg());
    let mut c = t.accept();
    t.e.close(t.now, c.id).unwrap();
    assert_eq!(t.recv().ctl(), FIN);
    t.send_data(&mut c, b"late");
    let r = t.recv();
    assert_eq!(r.ctl(), RST);
    assert_eq!(t.e.stats().abort_on_data, 1);
    assert_eq!(t.e.connection_count(), 0);
    // FIN_WAIT_2 orphan.
    let mut t = Sut::new(cfg());
    let mut c = t.accept();
    t.e.close(t.now, c.id).unwrap();
    t.recv();
    c.ours += 1;
    t.send_ack(&c);
    assert_eq!(t.e.state_counts().fin_wait2, 1);
    t.send_data(&mut c, b"late");
    assert_eq!(t.recv().ctl(), RST);
    assert_eq!(t.e.stats().abort_on_data, 1);
    assert_eq!(t.e.connection_count(), 0);
}

#[test]
fn rst_received_reports_reset_and_broken_pipe_and_releases_state() {
    let mut t = Sut::new(cfg());
    let c = t.accept();
    assert_eq!(t.e.connection_count(), 1);
    t.send(TcpRepr {
        seq: c.theirs,
        flags: RST,
        ..seg()
    });
    assert_eq!(t.events(), vec![Event::Reset(c.id)]);
    // Released at once, though the handle is still held.
    assert_eq!(t.e.connection_count(), 0);
    assert_eq!(t.e.state_counts().established, 0);
    assert_eq!(t.e.lookup(&tuple()), None);
    assert_eq!(t.e.read(c.id, &mut [0; 8]), Err(TcpError::ConnectionReset));
    assert_eq!(t.e.write(c.id, b"x"), Err(TcpError::BrokenPipe));
    assert!(t.e.poll_timeout().is_none());
}

// ----------------------------------------------------------------------
// Observability
// ----------------------------------------------------------------------

#[test]
fn state_counts_follow_every_transition() {
    let mut t = Sut::new(cfg());
    let mut c = t.accept();
    let n = |t: &Sut| t.e.state_counts();
    assert_eq!((n(&t).established, n(&t).listen), (1, 1));
    t.e.connect(t.now, LOCAL, 0, REMOTE, 8080).unwrap();
    assert_eq!(n(&t).syn_sent, 1);
    t.e.shutdown(c.id).unwrap();
    t.recv_all();
    assert_eq!((n(&t).established, n(&t).fin_wait1), (0, 1));
    c.ours += 1;
    t.send_ack(&c);
    assert_eq!((n(&t).fin_wait1, n(&t).fin_wait2), (0, 1));
    t.send_fin(&mut c);
    assert_eq!((n(&t).fin_wait2, n(&t).time_wait), (0, 1));
    let names: Vec<_> = n(&t).iter().map(|(name, _)| name).collect();
    for s in [
        "ESTAB",
        "SYN-RECV",
        "FIN-WAIT-1",
        "TIME-WAIT",
        "CLOSE-WAIT",
        "LISTEN",
    ] {
        assert!(names.contains(&s), "{s}");
    }
    // Simultaneous close: CLOSING.
    let mut t = Sut::new(cfg());
    let mut c = t.accept();
    t.e.shutdown(c.id).unwrap();
    t.recv_all();
    t.send_fin(&mut c);
    assert_eq!(n(&t).closing, 1);
    // Passive close: CLOSE-WAIT, LAST-ACK.
    let mut t = Sut::new(cfg());
    let mut c = t.accept();
    t.send_fin(&mut c);
    assert_eq!(n(&t).close_wait, 1);
    t.e.shutdown(c.id).unwrap();
    assert_eq!((n(&t).close_wait, n(&t).last_ack), (0, 1));
}

#[test]
fn all_timers_share_one_wheel() {
    // Retransmission, delayed ACK, keepalive and TIME_WAIT on one engine:
    // each fires at its own deadline.
    let mut t = Sut::new(TcpConfig {
        msl: Duration::from_secs(1),
        ..cfg()
    });
    let mut c = t.accept();
    t.send_data(&mut c, b"x");
    // Delayed ACK: 40 ms.
    assert_eq!(t.advance_to_timer(), Duration::from_millis(40));
    assert_eq!(t.recv().ack, Some(c.theirs));
    t.e.write(c.id, b"y").unwrap();
    t.recv();
    // Retransmission: the RTO.
    let rto = t.e.tcb(c.id).unwrap().rto();
    assert_eq!(t.advance_to_timer(), rto);
    assert_eq!(t.recv().payload, b"y");
    c.ours += 1;
    t.send_ack(&c);
    // Keepalive, then TIME_WAIT (2 * 1 s) after we close first.
    let ka = KeepaliveConfig {
        time: Duration::from_secs(3),
        intvl: Duration::from_secs(1),
        probes: 1,
    };
    t.e.set_keepalive(t.now, c.id, Some(ka)).unwrap();
    assert_eq!(t.advance_to_timer(), Duration::from_secs(3));
    assert_eq!(t.recv().seq, c.ours - 1u32);
    t.send_ack(&c);
    t.e.shutdown(c.id).unwrap();
    assert_eq!(t.recv().ctl(), FIN);
    c.ours += 1;
    t.send_ack(&c);
    t.send_fin(&mut c);
    t.recv();
    assert!(t.e.in_time_wait(&tuple()));
    assert_eq!(t.advance_to_timer(), Duration::from_secs(2));
    assert!(!t.e.in_time_wait(&tuple()));
    assert_eq!(t.e.state(c.id), Ok(State::Closed));
}

/// The final ACK (no options) of a cookie SYN-ACK XDP sent for a SYN with
/// ISN `client_isn` on the test tuple, with the engine's secrets and clock
/// (as XDP shares them): cookie MSS index 3 (1460).
fn plain_cookie_ack(t: &Sut, client_isn: SeqNumber) -> (TcpRepr<'static>, SeqNumber) {
    let count = t.e.cookie_count(t.now);
    let c = SeqNumber(cookie::generate(
        &SECRETS.current,
        &flow(),
        client_isn.get(),
        count,
        3,
    ));
    let ack = TcpRepr {
        seq: client_isn + 1u32,
        ack: Some(c + 1u32),
        flags: ACK,
        ..seg()
    };
    (ack, c)
}

#[test]
fn a_cookie_ack_on_a_time_wait_tuple_passed_on_by_xdp_reopens_it() {
    // The client reuses its port while we hold the 4-tuple in TIME_WAIT;
    // cookies are on, so XDP answered its SYN (ISN above the old RCV.NXT)
    // and passed the ACK on unchecked, the 4-tuple being known.
    for xdp in [true, false] {
        let mut t = Sut::new(cfg());
        t.e.set_cookie_secrets(SECRETS);
        t.e.set_xdp_cookies(xdp);
        let old = super::time_wait::time_wait(&mut t);
        let isn = old.theirs + 100_000u32;
        let (ack, c) = plain_cookie_ack(&t, isn);
        t.send(ack);
        if !xdp {
            // Without XDP cookies the ACK is TIME_WAIT's: re-ACKed with the
            // old numbers, the entry kept.
            let a = t.recv();
            assert_eq!((a.ctl(), a.seq, a.ack), (0, old.ours, Some(old.theirs)));
            assert!(t.e.in_time_wait(&tuple()));
            assert_eq!(t.e.stats().syncookies_held_tuple, 0);
            continue;
        }
        // RFC 6191: the new incarnation, from the cookie, ESTABLISHED.
        t.assert_silent();
        assert!(!t.e.in_time_wait(&tuple()));
        assert_eq!(t.e.stats().syncookies_held_tuple, 1);
        assert_eq!(t.e.stats().time_wait_syn_reopen, 1);
        assert_eq!(t.e.stats().syncookies_recv, 1);
        let l = crate::tcp::ListenerId(0);
        let id = t.e.accept(l).expect("the cookie ACK opens a connection");
        assert_eq!(t.e.state(id), Ok(State::Established));
        // Our segments use the cookie's sequence space.
        t.e.write(id, b"HTTP/1.1 200 OK").unwrap();
        let d = t.recv();
        assert_eq!((d.seq, d.ack), (c + 1u32, Some(isn + 1u32)));
    }
}

#[test]
fn an_ack_on_a_time_wait_tuple_that_is_no_cookie_stays_time_waits() {
    let mut t = Sut::new(cfg());
    t.e.set_cookie_secrets(SECRETS);
    t.e.set_xdp_cookies(true);
    let old = super::time_wait::time_wait(&mut t);
    let isn = old.theirs + 100_000u32;
    let (mut ack, c) = plain_cookie_ack(&t, isn);
    ack.ack = Some(c + 2u32);
    t.send(ack);
    let a = t.recv();
    assert_eq!((a.ctl(), a.seq, a.ack), (0, old.ours, Some(old.theirs)));
    assert!(t.e.in_time_wait(&tuple()));
    assert_eq!(t.e.stats().syncookies_held_tuple, 0);
    // A valid cookie for an ISN not above the old RCV.NXT (RFC 6191 says
    // the SYN was an old duplicate) is TIME_WAIT's too.
    let (ack, _) = plain_cookie_ack(&t, old.theirs - 10u32);
    t.advance(Duration::from_secs(1));
    t.send(ack);
    assert_eq!(t.recv().ack, Some(old.theirs));
    assert!(t.e.in_time_wait(&tuple()));
    assert_eq!(t.e.stats().time_wait_syn_reopen, 0);
}

#[test]
fn a_cookie_ack_on_a_half_open_request_passed_on_by_xdp_replaces_it() {
    for xdp in [true, false] {
        // Cookies off in XDP: the SYN reaches the engine, whose SYN-ACK is
        // lost. Cookies came on: XDP answered the retransmitted SYN with a
        // cookie and passed the client's ACK on unchecked (known 4-tuple).
        let mut t = Sut::new(cfg());
        t.e.set_cookie_secrets(SECRETS);
        t.e.set_xdp_cookies(xdp);
        let l = t.e.listen(LOCAL, LPORT, 16).unwrap();
        t.send(peer_syn());
        assert_eq!(t.recv().ctl(), SYN);
        t.advance(Duration::from_millis(999));
        let (ack, c) = plain_cookie_ack(&t, PEER_ISS);
        t.send(ack);
        if !xdp {
            // Without XDP cookies: an unacceptable ACK in SYN-RECEIVED,
            // answered <SEQ=SEG.ACK><CTL=RST> (RFC 9293 §3.10.7.4).
            let r = t.recv();
            assert_eq!((r.ctl(), r.seq), (RST, c + 1u32));
            assert_eq!(t.e.stats().syncookies_held_tuple, 0);
            continue;
        }
        t.assert_silent();
        let id = t.e.accept(l).expect("the cookie ACK opens the connection");
        assert_eq!(t.e.state(id), Ok(State::Established));
        assert_eq!(t.e.state_counts().syn_recv, 0);
        assert_eq!(t.e.connection_count(), 1);
        assert_eq!(t.e.stats().syncookies_held_tuple, 1);
        assert_eq!(t.e.stats().syncookies_replaced_request, 1);
        // The request's SYN-ACK retransmission timer went with it.
        t.advance(Duration::from_secs(2));
        t.assert_silent();
        t.e.write(id, b"HTTP/1.1 200 OK").unwrap();
        let d = t.recv();
        assert_eq!((d.seq, d.ack), (c + 1u32, Some(PEER_ISS + 1u32)));
    }
}

#[test]
fn a_cookie_ack_to_a_listener_passed_on_by_xdp_opens_a_connection() {
    // The client's earlier connection on this 4-tuple is gone here, but XDP
    // still knows the 4-tuple: it answered the new SYN with a cookie and
    // passed the ACK on unchecked. The engine sent no cookie itself
    // (`tcp_syncookies` 1, no SYN queue overflow).
    for xdp in [true, false] {
        let mut t = Sut::new(cfg());
        t.e.set_cookie_secrets(SECRETS);
        t.e.set_xdp_cookies(xdp);
        let l = t.e.listen(LOCAL, LPORT, 16).unwrap();
        let (ack, c) = plain_cookie_ack(&t, PEER_ISS);
        t.send(ack);
        if !xdp {
            // RFC 9293 §3.10.7.2: "any acknowledgment is bad" at a listener
            // that expects no cookie.
            let r = t.recv();
            assert_eq!((r.ctl(), r.seq), (RST, c + 1u32));
            assert_eq!(t.e.stats().syncookies_recv, 0);
            continue;
        }
        t.assert_silent();
        let id = t.e.accept(l).expect("the cookie ACK opens the connection");
        assert_eq!(t.e.state(id), Ok(State::Established));
        assert_eq!(t.e.stats().syncookies_recv, 1);
        // One that does not check is still answered with an RST.
        let (mut bad, c) = plain_cookie_ack(&t, PEER_ISS + 7u32);
        bad.src_port = RPORT + 1;
        t.send(bad);
        let r = t.recv();
        assert_eq!((r.ctl(), r.seq), (RST, c + 1u32));
        assert_eq!(t.e.stats().syncookies_failed, 1);
    }
}
