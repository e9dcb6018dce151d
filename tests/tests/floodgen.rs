//! The live-frames flood generator `xstack_flood_gen`, run with
//! BPF_PROG_TEST_RUN without live frames (nothing is sent; the frame it
//! writes comes back): every kind of IPv4 and IPv6 flood gets the right
//! flags, a spoofed source inside the prefix that varies between runs,
//! source ports in the range, and IP and TCP checksums that verify (by
//! xstack's wire parser and by tshark); a frame that is not its template
//! passes untouched.

use std::net::{IpAddr, Ipv4Addr};

use aya::programs::{TestRun, TestRunOptions};
use xstack::{
    datapath::floodgen::FloodGen,
    tools::flood::{gen_config, template, FloodArgs, FloodConfig, FloodKind, Generator},
    wire::{
        ethernet::{EthernetRepr, Mac, ETHERTYPE_IPV4, ETHERTYPE_IPV6},
        ipv4::Ipv4Repr,
        ipv6::Ipv6Repr,
        tcp::{TcpRepr, ACK, RST, SYN},
    },
};
use xstack_tests::xdp_run::tshark_fields;

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;
const SRC_MAC: Mac = Mac([2, 0x78, 0x73, 0, 0, 1]);

fn config(target: &str, sources: &str, kind: FloodKind, ports: Option<&str>) -> FloodConfig {
    FloodArgs {
        iface: "lo".into(),
        target: target.parse().unwrap(),
        allow_target: vec![],
        rate: 1000,
        duration: 1.0,
        sources: sources.into(),
        kind,
        src_ports: ports.map(Into::into),
        dst_mac: Some("02:78:73:00:00:02".into()),
        queue: 0,
        force: false,
        metrics: None,
        generator: Generator::Live,
    }
    .to_config()
    .unwrap()
}

/// One run on `input`: the verdict and the frame the program left.
fn run(gen: &mut FloodGen, input: &[u8]) -> (u32, Vec<u8>) {
    let mut out = vec![0u8; 256];
    let mut o = TestRunOptions::new();
    o.data_in = Some(input);
    o.data_out = Some(&mut out);
    let r = gen
        .program()
        .unwrap()
        .test_run(o)
        .expect("BPF_PROG_TEST_RUN");
    out.truncate(r.data_size_out as usize);
    (r.return_value, out)
}

/// What one written frame says.
struct Seen {
    src: IpAddr,
    sport: u16,
    flags: u8,
    ack: bool,
    mss: Option<u16>,
    seq: u32,
}

/// Parses a written frame (checksums verified by the parsers) and checks
/// its fixed parts against `c`.
fn parse(c: &FloodConfig, frame: &[u8]) -> Seen {
    let (eth, ip) = EthernetRepr::parse(frame).expect("Ethernet");
    assert_eq!((eth.dst, eth.src), (c.dst_mac, SRC_MAC));
    let (src, dst, seg) = match c.target.ip() {
        IpAddr::V4(_) => {
            assert_eq!(eth.ethertype, ETHERTYPE_IPV4);
            let (r, seg) = Ipv4Repr::parse(ip).expect("IPv4 header and checksum");
            (IpAddr::V4(r.src), IpAddr::V4(r.dst), seg)
        }
        IpAddr::V6(_) => {
            assert_eq!(eth.ethertype, ETHERTYPE_IPV6);
            let (r, seg) = Ipv6Repr::parse(ip).expect("IPv6 header");
            (IpAddr::V6(r.src), IpAddr::V6(r.dst), seg)
        }
    };
    assert_eq!(dst, c.target.ip());
    let tcp = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => TcpRepr::parse(s, d, seg),
        (IpAddr::V6(s), IpAddr::V6(d)) => TcpRepr::parse(s, d, seg),
        _ => unreachable!(),
    }
    .expect("TCP header and checksum");
    assert_eq!(tcp.dst_port, c.target.port());
    assert!(tcp.payload.is_empty());
    Seen {
        src,
        sport: tcp.src_port,
        flags: tcp.flags,
        ack: tcp.ack.is_some(),
        mss: tcp.options.mss,
        seq: tcp.seq.0,
    }
}

fn inside(src: IpAddr, net: IpAddr, len: u8) -> bool {
    match (src, net) {
        (IpAddr::V4(s), IpAddr::V4(n)) => {
            let m = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            u32::from(s) & m == u32::from(n) & m
        }
        (IpAddr::V6(s), IpAddr::V6(n)) => {
            let m = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            u128::from(s) & m == u128::from(n) & m
        }
        _ => false,
    }
}

/// Runs the generator `n` times for `c`; checks every frame and returns
/// what they said.
fn generate(c: &FloodConfig, n: usize) -> Vec<Seen> {
    let frame = template(c, SRC_MAC);
    let mut gen = FloodGen::load(&gen_config(c, &frame, 0)).expect("load xstack_flood_gen");
    let input = FloodGen::input(&frame);
    let seen: Vec<Seen> = (0..n)
        .map(|_| {
            let (verdict, out) = run(&mut gen, &input);
            assert_eq!(verdict, XDP_DROP, "ifindex 0: written, then dropped");
            assert_eq!(out.len(), frame.len(), "the length never changes");
            let s = parse(c, &out);
            assert!(inside(s.src, c.sources.0, c.sources.1), "{}", s.src);
            s
        })
        .collect();
    let counted: u64 = gen.counters().unwrap().iter().sum();
    assert_eq!(counted, n as u64, "one count per frame written");
    seen
}

fn distinct<T: Ord>(v: impl Iterator<Item = T>) -> usize {
    v.collect::<std::collections::BTreeSet<_>>().len()
}

fn check_kinds(target: &str, sources: &str) {
    for (kind, want) in [
        (FloodKind::Syn, vec![(SYN, false, Some(1460))]),
        (FloodKind::Ack, vec![(0, true, None)]),
        (FloodKind::Rst, vec![(RST, false, None)]),
        (
            FloodKind::Mixed,
            vec![
                (SYN, false, Some(1460)),
                (0, true, None),
                (RST, false, None),
            ],
        ),
    ] {
        let c = config(target, sources, kind, None);
        let seen = generate(&c, 60);
        for (i, s) in seen.iter().enumerate() {
            assert_eq!(
                (s.flags & !ACK, s.ack, s.mss),
                want[i % want.len()],
                "{kind:?} run {i}"
            );
            assert!(
                (1024..65024).contains(&s.sport),
                "{kind:?} port {}",
                s.sport
            );
        }
        assert!(
            distinct(seen.iter().map(|s| s.src)) > 50,
            "{kind:?}: sources vary"
        );
        assert!(
            distinct(seen.iter().map(|s| s.sport)) > 50,
            "{kind:?}: ports vary"
        );
        assert!(
            distinct(seen.iter().map(|s| s.seq)) > 50,
            "{kind:?}: numbers vary"
        );
    }
}

#[test]
fn ipv4_flood_frames_have_their_kind_a_varying_source_inside_the_prefix_and_valid_checksums() {
    check_kinds("198.18.0.2:8080", "198.18.128.0/17");
}

#[test]
fn ipv6_flood_frames_have_their_kind_a_varying_source_inside_the_prefix_and_valid_checksums() {
    check_kinds("[2001:2::2]:8080", "2001:2:0:8000::/49");
}

/// tshark, an independent parser, agrees that the IPv4 and TCP checksums
/// of every kind and the IPv6 TCP checksum are good.
#[test]
fn tshark_verifies_the_checksums_the_generator_writes() {
    for (target, sources) in [
        ("198.18.0.2:8080", "198.18.128.0/17"),
        ("[2001:2::2]:8080", "2001:2:0:8000::/49"),
    ] {
        let c = config(target, sources, FloodKind::Mixed, None);
        let frame = template(&c, SRC_MAC);
        let mut gen = FloodGen::load(&gen_config(&c, &frame, 0)).unwrap();
        for i in 0..3 {
            let (_, out) = run(&mut gen, &FloodGen::input(&frame));
            let v4 = c.target.is_ipv4();
            let fields: &[&str] = if v4 {
                &["tcp.flags", "ip.checksum.status", "tcp.checksum.status"]
            } else {
                &["tcp.flags", "tcp.checksum.status"]
            };
            let got = tshark_fields(&out, fields);
            let flags = ["0x0002", "0x0010", "0x0004"][i];
            let want = if v4 {
                format!("{flags}\t1\t1")
            } else {
                format!("{flags}\t1")
            };
            assert_eq!(got, want, "{target} run {i}");
        }
    }
}

/// `--kind est`: RSTs and ACKs in turn from the one client address, on
/// its ports only.
#[test]
fn est_flood_frames_alternate_rst_and_ack_from_the_clients_address_and_ports() {
    let c = config(
        "198.18.0.2:8080",
        "198.18.0.1/32",
        FloodKind::Est,
        Some("40000-40003"),
    );
    let seen = generate(&c, 40);
    for (i, s) in seen.iter().enumerate() {
        assert_eq!(s.src, IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1)));
        assert!((40000..=40003).contains(&s.sport));
        let want = if i % 2 == 0 { (RST, false) } else { (0, true) };
        assert_eq!((s.flags & !ACK, s.ack), want, "run {i}");
    }
    assert_eq!(
        distinct(seen.iter().map(|s| s.sport)),
        4,
        "every port is hit"
    );
}

/// The kernel hands pages back as the receiver left them: a frame an XDP
/// receiver turned into its answer in place (addresses, ports, flags
/// swapped, a longer header) becomes the template again, whole.
#[test]
fn a_page_the_receiver_rewrote_becomes_the_template_again() {
    let c = config("198.18.0.2:8080", "198.18.128.0/17", FloodKind::Syn, None);
    let frame = template(&c, SRC_MAC);
    let mut gen = FloodGen::load(&gen_config(&c, &frame, 0)).unwrap();
    let mut input = FloodGen::input(&frame);
    // MACs swapped, addresses and ports scrambled, flags SYN+ACK.
    input.copy_within(0..6, 6);
    input[..6].copy_from_slice(&[2, 0x78, 0x73, 0, 0, 1]);
    input[26..38].fill(0xab);
    input[47] = 0x12;
    let (verdict, out) = run(&mut gen, &input);
    assert_eq!(verdict, XDP_DROP);
    let s = parse(&c, &out);
    assert_eq!((s.flags, s.mss), (SYN, Some(1460)));
    assert!(inside(s.src, c.sources.0, c.sources.1));
}

/// The program is attached to the loopback device only to stay in the
/// kernel's XDP dispatcher: a loopback frame (zero MACs) or a frame of
/// another length passes untouched and is not counted.
#[test]
fn loopback_frames_and_frames_of_another_length_pass_untouched() {
    let c = config("198.18.0.2:8080", "198.18.128.0/17", FloodKind::Syn, None);
    let frame = template(&c, SRC_MAC);
    let mut gen = FloodGen::load(&gen_config(&c, &frame, 0)).unwrap();
    let mut lo = FloodGen::input(&frame);
    lo[..12].fill(0);
    let mut longer = FloodGen::input(&frame);
    longer.push(0);
    for other in [lo, frame.clone(), longer] {
        let (verdict, out) = run(&mut gen, &other);
        assert_eq!(verdict, XDP_PASS);
        assert_eq!(out, other);
    }
    assert_eq!(gen.counters().unwrap(), [0, 0, 0]);
}
