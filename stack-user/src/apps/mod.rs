//! Server applications run by the engine on its listening ports: echo (RFC
//! 862), discard (RFC 863) and a fixed-body HTTP/1.1 server. They work on
//! the sans-IO TCP API, one call per readiness event, and never buffer more
//! than one send buffer's worth per connection.

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
    /// Answer each HTTP/1.1 request with a fixed body; keep-alive unless the
    /// request says `Connection: close` (or is HTTP/1.0 without keep-alive).
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
    /// Received bytes not yet consumed (HTTP request heads).
    inbuf: Vec<u8>,
    /// Bytes to send that did not fit in the send buffer yet.
    out: Vec<u8>,
    /// Close once `out` is sent (HTTP `Connection: close`).
    close_after: bool,
}

/// Counters the applications keep.
#[derive(Clone, Copy, Debug, Default)]
pub struct AppCounters {
    /// Bytes read.
    pub bytes_in: u64,
    /// Bytes written.
    pub bytes_out: u64,
    /// HTTP requests answered.
    pub http_requests: u64,
    /// HTTP requests rejected as malformed (connection closed).
    pub http_errors: u64,
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
    Ok(true)
}

/// Which application, with its settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppConfig {
    /// The application.
    pub app: App,
    /// Body size of HTTP responses.
    pub response_bytes: usize,
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
        let room = match cfg.app {
            // Read no more than fits back into the send buffer.
            App::Echo => match tcp.send_space(c) {
                Ok(r) => r.min(buf.len()),
                Err(_) => return Service::Closed,
            },
            App::Discard => buf.len(),
            App::Manual => return Service::Open,
            App::Http => buf
                .len()
                .min(2 * http::MAX_HEAD - st.inbuf.len().min(2 * http::MAX_HEAD)),
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
                st.inbuf.extend_from_slice(&buf[..got]);
                loop {
                    match http::parse_request(&st.inbuf) {
                        Ok(Some(req)) => {
                            st.inbuf.drain(..req.len);
                            st.out.extend_from_slice(&http::response(
                                cfg.response_bytes,
                                req.keep_alive,
                            ));
                            n.http_requests += 1;
                            if !req.keep_alive {
                                st.close_after = true;
                                break;
                            }
                        }
                        Ok(None) => break,
                        Err(_) => {
                            n.http_errors += 1;
                            st.out.extend_from_slice(
                                b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                            );
                            st.close_after = true;
                            break;
                        }
                    }
                }
            }
        }
    }
}
