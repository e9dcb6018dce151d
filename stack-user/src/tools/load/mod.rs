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
//! `rss` (RSS-aware source ports: each engine picks ports whose replies
//! the NIC puts on its own queue) and `kernel` (the kernel-socket driver).

use std::time::Duration;

use anyhow::Result;

mod config;
mod driver;
mod kernel;
mod merge;
mod pace;
mod recorder;
mod rss;

pub use config::{
    parse_addrs, parse_ports, CloseBy, LoadConfig, Loop, Segment, DEFAULT_CONNECT_RATE,
    MAX_SOURCE_ADDRS,
};
pub use driver::run_engine;
pub use kernel::run_kernel;
pub use merge::{add_logs, merge, merge_files, write_json};
pub use recorder::{Errors, Latency, QueueSummary, Summary};

use recorder::{Recorder, Reporter};

use crate::apps::http;

/// The bytes of one request.
fn request_bytes(cfg: &LoadConfig, last: bool) -> Vec<u8> {
    if cfg.http {
        let keep = !(last && cfg.close == CloseBy::Server);
        // RFC 9110 §7.2 / RFC 3986 §3.2.2: an IPv6 literal host in brackets.
        let host = match cfg.target.ip() {
            std::net::IpAddr::V4(a) => a.to_string(),
            std::net::IpAddr::V6(a) => format!("[{a}]"),
        };
        http::get_request(&host, "/", keep)
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

/// Sleeps until `--start-at` (if given), after the bring-up, so that
/// copies on several hosts start together (as well as their clocks agree).
fn wait_for_start(cfg: &LoadConfig) {
    if let Some(at) = cfg.start_at {
        if let Ok(d) = at.duration_since(std::time::SystemTime::now()) {
            std::thread::sleep(d);
        }
    }
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
            metrics: None,
            capture: None,
            start_at: None,
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
    fn segments_add_up_to_the_run_with_disjoint_local_ports() {
        let c = LoadConfig {
            lp: Loop::Closed(10),
            connections: Some(1001),
            queues: 2,
            progress: true,
            ..cfg()
        };
        let segs: Vec<Segment> = (0..3).map(|i| format!("{i}/3").parse().unwrap()).collect();
        let parts: Vec<LoadConfig> = segs.iter().map(|s| c.segment(*s).unwrap()).collect();
        let conc: u32 = parts
            .iter()
            .map(|p| match p.lp {
                Loop::Closed(n) => n,
                Loop::Open(_) => 0,
            })
            .sum();
        assert_eq!(conc, 10);
        assert_eq!(
            parts.iter().filter_map(|p| p.connections).sum::<u64>(),
            1001
        );
        // A segment is reported as a run of its own, on its own queues.
        assert!(parts.iter().all(|p| p.progress && p.queues == 2));
        let open = LoadConfig {
            lp: Loop::Open(900.0),
            ..c.clone()
        };
        assert_eq!(open.segment(segs[1]).unwrap().lp, Loop::Open(300.0));
        // Local ports: disjoint slices that cover the range.
        let ports: Vec<(u16, u16)> = segs
            .iter()
            .map(|s| s.ports((32768, 60999)).unwrap())
            .collect();
        assert_eq!(ports.first().unwrap().0, 32768);
        assert_eq!(ports.last().unwrap().1, 60999);
        for w in ports.windows(2) {
            assert_eq!(w[0].1 + 1, w[1].0, "{ports:?}");
        }
        // More shares than connections kept busy: refused with advice.
        let few = LoadConfig {
            lp: Loop::Closed(2),
            ..c
        };
        assert!(few
            .segment(segs[2])
            .unwrap_err()
            .to_string()
            .contains("at least 3"));
    }

    #[test]
    fn a_bad_segment_is_one_line_saying_what_to_give() {
        for bad in ["", "1", "2/2", "0/0", "a/b", "-1/2", "0/2000"] {
            let e = bad.parse::<Segment>().unwrap_err().to_string();
            assert!(e.contains("--segment") && !e.contains('\n'), "{bad}: {e}");
        }
        let s: Segment = "1/2".parse().unwrap();
        assert!(s
            .ports((1000, 1000))
            .unwrap_err()
            .to_string()
            .contains("ip_local_port_range"));
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
    fn load_metrics_have_latency_histograms_rates_and_the_engines_counters() {
        let mut r = Recorder::new();
        for us in [200u64, 300, 40_000] {
            r.latency(Duration::from_micros(us));
        }
        r.connected(Duration::from_micros(150));
        r.errors.refused = 2;
        let engine = crate::iface::IfaceStats {
            tx_frames: 9,
            ..Default::default()
        };
        r.engine = Some((engine, vec![("ListenOverflows", 0), ("active_opens", 4)]));
        let recs = [std::sync::Arc::new(std::sync::Mutex::new(r))];
        let start = std::time::Instant::now() - Duration::from_secs(2);
        let text = recorder::exposition(&recs, start).prometheus_text();
        for line in [
            "xstack_load_requests_total{queue=\"0\"} 3",
            "xstack_load_errors_total{queue=\"0\",kind=\"refused\"} 2",
            "xstack_load_request_latency_seconds_count 3",
            "xstack_load_request_latency_seconds_bucket{le=\"0.00025\"} 1",
            "xstack_load_request_latency_seconds_bucket{le=\"0.05\"} 3",
            "xstack_load_connect_latency_seconds_count 1",
            "xstack_engine_tx_frames_total{queue=\"0\"} 9",
            "xstack_tcp_total{queue=\"0\",family=\"ipv4\",counter=\"active_opens\"} 4",
        ] {
            assert!(
                text.contains(&format!("{line}\n")),
                "{line} missing:\n{text}"
            );
        }
        let rate: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix("xstack_load_requests_per_second "))
            .and_then(|v| v.parse().ok())
            .unwrap();
        assert!((1.0..=1.6).contains(&rate), "{rate}");
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
