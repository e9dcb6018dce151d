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
//! xstack engine driver) and `kernel` (the kernel-socket driver).

use anyhow::Result;

mod config;
mod driver;
mod kernel;
mod recorder;

pub use config::{CloseBy, LoadConfig, Loop};
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

/// Length of the complete response at the start of `buf`, if there is one.
fn response_complete(cfg: &LoadConfig, buf: &[u8]) -> Result<Option<usize>, ()> {
    if cfg.http {
        http::response_len(buf).map_err(|_| ())
    } else {
        Ok((buf.len() >= cfg.request_bytes).then_some(cfg.request_bytes))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn cfg() -> LoadConfig {
        LoadConfig {
            target: "198.18.0.2:80".parse().unwrap(),
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
        assert_eq!(response_complete(&c, &[0u8; 63]), Ok(None));
        assert_eq!(response_complete(&c, &[0u8; 100]), Ok(Some(64)));
        let mut h = cfg();
        h.http = true;
        let r = http::response(10, true);
        assert_eq!(response_complete(&h, &r), Ok(Some(r.len())));
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
