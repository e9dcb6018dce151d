//! FIN-WAIT-1, FIN-WAIT-2 and CLOSING (RFC 9293 §3.10.7.4): our side
//! closed first, or both at once.

use std::time::Duration;

use super::util::*;
use crate::tcp::{State, TcpConfig, TcpError};
use crate::wire::tcp::{TcpRepr, FIN};

/// An accepted connection whose FIN we have sent.
fn fin_sent(t: &mut Sut) -> Conn {
    let mut c = t.accept();
    t.e.shutdown(c.id).unwrap();
    let fin = t.recv();
    assert_eq!((fin.ctl(), fin.seq), (FIN, c.ours));
    c.ours += 1;
    c
}

mod fin_wait_1 {
    use super::*;

    #[test]
    fn ack_of_our_fin_moves_to_fin_wait_2() {
        let mut t = Sut::new(cfg());
        let c = fin_sent(&mut t);
        assert_eq!(t.e.state(c.id), Ok(State::FinWait1));
        t.send_ack(&c);
        assert_eq!(t.e.state(c.id), Ok(State::FinWait2));
        t.assert_silent();
    }

    #[test]
    fn fin_before_our_fin_is_acked_moves_to_closing_then_time_wait() {
        // Simultaneous close (RFC 9293 §3.6, Figure 13).
        let mut t = Sut::new(cfg());
        let mut c = fin_sent(&mut t);
        // The peer's FIN does not acknowledge ours.
        t.send(TcpRepr {
            seq: c.theirs,
            ack: Some(c.ours - 1u32),
            flags: FIN,
            ..seg()
        });
        c.theirs += 1;
        assert_eq!(t.e.state(c.id), Ok(State::Closing));
        assert_eq!(t.recv().ack, Some(c.theirs));
        t.send_ack(&c);
        assert_eq!(t.e.state(c.id), Ok(State::TimeWait));
    }

    #[test]
    fn fin_acking_our_fin_moves_straight_to_time_wait() {
        let mut t = Sut::new(cfg());
        let mut c = fin_sent(&mut t);
        t.send_fin(&mut c);
        assert_eq!(t.e.state(c.id), Ok(State::TimeWait));
        assert_eq!(t.recv().ack, Some(c.theirs));
    }

    #[test]
    fn unacked_fin_is_retransmitted() {
        let mut t = Sut::new(cfg());
        let c = fin_sent(&mut t);
        t.advance_to_timer();
        let again = t.recv();
        assert_eq!((again.ctl(), again.seq), (FIN, c.ours - 1u32));
    }
}

mod fin_wait_2 {
    use super::*;

    #[test]
    fn fin_moves_to_time_wait() {
        let mut t = Sut::new(cfg());
        let mut c = fin_sent(&mut t);
        t.send_ack(&c);
        t.send_fin(&mut c);
        assert_eq!(t.e.state(c.id), Ok(State::TimeWait));
        assert_eq!(t.recv().ack, Some(c.theirs));
        assert_eq!(t.e.read(c.id, &mut [0; 4]), Ok(0));
    }

    #[test]
    fn peer_keeps_sending_after_our_half_close() {
        let mut t = Sut::new(cfg());
        let mut c = fin_sent(&mut t);
        t.send_ack(&c);
        t.send_data(&mut c, b"still talking");
        t.send_data(&mut c, b", done");
        assert_eq!(t.read_all(c.id), b"still talking, done");
        t.send_fin(&mut c);
        let a = t.recv();
        assert_eq!(a.ack, Some(c.theirs));
        assert_eq!(t.e.read(c.id, &mut [0; 4]), Ok(0));
    }

    #[test]
    fn orphan_gives_up_after_fin_timeout() {
        let mut t = Sut::new(TcpConfig {
            tcp_fin_timeout: Duration::from_secs(5),
            ..cfg()
        });
        let c = fin_sent(&mut t);
        t.send_ack(&c);
        t.e.close(t.now, c.id).unwrap();
        assert_eq!(t.e.connection_count(), 1);
        assert_eq!(t.advance_to_timer(), Duration::from_secs(5));
        assert_eq!(t.e.connection_count(), 0);
        assert_eq!(t.e.state(c.id), Err(TcpError::NotFound));
    }

    #[test]
    fn data_for_an_orphan_is_answered_with_rst() {
        let mut t = Sut::new(cfg());
        let mut c = fin_sent(&mut t);
        t.send_ack(&c);
        t.e.close(t.now, c.id).unwrap();
        t.send_data(&mut c, b"anyone?");
        assert_eq!(t.recv().ctl(), crate::wire::tcp::RST);
        assert_eq!(t.e.connection_count(), 0);
        assert_eq!(t.events(), vec![]);
    }
}
