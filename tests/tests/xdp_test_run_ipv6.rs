//! The real XDP program over IPv6, run on crafted frames with
//! BPF_PROG_TEST_RUN: TCP and ICMPv6 for an owned address redirected,
//! neighbour solicitations at the solicited-node MAC for an owned target
//! redirected, the owned-address table and port bitmaps (every address
//! up to the limit found, a port owned on its own address only, an
//! exclusive address's closed ports), the bounded extension-header walk
//! (accepted, too long, truncated), fragments dropped, everything else
//! passed; SYN cookies
//! (the SYN-ACK built in place, field by field and through tshark, valid,
//! forged and expired final ACKs, the MSS clamp) and the known-flow fast
//! path (`FLOWS6`); each verdict with the one counter it moves.

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
use xstack_tests::xdp_run::{check_synack_tcp, expect, moved, now_count, run, tshark_fields};

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

/// A segment with `flags` from the peer to (`dst`, `dport`).
fn tcp_to(dst: Ipv6Addr, dport: u16, flags: u8) -> Vec<u8> {
    let seg = TcpSegment {
        src_port: 40000,
        dst_port: dport,
        flags,
        window: 65535,
        ..TcpSegment::default()
    }
    .emit(PEER, dst);
    Endpoints6 {
        dst_ip: dst,
        ..LINK
    }
    .ipv6(ipv6::NH_TCP, &seg)
}

/// A neighbour solicitation for `target` at its solicited-node group.
fn ns_for(target: Ipv6Addr) -> Vec<u8> {
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
}

/// As many owned IPv6 addresses as the table holds (`MAX_OWNED_ADDRS6`),
/// in a shape whose homes collide (seeded random addresses of
/// 2001:2::/48, last group 9, so some sit past their home entry in
/// `OWNED_ADDR_TABLE6`): each is found by TCP to its own port (and only
/// that port) and by a neighbour solicitation at its solicited-node
/// group, its neighbour (last group 10) stays the kernel's, and the one
/// more is refused in one line.
#[test]
fn every_owned_ipv6_address_up_to_the_limit_is_found_and_no_other() {
    let (mut p, _s, _t) = program();
    // OURS is owned already: MAX - 1 more, distinct.
    let n = stack_ebpf::MAX_OWNED_ADDRS6 - 1;
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut seen = std::collections::HashSet::new();
    let mut addrs = Vec::new();
    while addrs.len() < n as usize {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let g = |k: u32| (x >> (16 * k)) as u16;
        let a = Ipv6Addr::new(0x2001, 2, 0, g(0), g(1), g(2), g(3), 9);
        if a != OURS && seen.insert(a) {
            addrs.push(a);
        }
    }
    let homes: std::collections::HashSet<u32> = addrs
        .iter()
        .map(|a| stack_ebpf::addr6_home(&stack_ebpf::Addr6Key::new(a.octets()).addr))
        .collect();
    assert!(homes.len() < n as usize, "the shape has no collision");
    for (i, a) in addrs.iter().enumerate() {
        p.own_addr6(*a, false).unwrap();
        p.own_port6(*a, 1000 + i as u16).unwrap();
    }
    for (i, &a) in addrs.iter().enumerate() {
        let port = 1000 + i as u16;
        expect(&mut p, &ns_for(a), XDP_REDIRECT, Counter::RedirectNdp);
        expect(
            &mut p,
            &tcp_to(a, port, ACK),
            XDP_REDIRECT,
            Counter::RedirectTcp6,
        );
        expect(
            &mut p,
            &tcp_to(a, port + 1, ACK),
            XDP_PASS,
            Counter::PassIpv6PortNotOwned,
        );
        let s = a.segments();
        let b = Ipv6Addr::new(s[0], s[1], s[2], s[3], s[4], s[5], s[6], 10);
        expect(
            &mut p,
            &tcp_to(b, port, ACK),
            XDP_PASS,
            Counter::PassIpv6NotOwned,
        );
        expect(&mut p, &ns_for(b), XDP_PASS, Counter::PassIpv6NotOwned);
    }
    expect(
        &mut p,
        &tcp_to(OURS, PORT, ACK),
        XDP_REDIRECT,
        Counter::RedirectTcp6,
    );
    let more = p
        .own_addr6(Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0xffff, 0xfffe), false)
        .unwrap_err()
        .to_string();
    assert!(more.contains("above the limit of 256"), "{more}");
    assert_eq!(more.lines().count(), 1, "{more}");
}

/// Nine addresses with one home in `OWNED_ADDR_TABLE6`: the first eight
/// fill the probe window (each found past the ones before it), the ninth
/// is refused in one line that says what to do, and the eight stay owned.
#[test]
fn an_ipv6_address_without_a_free_entry_near_its_home_is_refused_in_one_line() {
    let (mut p, _s, _t) = program();
    let home_of = |a: Ipv6Addr| stack_ebpf::addr6_home(&stack_ebpf::Addr6Key::new(a.octets()).addr);
    // OURS's entry (its home: it was claimed first) must lie outside the
    // nine's window.
    let ours = home_of(OURS);
    let mut by_home: std::collections::HashMap<u32, Vec<Ipv6Addr>> = Default::default();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let same = loop {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let a = Ipv6Addr::new(
            0x2001,
            2,
            0,
            0,
            x as u16,
            (x >> 16) as u16,
            (x >> 32) as u16,
            5,
        );
        let h = home_of(a);
        if ours.wrapping_sub(h) & (stack_ebpf::ADDR_TABLE_LEN - 1) < stack_ebpf::ADDR_TABLE_PROBES {
            continue;
        }
        let v = by_home.entry(h).or_default();
        v.push(a);
        if v.len() == 9 {
            break v.clone();
        }
    };
    for (i, a) in same[..8].iter().enumerate() {
        p.own_addr6(*a, false).unwrap();
        p.own_port6(*a, 2000 + i as u16).unwrap();
    }
    let err = p.own_addr6(same[8], false).unwrap_err().to_string();
    assert!(
        err.contains("no free entry within 8") && err.contains("own fewer addresses"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    expect(
        &mut p,
        &ns_for(same[8]),
        XDP_PASS,
        Counter::PassIpv6NotOwned,
    );
    for (i, a) in same[..8].iter().enumerate() {
        expect(&mut p, &ns_for(*a), XDP_REDIRECT, Counter::RedirectNdp);
        expect(
            &mut p,
            &tcp_to(*a, 2000 + i as u16, ACK),
            XDP_REDIRECT,
            Counter::RedirectTcp6,
        );
    }
}

/// The owned IPv6 ports are a bitmap per owned address
/// (`OWNED_PORT_BITS6`, a slot per address): a port is owned only on the
/// address that claimed it, every bit of a word stands alone (ports 0,
/// 63, 64, 65535 around the words' edges), and a port claimed before its
/// address is owned takes effect once the address is.
#[test]
fn an_owned_ipv6_port_is_owned_on_its_own_address_only() {
    let (mut p, _s, _t) = program();
    // OTHER: its ports claimed first, the address afterwards.
    for port in [0, 63, 65535] {
        p.own_port6(OTHER, port).unwrap();
    }
    expect(
        &mut p,
        &tcp_to(OTHER, 63, ACK),
        XDP_PASS,
        Counter::PassIpv6NotOwned,
    );
    p.own_addr6(OTHER, false).unwrap();
    for port in [0, 63, 65535] {
        expect(
            &mut p,
            &tcp_to(OTHER, port, ACK),
            XDP_REDIRECT,
            Counter::RedirectTcp6,
        );
        // OURS never claimed these.
        expect(
            &mut p,
            &tcp_to(OURS, port, ACK),
            XDP_PASS,
            Counter::PassIpv6PortNotOwned,
        );
    }
    for port in [1, 62, 64, 65534, PORT] {
        expect(
            &mut p,
            &tcp_to(OTHER, port, ACK),
            XDP_PASS,
            Counter::PassIpv6PortNotOwned,
        );
    }
    // OURS keeps PORT, and claiming its address again keeps its ports.
    p.own_addr6(OURS, false).unwrap();
    expect(
        &mut p,
        &tcp_to(OURS, PORT, ACK),
        XDP_REDIRECT,
        Counter::RedirectTcp6,
    );
    expect(
        &mut p,
        &tcp_to(OURS, PORT + 1, ACK),
        XDP_PASS,
        Counter::PassIpv6PortNotOwned,
    );
}

/// An IPv6 address no kernel interface has (`ADDR_ALL_TCP`): TCP to every
/// port goes to the engine, which answers closed ones with RST; nonsense
/// flags are still dropped; claimed again as shared, its closed ports go
/// back to the kernel and its served port stays the engine's.
#[test]
fn tcp_to_a_closed_port_of_an_ipv6_address_the_engine_owns_alone_goes_to_the_engine() {
    let (mut p, _s, _t) = program();
    p.own_addr6(OURS, true).unwrap();
    let closed = PORT + 1;
    for flags in [SYN, ACK] {
        expect(
            &mut p,
            &tcp_to(OURS, closed, flags),
            XDP_REDIRECT,
            Counter::RedirectTcp6,
        );
    }
    expect(
        &mut p,
        &tcp_to(OURS, closed, SYN | 0x01),
        XDP_DROP,
        Counter::DropFlagsSynFin,
    );
    p.own_addr6(OURS, false).unwrap();
    expect(
        &mut p,
        &tcp_to(OURS, closed, SYN),
        XDP_PASS,
        Counter::PassIpv6PortNotOwned,
    );
    expect(
        &mut p,
        &tcp_to(OURS, PORT, ACK),
        XDP_REDIRECT,
        Counter::RedirectTcp6,
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

// ---- SYN cookies and the known-flow fast path over IPv6.

use stack_ebpf::{cookie, CookieMeta, COOKIE_META_MAGIC, META_NO_WSCALE, META_SACK, META_TS};
use xstack::datapath::fastpath::{CookiePath, FastpathSettings, SynCookies};

const XDP_TX: u32 = 3;
const SEQ: u32 = 0x1000_0000;
const RST: u8 = 0x04;

/// A segment from PEER:`sport` to OURS:PORT.
fn seg6(sport: u16, flags: u8, seq: u32, ack: u32, opts: &[u8], payload: &[u8]) -> Vec<u8> {
    LINK.tcp(&TcpSegment {
        src_port: sport,
        dst_port: PORT,
        seq,
        ack,
        flags,
        window: 64240,
        options: opts,
        payload,
        ..TcpSegment::default()
    })
}

/// Linux's SYN options: MSS `mss`, SACK-permitted, TS(tsval, 0), NOP, WS 7.
fn linux_syn_opts(mss: u16, tsval: u32) -> Vec<u8> {
    let mut o = vec![2, 4];
    o.extend_from_slice(&mss.to_be_bytes());
    o.extend_from_slice(&[4, 2, 8, 10]);
    o.extend_from_slice(&tsval.to_be_bytes());
    o.extend_from_slice(&[0, 0, 0, 0, 1, 3, 3, 7]);
    o
}

/// Cookie mode `mode`, MSS `mss` (IPv4's: MTU − 40), cookie SYN-ACKs sent
/// by `path`.
fn cookies(p: &mut XdpProgram, mode: SynCookies, mss: u16, path: CookiePath) {
    p.set_config(
        &FastpathSettings {
            syncookies: mode,
            mss,
            cookie_path: path,
            ..Default::default()
        }
        .to_config(),
    )
    .unwrap();
}

fn flow6(sport: u16) -> cookie::Flow6 {
    cookie::Flow6 {
        saddr: PEER.octets(),
        daddr: OURS.octets(),
        sport,
        dport: PORT,
    }
}

/// The MSS index the cookie `isn` carries for the SYN `SEQ` from `sport`
/// (issued this minute or the last).
fn cookie_index(p: &XdpProgram, sport: u16, isn: u32) -> Option<u32> {
    let secrets = p.secrets().unwrap();
    let c = now_count();
    cookie::check(&secrets, &flow6(sport), SEQ, isn, c)
        .or_else(|| cookie::check(&secrets, &flow6(sport), SEQ, isn, c + 1))
}

/// Checks every field of an IPv6 cookie SYN-ACK to PEER:40000 announcing
/// `mss`; `syn_tsval`: the SYN's TSval when it had Linux's options.
/// Returns (ISN, TSval).
fn check_synack6(out: &[u8], mss: u16, syn_tsval: Option<u32>) -> (u32, Option<u32>) {
    use xstack::wire::{checksum, ethernet};
    let (eth, ip) = ethernet::EthernetRepr::parse(out).unwrap();
    assert_eq!(eth.dst, LINK.src_mac, "back to the sender");
    assert_eq!(eth.src, LINK.dst_mac);
    assert_eq!(eth.ethertype, ethernet::ETHERTYPE_IPV6);
    let want_len = if syn_tsval.is_some() { 40 } else { 24 };
    assert_eq!(out.len(), 14 + 40 + want_len, "no trailing bytes");
    // Version 6, traffic class and flow label 0 (RFC 8200 §3).
    assert_eq!(&ip[0..4], &[0x60, 0, 0, 0]);
    let (r, t) = ipv6::Ipv6Repr::parse(ip).unwrap();
    assert_eq!(
        (r.src, r.dst, r.next_header, r.hop_limit, r.payload_len),
        (OURS, PEER, ipv6::NH_TCP, 64, want_len)
    );
    // RFC 8200 §8.1 pseudo-header.
    let sum = checksum::pseudo_header(OURS, PEER, 6, t.len() as u16);
    assert_eq!(checksum::finish(checksum::sum(sum, t)), 0, "TCP checksum");
    // MSS MTU - 60.
    check_synack_tcp(t, PORT, SEQ, mss, syn_tsval)
}

#[test]
fn an_ipv6_syn_in_cookie_mode_gets_a_well_formed_cookie_syn_ack() {
    let (mut p, _s, _t) = program();
    cookies(&mut p, SynCookies::Always, 1400, CookiePath::Xdp);
    // Linux's options: MSS 1460 clamped to ours, 1400 - 20.
    let (v, c, out, meta) = moved(
        &mut p,
        &seg6(40000, SYN, SEQ, 0, &linux_syn_opts(1460, 4242), &[]),
    );
    assert_eq!((v, c, meta), (XDP_TX, Counter::TxCookieSynAck6, 0));
    let (isn, tsval) = check_synack6(&out, 1380, Some(4242));
    assert_eq!(
        cookie_index(&p, 40000, isn),
        Some(cookie::mss_index(1380)),
        "the cookie is over both 128-bit addresses and carries MSS 1380"
    );
    let o = cookie::decode_ts(tsval.unwrap(), 1).unwrap();
    assert_eq!((o.wscale, o.sack, o.ecn), (Some(7), true, false));
    // Wireshark agrees: checksum good, hop limit, flags, MSS, options.
    assert_eq!(
        tshark_fields(
            &out,
            &[
                "ipv6.hlim",
                "tcp.flags",
                "tcp.options.mss_val",
                "tcp.options.wscale.shift",
                "tcp.options.timestamp.tsecr",
                "tcp.checksum.status",
            ]
        ),
        "64\t0x0012\t1380\t7\t4242\t1"
    );
    // Without options: MSS 536 (RFC 9293 default), no timestamps.
    let (v, c, out, _) = moved(&mut p, &seg6(40000, SYN, SEQ, 0, &[], &[]));
    assert_eq!((v, c), (XDP_TX, Counter::TxCookieSynAck6));
    let (isn, _) = check_synack6(&out, 1380, None);
    assert_eq!(cookie_index(&p, 40000, isn), Some(0));
    assert_eq!(
        tshark_fields(&out, &["tcp.len", "tcp.hdr_len", "tcp.checksum.status"]),
        "0\t24\t1"
    );
    assert_eq!(p.tcp_classes().unwrap()["syn"], 2);
    assert_ne!(p.fastpath_state().unwrap().last_cookie_ns, 0);
}

#[test]
fn an_ipv6_cookie_carries_the_peers_mss_clamped_to_mtu_minus_60() {
    let (mut p, _s, _t) = program();
    // A 1500-byte link: MSS 1460 over IPv4, 1440 over IPv6.
    cookies(&mut p, SynCookies::Always, 1460, CookiePath::Xdp);
    for (peer_mss, announced, index) in [
        (1460, 1440, 2), // clamped: 1460 would not fit in an IPv6 packet
        (1440, 1440, 2),
        (1400, 1440, 1),
        (1300, 1440, 1),
        (1000, 1440, 0),
    ] {
        let (v, _, out, _) = moved(
            &mut p,
            &seg6(40000, SYN, SEQ, 0, &linux_syn_opts(peer_mss, 1), &[]),
        );
        assert_eq!(v, XDP_TX);
        let (isn, _) = check_synack6(&out, announced, Some(1));
        assert_eq!(
            cookie_index(&p, 40000, isn),
            Some(index),
            "peer MSS {peer_mss}"
        );
    }
}

/// The final ACK of the handshake of `linux_syn_opts(1460, 4242)` from
/// `sport`, echoing the cookie SYN-ACK's TSval: (ACK, its TSval echo).
fn cookie_handshake(p: &mut XdpProgram, sport: u16) -> (u32, u32) {
    let (v, _, out, _) = moved(
        p,
        &seg6(sport, SYN, SEQ, 0, &linux_syn_opts(1460, 4242), &[]),
    );
    assert_eq!(v, XDP_TX);
    let t = &out[14 + 40..];
    let isn = u32::from_be_bytes(t[4..8].try_into().unwrap());
    let tsval = u32::from_be_bytes(t[28..32].try_into().unwrap());
    (isn, tsval)
}

fn ts_opts(tsval: u32, tsecr: u32) -> Vec<u8> {
    let mut o = vec![1, 1, 8, 10];
    o.extend_from_slice(&tsval.to_be_bytes());
    o.extend_from_slice(&tsecr.to_be_bytes());
    o
}

#[test]
fn a_valid_ipv6_cookie_ack_is_redirected_with_its_options_as_metadata() {
    let (mut p, _s, _t) = program();
    cookies(&mut p, SynCookies::Always, 1400, CookiePath::Xdp);
    let (isn, tsval) = cookie_handshake(&mut p, 40000);
    let ack = seg6(
        40000,
        ACK,
        SEQ + 1,
        isn.wrapping_add(1),
        &ts_opts(4243, tsval),
        &[],
    );
    let (v, c, out, meta_len) = moved(&mut p, &ack);
    assert_eq!((v, c), (XDP_REDIRECT, Counter::RedirectCookieAck6));
    assert_eq!(meta_len, stack_ebpf::COOKIE_META_LEN);
    let m: CookieMeta = bytemuck::pod_read_unaligned(&out[..meta_len]);
    assert_eq!(m.magic, COOKIE_META_MAGIC);
    assert_eq!(m.mss, 1300, "MSS 1380 rounds down to the 1300 entry");
    assert_eq!(m.wscale, 7);
    assert_eq!(m.flags, META_TS | META_SACK);
    assert_eq!((m.tsval, m.tsecr), (4243, tsval));
    assert_eq!(&out[meta_len..], &ack[..], "the frame itself is untouched");
    assert_eq!(xstack::iface::cookie_meta(&out[..meta_len]), Some(m));
    // The flow is known now: its data takes the fast path, no metadata.
    let data = seg6(40000, ACK | 0x08, SEQ + 1, isn.wrapping_add(1), &[], b"GET");
    let (v, c, _, meta_len) = moved(&mut p, &data);
    assert_eq!((v, c, meta_len), (XDP_REDIRECT, Counter::RedirectTcp6, 0));

    // Without timestamps: only the MSS comes back.
    let (v, _, out, _) = moved(&mut p, &seg6(40001, SYN, SEQ, 0, &[2, 4, 0x05, 0xa0], &[]));
    assert_eq!(v, XDP_TX);
    let isn = u32::from_be_bytes(out[14 + 40 + 4..14 + 40 + 8].try_into().unwrap());
    let (v, c, out, meta_len) = moved(
        &mut p,
        &seg6(40001, ACK, SEQ + 1, isn.wrapping_add(1), &[], &[]),
    );
    assert_eq!(
        (v, c, meta_len),
        (XDP_REDIRECT, Counter::RedirectCookieAck6, 16)
    );
    let m: CookieMeta = bytemuck::pod_read_unaligned(&out[..16]);
    assert_eq!((m.mss, m.wscale, m.flags), (1300, META_NO_WSCALE, 0));
}

#[test]
fn forged_and_expired_ipv6_cookie_acks_are_dropped_and_counted() {
    let (mut p, _s, _t) = program();
    cookies(&mut p, SynCookies::Always, 1400, CookiePath::Xdp);
    let secrets = p.secrets().unwrap();
    let (isn, _) = cookie_handshake(&mut p, 40000);
    let before = p.counters().unwrap()["drop_cookie_invalid"];
    // Forged: another ack number; another client sequence number.
    let (v, c, _, _) = moved(
        &mut p,
        &seg6(40000, ACK, SEQ + 1, isn ^ 0x0100_0000, &[], &[]),
    );
    assert_eq!((v, c), (XDP_DROP, Counter::DropCookieInvalid));
    let (v, c, _, _) = moved(
        &mut p,
        &seg6(40000, ACK, SEQ + 0x0100_0000, isn + 1, &[], &[]),
    );
    assert_eq!((v, c), (XDP_DROP, Counter::DropCookieInvalid));
    // The cookie of this SYN from another source address (the hash covers
    // all 128 bits of both): not valid here.
    let other = Endpoints6 {
        src_ip: Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 1, 1),
        ..LINK
    };
    let ack_from_other = other.tcp(&TcpSegment {
        src_port: 40000,
        dst_port: PORT,
        seq: SEQ + 1,
        ack: isn.wrapping_add(1),
        flags: ACK,
        ..TcpSegment::default()
    });
    let (v, c, _, _) = moved(&mut p, &ack_from_other);
    assert_eq!((v, c), (XDP_DROP, Counter::DropCookieInvalid));
    // Expired: a cookie of the right secret issued MAX_AGE minutes ago.
    let old = cookie::generate(
        &secrets.current,
        &flow6(40000),
        SEQ,
        now_count().wrapping_sub(cookie::MAX_AGE),
        3,
    );
    let (v, c, _, _) = moved(
        &mut p,
        &seg6(40000, ACK, SEQ + 1, old.wrapping_add(1), &[], &[]),
    );
    assert_eq!((v, c), (XDP_DROP, Counter::DropCookieInvalid));
    assert_eq!(p.counters().unwrap()["drop_cookie_invalid"] - before, 4);
    // A RST for no known flow.
    let (v, c, _, _) = moved(&mut p, &seg6(40000, RST, SEQ + 1, 0, &[], &[]));
    assert_eq!((v, c), (XDP_DROP, Counter::DropNoFlow));
    // The real one still passes, under the previous secret after a rotation.
    p.set_secrets(&xstack::datapath::fastpath::rotate(&secrets, now_count()))
        .unwrap();
    let (v, c, _, _) = moved(
        &mut p,
        &seg6(40000, ACK, SEQ + 1, isn.wrapping_add(1), &[], &[]),
    );
    assert_eq!((v, c), (XDP_REDIRECT, Counter::RedirectCookieAck6));
}

#[test]
fn the_ipv6_known_flow_fast_path_passes_known_flows_and_checks_unknown_ones_while_cookies_are_in_use(
) {
    let (mut p, _s, _t) = program();
    // No cookie issued yet: an unknown ACK is the engine's business.
    expect(
        &mut p,
        &seg6(41000, ACK, SEQ + 1, 5, &[], &[]),
        XDP_REDIRECT,
        Counter::RedirectTcp6,
    );
    // Cookies off: the SYN goes to the engine and its flow is recorded.
    cookies(&mut p, SynCookies::Never, 1400, CookiePath::Xdp);
    expect(
        &mut p,
        &seg6(41000, SYN, SEQ, 0, &[], &[]),
        XDP_REDIRECT,
        Counter::RedirectTcp6,
    );
    // A SYN-ACK for a connection the engine opened is recorded too.
    expect(
        &mut p,
        &seg6(41001, SYN | ACK, SEQ, 77, &[], &[]),
        XDP_REDIRECT,
        Counter::RedirectTcp6,
    );
    // Cookies on (one issued on another tuple): known flows still take
    // the fast path...
    cookies(&mut p, SynCookies::Always, 1400, CookiePath::Xdp);
    cookie_handshake(&mut p, 41002);
    for sport in [41000, 41001] {
        expect(
            &mut p,
            &seg6(sport, ACK, SEQ + 1, 5, &[], &[]),
            XDP_REDIRECT,
            Counter::RedirectTcp6,
        );
        expect(
            &mut p,
            &seg6(sport, ACK | 0x08, SEQ + 1, 5, &[], b"x"),
            XDP_REDIRECT,
            Counter::RedirectTcp6,
        );
        expect(
            &mut p,
            &seg6(sport, RST, SEQ + 1, 0, &[], &[]),
            XDP_REDIRECT,
            Counter::RedirectTcp6,
        );
    }
    // ...and an unknown one's ACK is checked as a cookie: a miss.
    expect(
        &mut p,
        &seg6(41003, ACK, SEQ + 1, 5, &[], &[]),
        XDP_DROP,
        Counter::DropCookieInvalid,
    );
    // Classed as over IPv4.
    let classes = p.tcp_classes().unwrap();
    assert!(classes["ack"] >= 3 && classes["data"] >= 2 && classes["rst"] >= 2);
}

/// The unknown-segment filter over IPv6: `FILTER_UNTIL` in the future
/// makes XDP check segments without SYN against `FLOWS6` with no cookie in
/// use; in the past, they go to the engine again.
#[test]
fn the_unknown_segment_filter_drops_forged_ipv6_acks_and_rsts_until_its_deadline() {
    use xstack::datapath::xdp::monotonic_ns;
    let (mut p, _s, _t) = program();
    cookies(&mut p, SynCookies::Never, 1400, CookiePath::Xdp);
    expect(
        &mut p,
        &seg6(42000, SYN, SEQ, 0, &[], &[]),
        XDP_REDIRECT,
        Counter::RedirectTcp6,
    );
    p.set_filter_until(monotonic_ns() + 60_000_000_000).unwrap();
    let forged_ack = seg6(42001, ACK, SEQ + 1, 5, &[], &[]);
    let forged_rst = seg6(42001, RST, SEQ + 1, 0, &[], &[]);
    expect(&mut p, &forged_ack, XDP_DROP, Counter::DropCookieInvalid);
    expect(&mut p, &forged_rst, XDP_DROP, Counter::DropNoFlow);
    expect(
        &mut p,
        &seg6(42000, ACK, SEQ + 1, 5, &[], &[]),
        XDP_REDIRECT,
        Counter::RedirectTcp6,
    );
    // Past by more than a tick: XDP reads the coarse clock, which trails
    // CLOCK_MONOTONIC by up to one (`cookie::COARSE_CLOCK_SLACK_NS`).
    p.set_filter_until(monotonic_ns() - cookie::COARSE_CLOCK_SLACK_NS)
        .unwrap();
    expect(&mut p, &forged_ack, XDP_REDIRECT, Counter::RedirectTcp6);
    expect(&mut p, &forged_rst, XDP_REDIRECT, Counter::RedirectTcp6);
}

#[test]
fn a_cookie_syn_on_an_ipv6_tuple_the_engine_knows_lets_the_engines_own_handshake_through() {
    let (mut p, _s, _t) = program();
    cookies(&mut p, SynCookies::Never, 1400, CookiePath::Xdp);
    let syn = seg6(42000, SYN, SEQ, 0, &[], &[]);
    expect(&mut p, &syn, XDP_REDIRECT, Counter::RedirectTcp6);
    cookies(&mut p, SynCookies::Always, 1400, CookiePath::Xdp);
    let (v, _, out, _) = moved(&mut p, &syn);
    assert_eq!(v, XDP_TX);
    let isn = u32::from_be_bytes(out[14 + 40 + 4..14 + 40 + 8].try_into().unwrap());
    // The client took the engine's SYN-ACK: not a cookie, but the engine's.
    let (v, c, _, meta) = moved(&mut p, &seg6(42000, ACK, SEQ + 1, 0x1234_5679, &[], &[]));
    assert_eq!((v, c, meta), (XDP_REDIRECT, Counter::RedirectTcp6, 0));
    // Had it taken the cookie one, its ACK would go to the engine unchecked
    // as well: the engine checks a cookie ACK on a 4-tuple it holds.
    let (v, c, _, meta) = moved(
        &mut p,
        &seg6(42000, ACK, SEQ + 1, isn.wrapping_add(1), &[], &[]),
    );
    assert_eq!((v, c, meta), (XDP_REDIRECT, Counter::RedirectTcp6, 0));
    // On a 4-tuple nobody knows, the same ACK would be XDP's to check.
    let (v, _, out, _) = moved(&mut p, &seg6(42001, SYN, SEQ, 0, &[], &[]));
    assert_eq!(v, XDP_TX);
    let isn = u32::from_be_bytes(out[14 + 40 + 4..14 + 40 + 8].try_into().unwrap());
    let (v, c, _, _) = moved(
        &mut p,
        &seg6(42001, ACK, SEQ + 1, isn.wrapping_add(1), &[], &[]),
    );
    assert_eq!((v, c), (XDP_REDIRECT, Counter::RedirectCookieAck6));
}

#[test]
fn an_ipv6_syn_with_extension_headers_is_dropped_in_cookie_mode_and_goes_to_the_engine_otherwise() {
    let (mut p, _s, _t) = program();
    let syn = with_dest_opts(
        1,
        ipv6::NH_TCP,
        &seg6(43000, SYN, SEQ, 0, &[], &[])[14 + 40..],
    );
    cookies(&mut p, SynCookies::Always, 1400, CookiePath::Xdp);
    expect(&mut p, &syn, XDP_DROP, Counter::DropSynIpOptions);
    cookies(&mut p, SynCookies::Never, 1400, CookiePath::Xdp);
    expect(&mut p, &syn, XDP_REDIRECT, Counter::RedirectTcp6);
    // Bad TCP options are dropped as over IPv4.
    expect(
        &mut p,
        &seg6(43001, SYN, SEQ, 0, &[1, 1, 2, 4], &[]),
        XDP_DROP,
        Counter::DropTcpOptions,
    );
}

/// `auto` mode's SYN-rate window counts the SYNs of both families: 30
/// IPv4 and 19 IPv6 SYNs stay under 50 per window, the 50th (IPv6) turns
/// cookies on.
#[test]
fn auto_mode_counts_ipv4_and_ipv6_syns_in_one_window() {
    use std::net::Ipv4Addr;
    use xstack::wire::build::Endpoints;
    let (mut p, _s, _t) = program();
    let ours4 = Ipv4Addr::new(198, 18, 0, 2);
    p.own_addr(ours4).unwrap();
    p.own_port(ours4, PORT).unwrap();
    p.set_config(
        &FastpathSettings {
            syncookies: SynCookies::Auto,
            // 50 SYNs per 5 s window: room for a slow machine.
            syn_rate_on: 10,
            syn_rate_off: 2,
            syn_window_ms: 5000,
            cookie_path: CookiePath::Xdp,
            ..Default::default()
        }
        .to_config(),
    )
    .unwrap();
    let syn4 = Endpoints {
        src_mac: LINK.src_mac,
        dst_mac: LINK.dst_mac,
        src_ip: Ipv4Addr::new(198, 18, 0, 1),
        dst_ip: ours4,
    }
    .tcp(&TcpSegment {
        src_port: 45000,
        dst_port: PORT,
        seq: SEQ,
        flags: SYN,
        ..TcpSegment::default()
    });
    let syn6 = seg6(45000, SYN, SEQ, 0, &[], &[]);
    for _ in 0..30 {
        expect(&mut p, &syn4, XDP_REDIRECT, Counter::RedirectTcp);
    }
    for _ in 0..19 {
        expect(&mut p, &syn6, XDP_REDIRECT, Counter::RedirectTcp6);
    }
    expect(&mut p, &syn6, XDP_TX, Counter::TxCookieSynAck6);
    let st = p.fastpath_state().unwrap();
    assert_eq!((st.cookie_active, st.cookie_on_switches), (1, 1));
}

#[test]
fn auto_mode_answers_ipv6_syns_with_cookies_when_the_syn_queue_is_full() {
    let (mut p, _s, _t) = program();
    cookies(&mut p, SynCookies::Auto, 1400, CookiePath::Xdp);
    let syn = seg6(44000, SYN, SEQ, 0, &[], &[]);
    expect(&mut p, &syn, XDP_REDIRECT, Counter::RedirectTcp6);
    p.set_signal(stack_ebpf::SIGNAL_SYN_QUEUE_FULL, 1).unwrap();
    assert_eq!(run(&mut p, &syn), XDP_TX);
}

/// With `CFG_COOKIE_VIA_ENGINE` the IPv6 SYN-ACK XDP would have sent comes
/// to the socket marked, and the engine sends exactly it.
#[test]
fn the_engine_sends_the_ipv6_cookie_syn_ack_xdp_builds_byte_for_byte() {
    let (mut p, _s, _t) = program();
    for opts in [linux_syn_opts(1460, 4242), vec![]] {
        let syn = seg6(40000, SYN, SEQ, 0, &opts, &[]);
        // The TSval's clock ticks every 64 ms: the two runs fall in the
        // same tick on some try.
        let mut same = false;
        for _ in 0..5 {
            cookies(&mut p, SynCookies::Always, 1400, CookiePath::Xdp);
            let (v, _, by_xdp, _) = moved(&mut p, &syn);
            assert_eq!(v, XDP_TX);
            cookies(&mut p, SynCookies::Always, 1400, CookiePath::Engine);
            let (v, c, out, meta_len) = moved(&mut p, &syn);
            assert_eq!(
                (v, c, meta_len),
                (
                    XDP_REDIRECT,
                    Counter::RedirectCookieSynAck6,
                    stack_ebpf::COOKIE_META_LEN
                )
            );
            let (meta, frame) = out.split_at(meta_len);
            assert!(xstack::iface::is_cookie_synack(meta));
            let mut e = xstack::iface::Interface::new(xstack::iface::IfaceConfig {
                mac: LINK.dst_mac,
                addrs: Vec::new(),
                addrs6: vec![OURS],
                ports: vec![PORT],
                app: xstack::apps::App::Echo,
                response_bytes: 0,
                echo_body: false,
                max_body: xstack::apps::http::DEFAULT_MAX_BODY,
                tcp: xstack::tcp::TcpConfig::default(),
                backlog: 128,
                secret: [7; 16],
                mtu: 1500,
            });
            let mut sink = xstack::iface::VecSink::default();
            e.handle_frame_meta(xstack::time::Instant(0), meta, frame, &mut sink);
            assert_eq!(sink.frames.len(), 1, "the engine sends one frame");
            assert_eq!(e.stats().cookie_synacks_sent, 1);
            assert_eq!(e.tcp_connections(), 0, "no state kept");
            check_synack6(&sink.frames[0], 1380, (!opts.is_empty()).then_some(4242));
            if sink.frames[0] == by_xdp {
                same = true;
                break;
            }
        }
        assert!(same, "engine and XDP SYN-ACKs differ for options {opts:?}");
    }
}
