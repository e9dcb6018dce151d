//! BPF_PROG_TEST_RUN of the XDP program, for the IPv4 and IPv6 test files:
//! run one frame, and check its verdict and counters.

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
