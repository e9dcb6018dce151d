//! Arbitrary segments into an engine with a listener and an established
//! connection. The input is split into records: [delay ms, flags for the
//! checksum fix-up, len, bytes...]. Segments get a valid checksum half of
//! the time so they reach the state machine. The engine must never panic,
//! and whatever it emits must parse.
#![no_main]

use std::net::Ipv4Addr;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use xstack::tcp::{TcpConfig, TcpEngine};
use xstack::time::Instant;
use xstack::wire::tcp::{TcpPacket, TcpRepr};

const LOCAL: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const PEER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

fn drain(e: &mut TcpEngine, now: Instant, buf: &mut [u8]) {
    for _ in 0..1000 {
        let Some(t) = e.poll_transmit(now, buf) else {
            return;
        };
        TcpRepr::parse(t.src, t.dst, &buf[..t.len]).expect("engine emits valid segments");
    }
}

fuzz_target!(|data: &[u8]| {
    let mut e = TcpEngine::new(
        TcpConfig {
            tcp_rmem: 4096,
            tcp_wmem: 4096,
            ..TcpConfig::default()
        },
        [9; 16],
    );
    let mut now = Instant::from_millis(1);
    let mut buf = vec![0u8; 2048];
    e.listen(LOCAL, 80, 8).unwrap();
    let _ = e.connect(now, LOCAL, 40000, PEER, 80);
    drain(&mut e, now, &mut buf);
    let mut rest = data;
    while let [delay, mode, len, tail @ ..] = rest {
        let n = usize::from(*len).min(tail.len());
        let mut seg = tail[..n].to_vec();
        rest = &tail[n..];
        if mode & 1 == 1 && seg.len() >= 20 {
            // Make the checksum valid so the segment gets past the parser.
            TcpPacket::new_unchecked(&mut seg[..]).fill_checksum(PEER, LOCAL);
        }
        now = now + Duration::from_millis(u64::from(*delay) * 10);
        e.handle_timeout(now);
        e.on_segment(now, PEER, LOCAL, &seg);
        drain(&mut e, now, &mut buf);
        // Exercise the application side too.
        while let Some(ev) = e.poll_event() {
            if let xstack::tcp::Event::Incoming(l) = ev {
                while let Some(id) = e.accept(l) {
                    let _ = e.write(id, b"hello");
                    if mode & 2 == 2 {
                        let _ = e.shutdown(id);
                    }
                }
            }
        }
    }
});
