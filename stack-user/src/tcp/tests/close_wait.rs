//! CLOSE-WAIT and LAST-ACK (RFC 9293 §3.10.7.4): the peer closed first.

use super::util::*;
use crate::tcp::{Event, State, TcpError};
use crate::wire::tcp::{TcpRepr, FIN};

fn peer_closed(t: &mut Sut) -> Conn {
    let mut c = t.accept();
    t.send_fin(&mut c);
    assert_eq!(t.recv().ack, Some(c.theirs));
    assert_eq!(t.e.state(c.id), Ok(State::CloseWait));
    t.events();
    c
}

#[test]
fn we_keep_sending_after_the_peer_half_closed() {
    let mut t = Sut::new(cfg());
    let mut c = peer_closed(&mut t);
    assert_eq!(t.e.write(c.id, b"reply"), Ok(5));
    let s = t.recv();
    assert_eq!((s.seq, s.payload.as_slice()), (c.ours, &b"reply"[..]));
    c.ours += 5;
    t.send_ack(&c);
    assert_eq!(t.e.state(c.id), Ok(State::CloseWait));
}

#[test]
fn shutdown_moves_to_last_ack_and_the_ack_closes() {
    let mut t = Sut::new(cfg());
    let mut c = peer_closed(&mut t);
    t.e.shutdown(c.id).unwrap();
    assert_eq!(t.e.state(c.id), Ok(State::LastAck));
    let fin = t.recv();
    assert_eq!((fin.ctl(), fin.seq), (FIN, c.ours));
    c.ours += 1;
    t.send_ack(&c);
    assert_eq!(t.e.state(c.id), Ok(State::Closed));
    assert_eq!(t.events(), vec![Event::Closed(c.id)]);
    assert_eq!(t.e.lookup(&tuple()), None);
    t.e.close(t.now, c.id).unwrap();
    assert_eq!(t.e.connection_count(), 0);
}

#[test]
fn close_of_an_orphan_in_last_ack_frees_it_when_acked() {
    let mut t = Sut::new(cfg());
    let mut c = peer_closed(&mut t);
    t.e.close(t.now, c.id).unwrap();
    assert_eq!(t.e.state(c.id), Err(TcpError::NotFound));
    assert_eq!(t.recv().ctl(), FIN);
    c.ours += 1;
    assert_eq!(t.e.connection_count(), 1);
    t.send_ack(&c);
    assert_eq!(t.e.connection_count(), 0);
}

#[test]
fn last_ack_fin_is_retransmitted_until_acked() {
    let mut t = Sut::new(cfg());
    let c = peer_closed(&mut t);
    t.e.shutdown(c.id).unwrap();
    let fin = t.recv();
    let d1 = t.advance_to_timer();
    let again = t.recv();
    assert_eq!((again.ctl(), again.seq), (FIN, fin.seq));
    let d2 = t.advance_to_timer();
    assert_eq!(d2, d1 * 2);
    assert_eq!(t.recv().seq, fin.seq);
    t.send(TcpRepr {
        seq: c.theirs,
        ack: Some(fin.seq + 1u32),
        ..seg()
    });
    assert_eq!(t.e.state(c.id), Ok(State::Closed));
}

/// A passive open from the peer's port `port` on listener `l`, then the
/// peer's FIN: the connection is in CLOSE_WAIT.
fn close_wait_from(t: &mut Sut, l: crate::tcp::ListenerId, port: u16) -> crate::tcp::ConnId {
    use crate::wire::tcp::ACK;
    t.send(TcpRepr {
        src_port: port,
        ..peer_syn()
    });
    let sa = t.recv();
    t.send(TcpRepr {
        src_port: port,
        seq: PEER_ISS + 1u32,
        ack: Some(sa.seq + 1u32),
        flags: ACK,
        ..seg()
    });
    let id = t.e.accept(l).expect("accepted");
    t.send(TcpRepr {
        src_port: port,
        seq: PEER_ISS + 1u32,
        ack: Some(sa.seq + 1u32),
        flags: FIN | ACK,
        ..seg()
    });
    t.recv_all();
    assert_eq!(t.e.state(id), Ok(State::CloseWait));
    id
}

#[test]
fn listener_close_wait_count_and_oldest_are_kept_without_a_walk() {
    // Connections enter CLOSE_WAIT a second apart and leave in another
    // order (closed, aborted); the listener's count and oldest age always
    // match the connections themselves.
    let mut t = Sut::new(cfg());
    let l = t.e.listen(LOCAL, LPORT, 64).unwrap();
    let mut ids = Vec::new();
    for i in 0..40u16 {
        ids.push((t.now, close_wait_from(&mut t, l, 2000 + i)));
        t.advance(std::time::Duration::from_secs(1));
    }
    let check = |t: &Sut, ids: &[(crate::time::Instant, crate::tcp::ConnId)]| {
        let live: Vec<_> = ids
            .iter()
            .filter(|(_, id)| t.e.state(*id) == Ok(State::CloseWait))
            .collect();
        let ls = t.e.listener_stats(t.now);
        assert_eq!(ls[0].close_wait, live.len());
        assert_eq!(
            ls[0].oldest_close_wait,
            live.iter().map(|(at, _)| t.now.saturating_since(*at)).max()
        );
    };
    check(&t, &ids);
    // The oldest first, then every third, then the rest from the newest.
    let mut order: Vec<usize> = vec![0];
    order.extend((1..40).filter(|i| i % 3 == 0));
    order.extend((1..40).rev().filter(|i| i % 3 != 0));
    for (n, i) in order.into_iter().enumerate() {
        let id = ids[i].1;
        if n % 2 == 0 {
            t.e.close(t.now, id).unwrap();
        } else {
            t.e.abort(id).unwrap();
        }
        t.recv_all();
        t.advance(std::time::Duration::from_millis(10));
        check(&t, &ids);
    }
    let ls = t.e.listener_stats(t.now);
    assert_eq!((ls[0].close_wait, ls[0].oldest_close_wait), (0, None));
}
