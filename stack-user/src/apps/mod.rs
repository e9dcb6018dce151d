//! Server applications run by the engine on its listening ports: echo (RFC
//! 862), discard (RFC 863) and an HTTP/1.1 server (fixed body, or the
//! request's body echoed). They work on the sans-IO TCP API, one call per
//! readiness event, and never buffer more than one send buffer's worth per
//! connection.

pub mod http;

use serde::Serialize;

use crate::{
    tcp::{ConnId, TcpEngine, TcpError},
    time::Instant,
};

/// What runs on the listening ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum App {
    /// Write back every byte received; close after the peer closes (RFC 862).
    Echo,
    /// Read and drop everything; close after the peer closes (RFC 863).
    Discard,
    /// Answer each HTTP/1.1 request with a fixed body (or, with
    /// `echo_body`, the request's body); keep-alive unless the request says
    /// `Connection: close` (or is HTTP/1.0 without keep-alive). Content-Length
    /// request bodies are streamed through, up to `max_body` (413 above).
    Http,
    /// No application: `Event::Incoming` goes to the caller of
    /// [`crate::iface::Interface::poll_event`], who accepts and drives the
    /// connections itself (library use, tests).
    #[value(skip)]
    Manual,
}

/// Per-connection application state.
#[derive(Debug, Default)]
pub struct AppConn {
    /// The HTTP server's request state.
    http: http::ServerConn,
    /// Bytes to send that did not fit in the send buffer yet.
    out: Vec<u8>,
    /// Close once `out` is sent (HTTP `Connection: close`).
    close_after: bool,
    /// After an HTTP error response: half-close once `out` is sent, then
    /// drop at most this many more bytes until the peer closes.
    linger: Option<u64>,
    /// The half-close of `linger` was done.
    shut: bool,
    /// The lingering close's time cap has been scheduled by the caller.
    linger_timed: bool,
}

impl AppConn {
    /// Whether the connection is in a lingering close (after an HTTP error
    /// response) whose time cap the caller has not scheduled yet; marks it
    /// scheduled. The caller closes it after [`http::LINGER_TIME`] if it is
    /// still [`lingering`](Self::lingering) then.
    pub fn start_linger_timer(&mut self) -> bool {
        let start = self.linger.is_some() && !self.linger_timed;
        self.linger_timed |= start;
        start
    }

    /// Whether the connection is in a lingering close.
    pub fn lingering(&self) -> bool {
        self.linger.is_some()
    }
}

stack_ebpf::counters! {
    /// Counters the applications keep.
    #[derive(Clone, Copy, Debug, Default)]
    pub struct AppCounters {
        /// Bytes read.
        bytes_in,
        /// Bytes written.
        bytes_out,
        /// HTTP requests answered.
        http_requests,
        /// HTTP requests refused with an error status (400, 411, 413, 417,
        /// 431; the connection is closed after it).
        http_errors,
    }
}

/// Whether the application is done with a connection (its handle closed).
#[derive(Debug, PartialEq, Eq)]
pub enum Service {
    /// Keep the connection.
    Open,
    /// The handle was closed; forget the state.
    Closed,
}

fn close(tcp: &mut TcpEngine, now: Instant, c: ConnId) -> Service {
    let _ = tcp.close(now, c);
    Service::Closed
}

/// Sends what is pending; `false` when the send buffer is full.
fn flush(
    tcp: &mut TcpEngine,
    c: ConnId,
    st: &mut AppConn,
    n: &mut AppCounters,
) -> Result<bool, TcpError> {
    while !st.out.is_empty() {
        match tcp.write(c, &st.out) {
            Ok(w) => {
                n.bytes_out += w as u64;
                st.out.drain(..w);
            }
            Err(TcpError::WouldBlock) => return Ok(false),
            Err(e) => return Err(e),
        }
    }
    if st.out.capacity() > 0 {
        // Sent: an idle connection keeps no buffer.
        st.out = Vec::new();
    }
    Ok(true)
}

/// Which application, with its settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppConfig {
    /// The application.
    pub app: App,
    /// The HTTP server's settings.
    pub http: http::ServerConfig,
}

/// Runs the application on connection `c` after a readiness event.
pub fn service(
    cfg: AppConfig,
    tcp: &mut TcpEngine,
    now: Instant,
    c: ConnId,
    st: &mut AppConn,
    n: &mut AppCounters,
    buf: &mut [u8],
) -> Service {
    loop {
        match flush(tcp, c, st, n) {
            Ok(true) => {}
            Ok(false) => return Service::Open, // Writable will call back.
            Err(_) => return close(tcp, now, c),
        }
        if st.close_after {
            return close(tcp, now, c);
        }
        if let Some(left) = st.linger {
            // Lingering close (RFC 9112 §9.6): the error response is queued;
            // FIN after it, then drop what the client still sends until it
            // closes, so that no RST destroys the response.
            if !st.shut {
                st.shut = true;
                if tcp.shutdown(c).is_err() {
                    return close(tcp, now, c);
                }
            }
            let room = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            match tcp.read(c, &mut buf[..room]) {
                Ok(k) if k > 0 && (k as u64) < left => {
                    n.bytes_in += k as u64;
                    st.linger = Some(left - k as u64);
                    continue;
                }
                Err(TcpError::WouldBlock) => return Service::Open,
                // End of stream, the budget spent, or an error.
                _ => return close(tcp, now, c),
            }
        }
        let room = match cfg.app {
            // Read no more than fits back into the send buffer.
            App::Echo => match tcp.send_space(c) {
                Ok(r) => r.min(buf.len()),
                Err(_) => return Service::Closed,
            },
            App::Discard => buf.len(),
            App::Manual => return Service::Open,
            App::Http => {
                let want = buf.len().min(st.http.read_hint());
                // Echoed bodies: read no more than fits back.
                if cfg.http.echo_body {
                    match tcp.send_space(c) {
                        Ok(r) => r.min(want),
                        Err(_) => return Service::Closed,
                    }
                } else {
                    want
                }
            }
        };
        if room == 0 {
            return Service::Open;
        }
        let got = match tcp.read(c, &mut buf[..room]) {
            Ok(0) => return close(tcp, now, c),
            Ok(k) => k,
            Err(TcpError::WouldBlock) => return Service::Open,
            Err(_) => return close(tcp, now, c),
        };
        n.bytes_in += got as u64;
        match cfg.app {
            App::Echo => st.out.extend_from_slice(&buf[..got]),
            App::Discard | App::Manual => {}
            App::Http => {
                let mut tally = http::Tally::default();
                let flow = st
                    .http
                    .input(&cfg.http, &buf[..got], &mut st.out, &mut tally);
                n.http_requests += tally.requests;
                n.http_errors += tally.errors;
                match flow {
                    http::Flow::Continue => {}
                    http::Flow::Close => st.close_after = true,
                    http::Flow::Linger => st.linger = Some(http::LINGER_BYTES),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::tcp::{
        tests::harness::{App as Client, Impairment, Pair, Rng, A, B},
        Event, TcpConfig,
    };

    /// A client sends `request` and half-closes; the engine runs
    /// the HTTP app on every event, as `Interface` does. Returns what the
    /// client received, whether it saw the end of stream, and the counters.
    fn http_exchange(
        http: http::ServerConfig,
        request: Vec<u8>,
        bufs: u32,
    ) -> (Vec<u8>, bool, AppCounters) {
        let cfg = TcpConfig {
            tcp_rmem: bufs,
            tcp_wmem: bufs,
            ..TcpConfig::default()
        };
        let imp = Impairment {
            delay: Duration::from_micros(200),
            ..Impairment::default()
        };
        let mut p = Pair::new(cfg.clone(), cfg, imp, 7);
        let l = p.b.listen(B, 80, 8).unwrap();
        let mut client = Client::new(request);
        client.id = Some(p.a.connect(p.now, A, 0, B, 80).unwrap());
        let app = AppConfig {
            app: App::Http,
            http,
        };
        let mut conn: Option<(ConnId, AppConn)> = None;
        let mut n = AppCounters::default();
        let mut buf = vec![0u8; 16 * 1024];
        p.run_until(Duration::from_secs(60), |p| {
            while p.a.poll_event().is_some() {}
            while let Some(ev) = p.b.poll_event() {
                let c = match ev {
                    Event::Incoming(_) => match p.b.accept(l) {
                        Some(c) => {
                            conn = Some((c, AppConn::default()));
                            c
                        }
                        None => continue,
                    },
                    Event::Readable(c) | Event::Writable(c) | Event::PeerClosed(c) => c,
                    _ => continue,
                };
                if let Some((id, st)) = conn.as_mut().filter(|(id, _)| *id == c) {
                    if service(app, &mut p.b, p.now, *id, st, &mut n, &mut buf) == Service::Closed {
                        conn = None;
                    }
                }
            }
            client.pump(p.now, &mut p.a);
            // Done when the client has sent everything and read to the end.
            client.eof && client.shut
        });
        (client.received, client.eof, n)
    }

    #[test]
    fn an_echoed_body_larger_than_the_buffers_comes_back_whole_before_the_next_pipelined_answer() {
        let body = Rng::new(3).bytes(1 << 20);
        let mut req =
            format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        req.extend_from_slice(&body);
        req.extend_from_slice(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n");
        let cfg = http::ServerConfig {
            response_bytes: 5,
            echo_body: true,
            max_body: 1 << 20,
        };
        let (got, eof, n) = http_exchange(cfg, req, 16_384);
        let mut want = Vec::new();
        http::put_response_head(&mut want, body.len() as u64, true);
        want.extend_from_slice(&body);
        http::put_response_head(&mut want, 0, false);
        assert!(eof);
        assert!(
            got == want,
            "echoed {} bytes, want {}",
            got.len(),
            want.len()
        );
        assert_eq!((n.http_requests, n.http_errors), (2, 0));
    }

    #[test]
    fn a_413_reaches_a_client_still_sending_its_body_without_a_reset() {
        // No Expect: the client sends 1 MiB right behind the head. Closing
        // with unread data would reset the connection and could destroy the
        // 413; the app half-closes and drains until the client closes.
        let mut req =
            format!("POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n", 1 << 20).into_bytes();
        req.extend_from_slice(&Rng::new(4).bytes(1 << 20));
        let cfg = http::ServerConfig {
            max_body: 1000,
            ..http::ServerConfig::default()
        };
        // The client panics on a reset (write or read failed).
        let (got, eof, n) = http_exchange(cfg, req, 65_536);
        assert!(eof);
        assert_eq!(got, http::HttpError::BodyTooLarge.response());
        assert_eq!((n.http_requests, n.http_errors), (0, 1));
    }
}
