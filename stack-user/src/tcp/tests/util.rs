//! Helpers for packet-level tests: one engine under test, segments crafted
//! as the peer would send them, virtual time.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use crate::tcp::{ConnId, Event, TcpConfig, TcpEngine};
use crate::time::Instant;
use crate::wire::tcp::SeqNumber;
use crate::wire::tcp::{TcpOptions, TcpRepr, Timestamps, ACK, FIN, PSH, RST, SYN};

pub const LOCAL: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const REMOTE: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// The IPv6 addresses of [`Sut::new6`] (RFC 5180 benchmarking prefix).
pub const LOCAL6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 1);
pub const REMOTE6: Ipv6Addr = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, 2);
pub const LPORT: u16 = 80;
pub const RPORT: u16 = 49152;
/// The peer's ISN in every test.
pub const PEER_ISS: SeqNumber = SeqNumber(0xffff_ff00);

/// A segment the engine sent, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seg {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: SeqNumber,
    pub ack: Option<SeqNumber>,
    pub flags: u8,
    pub window: u16,
    pub options: TcpOptions,
    pub payload: Vec<u8>,
}

impl Seg {
    pub fn has(&self, f: u8) -> bool {
        self.flags & f != 0
    }
    /// Control flags without PSH.
    pub fn ctl(&self) -> u8 {
        self.flags & (SYN | FIN | RST)
    }
}

/// Template of a segment from the peer (struct-update base).
pub fn seg() -> TcpRepr<'static> {
    TcpRepr {
        src_port: RPORT,
        dst_port: LPORT,
        seq: PEER_ISS,
        ack: None,
        flags: 0,
        window: 65_535,
        urgent: 0,
        options: TcpOptions::default(),
        payload: &[],
    }
}

/// The peer's SYN with an MSS option only.
pub fn peer_syn() -> TcpRepr<'static> {
    TcpRepr {
        flags: SYN,
        options: TcpOptions {
            mss: Some(1460),
            ..TcpOptions::default()
        },
        ..seg()
    }
}

/// The engine under test.
pub struct Sut {
    pub e: TcpEngine,
    pub now: Instant,
    buf: Vec<u8>,
    /// Our address (LOCAL, or LOCAL6 for [`Sut::new6`]).
    pub local: IpAddr,
    /// The peer's address.
    pub remote: IpAddr,
}

/// A connection set up by a helper: our next sequence number and the
/// peer's.
#[derive(Clone, Copy, Debug)]
pub struct Conn {
    pub id: ConnId,
    /// Our next sequence number (SND.NXT).
    pub ours: SeqNumber,
    /// The peer's next sequence number (our RCV.NXT).
    pub theirs: SeqNumber,
}

impl Sut {
    pub fn new(cfg: TcpConfig) -> Sut {
        Sut {
            e: TcpEngine::new(cfg, [7; 16]),
            now: Instant::from_millis(1_000),
            buf: vec![0; 2048],
            local: LOCAL.into(),
            remote: REMOTE.into(),
        }
    }

    /// The engine under test with the peer over IPv6 (LOCAL6, REMOTE6).
    pub fn new6(cfg: TcpConfig) -> Sut {
        Sut {
            local: LOCAL6.into(),
            remote: REMOTE6.into(),
            ..Sut::new(cfg)
        }
    }

    /// Feeds a segment from the peer to us.
    pub fn send(&mut self, r: TcpRepr) {
        let mut bytes = vec![0u8; r.len()];
        r.emit(self.remote, self.local, &mut bytes).unwrap();
        self.e.on_segment(self.now, self.remote, self.local, &bytes);
    }

    /// The next segment the engine sends, if any.
    pub fn try_recv(&mut self) -> Option<Seg> {
        let t = self.e.poll_transmit(self.now, &mut self.buf)?;
        assert_eq!((t.src, t.dst), (self.local, self.remote));
        let r =
            TcpRepr::parse(t.src, t.dst, &self.buf[..t.len]).expect("engine emits valid segments");
        Some(Seg {
            src_port: r.src_port,
            dst_port: r.dst_port,
            seq: r.seq,
            ack: r.ack,
            flags: r.flags,
            window: r.window,
            options: r.options,
            payload: r.payload.to_vec(),
        })
    }

    /// The next segment; panics if there is none.
    #[track_caller]
    pub fn recv(&mut self) -> Seg {
        self.try_recv().expect("expected a segment")
    }

    /// Every segment ready now.
    pub fn recv_all(&mut self) -> Vec<Seg> {
        std::iter::from_fn(|| self.try_recv()).collect()
    }

    #[track_caller]
    pub fn assert_silent(&mut self) {
        if let Some(s) = self.try_recv() {
            panic!("unexpected segment {s:?}");
        }
    }

    /// Moves time forward and runs due timers.
    pub fn advance(&mut self, d: Duration) {
        self.now = self.now + d;
        self.e.handle_timeout(self.now);
    }

    /// Moves time to the next timer deadline (at least `now`) and runs it.
    /// `poll_timeout` may be early for distant timers (a timing-wheel lower
    /// bound), so this steps until a timer actually came due.
    pub fn advance_to_timer(&mut self) -> Duration {
        let start = self.now;
        let before = self.e.stats().timer_expiries;
        while self.e.stats().timer_expiries == before {
            let t = self.e.poll_timeout().expect("a timer is armed");
            self.now = self.now.max(t);
            self.e.handle_timeout(self.now);
        }
        self.now - start
    }

    pub fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.e.poll_event()).collect()
    }

    /// Listen on LOCAL:LPORT and complete a passive open with `syn` from
    /// the peer; returns the accepted connection.
    pub fn accept_with(&mut self, syn: TcpRepr) -> Conn {
        let l = self.e.listen(self.local, LPORT, 16).unwrap();
        self.send(syn);
        let sa = self.recv();
        assert_eq!(sa.ctl(), SYN);
        assert_eq!(sa.ack, Some(PEER_ISS + 1u32));
        let ours = sa.seq + 1u32;
        let theirs = PEER_ISS + 1u32;
        let tsval = syn.options.timestamps.map_or(0, |t| t.tsval + 1);
        let ts = sa.options.timestamps.map(|t| Timestamps {
            tsval,
            tsecr: t.tsval,
        });
        self.send(TcpRepr {
            seq: theirs,
            ack: Some(ours),
            flags: ACK,
            options: TcpOptions {
                timestamps: ts,
                ..TcpOptions::default()
            },
            ..seg()
        });
        let id = self
            .e
            .accept(l)
            .unwrap_or_else(|| panic!("not accepted: {:?}", self.e.stats()));
        assert_eq!(self.e.state(id).unwrap(), crate::tcp::State::Established);
        self.events();
        Conn { id, ours, theirs }
    }

    /// A passive open with the default peer SYN (MSS 1460, no other
    /// options).
    pub fn accept(&mut self) -> Conn {
        self.accept_with(peer_syn())
    }

    /// An active open completed by a SYN,ACK from the peer (no options but
    /// MSS).
    pub fn connect(&mut self) -> Conn {
        let id = self
            .e
            .connect(self.now, self.local, LPORT, self.remote, RPORT)
            .unwrap();
        let syn = self.recv();
        assert_eq!(syn.ctl(), SYN);
        self.send(TcpRepr {
            seq: PEER_ISS,
            ack: Some(syn.seq + 1u32),
            ..peer_syn()
        });
        let ack = self.recv();
        assert_eq!(ack.ctl(), 0);
        assert_eq!(ack.ack, Some(PEER_ISS + 1u32));
        self.events();
        Conn {
            id,
            ours: syn.seq + 1u32,
            theirs: PEER_ISS + 1u32,
        }
    }

    /// The peer sends data at its next sequence number, acking `ack`.
    pub fn send_data(&mut self, c: &mut Conn, data: &'static [u8]) {
        self.send(TcpRepr {
            seq: c.theirs,
            ack: Some(c.ours),
            flags: PSH,
            payload: data,
            ..seg()
        });
        c.theirs += data.len() as u32;
    }

    /// The peer acknowledges everything we sent (per `c.ours`).
    pub fn send_ack(&mut self, c: &Conn) {
        self.send(TcpRepr {
            seq: c.theirs,
            ack: Some(c.ours),
            ..seg()
        });
    }

    /// The peer sends FIN.
    pub fn send_fin(&mut self, c: &mut Conn) {
        self.send(TcpRepr {
            seq: c.theirs,
            ack: Some(c.ours),
            flags: FIN,
            ..seg()
        });
        c.theirs += 1;
    }

    pub fn read_all(&mut self, id: ConnId) -> Vec<u8> {
        let mut out = vec![];
        let mut b = [0u8; 4096];
        while let Ok(n) = self.e.read(id, &mut b) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&b[..n]);
        }
        out
    }
}

/// The default configuration.
pub fn cfg() -> TcpConfig {
    TcpConfig::default()
}

/// A full-sized (1460-byte) segment of data.
pub static FULL: [u8; 1460] = [b'x'; 1460];

/// The 4-tuple of the connection under test, from the engine's side.
pub fn tuple() -> crate::tcp::FourTuple {
    crate::tcp::FourTuple {
        local_addr: LOCAL.into(),
        local_port: LPORT,
        remote_addr: REMOTE.into(),
        remote_port: RPORT,
    }
}
