//! TCP headers (RFC 9293 §3.1) and options (RFC 9293 §3.2, RFC 7323,
//! RFC 2018).
//!
//! [`TcpPacket`] is a zero-copy view over a segment whose lengths have been
//! checked; [`TcpRepr`] is the validated, parsed form the engine works with.
//! Parsing never panics: every malformed input is a [`TcpParseError`] whose
//! [`counter_name`](TcpParseError::counter_name) is the drop counter it bumps.
//!
//! [`SeqNumber`] lives here, below the engine, as in smoltcp: sequence
//! numbers with wrap-around arithmetic (RFC 9293 §3.4). They live in a
//! 32-bit circular space; `a < b` means that `b` lies less than 2^31 ahead
//! of `a` (RFC 9293 §3.4, "comparisons ... modulo 2**32"; the same rule as
//! RFC 1982 serial numbers).

use core::cmp::Ordering;
use core::fmt;
use core::ops::{Add, AddAssign, Sub};

use thiserror::Error;

use super::{be16, checksum, checksum::PseudoAddr, ipv4::PROTO_TCP, WireError};

/// A TCP sequence (or acknowledgment) number.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct SeqNumber(pub u32);

impl SeqNumber {
    /// The raw 32-bit value.
    #[inline]
    pub const fn get(self) -> u32 {
        self.0
    }

    /// The larger of two sequence numbers, in circular order.
    #[inline]
    pub fn max(self, other: SeqNumber) -> SeqNumber {
        if self < other {
            other
        } else {
            self
        }
    }

    /// The smaller of two sequence numbers, in circular order.
    #[inline]
    pub fn min(self, other: SeqNumber) -> SeqNumber {
        if self < other {
            self
        } else {
            other
        }
    }

    /// Signed distance `self - other` (positive when `self` is ahead).
    #[inline]
    pub const fn diff(self, other: SeqNumber) -> i32 {
        self.0.wrapping_sub(other.0) as i32
    }

    /// `self - other` as a byte count; zero when `self` is not ahead.
    #[inline]
    pub fn dist(self, other: SeqNumber) -> u32 {
        let d = self.diff(other);
        if d > 0 {
            d as u32
        } else {
            0
        }
    }

    /// `lo <= self < hi`, in circular order.
    #[inline]
    pub fn in_range(self, lo: SeqNumber, hi: SeqNumber) -> bool {
        lo <= self && self < hi
    }
}

impl PartialOrd for SeqNumber {
    #[inline]
    fn partial_cmp(&self, other: &SeqNumber) -> Option<Ordering> {
        // RFC 9293 §3.4: compare by the sign of the 32-bit difference.
        Some(self.diff(*other).cmp(&0))
    }
}

impl Add<u32> for SeqNumber {
    type Output = SeqNumber;
    #[inline]
    fn add(self, rhs: u32) -> SeqNumber {
        SeqNumber(self.0.wrapping_add(rhs))
    }
}

impl Add<usize> for SeqNumber {
    type Output = SeqNumber;
    #[inline]
    fn add(self, rhs: usize) -> SeqNumber {
        // Segment and window lengths are below 2^31; truncation is the
        // intended modular arithmetic.
        SeqNumber(self.0.wrapping_add(rhs as u32))
    }
}

impl AddAssign<u32> for SeqNumber {
    #[inline]
    fn add_assign(&mut self, rhs: u32) {
        self.0 = self.0.wrapping_add(rhs);
    }
}

impl Sub<u32> for SeqNumber {
    type Output = SeqNumber;
    #[inline]
    fn sub(self, rhs: u32) -> SeqNumber {
        SeqNumber(self.0.wrapping_sub(rhs))
    }
}

impl Sub for SeqNumber {
    type Output = i32;
    #[inline]
    fn sub(self, rhs: SeqNumber) -> i32 {
        self.diff(rhs)
    }
}

impl fmt::Debug for SeqNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Display for SeqNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Length of a TCP header without options.
pub const HEADER_LEN: usize = 20;
/// Longest TCP header (data offset 15).
pub const MAX_HEADER_LEN: usize = 60;
/// Most option bytes a header can carry.
pub const MAX_OPTIONS_LEN: usize = 40;
/// Most SACK blocks an option can carry (RFC 2018 §3).
pub const MAX_SACK_BLOCKS: usize = 4;

/// FIN control bit.
pub const FIN: u8 = 0x01;
/// SYN control bit.
pub const SYN: u8 = 0x02;
/// RST control bit.
pub const RST: u8 = 0x04;
/// PSH control bit.
pub const PSH: u8 = 0x08;
/// ACK control bit.
pub const ACK: u8 = 0x10;
/// URG control bit.
pub const URG: u8 = 0x20;
/// ECE control bit (RFC 3168).
pub const ECE: u8 = 0x40;
/// CWR control bit (RFC 3168).
pub const CWR: u8 = 0x80;

const OPT_EOL: u8 = 0;
const OPT_NOP: u8 = 1;
const OPT_MSS: u8 = 2;
const OPT_WSCALE: u8 = 3;
const OPT_SACK_PERM: u8 = 4;
const OPT_SACK: u8 = 5;
const OPT_TIMESTAMPS: u8 = 8;

/// Why a TCP segment was dropped. Each variant is one drop counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum TcpParseError {
    /// Shorter than the 20-byte fixed header.
    #[error("TCP header truncated")]
    Truncated,
    /// Data offset below 5 words.
    #[error("TCP data offset below 5")]
    BadDataOffset,
    /// Data offset points past the end of the segment.
    #[error("TCP data offset past the end of the segment")]
    DataOffsetPastEnd,
    /// An option other than EOL/NOP with a length byte of 0 or 1.
    #[error("TCP option length 0 or 1")]
    BadOptionLength,
    /// An option (or its length byte) runs past the end of the header.
    #[error("TCP option runs past the header")]
    OptionPastHeader,
    /// The checksum over the pseudo-header and segment does not verify.
    #[error("TCP checksum invalid")]
    BadChecksum,
    /// The checksum field holds only the (uncomplemented) pseudo-header sum:
    /// a CHECKSUM_PARTIAL segment whose sender left the rest to a
    /// "hardware" offload that a virtual link (veth) never runs. Dropped
    /// where such segments are not accepted (see
    /// `TcpConfig::accept_checksum_partial`).
    #[error("TCP checksum left to an offload (CHECKSUM_PARTIAL)")]
    ChecksumPartial,
}

impl TcpParseError {
    /// Every variant, for counter tables.
    pub const ALL: &'static [TcpParseError] = &[
        TcpParseError::Truncated,
        TcpParseError::BadDataOffset,
        TcpParseError::DataOffsetPastEnd,
        TcpParseError::BadOptionLength,
        TcpParseError::OptionPastHeader,
        TcpParseError::BadChecksum,
        TcpParseError::ChecksumPartial,
    ];

    /// Dense index of the variant.
    pub fn index(self) -> usize {
        match self {
            TcpParseError::Truncated => 0,
            TcpParseError::BadDataOffset => 1,
            TcpParseError::DataOffsetPastEnd => 2,
            TcpParseError::BadOptionLength => 3,
            TcpParseError::OptionPastHeader => 4,
            TcpParseError::BadChecksum => 5,
            TcpParseError::ChecksumPartial => 6,
        }
    }

    /// Counter name, as `xstack stats` prints it.
    pub fn counter_name(self) -> &'static str {
        match self {
            TcpParseError::Truncated => "drop_tcp_truncated",
            TcpParseError::BadDataOffset => "drop_tcp_bad_data_offset",
            TcpParseError::DataOffsetPastEnd => "drop_tcp_data_offset_past_end",
            TcpParseError::BadOptionLength => "drop_tcp_bad_option_length",
            TcpParseError::OptionPastHeader => "drop_tcp_option_past_header",
            TcpParseError::BadChecksum => "drop_tcp_bad_checksum",
            TcpParseError::ChecksumPartial => "drop_tcp_checksum_partial",
        }
    }
}

/// Byte ranges of the header fields (RFC 9293 §3.1).
mod field {
    use core::ops::Range;
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const SEQ: Range<usize> = 4..8;
    pub const ACK: Range<usize> = 8..12;
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: Range<usize> = 14..16;
    pub const CHECKSUM: Range<usize> = 16..18;
    pub const URGENT: Range<usize> = 18..20;
    pub const OPTIONS: usize = 20;
}

/// A zero-copy view of a TCP segment. A view made by
/// [`new_checked`](TcpPacket::new_checked) holds a fixed header whose data
/// offset lies within 5..=15 words and within the buffer; one made by
/// [`new_unchecked`](TcpPacket::new_unchecked) reads fixed offsets only
/// (and panics past the end of the buffer).
#[derive(Clone, Copy, Debug)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

#[inline]
fn be32(b: &[u8], off: usize) -> u32 {
    u32::from_be_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// A view without checks.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> TcpPacket<T> {
        TcpPacket { buffer }
    }

    /// Checks that `buffer` holds a fixed header and that the data offset
    /// lies within 5..=15 words and within the buffer (RFC 9293 §3.1).
    #[inline]
    pub fn new_checked(buffer: T) -> Result<TcpPacket<T>, TcpParseError> {
        let p = TcpPacket { buffer };
        let len = p.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(TcpParseError::Truncated);
        }
        let header_len = p.header_len();
        if header_len < HEADER_LEN {
            return Err(TcpParseError::BadDataOffset);
        }
        if header_len > len {
            return Err(TcpParseError::DataOffsetPastEnd);
        }
        Ok(p)
    }

    /// The buffer back.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// Source port.
    #[inline]
    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SRC_PORT.start)
    }
    /// Destination port.
    #[inline]
    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::DST_PORT.start)
    }
    /// Sequence number.
    #[inline]
    pub fn seq(&self) -> SeqNumber {
        SeqNumber(be32(self.buffer.as_ref(), field::SEQ.start))
    }
    /// Acknowledgment number field (meaningful only with ACK set).
    #[inline]
    pub fn ack(&self) -> SeqNumber {
        SeqNumber(be32(self.buffer.as_ref(), field::ACK.start))
    }
    /// Header length in bytes (data offset * 4).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFF] >> 4) * 4
    }
    /// Control bits (CWR..FIN).
    #[inline]
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }
    /// Window field, unscaled.
    #[inline]
    pub fn window(&self) -> u16 {
        be16(self.buffer.as_ref(), field::WINDOW.start)
    }
    /// Checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM.start)
    }
    /// Urgent pointer.
    #[inline]
    pub fn urgent(&self) -> u16 {
        be16(self.buffer.as_ref(), field::URGENT.start)
    }
    /// True when the checksum over the IPv4 pseudo-header and the whole
    /// segment verifies (RFC 9293 §3.1, "Checksum").
    pub fn verify_checksum<A: PseudoAddr>(&self, src: A, dst: A) -> bool {
        let buf = self.buffer.as_ref();
        let Ok(len) = u16::try_from(buf.len()) else {
            return false;
        };
        let acc = checksum::pseudo_header(src, dst, PROTO_TCP, len);
        checksum::finish(checksum::sum(acc, buf)) == 0
    }

    /// True when the checksum field holds exactly the folded, uncomplemented
    /// IPv4 pseudo-header sum: what Linux leaves in a CHECKSUM_PARTIAL
    /// segment (`__tcp_v4_send_check`: `th->check = ~tcp_v4_check(len,
    /// saddr, daddr, 0)`) for the device to complete. A veth never
    /// completes it, and XDP sees no `ip_summed` to tell.
    pub fn checksum_is_partial<A: PseudoAddr>(&self, src: A, dst: A) -> bool {
        let Ok(len) = u16::try_from(self.buffer.as_ref().len()) else {
            return false;
        };
        self.checksum() == checksum::fold(checksum::pseudo_header(src, dst, PROTO_TCP, len))
    }
}

/// How a parsed segment's checksum was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChecksumKind {
    /// It verifies over the pseudo-header and the whole segment.
    Full,
    /// It holds only the pseudo-header sum (CHECKSUM_PARTIAL), accepted
    /// because the caller trusts the link (see
    /// [`TcpRepr::parse_accepting_partial`]).
    Partial,
}

impl<'a, T: AsRef<[u8]> + ?Sized> TcpPacket<&'a T> {
    /// Option bytes.
    #[inline]
    pub fn options(&self) -> &'a [u8] {
        &self.buffer.as_ref()[field::OPTIONS..self.header_len()]
    }
    /// Data after the header.
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    /// Sets the source port.
    #[inline]
    pub fn set_src_port(&mut self, v: u16) {
        self.buffer.as_mut()[field::SRC_PORT].copy_from_slice(&v.to_be_bytes());
    }
    /// Sets the destination port.
    #[inline]
    pub fn set_dst_port(&mut self, v: u16) {
        self.buffer.as_mut()[field::DST_PORT].copy_from_slice(&v.to_be_bytes());
    }
    /// Sets the sequence number.
    #[inline]
    pub fn set_seq(&mut self, v: SeqNumber) {
        self.buffer.as_mut()[field::SEQ].copy_from_slice(&v.get().to_be_bytes());
    }
    /// Sets the acknowledgment number field.
    #[inline]
    pub fn set_ack(&mut self, v: SeqNumber) {
        self.buffer.as_mut()[field::ACK].copy_from_slice(&v.get().to_be_bytes());
    }
    /// Sets the data offset from a header length in bytes (multiple of 4).
    #[inline]
    pub fn set_header_len(&mut self, len: usize) {
        self.buffer.as_mut()[field::DATA_OFF] = ((len / 4) as u8) << 4;
    }
    /// Sets the control bits.
    #[inline]
    pub fn set_flags(&mut self, v: u8) {
        self.buffer.as_mut()[field::FLAGS] = v;
    }
    /// Sets the window field.
    #[inline]
    pub fn set_window(&mut self, v: u16) {
        self.buffer.as_mut()[field::WINDOW].copy_from_slice(&v.to_be_bytes());
    }
    /// Sets the checksum field.
    #[inline]
    pub fn set_checksum(&mut self, v: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&v.to_be_bytes());
    }
    /// Sets the urgent pointer.
    #[inline]
    pub fn set_urgent(&mut self, v: u16) {
        self.buffer.as_mut()[field::URGENT].copy_from_slice(&v.to_be_bytes());
    }
    /// Computes and stores the checksum of the whole buffer, a complete
    /// segment carried from `src` to `dst` (RFC 9293 §3.1). At most 65535
    /// bytes.
    pub fn fill_checksum<A: PseudoAddr>(&mut self, src: A, dst: A) {
        self.set_checksum(0);
        let buf = self.buffer.as_ref();
        let len = u16::try_from(buf.len()).unwrap_or(u16::MAX);
        let acc = checksum::pseudo_header(src, dst, PROTO_TCP, len);
        let c = checksum::finish(checksum::sum(acc, buf));
        self.set_checksum(c);
    }
}

/// TSval and TSecr of a timestamps option (RFC 7323 §3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timestamps {
    /// Timestamp value of the sender.
    pub tsval: u32,
    /// Timestamp echo reply.
    pub tsecr: u32,
}

/// Up to four SACK blocks (RFC 2018 §3), each `[left, right)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SackBlocks {
    blocks: [(SeqNumber, SeqNumber); MAX_SACK_BLOCKS],
    len: u8,
}

impl SackBlocks {
    /// Appends a block; returns false when four are already held.
    pub fn push(&mut self, left: SeqNumber, right: SeqNumber) -> bool {
        match self.blocks.get_mut(usize::from(self.len)) {
            Some(slot) => {
                *slot = (left, right);
                self.len += 1;
                true
            }
            None => false,
        }
    }
    /// The blocks held.
    pub fn as_slice(&self) -> &[(SeqNumber, SeqNumber)] {
        &self.blocks[..usize::from(self.len)]
    }
    /// Number of blocks.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }
    /// True when no block is held.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Keeps only the first `n` blocks.
    pub fn truncate(&mut self, n: usize) {
        if n < usize::from(self.len) {
            self.len = n as u8;
        }
    }
}

/// The options the engine understands; others are skipped by length.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpOptions {
    /// Maximum segment size (RFC 9293 §3.7.1); SYN only.
    pub mss: Option<u16>,
    /// Window scale shift (RFC 7323 §2); SYN only.
    pub window_scale: Option<u8>,
    /// SACK-permitted (RFC 2018 §2); SYN only.
    pub sack_permitted: bool,
    /// Timestamps (RFC 7323 §3).
    pub timestamps: Option<Timestamps>,
    /// SACK blocks (RFC 2018 §3).
    pub sack: SackBlocks,
}

impl TcpOptions {
    /// Parses the option bytes of a header. EOL ends the list; NOP is
    /// skipped; an option whose length byte is 0 or 1 or which runs past
    /// the header is an error; a known option with a length other than its
    /// own is ignored (as Linux does); unknown options are skipped by length.
    pub fn parse(opts: &[u8]) -> Result<TcpOptions, TcpParseError> {
        let mut out = TcpOptions::default();
        out.read(opts)?;
        Ok(out)
    }

    /// [`parse`](Self::parse) into `self`, which holds the defaults (no
    /// option). Inlined (the general loop is not) so that a received
    /// segment's options are written once, where the engine reads them
    /// (see [`TcpRepr::parse_into`]).
    #[inline(always)]
    fn read(&mut self, opts: &[u8]) -> Result<(), TcpParseError> {
        // RFC 7323 Appendix A: NOP, NOP, timestamps — what every segment
        // after the SYN carries when timestamps are on (this engine's and
        // Linux's): read at once, as Linux's `tcp_parse_aligned_timestamp`.
        // The same result as the loop below.
        if let [OPT_NOP, OPT_NOP, OPT_TIMESTAMPS, 10, ts @ ..] = opts {
            if ts.len() == 8 {
                self.timestamps = Some(Timestamps {
                    tsval: be32(ts, 0),
                    tsecr: be32(ts, 4),
                });
                return Ok(());
            }
        }
        if opts.is_empty() {
            return Ok(());
        }
        self.read_loop(opts)
    }

    /// [`read`](Self::read)'s general loop: every option kind, any order.
    #[inline(never)]
    fn read_loop(&mut self, mut opts: &[u8]) -> Result<(), TcpParseError> {
        let out = self;
        while let Some((&kind, rest)) = opts.split_first() {
            match kind {
                OPT_EOL => break,
                OPT_NOP => {
                    opts = rest;
                    continue;
                }
                _ => {}
            }
            let Some(&len) = rest.first() else {
                return Err(TcpParseError::OptionPastHeader);
            };
            let len = usize::from(len);
            if len < 2 {
                return Err(TcpParseError::BadOptionLength);
            }
            let Some(body) = opts.get(2..len) else {
                return Err(TcpParseError::OptionPastHeader);
            };
            match (kind, body.len()) {
                (OPT_MSS, 2) => out.mss = Some(be16(body, 0)),
                // RFC 7323 §2.3: a shift above 14 is used as 14.
                (OPT_WSCALE, 1) => out.window_scale = Some(body[0].min(14)),
                (OPT_SACK_PERM, 0) => out.sack_permitted = true,
                (OPT_TIMESTAMPS, 8) => {
                    out.timestamps = Some(Timestamps {
                        tsval: be32(body, 0),
                        tsecr: be32(body, 4),
                    })
                }
                (OPT_SACK, n) if n % 8 == 0 && n > 0 => {
                    for block in body.chunks_exact(8) {
                        out.sack
                            .push(SeqNumber(be32(block, 0)), SeqNumber(be32(block, 4)));
                    }
                }
                _ => {}
            }
            opts = opts.get(len..).unwrap_or(&[]);
        }
        Ok(())
    }

    /// Bytes these options take on the wire, padded to a multiple of 4 and
    /// at most 40 (SACK blocks that do not fit are left out).
    pub fn wire_len(&self) -> usize {
        let mut n = 0;
        if self.mss.is_some() {
            n += 4;
        }
        if self.window_scale.is_some() {
            n += 4;
        }
        match (self.sack_permitted, self.timestamps.is_some()) {
            (true, true) | (false, true) => n += 12,
            (true, false) => n += 4,
            (false, false) => {}
        }
        n + self.sack_len_within(MAX_OPTIONS_LEN.saturating_sub(n)).1
    }

    /// (blocks, bytes) of the SACK option that fit in `room` bytes.
    fn sack_len_within(&self, room: usize) -> (usize, usize) {
        if self.sack.is_empty() || room < 12 {
            return (0, 0);
        }
        let blocks = self.sack.len().min((room - 4) / 8);
        (blocks, 4 + 8 * blocks)
    }

    /// Writes the options into `buf` (exactly `wire_len()` bytes).
    fn emit(&self, buf: &mut [u8]) {
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            buf[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
            at
        };
        let mut used = 0;
        if let Some(mss) = self.mss {
            let m = mss.to_be_bytes();
            used = put(&[OPT_MSS, 4, m[0], m[1]]);
        }
        if let Some(ws) = self.window_scale {
            used = put(&[OPT_NOP, OPT_WSCALE, 3, ws.min(14)]);
        }
        if let Some(ts) = self.timestamps {
            if self.sack_permitted {
                put(&[OPT_SACK_PERM, 2]);
            } else {
                put(&[OPT_NOP, OPT_NOP]);
            }
            put(&[OPT_TIMESTAMPS, 10]);
            put(&ts.tsval.to_be_bytes());
            used = put(&ts.tsecr.to_be_bytes());
        } else if self.sack_permitted {
            used = put(&[OPT_NOP, OPT_NOP, OPT_SACK_PERM, 2]);
        }
        let (blocks, len) = self.sack_len_within(MAX_OPTIONS_LEN.saturating_sub(used));
        if blocks > 0 {
            put(&[OPT_NOP, OPT_NOP, OPT_SACK, (len - 2) as u8]);
            for &(l, r) in &self.sack.as_slice()[..blocks] {
                put(&l.get().to_be_bytes());
                put(&r.get().to_be_bytes());
            }
        }
    }
}

/// A parsed, validated TCP segment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpRepr<'a> {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// Sequence number.
    pub seq: SeqNumber,
    /// Acknowledgment number; `Some` exactly when the ACK bit is set.
    pub ack: Option<SeqNumber>,
    /// Control bits other than ACK (FIN, SYN, RST, PSH, URG, ECE, CWR).
    pub flags: u8,
    /// Window field as sent (not yet scaled).
    pub window: u16,
    /// Urgent pointer.
    pub urgent: u16,
    /// Options understood by the engine.
    pub options: TcpOptions,
    /// Segment data.
    pub payload: &'a [u8],
}

impl<'a> TcpRepr<'a> {
    /// Parses a segment carried from `src` to `dst`, verifying its checksum
    /// over the IPv4 pseudo-header (RFC 9293 §3.1).
    pub fn parse<A: PseudoAddr>(
        src: A,
        dst: A,
        buf: &'a [u8],
    ) -> Result<TcpRepr<'a>, TcpParseError> {
        let packet = TcpPacket::new_checked(buf)?;
        let repr = TcpRepr::from_packet(&packet)?;
        if !packet.verify_checksum(src, dst) {
            return Err(TcpParseError::BadChecksum);
        }
        Ok(repr)
    }

    /// Parses a segment as [`parse`](Self::parse) does, but when
    /// `accept_partial` holds, a segment whose checksum field holds only the
    /// pseudo-header sum ([`TcpPacket::checksum_is_partial`]) is accepted
    /// and reported as [`ChecksumKind::Partial`]. Without it such a segment
    /// is [`TcpParseError::ChecksumPartial`], apart from other bad checksums.
    pub fn parse_accepting_partial<A: PseudoAddr>(
        src: A,
        dst: A,
        buf: &'a [u8],
        accept_partial: bool,
    ) -> Result<(TcpRepr<'a>, ChecksumKind), TcpParseError> {
        let mut repr = TcpRepr::default();
        let kind = TcpRepr::parse_into(src, dst, buf, accept_partial, &mut repr)?;
        Ok((repr, kind))
    }

    /// [`parse_accepting_partial`](Self::parse_accepting_partial) into
    /// `out`, which must hold [`TcpRepr::default`] (what is left of it after
    /// an error is unspecified). The engine's receive path: every field is
    /// written once, where the engine then reads it. Returning the parsed
    /// segment by value instead made the compiler copy it through two
    /// temporaries with wide loads over narrower stores, which the CPU
    /// cannot forward (a stall of several per received segment, the top
    /// instructions of the in-memory engine bench's profile).
    #[inline(always)]
    pub fn parse_into<A: PseudoAddr>(
        src: A,
        dst: A,
        buf: &'a [u8],
        accept_partial: bool,
        out: &mut TcpRepr<'a>,
    ) -> Result<ChecksumKind, TcpParseError> {
        let packet = TcpPacket::new_checked(buf)?;
        let flags = packet.flags();
        out.src_port = packet.src_port();
        out.dst_port = packet.dst_port();
        out.seq = packet.seq();
        out.ack = (flags & ACK != 0).then(|| packet.ack());
        out.flags = flags & !ACK;
        out.window = packet.window();
        out.urgent = packet.urgent();
        out.options.read(packet.options())?;
        out.payload = packet.payload();
        if packet.verify_checksum(src, dst) {
            Ok(ChecksumKind::Full)
        } else if !packet.checksum_is_partial(src, dst) {
            Err(TcpParseError::BadChecksum)
        } else if accept_partial {
            Ok(ChecksumKind::Partial)
        } else {
            Err(TcpParseError::ChecksumPartial)
        }
    }

    /// Parses a segment without looking at its checksum (for segments whose
    /// checksum the NIC or the XDP program has already verified).
    pub fn parse_unchecked(buf: &'a [u8]) -> Result<TcpRepr<'a>, TcpParseError> {
        TcpRepr::from_packet(&TcpPacket::new_checked(buf)?)
    }

    fn from_packet(p: &TcpPacket<&'a [u8]>) -> Result<TcpRepr<'a>, TcpParseError> {
        let flags = p.flags();
        Ok(TcpRepr {
            src_port: p.src_port(),
            dst_port: p.dst_port(),
            seq: p.seq(),
            ack: (flags & ACK != 0).then(|| p.ack()),
            flags: flags & !ACK,
            window: p.window(),
            urgent: p.urgent(),
            options: TcpOptions::parse(p.options())?,
            payload: p.payload(),
        })
    }

    /// SYN is set.
    pub fn syn(&self) -> bool {
        self.flags & SYN != 0
    }
    /// FIN is set.
    pub fn fin(&self) -> bool {
        self.flags & FIN != 0
    }
    /// RST is set.
    pub fn rst(&self) -> bool {
        self.flags & RST != 0
    }

    /// Sequence space the segment occupies: data plus SYN and FIN
    /// (RFC 9293 §3.4, SEG.LEN).
    pub fn seq_len(&self) -> usize {
        self.payload.len() + usize::from(self.syn()) + usize::from(self.fin())
    }

    /// Header length (fixed header plus padded options).
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.options.wire_len()
    }

    /// Length of the whole segment on the wire.
    pub fn len(&self) -> usize {
        self.header_len() + self.payload.len()
    }

    /// True when the segment has no data.
    pub fn is_empty(&self) -> bool {
        self.payload.is_empty()
    }

    /// Writes the header (with a zero checksum field) at the start of `buf`
    /// and returns its length. The caller places `payload_len` bytes of data
    /// after it and calls [`fill_checksum`]; `self.payload` is not copied.
    pub fn emit_header(&self, buf: &mut [u8]) -> Result<usize, WireError> {
        let hlen = self.header_len();
        if buf.len() < hlen {
            return Err(WireError::BufferTooSmall);
        }
        let mut p = TcpPacket::new_unchecked(&mut *buf);
        p.set_src_port(self.src_port);
        p.set_dst_port(self.dst_port);
        p.set_seq(self.seq);
        p.set_ack(self.ack.unwrap_or_default());
        p.set_header_len(hlen);
        let ack_bit = if self.ack.is_some() { ACK } else { 0 };
        p.set_flags((self.flags & !ACK) | ack_bit);
        p.set_window(self.window);
        p.set_checksum(0);
        p.set_urgent(self.urgent);
        self.options.emit(&mut buf[field::OPTIONS..hlen]);
        Ok(hlen)
    }

    /// Writes the whole segment (header, options, `self.payload`) with its
    /// checksum at the start of `buf`; returns its length.
    pub fn emit<A: PseudoAddr>(&self, src: A, dst: A, buf: &mut [u8]) -> Result<usize, WireError> {
        let total = self.len();
        if buf.len() < total || total > usize::from(u16::MAX) {
            return Err(WireError::BufferTooSmall);
        }
        let hlen = self.emit_header(buf)?;
        buf[hlen..total].copy_from_slice(self.payload);
        fill_checksum(src, dst, &mut buf[..total]);
        Ok(total)
    }
}

/// Computes and stores the checksum of a complete segment whose checksum
/// field is zero (RFC 9293 §3.1). `segment` must be at least 20 bytes and
/// at most 65535.
pub fn fill_checksum<A: PseudoAddr>(src: A, dst: A, segment: &mut [u8]) {
    if segment.len() < HEADER_LEN {
        return;
    }
    TcpPacket::new_unchecked(segment).fill_checksum(src, dst);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    const SRC: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const DST: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

    fn syn_repr() -> TcpRepr<'static> {
        TcpRepr {
            src_port: 40000,
            dst_port: 80,
            seq: SeqNumber(0xdead_beef),
            ack: None,
            flags: SYN,
            window: 64240,
            urgent: 0,
            options: TcpOptions {
                mss: Some(1460),
                window_scale: Some(7),
                sack_permitted: true,
                timestamps: Some(Timestamps { tsval: 1, tsecr: 0 }),
                sack: SackBlocks::default(),
            },
            payload: &[],
        }
    }

    fn emit(repr: &TcpRepr) -> Vec<u8> {
        let mut buf = vec![0u8; repr.len()];
        assert_eq!(repr.emit(SRC, DST, &mut buf).unwrap(), repr.len());
        buf
    }

    /// Rewrites the checksum of a hand-modified segment.
    fn refix(buf: &mut [u8]) {
        buf[16] = 0;
        buf[17] = 0;
        fill_checksum(SRC, DST, buf);
    }

    #[test]
    fn syn_roundtrip_with_all_options() {
        let repr = syn_repr();
        let buf = emit(&repr);
        assert_eq!(buf.len(), 40);
        assert_eq!(TcpRepr::parse(SRC, DST, &buf).unwrap(), repr);
    }

    #[test]
    fn data_roundtrip_with_sack_blocks_and_payload() {
        let mut sack = SackBlocks::default();
        for i in 0..4u32 {
            assert!(sack.push(SeqNumber(i * 100), SeqNumber(i * 100 + 50)));
        }
        assert!(!sack.push(SeqNumber(1), SeqNumber(2)));
        let mut repr = TcpRepr {
            flags: PSH,
            ack: Some(SeqNumber(77)),
            options: TcpOptions {
                sack,
                ..TcpOptions::default()
            },
            payload: b"hello world",
            ..syn_repr()
        };
        let buf = emit(&repr);
        assert_eq!(TcpRepr::parse(SRC, DST, &buf).unwrap(), repr);
        // With timestamps only three blocks fit in 40 option bytes.
        repr.options.timestamps = Some(Timestamps { tsval: 5, tsecr: 6 });
        let buf = emit(&repr);
        let parsed = TcpRepr::parse(SRC, DST, &buf).unwrap();
        assert_eq!(parsed.options.sack.len(), 3);
        assert_eq!(parsed.options.sack.as_slice(), &sack.as_slice()[..3]);
        assert_eq!(parsed.header_len(), MAX_HEADER_LEN);
    }

    #[test]
    fn view_accessors() {
        let buf = emit(&TcpRepr {
            payload: b"xy",
            ack: Some(SeqNumber(9)),
            ..syn_repr()
        });
        let p = TcpPacket::new_checked(&buf).unwrap();
        assert_eq!(p.src_port(), 40000);
        assert_eq!(p.dst_port(), 80);
        assert_eq!(p.seq(), SeqNumber(0xdead_beef));
        assert_eq!(p.ack(), SeqNumber(9));
        assert_eq!(p.flags(), SYN | ACK);
        assert_eq!(p.window(), 64240);
        assert_eq!(p.urgent(), 0);
        assert_eq!(p.header_len(), 40);
        assert_eq!(p.payload(), b"xy");
        assert_eq!(p.options().len(), 20);
        assert_ne!(p.checksum(), 0);
        assert!(p.verify_checksum(SRC, DST));
        assert!(!p.verify_checksum(DST, Ipv4Addr::new(1, 2, 3, 4)));
    }

    #[test]
    fn truncated_header() {
        let buf = emit(&syn_repr());
        for len in 0..HEADER_LEN {
            assert_eq!(
                TcpRepr::parse(SRC, DST, &buf[..len]).unwrap_err(),
                TcpParseError::Truncated
            );
        }
    }

    #[test]
    fn data_offset_below_five() {
        let mut buf = emit(&syn_repr());
        for off in 0..5u8 {
            buf[12] = off << 4;
            refix(&mut buf);
            assert_eq!(
                TcpRepr::parse(SRC, DST, &buf).unwrap_err(),
                TcpParseError::BadDataOffset
            );
        }
    }

    #[test]
    fn data_offset_past_end() {
        let mut buf = emit(&TcpRepr {
            options: TcpOptions::default(),
            ..syn_repr()
        });
        buf[12] = 6 << 4;
        refix(&mut buf);
        assert_eq!(
            TcpRepr::parse(SRC, DST, &buf).unwrap_err(),
            TcpParseError::DataOffsetPastEnd
        );
    }

    fn with_options(opts: &[u8]) -> Vec<u8> {
        let mut buf = emit(&TcpRepr {
            options: TcpOptions::default(),
            ..syn_repr()
        });
        let mut o = opts.to_vec();
        while !o.len().is_multiple_of(4) {
            o.push(OPT_EOL);
        }
        buf.extend_from_slice(&o);
        buf[12] = (((HEADER_LEN + o.len()) / 4) as u8) << 4;
        refix(&mut buf);
        buf
    }

    #[test]
    fn option_length_zero_or_one() {
        for len in [0u8, 1] {
            let buf = with_options(&[OPT_NOP, 99, len, 0]);
            assert_eq!(
                TcpRepr::parse(SRC, DST, &buf).unwrap_err(),
                TcpParseError::BadOptionLength
            );
        }
    }

    #[test]
    fn option_past_header() {
        // Length byte says 10 but only 4 bytes of options.
        let buf = with_options(&[OPT_TIMESTAMPS, 10, 0, 0]);
        assert_eq!(
            TcpRepr::parse(SRC, DST, &buf).unwrap_err(),
            TcpParseError::OptionPastHeader
        );
        // Kind byte is the last option byte: no room for its length.
        let buf = with_options(&[OPT_NOP, OPT_NOP, OPT_NOP, OPT_MSS]);
        assert_eq!(
            TcpRepr::parse(SRC, DST, &buf).unwrap_err(),
            TcpParseError::OptionPastHeader
        );
    }

    #[test]
    fn bad_checksum() {
        let mut buf = emit(&syn_repr());
        buf[5] ^= 0x40;
        assert_eq!(
            TcpRepr::parse(SRC, DST, &buf).unwrap_err(),
            TcpParseError::BadChecksum
        );
        // Unchecked parsing accepts it.
        assert!(TcpRepr::parse_unchecked(&buf).is_ok());
    }

    #[test]
    fn parsing_in_place_gives_what_the_by_value_parser_gives_and_the_same_errors() {
        let data = [0x42u8; 64];
        let sacked = TcpRepr {
            flags: 0,
            ack: Some(SeqNumber(7)),
            options: TcpOptions {
                timestamps: Some(Timestamps { tsval: 9, tsecr: 8 }),
                sack: {
                    let mut b = SackBlocks::default();
                    b.push(SeqNumber(100), SeqNumber(200));
                    b
                },
                ..TcpOptions::default()
            },
            ..syn_repr()
        };
        let segments = [
            emit(&syn_repr()),
            // Data with the aligned timestamps (the fast path).
            emit(&TcpRepr {
                flags: PSH,
                ack: Some(SeqNumber(5)),
                options: TcpOptions {
                    timestamps: Some(Timestamps { tsval: 3, tsecr: 4 }),
                    ..TcpOptions::default()
                },
                payload: &data,
                ..syn_repr()
            }),
            emit(&sacked),
            // No options at all.
            emit(&TcpRepr {
                flags: FIN,
                ack: Some(SeqNumber(1)),
                options: TcpOptions::default(),
                ..syn_repr()
            }),
        ];
        for buf in &segments {
            let mut out = TcpRepr::default();
            let kind = TcpRepr::parse_into(SRC, DST, buf, false, &mut out);
            assert_eq!(kind, Ok(ChecksumKind::Full));
            assert_eq!(Ok(out), TcpRepr::parse_unchecked(buf));
            assert_eq!(
                Ok((out, ChecksumKind::Full)),
                TcpRepr::parse_accepting_partial(SRC, DST, buf, false)
            );
        }
        let into = |buf: &[u8], accept| {
            let mut out = TcpRepr::default();
            TcpRepr::parse_into(SRC, DST, buf, accept, &mut out).map(|k| (out.seq, k))
        };
        // A corrupted byte: a bad checksum, with or without partial accepted.
        let mut bad = segments[1].clone();
        bad[40] ^= 1;
        assert_eq!(into(&bad, true), Err(TcpParseError::BadChecksum));
        // Only the pseudo-header sum: partial, accepted only when asked.
        let mut partial = segments[1].clone();
        let sum = checksum::fold(checksum::pseudo_header(
            SRC,
            DST,
            PROTO_TCP,
            partial.len() as u16,
        ));
        partial[16..18].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(into(&partial, false), Err(TcpParseError::ChecksumPartial));
        assert_eq!(
            into(&partial, true),
            Ok((syn_repr().seq, ChecksumKind::Partial))
        );
        // A malformed option: the by-value parser's error.
        let mut opt = segments[0].clone();
        opt[21] = 1;
        refix(&mut opt);
        assert_eq!(
            into(&opt, false).map(|_| ()),
            TcpRepr::parse_unchecked(&opt).map(|_| ())
        );
        assert!(into(&opt, false).is_err());
        assert_eq!(
            into(&segments[0][..10], false),
            Err(TcpParseError::Truncated)
        );
    }

    #[test]
    fn aligned_timestamps_parse_as_the_general_option_loop_does() {
        let ts = [0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0];
        let aligned: Vec<u8> = [1, 1, 8, 10].iter().chain(&ts).copied().collect();
        // The same option in another order goes through the loop.
        let looped: Vec<u8> = [8, 10].iter().chain(&ts).chain(&[1, 1]).copied().collect();
        let a = TcpOptions::parse(&aligned).unwrap();
        assert_eq!(a, TcpOptions::parse(&looped).unwrap());
        assert_eq!(
            a.timestamps,
            Some(Timestamps {
                tsval: 0x1234_5678,
                tsecr: 0x9abc_def0
            })
        );
        // More after the aligned timestamps (SACK blocks): all of it read.
        let mut sack = aligned.clone();
        sack.extend_from_slice(&[1, 1, 5, 10, 0, 0, 0, 1, 0, 0, 0, 9]);
        let o = TcpOptions::parse(&sack).unwrap();
        assert_eq!((o.timestamps, o.sack.len()), (a.timestamps, 1));
        // A wrong length is no aligned timestamp.
        let mut bad = aligned.clone();
        bad[3] = 9;
        assert_eq!(
            TcpOptions::parse(&bad).ok().and_then(|o| o.timestamps),
            None
        );
    }

    #[test]
    fn unknown_options_skipped_and_eol_ends_list() {
        let buf = with_options(&[
            OPT_NOP, 30, 4, 0xaa, 0xbb, OPT_MSS, 4, 0x05, 0xb4, OPT_EOL, OPT_WSCALE, 3, 9,
        ]);
        let r = TcpRepr::parse(SRC, DST, &buf).unwrap();
        assert_eq!(r.options.mss, Some(1460));
        assert_eq!(r.options.window_scale, None);
    }

    #[test]
    fn wrong_size_known_options_are_ignored_and_shift_clamped() {
        let buf = with_options(&[OPT_MSS, 3, 1, OPT_WSCALE, 3, 20, OPT_SACK, 6, 0, 0, 0, 0]);
        let r = TcpRepr::parse(SRC, DST, &buf).unwrap();
        assert_eq!(r.options.mss, None);
        assert_eq!(r.options.window_scale, Some(14));
        assert!(r.options.sack.is_empty());
    }

    #[test]
    fn error_indices_and_names_are_dense_and_unique() {
        let mut names = std::collections::HashSet::new();
        for (i, e) in TcpParseError::ALL.iter().enumerate() {
            assert_eq!(e.index(), i);
            assert!(names.insert(e.counter_name()));
            assert!(e.counter_name().starts_with("drop_tcp_"));
        }
    }

    #[test]
    fn emit_into_small_buffer_fails() {
        let mut buf = [0u8; 30];
        assert_eq!(
            syn_repr().emit(SRC, DST, &mut buf).unwrap_err(),
            WireError::BufferTooSmall
        );
    }

    /// Property-style: random bytes and random mutations of valid segments
    /// never panic, and whatever parses re-emits to something that parses.
    #[test]
    fn random_input_never_panics() {
        let mut s = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let valid = emit(&TcpRepr {
            payload: b"abcdef",
            ..syn_repr()
        });
        let mut ok = 0;
        for i in 0..20_000 {
            let mut buf: Vec<u8> = if i % 2 == 0 {
                let len = (next() % 80) as usize;
                (0..len).map(|_| next() as u8).collect()
            } else {
                let mut b = valid.clone();
                for _ in 0..(next() % 4 + 1) {
                    let at = (next() as usize) % b.len();
                    b[at] = next() as u8;
                }
                b
            };
            if i % 3 == 0 {
                buf.truncate((next() as usize) % (buf.len() + 1));
            }
            let _ = TcpRepr::parse(SRC, DST, &buf);
            if let Ok(r) = TcpRepr::parse_unchecked(&buf) {
                ok += 1;
                let mut out = vec![0u8; r.len()];
                r.emit(SRC, DST, &mut out).unwrap();
                assert!(TcpRepr::parse(SRC, DST, &out).is_ok());
            }
        }
        assert!(ok > 100, "mutations should often stay parseable: {ok}");
    }
}

#[cfg(test)]
mod seq_tests {
    use super::*;

    #[test]
    fn ordering_wraps_around() {
        let a = SeqNumber(u32::MAX - 10);
        let b = a + 20u32;
        assert_eq!(b.get(), 9);
        assert!(a < b);
        assert!(b > a);
        assert_eq!(b - a, 20);
        assert_eq!(a - b, -20);
        assert_eq!(b.dist(a), 20);
        assert_eq!(a.dist(b), 0);
        assert_eq!(a.max(b), b);
        assert_eq!(a.min(b), a);
        assert!(SeqNumber(5).in_range(a, b));
        assert!(!b.in_range(a, b));
    }

    #[test]
    fn half_space_boundary() {
        let a = SeqNumber(0);
        assert!(a < SeqNumber(0x7fff_ffff));
        // Exactly 2^31 apart is ambiguous (each is "less" than the other);
        // windows never come close to that.
        assert!(a < SeqNumber(0x8000_0000) && SeqNumber(0x8000_0000) < a);
        assert!(a > SeqNumber(0x8000_0001));
        assert_eq!(a.partial_cmp(&a), Some(Ordering::Equal));
        assert_eq!(a - 1u32, SeqNumber(u32::MAX));
    }

    #[test]
    fn captured_ipv6_segments_verify_over_the_ipv6_pseudo_header() {
        use super::super::{captured, ipv6::Ipv6Repr};
        for hex in [
            captured::TCP_SYN_TO_CLOSED,
            captured::TCP_RST_FROM_CLOSED,
            captured::TCP_SYN_ACK,
            captured::TCP_DATA_HELLO,
        ] {
            let f = captured::frame(hex);
            let (ip, seg) = Ipv6Repr::parse(&f[14..]).unwrap();
            let repr = TcpRepr::parse(ip.src, ip.dst, seg).unwrap();
            // Another source breaks it: the pseudo-header counts.
            let mut other = ip.src.octets();
            other[15] ^= 0x40;
            let other = std::net::Ipv6Addr::from(other);
            assert_eq!(
                TcpRepr::parse(other, ip.dst, seg).unwrap_err(),
                TcpParseError::BadChecksum
            );
            // Emitting the parsed repr (options in our order) verifies and
            // parses back to it.
            let mut out = vec![0u8; repr.len()];
            repr.emit(ip.src, ip.dst, &mut out).unwrap();
            assert_eq!(TcpRepr::parse(ip.src, ip.dst, &out).unwrap(), repr);
        }
        // Without options the emitted bytes are the kernel's.
        let f = captured::frame(captured::TCP_RST_FROM_CLOSED);
        let (ip, seg) = Ipv6Repr::parse(&f[14..]).unwrap();
        let repr = TcpRepr::parse(ip.src, ip.dst, seg).unwrap();
        let mut out = vec![0u8; repr.len()];
        repr.emit(ip.src, ip.dst, &mut out).unwrap();
        assert_eq!(out, seg);
        let f = captured::frame(captured::TCP_DATA_HELLO);
        let (ip, seg) = Ipv6Repr::parse(&f[14..]).unwrap();
        assert_eq!(
            TcpRepr::parse(ip.src, ip.dst, seg).unwrap().payload,
            b"hello"
        );
    }
}
