//! AF_XDP sockets: one UMEM and one socket per rx queue, with fill,
//! completion, rx and tx rings, batching and `need_wakeup`.
//!
//! This is the only module that touches xdpilone, so the ring library can be
//! swapped without the rest of the stack noticing.
//!
//! # Minimum kernel version
//! 5.9 (`XDP_STATISTICS` v2 and BPF links); `need_wakeup` needs 5.4.

use std::{ffi::CString, num::NonZeroU32, os::fd::RawFd, ptr::NonNull};

use thiserror::Error;
use xdpilone::{
    xdp::XdpDesc, DeviceQueue, IfInfo, RingRx, RingTx, Socket, SocketConfig, Umem, UmemConfig, User,
};

/// How the socket is bound to the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum XskMode {
    /// Zero-copy where the driver supports it, else copy.
    Auto,
    /// Force copy mode (works on every driver, veth included).
    Copy,
    /// Force zero-copy mode; fails on drivers without `XDP_SETUP_XSK_POOL`.
    Zerocopy,
}

/// Errors from setting up or running an AF_XDP socket.
#[derive(Debug, Error)]
pub enum XskError {
    /// The interface name is not valid or does not exist.
    #[error("interface {0}: no such interface")]
    UnknownInterface(String),
    /// mmap of the UMEM area failed.
    #[error(
        "cannot map {bytes} bytes for the UMEM: {source} (raise `ulimit -l` or lower --frames)"
    )]
    Mmap {
        /// Requested size.
        bytes: usize,
        /// OS error.
        source: std::io::Error,
    },
    /// A socket call failed.
    #[error("AF_XDP {call} on {iface} queue {queue} failed: {source}{hint}")]
    Socket {
        /// The failing step.
        call: &'static str,
        /// Interface.
        iface: String,
        /// Queue id.
        queue: u32,
        /// OS error.
        source: std::io::Error,
        /// A hint on what to do.
        hint: &'static str,
    },
}

/// Sizes of the UMEM and rings of one socket.
#[derive(Clone, Copy, Debug)]
pub struct XskConfig {
    /// Number of UMEM frames (a power of two).
    pub frames: u32,
    /// Size of one frame in bytes (2048 or 4096).
    pub frame_size: u32,
    /// Entries in each of the four rings (a power of two).
    pub ring_size: u32,
    /// Copy / zero-copy selection.
    pub mode: XskMode,
}

impl Default for XskConfig {
    fn default() -> Self {
        XskConfig {
            frames: 4096,
            frame_size: 4096,
            ring_size: 2048,
            mode: XskMode::Auto,
        }
    }
}

/// Kernel-side statistics of a socket (`XDP_STATISTICS`).
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct KernelStats {
    /// Dropped by the kernel for reasons other than a full ring.
    pub rx_dropped: u64,
    /// RX ring was full.
    pub rx_ring_full: u64,
    /// Fill ring was empty when a packet arrived.
    pub rx_fill_ring_empty: u64,
    /// Invalid RX descriptors.
    pub rx_invalid_descs: u64,
    /// Invalid TX descriptors.
    pub tx_invalid_descs: u64,
    /// TX ring was empty when the kernel looked.
    pub tx_ring_empty: u64,
}

/// An anonymous, page-aligned memory area for the UMEM.
struct Area {
    ptr: NonNull<u8>,
    len: usize,
}

impl Area {
    fn new(len: usize) -> Result<Area, XskError> {
        // SAFETY: anonymous private mapping, checked for MAP_FAILED.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(XskError::Mmap {
                bytes: len,
                source: std::io::Error::last_os_error(),
            });
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or(XskError::Mmap {
            bytes: len,
            source: std::io::Error::from_raw_os_error(libc::ENOMEM),
        })?;
        Ok(Area { ptr, len })
    }
}

impl Drop for Area {
    fn drop(&mut self) {
        // SAFETY: this mapping was created by `Area::new` with this length.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// One AF_XDP socket bound to one (interface, queue), with its own UMEM.
///
/// Frames are owned by exactly one of: the free list, the fill ring, the rx
/// ring (until released), the tx ring, the completion ring.
pub struct XskSocket {
    // Field order is drop order: rings and sockets go before the area.
    rx: RingRx,
    tx: RingTx,
    device: DeviceQueue,
    _user: User,
    _umem: Umem,
    area: Area,
    free: Vec<u64>,
    frame_size: u32,
    queue: u32,
    zero_copy: bool,
    tx_in_flight: u32,
    tx_dropped: u64,
    tx_completed: u64,
    /// Reused per batch (no 1 KiB array zeroed per call on the hot path).
    rx_descs: Vec<XdpDesc>,
    tx_pending: Vec<XdpDesc>,
    ring_size: u32,
    fd: RawFd,
}

// SAFETY: the socket and its rings are used by one thread at a time (each
// queue has its own worker); the raw pointers point into our own mapping.
unsafe impl Send for XskSocket {}

fn os(e: xdpilone::Errno) -> std::io::Error {
    std::io::Error::from_raw_os_error(e.get_raw().abs())
}

impl XskSocket {
    /// Creates the UMEM and socket and binds it to `iface`/`queue`.
    ///
    /// With [`XskMode::Auto`], zero-copy is tried first and copy mode is used
    /// when the driver refuses it.
    pub fn open(iface: &str, queue: u32, config: &XskConfig) -> Result<XskSocket, XskError> {
        match config.mode {
            XskMode::Copy => Self::open_mode(iface, queue, config, false),
            XskMode::Zerocopy => Self::open_mode(iface, queue, config, true),
            XskMode::Auto => match Self::open_mode(iface, queue, config, true) {
                Ok(s) => Ok(s),
                Err(XskError::Socket { call: "bind", .. }) => {
                    Self::open_mode(iface, queue, config, false)
                }
                Err(e) => Err(e),
            },
        }
    }

    fn open_mode(
        iface: &str,
        queue: u32,
        config: &XskConfig,
        zero_copy: bool,
    ) -> Result<XskSocket, XskError> {
        let err = |call: &'static str, e: xdpilone::Errno, hint: &'static str| XskError::Socket {
            call,
            iface: iface.to_string(),
            queue,
            source: os(e),
            hint,
        };
        let frames = config.frames.max(64).next_power_of_two();
        let ring = config.ring_size.max(64).next_power_of_two().min(frames / 2);
        let area = Area::new(frames as usize * config.frame_size as usize)?;

        let name = CString::new(iface).map_err(|_| XskError::UnknownInterface(iface.into()))?;
        let mut info = IfInfo::invalid();
        info.from_name(&name)
            .map_err(|_| XskError::UnknownInterface(iface.into()))?;
        info.set_queue(queue);

        let umem_config = UmemConfig {
            fill_size: ring,
            complete_size: ring,
            frame_size: config.frame_size,
            headroom: 0,
            flags: 0,
        };
        let slice = NonNull::slice_from_raw_parts(area.ptr, area.len);
        // SAFETY: the area is page aligned, `frames * frame_size` long, and
        // outlives the UMEM (field order of `XskSocket`).
        let umem = unsafe { Umem::new(umem_config, slice) }.map_err(|e| {
            err(
                "UMEM registration",
                e,
                " (is this kernel built with CONFIG_XDP_SOCKETS?)",
            )
        })?;
        let sock = Socket::with_shared(&info, &umem).map_err(|e| err("socket", e, ""))?;
        let device = umem
            .fq_cq(&sock)
            .map_err(|e| err("fill/completion rings", e, ""))?;
        let mut bind_flags = SocketConfig::XDP_BIND_NEED_WAKEUP;
        bind_flags |= if zero_copy {
            SocketConfig::XDP_BIND_ZEROCOPY
        } else {
            SocketConfig::XDP_BIND_COPY
        };
        let user = umem
            .rx_tx(
                &sock,
                &SocketConfig {
                    rx_size: NonZeroU32::new(ring),
                    tx_size: NonZeroU32::new(ring),
                    bind_flags,
                },
            )
            .map_err(|e| err("rx/tx rings", e, ""))?;
        let rx = user.map_rx().map_err(|e| err("rx ring mmap", e, ""))?;
        let tx = user.map_tx().map_err(|e| err("tx ring mmap", e, ""))?;
        // A socket closed moments ago releases its queue asynchronously, so
        // EBUSY is retried for a short while before it is believed.
        let mut tries = 0;
        let bound = loop {
            match umem.bind(&user) {
                Err(e) if e.get_raw().abs() == libc::EBUSY && tries < 40 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(25));
                }
                other => break other,
            }
        };
        bound.map_err(|e| {
            let hint = if e.get_raw().abs() == libc::EBUSY {
                " (another AF_XDP socket is bound to this queue)"
            } else if zero_copy {
                " (the driver may not support zero-copy; use --xsk-mode copy)"
            } else {
                " (does the interface have this rx queue? see --queues)"
            };
            err("bind", e, hint)
        })?;
        let fd = user.as_raw_fd();

        let free = (0..frames)
            .map(|i| u64::from(i) * u64::from(config.frame_size))
            .collect();
        let mut s = XskSocket {
            rx,
            tx,
            device,
            _user: user,
            _umem: umem,
            area,
            free,
            frame_size: config.frame_size,
            queue,
            zero_copy,
            tx_in_flight: 0,
            tx_dropped: 0,
            tx_completed: 0,
            rx_descs: Vec::with_capacity(BATCH),
            tx_pending: Vec::with_capacity(BATCH),
            ring_size: ring,
            fd,
        };
        s.refill();
        Ok(s)
    }

    /// The rx queue this socket is bound to.
    pub fn queue(&self) -> u32 {
        self.queue
    }

    /// True when bound in zero-copy mode.
    pub fn is_zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// The socket's file descriptor (for the XSKMAP and for poll).
    pub fn fd(&self) -> RawFd {
        self.fd
    }

    /// Frames that could not be sent because no frame or ring slot was free.
    pub fn tx_dropped(&self) -> u64 {
        self.tx_dropped
    }

    /// Frames the kernel reported sent (completion ring).
    pub fn tx_completed(&self) -> u64 {
        self.tx_completed
    }

    /// Frames transmitted but not yet completed.
    pub fn tx_in_flight(&self) -> u32 {
        self.tx_in_flight
    }

    /// Gives free frames to the kernel through the fill ring, keeping half of
    /// the free frames for transmission.
    pub fn refill(&mut self) {
        let keep = (self.free.len() / 2).min(self.ring_size as usize);
        let want = (self.free.len() - keep) as u32;
        if want == 0 {
            return;
        }
        let n = {
            let mut writer = self.device.fill(want);
            let n = writer.insert(self.free.iter().rev().take(want as usize).copied());
            writer.commit();
            n
        };
        let len = self.free.len();
        self.free.truncate(len - n as usize);
        if self.device.needs_wakeup() {
            self.device.wake();
        }
    }

    /// Returns completed transmit frames to the free list.
    pub fn complete(&mut self) {
        let mut reader = self.device.complete(self.ring_size);
        while let Some(addr) = reader.read() {
            self.free.push(addr & !u64::from(self.frame_size - 1));
            self.tx_in_flight = self.tx_in_flight.saturating_sub(1);
            self.tx_completed += 1;
        }
        reader.release();
    }

    /// Receives up to `max` frames, calling `f(frame, tx)` for each; `tx`
    /// queues replies. Returns the number of frames received.
    pub fn receive<F>(&mut self, max: u32, mut f: F) -> u32
    where
        F: FnMut(&[u8], &mut TxBatch<'_>),
    {
        self.receive_with_meta(max, |_meta, frame, tx| f(frame, tx))
    }

    /// Like [`XskSocket::receive`], and also hands over the
    /// [`stack_ebpf::COOKIE_META_LEN`] bytes in front of each frame: the XDP
    /// metadata area (`bpf_xdp_adjust_meta`), which the kernel copies in
    /// front of the frame in the UMEM (copy mode; zero-copy keeps it in
    /// place). The bytes are cleared after `f` returns, so a stale magic
    /// never survives into the frame's next use. Empty when the frame has no
    /// room in front of it.
    pub fn receive_with_meta<F>(&mut self, max: u32, mut f: F) -> u32
    where
        F: FnMut(&[u8], &[u8], &mut TxBatch<'_>),
    {
        const META: usize = stack_ebpf::COOKIE_META_LEN;
        let mut descs = std::mem::take(&mut self.rx_descs);
        descs.clear();
        {
            let mut reader = self.rx.receive(max.min(BATCH as u32));
            while let Some(d) = reader.read() {
                descs.push(d);
            }
            reader.release();
        }
        let n = descs.len();
        let area = self.area.ptr;
        let area_len = self.area.len;
        let frame_size = self.frame_size;
        let mut batch = TxBatch { sock: self };
        for d in &descs {
            let start = d.addr as usize;
            let end = start.saturating_add(d.len as usize);
            if end <= area_len {
                // SAFETY: the kernel handed this frame to us through the rx
                // ring; it lies inside our mapping (checked above) and is not
                // in any kernel-owned ring until we put it back.
                let frame = unsafe {
                    std::slice::from_raw_parts(
                        area.as_ptr().add(start) as *const u8,
                        d.len as usize,
                    )
                };
                let chunk = start & !(frame_size as usize - 1);
                let meta_ptr = if start >= chunk + META {
                    // SAFETY: the META bytes in front of the frame are in
                    // the same chunk, which we own until it is recycled.
                    Some(unsafe { area.as_ptr().add(start - META) })
                } else {
                    None
                };
                let meta: &[u8] = match meta_ptr {
                    // SAFETY: see above.
                    Some(p) => unsafe { std::slice::from_raw_parts(p as *const u8, META) },
                    None => &[],
                };
                f(meta, frame, &mut batch);
                if let Some(p) = meta_ptr {
                    // SAFETY: see above; no reference to it is alive.
                    unsafe { std::ptr::write_bytes(p, 0, META) };
                }
            }
            batch.sock.free.push(d.addr & !u64::from(frame_size - 1));
        }
        batch.flush();
        batch.sock.rx_descs = descs;
        n as u32
    }

    /// Queues frames built by `f` outside of a receive batch.
    pub fn transmit_with<F>(&mut self, f: F)
    where
        F: FnOnce(&mut TxBatch<'_>),
    {
        let mut batch = TxBatch { sock: self };
        f(&mut batch);
        batch.flush();
    }

    /// Blocks until the socket is readable or `timeout_ms` passes.
    pub fn wait(&self, timeout_ms: i32) {
        self.wait_also(None, timeout_ms)
    }

    /// Like [`wait`](Self::wait), also waking when `extra` (an eventfd of
    /// the queue steering, say) becomes readable.
    pub fn wait_also(&self, extra: Option<RawFd>, timeout_ms: i32) {
        let pfd = |fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        let mut fds = [pfd(self.fd), pfd(extra.unwrap_or(-1))];
        let n = if extra.is_some() { 2 } else { 1 };
        // SAFETY: `n` valid pollfds in an array we own.
        unsafe { libc::poll(fds.as_mut_ptr(), n, timeout_ms) };
    }

    /// Kernel statistics of the socket.
    pub fn kernel_stats(&self) -> KernelStats {
        match self.device.statistics_v2() {
            Ok(s) => KernelStats {
                rx_dropped: s.rx_dropped,
                rx_ring_full: s.rx_ring_full,
                rx_fill_ring_empty: s.rx_fill_ring_empty_descs,
                rx_invalid_descs: s.rx_invalid_descs,
                tx_invalid_descs: s.tx_invalid_descs,
                tx_ring_empty: s.tx_ring_empty_descs,
            },
            Err(_) => KernelStats::default(),
        }
    }
}

/// Descriptors handled per ring operation.
const BATCH: usize = 64;

/// Frames queued for transmission; submitted to the tx ring in one batch.
pub struct TxBatch<'a> {
    sock: &'a mut XskSocket,
}

impl TxBatch<'_> {
    /// Builds one frame: `build` writes into a frame-sized buffer and returns
    /// the length to send (0 to cancel). Returns false when no frame is free
    /// (the frame is dropped and counted).
    pub fn send<B>(&mut self, build: B) -> bool
    where
        B: FnOnce(&mut [u8]) -> usize,
    {
        if self.sock.tx_pending.len() == BATCH {
            self.flush();
        }
        if self.sock.free.is_empty() {
            self.sock.complete();
        }
        let Some(addr) = self.sock.free.pop() else {
            self.sock.tx_dropped += 1;
            return false;
        };
        let fs = self.sock.frame_size as usize;
        // SAFETY: `addr` is a free frame (owned by us, not in any ring) inside
        // the mapping.
        let buf = unsafe {
            std::slice::from_raw_parts_mut(self.sock.area.ptr.as_ptr().add(addr as usize), fs)
        };
        let len = build(buf).min(fs);
        if len == 0 {
            self.sock.free.push(addr);
            return true;
        }
        self.sock.tx_pending.push(XdpDesc {
            addr,
            len: len as u32,
            options: 0,
        });
        true
    }

    fn flush(&mut self) {
        let sock = &mut *self.sock;
        let count = sock.tx_pending.len();
        if count == 0 {
            return;
        }
        let tx = &mut sock.tx;
        let zero_copy = sock.zero_copy;
        let mut kicked = false;
        let sent = submit_all(&sock.tx_pending, |descs| {
            let n = {
                let mut writer = tx.transmit(descs.len() as u32);
                let n = writer.insert(descs.iter().copied());
                writer.commit();
                n
            };
            if n == 0 && !kicked && !zero_copy {
                // Really full: in copy mode the kick below sends some
                // synchronously and makes room; try once more after it.
                kicked = true;
                tx.wake();
                return Reserved::Retry;
            }
            Reserved::Took(n as usize)
        });
        // Descriptors the ring had no room for go back to the free list.
        for d in sock.tx_pending.drain(..).skip(sent) {
            sock.free.push(d.addr);
            sock.tx_dropped += 1;
        }
        sock.tx_in_flight += sent as u32;
        if zero_copy {
            // Zero-copy: the driver sends on its own, kicked only when it
            // asks for it.
            if sock.tx.needs_wakeup() {
                sock.tx.wake();
            }
            return;
        }
        // Copy mode sends in the kick itself, at most a budget of
        // descriptors per call (`TX_BATCH_SIZE`, 32, in net/xdp/xsk.c), and
        // nothing else drains the ring: kick until it is empty or a kick
        // makes no progress (the completion ring or the device pushes
        // back), or frames would wait for the next batch to leave.
        let mut pending = sock.tx.pending();
        for _ in 0..=sock.ring_size / 32 {
            sock.tx.wake();
            let now = sock.tx.pending();
            if now == 0 || now >= pending {
                break;
            }
            pending = now;
        }
    }
}

/// What one tx ring reservation did (see [`submit_all`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reserved {
    /// Took this many descriptors; 0 means the ring is full.
    Took(usize),
    /// Took none, but made room (a kick); reserve again.
    Retry,
}

/// Puts `descs` on the tx ring through `reserve`, which takes a prefix of
/// what it is given; returns how many went in. xdpilone reserves against
/// its cached copy of the kernel's consumer index and refreshes that copy
/// only when it shows no free slot at all, so a reservation can come back
/// short while the ring has room (a cached view of 3 free slots gives 3,
/// with 2045 really free). Taking that as "ring full" dropped frames
/// (SYN-ACKs, data) under load with the ring nearly empty; reserving again
/// refreshes the view, and only an empty reservation means full.
fn submit_all(descs: &[XdpDesc], mut reserve: impl FnMut(&[XdpDesc]) -> Reserved) -> usize {
    let mut sent = 0;
    while sent < descs.len() {
        match reserve(&descs[sent..]) {
            Reserved::Took(0) => break,
            Reserved::Took(n) => sent += n.min(descs.len() - sent),
            Reserved::Retry => {}
        }
    }
    sent
}

impl Drop for TxBatch<'_> {
    fn drop(&mut self) {
        self.flush();
    }
}

impl crate::iface::FrameSink for TxBatch<'_> {
    fn send(&mut self, build: &mut dyn FnMut(&mut [u8]) -> usize) -> bool {
        TxBatch::send(self, build)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn descs(n: u64) -> Vec<XdpDesc> {
        (0..n)
            .map(|i| XdpDesc {
                addr: i * 4096,
                len: 60,
                options: 0,
            })
            .collect()
    }

    fn addrs(d: &[XdpDesc]) -> Vec<u64> {
        d.iter().map(|d| d.addr).collect()
    }

    /// A ring of `size` slots with `used` taken, reserving as xdpilone
    /// does: against a cached free count, refreshed only when it is 0.
    struct StaleRing {
        size: usize,
        used: usize,
        cached_free: usize,
        ring: Vec<XdpDesc>,
    }

    impl StaleRing {
        fn reserve(&mut self, d: &[XdpDesc]) -> Reserved {
            if self.cached_free == 0 {
                self.cached_free = self.size - self.used;
            }
            let n = self.cached_free.min(d.len());
            self.cached_free -= n;
            self.used += n;
            self.ring.extend_from_slice(&d[..n]);
            Reserved::Took(n)
        }
    }

    #[test]
    fn a_short_tx_reservation_from_a_stale_consumer_view_is_retried_not_dropped() {
        // The kernel has consumed all but 1 of 2048 slots, but the cached
        // view still shows 3 free: the first reservation takes 3 of 10.
        let mut ring = StaleRing {
            size: 2048,
            used: 1,
            cached_free: 3,
            ring: Vec::new(),
        };
        let d = descs(10);
        let sent = submit_all(&d, |x| ring.reserve(x));
        assert_eq!(sent, 10);
        assert_eq!(addrs(&ring.ring), addrs(&d));
    }

    #[test]
    fn a_really_full_tx_ring_takes_what_fits_after_one_kick() {
        let mut ring = StaleRing {
            size: 8,
            used: 6,
            cached_free: 0,
            ring: Vec::new(),
        };
        let mut kicks = 0;
        let d = descs(10);
        let sent = submit_all(&d, |x| match ring.reserve(x) {
            Reserved::Took(0) if kicks == 0 => {
                // The kick sends 4 synchronously (copy mode).
                kicks += 1;
                ring.used -= 4;
                Reserved::Retry
            }
            r => r,
        });
        assert_eq!((sent, kicks), (6, 1));
        assert_eq!(addrs(&ring.ring), addrs(&d[..6]));
    }
}
