//! The frame layer over IPv6 in memory: neighbour discovery, ICMPv6 echo,
//! malformed IPv6, fed with frames captured from Linux where they exist.

use super::tests::{engine, engine_with_mac, OUR_IP6, OUR_MAC, PEER_IP6, PEER_MAC};
use super::*;
use crate::wire::{
    build::Endpoints6,
    captured,
    icmpv6::{self, Icmpv6Repr, NdpRepr, NA_OVERRIDE, NA_SOLICITED},
    ipv6::{self, Ipv6Repr},
};

/// The MAC of 2001:2::2 in the captured frames.
const KERNEL_MAC2: Mac = Mac([2, 0, 0, 0, 0x15, 2]);
/// The MAC of 2001:2::1 in the captured frames.
const KERNEL_MAC1: Mac = Mac([2, 0, 0, 0, 0x15, 1]);

/// Frames from the peer to us.
const PEER6: Endpoints6 = Endpoints6 {
    src_mac: PEER_MAC,
    dst_mac: OUR_MAC,
    src_ip: PEER_IP6,
    dst_ip: OUR_IP6,
};

fn parse6(frame: &[u8]) -> (EthernetRepr, Ipv6Repr, Vec<u8>) {
    let (eth, payload) = EthernetRepr::parse(frame).unwrap();
    assert_eq!(eth.ethertype, ethernet::ETHERTYPE_IPV6);
    let (ip, body) = Ipv6Repr::parse(payload).unwrap();
    (eth, ip, body.to_vec())
}

fn ndp_of(frame: &[u8]) -> (EthernetRepr, Ipv6Repr, NdpRepr) {
    let (eth, ip, body) = parse6(frame);
    let msg = Icmpv6Repr::parse(ip.src, ip.dst, &body).unwrap();
    (
        eth,
        ip,
        NdpRepr::parse(ip.hop_limit, &msg).unwrap().unwrap(),
    )
}

#[test]
fn solicitation_to_the_solicited_node_mac_is_answered_as_linux_answers_it() {
    // Linux's own NS for 2001:2::2 (to 33:33:ff:00:00:02), fed to an
    // engine with 2001:2::2's MAC: the NA is byte for byte the kernel's.
    let mut e = engine_with_mac(KERNEL_MAC2);
    let mut tx = VecSink::default();
    e.handle_frame(
        Instant(0),
        &captured::frame(captured::NS_FOR_2001_2__2),
        &mut tx,
    );
    assert_eq!(tx.frames.len(), 1);
    let kernel = captured::frame(captured::NA_FROM_2001_2__2);
    assert_eq!(tx.frames[0], kernel);
    assert_eq!(e.stats().ndp_solicits_in, 1);
    assert_eq!(e.stats().ndp_adverts_out, 1);
    // The solicitor was learned from its link-layer option.
    assert_eq!(e.neighbors6.get(&PEER_IP6), Some(&KERNEL_MAC1));
}

#[test]
fn solicitation_for_another_target_is_ignored_and_counted() {
    let mut e = engine();
    let mut tx = VecSink::default();
    let other: Ipv6Addr = "2001:2::9".parse().unwrap();
    let f = Endpoints6 {
        dst_mac: ipv6::multicast_mac(ipv6::solicited_node(other)),
        dst_ip: ipv6::solicited_node(other),
        ..PEER6
    }
    .ndp(&NdpRepr::Solicit {
        target: other,
        lladdr: Some(PEER_MAC),
    });
    e.handle_frame(Instant(0), &f, &mut tx);
    assert!(tx.frames.is_empty());
    // Another node's solicited-node group is not ours at all.
    assert_eq!(e.stats().ipv6_not_owned, 1);
    // Sent to our unicast address but for another target: ignored.
    let f = PEER6.ndp(&NdpRepr::Solicit {
        target: other,
        lladdr: Some(PEER_MAC),
    });
    e.handle_frame(Instant(0), &f, &mut tx);
    assert!(tx.frames.is_empty());
    assert_eq!(e.stats().ndp_ignored, 1);
}

#[test]
fn neighbour_discovery_with_hop_limit_below_255_is_dropped_by_reason() {
    let mut e = engine();
    let mut tx = VecSink::default();
    let ns = NdpRepr::Solicit {
        target: OUR_IP6,
        lladdr: Some(PEER_MAC),
    };
    let mut body = [0u8; icmpv6::NDP_LEN];
    ns.emit(PEER_IP6, OUR_IP6, &mut body).unwrap();
    let f = PEER6.ipv6_with_hop_limit(ipv6::NH_ICMPV6, 254, &body);
    e.handle_frame(Instant(0), &f, &mut tx);
    assert!(tx.frames.is_empty());
    assert_eq!(e.stats().drop_wire[WireError::NdpInvalid.index()], 1);
}

#[test]
fn duplicate_address_probe_for_our_address_is_answered_to_all_nodes() {
    let mut e = engine();
    let mut tx = VecSink::default();
    let group = ipv6::solicited_node(OUR_IP6);
    let f = Endpoints6 {
        src_ip: Ipv6Addr::UNSPECIFIED,
        dst_ip: group,
        dst_mac: ipv6::multicast_mac(group),
        ..PEER6
    }
    .ndp(&NdpRepr::Solicit {
        target: OUR_IP6,
        lladdr: None,
    });
    e.handle_frame(Instant(0), &f, &mut tx);
    assert_eq!(tx.frames.len(), 1);
    let (eth, ip, na) = ndp_of(&tx.frames[0]);
    let all_nodes: Ipv6Addr = "ff02::1".parse().unwrap();
    assert_eq!((ip.src, ip.dst, ip.hop_limit), (OUR_IP6, all_nodes, 255));
    assert_eq!(eth.dst, Mac([0x33, 0x33, 0, 0, 0, 1]));
    assert_eq!(
        na,
        NdpRepr::Advert {
            flags: NA_OVERRIDE,
            target: OUR_IP6,
            lladdr: Some(OUR_MAC)
        }
    );
}

#[test]
fn captured_echo_request_gets_the_kernels_echo_reply() {
    let mut e = engine_with_mac(KERNEL_MAC2);
    let mut tx = VecSink::default();
    e.handle_frame(
        Instant(0),
        &captured::frame(captured::ECHO_REQUEST),
        &mut tx,
    );
    assert_eq!(tx.frames.len(), 1);
    let ours = &tx.frames[0];
    let kernel = captured::frame(captured::ECHO_REPLY);
    // Ethernet equal; IPv6 equal but for the flow label Linux picks.
    assert_eq!(ours[..14], kernel[..14]);
    assert_eq!(ours[14 + 4..], kernel[14 + 4..]);
    assert_eq!(e.stats().icmpv6_echo_requests, 1);
    assert_eq!(e.stats().icmpv6_echo_replies, 1);
}

#[test]
fn unresolved_ipv6_next_hop_is_solicited_once_held_and_sent_on_advertisement() {
    let mut e = engine();
    let mut tx = VecSink::default();
    let frame = |b: u8| {
        let mut f = vec![b; 74];
        f[12..14].copy_from_slice(&ethernet::ETHERTYPE_IPV6.to_be_bytes());
        f
    };
    e.hold(Instant(0), IpAddr::V6(PEER_IP6), frame(1), &mut tx);
    e.hold(Instant(1000), IpAddr::V6(PEER_IP6), frame(2), &mut tx);
    // One solicitation within the second, to the solicited-node group.
    assert_eq!(tx.frames.len(), 1);
    let (eth, ip, ns) = ndp_of(&tx.frames[0]);
    let group = ipv6::solicited_node(PEER_IP6);
    assert_eq!(eth.dst, ipv6::multicast_mac(group));
    assert_eq!(eth.dst, Mac([0x33, 0x33, 0xff, 0, 0, 1]));
    assert_eq!((ip.src, ip.dst, ip.hop_limit), (OUR_IP6, group, 255));
    assert_eq!(
        ns,
        NdpRepr::Solicit {
            target: PEER_IP6,
            lladdr: Some(OUR_MAC)
        }
    );
    assert_eq!(e.stats().ndp_solicits_out, 1);
    assert_eq!(e.stats().tx_held_for_arp, 2);
    // A second later it is solicited again.
    e.hold(Instant(1_000_001), IpAddr::V6(PEER_IP6), frame(3), &mut tx);
    assert_eq!(e.stats().ndp_solicits_out, 2);
    // The advertisement resolves it: the three held frames go, to its MAC.
    let na = PEER6.ndp(&NdpRepr::Advert {
        flags: NA_SOLICITED | NA_OVERRIDE,
        target: PEER_IP6,
        lladdr: Some(PEER_MAC),
    });
    tx.frames.clear();
    e.handle_frame(Instant(1_000_002), &na, &mut tx);
    assert_eq!(e.stats().ndp_adverts_in, 1);
    assert_eq!(tx.frames.len(), 3);
    for (i, f) in tx.frames.iter().enumerate() {
        assert_eq!(f[0..6], PEER_MAC.0);
        assert_eq!(f[20], i as u8 + 1);
    }
}

#[test]
fn unsolicited_advertisement_for_no_entry_or_our_own_address_is_ignored() {
    let mut e = engine();
    let mut tx = VecSink::default();
    for target in [PEER_IP6, OUR_IP6] {
        let na = PEER6.ndp(&NdpRepr::Advert {
            flags: NA_OVERRIDE,
            target,
            lladdr: Some(PEER_MAC),
        });
        e.handle_frame(Instant(0), &na, &mut tx);
    }
    assert_eq!(e.stats().ndp_ignored, 2);
    assert_eq!(e.stats().ndp_adverts_in, 0);
    // Not learned: a frame to the peer is held and solicited.
    e.hold(Instant(0), IpAddr::V6(PEER_IP6), vec![0u8; 60], &mut tx);
    assert_eq!(e.stats().ndp_solicits_out, 1);
}

#[test]
fn hold_queue_is_bounded_across_both_families() {
    let mut e = engine();
    let mut tx = VecSink::default();
    for i in 0..300u16 {
        let dst = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 1, i);
        e.hold(Instant(0), IpAddr::V6(dst), vec![0u8; 60], &mut tx);
    }
    assert_eq!(e.stats().tx_held_for_arp, 256);
    assert_eq!(e.stats().tx_no_neighbor, 44);
    assert!(e.stats().ndp_solicits_out <= 256);
}

#[test]
fn malformed_and_foreign_ipv6_is_counted_by_reason() {
    let mut e = engine();
    let mut tx = VecSink::default();
    // A fragment header.
    let mut frag = [0u8; 16];
    frag[0] = ipv6::NH_TCP;
    e.handle_frame(Instant(0), &PEER6.ipv6(ipv6::NH_FRAGMENT, &frag), &mut tx);
    assert_eq!(e.stats().drop_wire[WireError::Ipv6Fragment.index()], 1);
    // Five destination-options headers: past the walk's bound.
    let mut chain = Vec::new();
    for i in 0..5 {
        let next = if i == 4 {
            ipv6::NH_TCP
        } else {
            ipv6::NH_DEST_OPTS
        };
        chain.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]);
    }
    e.handle_frame(Instant(0), &PEER6.ipv6(ipv6::NH_DEST_OPTS, &chain), &mut tx);
    assert_eq!(
        e.stats().drop_wire[WireError::Ipv6ExtChainTooLong.index()],
        1
    );
    // Truncated fixed header.
    let f = PEER6.ipv6(ipv6::NH_TCP, &[]);
    e.handle_frame(Instant(0), &f[..40], &mut tx);
    assert_eq!(e.stats().drop_wire[WireError::Ipv6Truncated.index()], 1);
    // Bad ICMPv6 checksum.
    let mut f = PEER6.icmpv6(&Icmpv6Repr {
        kind: icmpv6::ECHO_REQUEST,
        code: 0,
        rest: [0, 1, 0, 1],
        data: b"x",
    });
    let last = f.len() - 1;
    f[last] ^= 0xff;
    e.handle_frame(Instant(0), &f, &mut tx);
    assert_eq!(e.stats().drop_wire[WireError::Icmpv6BadChecksum.index()], 1);
    // Not ours.
    let f = Endpoints6 {
        dst_ip: "2001:2::77".parse().unwrap(),
        ..PEER6
    }
    .ipv6(ipv6::NH_TCP, &[0u8; 20]);
    e.handle_frame(Instant(0), &f, &mut tx);
    assert_eq!(e.stats().ipv6_not_owned, 1);
    assert!(tx.frames.is_empty());
}

#[test]
fn captured_syn_to_a_closed_port_gets_the_kernels_rst() {
    let mut e = engine_with_mac(KERNEL_MAC2);
    let mut tx = VecSink::default();
    e.handle_frame(
        Instant(0),
        &captured::frame(captured::TCP_SYN_TO_CLOSED),
        &mut tx,
    );
    e.poll(Instant(0), &mut tx);
    assert_eq!(tx.frames.len(), 1, "the sender was learned from the SYN");
    let ours = &tx.frames[0];
    let kernel = captured::frame(captured::TCP_RST_FROM_CLOSED);
    // Equal but for the flow label Linux picks (and Ethernet padding).
    assert_eq!(ours[..15], kernel[..15]);
    assert_eq!(ours[14 + 4..kernel.len()], kernel[14 + 4..]);
    assert_eq!(e.stats().tcp_not_listened, 1);
}

#[test]
fn syn_over_ipv6_to_a_listening_port_gets_a_syn_ack_with_mss_mtu_minus_60() {
    use crate::wire::{build::TcpSegment, tcp::TcpRepr};
    let mut e = engine();
    let mut tx = VecSink::default();
    let syn = PEER6.tcp(&TcpSegment {
        src_port: 40000,
        dst_port: 8080,
        seq: 1000,
        flags: crate::wire::tcp::SYN,
        window: 65535,
        options: &[2, 4, 0x05, 0xb4],
        ..TcpSegment::default()
    });
    e.handle_frame(Instant(0), &syn, &mut tx);
    e.poll(Instant(0), &mut tx);
    assert_eq!(tx.frames.len(), 1);
    let (eth, ip, body) = parse6(&tx.frames[0]);
    assert_eq!(eth.dst, PEER_MAC);
    assert_eq!(
        (ip.src, ip.dst, ip.next_header),
        (OUR_IP6, PEER_IP6, ipv6::NH_TCP)
    );
    let sa = TcpRepr::parse(ip.src, ip.dst, &body).unwrap();
    assert_eq!(sa.ack.map(|a| a.0), Some(1001));
    assert_eq!(sa.options.mss, Some(TcpConfig::default().mss - 20));
    assert_eq!(e.stats().tcp_syns, 1);
}

#[test]
fn ipv6_segment_to_an_unresolved_peer_is_held_until_neighbour_discovery() {
    let mut e = engine();
    let mut tx = VecSink::default();
    e.connect(Instant(0), OUR_IP6, 0, PEER_IP6, 80).unwrap();
    e.poll(Instant(0), &mut tx);
    // Only the solicitation leaves; the SYN waits.
    assert_eq!(tx.frames.len(), 1);
    let (_, _, ns) = ndp_of(&tx.frames[0]);
    assert!(matches!(ns, NdpRepr::Solicit { target, .. } if target == PEER_IP6));
    let na = PEER6.ndp(&NdpRepr::Advert {
        flags: NA_SOLICITED | NA_OVERRIDE,
        target: PEER_IP6,
        lladdr: Some(PEER_MAC),
    });
    e.handle_frame(Instant(1), &na, &mut tx);
    assert_eq!(tx.frames.len(), 2);
    let (eth, ip, _) = parse6(&tx.frames[1]);
    assert_eq!((eth.dst, ip.dst), (PEER_MAC, PEER_IP6));
}

#[test]
fn a_neighbour_discovery_copy_from_another_queue_teaches_without_an_answer() {
    let mut e = engine();
    let mut tx = VecSink::default();
    let ns = PEER6.ndp(&NdpRepr::Solicit {
        target: OUR_IP6,
        lladdr: Some(PEER_MAC),
    });
    e.handle_handoff(Instant(0), &[], &ns, true, &mut tx);
    assert!(tx.frames.is_empty(), "the receiving queue answers");
    assert_eq!(e.neighbors6.get(&PEER_IP6), Some(&PEER_MAC));
    assert_eq!(e.stats().ndp_adverts_out, 0);
}

#[test]
fn random_and_truncated_ipv6_frames_never_panic() {
    let mut e = engine_with_mac(KERNEL_MAC2);
    let mut tx = VecSink::default();
    let templates: Vec<Vec<u8>> = [
        captured::NS_FOR_2001_2__2,
        captured::NA_FROM_2001_2__2,
        captured::NS_DAD,
        captured::ECHO_REQUEST,
        captured::TCP_SYN_TO_CLOSED,
        captured::TCP_DATA_HELLO,
        captured::MLD_REPORT_HBH,
    ]
    .iter()
    .map(|h| captured::frame(h))
    .collect();
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
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
            for _ in 0..1 + next() % 4 {
                let i = 14 + (next() as usize) % (f.len() - 14);
                f[i] = next() as u8;
            }
            e.handle_frame(Instant(0), &f, &mut tx);
            e.poll(Instant(0), &mut tx);
            n += 1;
        }
    }
    assert_eq!(e.stats().rx_frames, n);
    // Whatever it sent parses.
    for f in &tx.frames {
        let (eth, payload) = EthernetRepr::parse(f).unwrap();
        if eth.ethertype == ethernet::ETHERTYPE_IPV6 {
            Ipv6Repr::parse(payload).unwrap();
        }
    }
}

/// The metadata XDP puts in front of a final ACK whose cookie it
/// validated (MSS from the cookie, the peer's window scale, SACK, TS).
fn cookie_ack_meta() -> Vec<u8> {
    bytemuck::bytes_of(&stack_ebpf::CookieMeta {
        magic: stack_ebpf::COOKIE_META_MAGIC,
        mss: 1440,
        wscale: 7,
        flags: stack_ebpf::META_SACK | stack_ebpf::META_TS,
        tsval: 11,
        tsecr: 22,
    })
    .to_vec()
}

/// A final ACK over IPv6 whose cookie XDP validated makes an ESTABLISHED
/// connection from the metadata alone (no SYN ever reached the engine),
/// its data is taken in and echoed, and the peer's MAC is learned.
#[test]
fn an_ipv6_cookie_ack_validated_in_xdp_establishes_from_its_metadata() {
    use crate::wire::{build::TcpSegment, tcp::TcpRepr};
    let mut e = engine();
    let mut tx = VecSink::default();
    let mut opts = vec![1, 1, 8, 10];
    opts.extend_from_slice(&12u32.to_be_bytes());
    opts.extend_from_slice(&22u32.to_be_bytes());
    let ack = PEER6.tcp(&TcpSegment {
        src_port: 40000,
        dst_port: 8080,
        seq: 1001,
        ack: 0x5000_0001,
        flags: 0x18,
        window: 512,
        options: &opts,
        payload: b"ping",
        ..TcpSegment::default()
    });
    e.handle_frame_meta(Instant(0), &cookie_ack_meta(), &ack, &mut tx);
    assert_eq!(e.stats().cookie_acks, 1);
    assert_eq!(e.stats().cookie_meta_invalid, 0);
    assert_eq!(e.tcp_connections(), 1);
    assert_eq!(e.tcp().stats().syncookies_recv, 1);
    e.poll(Instant(0), &mut tx);
    // The echo goes back to the learned MAC, from the cookie's ISN + 1.
    let data = tx
        .frames
        .iter()
        .map(|f| parse6(f))
        .find_map(|(eth, ip, body)| {
            let t = TcpRepr::parse(ip.src, ip.dst, &body).ok()?;
            (!t.payload.is_empty()).then(|| (eth, t.seq.0, t.payload.to_vec()))
        })
        .expect("the echo");
    assert_eq!(data.0.dst, PEER_MAC);
    assert_eq!(data.1, 0x5000_0001);
    assert_eq!(data.2, b"ping");
}

/// A cookie SYN-ACK XDP built over IPv6 and marked for the engine goes out
/// unchanged with no state kept; one from an address we do not own is
/// counted and not sent.
#[test]
fn a_marked_ipv6_cookie_syn_ack_is_sent_unchanged_and_a_foreign_one_refused() {
    use crate::wire::build::TcpSegment;
    let marker = bytemuck::bytes_of(&stack_ebpf::CookieMeta {
        magic: stack_ebpf::COOKIE_META_SYNACK,
        ..Default::default()
    })
    .to_vec();
    let from = |src_ip| {
        Endpoints6 {
            src_mac: OUR_MAC,
            dst_mac: PEER_MAC,
            src_ip,
            dst_ip: PEER_IP6,
        }
        .tcp(&TcpSegment {
            src_port: 8080,
            dst_port: 40000,
            seq: 0x1234_5678,
            ack: 1001,
            flags: 0x12,
            ..TcpSegment::default()
        })
    };
    let mut e = engine();
    let mut tx = VecSink::default();
    let synack = from(OUR_IP6);
    e.handle_frame_meta(Instant(0), &marker, &synack, &mut tx);
    assert_eq!(tx.frames, vec![synack]);
    assert_eq!(e.stats().cookie_synacks_sent, 1);
    assert_eq!(e.tcp_connections(), 0, "no state kept");
    let mut e = engine();
    let mut tx = VecSink::default();
    let foreign = from("2001:2::9".parse().unwrap());
    e.handle_frame_meta(Instant(0), &marker, &foreign, &mut tx);
    assert!(tx.frames.is_empty());
    assert_eq!(e.stats().cookie_meta_invalid, 1);
}
