//! In-memory benchmark of the sans-IO TCP engine: two engines on one core,
//! joined by a lossless zero-delay "wire" (every segment is emitted with
//! its checksum and parsed with checksum verification on the other side).
//!
//! Reports
//! - CRR: connect + one 64-byte request/response + close, per second;
//! - bulk: one connection, bytes per second one way.
//!
//! Run: `xstack bench tcp-mem [--seconds S]` (a release build).

use std::net::Ipv4Addr;
use std::time::{Duration, Instant as WallClock};

use crate::tcp::{ConnId, Event, TcpConfig, TcpEngine, TcpError};
use crate::time::Instant;

const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const PORT: u16 = 80;

/// Moves every pending segment across until both sides are quiet.
/// Returns the number of segments moved.
fn pump(a: &mut TcpEngine, b: &mut TcpEngine, now: Instant, buf: &mut [u8]) -> u64 {
    let mut moved = 0;
    loop {
        let mut any = false;
        while let Some(t) = a.poll_transmit(now, buf) {
            b.on_segment(now, t.src, t.dst, &buf[..t.len]);
            moved += 1;
            any = true;
        }
        while let Some(t) = b.poll_transmit(now, buf) {
            a.on_segment(now, t.src, t.dst, &buf[..t.len]);
            moved += 1;
            any = true;
        }
        if !any {
            return moved;
        }
    }
}

fn crr(secs: f64) -> (u64, u64, f64) {
    // A short MSL so TIME_WAIT (virtual time) does not exhaust ports.
    let cfg = TcpConfig {
        msl: Duration::from_millis(5),
        ..TcpConfig::default()
    };
    let mut c = TcpEngine::new(cfg.clone(), [1; 16]);
    let mut s = TcpEngine::new(cfg, [2; 16]);
    let l = s.listen(SERVER, PORT, 4096).unwrap();
    let mut buf = vec![0u8; 2048];
    let mut now = Instant::from_millis(1);
    let req = [b'q'; 64];
    let resp = [b'r'; 64];
    let mut rbuf = [0u8; 256];
    let (mut done, mut segments) = (0u64, 0u64);
    let start = WallClock::now();
    const BATCH: usize = 64;
    while start.elapsed().as_secs_f64() < secs {
        let mut open: Vec<ConnId> = (0..BATCH)
            .map(|_| c.connect(now, CLIENT, 0, SERVER, PORT).unwrap())
            .collect();
        let mut left = BATCH;
        while left > 0 {
            segments += pump(&mut c, &mut s, now, &mut buf);
            while let Some(ev) = s.poll_event() {
                match ev {
                    Event::Incoming(_) => {
                        while let Some(id) = s.accept(l) {
                            s.set_nodelay(id, true).unwrap();
                        }
                    }
                    Event::Readable(id) => match s.read(id, &mut rbuf) {
                        Ok(64) => {
                            s.write(id, &resp).unwrap();
                            s.close(now, id).unwrap();
                        }
                        Ok(0) | Err(TcpError::WouldBlock) => {}
                        other => panic!("server read {other:?}"),
                    },
                    _ => {}
                }
            }
            while let Some(ev) = c.poll_event() {
                match ev {
                    Event::Connected(id) => {
                        c.set_nodelay(id, true).unwrap();
                        c.write(id, &req).unwrap();
                    }
                    Event::Readable(id) => match c.read(id, &mut rbuf) {
                        Ok(64) => {
                            c.close(now, id).unwrap();
                            open.retain(|&x| x != id);
                            left -= 1;
                            done += 1;
                        }
                        Ok(_) | Err(TcpError::WouldBlock) => {}
                        other => panic!("client read {other:?}"),
                    },
                    _ => {}
                }
            }
            segments += pump(&mut c, &mut s, now, &mut buf);
            now = now + Duration::from_micros(100);
            c.handle_timeout(now);
            s.handle_timeout(now);
        }
        // Let TIME_WAIT expire (virtual time).
        now = now + Duration::from_millis(20);
        c.handle_timeout(now);
        s.handle_timeout(now);
    }
    let el = start.elapsed().as_secs_f64();
    (done, segments, el)
}

fn bulk(secs: f64) -> (u64, u64, f64) {
    let cfg = TcpConfig::default();
    let mut c = TcpEngine::new(cfg.clone(), [3; 16]);
    let mut s = TcpEngine::new(cfg, [4; 16]);
    let l = s.listen(SERVER, PORT, 16).unwrap();
    let mut buf = vec![0u8; 2048];
    let mut now = Instant::from_millis(1);
    let id = c.connect(now, CLIENT, 0, SERVER, PORT).unwrap();
    pump(&mut c, &mut s, now, &mut buf);
    let sid = s.accept(l).expect("accepted");
    let chunk = vec![0x5au8; 64 * 1024];
    let mut rbuf = vec![0u8; 64 * 1024];
    let (mut bytes, mut segments) = (0u64, 0u64);
    let start = WallClock::now();
    while start.elapsed().as_secs_f64() < secs {
        for _ in 0..64 {
            let _ = c.write(id, &chunk);
            segments += pump(&mut c, &mut s, now, &mut buf);
            loop {
                match s.read(sid, &mut rbuf) {
                    Ok(n) if n > 0 => bytes += n as u64,
                    _ => break,
                }
            }
            segments += pump(&mut c, &mut s, now, &mut buf);
            now = now + Duration::from_micros(10);
            c.handle_timeout(now);
            s.handle_timeout(now);
        }
    }
    let el = start.elapsed().as_secs_f64();
    assert_eq!(c.stats().retransmits, 0);
    (bytes, segments, el)
}

/// Runs both measurements for `secs` seconds each and prints them.
pub fn run(secs: f64) {
    let (n, segs, el) = crr(secs);
    println!(
        "CRR (connect + 64 B request/response + close): {n} connections in {el:.2} s = {:.0} conn/s ({:.0} segments/s)",
        n as f64 / el,
        segs as f64 / el
    );
    let (bytes, segs, el) = bulk(secs);
    println!(
        "bulk (one connection, MSS 1448 with timestamps): {:.1} MB in {el:.2} s = {:.2} Gbit/s ({:.0} segments/s)",
        bytes as f64 / 1e6,
        bytes as f64 * 8.0 / el / 1e9,
        segs as f64 / el
    );
}
