//! TIME-WAIT (RFC 9293 §3.10.7.4, RFC 1337).

use std::time::Duration;

use super::util::*;
use crate::tcp::{Event, State, TcpConfig};
use crate::wire::tcp::{TcpRepr, FIN, RST, SYN};

/// A passive connection (the default peer SYN) driven into TIME_WAIT: we
/// close first, the peer ACKs our FIN and sends its own.
pub(super) fn time_wait(t: &mut Sut) -> Conn {
    let mut c = t.accept();
    t.e.shutdown(c.id).unwrap();
    t.recv();
    c.ours += 1;
    t.send_ack(&c);
    t.send_fin(&mut c);
    assert_eq!(t.recv().ack, Some(c.theirs));
    assert_eq!(t.e.state(c.id), Ok(State::TimeWait));
    t.events();
    c
}

#[test]
fn expires_after_two_msl() {
    let mut t = Sut::new(cfg());
    let c = time_wait(&mut t);
    // 2 * MSL = 60 s, as on Linux.
    assert_eq!(t.advance_to_timer(), Duration::from_secs(60));
    assert_eq!(t.e.state(c.id), Ok(State::Closed));
    assert_eq!(t.events(), vec![Event::Closed(c.id)]);
    assert_eq!(t.e.lookup(&tuple()), None);
}

#[test]
fn time_wait_fin_retransmit_is_reacked_and_restarts_timer() {
    let mut t = Sut::new(TcpConfig {
        msl: Duration::from_secs(1),
        ..cfg()
    });
    let c = time_wait(&mut t);
    t.advance(Duration::from_millis(1500));
    t.send(TcpRepr {
        seq: c.theirs - 1u32,
        ack: Some(c.ours),
        flags: FIN,
        ..seg()
    });
    assert_eq!(t.recv().ack, Some(c.theirs));
    assert_eq!(t.advance_to_timer(), Duration::from_secs(2));
    assert_eq!(t.e.state(c.id), Ok(State::Closed));
}

#[test]
fn time_wait_rst_does_not_end_it_rfc1337() {
    // RFC 1337 §3 (tcp_rfc1337 on).
    let mut t = Sut::new(cfg());
    let c = time_wait(&mut t);
    t.send(TcpRepr {
        seq: c.theirs,
        flags: RST,
        ..seg()
    });
    assert_eq!(t.e.state(c.id), Ok(State::TimeWait));
    // With tcp_rfc1337 off, an exact RST closes it (RFC 9293).
    let mut t = Sut::new(TcpConfig {
        tcp_rfc1337: false,
        ..cfg()
    });
    let c = time_wait(&mut t);
    t.send(TcpRepr {
        seq: c.theirs,
        flags: RST,
        ..seg()
    });
    assert_eq!(t.e.state(c.id), Ok(State::Closed));
}

#[test]
fn time_wait_syn_with_old_seq_is_acked_not_accepted() {
    // RFC 6191 / Linux: a SYN at or below RCV.NXT without a newer
    // timestamp may be an old duplicate: TIME_WAIT answers with its ACK.
    let mut t = Sut::new(cfg());
    let c = time_wait(&mut t);
    t.send(TcpRepr {
        seq: c.theirs - 100u32,
        flags: SYN,
        ..seg()
    });
    let a = t.recv();
    assert_eq!((a.ctl(), a.seq, a.ack), (0, c.ours, Some(c.theirs)));
    assert_eq!(t.e.state(c.id), Ok(State::TimeWait));
    assert_eq!(t.e.stats().passive_opens, 1);
}

#[test]
fn time_wait_syn_with_higher_seq_opens_new_incarnation() {
    // RFC 6191 without timestamps: a SYN above the old RCV.NXT reopens the
    // 4-tuple; the new ISN is the old SND.NXT + 65537 (Linux tcp_tw_isn).
    let mut t = Sut::new(cfg());
    let c = time_wait(&mut t);
    t.send(TcpRepr {
        seq: c.theirs + 100_000u32,
        flags: SYN,
        ..seg()
    });
    let sa = t.recv();
    assert_eq!(sa.ctl(), SYN);
    assert_eq!(sa.ack, Some(c.theirs + 100_001u32));
    assert_eq!(sa.seq, c.ours + 65_537u32);
    assert!(!t.e.in_time_wait(&tuple()));
    // The old handle sees its connection end.
    assert_eq!(t.e.state(c.id), Ok(State::Closed));
    assert_eq!(t.events(), vec![Event::Closed(c.id)]);
    assert_eq!(t.e.stats().time_wait_syn_reopen, 1);
}

#[test]
fn time_wait_answers_invalid_acks_at_most_once_per_tcp_invalid_ratelimit_and_always_reacks_a_fin() {
    let mut t = Sut::new(cfg());
    let c = time_wait(&mut t);
    // A peer whose new incarnation TIME_WAIT does not know of: its ACKs
    // are out of window here, and ours out of window there.
    let stray = TcpRepr {
        seq: c.theirs + 5_000_000u32,
        ack: Some(c.ours + 7_000_000u32),
        ..seg()
    };
    t.send(stray);
    let a = t.recv();
    assert_eq!((a.ctl(), a.seq, a.ack), (0, c.ours, Some(c.theirs)));
    for _ in 0..50 {
        t.send(stray);
    }
    t.assert_silent();
    assert_eq!(t.e.stats().ack_skipped_time_wait, 50);
    // A retransmitted FIN is always re-ACKed.
    t.send(TcpRepr {
        seq: c.theirs - 1u32,
        ack: Some(c.ours),
        flags: FIN,
        ..seg()
    });
    assert_eq!(t.recv().ack, Some(c.theirs));
    t.advance(Duration::from_millis(500));
    t.send(stray);
    assert_eq!(t.recv().ack, Some(c.theirs));
    assert_eq!(t.e.state(c.id), Ok(State::TimeWait));
}

/// The TSval of the SYN an engine keyed with `secret` sends at `now` when
/// it shares the host's timestamp clock (`key`, its time zero at
/// `zero_us` on the host clock).
fn syn_tsval(secret: u8, key: Option<[u8; 16]>, zero_us: u64, now: crate::time::Instant) -> u32 {
    use std::net::Ipv4Addr;
    let mut e = crate::tcp::TcpEngine::new(cfg(), [secret; 16]);
    if let Some(k) = key {
        e.set_timestamp_clock(k, zero_us);
    }
    let (a, b) = (Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(198, 18, 0, 2));
    e.connect(now, a, 40000, b, 80).unwrap();
    let mut buf = [0u8; 128];
    let t = e.poll_transmit(now, &mut buf).expect("a SYN");
    let syn = TcpRepr::parse(t.src, t.dst, &buf[..t.len]).unwrap();
    syn.options.timestamps.expect("timestamps on").tsval
}

/// A Linux peer holding a 4-tuple in TIME_WAIT accepts a new SYN on it only
/// with a newer timestamp (RFC 6191, PAWS of RFC 7323 §5). A second
/// process (other secrets, a later time zero) must therefore continue the
/// first one's TSvals, not start at a random point of its own.
#[test]
fn tsvals_rise_across_engines_and_processes_that_share_the_host_clock() {
    use crate::time::Instant;
    let key = [9u8; 16];
    // Process 1 started at host time 100 s and sends at its 5 s; process 2
    // started at host time 106 s and sends at its own 0 s (one second later).
    let first = syn_tsval(1, Some(key), 100_000_000, Instant::from_millis(5_000));
    for secret in 2..40 {
        let second = syn_tsval(secret, Some(key), 106_000_000, Instant::from_millis(0));
        assert_eq!(second.wrapping_sub(first), 1_000, "secret {secret}");
    }
    // Without the shared clock, each engine's TSvals start anywhere: some
    // later process would send an older TSval (what the Linux peer's PAWS
    // refused, a second's SYN retransmission per connection).
    let older = (2..40u8)
        .filter(|&s| {
            let second = syn_tsval(s, None, 0, Instant::from_millis(0));
            (second.wrapping_sub(syn_tsval(1, None, 0, Instant::from_millis(5_000))) as i32) < 0
        })
        .count();
    assert!(older > 0, "per-engine offsets should go backwards for some");
}
