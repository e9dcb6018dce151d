//! BPF_PROG_TEST_RUN of the XDP program, for the IPv4 and IPv6 test files:
//! run one frame, and check its verdict and counters; run one and get the
//! frame it leaves (a SYN-ACK built in place) with its XDP metadata; read
//! a frame back with tshark; the cookie clock.

use aya::programs::{TestRun, TestRunOptions};
use stack_ebpf::Counter;
use xstack::datapath::xdp::XdpProgram;

/// Runs the program once on `frame`; returns its verdict.
pub fn run(p: &mut XdpProgram, frame: &[u8]) -> u32 {
    let mut opts = TestRunOptions::new();
    opts.data_in = Some(frame);
    p.program()
        .test_run(opts)
        .expect("BPF_PROG_TEST_RUN")
        .return_value
}

/// Runs `frame` and checks the verdict and that exactly `counter` (plus
/// rx_packets) moved.
pub fn expect(p: &mut XdpProgram, frame: &[u8], verdict: u32, counter: Counter) {
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

/// Runs `frame`, returning the verdict, the output frame (XDP metadata
/// first) and the length of the metadata in front of it.
pub fn run_out(p: &mut XdpProgram, frame: &[u8]) -> (u32, Vec<u8>, usize) {
    let mut out = vec![0u8; 512];
    // struct xdp_md: data, data_end, data_meta, ingress_ifindex,
    // rx_queue_index, egress_ifindex.
    let mut ctx_in = [0u8; 24];
    ctx_in[4..8].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
    let mut ctx_out = [0u8; 24];
    let mut opts = TestRunOptions::new();
    opts.data_in = Some(frame);
    opts.data_out = Some(&mut out);
    opts.ctx_in = Some(&ctx_in);
    opts.ctx_out = Some(&mut ctx_out);
    let r = p.program().test_run(opts).expect("BPF_PROG_TEST_RUN");
    let meta = u32::from_ne_bytes(ctx_out[0..4].try_into().unwrap()) as usize;
    out.truncate(r.data_size_out as usize);
    (r.return_value, out, meta)
}

/// Runs `frame`: the verdict, the one counter besides rx_packets that
/// moved (asserted to be exactly one), the output frame and the length of
/// its metadata.
pub fn moved(p: &mut XdpProgram, frame: &[u8]) -> (u32, Counter, Vec<u8>, usize) {
    let before = p.counters().unwrap();
    let (v, out, meta) = run_out(p, frame);
    let after = p.counters().unwrap();
    let changed: Vec<Counter> = Counter::ALL
        .iter()
        .copied()
        .filter(|c| *c != Counter::RxPackets && after[c.name()] != before[c.name()])
        .collect();
    assert_eq!(changed.len(), 1, "exactly one verdict counter: {changed:?}");
    assert_eq!(after["rx_packets"] - before["rx_packets"], 1);
    (v, changed[0], out, meta)
}

/// `clock` (a `libc::CLOCK_*`) in ns: CLOCK_MONOTONIC is what
/// `bpf_ktime_get_ns` reads, CLOCK_MONOTONIC_COARSE `bpf_ktime_get_coarse_ns`.
pub fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime with a valid out pointer.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The SYN cookie minute counter now (CLOCK_MONOTONIC, as XDP reads it).
pub fn now_count() -> u32 {
    stack_ebpf::cookie::count_from_ns(clock_ns(libc::CLOCK_MONOTONIC))
}

/// Writes `frame` as a one-packet pcap and has tshark print `fields` of
/// it (tab-separated), with IP and TCP checksum verification on: a
/// checksum's status field reads 1 when good (Wireshark's epan/proto.h: 0
/// bad, 1 good, 2 unverified). Needs tshark (`cargo xtask setup` and
/// `cargo xtask test` install it).
pub fn tshark_fields(frame: &[u8], fields: &[&str]) -> String {
    let ok = std::process::Command::new("tshark")
        .arg("-v")
        .output()
        .expect("tshark is needed for this test: run `cargo xtask setup` (apt-get install tshark)");
    assert!(ok.status.success(), "tshark -v failed");
    let mut pcap = Vec::new();
    pcap.extend_from_slice(&0xa1b2c3d4u32.to_le_bytes());
    pcap.extend_from_slice(&2u16.to_le_bytes());
    pcap.extend_from_slice(&4u16.to_le_bytes());
    pcap.extend_from_slice(&[0u8; 8]);
    pcap.extend_from_slice(&65535u32.to_le_bytes());
    pcap.extend_from_slice(&1u32.to_le_bytes());
    pcap.extend_from_slice(&[0u8; 8]);
    pcap.extend_from_slice(&(frame.len() as u32).to_le_bytes());
    pcap.extend_from_slice(&(frame.len() as u32).to_le_bytes());
    pcap.extend_from_slice(frame);
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let path = std::env::temp_dir().join(format!(
        "xstack-synack-{}-{}.pcap",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::write(&path, &pcap).unwrap();
    let mut c = std::process::Command::new("tshark");
    c.args([
        "-o",
        "tcp.check_checksum:TRUE",
        "-o",
        "ip.check_checksum:TRUE",
        "-T",
        "fields",
    ]);
    for f in fields {
        c.args(["-e", f]);
    }
    let out = c.arg("-r").arg(&path).output().expect("tshark");
    let _ = std::fs::remove_file(&path);
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success(),
        "tshark: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// Checks the TCP header `t` of a cookie SYN-ACK (either family) answering
/// a SYN from port 40000 to `port` with sequence number `syn_seq`: ports,
/// ACK number, header length, flags, window 65535, urgent pointer, MSS
/// `mss`, and, when the SYN carried Linux's options (`syn_tsval`, its
/// TSval), SACK-permitted, timestamps echoing it and window scale 7.
/// Returns (ISN, TSval). The IP layer and the checksum are the caller's.
pub fn check_synack_tcp(
    t: &[u8],
    port: u16,
    syn_seq: u32,
    mss: u16,
    syn_tsval: Option<u32>,
) -> (u32, Option<u32>) {
    let want_len = if syn_tsval.is_some() { 40 } else { 24 };
    assert_eq!(t.len(), want_len);
    assert_eq!(u16::from_be_bytes([t[0], t[1]]), port);
    assert_eq!(u16::from_be_bytes([t[2], t[3]]), 40000);
    let isn = u32::from_be_bytes([t[4], t[5], t[6], t[7]]);
    assert_eq!(u32::from_be_bytes([t[8], t[9], t[10], t[11]]), syn_seq + 1);
    assert_eq!(t[12] >> 4, (want_len / 4) as u8);
    assert_eq!(t[13], 0x12, "SYN+ACK");
    assert_eq!(u16::from_be_bytes([t[14], t[15]]), 65535, "window");
    assert_eq!(&t[18..20], &[0, 0], "urgent pointer");
    assert_eq!(&t[20..22], &[2, 4], "MSS option");
    assert_eq!(u16::from_be_bytes([t[22], t[23]]), mss, "MSS");
    let tsval = syn_tsval.map(|tsecr| {
        assert_eq!(&t[24..28], &[4, 2, 8, 10], "SACK-permitted, timestamps");
        assert_eq!(u32::from_be_bytes([t[32], t[33], t[34], t[35]]), tsecr);
        assert_eq!(&t[36..40], &[1, 3, 3, 7], "window scale 7");
        u32::from_be_bytes([t[28], t[29], t[30], t[31]])
    });
    (isn, tsval)
}
