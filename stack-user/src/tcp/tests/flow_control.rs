//! Flow control between the engine and an application that paces itself
//! on the send buffer (an echo server): every wake-up it needs must come.

use std::time::Duration;

use super::harness::{App, Impairment, Pair, Rng, A, B};
use crate::tcp::{ConnId, Event, TcpConfig, TcpEngine, TcpError};
use crate::time::Instant;

/// An echo server as `apps::service` runs it: it reads no more than fits
/// back into its send buffer, and runs only when the engine reports an
/// event for the connection (never polled otherwise).
struct EventDrivenEcho {
    id: Option<ConnId>,
    echoed: usize,
    closed: bool,
}

impl EventDrivenEcho {
    fn on_event(&mut self, e: &mut TcpEngine) {
        let Some(id) = self.id else { return };
        if self.closed {
            return;
        }
        let mut buf = [0u8; 4096];
        loop {
            let room = e.send_space(id).unwrap().min(buf.len());
            if room == 0 {
                return; // Output full: wait for Writable.
            }
            match e.read(id, &mut buf[..room]) {
                Ok(0) => {
                    e.shutdown(id).unwrap();
                    self.closed = true;
                    return;
                }
                Ok(n) => {
                    let w = e.write(id, &buf[..n]).unwrap();
                    assert_eq!(w, n, "send_space promised room for {n} bytes");
                    self.echoed += n;
                }
                Err(TcpError::WouldBlock) => return,
                Err(err) => panic!("read failed: {err}"),
            }
        }
    }
}

fn echo_round_trip(len: usize, rmem: u32, wmem: u32, client_reads_from_ms: u64, seed: u64) {
    let cfg = TcpConfig {
        tcp_rmem: rmem,
        tcp_wmem: wmem,
        ..TcpConfig::default()
    };
    let mut p = Pair::new(
        cfg.clone(),
        cfg,
        Impairment {
            delay: Duration::from_micros(200),
            ..Impairment::default()
        },
        seed,
    );
    let l = p.b.listen(B, 7, 8).unwrap();
    let mut client = App::new(Rng::new(seed).bytes(len));
    client.read_from = Instant::from_millis(client_reads_from_ms);
    client.id = Some(p.a.connect(p.now, A, 0, B, 7).unwrap());
    let mut echo = EventDrivenEcho {
        id: None,
        echoed: 0,
        closed: false,
    };
    let done = p.run_until(Duration::from_secs(120), |p| {
        while p.a.poll_event().is_some() {}
        while let Some(ev) = p.b.poll_event() {
            match ev {
                Event::Incoming(_) => {
                    echo.id = p.b.accept(l);
                    echo.on_event(&mut p.b);
                }
                Event::Readable(_) | Event::Writable(_) | Event::PeerClosed(_) => {
                    echo.on_event(&mut p.b)
                }
                _ => {}
            }
        }
        client.pump(p.now, &mut p.a);
        p.wake = Some(client.read_from).filter(|&t| t > p.now);
        client.eof
    });
    assert!(
        done,
        "echo of {len} bytes (rmem {rmem}, wmem {wmem}) stalled: echoed {} of {len}, client got {}; server unread {:?}, send space {:?}",
        echo.echoed,
        client.received.len(),
        echo.id.map(|id| p.b.recv_queue(id)),
        echo.id.map(|id| p.b.send_space(id))
    );
    assert!(client.received == client.to_send, "echoed bytes differ");
}

#[test]
fn an_echo_reader_that_stops_when_its_output_is_full_is_woken_when_it_drains() {
    // The client writes everything but starts reading late: the echo's
    // send buffer fills (the client's window is closed), so the echo stops
    // reading with data waiting, its own receive window closes, and the
    // client can only probe. When the client reads, ACKs free the echo's
    // send buffer: only the engine can tell the echo to go on.
    echo_round_trip(4 << 20, 131_072, 16_384, 500, 1);
    echo_round_trip(1 << 20, 65_536, 65_536, 200, 2);
    echo_round_trip(1 << 20, 8_192, 131_072, 200, 3);
    // And with a reader that keeps up.
    echo_round_trip(1 << 20, 16_384, 16_384, 0, 4);
}
