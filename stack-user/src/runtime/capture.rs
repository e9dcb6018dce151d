//! `--pcap FILE`: the frames the engine receives (from its AF_XDP socket)
//! and sends (into its TX ring), written as a classic pcap file (Ethernet
//! link type) by the `pcap-file` crate, for tcpdump, tshark and Wireshark.
//!
//! Cost: nothing when off — the [`Stack`](super::stack::Stack) checks one
//! `Option` per batch and only then wraps its frame sink. On: one lock per
//! batch (queue workers share the file), one clock read and one copy per
//! frame.
//!
//! Bounds: each frame is cut at `--pcap-snaplen` bytes (the record keeps
//! its real length); once the file would pass `--pcap-max-bytes`, writing
//! stops and one line is logged saying so (no rotation: a capture is for
//! looking at the start of something; the counters tell the rest).
//!
//! Checksums: frames the engine sends carry complete checksums. A Linux
//! peer on a veth sends TCP with CHECKSUM_PARTIAL (only the pseudo-header
//! sum in the field, see `wire::tcp::TcpPacket::checksum_is_partial`),
//! which the engine accepts (`accept_checksum_partial`, counted as
//! `checksum_partial_in`) — a NIC would have completed it. The captured
//! copy of such a segment gets the complete checksum, so tshark's checksum
//! validation shows no error for what the engine rightly took; the frame
//! the engine processed is not changed, and any other bad checksum is
//! written as it came (tshark then flags it, as it should).

use std::{
    fs::File,
    io::BufWriter,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use anyhow::{anyhow, Result};
use pcap_file::{
    pcap::{PcapHeader, PcapPacket, PcapWriter},
    DataLink, Endianness, TsResolution,
};

use crate::{
    iface::FrameSink,
    wire::{ethernet, ipv4, tcp},
};

/// Default of `--pcap-snaplen`: whole frames (jumbo included).
pub const DEFAULT_SNAPLEN: u32 = 65_535;
/// Default of `--pcap-max-bytes`: 100 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 100 << 20;
/// The snap length in the file header (tcpdump's MAXIMUM_SNAPLEN).
const HEADER_SNAPLEN: u32 = 262_144;
/// Bytes of a pcap record header.
const RECORD_HEADER: u64 = 16;
/// Bytes of the pcap file header.
const FILE_HEADER: u64 = 24;

/// What `--pcap`, `--pcap-snaplen` and `--pcap-max-bytes` ask for.
#[derive(Clone, Debug)]
pub struct CaptureConfig {
    /// The file (created or truncated).
    pub path: PathBuf,
    /// Bytes kept of each frame.
    pub snaplen: u32,
    /// Size of the file after which nothing more is written.
    pub max_bytes: u64,
}

impl CaptureConfig {
    /// Checks the numbers; one line saying what to give when wrong.
    pub fn new(path: PathBuf, snaplen: u32, max_bytes: u64) -> Result<CaptureConfig> {
        if !(14..=262_144).contains(&snaplen) {
            return Err(anyhow!(
                "--pcap-snaplen {snaplen} is out of range; give 14 (Ethernet headers only) to 262144"
            ));
        }
        if max_bytes < FILE_HEADER + RECORD_HEADER + 14 {
            return Err(anyhow!(
                "--pcap-max-bytes {max_bytes} cannot hold one frame; give at least 64"
            ));
        }
        Ok(CaptureConfig {
            path,
            snaplen,
            max_bytes,
        })
    }
}

/// Which way a frame went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Received by the engine.
    Rx,
    /// Sent by the engine.
    Tx,
}

/// An open capture file; shared by the queue workers of one run.
pub struct Capture {
    writer: Option<PcapWriter<BufWriter<File>>>,
    path: PathBuf,
    snaplen: u32,
    max_bytes: u64,
    written: u64,
    /// Frames written, by direction.
    pub frames: [u64; 2],
    /// Frames not written because the size bound was reached.
    pub skipped: u64,
    scratch: Vec<u8>,
}

/// A capture as the queue workers share it.
pub type SharedCapture = Arc<Mutex<Capture>>;

impl Capture {
    /// Creates (truncates) the file and writes its header.
    pub fn create(cfg: &CaptureConfig) -> Result<Capture> {
        let io = |e: &dyn std::fmt::Display| {
            anyhow!(
                "--pcap {}: {e}; give a path in a writable directory",
                cfg.path.display()
            )
        };
        let file = File::create(&cfg.path).map_err(|e| io(&e))?;
        let header = PcapHeader {
            // Records are cut at `cfg.snaplen`; the header names the most
            // any record may hold (tcpdump's default), since some readers
            // (the pcap-file crate's) refuse a record whose original length
            // passes the header's snap length.
            snaplen: HEADER_SNAPLEN,
            datalink: DataLink::ETHERNET,
            ts_resolution: TsResolution::NanoSecond,
            endianness: Endianness::Little,
            ..PcapHeader::default()
        };
        let writer = PcapWriter::with_header(BufWriter::new(file), header).map_err(|e| io(&e))?;
        Ok(Capture {
            writer: Some(writer),
            path: cfg.path.clone(),
            snaplen: cfg.snaplen,
            max_bytes: cfg.max_bytes,
            written: FILE_HEADER,
            frames: [0; 2],
            skipped: 0,
            scratch: Vec::new(),
        })
    }

    /// Opens the capture `cfg` asks for, to share between queue workers.
    pub fn shared(cfg: &CaptureConfig) -> Result<SharedCapture> {
        Ok(Arc::new(Mutex::new(Capture::create(cfg)?)))
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one frame (cut at the snap length), unless the size bound
    /// is reached: then the file is flushed and closed, and one line says
    /// so.
    pub fn record(&mut self, frame: &[u8], dir: Direction) {
        let Some(w) = self.writer.as_mut() else {
            self.skipped += 1;
            return;
        };
        let keep = frame.len().min(self.snaplen as usize);
        if self.written + RECORD_HEADER + keep as u64 > self.max_bytes {
            log::warn!(
                "--pcap {}: {} bytes reached (--pcap-max-bytes): capture stopped after {} frames received and {} sent",
                self.path.display(),
                self.written,
                self.frames[0],
                self.frames[1]
            );
            self.close();
            self.skipped += 1;
            return;
        }
        let ts = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        let data = if dir == Direction::Rx && complete_partial_checksum(frame, &mut self.scratch) {
            &self.scratch[..keep]
        } else {
            &frame[..keep]
        };
        match w.write_packet(&PcapPacket::new(ts, frame.len() as u32, data)) {
            Ok(_) => {
                self.written += RECORD_HEADER + keep as u64;
                self.frames[dir as usize] += 1;
            }
            Err(e) => {
                log::warn!("--pcap {}: {e}: capture stopped", self.path.display());
                self.close();
            }
        }
    }

    /// Flushes and closes the file (also when dropped).
    pub fn close(&mut self) {
        if let Some(w) = self.writer.take() {
            use std::io::Write;
            if let Err(e) = w.into_writer().flush() {
                log::warn!("--pcap {}: {e}", self.path.display());
            }
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.close();
    }
}

/// When `frame` is IPv4/TCP whose checksum field holds only the
/// pseudo-header sum (CHECKSUM_PARTIAL, see the module comment), puts a
/// copy with the complete checksum in `out` and returns true.
fn complete_partial_checksum(frame: &[u8], out: &mut Vec<u8>) -> bool {
    let Ok(eth) = ethernet::EthernetFrame::new_checked(frame) else {
        return false;
    };
    if eth.ethertype() != ethernet::ETHERTYPE_IPV4 {
        return false;
    }
    let Ok(ip) = ipv4::Ipv4Packet::new_checked(eth.payload()) else {
        return false;
    };
    if ip.protocol() != ipv4::PROTO_TCP || ip.more_frags() || ip.frag_offset() != 0 {
        return false;
    }
    let (src, dst) = (ip.src_addr(), ip.dst_addr());
    let start = ethernet::HEADER_LEN + ip.header_len();
    let end = ethernet::HEADER_LEN + usize::from(ip.total_len());
    let Ok(seg) = tcp::TcpPacket::new_checked(ip.payload()) else {
        return false;
    };
    if seg.verify_checksum(src, dst) || !seg.checksum_is_partial(src, dst) || end > frame.len() {
        return false;
    }
    out.clear();
    out.extend_from_slice(frame);
    tcp::fill_checksum(src, dst, &mut out[start..end]);
    true
}

/// A frame sink that records each frame it sends.
pub(crate) struct Recording<'a> {
    pub(crate) inner: &'a mut dyn FrameSink,
    pub(crate) capture: &'a mut Capture,
}

impl FrameSink for Recording<'_> {
    fn send(&mut self, build: &mut dyn FnMut(&mut [u8]) -> usize) -> bool {
        let capture = &mut *self.capture;
        self.inner.send(&mut |buf: &mut [u8]| {
            let n = build(buf);
            if n > 0 {
                capture.record(&buf[..n.min(buf.len())], Direction::Tx);
            }
            n
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::build;

    fn temp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("xstack-capture-{}-{name}.pcap", std::process::id()))
    }

    fn read_back(path: &Path) -> Vec<(u32, Vec<u8>)> {
        let mut r = pcap_file::pcap::PcapReader::new(File::open(path).unwrap()).unwrap();
        let mut out = Vec::new();
        while let Some(p) = r.next_packet() {
            let p = p.unwrap();
            out.push((p.orig_len, p.data.into_owned()));
        }
        out
    }

    #[test]
    fn a_capture_keeps_frames_in_order_cut_at_the_snap_length() {
        let path = temp("snap");
        let mut c =
            Capture::create(&CaptureConfig::new(path.clone(), 20, DEFAULT_MAX_BYTES).unwrap())
                .unwrap();
        c.record(&[1u8; 60], Direction::Rx);
        c.record(&[2u8; 10], Direction::Tx);
        assert_eq!(c.frames, [1, 1]);
        drop(c);
        let got = read_back(&path);
        let _ = std::fs::remove_file(&path);
        assert_eq!(got, vec![(60, vec![1u8; 20]), (10, vec![2u8; 10])]);
    }

    #[test]
    fn a_capture_stops_at_its_size_bound() {
        let path = temp("bound");
        let max = FILE_HEADER + 3 * (RECORD_HEADER + 60);
        let mut c =
            Capture::create(&CaptureConfig::new(path.clone(), 65_535, max).unwrap()).unwrap();
        for _ in 0..5 {
            c.record(&[7u8; 60], Direction::Rx);
        }
        assert_eq!((c.frames[0], c.skipped), (3, 2));
        drop(c);
        let len = std::fs::metadata(&path).unwrap().len();
        let got = read_back(&path);
        let _ = std::fs::remove_file(&path);
        assert_eq!(got.len(), 3);
        assert!(len <= max, "{len} > {max}");
    }

    #[test]
    fn bad_capture_bounds_are_one_line_saying_what_to_give() {
        for (snap, max) in [
            (0, DEFAULT_MAX_BYTES),
            (1 << 20, DEFAULT_MAX_BYTES),
            (64, 10),
        ] {
            let e = CaptureConfig::new("x.pcap".into(), snap, max)
                .unwrap_err()
                .to_string();
            assert!(e.contains("--pcap-") && !e.contains('\n'), "{e}");
        }
        let e = Capture::create(
            &CaptureConfig::new("/nonexistent/dir/x.pcap".into(), 100, 1000).unwrap(),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            e.contains("--pcap /nonexistent") && !e.contains('\n'),
            "{e}"
        );
    }

    #[test]
    fn a_checksum_partial_segment_is_captured_with_its_checksum_completed() {
        let ends = build::Endpoints {
            src_mac: ethernet::Mac([2, 0, 0, 0, 0, 1]),
            dst_mac: ethernet::Mac([2, 0, 0, 0, 0, 2]),
            src_ip: "198.18.0.1".parse().unwrap(),
            dst_ip: "198.18.0.2".parse().unwrap(),
        };
        let mut frame = ends.tcp(&build::TcpSegment {
            src_port: 40000,
            dst_port: 80,
            seq: 1,
            ack: 1,
            flags: crate::wire::tcp::ACK | crate::wire::tcp::PSH,
            window: 1000,
            payload: b"hello",
            ..Default::default()
        });
        let eth = ethernet::EthernetFrame::new_checked(&frame[..]).unwrap();
        let ip = ipv4::Ipv4Packet::new_checked(eth.payload()).unwrap();
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let start = ethernet::HEADER_LEN + ip.header_len();
        let good = frame.clone();
        // What a Linux peer on veth leaves: the folded pseudo-header sum.
        let len = (frame.len() - start) as u16;
        let partial = crate::wire::checksum::fold(crate::wire::checksum::pseudo_header(
            src,
            dst,
            ipv4::PROTO_TCP,
            len,
        ));
        tcp::TcpPacket::new_checked(&mut frame[start..])
            .unwrap()
            .set_checksum(partial);
        let mut out = Vec::new();
        assert!(complete_partial_checksum(&frame, &mut out));
        assert_eq!(out, good);
        // A complete checksum, or a merely wrong one, is left as it came.
        assert!(!complete_partial_checksum(&good, &mut out));
        tcp::TcpPacket::new_checked(&mut frame[start..])
            .unwrap()
            .set_checksum(partial ^ 1);
        assert!(!complete_partial_checksum(&frame, &mut out));
    }

    #[test]
    fn frames_sent_through_a_recording_sink_are_captured_as_sent() {
        let path = temp("sink");
        let mut c =
            Capture::create(&CaptureConfig::new(path.clone(), 65_535, DEFAULT_MAX_BYTES).unwrap())
                .unwrap();
        let mut inner = crate::iface::VecSink::default();
        let mut rec = Recording {
            inner: &mut inner,
            capture: &mut c,
        };
        rec.send(&mut |b: &mut [u8]| {
            b[..4].copy_from_slice(&[9, 8, 7, 6]);
            4
        });
        rec.send(&mut |_: &mut [u8]| 0);
        assert_eq!(c.frames, [0, 1]);
        drop(c);
        let got = read_back(&path);
        let _ = std::fs::remove_file(&path);
        assert_eq!(inner.frames, vec![vec![9, 8, 7, 6]]);
        assert_eq!(got, vec![(4, vec![9, 8, 7, 6])]);
    }
}
