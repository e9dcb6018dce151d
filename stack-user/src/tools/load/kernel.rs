//! The kernel-socket driver of `xstack load --kernel` (tokio), for
//! comparison.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Result;

use super::*;

/// TIME_WAIT sockets of this network namespace (/proc/net/sockstat "tw").
fn kernel_time_wait() -> u64 {
    std::fs::read_to_string("/proc/net/sockstat")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("TCP:"))?;
            let mut it = line.split_whitespace();
            while let Some(k) = it.next() {
                if k == "tw" {
                    return it.next()?.parse().ok();
                }
            }
            None
        })
        .unwrap_or(0)
}

/// `f`, or `TimedOut` when it makes no progress for `limit`.
async fn within<T>(
    limit: Duration,
    f: impl std::future::Future<Output = std::io::Result<T>>,
) -> std::io::Result<T> {
    tokio::time::timeout(limit, f)
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
}

/// Bytes moved on one connection and not yet added to the recorder.
#[derive(Default)]
struct Moved {
    out: u64,
    inn: u64,
}

impl Moved {
    /// Adds the bytes to the recorder once enough have gathered (`all`:
    /// whatever there is), so that a long exchange shows in the totals
    /// as it goes without a lock per chunk.
    fn flush(&mut self, rec: &Mutex<Recorder>, all: bool) {
        if !all && self.out + self.inn < 256 * 1024 {
            return;
        }
        if let Ok(mut r) = rec.lock() {
            r.bytes_out += self.out;
            r.bytes_received(self.inn);
        }
        *self = Moved::default();
    }
}

/// Sends `req` and takes its response at the same time: the socket's read
/// and write readiness are awaited together, so a request bigger than
/// both directions' socket buffers cannot deadlock against an echo (a
/// client that wrote the whole request before reading would wait for
/// room that only its own reading makes). `limit` bounds each wait
/// without progress in either direction (`--timeout`).
async fn exchange(
    s: &tokio::net::TcpStream,
    cfg: &LoadConfig,
    req: &[u8],
    reply: &mut Reply,
    buf: &mut [u8],
    moved: &mut Moved,
    rec: &Mutex<Recorder>,
) -> std::io::Result<()> {
    use std::io::{Error, ErrorKind};
    let limit = cfg.timeout;
    let mut sent = 0usize;
    let stall = tokio::time::sleep(limit);
    tokio::pin!(stall);
    loop {
        tokio::select! {
            r = s.readable() => {
                r?;
                let n = match s.try_read(buf) {
                    Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
                    Ok(n) => n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
                    Err(e) => return Err(e),
                };
                moved.inn += n as u64;
                moved.flush(rec, false);
                stall.as_mut().reset((Instant::now() + limit).into());
                match reply.feed(cfg, req, sent, &buf[..n]) {
                    Fed::Partial => {}
                    Fed::Complete => return Ok(()),
                    Fed::Bad(why) => return Err(Error::new(ErrorKind::InvalidData, why)),
                }
            }
            w = s.writable(), if sent < req.len() => {
                w?;
                match s.try_write(&req[sent..]) {
                    Ok(n) => {
                        sent += n;
                        moved.out += n as u64;
                        moved.flush(rec, false);
                        stall.as_mut().reset((Instant::now() + limit).into());
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            () = &mut stall => return Err(ErrorKind::TimedOut.into()),
        }
    }
}

async fn kernel_conn(
    cfg: Arc<LoadConfig>,
    requests: Arc<[Vec<u8>; 2]>,
    origin: Instant,
    start_of_run: Instant,
    rec: Arc<Mutex<Recorder>>,
) {
    use tokio::io::AsyncReadExt;
    if let Ok(mut r) = rec.lock() {
        r.active += 1;
        r.opening += 1;
    }
    let connecting = Instant::now();
    let mut connected = false;
    // `--timeout` bounds each step without progress (connect, bytes of a
    // request or its response, the server's FIN), as in engine mode, not
    // the whole connection: a keep-alive connection may rightly live as
    // long as the run, and a big request as long as its bytes move.
    let limit = cfg.timeout;
    let mut moved = Moved::default();
    let res: std::io::Result<()> = async {
        let mut s = within(limit, tokio::net::TcpStream::connect(cfg.target)).await?;
        connected = true;
        if let Ok(mut r) = rec.lock() {
            r.opening = r.opening.saturating_sub(1);
            r.established += 1;
            r.connected(connecting.elapsed());
            r.peak_established = r.peak_established.max(r.established as u64);
            if let Loop::Closed(n) = cfg.lp {
                if r.full_at.is_none() && r.established >= n as usize {
                    r.full_at = Some(start_of_run.elapsed());
                }
            }
        }
        s.set_nodelay(true)?;
        let mut origin = if matches!(cfg.lp, Loop::Closed(_)) {
            Instant::now()
        } else {
            origin
        };
        let mut reply = Reply::default();
        let mut buf = vec![0u8; 64 * 1024];
        let stop_at = cfg.duration.map(|d| start_of_run + d);
        for i in 0..cfg.requests_per_conn {
            let over = stop_at.is_some_and(|t| Instant::now() >= t);
            if over && i > 0 && cfg.close != CloseBy::Server {
                break;
            }
            let last = i + 1 == cfg.requests_per_conn || over;
            let req = &requests[usize::from(last)];
            exchange(&s, &cfg, req, &mut reply, &mut buf, &mut moved, &rec).await?;
            moved.flush(&rec, true);
            if let Ok(mut r) = rec.lock() {
                r.latency(origin.elapsed());
            }
            if last {
                break;
            }
            if let Some(t) = cfg.think_time {
                // Idle between requests (`--think-time`); a run that ends
                // meanwhile closes the connection at the deadline.
                let wake = tokio::time::Instant::now() + t;
                match stop_at {
                    Some(end) if end < Instant::now() + t => {
                        tokio::time::sleep_until(tokio::time::Instant::from_std(end)).await;
                    }
                    _ => tokio::time::sleep_until(wake).await,
                }
            }
            origin = Instant::now();
        }
        match cfg.close {
            CloseBy::Client => drop(s),
            CloseBy::Rst => {
                // SO_LINGER 0: close sends RST (tokio::net::TcpStream::set_linger).
                #[allow(deprecated)]
                s.set_linger(Some(Duration::ZERO))?;
                drop(s);
            }
            CloseBy::Server => {
                // Wait for the server's FIN, then close.
                while within(limit, s.read(&mut buf)).await? > 0 {}
            }
        }
        Ok(())
    }
    .await;
    moved.flush(&rec, true);
    if let Ok(mut r) = rec.lock() {
        r.active = r.active.saturating_sub(1);
        if connected {
            r.established = r.established.saturating_sub(1);
        } else {
            r.opening = r.opening.saturating_sub(1);
        }
        match res {
            Ok(()) => r.conn_done(),
            Err(e) => {
                if r.first_error.is_none() {
                    r.first_error = Some(e.to_string());
                }
                match e.kind() {
                    std::io::ErrorKind::TimedOut if !connected => r.errors.connect_timeout += 1,
                    std::io::ErrorKind::TimedOut => r.errors.timeout += 1,
                    std::io::ErrorKind::ConnectionRefused => r.errors.refused += 1,
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe => {
                        r.errors.reset += 1
                    }
                    _ => r.errors.other += 1,
                }
            }
        }
    }
}

/// Runs the same load over kernel sockets (tokio, `threads` workers).
pub fn run_kernel(cfg: &LoadConfig, threads: usize) -> Result<Summary> {
    cfg.validate()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()?;
    let cfg = Arc::new(cfg.clone());
    let requests = Arc::new([request_bytes(&cfg, false), request_bytes(&cfg, true)]);
    let rec = Arc::new(Mutex::new(Recorder::new()));
    if cfg.capture.is_some() {
        anyhow::bail!("--pcap records the engine's frames; with --kernel use tcpdump");
    }
    let metrics = crate::runtime::metrics::bind_if(cfg.metrics)?;
    wait_for_start(&cfg);
    let start = Instant::now();
    // The measurement window opens now, after --start-at.
    if let Ok(mut r) = rec.lock() {
        r.window = cfg.duration.map(|d| (start + d, d));
    }
    let recs = vec![rec.clone()];
    let _metrics = metrics
        .map(|m| m.serve(move || super::recorder::exposition(&recs, start)))
        .transpose()?;
    let mut rep = Reporter::new(&cfg)?;
    rt.block_on(async {
        let stop_at = cfg.duration.map(|d| start + d);
        let limit = cfg.connections;
        let started = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let may_start = move |started: &std::sync::atomic::AtomicU64| {
            let n = started.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            stop_at.is_none_or(|t| Instant::now() < t) && limit.is_none_or(|c| n < c)
        };
        let mut tasks = tokio::task::JoinSet::new();
        match cfg.lp {
            Loop::Closed(n) => {
                for i in 0..n {
                    let (cfg, rec, started) = (cfg.clone(), rec.clone(), started.clone());
                    let requests = requests.clone();
                    // The opening is paced as in engine mode: connection
                    // i first starts at i / --connect-rate, or i / n of
                    // --ramp, whichever is later (replacements are not).
                    let by_rate = cfg.connect_rate.map_or(0.0, |r| f64::from(i) / r);
                    let by_ramp = cfg
                        .ramp
                        .map_or(0.0, |r| r.as_secs_f64() * f64::from(i) / f64::from(n));
                    let first = start + Duration::from_secs_f64(by_rate.max(by_ramp));
                    tasks.spawn(async move {
                        tokio::time::sleep_until(first.into()).await;
                        while may_start(&started) {
                            kernel_conn(
                                cfg.clone(),
                                requests.clone(),
                                Instant::now(),
                                start,
                                rec.clone(),
                            )
                            .await;
                        }
                    });
                }
            }
            Loop::Open(rate) => {
                let (cfg2, rec2, started2) = (cfg.clone(), rec.clone(), started.clone());
                let requests = requests.clone();
                tasks.spawn(async move {
                    let mut next = Instant::now();
                    let mut conns = tokio::task::JoinSet::new();
                    while may_start(&started2) {
                        tokio::time::sleep_until(next.into()).await;
                        conns.spawn(kernel_conn(
                            cfg2.clone(),
                            requests.clone(),
                            next,
                            start,
                            rec2.clone(),
                        ));
                        next += Duration::from_secs_f64(1.0 / rate);
                        while conns.try_join_next().is_some() {}
                    }
                    while conns.join_next().await.is_some() {}
                });
            }
        }
        // Past --duration and its drain bound the run ends, whatever the
        // server does: the connections still open are dropped (their
        // tasks cancelled) and counted as timeouts below.
        let end = stop_at.map(|t| t + drain_bound(&cfg));
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                r = tasks.join_next() => if r.is_none() { break },
                _ = tick.tick() => {
                    if end.is_some_and(|e| Instant::now() >= e) {
                        tasks.abort_all();
                        while tasks.join_next().await.is_some() {}
                        break;
                    }
                    if let Ok(mut r) = rec.lock() {
                        let active = r.active;
                        rep.tick(&mut r, active, kernel_time_wait());
                    }
                }
            }
        }
    });
    // Dropping the runtime cancels every task left (those of an open loop
    // too) and waits for its threads, so the count of open connections is
    // final: those are the stragglers the bound cut off.
    drop(rt);
    let elapsed = start.elapsed().as_secs_f64();
    let mut r = rec
        .lock()
        .map_err(|_| anyhow::anyhow!("recorder poisoned"))?;
    // What the last tick did not log.
    rep.finish(&r.interval);
    r.peak_tw = r.peak_tw.max(kernel_time_wait());
    if r.active > 0 {
        r.errors.timeout += r.active as u64;
        let why = format!(
            "{} connections still open {:.1} s after --duration: counted as timeouts",
            r.active,
            drain_bound(&cfg).as_secs_f64()
        );
        r.first_error.get_or_insert(why);
        r.active = 0;
    }
    Ok(r.summary("kernel", cfg.target, elapsed))
}
