//! ESTABLISHED (RFC 9293 §3.10.7.4): data, acknowledgments, flow control,
//! RFC 5961 protections, PAWS, options in use.

use std::time::Duration;

use super::util::*;
use crate::tcp::{Event, State, TcpConfig, TcpError};
use crate::wire::tcp::{TcpOptions, TcpRepr, Timestamps, FIN, RST, SYN};

#[test]
fn data_is_delivered_and_the_ack_is_delayed() {
    let mut t = Sut::new(cfg());
    let mut c = t.accept();
    t.send_data(&mut c, b"hello");
    assert_eq!(t.events(), vec![Event::Readable(c.id)]);
    t.assert_silent();
    assert_eq!(t.read_all(c.id), b"hello");
    t.assert_silent();
    // RFC 9293 §3.8.6.3 / Linux: the ACK goes out after 40 ms.
    assert_eq!(t.advance_to_timer(), Duration::from_millis(40));
    let a = t.recv();
    assert_eq!((a.seq, a.ack), (c.ours, Some(c.theirs)));
}

#[test]
fn every_second_full_segment_is_acked_at_once() {
    let mut t = Sut::new(cfg());
    let c = t.accept();
    t.send(TcpRepr {
        seq: c.theirs,
        ack: Some(c.ours),
        payload: &FULL,
        ..seg()
    });
    t.assert_silent();
    t.send(TcpRepr {
        seq: c.theirs + 1460u32,
        ack: Some(c.ours),
        payload: &FULL,
        ..seg()
    });
    assert_eq!(t.recv().ack, Some(c.theirs + 2920u32));
}

#[test]
fn out_of_order_data_is_acked_at_once_with_sack_and_reassembled() {
    let mut t = Sut::new(cfg());
    let c = t.accept_with(TcpRepr {
        options: TcpOptions {
            sack_permitted: true,
            ..peer_syn().options
        },
        ..peer_syn()
    });
    t.send(TcpRepr {
        seq: c.theirs + 5u32,
        ack: Some(c.ours),
        payload: b"56789",
        ..seg()
    });
    let dup = t.recv();
    assert_eq!(dup.ack, Some(c.theirs));
    assert_eq!(
        dup.options.sack.as_slice(),
        &[(c.theirs + 5u32, c.theirs + 10u32)]
    );
    assert_eq!(t.e.read(c.id, &mut [0; 8]), Err(TcpError::WouldBlock));
    t.send(TcpRepr {
        seq: c.theirs,
        ack: Some(c.ours),
        payload: b"01234",
        ..seg()
    });
    let a = t.recv();
    assert_eq!(a.ack, Some(c.theirs + 10u32));
    assert!(a.options.sack.is_empty());
    assert_eq!(t.read_all(c.id), b"0123456789");
}

#[test]
fn exact_rst_resets_the_connection() {
    let mut t = Sut::new(cfg());
    let c = t.accept();
    t.send(TcpRepr {
        seq: c.theirs,
        flags: RST,
        ..seg()
    });
    assert_eq!(t.e.state(c.id), Ok(State::Closed));
    assert_eq!(t.events(), vec![Event::Reset(c.id)]);
    assert_eq!(t.e.read(c.id, &mut [0; 4]), Err(TcpError::ConnectionReset));
    assert_eq!(t.e.write(c.id, b"x"), Err(TcpError::BrokenPipe));
    t.assert_silent();
    assert_eq!(t.e.lookup(&tuple()), None);
}

#[test]
fn data_received_before_rst_can_still_be_read() {
    let mut t = Sut::new(cfg());
    let mut c = t.accept();
    t.send_data(&mut c, b"last words");
    t.send(TcpRepr {
        seq: c.theirs,
        flags: RST,
        ..seg()
    });
    let mut b = [0u8; 32];
    assert_eq!(t.e.read(c.id, &mut b), Ok(10));
    assert_eq!(t.e.read(c.id, &mut b), Err(TcpError::ConnectionReset));
}

#[test]
fn in_window_rst_gets_a_challenge_ack() {
    // RFC 5961 §3.2.
    let mut t = Sut::new(cfg());
    let c = t.accept();
    t.send(TcpRepr {
        seq: c.theirs + 100u32,
        flags: RST,
        ..seg()
    });
    let a = t.recv();
    assert_eq!((a.ctl(), a.seq, a.ack), (0, c.ours, Some(c.theirs)));
    assert_eq!(t.e.state(c.id), Ok(State::Established));
    assert_eq!(t.e.stats().challenge_acks, 1);
}

#[test]
fn out_of_window_rst_is_dropped_silently() {
    let mut t = Sut::new(cfg());
    let c = t.accept();
    t.send(TcpRepr {
        seq: c.theirs + 1_000_000u32,
        flags: RST,
        ..seg()
    });
    t.assert_silent();
    assert_eq!(t.e.state(c.id), Ok(State::Established));
}

#[test]
fn syn_gets_a_challenge_ack() {
    // RFC 5961 §4.2: a SYN in a synchronized state, in window or not.
    let mut t = Sut::new(cfg());
    let c = t.accept();
    for seq in [c.theirs + 10u32, c.theirs - 1000u32] {
        t.send(TcpRepr {
            seq,
            flags: SYN,
            ..seg()
        });
        let a = t.recv();
        assert_eq!((a.ctl(), a.seq, a.ack), (0, c.ours, Some(c.theirs)));
    }
    assert_eq!(t.e.state(c.id), Ok(State::Established));
}

#[test]
fn ack_of_unsent_data_is_dropped_with_an_ack() {
    // RFC 5961 §5.2 / RFC 9293: SEG.ACK > SND.NXT.
    let mut t = Sut::new(cfg());
    let c = t.accept();
    t.send(TcpRepr {
        seq: c.theirs,
        ack: Some(c.ours + 1000u32),
        payload: b"abc",
        ..seg()
    });
    let a = t.recv();
    assert_eq!(a.ack, Some(c.theirs));
    assert_eq!(t.e.read(c.id, &mut [0; 8]), Err(TcpError::WouldBlock));
    assert_eq!(t.e.stats().drop_ack_unsent, 1);
}

#[test]
fn too_old_ack_is_dropped_with_an_ack() {
    // RFC 5961 §5.2: SEG.ACK < SND.UNA - MAX.SND.WND.
    let mut t = Sut::new(cfg());
    let c = t.accept();
    t.send(TcpRepr {
        seq: c.theirs,
        ack: Some(c.ours - 100_000u32),
        payload: b"abc",
        ..seg()
    });
    assert_eq!(t.recv().ack, Some(c.theirs));
    assert_eq!(t.e.recv_queue(c.id), Ok(0));
}

#[test]
fn old_duplicate_segment_is_acked_and_dropped() {
    let mut t = Sut::new(cfg());
    let mut c = t.accept();
    t.send_data(&mut c, b"abc");
    t.send(TcpRepr {
        seq: c.theirs - 3u32,
        ack: Some(c.ours),
        payload: b"abc",
        ..seg()
    });
    assert_eq!(t.recv().ack, Some(c.theirs));
    assert_eq!(t.read_all(c.id), b"abc");
    assert_eq!(t.e.stats().dup_segments, 1);
}

#[test]
fn paws_rejects_a_segment_with_an_old_timestamp() {
    // RFC 7323 §5.3.
    let mut t = Sut::new(cfg());
    let ts = |tsval| TcpOptions {
        timestamps: Some(Timestamps { tsval, tsecr: 0 }),
        ..TcpOptions::default()
    };
    let c = t.accept_with(TcpRepr {
        options: TcpOptions {
            timestamps: Some(Timestamps {
                tsval: 1000,
                tsecr: 0,
            }),
            ..peer_syn().options
        },
        ..peer_syn()
    });
    t.send(TcpRepr {
        seq: c.theirs,
        ack: Some(c.ours),
        options: ts(2000),
        payload: b"new",
        ..seg()
    });
    t.send(TcpRepr {
        seq: c.theirs + 3u32,
        ack: Some(c.ours),
        options: ts(1500),
        payload: b"old",
        ..seg()
    });
    let a = t.recv();
    assert_eq!(a.ack, Some(c.theirs + 3u32));
    // The ACK echoes TS.Recent, the newest valid timestamp.
    assert_eq!(a.options.timestamps.map(|t| t.tsecr), Some(2000));
    assert_eq!(t.read_all(c.id), b"new");
    assert_eq!(t.e.stats().drop_paws, 1);
}

#[test]
fn fin_moves_to_close_wait_and_reads_end_of_stream() {
    let mut t = Sut::new(cfg());
    let mut c = t.accept();
    t.send_data(&mut c, b"bye");
    t.send_fin(&mut c);
    let a = t.recv();
    assert_eq!(a.ack, Some(c.theirs));
    assert_eq!(t.e.state(c.id), Ok(State::CloseWait));
    assert!(t.events().contains(&Event::PeerClosed(c.id)));
    let mut b = [0u8; 8];
    assert_eq!(t.e.read(c.id, &mut b), Ok(3));
    assert_eq!(t.e.read(c.id, &mut b), Ok(0));
}

#[test]
fn out_of_order_fin_waits_for_the_data_before_it() {
    let mut t = Sut::new(cfg());
    let c = t.accept();
    t.send(TcpRepr {
        seq: c.theirs + 3u32,
        ack: Some(c.ours),
        flags: FIN,
        ..seg()
    });
    assert_eq!(t.recv().ack, Some(c.theirs));
    assert_eq!(t.e.state(c.id), Ok(State::Established));
    t.send(TcpRepr {
        seq: c.theirs,
        ack: Some(c.ours),
        payload: b"abc",
        ..seg()
    });
    assert_eq!(t.e.state(c.id), Ok(State::CloseWait));
    assert_eq!(t.recv().ack, Some(c.theirs + 4u32));
}

#[test]
fn shutdown_sends_fin_and_moves_to_fin_wait_1() {
    let mut t = Sut::new(cfg());
    let c = t.accept();
    t.e.write(c.id, b"data").unwrap();
    t.e.shutdown(c.id).unwrap();
    assert_eq!(t.e.state(c.id), Ok(State::FinWait1));
    let s = t.recv();
    assert_eq!(
        (s.ctl(), s.seq, s.payload.as_slice()),
        (FIN, c.ours, &b"data"[..])
    );
    assert_eq!(t.e.write(c.id, b"more"), Err(TcpError::BrokenPipe));
}

#[test]
fn abort_sends_rst_and_frees_the_connection() {
    let mut t = Sut::new(cfg());
    let c = t.accept();
    t.e.abort(c.id).unwrap();
    let r = t.recv();
    assert_eq!((r.ctl(), r.seq), (RST, c.ours));
    assert_eq!(t.e.state(c.id), Err(TcpError::NotFound));
    assert_eq!(t.e.connection_count(), 0);
}

#[test]
fn close_with_unread_data_resets() {
    // RFC 2525 §2.17.
    let mut t = Sut::new(cfg());
    let mut c = t.accept();
    t.send_data(&mut c, b"unread");
    t.e.close(t.now, c.id).unwrap();
    assert_eq!(t.recv().ctl(), RST);
    assert_eq!(t.e.connection_count(), 0);
}

#[test]
fn nagle_holds_a_small_segment_while_data_is_unacknowledged() {
    let mut t = Sut::new(cfg());
    let c = t.accept();
    t.e.write(c.id, b"a").unwrap();
    assert_eq!(t.recv().payload, b"a");
    t.e.write(c.id, b"b").unwrap();
    t.e.write(c.id, b"c").unwrap();
    t.assert_silent();
    t.send(TcpRepr {
        seq: c.theirs,
        ack: Some(c.ours + 1u32),
        ..seg()
    });
    let s = t.recv();
    assert_eq!((s.seq, s.payload.as_slice()), (c.ours + 1u32, &b"bc"[..]));
}

#[test]
fn nodelay_sends_small_segments_at_once() {
    let mut t = Sut::new(cfg());
    let c = t.accept();
    t.e.set_nodelay(c.id, true).unwrap();
    t.e.write(c.id, b"a").unwrap();
    assert_eq!(t.recv().payload, b"a");
    t.e.write(c.id, b"b").unwrap();
    assert_eq!(t.recv().payload, b"b");
}

#[test]
fn writes_are_cut_into_mss_sized_segments() {
    let mut t = Sut::new(cfg());
    let c = t.accept_with(TcpRepr {
        options: TcpOptions {
            mss: Some(500),
            ..TcpOptions::default()
        },
        ..peer_syn()
    });
    t.e.write(c.id, &[7u8; 1200]).unwrap();
    let segs = t.recv_all();
    // Two full segments; the 200-byte tail waits for an ACK (Nagle).
    assert_eq!(
        segs.iter().map(|s| s.payload.len()).collect::<Vec<_>>(),
        vec![500, 500]
    );
    t.send(TcpRepr {
        seq: c.theirs,
        ack: Some(c.ours + 1000u32),
        ..seg()
    });
    assert_eq!(t.recv().payload.len(), 200);
}

#[test]
fn zero_window_is_probed_with_backoff_until_it_opens() {
    let mut t = Sut::new(cfg());
    let c = t.accept();
    t.send(TcpRepr {
        seq: c.theirs,
        ack: Some(c.ours),
        window: 0,
        ..seg()
    });
    t.e.write(c.id, b"blocked").unwrap();
    t.assert_silent();
    // The persist timer (RTO, 200 ms minimum after the handshake sample)
    // sends a probe: an old sequence number, no data (as Linux).
    assert_eq!(t.advance_to_timer(), Duration::from_millis(200));
    let p = t.recv();
    assert_eq!((p.seq, p.payload.len()), (c.ours - 1u32, 0));
    // Still zero: the probe is answered, the next one backs off.
    t.send(TcpRepr {
        seq: c.theirs,
        ack: Some(c.ours),
        window: 0,
        ..seg()
    });
    assert_eq!(t.advance_to_timer(), Duration::from_millis(400));
    assert_eq!(t.recv().seq, c.ours - 1u32);
    // A peer that keeps answering is never timed out.
    for _ in 0..20 {
        t.send(TcpRepr {
            seq: c.theirs,
            ack: Some(c.ours),
            window: 0,
            ..seg()
        });
        t.advance_to_timer();
        t.recv();
    }
    assert_eq!(t.e.state(c.id), Ok(State::Established));
    // The window opens: everything goes.
    t.send(TcpRepr {
        seq: c.theirs,
        ack: Some(c.ours),
        window: 1000,
        ..seg()
    });
    let s = t.recv();
    assert_eq!((s.seq, s.payload.as_slice()), (c.ours, &b"blocked"[..]));
    assert!(t.e.stats().persist_probes >= 2);
}

#[test]
fn receive_window_closes_and_a_window_update_reopens_it() {
    let mut t = Sut::new(TcpConfig {
        tcp_rmem: 2920,
        ..cfg()
    });
    let c = t.accept();
    t.send(TcpRepr {
        seq: c.theirs,
        ack: Some(c.ours),
        payload: &FULL,
        ..seg()
    });
    t.send(TcpRepr {
        seq: c.theirs + 1460u32,
        ack: Some(c.ours),
        payload: &FULL,
        ..seg()
    });
    let a = t.recv();
    assert_eq!((a.ack, a.window), (Some(c.theirs + 2920u32), 0));
    // Beyond the window: dropped, ACKed.
    t.send(TcpRepr {
        seq: c.theirs + 2920u32,
        ack: Some(c.ours),
        payload: b"x",
        ..seg()
    });
    assert_eq!(t.recv().window, 0);
    assert_eq!(t.read_all(c.id).len(), 2920);
    let u = t.recv();
    assert_eq!((u.ack, u.window), (Some(c.theirs + 2920u32), 2920));
}

#[test]
fn window_scaling_is_negotiated_and_applied() {
    // RFC 7323 §2.
    let mut t = Sut::new(cfg());
    let c = t.accept_with(TcpRepr {
        options: TcpOptions {
            window_scale: Some(3),
            ..peer_syn().options
        },
        ..peer_syn()
    });
    t.send(TcpRepr {
        seq: c.theirs,
        ack: Some(c.ours),
        window: 100,
        ..seg()
    });
    assert_eq!(t.e.tcb(c.id).unwrap().snd_wnd(), 800);
    // Our windows are scaled by 2: 131072 bytes free -> 32768.
    t.send(TcpRepr {
        seq: c.theirs,
        ack: Some(c.ours),
        window: 100,
        flags: FIN,
        ..seg()
    });
    assert_eq!(t.recv().window, 32_768);
}

#[test]
fn mss_is_clamped_to_ours_and_to_the_minimum() {
    for (peer, expect) in [(Some(9000), 1460), (Some(10), 48), (None, 536)] {
        let mut t = Sut::new(cfg());
        let c = t.accept_with(TcpRepr {
            options: TcpOptions {
                mss: peer,
                ..TcpOptions::default()
            },
            ..peer_syn()
        });
        assert_eq!(t.e.tcb(c.id).unwrap().smss(), expect, "peer MSS {peer:?}");
    }
    // Timestamps take 12 bytes of every segment.
    let mut t = Sut::new(cfg());
    let c = t.accept_with(TcpRepr {
        options: TcpOptions {
            timestamps: Some(Timestamps { tsval: 1, tsecr: 0 }),
            ..peer_syn().options
        },
        ..peer_syn()
    });
    assert_eq!(t.e.tcb(c.id).unwrap().smss(), 1448);
}

#[test]
fn data_segment_carries_psh_and_ack() {
    let mut t = Sut::new(cfg());
    let c = t.accept();
    t.e.write(c.id, b"x").unwrap();
    let s = t.recv();
    assert!(s.has(crate::wire::tcp::PSH));
    assert_eq!(s.ack, Some(c.theirs));
}

#[test]
fn out_of_window_acks_are_answered_at_most_once_per_tcp_invalid_ratelimit() {
    // An end that lost track of the sequence space (here: an ACK far ahead
    // of RCV.NXT) answers each of our ACKs with its own; answering every
    // one of them made an ACK loop between two engines.
    let mut t = Sut::new(cfg());
    let c = t.accept();
    let stray = TcpRepr {
        seq: c.theirs + 1_000_000u32,
        ack: Some(c.ours),
        ..seg()
    };
    t.send(stray);
    let a = t.recv();
    assert_eq!((a.ctl(), a.seq, a.ack), (0, c.ours, Some(c.theirs)));
    for _ in 0..100 {
        t.send(stray);
    }
    t.assert_silent();
    assert_eq!(t.e.stats().ack_skipped_seq, 100);
    assert_eq!(t.e.stats().drop_out_of_window, 101);
    // Data is always answered: it is no part of an ACK loop.
    t.send(TcpRepr {
        payload: b"late",
        ..stray
    });
    assert_eq!(t.recv().ack, Some(c.theirs));
    // After tcp_invalid_ratelimit (500 ms) a bare ACK is answered again.
    t.advance(Duration::from_millis(499));
    t.send(stray);
    t.assert_silent();
    t.advance(Duration::from_millis(1));
    t.send(stray);
    assert_eq!(t.recv().ack, Some(c.theirs));
    assert_eq!(t.e.state(c.id), Ok(State::Established));
}

#[test]
fn an_idle_connection_gives_its_buffers_back() {
    // A request and its response, then idle: nothing unacknowledged,
    // nothing unread, so neither buffer holds heap memory (millions of
    // idle connections each pinning a few hundred bytes add up).
    let mut t = Sut::new(cfg());
    let mut c = t.connect();
    let heap = |t: &Sut, id| t.e.tcb(id).unwrap().buffer_heap_bytes();
    assert_eq!(heap(&t, c.id), 0);
    assert_eq!(t.e.write(c.id, b"GET / HTTP/1.1\r\n\r\n"), Ok(18));
    t.recv();
    assert!(heap(&t, c.id) >= 18, "unacknowledged bytes are held");
    c.ours += 18;
    t.send_data(&mut c, b"HTTP/1.1 200 OK\r\n\r\n");
    assert!(heap(&t, c.id) >= 19, "unread bytes are held");
    assert_eq!(t.read_all(c.id).len(), 19);
    assert_eq!(heap(&t, c.id), 0);
}

#[test]
fn a_pure_ack_at_the_right_window_edge_is_accepted_while_a_hole_is_open() {
    // A peer limited by our window sends up to its right edge; when the
    // first of those segments is lost, its SND.NXT sits exactly at
    // RCV.NXT + RCV.WND. Each pure ACK it sends from there (acknowledging
    // our data, updating its window) has SEG.SEQ = RCV.NXT + RCV.WND,
    // which the strict RFC 9293 §3.10.7.4 test ("RCV.NXT =< SEG.SEQ <
    // RCV.NXT+RCV.WND") refuses. Linux's `tcp_sequence` accepts it (the
    // right edge is inclusive); refusing it threw away the peer's ACKs of
    // our data and window updates until its retransmission filled the hole,
    // which stalled both directions for seconds behind RTO backoff.
    static DATA: [u8; 4096] = [b'y'; 4096];
    let mut t = Sut::new(TcpConfig {
        tcp_rmem: 4096,
        ..cfg()
    });
    let c = t.accept();
    t.e.write(c.id, &[1u8; 100]).unwrap();
    let d = t.recv();
    assert_eq!(d.payload.len(), 100);
    let wnd = u32::from(d.window);
    assert!(wnd > 1000 && wnd <= 4096, "window {wnd}");
    // The peer fills our window; its first 1000 bytes are lost.
    t.send(TcpRepr {
        seq: c.theirs + 1000u32,
        ack: Some(c.ours),
        payload: &DATA[..(wnd - 1000) as usize],
        ..seg()
    });
    assert_eq!(t.recv().ack, Some(c.theirs), "out of order: ACK at once");
    // Its pure ACK of our 100 bytes, from its SND.NXT = our right edge.
    t.send(TcpRepr {
        seq: c.theirs + wnd,
        ack: Some(c.ours + 100u32),
        ..seg()
    });
    let info = t.e.tcb(c.id).unwrap().info(t.now);
    assert_eq!((info.unacked, info.bytes_acked), (0, 100), "{info:?}");
    assert_eq!(t.e.stats().drop_out_of_window, 0);
    // One byte further is past the window and still refused.
    t.e.write(c.id, &[2u8; 10]).unwrap();
    t.recv();
    t.send(TcpRepr {
        seq: c.theirs + wnd + 1u32,
        ack: Some(c.ours + 110u32),
        ..seg()
    });
    assert_eq!(t.e.tcb(c.id).unwrap().info(t.now).unacked, 10);
    assert_eq!(t.e.stats().drop_out_of_window, 1);
}
