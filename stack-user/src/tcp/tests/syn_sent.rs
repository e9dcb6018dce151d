//! SYN-SENT (RFC 9293 §3.10.7.3) and active OPEN.

use std::time::Duration;

use super::util::*;
use crate::tcp::{Event, State, TcpConfig, TcpError};
use crate::wire::tcp::{TcpRepr, ACK, RST, SYN};

#[test]
fn connect_sends_syn_with_configured_options() {
    let mut t = Sut::new(cfg());
    let id = t.e.connect(t.now, LOCAL, LPORT, REMOTE, RPORT).unwrap();
    assert_eq!(t.e.state(id), Ok(State::SynSent));
    let syn = t.recv();
    assert_eq!(syn.ctl(), SYN);
    assert_eq!(syn.ack, None);
    assert_eq!(syn.options.mss, Some(1460));
    assert_eq!(syn.options.window_scale, Some(2));
    assert!(syn.options.sack_permitted);
    assert_eq!(syn.options.timestamps.map(|t| t.tsecr), Some(0));
    assert_eq!(syn.window, 65_535);
    t.assert_silent();
}

#[test]
fn connect_with_port_zero_picks_distinct_ephemeral_ports() {
    let mut t = Sut::new(cfg());
    let a = t.e.connect(t.now, LOCAL, 0, REMOTE, RPORT).unwrap();
    let b = t.e.connect(t.now, LOCAL, 0, REMOTE, RPORT).unwrap();
    let (pa, pb) = (t.recv().src_port, t.recv().src_port);
    assert_ne!(pa, pb);
    for p in [pa, pb] {
        assert!((32768..=60999).contains(&p));
    }
    assert_ne!(a, b);
    assert_eq!(
        t.e.connect(t.now, LOCAL, pa, REMOTE, RPORT),
        Err(TcpError::AddrInUse)
    );
}

#[test]
fn connect_on_a_sharded_engine_picks_only_ports_whose_tuple_it_owns() {
    use crate::tcp::FourTuple;
    let mut cfg = cfg();
    cfg.ip_local_port_range = (40000, 40999);
    let mut per_worker = [0usize; 3];
    for index in 0..3 {
        let mut t = Sut::new(cfg.clone());
        t.e.set_shard(index, 3);
        // Take every port this worker may use: the range's share of it.
        while t.e.connect(t.now, LOCAL, 0, REMOTE, RPORT).is_ok() {
            let syn = t.recv();
            let tuple = FourTuple {
                local_addr: LOCAL.into(),
                local_port: syn.src_port,
                remote_addr: REMOTE.into(),
                remote_port: RPORT,
            };
            assert_eq!(tuple.shard(3), index, "port {}", syn.src_port);
            per_worker[index as usize] += 1;
        }
    }
    // The three workers split the 1000 ports between them, each port once,
    // and roughly evenly.
    assert_eq!(per_worker.iter().sum::<usize>(), 1000);
    for n in per_worker {
        assert!((250..=420).contains(&n), "{per_worker:?}");
    }
}

#[test]
fn connect_on_an_rss_sharded_engine_picks_only_ports_whose_replies_the_nic_puts_on_its_queue() {
    use crate::tcp::Sharding;
    use crate::wire::rss::{RssTable, VERIFICATION_KEY};
    use std::sync::Arc;
    let mut cfg = cfg();
    cfg.ip_local_port_range = (40000, 40999);
    // What `ethtool -X IF equal 4` writes: entry i is queue i % 4.
    let table =
        Arc::new(RssTable::new(&VERIFICATION_KEY, (0..128).map(|i| i % 4).collect()).unwrap());
    let mut seen = std::collections::HashSet::new();
    let mut per_queue = [0usize; 4];
    for q in 0..4 {
        let mut t = Sut::new(cfg.clone());
        t.e.set_sharding(q, Sharding::Rss(table.clone()));
        while t.e.connect(t.now, LOCAL, 0, REMOTE, RPORT).is_ok() {
            let syn = t.recv();
            // The reply as the NIC sees it: from the server to us.
            assert_eq!(
                table.queue(REMOTE.into(), LOCAL.into(), RPORT, syn.src_port),
                q,
                "port {}",
                syn.src_port
            );
            assert!(seen.insert(syn.src_port), "port {} twice", syn.src_port);
            per_queue[q as usize] += 1;
        }
    }
    // Every port of the range belongs to exactly one queue, and the
    // hash spreads them about evenly.
    assert_eq!(seen.len(), 1000);
    for n in per_queue {
        assert!((180..=320).contains(&n), "{per_queue:?}");
    }
}

#[test]
fn a_queue_the_indirection_table_never_names_gets_no_port_and_connect_fails_at_once() {
    use crate::tcp::Sharding;
    use crate::wire::rss::{RssTable, VERIFICATION_KEY};
    use std::sync::Arc;
    let mut cfg = cfg();
    cfg.ip_local_port_range = (1024, 65535);
    // Everything to queue 0 (`ethtool -X IF equal 1`).
    let table = Arc::new(RssTable::new(&VERIFICATION_KEY, vec![0; 128]).unwrap());
    let mut t = Sut::new(cfg);
    t.e.set_sharding(1, Sharding::Rss(table));
    assert_eq!(
        t.e.connect(t.now, LOCAL, 0, REMOTE, RPORT),
        Err(TcpError::AddrInUse)
    );
    t.assert_silent();
}

#[test]
fn syn_ack_moves_to_established() {
    let mut t = Sut::new(cfg());
    let id = t.e.connect(t.now, LOCAL, LPORT, REMOTE, RPORT).unwrap();
    let syn = t.recv();
    t.send(TcpRepr {
        ack: Some(syn.seq + 1u32),
        ..peer_syn()
    });
    let ack = t.recv();
    assert_eq!(ack.ctl(), 0);
    assert_eq!(ack.seq, syn.seq + 1u32);
    assert_eq!(ack.ack, Some(PEER_ISS + 1u32));
    assert_eq!(t.e.state(id), Ok(State::Established));
    assert_eq!(t.events(), vec![Event::Connected(id)]);
    // The peer offered no SACK/TS/WS: none is used.
    assert_eq!(ack.options.timestamps, None);
}

#[test]
fn simultaneous_open_goes_through_syn_received() {
    // RFC 9293 §3.5, Figure 8.
    let mut t = Sut::new(cfg());
    let id = t.e.connect(t.now, LOCAL, LPORT, REMOTE, RPORT).unwrap();
    let syn = t.recv();
    let iss = syn.seq;
    // The peer's SYN crosses ours.
    t.send(peer_syn());
    assert_eq!(t.e.state(id), Ok(State::SynReceived));
    let sa = t.recv();
    assert_eq!(
        (sa.ctl(), sa.seq, sa.ack),
        (SYN, iss, Some(PEER_ISS + 1u32))
    );
    // The peer's SYN,ACK: its SYN is old news, so it is answered by an ACK.
    t.send(TcpRepr {
        ack: Some(iss + 1u32),
        ..peer_syn()
    });
    let a = t.recv();
    assert_eq!(
        (a.ctl(), a.seq, a.ack),
        (0, iss + 1u32, Some(PEER_ISS + 1u32))
    );
    // The peer's ACK of our SYN,ACK completes the open.
    t.send(TcpRepr {
        seq: PEER_ISS + 1u32,
        ack: Some(iss + 1u32),
        flags: ACK,
        ..seg()
    });
    assert_eq!(t.e.state(id), Ok(State::Established));
    assert_eq!(t.events(), vec![Event::Connected(id)]);
}

#[test]
fn rst_with_acceptable_ack_is_connection_refused() {
    let mut t = Sut::new(cfg());
    let id = t.e.connect(t.now, LOCAL, LPORT, REMOTE, RPORT).unwrap();
    let syn = t.recv();
    t.send(TcpRepr {
        seq: SeqNumber(0),
        ack: Some(syn.seq + 1u32),
        flags: RST,
        ..seg()
    });
    assert_eq!(t.e.state(id), Ok(State::Closed));
    assert_eq!(t.events(), vec![Event::Refused(id)]);
    assert_eq!(t.e.read(id, &mut [0; 8]), Err(TcpError::ConnectionRefused));
    assert_eq!(t.e.write(id, b"x"), Err(TcpError::ConnectionRefused));
    t.e.close(t.now, id).unwrap();
    assert_eq!(t.e.state(id), Err(TcpError::NotFound));
    assert_eq!(t.e.connection_count(), 0);
}

#[test]
fn rst_without_ack_is_ignored() {
    let mut t = Sut::new(cfg());
    let id = t.e.connect(t.now, LOCAL, LPORT, REMOTE, RPORT).unwrap();
    t.recv();
    t.send(TcpRepr {
        flags: RST,
        ..seg()
    });
    assert_eq!(t.e.state(id), Ok(State::SynSent));
    t.assert_silent();
}

#[test]
fn unacceptable_ack_gets_rst() {
    let mut t = Sut::new(cfg());
    let id = t.e.connect(t.now, LOCAL, LPORT, REMOTE, RPORT).unwrap();
    let syn = t.recv();
    t.send(TcpRepr {
        ack: Some(syn.seq + 1000u32),
        ..peer_syn()
    });
    let r = t.recv();
    assert_eq!((r.ctl(), r.seq), (RST, syn.seq + 1000u32));
    assert_eq!(t.e.state(id), Ok(State::SynSent));
}

#[test]
fn close_deletes_the_connection() {
    // SYN-SENT --CLOSE--> CLOSED: "delete the TCB".
    let mut t = Sut::new(cfg());
    let id = t.e.connect(t.now, LOCAL, LPORT, REMOTE, RPORT).unwrap();
    t.recv();
    t.e.close(t.now, id).unwrap();
    assert_eq!(t.e.state(id), Err(TcpError::NotFound));
    assert_eq!(t.e.connection_count(), 0);
    // A late SYN,ACK finds no connection and is reset.
    t.send(TcpRepr {
        ack: Some(SeqNumber(5)),
        ..peer_syn()
    });
    assert_eq!(t.recv().ctl(), RST);
}

#[test]
fn syn_is_retransmitted_with_backoff_then_times_out() {
    let mut t = Sut::new(TcpConfig {
        tcp_syn_retries: 3,
        ..cfg()
    });
    let id = t.e.connect(t.now, LOCAL, LPORT, REMOTE, RPORT).unwrap();
    let first = t.recv();
    // RFC 6298 §2.1: 1 s before any sample, then doubling (§5.5).
    for expect in [1, 2, 4] {
        assert_eq!(t.advance_to_timer(), Duration::from_secs(expect));
        let again = t.recv();
        assert_eq!((again.ctl(), again.seq), (SYN, first.seq));
    }
    assert_eq!(t.advance_to_timer(), Duration::from_secs(8));
    t.assert_silent();
    assert_eq!(t.e.state(id), Ok(State::Closed));
    assert_eq!(t.events(), vec![Event::TimedOut(id)]);
    assert_eq!(t.e.read(id, &mut [0; 4]), Err(TcpError::TimedOut));
}

#[test]
fn syn_retries_default_to_linux_six_after_1_2_4_8_16_32_seconds() {
    // Linux tcp_syn_retries = 6: the SYN and six retransmissions, the
    // connect fails 127 s after the first SYN.
    assert_eq!(TcpConfig::default().tcp_syn_retries, 6);
    let mut t = Sut::new(TcpConfig {
        tcp_syn_retries: TcpConfig::default().tcp_syn_retries,
        ..cfg()
    });
    let id = t.e.connect(t.now, LOCAL, LPORT, REMOTE, RPORT).unwrap();
    let first = t.recv();
    let mut total = Duration::ZERO;
    for expect in [1, 2, 4, 8, 16, 32] {
        let d = t.advance_to_timer();
        assert_eq!(d, Duration::from_secs(expect));
        total += d;
        let again = t.recv();
        assert_eq!((again.ctl(), again.seq), (SYN, first.seq));
    }
    total += t.advance_to_timer();
    assert_eq!(total, Duration::from_secs(127));
    t.assert_silent();
    assert_eq!(t.events(), vec![Event::TimedOut(id)]);
}

#[test]
fn data_written_before_the_handshake_follows_it() {
    let mut t = Sut::new(cfg());
    let id = t.e.connect(t.now, LOCAL, LPORT, REMOTE, RPORT).unwrap();
    assert_eq!(t.e.write(id, b"early"), Ok(5));
    let syn = t.recv();
    assert!(syn.payload.is_empty());
    t.assert_silent();
    t.send(TcpRepr {
        ack: Some(syn.seq + 1u32),
        ..peer_syn()
    });
    let d = t.recv();
    assert_eq!(
        (d.seq, d.payload.as_slice()),
        (syn.seq + 1u32, &b"early"[..])
    );
}

#[test]
fn established_client_exchanges_data_both_ways() {
    let mut t = Sut::new(cfg());
    let mut c = t.connect();
    assert_eq!(t.e.write(c.id, b"ping"), Ok(4));
    let s = t.recv();
    assert_eq!((s.seq, s.payload.as_slice()), (c.ours, &b"ping"[..]));
    c.ours += 4;
    t.send_data(&mut c, b"pong");
    assert_eq!(t.read_all(c.id), b"pong");
    assert_eq!(t.e.stats().active_opens, 1);
}

use crate::wire::tcp::SeqNumber;

#[test]
fn the_demux_table_keeps_every_entry_across_growth() {
    // Far past the table's initial size, over many local addresses: every
    // connection is still found by its 4-tuple, and its slot holds it.
    let mut t = Sut::new(TcpConfig {
        initial_connections: 16,
        ..cfg()
    });
    let n = 3 * 4096 + 100;
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let local = std::net::Ipv4Addr::new(198, 18, 1, (i % 200) as u8 + 1);
        let id = t.e.connect(t.now, local, 0, REMOTE, RPORT).unwrap();
        ids.push(id);
    }
    for id in &ids {
        let tuple = t.e.tcb(*id).unwrap().tuple;
        assert_eq!(t.e.lookup(&tuple), Some(*id));
    }
    assert_eq!(t.e.state_counts().syn_sent, n);
}
