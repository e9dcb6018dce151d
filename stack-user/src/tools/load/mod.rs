//! `xstack load`: a load generator on the xstack engine (one engine and
//! thread per AF_XDP queue with `--queues N`, no syscall per segment, no
//! kernel ephemeral-port or TIME_WAIT limits) or, with `--kernel`, on
//! kernel sockets (tokio) for comparison.
//!
//! Open loop (`--rate`) schedules each connection at its intended start
//! time and measures latency from that time, so a slow server cannot hide
//! its queueing (no coordinated omission). Closed loop (`--concurrency`)
//! keeps N connections busy and measures from each request's send time.
//!
//! Here: the request/response framing both drivers share. Beside it:
//! `config` (what to run), `recorder` (the shared measurement state, the
//! progress line, the HdrHistogram log and the summary), `driver` (the
//! xstack engine driver), `pace` (closed-loop pacing of connection starts)
//! and `kernel` (the kernel-socket driver).

use std::time::Duration;

use anyhow::Result;

mod config;
mod driver;
mod kernel;
mod pace;
mod recorder;

pub use config::{
    parse_addrs, parse_ports, CloseBy, LoadConfig, Loop, DEFAULT_CONNECT_RATE, MAX_SOURCE_ADDRS,
};
pub use driver::run_engine;
pub use kernel::run_kernel;
pub use recorder::{Errors, Latency, QueueSummary, Summary};

use recorder::{Recorder, Reporter};

use crate::apps::http;

/// The bytes of one request.
fn request_bytes(cfg: &LoadConfig, last: bool) -> Vec<u8> {
    if cfg.http {
        let keep = !(last && cfg.close == CloseBy::Server);
        http::get_request(&cfg.target.ip().to_string(), "/", keep)
    } else {
        (0..cfg.request_bytes).map(|i| (i % 251) as u8).collect()
    }
}

/// How long connections still open at the end of `--duration` may take to
/// finish their request before they count as timed out: `--timeout` (a
/// step without progress) and a second for the last ACKs, plus one
/// `--think-time` pause: a connection pausing at the deadline ends when
/// its pause does, so the closes of many idle connections spread over a
/// pause instead of leaving in one burst. Both drivers end there,
/// whatever the server does.
fn drain_bound(cfg: &LoadConfig) -> Duration {
    cfg.timeout + Duration::from_secs(1) + cfg.think_time.unwrap_or_default()
}

/// Length of the complete HTTP response at the start of `buf`, if there
/// is one.
fn response_complete(buf: &[u8]) -> Result<Option<usize>, ()> {
    http::response_len(buf).map_err(|_| ())
}

/// What a chunk of received bytes did to the response in flight.
#[derive(Debug, PartialEq, Eq)]
enum Fed {
    /// More is to come.
    Partial,
    /// The response is complete.
    Complete,
    /// Not the response asked for: the reason, for `first_error`.
    Bad(String),
}

/// The response to the request in flight, taken as it arrives, so that a
/// driver reads while it writes. The echo protocol is checked byte for
/// byte against the request at the same offset, nothing buffered (a
/// 4 MiB echo costs no 4 MiB copy); an HTTP response is buffered until its
/// head and body are complete.
#[derive(Debug, Default)]
struct Reply {
    /// Echo bytes received and matched so far.
    got: usize,
    /// HTTP bytes received and not yet a complete response.
    inbuf: Vec<u8>,
}

impl Reply {
    /// Takes `data`, received while `req` is in flight (`sent` bytes of it
    /// written so far).
    fn feed(&mut self, cfg: &LoadConfig, req: &[u8], sent: usize, data: &[u8]) -> Fed {
        if cfg.http {
            self.inbuf.extend_from_slice(data);
            return match response_complete(&self.inbuf) {
                Ok(Some(_)) if sent < req.len() => {
                    Fed::Bad("HTTP response before the request was sent".into())
                }
                Ok(Some(len)) => {
                    self.inbuf.drain(..len);
                    if self.inbuf.is_empty() {
                        // An idle kept-alive connection keeps no buffer.
                        self.inbuf = Vec::new();
                    }
                    Fed::Complete
                }
                Ok(None) => Fed::Partial,
                Err(()) => Fed::Bad("malformed HTTP response".into()),
            };
        }
        // An echo can only return what was sent.
        let expected = &req[self.got..sent.max(self.got)];
        if data.len() > expected.len() {
            return Fed::Bad(format!(
                "echo returned {} bytes more than were sent (at byte {})",
                data.len() - expected.len(),
                self.got + expected.len()
            ));
        }
        if let Some(i) = data.iter().zip(expected).position(|(a, b)| a != b) {
            return Fed::Bad(format!(
                "echo differs from the request at byte {}",
                self.got + i
            ));
        }
        self.got += data.len();
        if self.got == req.len() {
            self.got = 0;
            Fed::Complete
        } else {
            Fed::Partial
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn cfg() -> LoadConfig {
        LoadConfig {
            target: "198.18.0.2:80".parse().unwrap(),
            allow_target: vec![],
            lp: Loop::Closed(4),
            requests_per_conn: 1,
            request_bytes: 64,
            http: false,
            close: CloseBy::Client,
            duration: Some(Duration::from_secs(1)),
            connections: None,
            timeout: Duration::from_secs(1),
            progress: false,
            hdr: None,
            queues: 1,
            busy_poll: false,
            connect_rate: None,
            ramp: None,
            think_time: None,
        }
    }

    #[test]
    fn loads_are_bounded_and_stay_in_the_benchmarking_range() {
        assert!(cfg().validate().is_ok());
        let mut c = cfg();
        c.target = "10.0.0.1:80".parse().unwrap();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("198.18.0.0/15"));
        let mut c = cfg();
        c.duration = None;
        assert!(c.validate().is_err());
        let mut c = cfg();
        c.close = CloseBy::Server;
        assert!(c.validate().unwrap_err().to_string().contains("--http"));
    }

    #[test]
    fn allow_target_widens_the_load_guard_only_for_its_prefix() {
        let mut c = cfg();
        c.target = "10.1.0.5:80".parse().unwrap();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("--allow-target"));
        c.allow_target = vec!["10.1.0.0/16".parse().unwrap()];
        assert!(c.validate().is_ok());
        assert_eq!(c.part(0, 1).allow_target, c.allow_target);
        c.target = "10.2.0.5:80".parse().unwrap();
        assert!(c.validate().is_err());
    }

    #[test]
    fn a_load_split_over_queues_keeps_its_totals() {
        let c = LoadConfig {
            lp: Loop::Closed(10),
            connections: Some(1001),
            queues: 3,
            progress: true,
            ..cfg()
        };
        let parts: Vec<_> = (0..3).map(|i| c.part(i, 3)).collect();
        let conc: Vec<u32> = parts
            .iter()
            .map(|p| match p.lp {
                Loop::Closed(n) => n,
                Loop::Open(_) => 0,
            })
            .collect();
        assert_eq!(conc, vec![4, 3, 3]);
        let conns: Vec<u64> = parts.iter().filter_map(|p| p.connections).collect();
        assert_eq!(conns, vec![334, 334, 333]);
        assert!(parts.iter().all(|p| !p.progress && p.queues == 1));
        let open = LoadConfig {
            lp: Loop::Open(900.0),
            ..c.clone()
        }
        .part(2, 3);
        assert_eq!(open.lp, Loop::Open(300.0));
        // Fewer connections kept busy than engines: refused with advice.
        let few = LoadConfig {
            lp: Loop::Closed(2),
            ..c
        };
        assert!(few.validate().unwrap_err().to_string().contains("--queues"));
    }

    #[test]
    fn echo_and_http_responses_are_framed() {
        let c = cfg();
        let req = request_bytes(&c, false);
        let mut r = Reply::default();
        assert_eq!(r.feed(&c, &req, 64, &req[..63]), Fed::Partial);
        assert_eq!(r.feed(&c, &req, 64, &req[63..]), Fed::Complete);
        let mut h = cfg();
        h.http = true;
        let hreq = request_bytes(&h, false);
        let resp = http::response(10, true);
        assert_eq!(response_complete(&resp), Ok(Some(resp.len())));
        let mut r = Reply::default();
        assert_eq!(r.feed(&h, &hreq, hreq.len(), &resp[..5]), Fed::Partial);
        assert_eq!(r.feed(&h, &hreq, hreq.len(), &resp[5..]), Fed::Complete);
        assert!(r.inbuf.is_empty());
    }

    #[test]
    fn an_echo_is_checked_byte_for_byte_against_what_was_sent() {
        let c = cfg();
        let req = request_bytes(&c, false);
        // Only what was written can come back.
        let mut r = Reply::default();
        assert_eq!(r.feed(&c, &req, 10, &req[..10]), Fed::Partial);
        assert!(
            matches!(r.feed(&c, &req, 10, &req[10..11]), Fed::Bad(e) if e.contains("more than"))
        );
        // A changed byte is named by its offset.
        let mut r = Reply::default();
        let mut bad = req.clone();
        bad[40] ^= 1;
        assert_eq!(r.feed(&c, &req, 64, &bad[..32]), Fed::Partial);
        assert!(matches!(r.feed(&c, &req, 64, &bad[32..]), Fed::Bad(e) if e.contains("byte 40")));
    }

    #[test]
    fn summary_percentiles_come_from_the_histogram() {
        let mut r = Recorder::new();
        for us in 1..=1000u64 {
            r.latency(Duration::from_micros(us));
        }
        r.connections = 1000;
        let s = r.summary("xstack", "198.18.0.2:80".parse().unwrap(), 2.0);
        assert_eq!(s.requests, 1000);
        assert!(
            (495..=505).contains(&s.latency_us.p50),
            "{:?}",
            s.latency_us
        );
        assert!(
            (985..=995).contains(&s.latency_us.p99),
            "{:?}",
            s.latency_us
        );
        assert_eq!(s.connections_per_s, 500.0);
    }
}
