//! The real XDP program over IPv6, run on crafted frames with
//! BPF_PROG_TEST_RUN: TCP and ICMPv6 for an owned address redirected,
//! neighbour solicitations at the solicited-node MAC for an owned target
//! redirected, the bounded extension-header walk (accepted, too long,
//! truncated), fragments dropped, everything else passed; each verdict with
//! the one counter it moves.

use std::net::Ipv6Addr;

use stack_ebpf::Counter;
use xstack::{
    datapath::xdp::XdpProgram,
    datapath::xsk::{XskConfig, XskMode, XskSocket},
    wire::{
        build::{Endpoints6, TcpSegment},
        ethernet::Mac,
        icmpv6::{self, Icmpv6Repr, NdpRepr},
        ipv6,
    },
};
use xstack_tests::xdp_run::expect;

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_REDIRECT: u32 = 4;

const OURS: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2);
const OTHER: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 9);
const PEER: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 1);
const PORT: u16 = 8080;

/// Frames from the peer to the stack's address.
const LINK: Endpoints6 = Endpoints6 {
    src_mac: Mac([2, 0, 0, 0, 0, 1]),
    dst_mac: Mac([2, 0, 0, 0, 0, 2]),
    src_ip: PEER,
    dst_ip: OURS,
};

/// One AF_XDP socket per (interface, queue): tests that bind `lo` queue 0
/// take turns (also with `xdp_test_run`'s, in another process: the bind
/// fails with EBUSY there, so each test retries for a while).
static LO_QUEUE0: std::sync::Mutex<()> = std::sync::Mutex::new(());

type Loaded = (XdpProgram, XskSocket, std::sync::MutexGuard<'static, ()>);

/// A loaded program owning OURS (ND, ICMPv6) and TCP OURS:PORT, with an
/// AF_XDP socket on `lo` queue 0 in XSKMAP slot 0 (`lo` has no XDP program
/// attached: no live traffic is affected).
fn program() -> Loaded {
    let mut p = XdpProgram::load(None).expect("load XDP program (built by cargo xtask build?)");
    p.own_addr6(OURS, false).unwrap();
    p.own_port6(OURS, PORT).unwrap();
    let turn = LO_QUEUE0.lock().unwrap_or_else(|e| e.into_inner());
    let cfg = XskConfig {
        frames: 64,
        ring_size: 32,
        mode: XskMode::Copy,
        ..XskConfig::default()
    };
    let mut tries = 0;
    let s = loop {
        match XskSocket::open("lo", 0, &cfg) {
            Ok(s) => break s,
            Err(e) if tries < 100 => {
                tries += 1;
                let _ = e;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(e) => panic!("AF_XDP socket on lo: {e}"),
        }
    };
    p.register_socket(0, s.fd()).unwrap();
    (p, s, turn)
}

fn seg(dport: u16, flags: u8) -> Vec<u8> {
    TcpSegment {
        src_port: 40000,
        dst_port: dport,
        flags,
        window: 65535,
        ..TcpSegment::default()
    }
    .emit(PEER, OURS)
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;

/// `n` destination-options headers (8 bytes each) before `last`'s body.
fn with_dest_opts(n: usize, last: u8, body: &[u8]) -> Vec<u8> {
    let mut p = Vec::new();
    for i in 0..n {
        let next = if i + 1 == n { last } else { ipv6::NH_DEST_OPTS };
        p.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]);
    }
    p.extend_from_slice(body);
    let first = if n == 0 { last } else { ipv6::NH_DEST_OPTS };
    LINK.ipv6(first, &p)
}

#[test]
fn ipv6_syn_and_segments_to_an_owned_port_are_redirected() {
    let (mut p, _s, _t) = program();
    expect(
        &mut p,
        &LINK.tcp(&TcpSegment {
            src_port: 40000,
            dst_port: PORT,
            flags: SYN,
            ..TcpSegment::default()
        }),
        XDP_REDIRECT,
        Counter::RedirectTcp6,
    );
    expect(
        &mut p,
        &LINK.ipv6(ipv6::NH_TCP, &seg(PORT, ACK)),
        XDP_REDIRECT,
        Counter::RedirectTcp6,
    );
    assert_eq!(p.tcp_classes().unwrap()["syn"], 1);
    // A port nobody serves on a shared address, and another address:
    // the kernel's.
    expect(
        &mut p,
        &LINK.ipv6(ipv6::NH_TCP, &seg(22, SYN)),
        XDP_PASS,
        Counter::PassIpv6PortNotOwned,
    );
    let other = Endpoints6 {
        dst_ip: OTHER,
        ..LINK
    };
    expect(
        &mut p,
        &other.ipv6(ipv6::NH_TCP, &seg(PORT, SYN)),
        XDP_PASS,
        Counter::PassIpv6NotOwned,
    );
    // UDP to us: the kernel's.
    expect(
        &mut p,
        &LINK.ipv6(17, &[0u8; 8]),
        XDP_PASS,
        Counter::PassIpv6OtherProto,
    );
}

#[test]
fn ipv6_invalid_flags_and_data_offsets_are_dropped_by_reason() {
    let (mut p, _s, _t) = program();
    expect(
        &mut p,
        &LINK.ipv6(ipv6::NH_TCP, &seg(PORT, 0)),
        XDP_DROP,
        Counter::DropFlagsNone,
    );
    expect(
        &mut p,
        &LINK.ipv6(ipv6::NH_TCP, &seg(PORT, 0x03)),
        XDP_DROP,
        Counter::DropFlagsSynFin,
    );
    let mut bad = seg(PORT, SYN);
    bad[12] = 0x30;
    expect(
        &mut p,
        &LINK.ipv6(ipv6::NH_TCP, &bad),
        XDP_DROP,
        Counter::DropTcpDataOffset,
    );
    expect(
        &mut p,
        &LINK.ipv6(ipv6::NH_TCP, &seg(PORT, SYN)[..10]),
        XDP_DROP,
        Counter::DropTcpTruncated,
    );
}

#[test]
fn ipv6_extension_chain_within_the_bound_is_walked_and_past_it_dropped() {
    let (mut p, _s, _t) = program();
    let ok = with_dest_opts(
        stack_ebpf::IPV6_MAX_EXT_HEADERS,
        ipv6::NH_TCP,
        &seg(PORT, SYN),
    );
    expect(&mut p, &ok, XDP_REDIRECT, Counter::RedirectTcp6);
    let long = with_dest_opts(
        stack_ebpf::IPV6_MAX_EXT_HEADERS + 1,
        ipv6::NH_TCP,
        &seg(PORT, SYN),
    );
    expect(&mut p, &long, XDP_DROP, Counter::DropIpv6ExtChain);
    // A header claiming 88 bytes in a shorter packet.
    let mut cut = with_dest_opts(1, ipv6::NH_TCP, &seg(PORT, SYN));
    cut[14 + 40 + 1] = 10;
    expect(&mut p, &cut, XDP_DROP, Counter::DropIpv6ExtTruncated);
    // A payload length past the frame.
    let mut long_len = LINK.ipv6(ipv6::NH_TCP, &seg(PORT, SYN));
    long_len[14 + 4..14 + 6].copy_from_slice(&400u16.to_be_bytes());
    expect(&mut p, &long_len, XDP_DROP, Counter::DropIpv6Header);
}

#[test]
fn ipv6_fragments_to_an_owned_address_are_dropped() {
    let (mut p, _s, _t) = program();
    let mut body = vec![ipv6::NH_TCP, 0, 0, 1, 0, 0, 0, 7];
    body.extend_from_slice(&seg(PORT, SYN));
    expect(
        &mut p,
        &LINK.ipv6(ipv6::NH_FRAGMENT, &body),
        XDP_DROP,
        Counter::DropIpv6Fragment,
    );
    // Behind a destination-options header too.
    let mut body = vec![ipv6::NH_FRAGMENT, 0, 1, 4, 0, 0, 0, 0];
    body.extend_from_slice(&[ipv6::NH_TCP, 0, 0, 1, 0, 0, 0, 7]);
    body.extend_from_slice(&seg(PORT, SYN));
    expect(
        &mut p,
        &LINK.ipv6(ipv6::NH_DEST_OPTS, &body),
        XDP_DROP,
        Counter::DropIpv6Fragment,
    );
}

#[test]
fn solicitation_at_the_solicited_node_mac_for_an_owned_target_is_redirected() {
    let (mut p, _s, _t) = program();
    let ns_to = |target: Ipv6Addr| {
        let group = ipv6::solicited_node(target);
        Endpoints6 {
            dst_mac: ipv6::multicast_mac(group),
            dst_ip: group,
            ..LINK
        }
        .ndp(&NdpRepr::Solicit {
            target,
            lladdr: Some(LINK.src_mac),
        })
    };
    let f = ns_to(OURS);
    assert_eq!(&f[0..6], &[0x33, 0x33, 0xff, 0, 0, 2]);
    expect(&mut p, &f, XDP_REDIRECT, Counter::RedirectNdp);
    // For another target: the kernel's.
    expect(&mut p, &ns_to(OTHER), XDP_PASS, Counter::PassIpv6NotOwned);
    // NS, NA and echo to our unicast address: ICMPv6 for us.
    let ns = LINK.ndp(&NdpRepr::Solicit {
        target: OURS,
        lladdr: Some(LINK.src_mac),
    });
    expect(&mut p, &ns, XDP_REDIRECT, Counter::RedirectIcmpv6);
    let echo = LINK.icmpv6(&Icmpv6Repr {
        kind: icmpv6::ECHO_REQUEST,
        code: 0,
        rest: [0, 1, 0, 1],
        data: b"ping",
    });
    expect(&mut p, &echo, XDP_REDIRECT, Counter::RedirectIcmpv6);
    // An MLD report to all-routers is not ours.
    let all = Endpoints6 {
        dst_ip: "ff02::16".parse().unwrap(),
        ..LINK
    };
    expect(
        &mut p,
        &all.ipv6(ipv6::NH_ICMPV6, &[143, 0, 0, 0, 0, 0, 0, 0]),
        XDP_PASS,
        Counter::PassIpv6NotOwned,
    );
}

#[test]
fn ipv6_syns_share_one_token_bucket_per_source_slash_64_and_the_global_budget() {
    use xstack::datapath::fastpath::FastpathSettings;
    let (mut p, _s, _t) = program();
    let mut s = FastpathSettings {
        syn_source_rate: 1,
        syn_source_burst: 2,
        ..Default::default()
    };
    p.set_config(&s.to_config()).unwrap();
    let syn_from = |src: &str| {
        Endpoints6 {
            src_ip: src.parse().unwrap(),
            ..LINK
        }
        .tcp(&TcpSegment {
            src_port: 40000,
            dst_port: PORT,
            flags: SYN,
            ..TcpSegment::default()
        })
    };
    // Two SYNs of burst from one /64, whichever addresses in it send them.
    expect(
        &mut p,
        &syn_from("2001:2::1"),
        XDP_REDIRECT,
        Counter::RedirectTcp6,
    );
    expect(
        &mut p,
        &syn_from("2001:2::ffff:1"),
        XDP_REDIRECT,
        Counter::RedirectTcp6,
    );
    expect(
        &mut p,
        &syn_from("2001:2::7"),
        XDP_DROP,
        Counter::DropSynSourceRate,
    );
    // Another /64 has its own bucket.
    expect(
        &mut p,
        &syn_from("2001:2:0:1::1"),
        XDP_REDIRECT,
        Counter::RedirectTcp6,
    );
    // Per /128 instead: each address its own bucket.
    s.syn_source_prefix6 = 128;
    p.set_config(&s.to_config()).unwrap();
    expect(
        &mut p,
        &syn_from("2001:2::8"),
        XDP_REDIRECT,
        Counter::RedirectTcp6,
    );
    // Segments without SYN are not limited.
    expect(
        &mut p,
        &LINK.ipv6(ipv6::NH_TCP, &seg(PORT, ACK)),
        XDP_REDIRECT,
        Counter::RedirectTcp6,
    );
    // The global budget.
    s.syn_source_rate = 0;
    s.syn_global_rate = 1;
    s.syn_global_burst = 1;
    p.set_config(&s.to_config()).unwrap();
    expect(
        &mut p,
        &syn_from("2001:2:0:5::1"),
        XDP_REDIRECT,
        Counter::RedirectTcp6,
    );
    expect(
        &mut p,
        &syn_from("2001:2:0:6::1"),
        XDP_DROP,
        Counter::DropSynGlobalRate,
    );
}

#[test]
fn ipv6_deny_and_allow_prefix_lists_apply_to_syns() {
    use xstack::datapath::fastpath::{parse_prefix, FastpathSettings};
    let (mut p, _s, _t) = program();
    let syn_from = |src: &str| {
        Endpoints6 {
            src_ip: src.parse().unwrap(),
            ..LINK
        }
        .tcp(&TcpSegment {
            src_port: 40000,
            dst_port: PORT,
            flags: SYN,
            ..TcpSegment::default()
        })
    };
    // Deny 2001:2:0:66::/64.
    let deny = parse_prefix("2001:2:0:66::9/64").unwrap();
    assert_eq!(deny, ("2001:2:0:66::".parse().unwrap(), 64));
    let mut s = FastpathSettings::default();
    s.deny.push(deny);
    p.prefix(true, deny.0, deny.1, true).unwrap();
    p.set_config(&s.to_config()).unwrap();
    expect(
        &mut p,
        &syn_from("2001:2:0:66::1"),
        XDP_DROP,
        Counter::DropSynDenied,
    );
    expect(
        &mut p,
        &syn_from("2001:2:0:67::1"),
        XDP_REDIRECT,
        Counter::RedirectTcp6,
    );
    // Allow-only: only 2001:2:0:77::/64 may connect.
    let allow = parse_prefix("2001:2:0:77::/64").unwrap();
    s.allow.push(allow);
    s.allow_only = true;
    p.prefix(false, allow.0, allow.1, true).unwrap();
    p.set_config(&s.to_config()).unwrap();
    expect(
        &mut p,
        &syn_from("2001:2:0:77::5"),
        XDP_REDIRECT,
        Counter::RedirectTcp6,
    );
    expect(
        &mut p,
        &syn_from("2001:2:0:67::1"),
        XDP_DROP,
        Counter::DropSynNotAllowed,
    );
    // Allowed sources skip the rate limits.
    s.syn_source_rate = 1;
    s.syn_source_burst = 1;
    p.set_config(&s.to_config()).unwrap();
    for _ in 0..3 {
        expect(
            &mut p,
            &syn_from("2001:2:0:77::5"),
            XDP_REDIRECT,
            Counter::RedirectTcp6,
        );
    }
}
