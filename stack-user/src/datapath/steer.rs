//! Steering between queue workers: with one engine per rx queue, every
//! TCP frame belongs to the worker that [`FourTuple::shard`] names, whatever
//! queue it arrived on.
//!
//! Why a software step: an AF_XDP socket only receives from its own queue
//! (the kernel's `xsk_rcv_check`), and the queue a flow arrives on is the
//! NIC's choice. On veth it is the sending socket's random `sk_txhash`,
//! which the kernel re-rolls after a retransmission timeout (RFC 9293 says
//! nothing of queues; Linux's `sk_rethink_txhash`), so a flow can move queue
//! mid-connection. A frame a worker does not own is copied into its owner's
//! mailbox (bounded; a full one drops and counts, like a full rx ring) and
//! the owner is woken through an eventfd if it sleeps. ARP goes to every
//! worker, since each keeps its own neighbour table; ICMP and anything
//! malformed stay where they arrived.

use std::{
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    sync::{
        atomic::{fence, AtomicBool, AtomicU64, AtomicUsize, Ordering},
        mpsc::{sync_channel, Receiver, SyncSender, TrySendError},
        Arc,
    },
};

use crate::tcp::{FourTuple, Sharding};
use crate::wire::{
    ethernet::{self, EthernetFrame},
    ipv4::{self, Ipv4Packet},
    ipv6::{self, Ipv6Packet},
    tcp::TcpPacket,
};

/// Frames one mailbox holds before senders drop.
pub const MAILBOX_FRAMES: usize = 8192;

/// Where a received frame goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    /// This worker handles it.
    Local,
    /// Worker `n` owns it.
    Worker(u32),
    /// Every worker needs it (ARP: each has its own neighbour table).
    All,
}

/// The owner of `frame` among `count` workers: TCP/IPv4 by the 4-tuple
/// seen from the stack (destination = local); ARP to all; the rest local.
/// Reads only fixed header fields through the wire views (no checksum),
/// bounds-checked; anything short or odd is `Local`, where the engine
/// counts it as malformed.
#[inline]
pub fn destination(frame: &[u8], me: u32, count: u32) -> Destination {
    destination_by(frame, me, count, &Sharding::Mix(count))
}

/// [`destination`] with the owner of a TCP 4-tuple given by `sharding`
/// (the NIC's RSS when the engines pick their ports by it): an owner past
/// the `count` workers is nobody's, and the frame stays `Local`, where
/// the engine answers it as a stray (RST).
#[inline]
pub fn destination_by(frame: &[u8], me: u32, count: u32, sharding: &Sharding) -> Destination {
    if count <= 1 {
        return Destination::Local;
    }
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return Destination::Local;
    };
    match eth.ethertype() {
        ethernet::ETHERTYPE_ARP => return Destination::All,
        ethernet::ETHERTYPE_IPV4 => {}
        ethernet::ETHERTYPE_IPV6 => return destination6(eth.payload(), me, count, sharding),
        _ => return Destination::Local,
    }
    let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
        return Destination::Local;
    };
    // A fragment after the first has no TCP header: leave it local.
    if ip.protocol() != ipv4::PROTO_TCP || ip.frag_offset() != 0 {
        return Destination::Local;
    }
    // The ports are all steering needs: a segment cut after them is still
    // steered to its owner, which counts it as malformed.
    let Some(ports) = ip.payload().get(..4) else {
        return Destination::Local;
    };
    let tcp = TcpPacket::new_unchecked(ports);
    let tuple = FourTuple {
        local_addr: ip.dst_addr().into(),
        local_port: tcp.dst_port(),
        remote_addr: ip.src_addr().into(),
        remote_port: tcp.src_port(),
    };
    owner(&tuple, me, count, sharding)
}

/// Where the frame of `tuple` goes.
fn owner(tuple: &FourTuple, me: u32, count: u32, sharding: &Sharding) -> Destination {
    match sharding.owner(tuple) {
        n if n == me || n >= count => Destination::Local,
        n => Destination::Worker(n),
    }
}

/// [`destination`] of an IPv6 packet: TCP right after the fixed header by
/// its 4-tuple; ICMPv6 to every worker (neighbour discovery: each worker
/// has its own neighbour table, as for ARP); the rest (extension headers
/// included) local, where the engine walks or counts it.
fn destination6(packet: &[u8], me: u32, count: u32, sharding: &Sharding) -> Destination {
    let Ok(ip) = Ipv6Packet::new_checked(packet) else {
        return Destination::Local;
    };
    match ip.next_header() {
        ipv6::NH_TCP => {}
        ipv6::NH_ICMPV6 => return Destination::All,
        _ => return Destination::Local,
    }
    let Some(ports) = packet.get(ipv6::HEADER_LEN..ipv6::HEADER_LEN + 4) else {
        return Destination::Local;
    };
    let tcp = TcpPacket::new_unchecked(ports);
    let tuple = FourTuple {
        local_addr: ip.dst_addr().into(),
        local_port: tcp.dst_port(),
        remote_addr: ip.src_addr().into(),
        remote_port: tcp.src_port(),
    };
    owner(&tuple, me, count, sharding)
}

/// A frame handed to another worker, with the XDP metadata it came with.
pub struct Handoff {
    meta: [u8; stack_ebpf::COOKIE_META_LEN],
    meta_len: u8,
    /// An ARP copy for a worker that did not receive it: learn the
    /// sender, answer nothing (the receiving worker answered).
    pub learn_only: bool,
    /// The frame.
    pub frame: Vec<u8>,
}

impl Handoff {
    /// A copy of `frame` and its XDP `meta` (at most 16 bytes kept).
    pub fn new(meta: &[u8], frame: &[u8], learn_only: bool) -> Handoff {
        let mut m = [0u8; stack_ebpf::COOKIE_META_LEN];
        let meta_len = meta.len().min(m.len());
        m[..meta_len].copy_from_slice(&meta[..meta_len]);
        Handoff {
            meta: m,
            meta_len: meta_len as u8,
            learn_only,
            frame: frame.to_vec(),
        }
    }

    /// The XDP metadata (empty when the frame had none).
    pub fn meta(&self) -> &[u8] {
        &self.meta[..usize::from(self.meta_len)]
    }
}

/// Steering counters of one worker.
#[derive(Debug, Default)]
pub struct SteerStats {
    /// Frames handed to another worker.
    pub out: AtomicU64,
    /// Frames received from other workers.
    pub received: AtomicU64,
    /// Frames dropped because the owner's mailbox was full.
    pub dropped: AtomicU64,
    /// ARP and ICMPv6 (neighbour discovery) frames copied to the other
    /// workers (not in `out`/`received`).
    pub arp_copies: AtomicU64,
}

/// A copy of [`SteerStats`] for the stats document.
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct SteerCounts {
    /// Frames handed to another worker.
    pub handed_out: u64,
    /// Frames received from other workers.
    pub handed_in: u64,
    /// Frames dropped because the owner's mailbox was full.
    pub handoff_dropped: u64,
    /// ARP and ICMPv6 frames copied to the other workers (each learns the
    /// sender).
    pub arp_copies: u64,
}

impl SteerStats {
    /// The counters now.
    pub fn snapshot(&self) -> SteerCounts {
        SteerCounts {
            handed_out: self.out.load(Ordering::Relaxed),
            handed_in: self.received.load(Ordering::Relaxed),
            handoff_dropped: self.dropped.load(Ordering::Relaxed),
            arp_copies: self.arp_copies.load(Ordering::Relaxed),
        }
    }
}

/// What a worker shares with those that hand it frames.
#[derive(Clone)]
struct Door {
    tx: SyncSender<Handoff>,
    /// Frames sent and not yet taken (the mailbox cannot be peeked).
    queued: Arc<AtomicUsize>,
    wake: Arc<OwnedFd>,
    sleeping: Arc<AtomicBool>,
}

/// One worker's end: its mailbox and the doors of the others.
pub struct Steering {
    index: u32,
    count: u32,
    /// Who owns a TCP 4-tuple: [`Sharding::Mix`] unless the engines pick
    /// their ports by the NIC's RSS ([`Steering::set_sharding`]).
    sharding: Sharding,
    mailbox: Receiver<Handoff>,
    own: Door,
    doors: Vec<Door>,
    /// Counters.
    pub stats: Arc<SteerStats>,
}

/// The steering ends of `count` workers, index `i` for worker `i`.
pub fn mesh(count: u32) -> std::io::Result<Vec<Steering>> {
    let count = count.max(1);
    let mut boxes = Vec::new();
    for _ in 0..count {
        let (tx, rx) = sync_channel(MAILBOX_FRAMES);
        // SAFETY: eventfd returns a new descriptor or -1.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor that nothing else owns.
        let wake = Arc::new(unsafe { OwnedFd::from_raw_fd(fd) });
        let door = Door {
            tx,
            queued: Arc::new(AtomicUsize::new(0)),
            wake,
            sleeping: Arc::new(AtomicBool::new(false)),
        };
        boxes.push((door, rx));
    }
    let doors: Vec<Door> = boxes.iter().map(|(d, _)| d.clone()).collect();
    Ok(boxes
        .into_iter()
        .enumerate()
        .map(|(index, (own, mailbox))| Steering {
            index: index as u32,
            count,
            sharding: Sharding::Mix(count),
            mailbox,
            own,
            doors: doors.clone(),
            stats: Arc::new(SteerStats::default()),
        })
        .collect())
}

impl Steering {
    /// This worker's index.
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Number of workers.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Where `frame` goes.
    pub fn destination(&self, frame: &[u8]) -> Destination {
        destination_by(frame, self.index, self.count, &self.sharding)
    }

    /// Steers TCP by `sharding`, which must be what every engine of the
    /// mesh picks its ports by (`TcpEngine::set_sharding`).
    pub fn set_sharding(&mut self, sharding: Sharding) {
        self.sharding = sharding;
    }

    /// Hands `frame` (with its XDP `meta`) to worker `to`; a full mailbox
    /// drops it and counts.
    pub fn send(&self, to: u32, meta: &[u8], frame: &[u8], learn_only: bool) {
        let Some(door) = self.doors.get(to as usize) else {
            return;
        };
        match door.tx.try_send(Handoff::new(meta, frame, learn_only)) {
            Ok(()) => {
                // So that, per worker, frames received from the socket =
                // handled here - handed in + handed out.
                if learn_only {
                    self.stats.arp_copies.fetch_add(1, Ordering::Relaxed);
                } else {
                    self.stats.out.fetch_add(1, Ordering::Relaxed);
                }
                door.queued.fetch_add(1, Ordering::SeqCst);
                // Pairs with the fence in `prepare_sleep`: either the owner
                // sees the frame queued before it sleeps, or we see it
                // sleeping and wake it.
                fence(Ordering::SeqCst);
                if door.sleeping.load(Ordering::Relaxed) {
                    let one: u64 = 1;
                    // SAFETY: writes 8 bytes from a u64 we own to an eventfd.
                    unsafe {
                        libc::write(
                            door.wake.as_raw_fd(),
                            (&one as *const u64).cast(),
                            std::mem::size_of::<u64>(),
                        )
                    };
                }
            }
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Routes a received frame: returns true when this worker should handle
    /// it itself (after any copies went to the others).
    pub fn route(&self, meta: &[u8], frame: &[u8]) -> bool {
        match self.destination(frame) {
            Destination::Local => true,
            Destination::Worker(n) => {
                self.send(n, meta, frame, false);
                false
            }
            Destination::All => {
                for n in (0..self.count).filter(|&n| n != self.index) {
                    self.send(n, meta, frame, true);
                }
                true
            }
        }
    }

    /// Takes up to `max` frames other workers handed over.
    pub fn receive(&self, max: usize, mut f: impl FnMut(Handoff)) -> usize {
        // Alone, or nothing queued: no channel operation (this runs on
        // every round of a spinning worker).
        if self.count <= 1 || self.own.queued.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        let (mut n, mut frames) = (0, 0);
        while n < max {
            match self.mailbox.try_recv() {
                Ok(h) => {
                    n += 1;
                    frames += u64::from(!h.learn_only);
                    f(h);
                }
                Err(_) => break,
            }
        }
        if n > 0 {
            self.own.queued.fetch_sub(n, Ordering::SeqCst);
            self.stats.received.fetch_add(frames, Ordering::Relaxed);
        }
        n
    }

    /// The descriptor to poll, with the socket's, while sleeping.
    pub fn wake_fd(&self) -> RawFd {
        self.own.wake.as_raw_fd()
    }

    /// Before sleeping: announce it, then look once more. Returns false
    /// (do not sleep) when frames are waiting; after a true, call
    /// [`woke`](Self::woke) once the sleep ends.
    pub fn prepare_sleep(&self) -> bool {
        self.own.sleeping.store(true, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if self.own.queued.load(Ordering::SeqCst) > 0 {
            self.own.sleeping.store(false, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// After a sleep: no longer sleeping; clears the eventfd.
    pub fn woke(&self) {
        self.own.sleeping.store(false, Ordering::Relaxed);
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a u64 we own from a non-blocking eventfd.
        unsafe {
            libc::read(
                self.own.wake.as_raw_fd(),
                (&mut v as *mut u64).cast(),
                std::mem::size_of::<u64>(),
            )
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{
        build::{Endpoints, TcpSegment},
        ethernet::Mac,
    };

    /// Ethernet + IPv4 + 20-byte TCP header from `src:sport` to `dst:dport`.
    fn tcp_frame(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
        let e = Endpoints {
            src_mac: Mac::default(),
            dst_mac: Mac::default(),
            src_ip: src.into(),
            dst_ip: dst.into(),
        };
        e.tcp(&TcpSegment {
            src_port: sport,
            dst_port: dport,
            ..TcpSegment::default()
        })
    }

    const PEER: [u8; 4] = [198, 18, 0, 1];
    const STACK: [u8; 4] = [198, 18, 0, 2];

    #[test]
    fn tcp_frames_go_to_the_one_worker_that_owns_their_tuple() {
        let mut per_worker = [0u32; 4];
        for sport in 30000..32000u16 {
            let f = tcp_frame(PEER, sport, STACK, 80);
            let owner = FourTuple {
                local_addr: STACK.into(),
                local_port: 80,
                remote_addr: PEER.into(),
                remote_port: sport,
            }
            .shard(4);
            let locals: Vec<u32> = (0..4)
                .filter(|&me| destination(&f, me, 4) == Destination::Local)
                .collect();
            assert_eq!(locals, vec![owner]);
            for me in (0..4).filter(|&me| me != owner) {
                assert_eq!(destination(&f, me, 4), Destination::Worker(owner));
            }
            per_worker[owner as usize] += 1;
        }
        // Kernel clients use even ports first: the spread must not care.
        for n in per_worker {
            assert!((400..=600).contains(&n), "{per_worker:?}");
        }
    }

    #[test]
    fn ipv6_tcp_goes_to_its_tuples_owner_and_icmpv6_to_every_worker() {
        use crate::wire::build::Endpoints6;
        use std::net::Ipv6Addr;
        let peer = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 1);
        let stack = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2);
        let e = Endpoints6 {
            src_mac: Mac::default(),
            dst_mac: Mac::default(),
            src_ip: peer,
            dst_ip: stack,
        };
        let mut owners = [0u32; 4];
        for sport in 30000..30400u16 {
            let f = e.tcp(&TcpSegment {
                src_port: sport,
                dst_port: 80,
                ..TcpSegment::default()
            });
            let owner = FourTuple {
                local_addr: stack.into(),
                local_port: 80,
                remote_addr: peer.into(),
                remote_port: sport,
            }
            .shard(4);
            owners[owner as usize] += 1;
            for me in 0..4 {
                let want = if me == owner {
                    Destination::Local
                } else {
                    Destination::Worker(owner)
                };
                assert_eq!(destination(&f, me, 4), want);
            }
        }
        assert!(owners.iter().all(|&n| n > 50), "{owners:?}");
        let icmp = e.ipv6(ipv6::NH_ICMPV6, &[0u8; 8]);
        assert_eq!(destination(&icmp, 1, 2), Destination::All);
        let udp = e.ipv6(17, &[0u8; 8]);
        assert_eq!(destination(&udp, 1, 2), Destination::Local);
    }

    #[test]
    fn under_rss_sharding_a_reply_belongs_to_the_queue_the_nic_hashes_it_to() {
        use crate::wire::rss::{RssTable, VERIFICATION_KEY};
        // Queues 0..3 in turn, and entries naming a queue 5 nobody serves.
        let indir: Vec<u32> = (0..128)
            .map(|i| if i % 16 == 15 { 5 } else { i % 3 })
            .collect();
        let table = std::sync::Arc::new(RssTable::new(&VERIFICATION_KEY, indir).unwrap());
        let rss = Sharding::Rss(table.clone());
        let mut per_queue = [0u32; 6];
        // Replies from the server (PEER:80) to the client's ports.
        for dport in 40000..41000u16 {
            let f = tcp_frame(PEER, 80, STACK, dport);
            let q = table.queue(PEER.into(), STACK.into(), 80, dport);
            per_queue[q as usize] += 1;
            for me in 0..3 {
                let want = if q == me || q >= 3 {
                    Destination::Local
                } else {
                    Destination::Worker(q)
                };
                assert_eq!(destination_by(&f, me, 3, &rss), want, "port {dport}");
            }
        }
        assert!(per_queue[..3].iter().all(|&n| n > 200), "{per_queue:?}");
        assert!(per_queue[5] > 20, "{per_queue:?}");
    }

    #[test]
    fn arp_goes_to_every_worker_and_odd_frames_stay_local() {
        let mut arp = vec![0u8; 42];
        arp[12..14].copy_from_slice(&ethernet::ETHERTYPE_ARP.to_be_bytes());
        assert_eq!(destination(&arp, 1, 2), Destination::All);
        // One worker: everything is local.
        assert_eq!(destination(&arp, 0, 1), Destination::Local);
        let tcp = tcp_frame(PEER, 1234, STACK, 80);
        let mut icmp = tcp.clone();
        icmp[23] = 1;
        let mut fragment = tcp.clone();
        fragment[20] = 0x00;
        fragment[21] = 0x10;
        let mut bad_ihl = tcp.clone();
        bad_ihl[14] = 0x4f;
        let truncated = tcp[..30].to_vec();
        for f in [icmp, fragment, bad_ihl, truncated, vec![], vec![0xff; 13]] {
            for me in 0..3 {
                assert_eq!(destination(&f, me, 3), Destination::Local);
            }
        }
    }

    #[test]
    fn a_handed_off_frame_keeps_its_metadata_and_wakes_a_sleeping_owner() {
        let ends = mesh(2).unwrap();
        assert!(ends[1].prepare_sleep());
        let frame = tcp_frame(PEER, 1, STACK, 80);
        let meta = [7u8; stack_ebpf::COOKIE_META_LEN];
        ends[0].send(1, &meta, &frame, false);
        let mut pfd = libc::pollfd {
            fd: ends[1].wake_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd; 0 ms timeout.
        assert_eq!(unsafe { libc::poll(&mut pfd, 1, 0) }, 1, "owner not woken");
        ends[1].woke();
        // SAFETY: as above.
        assert_eq!(
            unsafe { libc::poll(&mut pfd, 1, 0) },
            0,
            "eventfd not cleared"
        );
        let mut got = Vec::new();
        assert_eq!(ends[1].receive(16, |h| got.push(h)), 1);
        assert_eq!(got[0].frame, frame);
        assert_eq!(got[0].meta(), &meta);
        assert!(!got[0].learn_only);
        assert_eq!(ends[0].stats.out.load(Ordering::Relaxed), 1);
        assert_eq!(ends[1].stats.received.load(Ordering::Relaxed), 1);
        // A frame waiting in the box keeps its owner awake.
        ends[0].send(1, &[], &frame, true);
        assert!(!ends[1].prepare_sleep());
        assert_eq!(ends[1].receive(16, |h| assert!(h.meta().is_empty())), 1);
        assert!(ends[1].prepare_sleep());
        // ARP copies are counted apart from handed-over frames.
        assert_eq!(ends[0].stats.snapshot().arp_copies, 1);
        assert_eq!(ends[0].stats.snapshot().handed_out, 1);
        assert_eq!(ends[1].stats.snapshot().handed_in, 1);
    }

    #[test]
    fn a_full_mailbox_drops_and_counts() {
        let ends = mesh(2).unwrap();
        let frame = tcp_frame(PEER, 1, STACK, 80);
        for _ in 0..MAILBOX_FRAMES + 5 {
            ends[0].send(1, &[], &frame, false);
        }
        assert_eq!(ends[0].stats.dropped.load(Ordering::Relaxed), 5);
        assert_eq!(ends[1].receive(usize::MAX, |_| {}), MAILBOX_FRAMES);
    }
}
