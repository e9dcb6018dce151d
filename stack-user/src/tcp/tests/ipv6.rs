//! TCP over IPv6 (RFC 8200 §8.1 pseudo-header, RFC 9293): the same engine,
//! the same rules, keyed on 128-bit addresses; plus the sizes of what the
//! demultiplexing tables and control blocks hold per connection.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use super::util::*;
use crate::tcp::engine::demux::{Key4, Key6};
use crate::tcp::shared::TwEntry;
use crate::tcp::tcb::Tcb;
use crate::tcp::{Event, FourTuple, State, TcpError};
use crate::wire::tcp::{TcpRepr, ACK, FIN, RST, SYN};

fn tuple6() -> FourTuple {
    FourTuple {
        local_addr: LOCAL6.into(),
        local_port: LPORT,
        remote_addr: REMOTE6.into(),
        remote_port: RPORT,
    }
}

#[test]
fn demux_entry_and_control_block_sizes() {
    // Before IPv6 (commit 0a67806): FourTuple 12 bytes, a connection-table
    // entry (FourTuple, u32) 16, Tcb 448, TwEntry 52. After: FourTuple 38
    // (IpAddr), Tcb 472 (it holds the FourTuple), the tables' IPv4 entry 16
    // and TwEntry 52 unchanged.
    let four = std::mem::size_of::<FourTuple>();
    let e4 = std::mem::size_of::<(Key4, u32)>();
    let e6 = std::mem::size_of::<(Key6, u32)>();
    let tcb = std::mem::size_of::<Tcb>();
    let tw = std::mem::size_of::<TwEntry>();
    println!(
        "size_of: FourTuple {four}, IPv4 demux entry {e4}, IPv6 demux entry {e6}, Tcb {tcb}, TwEntry {tw} (+32 in a side slab for IPv6)"
    );
    // The IPv4 entry is what it was; IPv6 keys live in their own table.
    assert_eq!(e4, 16);
    assert_eq!(e6, 40);
    assert_eq!(tw, 52);
    assert!(tcb <= 512, "Tcb is {tcb} bytes");
}

#[test]
fn ipv6_handshake_data_and_close_passive() {
    let mut t = Sut::new6(cfg());
    let mut c = t.accept();
    assert_eq!(t.e.tcb(c.id).unwrap().tuple, tuple6());
    t.send_data(&mut c, b"hello over ipv6");
    assert_eq!(t.read_all(c.id), b"hello over ipv6");
    t.e.write(c.id, b"and back").unwrap();
    let d = t.recv();
    assert_eq!(d.payload, b"and back");
    assert_eq!(d.ack, Some(c.theirs));
    c.ours += 8;
    t.send_ack(&c);
    // The peer closes, then we do: LAST_ACK, then CLOSED.
    t.send_fin(&mut c);
    assert_eq!(t.recv().ack, Some(c.theirs));
    assert_eq!(t.e.state(c.id), Ok(State::CloseWait));
    t.e.close(t.now, c.id).unwrap();
    let fin = t.recv();
    assert!(fin.has(FIN));
    c.ours += 1;
    t.send_ack(&c);
    assert_eq!(t.e.state(c.id), Err(TcpError::NotFound));
}

#[test]
fn ipv6_active_open_advertises_mss_of_mtu_minus_60() {
    let mut t = Sut::new6(cfg());
    let id = t.e.connect(t.now, t.local, LPORT, t.remote, RPORT).unwrap();
    let syn = t.recv();
    assert_eq!(syn.ctl(), SYN);
    // cfg().mss is MTU - 40 = 1460: over IPv6, 1440 (as Linux's SYN).
    assert_eq!(syn.options.mss, Some(cfg().mss - 20));
    assert_eq!(syn.options.mss, Some(1440));
    // The peer offers 1460: our segments are clamped to our 1440.
    t.send(TcpRepr {
        seq: PEER_ISS,
        ack: Some(syn.seq + 1u32),
        ..peer_syn()
    });
    t.recv();
    assert_eq!(t.e.state(id), Ok(State::Established));
    t.e.write(id, &FULL).unwrap();
    t.e.write(id, &FULL).unwrap();
    let first = t.recv();
    assert_eq!(first.payload.len(), 1440);
}

#[test]
fn ipv6_syn_to_a_closed_port_gets_rst_ack() {
    let mut t = Sut::new6(cfg());
    t.send(peer_syn());
    let rst = t.recv();
    assert_eq!(rst.ctl(), RST);
    assert_eq!(rst.ack, Some(PEER_ISS + 1u32));
    assert_eq!(t.e.stats().no_socket, 1);
}

#[test]
fn ipv6_segment_with_an_ipv4_pseudo_header_checksum_is_dropped() {
    let mut t = Sut::new6(cfg());
    t.e.listen(t.local, LPORT, 16).unwrap();
    let syn = peer_syn();
    let mut bytes = vec![0u8; syn.len()];
    // Summed as if over IPv4: wrong for the IPv6 packet it arrives in.
    syn.emit(REMOTE, LOCAL, &mut bytes).unwrap();
    t.e.on_segment(t.now, REMOTE6, LOCAL6, &bytes);
    t.assert_silent();
    assert_eq!(t.e.stats().passive_opens, 0);
}

#[test]
fn ipv6_time_wait_is_per_four_tuple_and_expires_after_two_msl() {
    let mut t = Sut::new6(cfg());
    let mut c = t.accept();
    t.e.shutdown(c.id).unwrap();
    t.recv();
    c.ours += 1;
    t.send_ack(&c);
    t.send_fin(&mut c);
    assert_eq!(t.recv().ack, Some(c.theirs));
    assert_eq!(t.e.state(c.id), Ok(State::TimeWait));
    assert!(t.e.in_time_wait(&tuple6()));
    // The same ports over IPv4 are another 4-tuple.
    let v4 = FourTuple {
        local_addr: LOCAL.into(),
        remote_addr: REMOTE.into(),
        ..tuple6()
    };
    assert!(!t.e.in_time_wait(&v4));
    // A retransmitted FIN is ACKed from the entry, from our IPv6 address.
    t.send(TcpRepr {
        seq: c.theirs - 1u32,
        ack: Some(c.ours),
        flags: FIN,
        ..seg()
    });
    assert_eq!(t.recv().ack, Some(c.theirs));
    t.events();
    assert_eq!(t.advance_to_timer(), Duration::from_secs(60));
    assert!(!t.e.in_time_wait(&tuple6()));
    assert_eq!(t.events(), vec![Event::Closed(c.id)]);
}

#[test]
fn ipv6_isn_differs_from_the_ipv4_one_of_the_same_ports() {
    let gen = crate::tcp::isn::IsnGenerator::new([7; 16]);
    let now = crate::time::Instant::from_millis(5);
    let a = gen.isn(now, LOCAL6, LPORT, REMOTE6, RPORT);
    let b = gen.isn(now, LOCAL, LPORT, REMOTE, RPORT);
    let c = gen.isn(
        now,
        LOCAL6,
        LPORT,
        Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 3),
        RPORT,
    );
    assert_ne!(a, b);
    assert_ne!(a, c);
    // Deterministic per 4-tuple.
    assert_eq!(a, gen.isn(now, LOCAL6, LPORT, REMOTE6, RPORT));
}

#[test]
fn dual_stack_listener_accepts_both_families_on_one_queue() {
    let mut t = Sut::new(cfg());
    let l = t.e.listen(LOCAL, LPORT, 16).unwrap();
    t.e.listen_also(l, LOCAL6).unwrap();
    assert_eq!(t.e.listener_on(LOCAL6, LPORT), Some(l));
    assert_eq!(t.e.listen_also(l, LOCAL6), Err(TcpError::AddrInUse));
    // One connection per family, from the same peer port.
    for (local, remote) in [
        (IpAddr::from(LOCAL), IpAddr::from(REMOTE)),
        (LOCAL6.into(), REMOTE6.into()),
    ] {
        t.local = local;
        t.remote = remote;
        t.send(peer_syn());
        let sa = t.recv();
        assert_eq!(sa.ctl(), SYN);
        t.send(TcpRepr {
            seq: PEER_ISS + 1u32,
            ack: Some(sa.seq + 1u32),
            flags: ACK,
            ..seg()
        });
    }
    let a = t.e.accept(l).unwrap();
    let b = t.e.accept(l).unwrap();
    let fam: Vec<bool> = [a, b]
        .iter()
        .map(|id| t.e.tcb(*id).unwrap().tuple.is_ipv6())
        .collect();
    assert_eq!(fam, vec![false, true]);
    assert_eq!(t.e.state_counts().listen, 1);
    // Closing the listener unbinds both addresses.
    t.e.unlisten(l).unwrap();
    assert_eq!(t.e.listener_on(LOCAL6, LPORT), None);
    assert_eq!(t.e.listener_on(LOCAL, LPORT), None);
}

#[test]
fn any_address_listener_on_ipv6_takes_ipv4_too_and_ipv4_any_takes_only_ipv4() {
    let mut t = Sut::new6(cfg());
    let any6 = t.e.listen(Ipv6Addr::UNSPECIFIED, LPORT, 16).unwrap();
    t.send(peer_syn());
    assert_eq!(t.recv().ctl(), SYN);
    t.local = LOCAL.into();
    t.remote = REMOTE.into();
    t.send(peer_syn());
    assert_eq!(t.recv().ctl(), SYN, "IPv4 reaches [::] (IPV6_V6ONLY 0)");
    t.e.unlisten(any6).unwrap();
    t.e.listen(Ipv4Addr::UNSPECIFIED, LPORT + 1, 16).unwrap();
    t.local = LOCAL6.into();
    t.remote = REMOTE6.into();
    t.send(TcpRepr {
        dst_port: LPORT + 1,
        ..peer_syn()
    });
    assert_eq!(t.recv().ctl(), RST, "0.0.0.0 does not take IPv6");
}

#[test]
fn mixed_family_connect_is_refused() {
    let mut t = Sut::new(cfg());
    assert_eq!(
        t.e.connect(t.now, LOCAL, 0, REMOTE6, RPORT),
        Err(TcpError::AddrFamily)
    );
}

#[test]
fn ipv6_syn_cookie_handshake_keeps_no_state_and_rebuilds_the_connection() {
    let mut t = Sut::new6(crate::tcp::TcpConfig {
        tcp_syncookies: 2,
        ..cfg()
    });
    let l = t.e.listen(t.local, LPORT, 16).unwrap();
    let mut syn = peer_syn();
    syn.options.mss = Some(1440);
    syn.options.timestamps = Some(crate::wire::tcp::Timestamps {
        tsval: 5000,
        tsecr: 0,
    });
    syn.options.window_scale = Some(7);
    syn.options.sack_permitted = true;
    t.send(syn);
    let sa = t.recv();
    assert_eq!(sa.ctl(), SYN);
    // Our MSS over IPv6: MTU - 60.
    assert_eq!(sa.options.mss, Some(1440));
    assert_eq!(t.e.stats().syncookies_sent, 1);
    assert_eq!(t.e.connection_count(), 0, "a cookie keeps no state");
    let sts = sa.options.timestamps.unwrap();
    t.send(TcpRepr {
        seq: PEER_ISS + 1u32,
        ack: Some(sa.seq + 1u32),
        flags: ACK,
        window: 1000,
        options: crate::wire::tcp::TcpOptions {
            timestamps: Some(crate::wire::tcp::Timestamps {
                tsval: 5001,
                tsecr: sts.tsval,
            }),
            ..Default::default()
        },
        ..seg()
    });
    let id = t.e.accept(l).expect("cookie connection accepted");
    assert_eq!(t.e.state(id), Ok(State::Established));
    assert_eq!(t.e.tcb(id).unwrap().tuple, tuple6());
    assert_eq!(t.e.tcb(id).unwrap().snd_wnd(), 1000 << 7);
    assert_eq!(t.e.stats().syncookies_recv, 1);
}

#[test]
fn ipv6_cookie_of_another_address_is_refused_and_reset() {
    let mut t = Sut::new6(crate::tcp::TcpConfig {
        tcp_syncookies: 2,
        ..cfg()
    });
    t.e.listen(Ipv6Addr::UNSPECIFIED, LPORT, 16).unwrap();
    t.send(peer_syn());
    let sa = t.recv();
    // The same segment from another source address of the /64: the
    // cookie covers all 128 bits.
    t.remote = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 3).into();
    t.send(TcpRepr {
        seq: PEER_ISS + 1u32,
        ack: Some(sa.seq + 1u32),
        flags: ACK,
        ..seg()
    });
    let r = t.recv();
    assert_eq!(r.ctl(), RST);
    assert_eq!(t.e.stats().syncookies_failed, 1);
    assert_eq!(t.e.connection_count(), 0);
}
