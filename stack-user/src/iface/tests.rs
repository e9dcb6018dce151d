//! The frame layer in memory: ARP, ICMP, TCP entry, malformed frames.

use super::*;
use crate::wire::{
    arp::{self, ArpRepr},
    build::{Endpoints, TcpSegment},
    checksum,
    icmp::{self, IcmpRepr},
    tcp::SYN,
};

pub(super) const OUR_MAC: Mac = Mac([0x02, 0, 0, 0, 0, 0x02]);
pub(super) const PEER_MAC: Mac = Mac([0x02, 0, 0, 0, 0, 0x01]);
pub(super) const OUR_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub(super) const PEER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// Our IPv6 address: the one in the frames captured from Linux
/// (`wire::captured`), so that they can be fed in as they are.
pub(super) const OUR_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2);
pub(super) const PEER_IP6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 1);
/// Frames from the peer to us.
const PEER: Endpoints = Endpoints {
    src_mac: PEER_MAC,
    dst_mac: OUR_MAC,
    src_ip: PEER_IP,
    dst_ip: OUR_IP,
};

pub(super) fn engine() -> Interface {
    engine_with_mac(OUR_MAC)
}

pub(super) fn engine_with_mac(mac: Mac) -> Interface {
    Interface::new(engine_config(mac))
}

pub(super) fn engine_config(mac: Mac) -> IfaceConfig {
    IfaceConfig {
        mac,
        addrs: vec![OUR_IP],
        addrs6: vec![OUR_IP6],
        ports: vec![8080],
        app: App::Echo,
        response_bytes: 0,
        echo_body: false,
        max_body: crate::apps::http::DEFAULT_MAX_BODY,
        tcp: TcpConfig::default(),
        backlog: 128,
        secret: [7; 16],
        mtu: 1500,
    }
}

fn arp_request(target: Ipv4Addr) -> Vec<u8> {
    Endpoints {
        dst_mac: Mac::BROADCAST,
        ..PEER
    }
    .arp_request(target)
}

fn echo_request(data: &[u8]) -> Vec<u8> {
    PEER.icmp(&IcmpRepr {
        kind: icmp::ECHO_REQUEST,
        code: 0,
        rest: [0x12, 0x34, 0, 1],
        data,
    })
}

fn tcp_syn(dport: u16) -> Vec<u8> {
    PEER.tcp(&TcpSegment {
        src_port: 40000,
        dst_port: dport,
        seq: 1000,
        flags: SYN,
        window: 65535,
        ..TcpSegment::default()
    })
}

#[test]
fn arp_request_for_our_address_gets_a_reply() {
    let mut e = engine();
    let mut tx = VecSink::default();
    e.handle_frame(Instant(0), &arp_request(OUR_IP), &mut tx);
    assert_eq!(tx.frames.len(), 1);
    let (eth, payload) = EthernetRepr::parse(&tx.frames[0]).unwrap();
    assert_eq!(eth.dst, PEER_MAC);
    assert_eq!(eth.src, OUR_MAC);
    assert_eq!(tx.frames[0].len(), 60);
    let reply = ArpRepr::parse(payload).unwrap();
    assert_eq!(reply.op, arp::OP_REPLY);
    assert_eq!((reply.sha, reply.spa), (OUR_MAC, OUR_IP));
    assert_eq!((reply.tha, reply.tpa), (PEER_MAC, PEER_IP));
    assert_eq!(e.stats().arp_replies, 1);
}

#[test]
fn an_arp_copy_from_another_queue_teaches_the_neighbour_without_a_reply() {
    let mut e = engine();
    let mut tx = VecSink::default();
    e.handle_handoff(Instant(0), &[], &arp_request(OUR_IP), true, &mut tx);
    assert!(
        tx.frames.is_empty(),
        "the receiving queue answers, not this one"
    );
    assert_eq!(e.stats().arp_replies, 0);
    // The neighbour is known: a SYN leaves at once, with no ARP request.
    e.connect(Instant(0), OUR_IP, 0, PEER_IP, 80).unwrap();
    e.poll(Instant(0), &mut tx);
    assert_eq!(tx.frames.len(), 1);
    let (eth, _) = EthernetRepr::parse(&tx.frames[0]).unwrap();
    assert_eq!(
        (eth.dst, eth.ethertype),
        (PEER_MAC, ethernet::ETHERTYPE_IPV4)
    );
    assert_eq!(e.stats().arp_requests_out, 0);
    // Not marked learn-only, the same copy is answered like any request.
    e.handle_handoff(Instant(0), &[], &arp_request(OUR_IP), false, &mut tx);
    assert_eq!(e.stats().arp_replies, 1);
}

#[test]
fn arp_request_for_another_address_is_ignored() {
    let mut e = engine();
    let mut tx = VecSink::default();
    e.handle_frame(
        Instant(0),
        &arp_request(Ipv4Addr::new(198, 18, 0, 9)),
        &mut tx,
    );
    assert!(tx.frames.is_empty());
    assert_eq!(e.stats().arp_ignored, 1);
}

#[test]
fn icmp_echo_request_gets_an_echo_reply_with_the_same_data() {
    let mut e = engine();
    let mut tx = VecSink::default();
    e.handle_frame(Instant(0), &echo_request(b"abcdefgh12345"), &mut tx);
    assert_eq!(tx.frames.len(), 1);
    let (eth, payload) = EthernetRepr::parse(&tx.frames[0]).unwrap();
    assert_eq!(eth.dst, PEER_MAC);
    let (ip, body) = Ipv4Repr::parse(payload).unwrap();
    assert_eq!((ip.src, ip.dst), (OUR_IP, PEER_IP));
    let reply = IcmpRepr::parse(body).unwrap();
    assert_eq!(reply.kind, icmp::ECHO_REPLY);
    assert_eq!(reply.rest, [0x12, 0x34, 0, 1]);
    assert_eq!(reply.data, b"abcdefgh12345");
    assert_eq!(checksum::checksum(body), 0);
    assert_eq!(e.stats().icmp_echo_replies, 1);
}

/// RFC 9293 §3.10.7.2 (LISTEN: SYN → SYN-ACK) and §3.10.7.1 (no
/// listener: RST carrying ACK of the SYN), through Ethernet and IPv4.
/// A segment from the peer's port 80 to our `dport`, as a frame.
fn peer_segment(dport: u16, seq: u32, ack: u32, flags: u8, data: &[u8]) -> Vec<u8> {
    let repr = crate::wire::tcp::TcpRepr {
        src_port: 80,
        dst_port: dport,
        seq: crate::wire::tcp::SeqNumber(seq),
        ack: Some(crate::wire::tcp::SeqNumber(ack)),
        flags,
        window: 65535,
        urgent: 0,
        options: Default::default(),
        payload: data,
    };
    PEER.tcp_repr(&repr)
}

/// The TCP segments in `frames`: (flags, seq, ack, payload).
fn sent_segments(frames: &[Vec<u8>]) -> Vec<(u8, u32, Option<u32>, Vec<u8>)> {
    frames
        .iter()
        .map(|f| {
            let (_, payload) = EthernetRepr::parse(f).unwrap();
            let (ip, seg) = Ipv4Repr::parse(payload).unwrap();
            let t = crate::wire::tcp::TcpRepr::parse(ip.src, ip.dst, seg).unwrap();
            (t.flags, t.seq.0, t.ack.map(|a| a.0), t.payload.to_vec())
        })
        .collect()
}

#[test]
fn a_client_that_answers_before_poll_sends_its_request_with_the_ack_and_its_fin_with_the_last_ack()
{
    use crate::wire::tcp::{FIN, PSH, SYN};
    let mut e = engine();
    let mut tx = VecSink::default();
    // Learn the peer's MAC, then drop the ARP reply.
    e.handle_frame(Instant(0), &arp_request(OUR_IP), &mut tx);
    tx.frames.clear();
    let id = e.connect(Instant(0), OUR_IP, 50000, PEER_IP, 80).unwrap();
    e.poll(Instant(0), &mut tx);
    let syn = sent_segments(&tx.frames);
    assert_eq!(syn.len(), 1);
    assert_eq!(syn[0].0, SYN);
    let iss = syn[0].1;
    tx.frames.clear();
    // SYN-ACK in: nothing leaves while the frame is handled.
    let t = Instant(1000);
    e.handle_frame(t, &peer_segment(50000, 7000, iss + 1, SYN, &[]), &mut tx);
    assert!(tx.frames.is_empty());
    e.dispatch_events(t);
    assert_eq!(e.poll_event(), Some(Event::Connected(id)));
    assert_eq!(e.tcp().write(id, b"GET"), Ok(3));
    e.poll(t, &mut tx);
    // One segment: the request, carrying the ACK of the SYN-ACK.
    let out = sent_segments(&tx.frames);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].0 & !PSH, 0);
    assert_eq!((out[0].1, out[0].2), (iss + 1, Some(7001)));
    assert_eq!(out[0].3, b"GET");
    tx.frames.clear();
    // Response and FIN in one segment; the client reads to the end and
    // closes before the next poll.
    let t = Instant(2000);
    e.handle_frame(
        t,
        &peer_segment(50000, 7001, iss + 4, FIN | PSH, b"OK"),
        &mut tx,
    );
    assert!(tx.frames.is_empty());
    e.dispatch_events(t);
    assert!(e.poll_event().is_some());
    let mut buf = [0u8; 16];
    assert_eq!(e.tcp().read(id, &mut buf), Ok(2));
    assert_eq!(e.tcp().read(id, &mut buf), Ok(0));
    e.tcp().close(t, id).unwrap();
    e.poll(t, &mut tx);
    // One segment: the FIN, acknowledging data and FIN (no bare ACK first).
    let out = sent_segments(&tx.frames);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].0, FIN);
    assert_eq!((out[0].1, out[0].2), (iss + 4, Some(7004)));
}

#[test]
fn syn_to_a_listening_port_gets_syn_ack_and_to_a_closed_port_rst() {
    let mut e = engine();
    let mut tx = VecSink::default();
    e.handle_frame(Instant(0), &tcp_syn(8080), &mut tx);
    e.handle_frame(Instant(0), &tcp_syn(9999), &mut tx);
    e.poll(Instant(0), &mut tx);
    assert_eq!(e.stats().tcp_segments, 2);
    assert_eq!(e.stats().tcp_syns, 2);
    assert_eq!(e.stats().tcp_not_listened, 1);
    assert_eq!(tx.frames.len(), 2, "{:?}", tx.frames);
    let mut flags = Vec::new();
    for f in &tx.frames {
        let (eth, payload) = EthernetRepr::parse(f).unwrap();
        assert_eq!((eth.src, eth.dst), (OUR_MAC, PEER_MAC));
        let (ip, seg) = Ipv4Repr::parse(payload).unwrap();
        assert_eq!((ip.src, ip.dst), (OUR_IP, PEER_IP));
        let tcp = crate::wire::tcp::TcpRepr::parse(ip.src, ip.dst, seg).unwrap();
        assert_eq!(tcp.ack.map(|a| a.0), Some(1001));
        flags.push((tcp.src_port, tcp.flags));
    }
    flags.sort();
    // `TcpRepr::flags` carries the ACK bit as `ack: Some(..)`, checked above.
    use crate::wire::tcp::{RST, SYN};
    assert_eq!(flags, vec![(8080, SYN), (9999, RST)]);
}

#[test]
fn malformed_frames_are_counted_by_reason() {
    let mut e = engine();
    let mut tx = VecSink::default();
    // Truncated Ethernet header.
    e.handle_frame(Instant(0), &[0u8; 5], &mut tx);
    // Truncated ARP.
    e.handle_frame(Instant(0), &arp_request(OUR_IP)[..30], &mut tx);
    // IPv4 with a bad header checksum.
    let mut bad = echo_request(b"x");
    bad[14 + 10] ^= 0xff;
    e.handle_frame(Instant(0), &bad, &mut tx);
    // IPv4 total length past the frame (oversized claim).
    let mut long = echo_request(b"x");
    long[14 + 2..14 + 4].copy_from_slice(&9000u16.to_be_bytes());
    e.handle_frame(Instant(0), &long, &mut tx);
    // ICMP with a bad checksum.
    let mut icmp_bad = echo_request(b"x");
    let last = icmp_bad.len() - 1;
    icmp_bad[last] ^= 0xff;
    e.handle_frame(Instant(0), &icmp_bad, &mut tx);
    // TCP with data offset 15 in a 20-byte segment.
    let mut tcp_bad = tcp_syn(8080);
    tcp_bad[34 + 12] = 0xf0;
    e.handle_frame(Instant(0), &tcp_bad, &mut tx);
    // A short IPv4 packet under the IPv6 EtherType.
    let mut v6 = echo_request(b"x");
    v6[12..14].copy_from_slice(&0x86ddu16.to_be_bytes());
    e.handle_frame(Instant(0), &v6, &mut tx);
    // LLDP.
    let mut lldp = echo_request(b"x");
    lldp[12..14].copy_from_slice(&0x88ccu16.to_be_bytes());
    e.handle_frame(Instant(0), &lldp, &mut tx);

    assert!(tx.frames.is_empty());
    let s = e.stats();
    assert_eq!(s.rx_frames, 8);
    assert_eq!(s.drop_wire[WireError::Ipv6Truncated.index()], 1);
    assert_eq!(s.drop_wire[WireError::EthernetTruncated.index()], 1);
    assert_eq!(s.drop_wire[WireError::ArpTruncated.index()], 1);
    assert_eq!(s.drop_wire[WireError::Ipv4BadChecksum.index()], 1);
    assert_eq!(s.drop_wire[WireError::Ipv4BadLength.index()], 1);
    assert_eq!(s.drop_wire[WireError::IcmpBadChecksum.index()], 1);
    assert_eq!(s.drop_wire[WireError::UnsupportedEtherType(0).index()], 1);
    assert_eq!(s.drop_tcp_malformed, 1);
    assert_eq!(s.wire_drops_total(), 8);
}

#[test]
fn random_and_truncated_frames_never_panic() {
    let mut e = engine();
    let mut tx = VecSink::default();
    let templates = [arp_request(OUR_IP), echo_request(b"hello"), tcp_syn(8080)];
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut n = 0u64;
    for t in &templates {
        for len in 0..=t.len() {
            e.handle_frame(Instant(0), &t[..len], &mut tx);
            n += 1;
        }
        for _ in 0..2000 {
            let mut f = t.clone();
            let flips = 1 + next() % 4;
            for _ in 0..flips {
                let i = (next() as usize) % f.len();
                f[i] = next() as u8;
            }
            e.handle_frame(Instant(0), &f, &mut tx);
            n += 1;
        }
    }
    for _ in 0..2000 {
        let len = (next() % 1600) as usize;
        let f: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        e.handle_frame(Instant(0), &f, &mut tx);
        n += 1;
    }
    assert_eq!(e.stats().rx_frames, n);
}

fn synack_marker() -> Vec<u8> {
    bytemuck::bytes_of(&stack_ebpf::CookieMeta {
        magic: stack_ebpf::COOKIE_META_SYNACK,
        ..Default::default()
    })
    .to_vec()
}

/// A cookie SYN-ACK XDP built and marked (`CFG_COOKIE_VIA_ENGINE`) goes out
/// unchanged, and nothing is remembered (not even the peer's address: the
/// sources of a SYN flood are spoofed).
#[test]
fn a_marked_cookie_syn_ack_is_sent_unchanged() {
    let mut e = engine();
    let synack = Endpoints {
        src_mac: OUR_MAC,
        dst_mac: PEER_MAC,
        src_ip: OUR_IP,
        dst_ip: PEER_IP,
    }
    .tcp(&TcpSegment {
        src_port: 8080,
        dst_port: 40000,
        seq: 0x1234_5678,
        ack: 0x1000_0001,
        flags: 0x12,
        ..TcpSegment::default()
    });
    let mut sink = VecSink::default();
    e.handle_frame_meta(Instant(0), &synack_marker(), &synack, &mut sink);
    assert_eq!(sink.frames, vec![synack]);
    assert_eq!(e.stats().cookie_synacks_sent, 1);
    assert_eq!(e.stats().tx_frames, 1);
    assert_eq!(e.stats().cookie_meta_invalid, 0);
    assert_eq!(e.tcp_connections(), 0, "no state kept");
    assert!(e.neighbors.is_empty());
}

/// A frame marked as a cookie SYN-ACK that is not one of ours (the SYN
/// itself, a SYN-ACK from an address we do not own, a runt) is counted and
/// not sent.
#[test]
fn a_marked_frame_that_is_not_our_cookie_syn_ack_is_counted_and_not_sent() {
    let syn = PEER.tcp(&TcpSegment {
        src_port: 40000,
        dst_port: 8080,
        flags: SYN,
        ..TcpSegment::default()
    });
    let other = Endpoints {
        src_mac: OUR_MAC,
        dst_mac: PEER_MAC,
        src_ip: Ipv4Addr::new(198, 18, 0, 9),
        dst_ip: PEER_IP,
    }
    .tcp(&TcpSegment {
        src_port: 8080,
        dst_port: 40000,
        flags: 0x12,
        ..TcpSegment::default()
    });
    for frame in [syn, other, vec![0u8; 20]] {
        let mut e = engine();
        let mut sink = VecSink::default();
        e.handle_frame_meta(Instant(0), &synack_marker(), &frame, &mut sink);
        assert!(sink.frames.is_empty());
        assert_eq!(e.stats().cookie_meta_invalid, 1);
        assert_eq!(e.stats().cookie_synacks_sent, 0);
    }
}

#[test]
fn tcp_frames_larger_than_the_link_mtu_are_counted_and_not_sent() {
    // A link whose MTU the TCP configuration does not fit (MSS 1460 on a
    // 576-byte link): a full segment would be dropped by the link without
    // a trace, so the frame layer refuses it and counts it instead.
    use crate::wire::tcp::SYN;
    let mut e = Interface::new(IfaceConfig {
        mtu: 576,
        ..engine_config(OUR_MAC)
    });
    let mut tx = VecSink::default();
    e.handle_frame(Instant(0), &arp_request(OUR_IP), &mut tx);
    tx.frames.clear();
    let id = e.connect(Instant(0), OUR_IP, 50000, PEER_IP, 80).unwrap();
    e.poll(Instant(0), &mut tx);
    let iss = sent_segments(&tx.frames)[0].1;
    tx.frames.clear();
    // The peer's SYN-ACK carries no MSS option: 536 (RFC 9293 §3.7.1) would
    // fit, so offer 1460 as a peer on a 1,500-byte link would.
    let synack = crate::wire::tcp::TcpRepr {
        src_port: 80,
        dst_port: 50000,
        seq: crate::wire::tcp::SeqNumber(7000),
        ack: Some(crate::wire::tcp::SeqNumber(iss + 1)),
        flags: SYN,
        window: 65535,
        urgent: 0,
        options: crate::wire::tcp::TcpOptions {
            mss: Some(1460),
            ..Default::default()
        },
        payload: &[],
    };
    e.handle_frame(Instant(1000), &PEER.tcp_repr(&synack), &mut tx);
    e.dispatch_events(Instant(1000));
    assert_eq!(e.tcp().write(id, &[7u8; 1400]), Ok(1400));
    e.poll(Instant(1000), &mut tx);
    assert_eq!(e.stats().tx_oversize, 1, "{:?}", e.stats());
    for f in &tx.frames {
        assert!(f.len() <= 576 + 14, "a {}-byte frame left", f.len());
    }
    // Sent: the ARP reply and the SYN; the oversized segment is not.
    assert_eq!(e.stats().tx_frames, 2, "{:?}", e.stats());
}

#[test]
fn a_lingering_close_after_an_http_error_ends_after_its_time_cap() {
    // RFC 9112 §9.6: after an error response the server half-closes and
    // drains what the client still sends, but not forever: a client that
    // stays open past `LINGER_TIME` is closed (and data after that gets an
    // RST), so no error response pins a connection.
    use crate::wire::tcp::{SeqNumber, TcpRepr, FIN, PSH, RST};
    let mut e = Interface::new(IfaceConfig {
        app: App::Http,
        max_body: 10,
        ..engine_config(OUR_MAC)
    });
    let mut tx = VecSink::default();
    let t0 = Instant(0);
    e.handle_frame(t0, &tcp_syn(8080), &mut tx);
    e.poll(t0, &mut tx);
    let iss = sent_segments(&tx.frames)[0].1;
    tx.frames.clear();
    let seg = |seq: u32, ack: u32, flags: u8, data: &[u8]| {
        PEER.tcp_repr(&TcpRepr {
            src_port: 40000,
            dst_port: 8080,
            seq: SeqNumber(seq),
            ack: Some(SeqNumber(ack)),
            flags,
            window: 65535,
            urgent: 0,
            options: Default::default(),
            payload: data,
        })
    };
    let req = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n";
    e.handle_frame(t0, &seg(1001, iss + 1, PSH, req), &mut tx);
    e.poll(t0, &mut tx);
    let out = sent_segments(&tx.frames);
    let sent: Vec<u8> = out.iter().flat_map(|s| s.3.clone()).collect();
    assert!(sent.starts_with(b"HTTP/1.1 413"), "{out:?}");
    assert!(out.iter().any(|s| s.0 & FIN != 0), "half-closed: {out:?}");
    // The client acknowledges everything and stays open, silent.
    let end = iss + 1 + sent.len() as u32 + 1;
    let next = 1001 + req.len() as u32;
    e.handle_frame(t0, &seg(next, end, 0, &[]), &mut tx);
    let just_before = t0 + crate::apps::http::LINGER_TIME - std::time::Duration::from_millis(1);
    e.poll(just_before, &mut tx);
    assert_eq!(e.stats().http_linger_timeouts, 0);
    tx.frames.clear();
    let after = t0 + crate::apps::http::LINGER_TIME;
    e.poll(after, &mut tx);
    assert_eq!(e.stats().http_linger_timeouts, 1, "{:?}", e.stats());
    // The application let go: more data from the client is answered with
    // RST (RFC 2525 §2.17, data for a closed connection).
    e.handle_frame(after, &seg(next, end, PSH, b"late"), &mut tx);
    e.poll(after, &mut tx);
    let out = sent_segments(&tx.frames);
    assert!(out.iter().any(|s| s.0 & RST != 0), "{out:?}");
}
