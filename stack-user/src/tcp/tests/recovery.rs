//! Reliability: RTO and backoff (RFC 6298), fast retransmit and NewReno
//! (RFC 5681, RFC 6582), SACK loss recovery (RFC 6675).

use std::time::Duration;

use super::util::*;
use crate::tcp::{CcAlgorithm, Event, State, TcpConfig, TcpError};
use crate::wire::tcp::{SackBlocks, TcpOptions, TcpRepr, Timestamps};

#[test]
fn rto_retransmits_with_exponential_backoff_then_times_out() {
    let mut t = Sut::new(TcpConfig {
        tcp_retries2: 3,
        ..cfg()
    });
    let c = t.accept();
    t.e.write(c.id, b"x").unwrap();
    let first = t.recv();
    // The handshake gave an RTT sample of ~0: RTO is the 200 ms minimum,
    // then doubles (RFC 6298 §5.5).
    for expect in [200, 400, 800] {
        assert_eq!(t.advance_to_timer(), Duration::from_millis(expect));
        let again = t.recv();
        assert_eq!(
            (again.seq, again.payload.as_slice()),
            (first.seq, &b"x"[..])
        );
    }
    assert_eq!(t.advance_to_timer(), Duration::from_millis(1600));
    t.assert_silent();
    assert_eq!(t.e.state(c.id), Ok(State::Closed));
    assert_eq!(t.events(), vec![Event::TimedOut(c.id)]);
    assert_eq!(t.e.read(c.id, &mut [0; 4]), Err(TcpError::TimedOut));
    assert_eq!(t.e.stats().rto_timeouts, 3);
}

#[test]
fn ack_after_a_timeout_resets_the_backoff() {
    let mut t = Sut::new(cfg());
    let c = t.accept();
    t.e.write(c.id, b"x").unwrap();
    t.recv();
    t.advance_to_timer();
    t.recv();
    assert_eq!(t.e.tcb(c.id).unwrap().rto(), Duration::from_millis(400));
    t.send(TcpRepr {
        seq: c.theirs,
        ack: Some(c.ours + 1u32),
        ..seg()
    });
    // Karn: the ACK of a retransmitted segment is no RTT sample, so the
    // backed-off RTO stays (RFC 6298 §5.7, Linux) ...
    assert_eq!(t.e.tcb(c.id).unwrap().rto(), Duration::from_millis(400));
    // Timer stopped: nothing outstanding.
    assert_eq!(t.e.poll_timeout(), None);
    // ... until a segment sent once is acknowledged.
    t.e.write(c.id, b"y").unwrap();
    t.recv();
    t.send(TcpRepr {
        seq: c.theirs,
        ack: Some(c.ours + 2u32),
        ..seg()
    });
    assert_eq!(t.e.tcb(c.id).unwrap().rto(), Duration::from_millis(200));
}

#[test]
fn rtt_is_measured_and_sets_the_rto() {
    let mut t = Sut::new(cfg());
    let c = t.accept();
    t.e.write(c.id, b"x").unwrap();
    t.recv();
    t.advance(Duration::from_millis(100));
    t.send(TcpRepr {
        seq: c.theirs,
        ack: Some(c.ours + 1u32),
        ..seg()
    });
    let tcb = t.e.tcb(c.id).unwrap();
    // Second sample of 100 ms after a first of ~0: SRTT = 12.5 ms.
    let srtt = tcb.srtt().unwrap();
    assert!(
        srtt > Duration::from_millis(12) && srtt < Duration::from_millis(13),
        "{srtt:?}"
    );
    // RTTVAR = 25 ms: RTO = 112.5 ms, raised to the 200 ms minimum.
    assert_eq!(tcb.rto(), Duration::from_millis(200));
}

/// Writes `n` full segments on a connection with Nagle off; returns them.
fn flight(t: &mut Sut, c: &Conn, n: usize) -> Vec<Seg> {
    t.e.set_nodelay(c.id, true).unwrap();
    t.e.write(c.id, &vec![1u8; 1460 * n]).unwrap();
    let segs = t.recv_all();
    assert_eq!(segs.len(), n);
    segs
}

#[test]
fn three_dup_acks_trigger_fast_retransmit_and_newreno_recovery() {
    let mut t = Sut::new(TcpConfig {
        tcp_congestion_control: CcAlgorithm::NewReno,
        ..cfg()
    });
    let c = t.accept();
    let segs = flight(&mut t, &c, 5);
    let ack = |t: &mut Sut, n: usize| {
        t.send(TcpRepr {
            seq: c.theirs,
            ack: Some(c.ours + (1460 * n) as u32),
            ..seg()
        })
    };
    ack(&mut t, 1);
    ack(&mut t, 1);
    ack(&mut t, 1);
    t.assert_silent();
    ack(&mut t, 1);
    // Third duplicate: retransmit the segment after the ACK.
    let r = t.recv();
    assert_eq!((r.seq, r.payload.len()), (segs[1].seq, 1460));
    assert_eq!(t.e.stats().fast_retransmits, 1);
    // ssthresh = max(FlightSize / 2, 2 * SMSS) = 2 * 1460.
    assert_eq!(t.e.tcb(c.id).unwrap().cwnd(), 2920);
    // Partial ACK (RFC 6582): the next hole is retransmitted at once.
    ack(&mut t, 2);
    let r2 = t.recv();
    assert_eq!(r2.seq, segs[2].seq);
    // Full ACK: recovery ends, nothing more to resend.
    ack(&mut t, 5);
    t.assert_silent();
    assert_eq!(t.e.stats().fast_retransmits, 1);
    assert_eq!(t.e.stats().rto_timeouts, 0);
}

#[test]
fn sack_recovery_retransmits_only_the_holes() {
    let mut t = Sut::new(cfg());
    let c = t.accept_with(TcpRepr {
        options: TcpOptions {
            sack_permitted: true,
            ..peer_syn().options
        },
        ..peer_syn()
    });
    let segs = flight(&mut t, &c, 6);
    let s = |i: usize| segs[i].seq;
    let end = s(5) + 1460u32;
    // Segments 0 and 2 are lost; 1 and 3..5 arrive.
    let mut sack = SackBlocks::default();
    sack.push(s(3), end);
    sack.push(s(1), s(2));
    t.send(TcpRepr {
        seq: c.theirs,
        ack: Some(s(0)),
        options: TcpOptions {
            sack,
            ..TcpOptions::default()
        },
        ..seg()
    });
    // One ACK SACKing more than 2 * SMSS above SND.UNA is enough
    // (RFC 6675 IsLost); both holes go, nothing SACKed is resent.
    let r = t.recv_all();
    assert_eq!(
        r.iter()
            .map(|x| (x.seq, x.payload.len()))
            .collect::<Vec<_>>(),
        vec![(s(0), 1460), (s(2), 1460)]
    );
    assert_eq!(t.e.stats().fast_retransmits, 1);
    assert_eq!(t.e.stats().sack_retransmits, 1);
    t.send(TcpRepr {
        seq: c.theirs,
        ack: Some(end),
        ..seg()
    });
    t.assert_silent();
    assert_eq!(t.e.poll_timeout(), None);
}

#[test]
fn rto_after_loss_resends_from_the_first_unacknowledged_byte() {
    let mut t = Sut::new(cfg());
    let c = t.accept();
    let segs = flight(&mut t, &c, 3);
    let cwnd_before = t.e.tcb(c.id).unwrap().cwnd();
    t.advance_to_timer();
    // Go-back-N with cwnd = 1 SMSS (RFC 5681 §3.1).
    let r = t.recv_all();
    assert_eq!(
        r.iter().map(|x| x.seq).collect::<Vec<_>>(),
        vec![segs[0].seq]
    );
    assert_eq!(t.e.tcb(c.id).unwrap().cwnd(), 1460);
    assert!(cwnd_before > 1460);
    t.send(TcpRepr {
        seq: c.theirs,
        ack: Some(segs[1].seq),
        ..seg()
    });
    let r = t.recv_all();
    assert_eq!(
        r.iter().map(|x| x.seq).collect::<Vec<_>>(),
        vec![segs[1].seq, segs[2].seq]
    );
}

#[test]
fn data_segments_carrying_sack_blocks_stay_within_the_mss() {
    // RFC 9293 §3.7.1 / RFC 6691: the MSS bounds data plus TCP options
    // beyond the fixed header. While out-of-order data from the peer is
    // held, every segment we send carries SACK blocks (RFC 2018 §4); a
    // full-sized payload on top made 1,528-byte IP packets on a 1,500-byte
    // link, which the peer's interface dropped — each retransmission too,
    // for as long as the hole lasted, so the connection stalled in RTO
    // backoff (seen against Linux on veth).
    let mut t = Sut::new(cfg());
    let c = t.accept_with(TcpRepr {
        options: TcpOptions {
            sack_permitted: true,
            timestamps: Some(Timestamps { tsval: 1, tsecr: 0 }),
            ..peer_syn().options
        },
        ..peer_syn()
    });
    let smss = usize::from(t.e.tcb(c.id).unwrap().smss());
    assert_eq!(smss, 1448, "MSS 1460 less the timestamps option");
    // Three holes in the peer's data: three SACK blocks on what we send.
    for k in [1u32, 3, 5] {
        t.send(TcpRepr {
            seq: c.theirs + k * 100,
            ack: Some(c.ours),
            options: TcpOptions {
                timestamps: Some(Timestamps { tsval: 2, tsecr: 0 }),
                ..TcpOptions::default()
            },
            payload: &FULL[..100],
            ..seg()
        });
        t.recv();
    }
    let data: Vec<u8> = (0..3 * smss).map(|i| i as u8).collect();
    assert_eq!(t.e.write(c.id, &data).unwrap(), data.len());
    let mut got = Vec::new();
    for _ in 0..4 {
        for s in t.recv_all() {
            let options = s.options.wire_len();
            assert_eq!(s.options.sack.len(), 3, "{s:?}");
            // Options beyond timestamps plus payload within the MSS: the
            // IP packet fits the 1,500-byte MTU the MSS 1460 came from.
            assert!(
                s.payload.len() + options - 12 <= smss,
                "payload {} with {options} bytes of options",
                s.payload.len()
            );
            assert!(20 + 20 + options + s.payload.len() <= 1500);
            got.extend_from_slice(&s.payload);
        }
        // The peer acknowledges what came (Nagle holds a short tail until
        // then), keeping its holes open.
        t.send(TcpRepr {
            seq: c.theirs,
            ack: Some(c.ours + got.len() as u32),
            options: TcpOptions {
                timestamps: Some(Timestamps { tsval: 3, tsecr: 0 }),
                ..TcpOptions::default()
            },
            ..seg()
        });
    }
    assert_eq!(got.len(), data.len(), "every byte goes out");
    assert!(got == data, "in order and intact");
}
