//! The ACK policy for bulk data, counted packet by packet (what the
//! throughput work must not break): at most one ACK per two full-sized
//! in-order segments (RFC 5681 §4.2, RFC 9293 §3.8.6.3; Linux's
//! `__tcp_ack_snd_check`), the delayed-ACK timer for an odd last segment,
//! an immediate ACK for every out-of-order segment and for the segment that
//! fills the hole (RFC 5681 §4.2), and an immediate window update when the
//! application reads a closed window open again (RFC 9293 §3.8.6.2.2).

use std::time::Duration;

use super::util::*;
use crate::tcp::TcpConfig;
use crate::wire::tcp::{SeqNumber, TcpRepr};

const MSS: u32 = 1460;

/// The peer sends full segment number `i` (from 0) of an in-order stream
/// starting at `c.theirs`.
fn full_segment(t: &mut Sut, c: &Conn, i: u32) {
    t.send(TcpRepr {
        seq: c.theirs + i * MSS,
        ack: Some(c.ours),
        payload: &FULL,
        ..seg()
    });
}

/// Sends `n` in-order full segments one at a time, collecting every ACK
/// sent in between (nothing is read by the application, the window is
/// large enough for all of them).
/// Returns (segment index, ACK number, window) per ACK.
fn acks_for_in_order_segments(t: &mut Sut, c: &Conn, n: u32) -> Vec<(u32, Option<SeqNumber>, u16)> {
    let mut acks = vec![];
    for i in 0..n {
        full_segment(t, c, i);
        for a in t.recv_all() {
            assert!(a.payload.is_empty(), "a pure ACK");
            acks.push((i, a.ack, a.window));
        }
    }
    acks
}

#[test]
fn in_order_full_segments_get_one_ack_per_two() {
    let mut t = Sut::new(cfg());
    let c = t.accept();
    let n = 16;
    let acks = acks_for_in_order_segments(&mut t, &c, n);
    // Exactly one ACK after every second segment, acknowledging both.
    let got: Vec<_> = acks.iter().map(|&(i, ack, _)| (i, ack)).collect();
    let expect: Vec<_> = (0..n)
        .filter(|i| i % 2 == 1)
        .map(|i| (i, Some(c.theirs + (i + 1) * MSS)))
        .collect();
    assert_eq!(got, expect);
    assert_eq!(t.read_all(c.id).len(), (n * MSS) as usize);
}

#[test]
fn an_odd_last_in_order_segment_is_acked_by_the_delayed_ack_timer() {
    let mut t = Sut::new(cfg());
    let c = t.accept();
    let n = 7;
    let acks = acks_for_in_order_segments(&mut t, &c, n);
    assert_eq!(acks.len(), 3, "one per two of the first six: {acks:?}");
    assert_eq!(acks.last().unwrap().1, Some(c.theirs + 6 * MSS));
    t.assert_silent();
    // The seventh waits for the delayed-ACK timer (Linux's 40 ms minimum).
    assert_eq!(t.advance_to_timer(), Duration::from_millis(40));
    let a = t.recv();
    assert_eq!(a.ack, Some(c.theirs + n * MSS));
    t.assert_silent();
}

#[test]
fn every_out_of_order_segment_is_acked_at_once_and_so_is_the_one_filling_the_hole() {
    let mut t = Sut::new(cfg());
    let c = t.accept();
    // Segment 0 is lost; 1, 2 and 3 arrive: three duplicate ACKs at once,
    // each still acknowledging only up to the hole.
    for i in 1..=3 {
        full_segment(&mut t, &c, i);
        let acks = t.recv_all();
        assert_eq!(acks.len(), 1, "segment {i}: {acks:?}");
        assert_eq!(acks[0].ack, Some(c.theirs), "segment {i}");
    }
    // Segment 0 fills the hole: one ACK at once, for all four.
    full_segment(&mut t, &c, 0);
    let acks = t.recv_all();
    assert_eq!(acks.len(), 1, "{acks:?}");
    assert_eq!(acks[0].ack, Some(c.theirs + 4 * MSS));
    assert_eq!(t.read_all(c.id).len(), (4 * MSS) as usize);
}

#[test]
fn reading_a_closed_window_sends_a_window_update_at_once() {
    // A receive buffer of four full segments: the peer fills it.
    let mut t = Sut::new(TcpConfig {
        tcp_rmem: 4 * MSS,
        ..cfg()
    });
    let c = t.accept();
    let acks = acks_for_in_order_segments(&mut t, &c, 4);
    assert_eq!(acks.len(), 2, "{acks:?}");
    assert_eq!(acks[1].2, 0, "the last ACK closes the window");
    t.assert_silent();
    // The application reads less than the SWS threshold: no update yet
    // (RFC 9293 §3.8.6.2.2).
    let mut small = [0u8; 100];
    assert_eq!(t.e.read(c.id, &mut small), Ok(100));
    t.assert_silent();
    // It reads the rest: one window update at once, showing the whole
    // buffer free, with no timer in between.
    assert_eq!(t.read_all(c.id).len(), (4 * MSS) as usize - 100);
    let u = t.recv();
    assert_eq!(u.ack, Some(c.theirs + 4 * MSS));
    assert_eq!(u32::from(u.window), 4 * MSS);
    t.assert_silent();
}
