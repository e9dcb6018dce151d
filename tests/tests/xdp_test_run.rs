//! The real XDP program run on crafted frames with BPF_PROG_TEST_RUN
//! (`aya::programs::TestRun`): every verdict and drop reason, and the counter
//! each one increments.

use std::net::Ipv4Addr;

use aya::programs::{TestRun, TestRunOptions};
use stack_ebpf::Counter;
use xstack::{
    datapath::xdp::XdpProgram,
    datapath::xsk::{XskConfig, XskMode, XskSocket},
    wire::{
        build::{Endpoints, Endpoints6, TcpSegment},
        ethernet::{self, Mac},
        ipv4::{self, Ipv4Repr},
        tcp::TcpPacket,
    },
};
use xstack_tests::xdp_run::{
    check_synack_tcp, clock_ns, expect, moved, now_count, run, tshark_fields,
};

const XDP_ABORTED: u32 = 0;
const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const XDP_REDIRECT: u32 = 4;

const OURS: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const OTHER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 9);
const PEER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const PORT: u16 = 8080;

/// One AF_XDP socket per (interface, queue): tests that bind `lo` queue 0
/// take turns.
static LO_QUEUE0: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// What a test holds: the program, the socket and the turn on `lo`.
type Loaded = (
    XdpProgram,
    Option<(XskSocket, std::sync::MutexGuard<'static, ()>)>,
);

/// A loaded program owning OURS:PORT. With `socket`, an AF_XDP socket bound
/// to `lo` queue 0 fills XSKMAP slot 0, so redirects to queue 0 succeed
/// (`lo` has no XDP program attached: no live traffic is affected).
fn program(socket: bool) -> Loaded {
    let mut p = XdpProgram::load(None).expect("load XDP program (built by cargo xtask build?)");
    p.own_addr(OURS).unwrap();
    p.own_port(OURS, PORT).unwrap();
    let sock = socket.then(|| {
        let turn = LO_QUEUE0.lock().unwrap_or_else(|e| e.into_inner());
        let s = XskSocket::open(
            "lo",
            0,
            &XskConfig {
                frames: 64,
                ring_size: 32,
                mode: XskMode::Copy,
                ..XskConfig::default()
            },
        )
        .expect("AF_XDP socket on lo");
        p.register_socket(0, s.fd()).unwrap();
        (s, turn)
    });
    (p, sock)
}

/// Frames from the peer to the stack's address.
const LINK: Endpoints = Endpoints {
    src_mac: Mac([2, 0, 0, 0, 0, 1]),
    dst_mac: Mac([2, 0, 0, 0, 0, 2]),
    src_ip: PEER,
    dst_ip: OURS,
};

fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    LINK.ethernet(ethertype, payload)
}

fn ipv4(dst: Ipv4Addr, proto: u8, body: &[u8]) -> Vec<u8> {
    Endpoints {
        dst_ip: dst,
        ..LINK
    }
    .ipv4(proto, body)
}

/// A bare SYN header to `dport` with data offset `doff` and no checksum.
fn tcp(dport: u16, doff: u8) -> Vec<u8> {
    TcpSegment {
        src_port: 40000,
        dst_port: dport,
        flags: 0x02, // SYN
        data_offset: Some(doff),
        checksum: false,
        ..TcpSegment::default()
    }
    .emit(PEER, OURS)
}

fn arp_request(target: Ipv4Addr) -> Vec<u8> {
    LINK.arp_request(target)
}

#[test]
fn owned_tcp_is_redirected_to_the_queue_socket() {
    let (mut p, _sock) = program(true);
    expect(
        &mut p,
        &ipv4(OURS, ipv4::PROTO_TCP, &tcp(PORT, 5)),
        XDP_REDIRECT,
        Counter::RedirectTcp,
    );
    assert_eq!(p.queue_redirects(1).unwrap(), vec![1]);
}

/// Issue 11, failure 4: a closed port on an address no kernel interface
/// has went to the kernel, which does not have the address and stayed
/// silent; the client waited for its own timeout.
#[test]
fn tcp_to_a_closed_port_of_an_address_the_engine_owns_alone_goes_to_the_engine() {
    let (mut p, _sock) = program(true);
    p.own_addr_exclusively(OURS).unwrap();
    let closed = PORT + 1;
    // A SYN, and an ACK (no SYN), both to the closed port: the engine
    // answers them with RST.
    expect(
        &mut p,
        &ipv4(OURS, ipv4::PROTO_TCP, &tcp(closed, 5)),
        XDP_REDIRECT,
        Counter::RedirectTcpClosedPort,
    );
    expect(
        &mut p,
        &segment_to(closed, 0x10, 1, 1),
        XDP_REDIRECT,
        Counter::RedirectTcpClosedPort,
    );
    // Never a cookie for a closed port, even in cookie mode.
    cookies(&mut p, SynCookies::Always);
    expect(
        &mut p,
        &segment_to(closed, 0x02, 1000, 0),
        XDP_REDIRECT,
        Counter::RedirectTcpClosedPort,
    );
    // Nonsense flags are still dropped.
    expect(
        &mut p,
        &segment_to(closed, 0x03, 1, 0),
        XDP_DROP,
        Counter::DropFlagsSynFin,
    );
    // The served port keeps its own path: a cookie SYN-ACK.
    expect(
        &mut p,
        &segment_to(PORT, 0x02, 1000, 0),
        XDP_TX,
        Counter::TxCookieSynAck,
    );
}

#[test]
fn tcp_to_a_port_nobody_serves_on_a_shared_address_stays_with_the_kernel() {
    let (mut p, _sock) = program(true);
    expect(
        &mut p,
        &ipv4(OURS, ipv4::PROTO_TCP, &tcp(PORT + 1, 5)),
        XDP_PASS,
        Counter::PassPortNotOwned,
    );
}

/// The owned ports are a bitmap per owned address (`OWNED_PORT_BITS`, a
/// slot per address): a port is owned only on the address that claimed
/// it, every bit of a word stands alone (ports 0, 63, 64, 65535 around
/// the words' edges), and a port claimed before its address is owned
/// takes effect once the address is.
#[test]
fn an_owned_port_is_owned_on_its_own_address_only() {
    let (mut p, _sock) = program(true);
    let to = |dst: Ipv4Addr, port: u16| ipv4(dst, ipv4::PROTO_TCP, &tcp(port, 5));
    // OTHER: its ports claimed first, the address afterwards.
    for port in [0, 63, 65535] {
        p.own_port(OTHER, port).unwrap();
    }
    expect(&mut p, &to(OTHER, 63), XDP_PASS, Counter::PassIpNotOwned);
    p.own_addr(OTHER).unwrap();
    for port in [0, 63, 65535] {
        expect(&mut p, &to(OTHER, port), XDP_REDIRECT, Counter::RedirectTcp);
        // OURS never claimed these.
        expect(&mut p, &to(OURS, port), XDP_PASS, Counter::PassPortNotOwned);
    }
    for port in [1, 62, 64, 65534, PORT] {
        expect(
            &mut p,
            &to(OTHER, port),
            XDP_PASS,
            Counter::PassPortNotOwned,
        );
    }
    // OURS keeps PORT, and claiming its address again keeps its ports.
    expect(&mut p, &to(OURS, PORT), XDP_REDIRECT, Counter::RedirectTcp);
    p.own_addr(OURS).unwrap();
    expect(&mut p, &to(OURS, PORT), XDP_REDIRECT, Counter::RedirectTcp);
    expect(
        &mut p,
        &to(OURS, PORT + 1),
        XDP_PASS,
        Counter::PassPortNotOwned,
    );
}

/// As many owned addresses as the table holds (`MAX_OWNED_ADDRS`), in a
/// shape whose homes collide (seeded random addresses of 198.18.0.0/15,
/// host number 9, so some sit past their home entry): each is found by
/// ARP and TCP with its own port, the one more is refused in one line,
/// and its neighbour (host number 10) stays the kernel's.
#[test]
fn every_owned_address_up_to_the_limit_is_found_and_no_other() {
    let (mut p, _sock) = program(true);
    // OURS is owned already: MAX - 1 more, distinct.
    let n = stack_ebpf::MAX_OWNED_ADDRS - 1;
    let mut x = 0x9e37_79b9u32;
    let mut seen = std::collections::HashSet::new();
    let mut addrs = Vec::new();
    while addrs.len() < n as usize {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let a = Ipv4Addr::new(198, 18 | (x as u8 & 1), (x >> 8) as u8, 9);
        if a != OURS && seen.insert(a) {
            addrs.push(a);
        }
    }
    let addr = |i: u32| addrs[i as usize];
    let homes: std::collections::HashSet<u32> = (0..n)
        .map(|i| stack_ebpf::addr_home(u32::from_ne_bytes(addr(i).octets())))
        .collect();
    assert!(homes.len() < n as usize, "the shape has no collision");
    for i in 0..n {
        p.own_addr(addr(i)).unwrap();
        p.own_port(addr(i), 1000 + i as u16).unwrap();
    }
    let to = |dst: Ipv4Addr, port: u16| ipv4(dst, ipv4::PROTO_TCP, &tcp(port, 5));
    for i in 0..n {
        let a = addr(i);
        expect(&mut p, &arp_request(a), XDP_REDIRECT, Counter::RedirectArp);
        let port = 1000 + i as u16;
        expect(&mut p, &to(a, port), XDP_REDIRECT, Counter::RedirectTcp);
        expect(
            &mut p,
            &to(a, port + 1),
            XDP_PASS,
            Counter::PassPortNotOwned,
        );
        let o = a.octets();
        let b = Ipv4Addr::new(o[0], o[1], o[2], 10);
        expect(&mut p, &to(b, port), XDP_PASS, Counter::PassIpNotOwned);
    }
    expect(&mut p, &to(OURS, PORT), XDP_REDIRECT, Counter::RedirectTcp);
    let more = p.own_addr(Ipv4Addr::new(198, 19, 255, 254)).unwrap_err();
    assert!(
        more.to_string().contains("above the limit of 256"),
        "{more}"
    );
}

/// A well-formed segment from the peer to `dport`.
fn segment_to(dport: u16, flags: u8, seq: u32, ack: u32) -> Vec<u8> {
    LINK.tcp(&TcpSegment {
        src_port: 40001,
        dst_port: dport,
        seq,
        ack,
        flags,
        window: 64240,
        ..TcpSegment::default()
    })
}

#[test]
fn arp_and_icmp_for_the_stack_address_are_redirected() {
    let (mut p, _sock) = program(true);
    expect(
        &mut p,
        &arp_request(OURS),
        XDP_REDIRECT,
        Counter::RedirectArp,
    );
    let echo = [8u8, 0, 0xf7, 0xff, 0, 0, 0, 0];
    expect(
        &mut p,
        &ipv4(OURS, ipv4::PROTO_ICMP, &echo),
        XDP_REDIRECT,
        Counter::RedirectIcmp,
    );
}

#[test]
fn owned_tcp_without_a_socket_on_its_queue_is_dropped() {
    let (mut p, _) = program(false);
    expect(
        &mut p,
        &ipv4(OURS, ipv4::PROTO_TCP, &tcp(PORT, 5)),
        XDP_DROP,
        Counter::DropNoSocket,
    );
}

#[test]
fn traffic_that_is_not_ours_passes_to_the_kernel() {
    let (mut p, _sock) = program(true);
    expect(
        &mut p,
        &ipv4(OURS, ipv4::PROTO_TCP, &tcp(22, 5)),
        XDP_PASS,
        Counter::PassPortNotOwned,
    );
    expect(
        &mut p,
        &ipv4(OTHER, ipv4::PROTO_TCP, &tcp(PORT, 5)),
        XDP_PASS,
        Counter::PassIpNotOwned,
    );
    expect(
        &mut p,
        &ipv4(OURS, ipv4::PROTO_UDP, &[0u8; 8]),
        XDP_PASS,
        Counter::PassOtherProto,
    );
    expect(&mut p, &arp_request(OTHER), XDP_PASS, Counter::PassArpOther);
    expect(
        &mut p,
        &eth(0x86dd, &[0x60; 40]),
        XDP_PASS,
        Counter::PassIpv6NotOwned,
    );
    expect(
        &mut p,
        &eth(0x88cc, &[0; 40]),
        XDP_PASS,
        Counter::PassNotIpv4,
    );
}

#[test]
fn truncated_frames_are_passed_or_dropped_by_whether_they_are_ours() {
    let (mut p, _sock) = program(true);
    // Too short to read the IPv4 destination: not attributable, passed.
    let short_ip = eth(ethernet::ETHERTYPE_IPV4, &[0x45; 12]);
    expect(&mut p, &short_ip, XDP_PASS, Counter::PassShortIp);
    // Truncated ARP: passed (the kernel drops it).
    expect(
        &mut p,
        &arp_request(OURS)[..30],
        XDP_PASS,
        Counter::PassArpOther,
    );
    // Ours, but the IPv4 total length claims more than the frame holds.
    let mut long = ipv4(OURS, ipv4::PROTO_TCP, &tcp(PORT, 5));
    long[14 + 2..14 + 4].copy_from_slice(&200u16.to_be_bytes());
    expect(&mut p, &long, XDP_DROP, Counter::DropIpLength);
    // Ours, TCP header cut to 10 bytes.
    let cut = ipv4(OURS, ipv4::PROTO_TCP, &tcp(PORT, 5)[..10]);
    expect(&mut p, &cut, XDP_DROP, Counter::DropTcpTruncated);
}

#[test]
fn malformed_headers_to_owned_addresses_are_dropped_by_reason() {
    let (mut p, _sock) = program(true);
    let mut v6_in_v4 = ipv4(OURS, ipv4::PROTO_TCP, &tcp(PORT, 5));
    v6_in_v4[14] = 0x65;
    expect(&mut p, &v6_in_v4, XDP_DROP, Counter::DropIpHeader);
    let mut ihl3 = ipv4(OURS, ipv4::PROTO_TCP, &tcp(PORT, 5));
    ihl3[14] = 0x43;
    expect(&mut p, &ihl3, XDP_DROP, Counter::DropIpHeader);
    let mut frag = ipv4(OURS, ipv4::PROTO_TCP, &tcp(PORT, 5));
    frag[14 + 6..14 + 8].copy_from_slice(&0x2000u16.to_be_bytes()); // MF
    expect(&mut p, &frag, XDP_DROP, Counter::DropIpFragment);
    let mut later_frag = ipv4(OURS, ipv4::PROTO_TCP, &tcp(PORT, 5));
    later_frag[14 + 6..14 + 8].copy_from_slice(&0x0010u16.to_be_bytes()); // offset 128
    expect(&mut p, &later_frag, XDP_DROP, Counter::DropIpFragment);
    expect(
        &mut p,
        &ipv4(OURS, ipv4::PROTO_TCP, &tcp(PORT, 3)),
        XDP_DROP,
        Counter::DropTcpDataOffset,
    );
    expect(
        &mut p,
        &ipv4(OURS, ipv4::PROTO_TCP, &tcp(PORT, 15)),
        XDP_DROP,
        Counter::DropTcpDataOffset,
    );
}

#[test]
fn verdicts_never_abort() {
    // Every prefix of every crafted frame gets a real verdict, never
    // XDP_ABORTED (which would mean the program bailed out).
    let (mut p, _sock) = program(true);
    let frames = [
        ipv4(OURS, ipv4::PROTO_TCP, &tcp(PORT, 5)),
        arp_request(OURS),
        ipv4(OURS, ipv4::PROTO_ICMP, &[8, 0, 0xf7, 0xff, 0, 0, 0, 0]),
    ];
    let mut n = 0;
    for f in &frames {
        for len in 14..=f.len() {
            let v = run(&mut p, &f[..len]);
            assert_ne!(v, XDP_ABORTED, "aborted on a {len}-byte prefix");
            n += 1;
        }
    }
    assert_eq!(p.counters().unwrap()["rx_packets"], n);
}

// ---- Flags, options, SYN cookies.

use stack_ebpf::{cookie, CookieMeta, COOKIE_META_MAGIC, META_NO_WSCALE, META_SACK, META_TS};
use xstack::datapath::fastpath::{FastpathSettings, SynCookies};

const XDP_TX: u32 = 3;
const SEQ: u32 = 0x1000_0000;

/// A TCP segment from PEER:40000 with `flags`, options `opts` (padded to
/// 4 bytes with NOPs... callers pass whole words) and `payload`.
fn segment(flags: u8, seq: u32, ack: u32, opts: &[u8], payload: &[u8]) -> Vec<u8> {
    LINK.tcp(&TcpSegment {
        src_port: 40000,
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

/// Linux's SYN options: MSS 1460, SACK-permitted, TS(tsval, 0), NOP, WS 7.
fn linux_syn_opts(tsval: u32) -> Vec<u8> {
    let mut o = vec![2, 4, 0x05, 0xb4, 4, 2, 8, 10];
    o.extend_from_slice(&tsval.to_be_bytes());
    o.extend_from_slice(&[0, 0, 0, 0, 1, 3, 3, 7]);
    o
}

fn cookies(p: &mut XdpProgram, mode: SynCookies) {
    p.set_config(
        &FastpathSettings {
            syncookies: mode,
            mss: 1400,
            ..Default::default()
        }
        .to_config(),
    )
    .unwrap();
}

fn flow() -> cookie::Flow {
    cookie::Flow {
        saddr: u32::from(PEER),
        daddr: u32::from(OURS),
        sport: 40000,
        dport: PORT,
    }
}

#[test]
fn invalid_flag_combinations_are_dropped_by_reason() {
    let (mut p, _sock) = program(true);
    for (flags, counter) in [
        (0x00, Counter::DropFlagsNone),
        (0x3f, Counter::DropFlagsAll),
        (0xff, Counter::DropFlagsAll),
        (0x03, Counter::DropFlagsSynFin),
        (0x13, Counter::DropFlagsSynFin),
        (0x06, Counter::DropFlagsSynRst),
        (0x01, Counter::DropFlagsFinNoAck),
        (0x09, Counter::DropFlagsFinNoAck),
        (0x08, Counter::DropFlagsNoAck),
        (0x20, Counter::DropFlagsNoAck),
    ] {
        expect(&mut p, &segment(flags, SEQ, 0, &[], &[]), XDP_DROP, counter);
    }
    // Valid ones are classed and redirected.
    let before = p.tcp_classes().unwrap();
    for flags in [0x02, 0x12, 0x10, 0x11, 0x04, 0x14] {
        expect(
            &mut p,
            &segment(flags, SEQ, 1, &[], &[]),
            XDP_REDIRECT,
            Counter::RedirectTcp,
        );
    }
    expect(
        &mut p,
        &segment(0x18, SEQ, 1, &[], b"data"),
        XDP_REDIRECT,
        Counter::RedirectTcp,
    );
    let after = p.tcp_classes().unwrap();
    for (class, n) in [
        ("syn", 1),
        ("synack", 1),
        ("ack", 1),
        ("fin", 1),
        ("rst", 2),
        ("data", 1),
    ] {
        assert_eq!(after[class] - before[class], n, "class {class}");
    }
}

#[test]
fn syns_with_truncated_or_bad_options_are_dropped() {
    let (mut p, _sock) = program(true);
    // MSS option claiming 4 bytes with only 2 left in the header.
    let cut = [1, 1, 2, 4];
    expect(
        &mut p,
        &segment(0x02, SEQ, 0, &cut, &[]),
        XDP_DROP,
        Counter::DropTcpOptions,
    );
    // Option length 1 (below the minimum of 2).
    expect(
        &mut p,
        &segment(0x02, SEQ, 0, &[8, 1, 0, 0], &[]),
        XDP_DROP,
        Counter::DropTcpOptions,
    );
    // Window scale with a wrong length.
    expect(
        &mut p,
        &segment(0x02, SEQ, 0, &[3, 4, 7, 0], &[]),
        XDP_DROP,
        Counter::DropTcpOptions,
    );
    // Well-formed Linux options pass.
    expect(
        &mut p,
        &segment(0x02, SEQ, 0, &linux_syn_opts(77), &[]),
        XDP_REDIRECT,
        Counter::RedirectTcp,
    );
}

/// Checks every field of a cookie SYN-ACK; returns (ISN, TSval).
fn check_synack(out: &[u8], syn_tsval: Option<u32>) -> (u32, Option<u32>) {
    use xstack::wire::checksum;
    let (eth, ip) = ethernet::EthernetRepr::parse(out).unwrap();
    assert_eq!(eth.dst, Mac([2, 0, 0, 0, 0, 1]), "back to the sender");
    assert_eq!(eth.src, Mac([2, 0, 0, 0, 0, 2]));
    assert_eq!(eth.ethertype, ethernet::ETHERTYPE_IPV4);
    assert_eq!(checksum::checksum(&ip[..20]), 0, "IPv4 header checksum");
    let (ipr, t) = Ipv4Repr::parse(ip).unwrap();
    assert_eq!(
        (ipr.src, ipr.dst, ipr.protocol, ipr.ttl),
        (OURS, PEER, 6, 64)
    );
    assert!(ipr.dont_frag);
    assert_eq!(ip[0], 0x45);
    let sum = checksum::pseudo_header(OURS, PEER, 6, t.len() as u16);
    assert_eq!(checksum::finish(checksum::sum(sum, t)), 0, "TCP checksum");
    // MSS 1400 (configured).
    check_synack_tcp(t, PORT, SEQ, 1400, syn_tsval)
}

#[test]
fn cookie_mode_answers_a_syn_with_a_well_formed_syn_ack() {
    let (mut p, _sock) = program(true);
    cookies(&mut p, SynCookies::Always);
    let secrets = p.secrets().unwrap();
    // With timestamps (Linux's options).
    let (v, c, out, _) = moved(&mut p, &segment(0x02, SEQ, 0, &linux_syn_opts(4242), &[]));
    assert_eq!((v, c), (XDP_TX, Counter::TxCookieSynAck));
    let (isn, tsval) = check_synack(&out, Some(4242));
    let idx = cookie::check(&secrets, &flow(), SEQ, isn, now_count())
        .or_else(|| cookie::check(&secrets, &flow(), SEQ, isn, now_count() + 1));
    assert_eq!(
        idx,
        Some(cookie::mss_index(1400)),
        "cookie carries MSS 1400"
    );
    let o = cookie::decode_ts(tsval.unwrap(), 1).unwrap();
    assert_eq!((o.wscale, o.sack, o.ecn), (Some(7), true, false));
    // Without options: MSS 536 (RFC 9293 default), no timestamps.
    let (v, _, out, _) = moved(&mut p, &segment(0x02, SEQ, 0, &[], &[]));
    assert_eq!(v, XDP_TX);
    let (isn, _) = check_synack(&out, None);
    let c = now_count();
    assert!(
        cookie::check(&secrets, &flow(), SEQ, isn, c) == Some(0)
            || cookie::check(&secrets, &flow(), SEQ, isn, c + 1) == Some(0)
    );
    // Checksums as Wireshark sees them, when tshark is installed.
    tshark_checksums(&out);
}

/// The RFC 1071 sum of `b` (big-endian words, an odd byte padded),
/// folded: written here, apart from both the program and `wire::checksum`.
fn ones_sum(init: u32, b: &[u8]) -> u16 {
    let mut s = init;
    for c in b.chunks(2) {
        s += u32::from(c[0]) << 8 | u32::from(*c.get(1).unwrap_or(&0));
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// The cookie SYN-ACK's checksums are summed from the values written, not
/// read back from the frame: every layout it builds (24 bytes, or 40 with
/// timestamps, with and without SACK-permitted, window scale, ECN), from
/// SYNs longer, shorter and as long as the answer, and sequence numbers
/// and addresses that carry in the sum, checks by a full recompute.
#[test]
fn every_cookie_syn_ack_layout_checks_by_a_full_recompute_of_its_checksums() {
    let (mut p, _sock) = program(true);
    p.set_config(
        &FastpathSettings {
            syncookies: SynCookies::Always,
            mss: 1400,
            ecn: true,
            ..Default::default()
        }
        .to_config(),
    )
    .unwrap();
    let ts = |pre: &[u8], post: &[u8]| {
        let mut o = pre.to_vec();
        o.extend_from_slice(&[8, 10, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0]);
        o.extend_from_slice(post);
        o
    };
    let layouts: Vec<(Vec<u8>, usize)> = vec![
        (vec![], 24),
        (vec![2, 4, 0x05, 0xb4], 24),
        (vec![2, 4, 0x05, 0xb4, 1, 3, 3, 8, 1, 1, 4, 2], 24),
        (linux_syn_opts(0xffff_ffff), 40),
        (ts(&[1, 1], &[]), 40),
        (ts(&[2, 4, 0x05, 0xb4, 1, 1], &[1, 3, 3, 14]), 40),
        (ts(&[2, 4, 0x05, 0xb4, 4, 2], &[]), 40),
    ];
    let mut n = 0;
    for (opts, tcp_len) in &layouts {
        for (flags, payload) in [(0x02u8, &[][..]), (0xc2, &[7u8; 33][..])] {
            for seq in [0, 0xffff_ffff, 0xfffe_ffff, 0x8000_0001] {
                for src in [PEER, Ipv4Addr::new(198, 19, 255, 255)] {
                    let f = Endpoints {
                        src_ip: src,
                        ..LINK
                    }
                    .tcp(&TcpSegment {
                        src_port: 0xffff,
                        dst_port: PORT,
                        seq,
                        flags,
                        window: 64240,
                        options: opts,
                        payload,
                        ..TcpSegment::default()
                    });
                    let (v, c, out, _) = moved(&mut p, &f);
                    assert_eq!((v, c), (XDP_TX, Counter::TxCookieSynAck), "{opts:?}");
                    assert_eq!(out.len(), 14 + 20 + tcp_len, "{opts:?}");
                    let (ip, t) = (&out[14..34], &out[34..]);
                    assert_eq!(ones_sum(0, ip), 0xffff, "IPv4 header checksum, {opts:?}");
                    let mut pseudo = u32::from(ones_sum(0, &ip[12..20]));
                    pseudo += 6 + t.len() as u32;
                    assert_eq!(
                        ones_sum(pseudo, t),
                        0xffff,
                        "TCP checksum, {opts:?} seq {seq:#x}"
                    );
                    assert_eq!(t[13] & 0x40 != 0, flags == 0xc2, "ECE with ECN");
                    n += 1;
                }
            }
        }
    }
    assert_eq!(n, layouts.len() * 16);
}

/// The IP and TCP checksums as Wireshark sees them.
fn tshark_checksums(frame: &[u8]) {
    assert_eq!(
        tshark_fields(frame, &["ip.checksum.status", "tcp.checksum.status"]),
        "1\t1"
    );
}

#[test]
fn cookie_acks_are_validated_and_carry_their_options_as_metadata() {
    let (mut p, _sock) = program(true);
    cookies(&mut p, SynCookies::Always);
    let (v, _, out, _) = moved(&mut p, &segment(0x02, SEQ, 0, &linux_syn_opts(4242), &[]));
    assert_eq!(v, XDP_TX);
    let (isn, tsval) = check_synack(&out, Some(4242));
    let tsval = tsval.unwrap();
    // The final ACK: TS option echoing our TSval.
    let mut ack_opts = vec![1, 1, 8, 10];
    ack_opts.extend_from_slice(&4243u32.to_be_bytes());
    ack_opts.extend_from_slice(&tsval.to_be_bytes());
    let ack = segment(0x10, SEQ + 1, isn.wrapping_add(1), &ack_opts, &[]);
    let (v, c, out, meta_len) = moved(&mut p, &ack);
    assert_eq!((v, c), (XDP_REDIRECT, Counter::RedirectCookieAck));
    assert_eq!(meta_len, stack_ebpf::COOKIE_META_LEN);
    let m: CookieMeta = bytemuck::pod_read_unaligned(&out[..meta_len]);
    assert_eq!(m.magic, COOKIE_META_MAGIC);
    assert_eq!(m.mss, 1300, "MSS 1400 rounds down to the 1300 entry");
    assert_eq!(m.wscale, 7);
    assert_eq!(m.flags, META_TS | META_SACK);
    assert_eq!((m.tsval, m.tsecr), (4243, tsval));
    assert_eq!(&out[meta_len..], &ack[..], "the frame itself is untouched");
    assert_eq!(xstack::iface::cookie_meta(&out[..meta_len]), Some(m));
    // The flow is now known: its next segments take the ordinary path.
    let data = segment(0x18, SEQ + 1, isn.wrapping_add(1), &[], b"GET");
    let (v, c, _, meta_len) = moved(&mut p, &data);
    assert_eq!((v, c, meta_len), (XDP_REDIRECT, Counter::RedirectTcp, 0));

    // Without timestamps: only the MSS comes back.
    let mut other = segment(0x02, SEQ, 0, &[2, 4, 0x05, 0xb4], &[]);
    other[34..36].copy_from_slice(&40001u16.to_be_bytes());
    fix_tcp_checksum(&mut other);
    let (v, _, out, _) = moved(&mut p, &other);
    assert_eq!(v, XDP_TX);
    let isn2 = u32::from_be_bytes(out[38..42].try_into().unwrap());
    let mut ack2 = segment(0x10, SEQ + 1, isn2.wrapping_add(1), &[], &[]);
    ack2[34..36].copy_from_slice(&40001u16.to_be_bytes());
    fix_tcp_checksum(&mut ack2);
    let (v, c, out, meta_len) = moved(&mut p, &ack2);
    assert_eq!(
        (v, c, meta_len),
        (XDP_REDIRECT, Counter::RedirectCookieAck, 16)
    );
    let m: CookieMeta = bytemuck::pod_read_unaligned(&out[..16]);
    assert_eq!((m.mss, m.wscale, m.flags), (1300, META_NO_WSCALE, 0));
}

fn fix_tcp_checksum(f: &mut [u8]) {
    TcpPacket::new_unchecked(&mut f[34..]).fill_checksum(PEER, OURS);
}

#[test]
fn forged_expired_and_unknown_acks_are_dropped_while_cookies_are_in_use() {
    let (mut p, _sock) = program(true);
    // Before any cookie was issued, an unknown ACK is the engine's business.
    expect(
        &mut p,
        &segment(0x10, SEQ + 1, 12345, &[], &[]),
        XDP_REDIRECT,
        Counter::RedirectTcp,
    );
    cookies(&mut p, SynCookies::Always);
    let secrets = p.secrets().unwrap();
    let (v, _, out, _) = moved(&mut p, &segment(0x02, SEQ, 0, &[], &[]));
    assert_eq!(v, XDP_TX);
    let isn = u32::from_be_bytes(out[38..42].try_into().unwrap());
    // Forged: a different ack number.
    let (v, c, _, _) = moved(&mut p, &segment(0x10, SEQ + 1, isn ^ 0x0100_0000, &[], &[]));
    assert_eq!((v, c), (XDP_DROP, Counter::DropCookieInvalid));
    // Wrong client sequence number.
    let (v, c, _, _) = moved(&mut p, &segment(0x10, SEQ + 0x0100_0000, isn + 1, &[], &[]));
    assert_eq!((v, c), (XDP_DROP, Counter::DropCookieInvalid));
    // Expired: a cookie of the right secret issued MAX_AGE minutes ago.
    let old = cookie::generate(
        &secrets.current,
        &flow(),
        SEQ,
        now_count().wrapping_sub(cookie::MAX_AGE),
        3,
    );
    let (v, c, _, _) = moved(
        &mut p,
        &segment(0x10, SEQ + 1, old.wrapping_add(1), &[], &[]),
    );
    assert_eq!((v, c), (XDP_DROP, Counter::DropCookieInvalid));
    // A RST for no known flow.
    let (v, c, _, _) = moved(&mut p, &segment(0x04, SEQ + 1, 0, &[], &[]));
    assert_eq!((v, c), (XDP_DROP, Counter::DropNoFlow));
    // After two rotations the cookie's secret is gone.
    let r1 = xstack::datapath::fastpath::rotate(&secrets, now_count());
    p.set_secrets(&r1).unwrap();
    let (v, c, _, _) = moved(
        &mut p,
        &segment(0x10, SEQ + 1, isn.wrapping_add(1), &[], &[]),
    );
    assert_eq!(
        (v, c),
        (XDP_REDIRECT, Counter::RedirectCookieAck),
        "previous secret still accepted"
    );
    let mut other = segment(0x10, SEQ + 1, isn.wrapping_add(1), &[], &[]);
    other[34..36].copy_from_slice(&40009u16.to_be_bytes());
    fix_tcp_checksum(&mut other);
    p.set_secrets(&xstack::datapath::fastpath::rotate(&r1, now_count()))
        .unwrap();
    let (v, c, _, _) = moved(&mut p, &other);
    assert_eq!((v, c), (XDP_DROP, Counter::DropCookieInvalid));
}

/// The previous secret is tried only while cookies issued under it can
/// still be valid (`Secrets::previous_until`): a genuine cookie of the
/// secret rotated out `MAX_AGE` + 1 minutes ago is refused without its
/// hash, the same cookie after a rotation this minute is accepted.
#[test]
fn xdp_tries_the_previous_secret_only_while_its_cookies_can_live() {
    let (mut p, _sock) = program(true);
    cookies(&mut p, SynCookies::Always);
    let secrets = p.secrets().unwrap();
    let (v, _, out, _) = moved(&mut p, &segment(0x02, SEQ, 0, &[], &[]));
    assert_eq!(v, XDP_TX);
    let isn = u32::from_be_bytes(out[38..42].try_into().unwrap());
    let ack = segment(0x10, SEQ + 1, isn.wrapping_add(1), &[], &[]);
    let long_ago = now_count() - cookie::MAX_AGE - 1;
    let stale = xstack::datapath::fastpath::rotate(&secrets, long_ago);
    assert!(!stale.tries_previous(now_count()));
    p.set_secrets(&stale).unwrap();
    let (v, c, _, _) = moved(&mut p, &ack);
    assert_eq!((v, c), (XDP_DROP, Counter::DropCookieInvalid));
    p.set_secrets(&xstack::datapath::fastpath::rotate(&secrets, now_count()))
        .unwrap();
    let (v, c, _, _) = moved(&mut p, &ack);
    assert_eq!((v, c), (XDP_REDIRECT, Counter::RedirectCookieAck));
}

/// `segment` from another source port: a 4-tuple nobody knows.
fn unknown_tuple(mut f: Vec<u8>) -> Vec<u8> {
    f[34..36].copy_from_slice(&40009u16.to_be_bytes());
    fix_tcp_checksum(&mut f);
    f
}

/// The unknown-segment filter (`FILTER_UNTIL`, armed by `xstack serve`
/// under a flood of segments for no connection): while its deadline is in
/// the future, segments without SYN are checked as while cookies are in
/// use, though no cookie was sent; once it has passed they take the
/// shortest path to the engine again.
#[test]
fn the_unknown_segment_filter_drops_forged_acks_and_rsts_until_its_deadline() {
    use xstack::datapath::xdp::monotonic_ns;
    let (mut p, _sock) = program(true);
    cookies(&mut p, SynCookies::Never);
    // A flow the engine knows: its SYN went there.
    let (v, _, _, _) = moved(&mut p, &segment(0x02, SEQ, 0, &[], &[]));
    assert_eq!(v, XDP_REDIRECT);
    let forged_ack = unknown_tuple(segment(0x10, SEQ + 1, 12345, &[], &[]));
    let forged_rst = unknown_tuple(segment(0x04, SEQ + 1, 0, &[], &[]));
    let known_ack = segment(0x10, SEQ + 1, 12345, &[], &[]);
    assert_eq!(p.filter_until().unwrap(), 0, "never armed at load");
    let (v, c, _, _) = moved(&mut p, &forged_ack);
    assert_eq!(
        (v, c),
        (XDP_REDIRECT, Counter::RedirectTcp),
        "unarmed: the engine's business"
    );

    p.set_filter_until(monotonic_ns() + 60_000_000_000).unwrap();
    let (v, c, _, _) = moved(&mut p, &forged_ack);
    assert_eq!((v, c), (XDP_DROP, Counter::DropCookieInvalid));
    let (v, c, _, _) = moved(&mut p, &forged_rst);
    assert_eq!((v, c), (XDP_DROP, Counter::DropNoFlow));
    let (v, c, _, _) = moved(&mut p, &known_ack);
    assert_eq!(
        (v, c),
        (XDP_REDIRECT, Counter::RedirectTcp),
        "a known flow still reaches the engine"
    );

    // Past by more than a tick: XDP reads the coarse clock, which trails
    // CLOCK_MONOTONIC by up to one (`cookie::COARSE_CLOCK_SLACK_NS`).
    p.set_filter_until(monotonic_ns() - cookie::COARSE_CLOCK_SLACK_NS)
        .unwrap();
    let (v, c, _, _) = moved(&mut p, &forged_ack);
    assert_eq!(
        (v, c),
        (XDP_REDIRECT, Counter::RedirectTcp),
        "lapsed: the shortest path again"
    );
    let (v, c, _, _) = moved(&mut p, &forged_rst);
    assert_eq!((v, c), (XDP_REDIRECT, Counter::RedirectTcp));
}

/// The flow-source hint (`stack_ebpf::hint`) lets a segment from a source
/// with no known flow skip the table lookup; it must never hide a flow. On
/// a freshly loaded program the first entry from this source is the one a
/// valid cookie ACK makes: had that insert not set the source's slot, the
/// RST after it would be dropped as unknown.
#[test]
fn a_flow_a_cookie_ack_opened_is_known_to_its_next_segments_through_the_source_hint() {
    let (mut p, _sock) = program(true);
    cookies(&mut p, SynCookies::Always);
    let syn = segment(0x02, SEQ, 0, &[], &[]);
    let (v, _, out, _) = moved(&mut p, &syn);
    assert_eq!(v, XDP_TX);
    let isn = u32::from_be_bytes(out[38..42].try_into().unwrap());
    // Before the ACK nothing is known: an RST is dropped.
    let rst = segment(0x04, SEQ + 1, 0, &[], &[]);
    let (v, c, _, _) = moved(&mut p, &rst);
    assert_eq!((v, c), (XDP_DROP, Counter::DropNoFlow));
    let ack = segment(0x10, SEQ + 1, isn.wrapping_add(1), &[], &[]);
    let (v, c, _, _) = moved(&mut p, &ack);
    assert_eq!((v, c), (XDP_REDIRECT, Counter::RedirectCookieAck));
    // Now the flow is known: its RST and data go to the engine.
    let (v, c, _, _) = moved(&mut p, &rst);
    assert_eq!((v, c), (XDP_REDIRECT, Counter::RedirectTcp));
    let data = segment(0x18, SEQ + 1, isn.wrapping_add(1), &[], b"GET");
    let (v, c, _, _) = moved(&mut p, &data);
    assert_eq!((v, c), (XDP_REDIRECT, Counter::RedirectTcp));
}

#[test]
fn a_cookie_syn_on_a_tuple_the_engine_knows_lets_the_engines_own_handshake_through() {
    let (mut p, _sock) = program(true);
    // Cookies off: the SYN goes to the engine, which answers it (and its
    // SYN-ACK is lost).
    cookies(&mut p, SynCookies::Never);
    let syn = segment(0x02, SEQ, 0, &[], &[]);
    expect(&mut p, &syn, XDP_REDIRECT, Counter::RedirectTcp);
    // Cookies on: the retransmitted SYN gets a cookie SYN-ACK here, while
    // the engine retransmits its own SYN-ACK.
    cookies(&mut p, SynCookies::Always);
    let (v, _, out, _) = moved(&mut p, &syn);
    assert_eq!(v, XDP_TX);
    let isn = u32::from_be_bytes(out[38..42].try_into().unwrap());
    // The client took the engine's SYN-ACK (ISN 0x1234_5678): its ACK and
    // data are not cookies, and belong to the engine.
    let engine_isn: u32 = 0x1234_5678;
    let ack = segment(0x10, SEQ + 1, engine_isn + 1, &[], &[]);
    let (v, c, _, meta) = moved(&mut p, &ack);
    assert_eq!((v, c, meta), (XDP_REDIRECT, Counter::RedirectTcp, 0));
    let data = segment(0x18, SEQ + 1, engine_isn + 1, &[], b"GET");
    let (v, c, _, _) = moved(&mut p, &data);
    assert_eq!((v, c), (XDP_REDIRECT, Counter::RedirectTcp));
    let rst = segment(0x04, SEQ + 1, 0, &[], &[]);
    let (v, c, _, _) = moved(&mut p, &rst);
    assert_eq!((v, c), (XDP_REDIRECT, Counter::RedirectTcp));
    // Had it taken the cookie SYN-ACK, its ACK would go to the engine as a
    // segment of the known flow too, unchecked and without metadata: the
    // cookie SYN left no mark, and the engine checks a cookie ACK on a
    // 4-tuple it holds itself (`TcpEngine::set_xdp_cookies`).
    let (v, c, _, meta) = moved(
        &mut p,
        &segment(0x10, SEQ + 1, isn.wrapping_add(1), &[], &[]),
    );
    assert_eq!((v, c, meta), (XDP_REDIRECT, Counter::RedirectTcp, 0));
    // A cookie SYN on a 4-tuple nobody knows creates no entry: a bad ACK
    // there is still dropped.
    let mut other = segment(0x02, SEQ, 0, &[], &[]);
    other[34..36].copy_from_slice(&40002u16.to_be_bytes());
    fix_tcp_checksum(&mut other);
    let (v, _, _, _) = moved(&mut p, &other);
    assert_eq!(v, XDP_TX);
    let mut bad = segment(0x10, SEQ + 1, engine_isn + 1, &[], &[]);
    bad[34..36].copy_from_slice(&40002u16.to_be_bytes());
    fix_tcp_checksum(&mut bad);
    let (v, c, _, _) = moved(&mut p, &bad);
    assert_eq!((v, c), (XDP_DROP, Counter::DropCookieInvalid));
}

#[test]
fn syn_limits_and_prefix_lists_apply_without_reattaching() {
    let (mut p, _sock) = program(true);
    let mut s = FastpathSettings {
        syn_source_rate: 1,
        syn_source_burst: 3,
        ..Default::default()
    };
    p.set_config(&s.to_config()).unwrap();
    let syn = segment(0x02, SEQ, 0, &[], &[]);
    for _ in 0..3 {
        expect(&mut p, &syn, XDP_REDIRECT, Counter::RedirectTcp);
    }
    expect(&mut p, &syn, XDP_DROP, Counter::DropSynSourceRate);
    // The global budget.
    s.syn_source_rate = 0;
    s.syn_global_rate = 1;
    s.syn_global_burst = 2;
    p.set_config(&s.to_config()).unwrap();
    expect(&mut p, &syn, XDP_REDIRECT, Counter::RedirectTcp);
    expect(&mut p, &syn, XDP_REDIRECT, Counter::RedirectTcp);
    expect(&mut p, &syn, XDP_DROP, Counter::DropSynGlobalRate);
    // Allow list: exempt from limits.
    p.prefix(false, Ipv4Addr::new(198, 18, 0, 0), 24, true)
        .unwrap();
    s.allow.push((Ipv4Addr::new(198, 18, 0, 0).into(), 24));
    p.set_config(&s.to_config()).unwrap();
    expect(&mut p, &syn, XDP_REDIRECT, Counter::RedirectTcp);
    // Deny list wins over nothing else: a denied source is dropped.
    s.allow.clear();
    p.prefix(false, Ipv4Addr::new(198, 18, 0, 0), 24, false)
        .unwrap();
    s.syn_global_rate = 0;
    p.prefix(true, Ipv4Addr::new(198, 18, 0, 0), 30, true)
        .unwrap();
    s.deny.push((Ipv4Addr::new(198, 18, 0, 0).into(), 30));
    p.set_config(&s.to_config()).unwrap();
    expect(&mut p, &syn, XDP_DROP, Counter::DropSynDenied);
    // Allow-only with an empty allow list: nobody.
    s.deny.clear();
    s.allow_only = true;
    p.set_config(&s.to_config()).unwrap();
    expect(&mut p, &syn, XDP_DROP, Counter::DropSynNotAllowed);
    // Established segments never pay for any of it.
    expect(
        &mut p,
        &segment(0x10, SEQ + 1, 5, &[], &[]),
        XDP_REDIRECT,
        Counter::RedirectTcp,
    );
}

/// A SYN from `src`:40000 to OURS:PORT.
fn syn_from(src: Ipv4Addr) -> Vec<u8> {
    Endpoints {
        src_ip: src,
        ..LINK
    }
    .tcp(&TcpSegment {
        src_port: 40000,
        dst_port: PORT,
        seq: SEQ,
        flags: 0x02,
        window: 64240,
        ..TcpSegment::default()
    })
}

/// A source's per-source cells as the program computes them (the address
/// as it reads it: wire bytes in a native-endian word).
fn cells(key: &stack_ebpf::limit::SourceKey, a: Ipv4Addr) -> [u32; 2] {
    stack_ebpf::limit::cells4(key, u32::from_ne_bytes(a.octets()))
}

/// A key and a source in 198.18.0.0/15 sharing PEER's row-0 cell but not
/// its row-1 cell (about 4 such sources per key; keys tried in turn).
fn key_with_row0_neighbour() -> (stack_ebpf::limit::SourceKey, Ipv4Addr) {
    let mut x = 0x0123_4567_89ab_cdefu64;
    let mut next = || {
        // splitmix64
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    for _ in 0..64 {
        let key = [[0u64; 5]; 2].map(|r| r.map(|_| next()));
        let peer = cells(&key, PEER);
        let found = (0..1u32 << 17)
            .map(|i| Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + i))
            .find(|a| {
                let c = cells(&key, *a);
                *a != PEER && c[0] == peer[0] && c[1] != peer[1]
            });
        if let Some(a) = found {
            return (key, a);
        }
    }
    panic!("no key in 64 gave PEER a row-0 neighbour");
}

#[test]
fn per_source_limit_drops_a_source_over_its_rate_and_admits_one_sharing_one_of_its_cells() {
    let (mut p, _sock) = program(true);
    let (key, neighbour) = key_with_row0_neighbour();
    p.set_source_key(key).unwrap();
    assert_eq!(p.config().unwrap().source_key, key);
    p.set_config(
        &FastpathSettings {
            syn_source_rate: 1,
            syn_source_burst: 3,
            ..Default::default()
        }
        .to_config(),
    )
    .unwrap();
    assert_eq!(
        p.config().unwrap().source_key,
        key,
        "set_config keeps the key"
    );
    let peer = syn_from(PEER);
    for _ in 0..3 {
        expect(&mut p, &peer, XDP_REDIRECT, Counter::RedirectTcp);
    }
    expect(&mut p, &peer, XDP_DROP, Counter::DropSynSourceRate);
    // Its row-0 cell is spent, but its row-1 cell is its own: the
    // neighbour gets its whole burst, and no more.
    let other = syn_from(neighbour);
    for _ in 0..3 {
        expect(&mut p, &other, XDP_REDIRECT, Counter::RedirectTcp);
    }
    expect(&mut p, &other, XDP_DROP, Counter::DropSynSourceRate);
    expect(&mut p, &peer, XDP_DROP, Counter::DropSynSourceRate);
}

#[test]
fn sources_sharing_both_cells_share_one_budget_never_more() {
    let (mut p, _sock) = program(true);
    // Multipliers of zero: every source lands in the same two cells.
    p.set_source_key([[7, 0, 0, 0, 0], [11, 0, 0, 0, 0]])
        .unwrap();
    p.set_config(
        &FastpathSettings {
            syn_source_rate: 1,
            syn_source_burst: 2,
            ..Default::default()
        }
        .to_config(),
    )
    .unwrap();
    let (a, b) = (Ipv4Addr::new(198, 18, 5, 1), Ipv4Addr::new(198, 19, 9, 9));
    assert_eq!(
        cells(&[[7, 0, 0, 0, 0], [11, 0, 0, 0, 0]], a),
        cells(&[[7, 0, 0, 0, 0], [11, 0, 0, 0, 0]], b)
    );
    expect(&mut p, &syn_from(a), XDP_REDIRECT, Counter::RedirectTcp);
    expect(&mut p, &syn_from(b), XDP_REDIRECT, Counter::RedirectTcp);
    // The shared budget is spent: stricter than two buckets, never laxer.
    expect(&mut p, &syn_from(a), XDP_DROP, Counter::DropSynSourceRate);
    expect(&mut p, &syn_from(b), XDP_DROP, Counter::DropSynSourceRate);
}

#[test]
fn auto_mode_switches_to_cookies_above_the_syn_rate() {
    let (mut p, _sock) = program(true);
    p.set_config(
        &FastpathSettings {
            syncookies: SynCookies::Auto,
            syn_rate_on: 50,
            syn_rate_off: 10,
            syn_window_ms: 1000,
            ..Default::default()
        }
        .to_config(),
    )
    .unwrap();
    let syn = segment(0x02, SEQ, 0, &[], &[]);
    // 50 SYN/s over a 1 s window = 50 per window: the 50th SYN switches.
    for _ in 0..49 {
        expect(&mut p, &syn, XDP_REDIRECT, Counter::RedirectTcp);
    }
    expect(&mut p, &syn, XDP_TX, Counter::TxCookieSynAck);
    let st = p.fastpath_state().unwrap();
    assert_eq!((st.cookie_active, st.cookie_on_switches), (1, 1));
    // The engine's "SYN queue full" signal alone also turns cookies on.
    let (mut q, _sock2) = (XdpProgram::load(None).unwrap(), ());
    q.own_addr(OURS).unwrap();
    q.own_port(OURS, PORT).unwrap();
    q.set_config(
        &FastpathSettings {
            syncookies: SynCookies::Auto,
            ..Default::default()
        }
        .to_config(),
    )
    .unwrap();
    q.set_signal(stack_ebpf::SIGNAL_SYN_QUEUE_FULL, 1).unwrap();
    assert_eq!(run(&mut q, &syn), XDP_TX);
}

/// A SYN reads the coarse clock (the last tick's time, no clock-source
/// read) unless a SYN limit measures intervals shorter than a tick: the
/// per-source or global token bucket, or a SYN-rate window under 10 ms
/// (`FastpathConfig::syn_needs_fine_clock`). Seen in the SYN-rate
/// window's start, which the first SYN sets to the time it read.
#[test]
fn a_syn_reads_the_coarse_clock_unless_a_limit_needs_the_fine_one() {
    let syn = segment(0x02, SEQ, 0, &[], &[]);
    let auto = FastpathSettings {
        syncookies: SynCookies::Auto,
        ..Default::default()
    };
    let cases = [
        ("no limit", auto.clone(), false),
        (
            "per-source limit",
            FastpathSettings {
                syn_source_rate: 1_000_000,
                ..auto.clone()
            },
            true,
        ),
        (
            "global limit",
            FastpathSettings {
                syn_global_rate: 1_000_000,
                ..auto.clone()
            },
            true,
        ),
        (
            "1 ms window",
            FastpathSettings {
                syn_window_ms: 1,
                ..auto.clone()
            },
            true,
        ),
    ];
    for (what, settings, fine) in cases {
        let (mut p, _sock) = program(true);
        p.set_config(&settings.to_config()).unwrap();
        let fine_before = clock_ns(libc::CLOCK_MONOTONIC);
        expect(&mut p, &syn, XDP_REDIRECT, Counter::RedirectTcp);
        let coarse_after = clock_ns(libc::CLOCK_MONOTONIC_COARSE);
        let read = p.fastpath_state().unwrap().window_start_ns;
        if fine {
            // The fine clock is never behind an earlier fine reading.
            assert!(read >= fine_before, "{what}: {read} < {fine_before}");
        } else {
            // The coarse clock is never ahead of a later coarse reading;
            // the fine one is, but for a tick between the two reads.
            assert!(read <= coarse_after, "{what}: {read} > {coarse_after}");
        }
    }
}

// ---- Cookie SYN-ACKs sent by the engine (issue 11, failure 3).

/// Sets the cookie path of `cookies(p, Always)`.
fn cookie_path(p: &mut XdpProgram, path: xstack::datapath::fastpath::CookiePath) {
    p.set_config(
        &FastpathSettings {
            syncookies: SynCookies::Always,
            mss: 1400,
            cookie_path: path,
            ..Default::default()
        }
        .to_config(),
    )
    .unwrap();
}

/// An engine that owns OURS:PORT, as the bring-up makes one.
fn engine() -> xstack::iface::Interface {
    xstack::iface::Interface::new(xstack::iface::IfaceConfig {
        mac: LINK.dst_mac,
        addrs: vec![OURS],
        addrs6: Vec::new(),
        ports: vec![PORT],
        app: xstack::apps::App::Echo,
        response_bytes: 0,
        echo_body: false,
        max_body: xstack::apps::http::DEFAULT_MAX_BODY,
        tcp: xstack::tcp::TcpConfig::default(),
        backlog: 128,
        secret: [7; 16],
        mtu: 1500,
    })
}

/// With `CFG_COOKIE_VIA_ENGINE` the SYN-ACK XDP would have sent with
/// XDP_TX comes to the socket marked, and the engine sends exactly it: the
/// same bytes (cookie ISN, TSval with the options, MSS, window scale,
/// window, IP ident and TTL, checksums) for the same SYN.
#[test]
fn the_engine_sends_the_cookie_syn_ack_xdp_builds_byte_for_byte() {
    use xstack::datapath::fastpath::CookiePath;
    let (mut p, _sock) = program(true);
    for opts in [linux_syn_opts(4242), vec![], vec![2, 4, 0x05, 0xb4]] {
        let syn = segment(0x02, SEQ, 0, &opts, &[]);
        // The TSval's clock ticks every 64 ms (its low bits carry the
        // options): the two runs fall in the same tick on some try.
        let mut same = false;
        for _ in 0..5 {
            cookie_path(&mut p, CookiePath::Xdp);
            let (v, c, by_xdp, meta_len) = moved(&mut p, &syn);
            assert_eq!((v, c, meta_len), (XDP_TX, Counter::TxCookieSynAck, 0));
            cookie_path(&mut p, CookiePath::Engine);
            let (v, c, out, meta_len) = moved(&mut p, &syn);
            assert_eq!(
                (v, c, meta_len),
                (
                    XDP_REDIRECT,
                    Counter::RedirectCookieSynAck,
                    stack_ebpf::COOKIE_META_LEN
                )
            );
            let (meta, frame) = out.split_at(meta_len);
            let m: CookieMeta = bytemuck::pod_read_unaligned(meta);
            assert_eq!(
                m,
                CookieMeta {
                    magic: stack_ebpf::COOKIE_META_SYNACK,
                    ..CookieMeta::default()
                }
            );
            assert!(xstack::iface::is_cookie_synack(meta));
            assert_eq!(xstack::iface::cookie_meta(meta), None, "not a cookie ACK");
            let mut e = engine();
            let mut sink = xstack::iface::VecSink::default();
            e.handle_frame_meta(xstack::time::Instant(0), meta, frame, &mut sink);
            assert_eq!(sink.frames.len(), 1, "the engine sends one frame");
            assert_eq!(e.stats().cookie_synacks_sent, 1);
            assert_eq!(e.stats().tx_frames, 1);
            assert_eq!(e.tcp_connections(), 0, "no state kept");
            check_synack(&sink.frames[0], (opts.len() > 4).then_some(4242));
            if sink.frames[0] == by_xdp {
                same = true;
                break;
            }
        }
        assert!(same, "engine and XDP SYN-ACKs differ for options {opts:?}");
    }
}

/// The peer-side sink (`xstack_sink`): frames to the sunk prefixes (one per family) are
/// dropped and counted; other destinations, ARP and runts pass.
#[test]
fn sink_drops_only_the_sunk_ipv4_and_ipv6_prefixes() {
    use xstack::datapath::sink::XdpSink;
    let mut s = XdpSink::load(Ipv4Addr::new(198, 18, 128, 0), 17).expect("load the sink");
    let to = |dst: Ipv4Addr| {
        Endpoints {
            src_mac: Mac([2, 0, 0, 0, 0, 2]),
            dst_mac: Mac([2, 0, 0, 0, 0, 1]),
            src_ip: OURS,
            dst_ip: dst,
        }
        .tcp(&TcpSegment::default())
    };
    let cases: [(Vec<u8>, u32); 6] = [
        (to(Ipv4Addr::new(198, 18, 128, 0)), XDP_DROP),
        (to(Ipv4Addr::new(198, 18, 200, 7)), XDP_DROP),
        (to(Ipv4Addr::new(198, 18, 255, 255)), XDP_DROP),
        (to(PEER), XDP_PASS),
        (to(Ipv4Addr::new(198, 19, 128, 1)), XDP_PASS),
        (LINK.arp_request(OURS), XDP_PASS),
    ];
    let (d0, p0) = s.counters().unwrap();
    for (frame, want) in &cases {
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(frame);
        let got = s
            .program()
            .unwrap()
            .test_run(opts)
            .expect("BPF_PROG_TEST_RUN")
            .return_value;
        assert_eq!(got, *want, "frame to {:?}", &frame[30..34]);
    }
    // A frame too short for an IPv4 header passes untouched.
    let runt = eth(ethernet::ETHERTYPE_IPV4, &[0x45, 0, 0]);
    let mut opts = TestRunOptions::new();
    opts.data_in = Some(&runt);
    let got = s.program().unwrap().test_run(opts).unwrap().return_value;
    assert_eq!(got, XDP_PASS);
    let (d1, p1) = s.counters().unwrap();
    assert_eq!((d1 - d0, p1 - p0), (3, 4));
    // The IPv6 prefix: unset, IPv6 frames pass; set to 2001:2:0:8000::/49,
    // frames inside it are dropped and the rest pass.
    let to6 = |dst: &str| {
        Endpoints6 {
            src_mac: Mac([2, 0, 0, 0, 0, 2]),
            dst_mac: Mac([2, 0, 0, 0, 0, 1]),
            src_ip: "2001:2::1".parse().unwrap(),
            dst_ip: dst.parse().unwrap(),
        }
        .tcp(&TcpSegment::default())
    };
    let verdict = |s: &mut XdpSink, f: &[u8]| {
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(f);
        s.program().unwrap().test_run(opts).unwrap().return_value
    };
    assert_eq!(verdict(&mut s, &to6("2001:2:0:8000::1")), XDP_PASS);
    s.set_ipv6_prefix("2001:2:0:8000::".parse().unwrap(), 49)
        .expect("set the IPv6 prefix");
    let cases6 = [
        ("2001:2:0:8000::", XDP_DROP),
        ("2001:2:0:8000::1", XDP_DROP),
        ("2001:2:0:ffff:ffff:ffff:ffff:ffff", XDP_DROP),
        ("2001:2:0:7fff:ffff:ffff:ffff:ffff", XDP_PASS),
        ("2001:2::2", XDP_PASS),
        ("2001:3:0:8000::1", XDP_PASS),
    ];
    let (d2, p2) = s.counters().unwrap();
    for (dst, want) in cases6 {
        assert_eq!(verdict(&mut s, &to6(dst)), want, "frame to {dst}");
    }
    // IPv4 still sinks by its own prefix.
    assert_eq!(
        verdict(&mut s, &to(Ipv4Addr::new(198, 18, 200, 7))),
        XDP_DROP
    );
    let (d3, p3) = s.counters().unwrap();
    assert_eq!((d3 - d2, p3 - p2), (4, 3));
    // Prefix length 0 sinks nothing.
    let mut none = XdpSink::load(Ipv4Addr::UNSPECIFIED, 0).expect("load the sink");
    let mut opts = TestRunOptions::new();
    let f = to(Ipv4Addr::new(198, 18, 128, 1));
    opts.data_in = Some(&f);
    let got = none.program().unwrap().test_run(opts).unwrap().return_value;
    assert_eq!(got, XDP_PASS);
}
