//! What the xstack XDP program and userspace share: the `#[repr(C)]` map
//! keys and values, the counter sets ([`counters!`], the one way to declare
//! them), the SYN cookie arithmetic ([`cookie`]), the SYN rate limits
//! ([`limit`]), the one SipHash ([`siphash`]) and the TCP option walk
//! with its fast path ([`tcpopt`]).
//!
//! The shared types are plain old data. Everything compiles for both
//! `bpfel-unknown-none` (the XDP program) and the host (the `user` feature adds
//! the `aya::Pod` impls userspace needs to read and write maps). The design
//! notes are in `docs/ARCHITECTURE.md`.
#![no_std]

pub mod cookie;
pub mod hint;
pub mod limit;
pub mod siphash;
pub mod tcpopt;

/// Highest number of AF_XDP sockets (one per rx queue) the XSKMAP holds.
pub const MAX_QUEUES: u32 = 64;

/// `u64` words of one owned address's port bitmap (IPv4 or IPv6): a bit
/// per TCP port (65,536 bits).
pub const PORT_WORDS: u32 = 1024;

/// Bit position of an owned address's slot in its `OWNED_ADDR_TABLE`
/// (`OWNED_ADDR_TABLE6`) flags: which [`PORT_WORDS`] words of
/// `OWNED_PORT_BITS` (`OWNED_PORT_BITS6`) are its ports.
pub const ADDR_SLOT_SHIFT: u32 = 8;

/// Where TCP `port` (host order) of the owned address in `slot` lies in
/// `OWNED_PORT_BITS` (IPv4) or `OWNED_PORT_BITS6` (IPv6, slots of their
/// own): the word's index and the bit within it.
/// The XDP program tests it with one array load where it did a hash
/// lookup of (address, port) per packet.
#[inline(always)]
pub const fn port_bit(slot: u32, port: u16) -> (u32, u64) {
    (
        (slot & 0xff) * PORT_WORDS + (port >> 6) as u32,
        1u64 << (port & 63),
    )
}

/// Owned IPv4 addresses, at most (port-bitmap slots).
pub const MAX_OWNED_ADDRS: u32 = 256;

/// Name of the XDP program in the object file; `xstack` recognises its own
/// program on an interface by this name.
pub const PROGRAM_NAME: &str = "xstack_xdp";

/// `OWNED_ADDR_TABLE` flag: ARP requests and replies for this address go
/// to the engine.
pub const ADDR_ARP: u32 = 1 << 0;
/// `OWNED_ADDR_TABLE` flag: ICMP to this address goes to the engine.
pub const ADDR_ICMP: u32 = 1 << 1;
/// `OWNED_ADDR_TABLE` flag: the address is the engine's alone (no kernel
/// interface has it), so TCP to every port of it goes to the engine, which
/// answers closed ports with RST as a host does (RFC 9293 §3.10.7.1);
/// without it, ports the engine does not serve stay with the kernel.
pub const ADDR_ALL_TCP: u32 = 1 << 2;
/// `OWNED_ADDR_TABLE` flag bits holding the address's port-bitmap slot
/// (`value >> ADDR_SLOT_SHIFT`, below [`MAX_OWNED_ADDRS`]).
pub const ADDR_SLOT_MASK: u32 = 0xff << ADDR_SLOT_SHIFT;

/// A set of named counters: a dense `#[repr(u32)]` enum whose values index
/// a counter array (in the XDP program a `PerCpuArray<u64>` of
/// [`CounterSet::COUNT`] entries). Implemented by the enum form of
/// [`counters!`]; a `name: [Set]` field of its struct form holds one `u64`
/// per member.
pub trait CounterSet: Copy + 'static {
    /// Every counter, in index order.
    const ALL: &'static [Self];
    /// Number of counters (the array's length).
    const COUNT: u32;
    /// The counter's index in the array.
    fn index(self) -> u32;
    /// The counter's name as `xstack stats` prints it.
    fn name(self) -> &'static str;
}

/// The one way to declare counters, in two forms.
///
/// **Enum form** (a counter array, as the XDP program keeps them): an enum
/// whose variants are the counters, each with the name `xstack stats`
/// prints. It gets `#[repr(u32)]`, dense indices from 0, inherent `ALL`,
/// `COUNT` and `name()` (usable in `const` contexts such as map sizes) and a
/// [`CounterSet`] impl (for code generic over sets, such as a reader that
/// sums a per-CPU array by name).
///
/// ```
/// stack_ebpf::counters! {
///     /// Example counters.
///     pub enum Example {
///         /// Frames seen.
///         Frames = "frames",
///         /// Frames dropped.
///         Drops = "drops",
///     }
/// }
/// assert_eq!(Example::COUNT, 2);
/// assert_eq!(Example::ALL[1].name(), "drops");
/// ```
///
/// **Struct form** (userspace, one owner per struct): a struct of `pub`
/// counter fields that code bumps with `stats.field += 1`. A field is
/// - `name`: a `u64` printed as `name`;
/// - `name = "Label"`: a `u64` printed as `Label` (e.g. the Linux `nstat`
///   name of the same counter);
/// - `name: [Set]`: one `u64` per member of the [`CounterSet`] `Set`
///   (`[u64; Set::COUNT]`, indexed by [`CounterSet::index`]), each printed
///   with [`CounterSet::name`] (e.g. drops by parse error).
///
/// Attributes before the struct (`#[derive(...)]`, `Serialize` included)
/// and before each field (docs, `#[serde(skip)]`) pass through unchanged.
/// The struct gets `iter()`, every counter with its name in declaration
/// order (a set field's members in index order), and `add()`, the
/// field-wise sum that merges the counters of several owners (one per
/// worker). The struct form uses only `core`; the XDP program never
/// invokes it.
///
/// ```
/// stack_ebpf::counters! {
///     /// Example drop reasons.
///     pub enum Reason {
///         /// Too short.
///         Short = "drop_short",
///         /// Bad checksum.
///         Checksum = "drop_checksum",
///     }
/// }
/// stack_ebpf::counters! {
///     /// Example per-owner counters.
///     #[derive(Clone, Debug, Default, PartialEq, Eq)]
///     pub struct Stats {
///         /// Frames seen.
///         frames,
///         /// Listen queue overflows, printed with their `nstat` name.
///         overflows = "ListenOverflows",
///         /// Drops by reason.
///         drops: [Reason],
///     }
/// }
/// let mut a = Stats::default();
/// a.frames += 2;
/// a.drops[Reason::Checksum as usize] += 1;
/// let mut sum = Stats::default();
/// sum.add(&a);
/// sum.add(&a);
/// let all: Vec<_> = sum.iter().collect();
/// assert_eq!(
///     all,
///     [("frames", 4), ("ListenOverflows", 0), ("drop_short", 0), ("drop_checksum", 2)]
/// );
/// ```
#[macro_export]
macro_rules! counters {
    // Internal rules of the struct form, one field at a time: its type,
    // its (name, value) pairs and its share of `add`.
    (@ty) => { u64 };
    (@ty [$set:ty]) => { [u64; <$set as $crate::CounterSet>::COUNT as usize] };
    (@iter $s:ident, $field:ident) => {
        ::core::iter::once((::core::stringify!($field), $s.$field))
    };
    (@iter $s:ident, $field:ident = $label:literal) => {
        ::core::iter::once(($label, $s.$field))
    };
    (@iter $s:ident, $field:ident : [$set:ty]) => {
        <$set as $crate::CounterSet>::ALL.iter().map(move |&c| {
            (
                <$set as $crate::CounterSet>::name(c),
                $s.$field[<$set as $crate::CounterSet>::index(c) as usize],
            )
        })
    };
    (@add $s:ident, $o:ident, $field:ident) => {
        $s.$field += $o.$field;
    };
    (@add $s:ident, $o:ident, $field:ident [$set:ty]) => {
        for (a, b) in $s.$field.iter_mut().zip($o.$field.iter()) {
            *a += *b;
        }
    };

    // Enum form.
    (
        $(#[$meta:meta])*
        $vis:vis enum $set:ident {
            $( $(#[$doc:meta])* $variant:ident = $name:literal, )*
        }
    ) => {
        $(#[$meta])*
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        $vis enum $set {
            $( $(#[$doc])* $variant, )*
        }

        impl $set {
            /// All counters, in index order.
            pub const ALL: &'static [$set] = &[$($set::$variant,)*];

            /// Number of counters.
            pub const COUNT: u32 = Self::ALL.len() as u32;

            /// The counter's name as `xstack stats` prints it.
            pub const fn name(self) -> &'static str {
                match self { $($set::$variant => $name,)* }
            }
        }

        impl $crate::CounterSet for $set {
            const ALL: &'static [Self] = Self::ALL;
            const COUNT: u32 = Self::COUNT;
            #[inline(always)]
            fn index(self) -> u32 {
                self as u32
            }
            #[inline(always)]
            fn name(self) -> &'static str {
                Self::name(self)
            }
        }
    };

    // Struct form.
    (
        $(#[$meta:meta])*
        $vis:vis struct $stats:ident {
            $( $(#[$doc:meta])* $field:ident $(= $label:literal)? $(: [$set:ty])? ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis struct $stats {
            $( $(#[$doc])* pub $field: $crate::counters!(@ty $([$set])?), )*
        }

        impl $stats {
            /// Every counter with the name `xstack stats` prints, in
            /// declaration order.
            pub fn iter(&self) -> impl ::core::iter::Iterator<Item = (&'static str, u64)> + '_ {
                let s = self;
                ::core::iter::empty()
                    $( .chain($crate::counters!(@iter s, $field $(= $label)? $(: [$set])?)) )*
            }

            /// Adds `other`'s counters to these, field by field.
            pub fn add(&mut self, other: &Self) {
                $( $crate::counters!(@add self, other, $field $([$set])?); )*
            }
        }
    };
}

counters! {
    /// Per-CPU counters kept by the XDP program, one per verdict and reason.
    ///
    /// Every packet the program sees increments `RxPackets` and exactly one
    /// other counter, so the verdict counters always sum to `RxPackets`.
    pub enum Counter {
        /// Every frame the program ran on.
        RxPackets = "rx_packets",
        /// Frame shorter than an Ethernet header: passed to the kernel.
        PassShortFrame = "pass_short_frame",
        /// Not IPv4, IPv6 or ARP (VLAN, LLDP...): passed.
        PassNotIpv4 = "pass_not_ipv4",
        /// ARP not addressed to an owned address: passed.
        PassArpOther = "pass_arp_other",
        /// IPv4 header too short to read the destination: passed.
        PassShortIp = "pass_short_ip",
        /// IPv4 to an address xstack does not own: passed.
        PassIpNotOwned = "pass_ip_not_owned",
        /// IPv4 to an owned address with a protocol other than TCP or ICMP: passed.
        PassOtherProto = "pass_other_proto",
        /// TCP to an owned address on a port nobody serves: passed.
        PassPortNotOwned = "pass_port_not_owned",
        /// TCP to an owned (address, port): redirected to the AF_XDP socket.
        RedirectTcp = "redirect_tcp",
        /// ARP request or reply for an owned address: redirected.
        RedirectArp = "redirect_arp",
        /// ICMP to an owned address: redirected.
        RedirectIcmp = "redirect_icmp",
        /// Owned address, IPv4 version or IHL invalid: dropped.
        DropIpHeader = "drop_ip_header",
        /// Owned address, IPv4 total length below the header or past the frame: dropped.
        DropIpLength = "drop_ip_length",
        /// Owned address, IPv4 fragment (the engine does not reassemble): dropped.
        DropIpFragment = "drop_ip_fragment",
        /// Owned (address, port), TCP header truncated: dropped.
        DropTcpTruncated = "drop_tcp_truncated",
        /// Owned (address, port), TCP data offset below 5 or past the packet: dropped.
        DropTcpDataOffset = "drop_tcp_data_offset",
        /// Ours, but no AF_XDP socket is bound on the rx queue it arrived on: dropped.
        DropNoSocket = "drop_no_socket",
        /// Owned (address, port), no TCP flag at all ("null scan"): dropped.
        DropFlagsNone = "drop_flags_none",
        /// Owned (address, port), FIN+SYN+RST+PSH+ACK+URG all set ("xmas"): dropped.
        DropFlagsAll = "drop_flags_all",
        /// Owned (address, port), SYN and FIN together: dropped.
        DropFlagsSynFin = "drop_flags_syn_fin",
        /// Owned (address, port), SYN and RST together: dropped.
        DropFlagsSynRst = "drop_flags_syn_rst",
        /// Owned (address, port), FIN without ACK: dropped.
        DropFlagsFinNoAck = "drop_flags_fin_no_ack",
        /// Owned (address, port), neither SYN, RST nor ACK (e.g. PSH or URG alone): dropped.
        DropFlagsNoAck = "drop_flags_no_ack",
        /// SYN whose TCP options run past the header or have a bad length: dropped.
        DropTcpOptions = "drop_tcp_options",
        /// SYN from a source on the deny list: dropped.
        DropSynDenied = "drop_syn_denied",
        /// SYN from a source not on the allow list (allow-only mode): dropped.
        DropSynNotAllowed = "drop_syn_not_allowed",
        /// SYN over its source's token bucket: dropped.
        DropSynSourceRate = "drop_syn_source_rate",
        /// SYN over the global SYN budget: dropped.
        DropSynGlobalRate = "drop_syn_global_rate",
        /// SYN with IPv4 options or IPv6 extension headers in cookie mode
        /// (the in-place SYN-ACK has none): dropped.
        DropSynIpOptions = "drop_syn_ip_options",
        /// SYN-ACK could not be built (no tailroom to grow the frame): dropped.
        DropSynAckBuild = "drop_synack_build",
        /// ACK for no known flow whose cookie does not check (forged, expired or
        /// for a rotated-out secret), while cookies are in use: dropped.
        DropCookieInvalid = "drop_cookie_invalid",
        /// RST for no known flow while cookies are in use: dropped.
        DropNoFlow = "drop_no_flow",
        /// SYN answered in XDP with a SYN cookie SYN-ACK: XDP_TX.
        TxCookieSynAck = "tx_cookie_synack",
        /// SYN answered with a SYN cookie SYN-ACK built in XDP and redirected,
        /// marked [`COOKIE_META_SYNACK`], to the AF_XDP socket for the engine
        /// to send ([`CFG_COOKIE_VIA_ENGINE`]).
        RedirectCookieSynAck = "redirect_cookie_synack",
        /// Final ACK with a valid cookie: redirected with the decoded options in
        /// the XDP metadata ([`CookieMeta`]).
        RedirectCookieAck = "redirect_cookie_ack",
        /// TCP to a port nobody serves on an address that is the engine's
        /// alone (`ADDR_ALL_TCP`): redirected, the engine answers RST.
        RedirectTcpClosedPort = "redirect_tcp_closed_port",
        /// IPv6 header too short, or to an address xstack does not own
        /// (and not a solicitation for one): passed.
        PassIpv6NotOwned = "pass_ipv6_not_owned",
        /// IPv6 to an owned address with an upper layer other than TCP or
        /// ICMPv6: passed.
        PassIpv6OtherProto = "pass_ipv6_other_proto",
        /// TCP over IPv6 to an owned address on a port nobody serves: passed.
        PassIpv6PortNotOwned = "pass_ipv6_port_not_owned",
        /// Neighbour solicitation to an owned address's solicited-node
        /// group (MAC 33:33:ff:…) for that address: redirected.
        RedirectNdp = "redirect_ndp",
        /// ICMPv6 to an owned address (echo, NS, NA): redirected.
        RedirectIcmpv6 = "redirect_icmpv6",
        /// TCP over IPv6 to an owned (address, port), or to any port of an
        /// address that is the engine's alone: redirected.
        RedirectTcp6 = "redirect_tcp6",
        /// Owned address, IPv6 version not 6 or payload length past the
        /// frame: dropped.
        DropIpv6Header = "drop_ipv6_header",
        /// Owned address, an IPv6 fragment (the engine does not
        /// reassemble): dropped.
        DropIpv6Fragment = "drop_ipv6_fragment",
        /// Owned address, more IPv6 extension headers than the walk follows
        /// ([`IPV6_MAX_EXT_HEADERS`]) or more than [`IPV6_MAX_EXT_BYTES`]
        /// of them: dropped.
        DropIpv6ExtChain = "drop_ipv6_ext_chain",
        /// Owned address, an IPv6 extension header past the packet: dropped.
        DropIpv6ExtTruncated = "drop_ipv6_ext_truncated",
        /// IPv6 SYN answered in XDP with a SYN cookie SYN-ACK: XDP_TX.
        TxCookieSynAck6 = "tx_cookie_synack6",
        /// IPv6 SYN answered with a SYN cookie SYN-ACK built in XDP and
        /// redirected, marked [`COOKIE_META_SYNACK`], to the AF_XDP socket
        /// for the engine to send ([`CFG_COOKIE_VIA_ENGINE`]).
        RedirectCookieSynAck6 = "redirect_cookie_synack6",
        /// Final ACK over IPv6 with a valid cookie: redirected with the
        /// decoded options in the XDP metadata ([`CookieMeta`]).
        RedirectCookieAck6 = "redirect_cookie_ack6",
    }
}

/// Most IPv6 extension headers (hop-by-hop, routing, destination options)
/// the XDP program follows to the upper layer; the engine's walk has the
/// same bound.
pub const IPV6_MAX_EXT_HEADERS: usize = 4;
/// Most bytes of IPv6 extension headers the XDP program follows.
pub const IPV6_MAX_EXT_BYTES: usize = 256;
/// Owned IPv6 addresses, at most: each has a slot of [`PORT_WORDS`] words
/// in `OWNED_PORT_BITS6` ([`port_bit`]), as IPv4 addresses have in
/// `OWNED_PORT_BITS`.
pub const MAX_OWNED_ADDRS6: u32 = 256;
const _: () = assert!(MAX_OWNED_ADDRS6 - 1 <= ADDR_SLOT_MASK >> ADDR_SLOT_SHIFT);

/// The IPv6 address `a` (four wire-order words, as [`Addr6Key`]) cut to
/// its first `len` bits: the per-source SYN bucket's key.
#[inline(always)]
pub fn ipv6_prefix(a: [u32; 4], len: u32) -> [u32; 4] {
    let mut out = [0u32; 4];
    let mut i = 0;
    while i < 4 {
        let bits = len.saturating_sub(32 * i as u32).min(32);
        let mask = if bits == 0 {
            0
        } else {
            u32::MAX << (32 - bits)
        };
        out[i] = (u32::from_be(a[i]) & mask).to_be();
        i += 1;
    }
    out
}

counters! {
    /// Per-CPU counters of the TCP segments for owned (address, port)
    /// pairs with valid flags, by class. These are not verdicts: a
    /// segment counts once here and once among the [`Counter`] verdicts.
    pub enum TcpClass {
        /// SYN without ACK: a connection attempt.
        Syn = "syn",
        /// SYN+ACK: an answer to a connection the engine opened.
        SynAck = "synack",
        /// ACK without payload, FIN or RST.
        Ack = "ack",
        /// Segment with payload (and without FIN or RST).
        Data = "data",
        /// FIN (with ACK).
        Fin = "fin",
        /// RST.
        Rst = "rst",
    }
}

/// Number of classes in [`TcpClass`].
pub const TCP_CLASS_COUNT: u32 = TcpClass::COUNT;

/// `FastpathConfig::syncookies`: never answer SYNs in XDP.
pub const SYNCOOKIES_NEVER: u32 = 0;
/// `FastpathConfig::syncookies`: cookies when the SYN rate passes a threshold
/// or userspace signals a full SYN queue.
pub const SYNCOOKIES_AUTO: u32 = 1;
/// `FastpathConfig::syncookies`: every SYN is answered with a cookie.
pub const SYNCOOKIES_ALWAYS: u32 = 2;

/// `FastpathConfig::flags`: check SYN sources against the deny list.
pub const CFG_DENY_LIST: u32 = 1 << 0;
/// `FastpathConfig::flags`: sources on the allow list skip the rate limits.
pub const CFG_ALLOW_LIST: u32 = 1 << 1;
/// `FastpathConfig::flags`: only sources on the allow list may open connections.
pub const CFG_ALLOW_ONLY: u32 = 1 << 2;
/// `FastpathConfig::flags`: answer ECN-setup SYNs with ECN (RFC 3168).
pub const CFG_ECN: u32 = 1 << 3;
/// `FastpathConfig::flags`: send cookie SYN-ACKs with `bpf_redirect` to the
/// ingress interface instead of `XDP_TX`. On veth, `XDP_TX` frames wait in
/// the peer's ring until something else wakes its NAPI (the peer kicks it
/// only when it has an XDP program of its own); a redirect's flush wakes it.
pub const CFG_TX_REDIRECT: u32 = 1 << 4;

// --- Cookie SYN-ACKs sent by the engine (issue 11: veth without NAPI) ---

/// `FastpathConfig::flags`: cookie SYN-ACKs are built in XDP as always, then
/// redirected to the AF_XDP socket with [`COOKIE_META_SYNACK`] in the
/// metadata, and the engine sends them through AF_XDP TX, unchanged. For a
/// veth whose peer runs no NAPI (GRO off, no XDP program: the kernel's
/// default), where frames sent with `XDP_TX` or `bpf_redirect` are never
/// delivered while AF_XDP TX (the normal veth xmit) is.
pub const CFG_COOKIE_VIA_ENGINE: u32 = 1 << 5;
/// `CookieMeta::magic` of a cookie SYN-ACK XDP built and hands to the engine
/// to send as it is ("xcs1"); the other fields are zero.
pub const COOKIE_META_SYNACK: u32 = 0x7863_7331;

/// Size of the known-flow table (LRU); see the XDP program's `flows` module.
pub const MAX_FLOWS: u32 = 262144;
/// Size of the IPv6 known-flow table (LRU, keyed on [`Flow6Key`]); the
/// same bound as over IPv4.
pub const MAX_FLOWS6: u32 = MAX_FLOWS;
/// Entries of each prefix list.
pub const MAX_PREFIXES: u32 = 1024;

/// The fast path's configuration: one entry of the `FASTPATH_CONFIG` array,
/// written by userspace at any time (the program reads it per packet, so a
/// change applies without reattaching). Rates are kept as GCRA intervals
/// (ns per token) and tolerances (ns of burst), computed by userspace.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct FastpathConfig {
    /// `SYNCOOKIES_*`.
    pub syncookies: u32,
    /// `CFG_*` flags.
    pub flags: u32,
    /// MSS announced in cookie SYN-ACKs over IPv4 (MTU − 40 at most); the
    /// client's MSS is clamped to it. Over IPv6 both are 20 less (MTU − 60:
    /// the IPv6 header is 20 bytes longer).
    pub mss: u32,
    /// Window-scale shift announced in cookie SYN-ACKs (when the client offers it).
    pub wscale: u32,
    /// Receive window in cookie SYN-ACKs (unscaled, as RFC 7323 §2.2 demands).
    pub window: u32,
    /// IPv4 TTL and IPv6 hop limit of cookie SYN-ACKs.
    pub ttl: u32,
    /// Length of the SYN-rate window (auto mode), ns.
    pub window_ns: u64,
    /// SYNs per window at or above which auto mode turns cookies on.
    pub syn_on: u64,
    /// SYNs per window below which auto mode turns cookies off again.
    pub syn_off: u64,
    /// Per-source SYN interval, ns per SYN; 0: no per-source limit.
    pub source_interval_ns: u64,
    /// Per-source burst tolerance, ns.
    pub source_tolerance_ns: u64,
    /// Global SYN interval, ns per SYN; 0: no global budget.
    pub global_interval_ns: u64,
    /// Global burst tolerance, ns.
    pub global_tolerance_ns: u64,
    /// Prefix length an IPv6 source is bucketed by for the per-source
    /// limit (1..=128; 64: an attacker owns whole /64s).
    pub source6_prefix_len: u32,
    /// Zero.
    pub pad: u32,
    /// Key of the per-source cells' hash ([`limit::SourceKey`]): random
    /// per loaded program, stamped by userspace's `set_config`.
    pub source_key: limit::SourceKey,
}

impl FastpathConfig {
    /// Whether a SYN needs the fine clock (`bpf_ktime_get_ns`) rather than
    /// the coarse one (`bpf_ktime_get_coarse_ns`, the time at the last
    /// tick, up to [`cookie::COARSE_CLOCK_SLACK_NS`] behind): only for
    /// what measures intervals shorter than a tick: the per-source and
    /// global token buckets (ns per SYN) and a SYN-rate window under
    /// [`cookie::COARSE_CLOCK_SLACK_NS`]. A cookie's minute, its SYN-ACK's
    /// TSval (ms), `last_cookie_ns` and a window of 10 ms or more read the
    /// coarse clock, a load of the last tick's time where the fine one
    /// reads the clock source (`rdtsc`, and in a VM the pvclock page).
    #[inline(always)]
    pub fn syn_needs_fine_clock(&self) -> bool {
        self.source_interval_ns != 0
            || self.global_interval_ns != 0
            || self.window_ns < cookie::COARSE_CLOCK_SLACK_NS
    }
}

/// State the XDP program keeps (one entry of `FASTPATH_STATE`); userspace
/// only reads it. Updated without atomics: with several CPUs the window
/// count and the global bucket are approximate.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct FastpathState {
    /// Start of the current SYN-rate window (the SYN's clock:
    /// [`FastpathConfig::syn_needs_fine_clock`]).
    pub window_start_ns: u64,
    /// SYNs seen in the current window.
    pub window_syns: u64,
    /// SYNs per second measured over the last complete window.
    pub last_rate: u64,
    /// When the last cookie SYN-ACK was sent; unknown-flow ACKs are checked
    /// as cookies for `cookie::MAX_AGE` minutes after it.
    pub last_cookie_ns: u64,
    /// GCRA theoretical arrival time of the global SYN budget.
    pub global_tat: u64,
    /// Times auto mode switched cookies on.
    pub cookie_on_switches: u64,
    /// 1 while auto mode answers SYNs with cookies.
    pub cookie_active: u32,
    /// Zero.
    pub pad: u32,
}

/// Index in the `SIGNALS` array: non-zero while the engine's SYN queue is
/// full (auto mode then answers SYNs with cookies).
pub const SIGNAL_SYN_QUEUE_FULL: u32 = 0;
/// Entries of the `SIGNALS` array.
pub const SIGNAL_COUNT: u32 = 4;

/// Magic of [`CookieMeta`] ("xck1").
pub const COOKIE_META_MAGIC: u32 = 0x7863_6b31;
/// `CookieMeta::flags`: the peer offered SACK.
pub const META_SACK: u8 = 1 << 0;
/// `CookieMeta::flags`: ECN was negotiated.
pub const META_ECN: u8 = 1 << 1;
/// `CookieMeta::flags`: timestamps are on (the ACK carried a TSecr).
pub const META_TS: u8 = 1 << 2;
/// `CookieMeta::wscale` when the peer did not offer window scaling.
pub const META_NO_WSCALE: u8 = 0xff;

/// What XDP puts in the metadata area (`bpf_xdp_adjust_meta`) in front of a
/// final ACK whose cookie it validated: the options the cookie restores.
/// Our ISN is the ACK's ack number - 1, the peer's its sequence number - 1.
/// In host byte order (XDP and the engine run on the same machine).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct CookieMeta {
    /// [`COOKIE_META_MAGIC`] (a final ACK), or [`COOKIE_META_SYNACK`] (a
    /// cookie SYN-ACK for the engine to send; the other fields are zero).
    pub magic: u32,
    /// MSS from the cookie's MSS index.
    pub mss: u16,
    /// Peer's window-scale shift, or [`META_NO_WSCALE`].
    pub wscale: u8,
    /// `META_*` flags.
    pub flags: u8,
    /// The ACK's TSval (the peer's clock), 0 without timestamps.
    pub tsval: u32,
    /// The ACK's TSecr (the cookie SYN-ACK's TSval), 0 without timestamps.
    pub tsecr: u32,
}

/// Size of [`CookieMeta`] (a multiple of 4, as bpf_xdp_adjust_meta wants).
pub const COOKIE_META_LEN: usize = core::mem::size_of::<CookieMeta>();

/// Key of the known-flow table: the segment's addresses and ports as on
/// the wire (network byte order), from the client's side.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, bytemuck::Pod, bytemuck::Zeroable)]
pub struct FlowKey {
    /// Source (client) address.
    pub saddr: u32,
    /// Destination (our) address.
    pub daddr: u32,
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
}

/// Key of the IPv6 known-flow table (`FLOWS6`; the IPv4 key stays 12
/// bytes): the segment's addresses (the [`Addr6Key`] layout) and ports as on
/// the wire, from the client's side.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Flow6Key {
    /// Source (client) address.
    pub saddr: [u32; 4],
    /// Destination (our) address.
    pub daddr: [u32; 4],
    /// Source port.
    pub sport: u16,
    /// Destination port.
    pub dport: u16,
}

/// Data of a prefix-list key (`LpmTrie` key data): an IPv4 address in
/// network byte order, matched on its first `prefix_len` bits.
pub type PrefixAddr = u32;
/// The data of an IPv6 prefix-list key: the address as on the wire.
pub type PrefixAddr6 = [u8; 16];

/// Number of counters in [`Counter`].
pub const COUNTER_COUNT: u32 = Counter::COUNT;

/// Entries of each owned-address table (`OWNED_ADDR_TABLE` for IPv4,
/// `OWNED_ADDR_TABLE6` for IPv6, both arrays): four per address it may
/// hold ([`MAX_OWNED_ADDRS`], [`MAX_OWNED_ADDRS6`]), so that probes stay
/// short.
pub const ADDR_TABLE_LEN: u32 = 1024;
/// Entries the XDP program looks at, from an address's home entry on
/// ([`addr_home`], [`addr6_home`]), before it concludes the address is
/// not owned; an address that finds no free entry within them is refused
/// when claimed.
pub const ADDR_TABLE_PROBES: u32 = 8;

/// Owned-address table entry flag: the entry holds an address (an entry
/// of flags 0 is free and ends a probe).
pub const ADDR_IN_USE: u32 = 1 << 3;

/// One entry of the owned IPv4 address table: open addressing with linear
/// probing in an array, which the verifier inlines (a load, no call),
/// where a hash map lookup was four kernel functions per packet (hash,
/// bucket walk, key compare: 12% of a flood SYN's XDP samples, and each
/// return pays this machine's SRSO thunk). Entries are only added or
/// changed, never removed, so a probe ends at the first free entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct AddrEntry {
    /// IPv4 address, network byte order (as read from the packet).
    pub addr: u32,
    /// [`ADDR_IN_USE`], the `ADDR_*` flags and the port slot
    /// ([`ADDR_SLOT_MASK`]); 0: free.
    pub flags: u32,
}

/// One entry of the owned IPv6 address table (`OWNED_ADDR_TABLE6`), as
/// [`AddrEntry`] is over IPv4: the same open addressing, probe and flags,
/// where `OWNED_ADDRS6` was a hash map (a lookup of a 16-byte key per
/// packet to or from the engine).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Addr6Entry {
    /// The address as four wire-order words ([`Addr6Key`] layout).
    pub addr: [u32; 4],
    /// [`ADDR_IN_USE`], the `ADDR_*` flags (`ADDR_ARP` stands for
    /// neighbour discovery) and the port slot in `OWNED_PORT_BITS6`
    /// ([`ADDR_SLOT_MASK`]); 0: free.
    pub flags: u32,
}

/// The home entry of `addr` (network byte order) in the owned-address
/// table: a multiplicative (Fibonacci) hash of its host-order value, so
/// that consecutive addresses spread over the table.
#[inline(always)]
pub const fn addr_home(addr: u32) -> u32 {
    u32::from_be(addr).wrapping_mul(0x9e37_79b1) >> (32 - ADDR_TABLE_LEN.trailing_zeros())
}

/// The home entry of the IPv6 `addr` (four wire-order words) in the owned
/// IPv6 address table: all 128 bits folded word by word (xor the
/// host-order word in, multiply by the Fibonacci constant), the top bits
/// of the last product as [`addr_home`] takes them. Addresses that differ
/// only in their last word (a /120 in order) get the homes consecutive
/// IPv4 addresses get: each its own entry.
#[inline(always)]
pub const fn addr6_home(addr: &[u32; 4]) -> u32 {
    let mut h = 0u32;
    let mut i = 0;
    while i < 4 {
        h = (h ^ u32::from_be(addr[i])).wrapping_mul(0x9e37_79b1);
        i += 1;
    }
    h >> (32 - ADDR_TABLE_LEN.trailing_zeros())
}

/// What a probe of the owned-address table found for an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddrProbe {
    /// The address is at this index, with these flags.
    Found(u32, u32),
    /// The address is not in the table; this free index is where it goes.
    Free(u32),
    /// Not in the table, and no free entry within [`ADDR_TABLE_PROBES`].
    Full,
}

/// An entry of an owned-address table ([`AddrEntry`], [`Addr6Entry`]):
/// what [`table_probe`] needs of it.
pub trait OwnedEntry: Copy {
    /// The address it holds, as read from the packet.
    type Addr;
    /// The home entry of `addr`.
    fn home(addr: &Self::Addr) -> u32;
    /// Whether the entry holds `addr`.
    fn holds(&self, addr: &Self::Addr) -> bool;
    /// [`ADDR_IN_USE`], the `ADDR_*` flags and the slot; 0: free.
    fn flags(&self) -> u32;
}

impl OwnedEntry for AddrEntry {
    type Addr = u32;
    #[inline(always)]
    fn home(addr: &u32) -> u32 {
        addr_home(*addr)
    }
    #[inline(always)]
    fn holds(&self, addr: &u32) -> bool {
        self.addr == *addr
    }
    #[inline(always)]
    fn flags(&self) -> u32 {
        self.flags
    }
}

impl OwnedEntry for Addr6Entry {
    type Addr = Addr6Key;
    #[inline(always)]
    fn home(addr: &Addr6Key) -> u32 {
        addr6_home(&addr.addr)
    }
    /// Word by word (no `bcmp` call in the XDP program).
    #[inline(always)]
    fn holds(&self, addr: &Addr6Key) -> bool {
        let (a, b) = (&self.addr, &addr.addr);
        (a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3]) == 0
    }
    #[inline(always)]
    fn flags(&self) -> u32 {
        self.flags
    }
}

/// Probes an owned-address table for `addr`: `entry(i)` reads entry `i`
/// (the XDP program's array lookup, or userspace's copy of the table).
/// Linear probing from the address's home, at most [`ADDR_TABLE_PROBES`]
/// entries; a free entry ends it.
#[inline(always)]
pub fn table_probe<E: OwnedEntry>(addr: &E::Addr, entry: impl Fn(u32) -> Option<E>) -> AddrProbe {
    let home = E::home(addr);
    let mut n = 0;
    while n < ADDR_TABLE_PROBES {
        let i = (home + n) & (ADDR_TABLE_LEN - 1);
        let Some(e) = entry(i) else {
            return AddrProbe::Full;
        };
        let flags = e.flags();
        if flags & ADDR_IN_USE == 0 {
            return AddrProbe::Free(i);
        }
        if e.holds(addr) {
            return AddrProbe::Found(i, flags);
        }
        n += 1;
    }
    AddrProbe::Full
}

/// Probes the owned IPv4 address table for `addr` (network byte order)
/// ([`table_probe`]).
#[inline(always)]
pub fn addr_probe(addr: u32, entry: impl Fn(u32) -> Option<AddrEntry>) -> AddrProbe {
    table_probe(&addr, entry)
}

/// Probes the owned IPv6 address table for `addr` ([`table_probe`]).
#[inline(always)]
pub fn addr6_probe(addr: &Addr6Key, entry: impl Fn(u32) -> Option<Addr6Entry>) -> AddrProbe {
    table_probe(addr, entry)
}

/// An IPv6 address as four network-order words, as it is on the wire:
/// what the owned IPv6 address table ([`Addr6Entry`]) holds and the
/// flow keys and prefix buckets are made of.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Addr6Key {
    /// The address's bytes as four native words (wire order in memory).
    pub addr: [u32; 4],
}

impl Addr6Key {
    /// Builds a key from the address octets.
    pub const fn new(o: [u8; 16]) -> Self {
        Addr6Key {
            addr: [
                u32::from_ne_bytes([o[0], o[1], o[2], o[3]]),
                u32::from_ne_bytes([o[4], o[5], o[6], o[7]]),
                u32::from_ne_bytes([o[8], o[9], o[10], o[11]]),
                u32::from_ne_bytes([o[12], o[13], o[14], o[15]]),
            ],
        }
    }
}

/// `FloodGenConfig::kind`: SYNs with an MSS option.
pub const GEN_SYN: u32 = 0;
/// `FloodGenConfig::kind`: bare ACKs with random sequence and ack numbers.
pub const GEN_ACK: u32 = 1;
/// `FloodGenConfig::kind`: RSTs with random sequence numbers.
pub const GEN_RST: u32 = 2;
/// `FloodGenConfig::kind`: SYN, ACK and RST in turn.
pub const GEN_MIXED: u32 = 3;
/// `FloodGenConfig::kind`: RST and ACK in turn (aimed at established
/// connections: one source address, the clients' ports).
pub const GEN_EST: u32 = 4;
/// Slots of `GEN_COUNTERS`: frames written as SYN, ACK, RST.
pub const GEN_COUNTER_COUNT: u32 = 3;

/// The live-frames flood generator's configuration (`xstack_flood_gen`,
/// entry 0 of `GEN_CONFIG`). The program rewrites a template frame
/// userspace built (Ethernet, the target's address and port, the IP and
/// TCP header lengths) per run: the spoofed source, the source port, the
/// numbers, the flags and the checksums.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct FloodGenConfig {
    /// Interface the frames are redirected to (`bpf_redirect`); 0:
    /// `XDP_DROP` after writing (tests).
    pub ifindex: u32,
    /// `GEN_*`.
    pub kind: u32,
    /// 4 or 6: the template's family.
    pub family: u32,
    /// TCP header length of the template: 20, or 24 (SYNs carry an MSS
    /// option; in a mixed flood the other kinds four NOPs).
    pub tcp_len: u32,
    /// Lowest source port.
    pub port_lo: u32,
    /// Number of source ports (1..=65535).
    pub port_span: u32,
    /// Source prefix, the address bytes as four words in memory order
    /// (IPv4: the first word).
    pub src_net: [u32; 4],
    /// Host bits of the source prefix, same layout: a spoofed source is
    /// `src_net | (random & src_host)`, word by word.
    pub src_host: [u32; 4],
    /// The template frame, [`GEN_TEMPLATE_LEN`] bytes at most, in memory
    /// order: written whole on every run, because the kernel hands back
    /// pages as the receiver left them (a receiver's XDP may have turned
    /// the frame into its answer in place).
    pub template: [u32; 20],
}

/// Most bytes of a live-frames template (an IPv6 SYN with MSS: 78).
pub const GEN_TEMPLATE_LEN: usize = 80;
/// Bytes userspace appends to the template it runs: the program drops
/// them with `bpf_xdp_adjust_tail`, which (a) marks the run's context as
/// changed, so the kernel rebuilds the frame's length from it rather than
/// keep the one a receiver left in the page, and (b) tells the
/// generator's frames (exactly template + 4 bytes long, non-zero MACs)
/// from loopback traffic, where userspace attaches the program (generic
/// mode) only to keep it in the kernel's XDP dispatcher.
pub const GEN_TAIL: usize = 4;

#[cfg(feature = "user")]
mod user {
    // SAFETY: both types are #[repr(C)], have no padding and every bit
    // pattern is valid (checked by bytemuck::Pod derive).
    unsafe impl aya::Pod for super::AddrEntry {}
    unsafe impl aya::Pod for super::Addr6Entry {}
    unsafe impl aya::Pod for super::Addr6Key {}
    unsafe impl aya::Pod for super::FastpathConfig {}
    unsafe impl aya::Pod for super::FastpathState {}
    unsafe impl aya::Pod for super::FlowKey {}
    unsafe impl aya::Pod for super::Flow6Key {}
    unsafe impl aya::Pod for super::cookie::Secrets {}
    unsafe impl aya::Pod for super::FloodGenConfig {}
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    #[test]
    fn ipv6_prefix_keeps_the_first_len_bits() {
        let a = Addr6Key::new([
            0x20, 0x01, 0x00, 0x02, 0xaa, 0xbb, 0xcc, 0xdd, 1, 2, 3, 4, 5, 6, 7, 8,
        ]);
        let p = |len: u32| ipv6_prefix(a.addr, len);
        assert_eq!(
            p(64),
            Addr6Key::new([0x20, 0x01, 0, 2, 0xaa, 0xbb, 0xcc, 0xdd, 0, 0, 0, 0, 0, 0, 0, 0]).addr
        );
        assert_eq!(
            p(48),
            Addr6Key::new([0x20, 0x01, 0, 2, 0xaa, 0xbb, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).addr
        );
        assert_eq!(
            p(57),
            Addr6Key::new([0x20, 0x01, 0, 2, 0xaa, 0xbb, 0xcc, 0x80, 0, 0, 0, 0, 0, 0, 0, 0]).addr
        );
        assert_eq!(p(128), a.addr);
        assert_eq!(p(0), [0; 4]);
    }

    #[test]
    fn counters_are_dense_and_named_uniquely() {
        for (i, c) in Counter::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
            assert_eq!(CounterSet::index(*c) as usize, i);
            assert_eq!(CounterSet::name(*c), c.name());
        }
        assert_eq!(COUNTER_COUNT as usize, Counter::ALL.len());
        assert_eq!(TCP_CLASS_COUNT as usize, TcpClass::ALL.len());
        let mut names: std::vec::Vec<_> = Counter::ALL.iter().map(|c| c.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Counter::ALL.len());
    }

    #[test]
    fn classes_are_dense_and_shared_types_have_no_padding() {
        for (i, c) in TcpClass::ALL.iter().enumerate() {
            assert_eq!(*c as usize, i);
        }
        assert_eq!(COOKIE_META_LEN, 16);
        assert_eq!(core::mem::size_of::<FlowKey>(), 12);
        assert_eq!(core::mem::size_of::<Flow6Key>(), 36);
        assert_eq!(core::mem::size_of::<FastpathState>(), 56);
    }

    counters! {
        /// A set for the struct form's `[Set]` fields.
        enum Reason {
            Short = "drop_short",
            Checksum = "drop_checksum",
            Options = "drop_options",
        }
    }

    counters! {
        /// Every kind of struct-form field, with a pass-through derive.
        #[derive(Clone, Debug, Default, PartialEq, Eq)]
        struct Stats {
            /// Printed with its field name.
            frames,
            /// Printed with its label.
            overflows = "ListenOverflows",
            /// One counter per `Reason`, printed with the reason's name.
            drops: [Reason],
            /// A field after a set field keeps its place.
            bytes = "Bytes",
            last,
        }
    }

    #[test]
    fn struct_names_in_declaration_order() {
        let names: std::vec::Vec<_> = Stats::default().iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "frames",
                "ListenOverflows",
                "drop_short",
                "drop_checksum",
                "drop_options",
                "Bytes",
                "last",
            ]
        );
        assert_eq!(Stats::default().drops.len(), Reason::COUNT as usize);
    }

    #[test]
    fn struct_iter_yields_each_field_value() {
        let mut s = Stats::default();
        s.frames += 1;
        s.overflows += 2;
        s.drops[Reason::Checksum as usize] += 3;
        s.drops[Reason::Options as usize] += 4;
        s.bytes += 5;
        s.last += 6;
        let values: std::vec::Vec<_> = s.iter().collect();
        assert_eq!(
            values,
            [
                ("frames", 1),
                ("ListenOverflows", 2),
                ("drop_short", 0),
                ("drop_checksum", 3),
                ("drop_options", 4),
                ("Bytes", 5),
                ("last", 6),
            ]
        );
    }

    #[test]
    fn struct_add_sums_field_by_field() {
        let mut a = Stats {
            frames: 1,
            overflows: 2,
            drops: [3, 4, 5],
            bytes: 6,
            last: 7,
        };
        let b = Stats {
            frames: 10,
            overflows: 20,
            drops: [30, 40, 50],
            bytes: 60,
            last: 70,
        };
        a.add(&b);
        assert_eq!(
            a,
            Stats {
                frames: 11,
                overflows: 22,
                drops: [33, 44, 55],
                bytes: 66,
                last: 77,
            }
        );
        let mut zero = Stats::default();
        zero.add(&Stats::default());
        assert_eq!(zero, Stats::default());
    }

    #[test]
    fn every_port_of_every_slot_has_a_bit_of_its_own() {
        let mut seen = std::collections::HashSet::new();
        for slot in [0, 1, MAX_OWNED_ADDRS - 1] {
            for port in 0..=u16::MAX {
                let (word, bit) = port_bit(slot, port);
                assert!(word < MAX_OWNED_ADDRS * PORT_WORDS);
                assert_eq!(bit.count_ones(), 1);
                assert!(seen.insert((word, bit)), "slot {slot} port {port}");
            }
        }
        // The slot bits never reach the `ADDR_*` flags.
        assert_eq!(
            ADDR_SLOT_MASK & (ADDR_ARP | ADDR_ICMP | ADDR_ALL_TCP | ADDR_IN_USE),
            0
        );
        assert_eq!(ADDR_SLOT_MASK >> ADDR_SLOT_SHIFT, MAX_OWNED_ADDRS - 1);
    }

    /// Claims `addrs` in a copy of the owned-address table as userspace
    /// does; returns the table, or the first address refused.
    fn claim_all(addrs: &[u32]) -> Result<std::vec::Vec<AddrEntry>, u32> {
        let mut t = std::vec![AddrEntry::default(); ADDR_TABLE_LEN as usize];
        for (slot, &a) in addrs.iter().enumerate() {
            let flags = ADDR_IN_USE | ADDR_ARP | (slot as u32) << ADDR_SLOT_SHIFT;
            match addr_probe(a, |i| t.get(i as usize).copied()) {
                AddrProbe::Found(i, _) | AddrProbe::Free(i) => {
                    t[i as usize] = AddrEntry { addr: a, flags }
                }
                AddrProbe::Full => return Err(a),
            }
        }
        Ok(t)
    }

    fn wire(a: [u8; 4]) -> u32 {
        u32::from_ne_bytes(a)
    }

    #[test]
    fn every_claimed_address_is_found_with_its_flags_and_no_other() {
        // The limit of owned addresses in the shapes users give: one
        // /24, every 256th of a /16, 256 random addresses of 198.18/15.
        let mut x = 0x2545_f491u32;
        let shapes: [std::vec::Vec<u32>; 3] = [
            (0..=255).map(|i| wire([198, 18, 0, i])).collect(),
            (0..=255).map(|i| wire([198, 18, i, 7])).collect(),
            (0..256)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    wire([198, 18 | (x as u8 & 1), (x >> 8) as u8, (x >> 16) as u8])
                })
                .collect(),
        ];
        for addrs in shapes {
            let t = claim_all(&addrs).expect("256 addresses fit");
            for (slot, &a) in addrs.iter().enumerate() {
                match addr_probe(a, |i| t.get(i as usize).copied()) {
                    AddrProbe::Found(_, f) => {
                        assert_eq!(f >> ADDR_SLOT_SHIFT, slot as u32);
                        assert_ne!(f & ADDR_ARP, 0);
                    }
                    other => panic!("{a:#x}: {other:?}"),
                }
            }
            for b in [wire([198, 19, 255, 254]), wire([10, 0, 0, 1]), 0] {
                if !addrs.contains(&b) {
                    assert!(!matches!(
                        addr_probe(b, |i| t.get(i as usize).copied()),
                        AddrProbe::Found(..)
                    ));
                }
            }
        }
    }

    #[test]
    fn consecutive_addresses_get_entries_of_their_own() {
        // A /24 in order: a multiplicative hash of the host-order value
        // puts each in an entry of its own, no probing at all.
        let homes: std::collections::HashSet<u32> = (0..=255)
            .map(|i| addr_home(wire([198, 18, 0, i])))
            .collect();
        assert_eq!(homes.len(), 256);
        assert!(homes.iter().all(|h| *h < ADDR_TABLE_LEN));
    }

    #[test]
    fn an_address_without_a_free_entry_within_the_probes_is_refused() {
        // Fill the probe window of one home with other addresses.
        let target = wire([198, 18, 0, 1]);
        let home = addr_home(target);
        let mut t = std::vec![AddrEntry::default(); ADDR_TABLE_LEN as usize];
        for n in 0..ADDR_TABLE_PROBES {
            t[((home + n) & (ADDR_TABLE_LEN - 1)) as usize] = AddrEntry {
                addr: wire([198, 18, 1, n as u8]),
                flags: ADDR_IN_USE,
            };
        }
        assert_eq!(
            addr_probe(target, |i| t.get(i as usize).copied()),
            AddrProbe::Full
        );
        // One free entry at the window's end is found, and the address
        // put there is found past the seven others.
        let last = (home + ADDR_TABLE_PROBES - 1) & (ADDR_TABLE_LEN - 1);
        t[last as usize] = AddrEntry::default();
        assert_eq!(
            addr_probe(target, |i| t.get(i as usize).copied()),
            AddrProbe::Free(last)
        );
        t[last as usize] = AddrEntry {
            addr: target,
            flags: ADDR_IN_USE | ADDR_ICMP,
        };
        assert_eq!(
            addr_probe(target, |i| t.get(i as usize).copied()),
            AddrProbe::Found(last, ADDR_IN_USE | ADDR_ICMP)
        );
    }

    /// An IPv6 address from its eight groups.
    fn v6(g: [u16; 8]) -> Addr6Key {
        let mut o = [0u8; 16];
        for (i, w) in g.iter().enumerate() {
            o[2 * i..2 * i + 2].copy_from_slice(&w.to_be_bytes());
        }
        Addr6Key::new(o)
    }

    /// Claims `addrs` in a copy of the owned IPv6 address table as
    /// userspace does; returns the table, or the first address refused.
    fn claim_all6(addrs: &[Addr6Key]) -> Result<std::vec::Vec<Addr6Entry>, Addr6Key> {
        let mut t = std::vec![Addr6Entry::default(); ADDR_TABLE_LEN as usize];
        for (slot, a) in addrs.iter().enumerate() {
            let flags = ADDR_IN_USE | ADDR_ARP | (slot as u32) << ADDR_SLOT_SHIFT;
            match addr6_probe(a, |i| t.get(i as usize).copied()) {
                AddrProbe::Found(i, _) | AddrProbe::Free(i) => {
                    t[i as usize] = Addr6Entry {
                        addr: a.addr,
                        flags,
                    }
                }
                AddrProbe::Full => return Err(*a),
            }
        }
        Ok(t)
    }

    /// Seeded random addresses of 2001:2::/48 (xorshift).
    fn random6(n: usize, mut x: u64) -> std::vec::Vec<Addr6Key> {
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        (0..n)
            .map(|_| {
                let (a, b) = (next(), next());
                v6([
                    0x2001,
                    2,
                    0,
                    a as u16,
                    (a >> 16) as u16,
                    (a >> 32) as u16,
                    (b >> 16) as u16,
                    (b >> 32) as u16,
                ])
            })
            .collect()
    }

    #[test]
    fn every_claimed_ipv6_address_is_found_with_its_flags_and_no_other() {
        // The limit of owned IPv6 addresses in the shapes users give: a
        // /120 in order (`--ip 2001:2::/120`), one address per /64 of a
        // /56, and seeded random addresses of 2001:2::/48.
        let shapes: [std::vec::Vec<Addr6Key>; 4] = [
            (0..=255)
                .map(|i| v6([0x2001, 2, 0, 0, 0, 0, 0, i]))
                .collect(),
            (0..=255)
                .map(|i| v6([0x2001, 2, 0, i, 0, 0, 0, 1]))
                .collect(),
            random6(MAX_OWNED_ADDRS6 as usize, 0x9e37_79b9_7f4a_7c15),
            random6(MAX_OWNED_ADDRS6 as usize, 0x2545_f491_4f6c_dd1d),
        ];
        for addrs in shapes {
            assert_eq!(addrs.len(), MAX_OWNED_ADDRS6 as usize);
            let t = claim_all6(&addrs).expect("256 addresses fit");
            for (slot, a) in addrs.iter().enumerate() {
                match addr6_probe(a, |i| t.get(i as usize).copied()) {
                    AddrProbe::Found(i, f) => {
                        assert_eq!(t[i as usize].addr, a.addr);
                        assert_eq!(f >> ADDR_SLOT_SHIFT, slot as u32);
                        assert_ne!(f & ADDR_ARP, 0);
                    }
                    other => panic!("{a:?}: {other:?}"),
                }
            }
            // Addresses one bit away from owned ones in each word, and
            // others: never found.
            let mut others = std::vec![
                v6([0x2001, 2, 0, 0, 0, 0, 1, 0]),
                v6([0xfe80, 0, 0, 0, 0, 0, 0, 1]),
                v6([0; 8]),
            ];
            for a in addrs.iter().take(16) {
                for w in 0..4 {
                    let mut b = *a;
                    b.addr[w] ^= u32::from_ne_bytes([0, 0, 0, 1]);
                    others.push(b);
                }
            }
            for b in others {
                if !addrs.contains(&b) {
                    assert!(
                        !matches!(
                            addr6_probe(&b, |i| t.get(i as usize).copied()),
                            AddrProbe::Found(..)
                        ),
                        "{b:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn consecutive_ipv6_addresses_get_entries_of_their_own() {
        // A /120 in order, under any prefix: the fold keeps the last
        // word's spread, so each has a home of its own, no probing.
        for prefix in [
            [0x2001u16, 2, 0, 0, 0, 0, 0],
            [0x2001, 2, 0, 0xbeef, 1, 2, 3],
            [0x2001, 2, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff],
        ] {
            let homes: std::collections::HashSet<u32> = (0..=255u16)
                .map(|i| {
                    let mut g = [0u16; 8];
                    g[..7].copy_from_slice(&prefix);
                    g[7] = 0x1200 | i;
                    addr6_home(&v6(g).addr)
                })
                .collect();
            assert_eq!(homes.len(), 256, "{prefix:x?}");
            assert!(homes.iter().all(|h| *h < ADDR_TABLE_LEN));
        }
    }

    #[test]
    fn an_ipv6_address_without_a_free_entry_within_the_probes_is_refused() {
        // Fill the probe window of one home with other addresses.
        let target = v6([0x2001, 2, 0, 0, 0, 0, 0, 1]);
        let home = addr6_home(&target.addr);
        let mut t = std::vec![Addr6Entry::default(); ADDR_TABLE_LEN as usize];
        for n in 0..ADDR_TABLE_PROBES {
            t[((home + n) & (ADDR_TABLE_LEN - 1)) as usize] = Addr6Entry {
                addr: v6([0x2001, 2, 0, 0, 0, 0, 1, n as u16]).addr,
                flags: ADDR_IN_USE,
            };
        }
        assert_eq!(
            addr6_probe(&target, |i| t.get(i as usize).copied()),
            AddrProbe::Full
        );
        // The same 128 bits but one word: not a match either.
        let mut near = target;
        near.addr[0] = t[home as usize].addr[0];
        assert_eq!(
            addr6_probe(&near, |i| t.get(i as usize).copied()),
            AddrProbe::Full
        );
        // One free entry at the window's end is found, and the address
        // put there is found past the seven others.
        let last = (home + ADDR_TABLE_PROBES - 1) & (ADDR_TABLE_LEN - 1);
        t[last as usize] = Addr6Entry::default();
        assert_eq!(
            addr6_probe(&target, |i| t.get(i as usize).copied()),
            AddrProbe::Free(last)
        );
        t[last as usize] = Addr6Entry {
            addr: target.addr,
            flags: ADDR_IN_USE | ADDR_ICMP,
        };
        assert_eq!(
            addr6_probe(&target, |i| t.get(i as usize).copied()),
            AddrProbe::Found(last, ADDR_IN_USE | ADDR_ICMP)
        );
    }

    #[test]
    fn a_full_table_probes_at_most_its_window_and_wraps_at_the_end() {
        // Every entry in use by other addresses: a probe reads exactly
        // ADDR_TABLE_PROBES entries, wrapping from the last to the first.
        let t = std::vec![
            Addr6Entry {
                addr: [1, 2, 3, 4],
                flags: ADDR_IN_USE,
            };
            ADDR_TABLE_LEN as usize
        ];
        let pool = random6(4096, 7);
        let at_end: std::vec::Vec<Addr6Key> = pool
            .iter()
            .filter(|a| addr6_home(&a.addr) > ADDR_TABLE_LEN - ADDR_TABLE_PROBES)
            .take(4)
            .copied()
            .collect();
        assert!(!at_end.is_empty());
        for a in pool.iter().take(16).chain(&at_end) {
            let read = core::cell::RefCell::new(std::vec::Vec::new());
            let got = addr6_probe(a, |i| {
                read.borrow_mut().push(i);
                t.get(i as usize).copied()
            });
            assert_eq!(got, AddrProbe::Full);
            let home = addr6_home(&a.addr);
            let want: std::vec::Vec<u32> = (0..ADDR_TABLE_PROBES)
                .map(|n| (home + n) % ADDR_TABLE_LEN)
                .collect();
            assert_eq!(*read.borrow(), want);
        }
    }
}
