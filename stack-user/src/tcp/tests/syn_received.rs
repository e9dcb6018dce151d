//! SYN-RECEIVED (RFC 9293 §3.10.7.4).

use std::time::Duration;

use super::util::*;
use crate::tcp::{Event, State, TcpConfig};
use crate::wire::tcp::{TcpRepr, ACK, FIN, RST, SYN};

#[test]
fn ack_moves_to_established_and_queues_for_accept() {
    let mut t = Sut::new(cfg());
    let l = t.e.listen(LOCAL, LPORT, 4).unwrap();
    t.send(peer_syn());
    let sa = t.recv();
    assert_eq!(t.e.accept(l), None);
    t.send(TcpRepr {
        seq: PEER_ISS + 1u32,
        ack: Some(sa.seq + 1u32),
        flags: ACK,
        ..seg()
    });
    assert_eq!(t.events(), vec![Event::Incoming(l)]);
    let id = t.e.accept(l).unwrap();
    assert_eq!(t.e.state(id), Ok(State::Established));
    assert_eq!(t.e.stats().established, 1);
    t.assert_silent();
}

#[test]
fn rst_returns_to_listen() {
    let mut t = Sut::new(cfg());
    let l = t.e.listen(LOCAL, LPORT, 1).unwrap();
    t.send(peer_syn());
    t.recv();
    t.send(TcpRepr {
        seq: PEER_ISS + 1u32,
        flags: RST,
        ..seg()
    });
    assert_eq!(t.e.lookup(&tuple()), None);
    assert_eq!(t.e.connection_count(), 0);
    assert_eq!(t.events(), vec![]);
    assert_eq!(t.e.accept(l), None);
    // The listener (backlog 1) takes the next SYN again.
    t.send(peer_syn());
    assert_eq!(t.recv().ctl(), SYN);
}

#[test]
fn retransmitted_syn_gets_the_syn_ack_again() {
    let mut t = Sut::new(cfg());
    t.e.listen(LOCAL, LPORT, 4).unwrap();
    t.send(peer_syn());
    let first = t.recv();
    t.send(peer_syn());
    let again = t.recv();
    assert_eq!(
        (again.ctl(), again.seq, again.ack),
        (SYN, first.seq, first.ack)
    );
    assert_eq!(t.e.connection_count(), 1);
}

#[test]
fn syn_ack_is_retransmitted_then_given_up_silently() {
    let mut t = Sut::new(TcpConfig {
        tcp_synack_retries: 2,
        ..cfg()
    });
    t.e.listen(LOCAL, LPORT, 4).unwrap();
    t.send(peer_syn());
    let first = t.recv();
    for expect in [1, 2] {
        assert_eq!(t.advance_to_timer(), Duration::from_secs(expect));
        assert_eq!(t.recv().seq, first.seq);
    }
    t.advance_to_timer();
    t.assert_silent();
    assert_eq!(t.e.connection_count(), 0);
    assert_eq!(t.events(), vec![]);
    assert_eq!(t.e.stats().abort_on_timeout, 1);
}

#[test]
fn unacceptable_ack_gets_rst() {
    let mut t = Sut::new(cfg());
    t.e.listen(LOCAL, LPORT, 4).unwrap();
    t.send(peer_syn());
    let sa = t.recv();
    t.send(TcpRepr {
        seq: PEER_ISS + 1u32,
        ack: Some(sa.seq + 5u32),
        ..seg()
    });
    let r = t.recv();
    assert_eq!((r.ctl(), r.seq), (RST, sa.seq + 5u32));
}

#[test]
fn fin_in_syn_received_moves_to_close_wait() {
    // The ACK completes the open, then the FIN is processed.
    let mut t = Sut::new(cfg());
    let l = t.e.listen(LOCAL, LPORT, 4).unwrap();
    t.send(peer_syn());
    let sa = t.recv();
    t.send(TcpRepr {
        seq: PEER_ISS + 1u32,
        ack: Some(sa.seq + 1u32),
        flags: FIN,
        ..seg()
    });
    let id = t.e.accept(l).unwrap();
    assert_eq!(t.e.state(id), Ok(State::CloseWait));
    assert_eq!(t.recv().ack, Some(PEER_ISS + 2u32));
}

#[test]
fn close_in_syn_received_sends_fin_once_established() {
    // SYN-RECEIVED --CLOSE--> FIN-WAIT-1 (the FIN waits for our SYN to be
    // acknowledged), reached here through a simultaneous open.
    let mut t = Sut::new(cfg());
    let id = t.e.connect(t.now, LOCAL, LPORT, REMOTE, RPORT).unwrap();
    let iss = t.recv().seq;
    t.send(peer_syn());
    t.recv();
    assert_eq!(t.e.state(id), Ok(State::SynReceived));
    t.e.shutdown(id).unwrap();
    t.assert_silent();
    t.send(TcpRepr {
        seq: PEER_ISS + 1u32,
        ack: Some(iss + 1u32),
        flags: ACK,
        ..seg()
    });
    assert_eq!(t.e.state(id), Ok(State::FinWait1));
    let fin = t.recv();
    assert_eq!((fin.ctl(), fin.seq), (FIN, iss + 1u32));
}
