//! The xstack XDP program.
//!
//! Parses Ethernet / ARP / IPv4 / IPv6 / TCP with explicit bounds checks and
//! decides (the same over IPv4 and IPv6, with IPv6 keys and counters):
//! - TCP to an owned (address, port), ARP requests and replies and ICMP for
//!   an owned address: redirect through `XSKS` to the AF_XDP socket of the rx queue;
//! - malformed packets to an owned address: drop, counted by reason;
//! - everything else: `XDP_PASS`, so the kernel keeps all traffic that is not
//!   xstack's (xstack never eats a packet it cannot attribute to itself).
//!
//! TCP for an owned (address, port) is classed by its flags. Invalid flag
//! combinations are dropped by reason. Segments without SYN (established
//! flows) take the shortest path: while no SYN cookie was issued in the last
//! `cookie::MAX_AGE` minutes they go straight to the socket; otherwise a
//! lookup in the known-flow table (`FLOWS`) separates established flows from
//! final ACKs of cookie handshakes, whose cookie is checked here: valid ones
//! are redirected with the restored options in the XDP metadata
//! (`CookieMeta`), invalid ones dropped — unless the 4-tuple is one the
//! engine knows whose last SYN got a cookie, which the engine may still own
//! (its own SYN-ACK can win the race against the cookie SYN-ACK).
//!
//! SYNs pay for the flood checks: deny/allow prefix lists (LPM tries), a
//! per-source token bucket (GCRA cells in an array, a sketch keyed by a hash
//! of the source), a global SYN budget, and the
//! SYN-rate window that switches `auto` mode to cookies (with hysteresis, or
//! when userspace signals a full SYN queue). In cookie mode the SYN is turned
//! into a SYN-ACK in place and sent back with `XDP_TX` (or, with
//! `CFG_TX_REDIRECT`, redirected to the interface it came from; with
//! `CFG_COOKIE_VIA_ENGINE`, marked in the metadata and redirected to the
//! AF_XDP socket for the engine to send, for a veth whose peer runs no
//! NAPI); otherwise its flow is recorded in `FLOWS` (`FLOWS6` over IPv6)
//! and it goes to the engine.
//!
//! Rooms (this file holds only the entry point and the maps):
//! - `parse`: bounds-checked header reads and the TCP option walk;
//! - `classify`: Ethernet/ARP/IPv4/TCP checks, flag classes, the redirect;
//! - `classify6`: IPv6, its bounded extension-header walk, neighbour
//!   solicitations at an owned address's solicited-node group, ICMPv6 and
//!   TCP over IPv6 (header and flag checks, the IPv6 prefix lists and
//!   per-prefix buckets, then the paths below);
//! - `flows`: the known-flow tables and the path of segments without SYN;
//! - `synflood`: prefix lists, token buckets, the `auto` cookie switch, the
//!   cookie-or-engine decision for either family;
//! - `synack`: the in-place cookie SYN-ACK of either family and the cookie
//!   ACK check (the
//!   cookie arithmetic itself is the library's `stack_ebpf::cookie`, shared
//!   with userspace);
//! - `bench`: SYN cookie micro-benchmark programs (BPF_PROG_TEST_RUN only);
//! - `sink`: `xstack_sink`, a separate program for the *peer* end of a
//!   testbed that drops frames to one prefix (reflected SYN-ACKs);
//! - `floodgen`: `xstack_flood_gen`, a separate program `xstack flood
//!   --generator live` runs with live-frames `BPF_PROG_TEST_RUN` to send
//!   spoofed segments as `xdp_frame`s.
//!
//! Built only for `bpfel-unknown-none` (by `cargo xtask build`); on the host
//! this file compiles to an empty binary so `cargo build --workspace` works.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
// `core::intrinsics::atomic_or` (`flows::set_hint`): the BPF target has no
// atomic `fetch_or`.
#![cfg_attr(target_arch = "bpf", feature(core_intrinsics))]
#![cfg_attr(target_arch = "bpf", allow(internal_features))]

#[cfg(not(target_arch = "bpf"))]
fn main() {
    eprintln!("stack-ebpf is an XDP program; build it with `cargo xtask build`");
}

#[cfg(target_arch = "bpf")]
mod bench;
#[cfg(target_arch = "bpf")]
mod classify;
#[cfg(target_arch = "bpf")]
mod classify6;
#[cfg(target_arch = "bpf")]
mod floodgen;
#[cfg(target_arch = "bpf")]
mod flows;
#[cfg(target_arch = "bpf")]
mod parse;
#[cfg(target_arch = "bpf")]
mod sink;
#[cfg(target_arch = "bpf")]
mod synack;
#[cfg(target_arch = "bpf")]
mod synflood;

/// The program's maps; their names are what userspace opens them by.
#[cfg(target_arch = "bpf")]
mod maps {
    use aya_ebpf::{
        macros::map,
        maps::{Array, LpmTrie, LruHashMap, PerCpuArray, XskMap},
    };
    use stack_ebpf::{
        cookie::Secrets, hint::FLOW_HINT_WORDS, limit::SOURCE_CELLS, Addr6Entry, AddrEntry,
        Counter, CounterSet, FastpathConfig, FastpathState, Flow6Key, FlowKey, PrefixAddr,
        PrefixAddr6, TcpClass, ADDR_TABLE_LEN, COUNTER_COUNT, MAX_FLOWS, MAX_FLOWS6,
        MAX_OWNED_ADDRS, MAX_OWNED_ADDRS6, MAX_PREFIXES, MAX_QUEUES, PORT_WORDS, SIGNAL_COUNT,
        TCP_CLASS_COUNT,
    };

    /// One AF_XDP socket per rx queue, indexed by queue id.
    #[map]
    pub(crate) static XSKS: XskMap = XskMap::with_max_entries(MAX_QUEUES, 0);

    /// Verdict and drop-reason counters, indexed by [`Counter`].
    #[map]
    pub(crate) static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_COUNT, 0);

    /// TCP segments by class, indexed by [`TcpClass`].
    #[map]
    pub(crate) static TCP_CLASSES: PerCpuArray<u64> =
        PerCpuArray::with_max_entries(TCP_CLASS_COUNT, 0);

    /// Packets redirected, per rx queue.
    #[map]
    pub(crate) static QUEUE_REDIRECTS: PerCpuArray<u64> =
        PerCpuArray::with_max_entries(MAX_QUEUES, 0);

    /// The owned IPv4 addresses ([`stack_ebpf::addr_probe`]).
    #[map]
    pub(crate) static OWNED_ADDR_TABLE: Array<AddrEntry> =
        Array::with_max_entries(ADDR_TABLE_LEN, 0);

    /// Owned TCP ports of each owned IPv4 address: a bit per port, the
    /// [`PORT_WORDS`] words of the address's slot (its entry's
    /// [`stack_ebpf::ADDR_SLOT_MASK`] bits) at `slot * PORT_WORDS`
    /// ([`stack_ebpf::port_bit`]). One array load per segment, where a
    /// hash of (address, port) cost a lookup.
    #[map]
    pub(crate) static OWNED_PORT_BITS: Array<u64> =
        Array::with_max_entries(MAX_OWNED_ADDRS * PORT_WORDS, 0);

    /// The owned IPv6 addresses ([`stack_ebpf::addr6_probe`]; `ADDR_ARP`
    /// stands for neighbour discovery).
    #[map]
    pub(crate) static OWNED_ADDR_TABLE6: Array<Addr6Entry> =
        Array::with_max_entries(ADDR_TABLE_LEN, 0);

    /// Owned TCP ports of each owned IPv6 address, as `OWNED_PORT_BITS`
    /// over IPv4: slots of their own (an IPv6 address's slot is in its
    /// `OWNED_ADDR_TABLE6` entry), so that each family keeps its 256.
    #[map]
    pub(crate) static OWNED_PORT_BITS6: Array<u64> =
        Array::with_max_entries(MAX_OWNED_ADDRS6 * PORT_WORDS, 0);

    /// The fast-path configuration (entry 0), written by userspace.
    #[map]
    pub(crate) static FASTPATH_CONFIG: Array<FastpathConfig> = Array::with_max_entries(1, 0);

    /// The fast-path state (entry 0), kept by this program.
    #[map]
    pub(crate) static FASTPATH_STATE: Array<FastpathState> = Array::with_max_entries(1, 0);

    /// The unknown-segment filter's deadline (entry 0, `bpf_ktime_get_ns`
    /// clock, CLOCK_MONOTONIC ns), written by userspace while the engine
    /// sees a flood of segments for no connection: until then segments
    /// without SYN are checked against the known-flow tables as while
    /// cookies are in use (`flows::cookies_in_use`). 0: never armed.
    #[map]
    pub(crate) static FILTER_UNTIL: Array<u64> = Array::with_max_entries(1, 0);

    /// Signals from userspace (`SIGNAL_*`).
    #[map]
    pub(crate) static SIGNALS: Array<u32> = Array::with_max_entries(SIGNAL_COUNT, 0);

    /// SYN cookie secrets (entry 0), rotated by userspace.
    #[map]
    pub(crate) static SECRETS: Array<Secrets> = Array::with_max_entries(1, 0);

    /// Per-source SYN token buckets: GCRA theoretical arrival times (ns)
    /// in two rows of cells, a source's cells chosen by a keyed hash of its
    /// address ([`stack_ebpf::limit`]: no insert, no eviction, no lock).
    #[map]
    pub(crate) static SYN_SOURCES: Array<u64> = Array::with_max_entries(SOURCE_CELLS, 0);

    /// Per-source SYN token buckets over IPv6, the same by the source's
    /// prefix (`source6_prefix_len` bits, [`stack_ebpf::ipv6_prefix`]).
    #[map]
    pub(crate) static SYN_SOURCES6: Array<u64> = Array::with_max_entries(SOURCE_CELLS, 0);

    /// The flow-source hint: a bit per slot, 64 to a word, set for every
    /// source that got a `FLOWS`/`FLOWS6` entry ([`stack_ebpf::hint`]); a
    /// clear bit skips the table lookup.
    #[map]
    pub(crate) static FLOW_HINTS: Array<u64> = Array::with_max_entries(FLOW_HINT_WORDS, 0);

    /// Known flows (see [`crate::flows`]).
    #[map]
    pub(crate) static FLOWS: LruHashMap<FlowKey, u8> = LruHashMap::with_max_entries(MAX_FLOWS, 0);

    /// Known IPv6 flows (see [`crate::flows`]): a map of their own, so the
    /// IPv4 key stays 12 bytes.
    #[map]
    pub(crate) static FLOWS6: LruHashMap<Flow6Key, u8> =
        LruHashMap::with_max_entries(MAX_FLOWS6, 0);

    /// SYN sources that are never answered.
    #[map]
    pub(crate) static DENY_PREFIXES: LpmTrie<PrefixAddr, u8> =
        LpmTrie::with_max_entries(MAX_PREFIXES, 0);

    /// IPv6 SYN sources that are never answered.
    #[map]
    pub(crate) static DENY_PREFIXES6: LpmTrie<PrefixAddr6, u8> =
        LpmTrie::with_max_entries(MAX_PREFIXES, 0);

    /// IPv6 SYN sources exempt from rate limits (and, in allow-only mode,
    /// the only ones answered).
    #[map]
    pub(crate) static ALLOW_PREFIXES6: LpmTrie<PrefixAddr6, u8> =
        LpmTrie::with_max_entries(MAX_PREFIXES, 0);

    /// SYN sources exempt from rate limits (and, in allow-only mode, the
    /// only ones answered).
    #[map]
    pub(crate) static ALLOW_PREFIXES: LpmTrie<PrefixAddr, u8> =
        LpmTrie::with_max_entries(MAX_PREFIXES, 0);

    /// Adds one to slot `index` of a per-CPU counter array (`COUNTERS`,
    /// `TCP_CLASSES`, `QUEUE_REDIRECTS`): the one way the program counts.
    #[inline(always)]
    pub(crate) fn bump(map: &PerCpuArray<u64>, index: u32) {
        if let Some(p) = map.get_ptr_mut(index) {
            // SAFETY: per-CPU slot, no concurrent writer on this CPU.
            unsafe { *p += 1 };
        }
    }

    /// Counts a verdict or drop reason.
    #[inline(always)]
    pub(crate) fn count(c: Counter) {
        bump(&COUNTERS, c.index());
    }

    /// Counts a TCP segment's class.
    #[inline(always)]
    pub(crate) fn class(c: TcpClass) {
        bump(&TCP_CLASSES, c.index());
    }
}

#[cfg(target_arch = "bpf")]
use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
#[cfg(target_arch = "bpf")]
use aya_log_ebpf::debug;
#[cfg(target_arch = "bpf")]
use maps::count;
#[cfg(target_arch = "bpf")]
use stack_ebpf::Counter;

#[cfg(target_arch = "bpf")]
#[xdp]
pub fn xstack_xdp(ctx: XdpContext) -> u32 {
    count(Counter::RxPackets);
    let (action, counter) = classify::classify(&ctx);
    count(counter);
    // One log site for every verdict on owned traffic (`xstack -v`): at
    // each `redirect` call site it multiplied the paths the verifier
    // walks past its 1M-instruction limit, so that `-v` could not load.
    if action != xdp_action::XDP_PASS {
        debug!(
            &ctx,
            "{} (action {}) on queue {}",
            counter.name(),
            action,
            ctx.rx_queue_index()
        );
    }
    action
}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
