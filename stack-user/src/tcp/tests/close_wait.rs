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
