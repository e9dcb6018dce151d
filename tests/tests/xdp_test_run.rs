//! The real XDP program run on crafted frames with BPF_PROG_TEST_RUN
//! (`aya::programs::TestRun`): every verdict and drop reason, and the counter
//! each one increments.

use std::net::Ipv4Addr;

use aya::programs::{TestRun, TestRunOptions};
use stack_ebpf::Counter;
use xstack::{
    wire::{
        arp::{self, ArpRepr},
        ethernet::{self, EthernetRepr, Mac},
        ipv4::{self, Ipv4Repr},
    },
    xdp::XdpProgram,
    xsk::{XskConfig, XskMode, XskSocket},
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

fn run(p: &mut XdpProgram, frame: &[u8]) -> u32 {
    let mut opts = TestRunOptions::new();
    opts.data_in = Some(frame);
    p.program()
        .test_run(opts)
        .expect("BPF_PROG_TEST_RUN")
        .return_value
}

/// Runs `frame` and checks the verdict and that exactly `counter` (plus
/// rx_packets) moved.
fn expect(p: &mut XdpProgram, frame: &[u8], verdict: u32, counter: Counter) {
    let before = p.counters().unwrap();
    let got = run(p, frame);
    let after = p.counters().unwrap();
    assert_eq!(got, verdict, "verdict for {}", counter.name());
    for c in Counter::ALL {
        let delta = after[c.name()] - before[c.name()];
        let want = u64::from(*c == counter || *c == Counter::RxPackets);
        assert_eq!(delta, want, "counter {} moved by {delta}", c.name());
    }
}

fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 14 + payload.len()];
    EthernetRepr {
        dst: Mac([2, 0, 0, 0, 0, 2]),
        src: Mac([2, 0, 0, 0, 0, 1]),
        ethertype,
    }
    .emit(&mut f)
    .unwrap();
    f[14..].copy_from_slice(payload);
    f
}

fn ipv4(dst: Ipv4Addr, proto: u8, body: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 20 + body.len()];
    Ipv4Repr {
        src: PEER,
        dst,
        protocol: proto,
        ttl: 64,
        tos: 0,
        ident: 1,
        dont_frag: true,
        payload_len: body.len(),
    }
    .emit(&mut p)
    .unwrap();
    p[20..].copy_from_slice(body);
    eth(ethernet::ETHERTYPE_IPV4, &p)
}

fn tcp(dport: u16, doff: u8) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    t[0..2].copy_from_slice(&40000u16.to_be_bytes());
    t[2..4].copy_from_slice(&dport.to_be_bytes());
    t[12] = doff << 4;
    t[13] = 0x02; // SYN
    t
}

fn arp_request(target: Ipv4Addr) -> Vec<u8> {
    let mut a = [0u8; arp::PACKET_LEN];
    ArpRepr {
        op: arp::OP_REQUEST,
        sha: Mac([2, 0, 0, 0, 0, 1]),
        spa: PEER,
        tha: Mac::default(),
        tpa: target,
    }
    .emit(&mut a)
    .unwrap();
    eth(ethernet::ETHERTYPE_ARP, &a)
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
