//! LISTEN (RFC 9293 §3.10.7.2) and CLOSED ports (§3.10.7.1).

use std::net::Ipv4Addr;

use super::util::*;
use crate::tcp::{State, TcpConfig, TcpError};
use crate::wire::tcp::{TcpParseError, TcpRepr, ACK, FIN, RST, SYN};

#[test]
fn syn_moves_to_syn_received_and_sends_syn_ack() {
    let mut t = Sut::new(cfg());
    t.e.listen(LOCAL, LPORT, 4).unwrap();
    t.send(peer_syn());
    let sa = t.recv();
    assert_eq!(sa.ctl(), SYN);
    assert_eq!(sa.ack, Some(PEER_ISS + 1u32));
    assert_eq!((sa.src_port, sa.dst_port), (LPORT, RPORT));
    assert_eq!(sa.options.mss, Some(1460));
    // The peer offered none of these, so the SYN,ACK carries none.
    assert_eq!(sa.options.window_scale, None);
    assert!(!sa.options.sack_permitted);
    assert_eq!(sa.options.timestamps, None);
    let id = t.e.lookup(&tuple()).unwrap();
    assert_eq!(t.e.state(id), Ok(State::SynReceived));
    assert_eq!(t.e.stats().passive_opens, 1);
    t.assert_silent();
}

#[test]
fn syn_ack_echoes_offered_options() {
    let mut t = Sut::new(cfg());
    t.e.listen(LOCAL, LPORT, 4).unwrap();
    let mut syn = peer_syn();
    syn.options.window_scale = Some(7);
    syn.options.sack_permitted = true;
    syn.options.timestamps = Some(crate::wire::tcp::Timestamps {
        tsval: 4242,
        tsecr: 0,
    });
    t.send(syn);
    let sa = t.recv();
    // tcp_rmem 131072 needs a shift of 2 to be advertised.
    assert_eq!(sa.options.window_scale, Some(2));
    assert!(sa.options.sack_permitted);
    assert_eq!(sa.options.timestamps.map(|t| t.tsecr), Some(4242));
}

#[test]
fn rst_is_ignored() {
    let mut t = Sut::new(cfg());
    t.e.listen(LOCAL, LPORT, 4).unwrap();
    t.send(TcpRepr {
        flags: RST,
        ..seg()
    });
    t.assert_silent();
    assert_eq!(t.e.connection_count(), 0);
}

#[test]
fn ack_is_answered_with_rst_at_its_ack_number() {
    let mut t = Sut::new(cfg());
    t.e.listen(LOCAL, LPORT, 4).unwrap();
    t.send(TcpRepr {
        ack: Some(SeqNumber(12_345)),
        ..seg()
    });
    let r = t.recv();
    assert_eq!(r.ctl(), RST);
    assert_eq!(r.seq, SeqNumber(12_345));
    assert_eq!(r.ack, None);
    assert_eq!(t.e.connection_count(), 0);
}

#[test]
fn segment_without_syn_or_ack_is_dropped() {
    let mut t = Sut::new(cfg());
    t.e.listen(LOCAL, LPORT, 4).unwrap();
    t.send(TcpRepr {
        flags: FIN,
        payload: b"x",
        ..seg()
    });
    t.assert_silent();
    assert_eq!(t.e.stats().drop_ignored, 1);
}

#[test]
fn accept_queue_full_drops_syn() {
    // Backlog 1: one established connection waits for accept; the next
    // SYN is dropped (Linux tcp_conn_request: sk_acceptq_is_full).
    let mut t = Sut::new(cfg());
    let l = t.e.listen(LOCAL, LPORT, 1).unwrap();
    t.send(peer_syn());
    let sa = t.recv();
    t.send(TcpRepr {
        seq: PEER_ISS + 1u32,
        ack: Some(sa.seq + 1u32),
        flags: ACK,
        ..seg()
    });
    t.send(TcpRepr {
        src_port: 5000,
        ..peer_syn()
    });
    t.assert_silent();
    assert_eq!(t.e.stats().listen_overflows, 1);
    assert_eq!(t.e.stats().listen_drops, 1);
    assert!(t.e.accept(l).is_some());
}

#[test]
fn wildcard_listener_accepts_any_local_address() {
    let mut t = Sut::new(cfg());
    t.e.listen(Ipv4Addr::UNSPECIFIED, LPORT, 4).unwrap();
    t.send(peer_syn());
    assert_eq!(t.recv().ctl(), SYN);
}

#[test]
fn listening_twice_is_addr_in_use() {
    let mut t = Sut::new(cfg());
    t.e.listen(LOCAL, LPORT, 4).unwrap();
    assert_eq!(t.e.listen(LOCAL, LPORT, 4), Err(TcpError::AddrInUse));
}

#[test]
fn unlisten_stops_accepting() {
    let mut t = Sut::new(cfg());
    let l = t.e.listen(LOCAL, LPORT, 4).unwrap();
    t.e.unlisten(l).unwrap();
    t.send(peer_syn());
    assert_eq!(t.recv().ctl(), RST);
}

#[test]
fn closed_port_answers_syn_with_rst_ack() {
    // RFC 9293 §3.10.7.1: <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>.
    let mut t = Sut::new(cfg());
    t.send(TcpRepr {
        payload: b"abc",
        ..peer_syn()
    });
    let r = t.recv();
    assert_eq!(r.ctl(), RST);
    assert_eq!(r.seq, SeqNumber(0));
    assert_eq!(r.ack, Some(PEER_ISS + 4u32));
    assert_eq!(t.e.stats().no_socket, 1);
}

#[test]
fn closed_port_answers_ack_with_rst_at_ack_number() {
    let mut t = Sut::new(cfg());
    t.send(TcpRepr {
        ack: Some(SeqNumber(77)),
        flags: ACK,
        ..seg()
    });
    let r = t.recv();
    assert_eq!((r.ctl(), r.seq, r.ack), (RST, SeqNumber(77), None));
}

#[test]
fn closed_port_ignores_rst() {
    let mut t = Sut::new(cfg());
    t.send(TcpRepr {
        flags: RST,
        ..seg()
    });
    t.assert_silent();
}

#[test]
fn malformed_segments_are_dropped_and_counted_by_reason() {
    let mut t = Sut::new(cfg());
    t.e.listen(LOCAL, LPORT, 4).unwrap();
    let mut good = vec![0u8; peer_syn().len()];
    peer_syn().emit(REMOTE, LOCAL, &mut good).unwrap();
    let mut bad_sum = good.clone();
    bad_sum[4] ^= 1;
    t.e.on_segment(t.now, REMOTE, LOCAL, &bad_sum);
    t.e.on_segment(t.now, REMOTE, LOCAL, &good[..10]);
    // The right bytes from the wrong address fail the pseudo-header sum.
    t.e.on_segment(t.now, Ipv4Addr::new(10, 0, 0, 1), LOCAL, &good);
    t.assert_silent();
    let s = t.e.stats();
    assert_eq!(s.parse_drops[TcpParseError::BadChecksum.index()], 2);
    assert_eq!(s.parse_drops[TcpParseError::Truncated.index()], 1);
    let named: Vec<_> = s.iter().filter(|&(_, v)| v > 0).map(|(n, _)| n).collect();
    assert!(named.contains(&"drop_tcp_bad_checksum") && named.contains(&"drop_tcp_truncated"));
}

/// A SYN as a Linux sender with tx-checksum offload leaves it on a veth
/// (CHECKSUM_PARTIAL): the checksum field holds the folded pseudo-header
/// sum, not the checksum.
fn partial_checksum_syn() -> Vec<u8> {
    let mut buf = vec![0u8; peer_syn().len()];
    peer_syn().emit(REMOTE, LOCAL, &mut buf).unwrap();
    let len = buf.len() as u16;
    let partial = crate::wire::checksum::fold(crate::wire::checksum::pseudo_header(
        REMOTE,
        LOCAL,
        crate::wire::ipv4::PROTO_TCP,
        len,
    ));
    buf[16..18].copy_from_slice(&partial.to_be_bytes());
    buf
}

#[test]
fn a_syn_with_only_the_pseudo_header_checksum_is_dropped_counted_and_warned_about_by_default() {
    let mut t = Sut::new(cfg());
    t.e.listen(LOCAL, LPORT, 4).unwrap();
    let syn = partial_checksum_syn();
    t.e.on_segment(t.now, REMOTE, LOCAL, &syn);
    t.e.on_segment(t.now, REMOTE, LOCAL, &syn);
    t.assert_silent();
    let s = t.e.stats();
    assert_eq!(s.parse_drops[TcpParseError::ChecksumPartial.index()], 2);
    assert_eq!(s.parse_drops[TcpParseError::BadChecksum.index()], 0);
    assert!(s
        .iter()
        .any(|(n, v)| n == "drop_tcp_checksum_partial" && v == 2));
    // One warning that names the cause and the fix, not one per segment.
    let w = t.e.poll_warning().expect("a warning");
    assert!(matches!(w, crate::tcp::Warning::ChecksumPartialDropped { from } if from == REMOTE));
    assert!(w.to_string().contains("tx off"), "{w}");
    assert!(t.e.poll_warning().is_none());
}

#[test]
fn a_syn_with_only_the_pseudo_header_checksum_is_answered_where_the_link_is_trusted() {
    let mut t = Sut::new(TcpConfig {
        accept_checksum_partial: true,
        ..cfg()
    });
    t.e.listen(LOCAL, LPORT, 4).unwrap();
    t.e.on_segment(t.now, REMOTE, LOCAL, &partial_checksum_syn());
    let r = t.recv();
    assert_eq!(r.ctl(), SYN, "a SYN-ACK answers it");
    assert!(r.ack.is_some(), "a SYN-ACK answers it");
    let s = t.e.stats();
    assert_eq!(s.checksum_partial_in, 1);
    assert_eq!(s.parse_drops.iter().sum::<u64>(), 0);
    // A checksum that is neither complete nor the pseudo-header sum is
    // still bad.
    let mut bad = partial_checksum_syn();
    bad[17] ^= 1;
    t.e.on_segment(t.now, REMOTE, LOCAL, &bad);
    t.assert_silent();
    assert_eq!(
        t.e.stats().parse_drops[TcpParseError::BadChecksum.index()],
        1
    );
}

use crate::wire::tcp::SeqNumber;

/// What `xstack serve` counts as segments for no connection at a listener
/// (its `unknown_rate_on`): an ACK that is no cookie, reset (RFC 9293
/// §3.10.7.2), and an RST, ignored.
#[test]
fn a_listener_counts_the_acks_it_resets_and_the_rsts_it_ignores() {
    let mut t = Sut::new(cfg());
    t.e.listen(LOCAL, LPORT, 4).unwrap();
    t.send(TcpRepr {
        ack: Some(SeqNumber(77)),
        flags: ACK,
        ..seg()
    });
    let r = t.recv();
    assert_eq!((r.ctl(), r.seq), (RST, SeqNumber(77)));
    t.send(TcpRepr {
        flags: RST,
        ..seg()
    });
    t.assert_silent();
    let s = t.e.stats();
    assert_eq!((s.listen_ack_reset, s.listen_rst_ignored), (1, 1));
    assert_eq!(s.no_socket, 0);
}
