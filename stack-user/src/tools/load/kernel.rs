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

async fn kernel_conn(
    cfg: Arc<LoadConfig>,
    origin: Instant,
    start_of_run: Instant,
    rec: Arc<Mutex<Recorder>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // `--timeout` bounds each step without progress (connect, a response,
    // the server's FIN), as in engine mode, not the whole connection: a
    // keep-alive connection may rightly live as long as the run.
    let limit = cfg.timeout;
    let res: std::io::Result<()> = async {
        let mut s = within(limit, tokio::net::TcpStream::connect(cfg.target)).await?;
        s.set_nodelay(true)?;
        let mut origin = if matches!(cfg.lp, Loop::Closed(_)) {
            Instant::now()
        } else {
            origin
        };
        let mut inbuf = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        let stop_at = cfg.duration.map(|d| start_of_run + d);
        for i in 0..cfg.requests_per_conn {
            let over = stop_at.is_some_and(|t| Instant::now() >= t);
            if over && i > 0 && cfg.close != CloseBy::Server {
                break;
            }
            let last = i + 1 == cfg.requests_per_conn || over;
            let req = request_bytes(&cfg, last);
            s.write_all(&req).await?;
            let mut got = 0u64;
            loop {
                if let Ok(Some(len)) = response_complete(&cfg, &inbuf) {
                    inbuf.drain(..len);
                    break;
                }
                let n = within(limit, s.read(&mut buf)).await?;
                if n == 0 {
                    return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
                }
                got += n as u64;
                inbuf.extend_from_slice(&buf[..n]);
            }
            if let Ok(mut r) = rec.lock() {
                r.bytes_out += req.len() as u64;
                r.bytes_received(got);
                r.latency(origin.elapsed());
            }
            origin = Instant::now();
            if last {
                break;
            }
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
    if let Ok(mut r) = rec.lock() {
        match res {
            Ok(()) => r.conn_done(),
            Err(e) => {
                if r.first_error.is_none() {
                    r.first_error = Some(e.to_string());
                }
                match e.kind() {
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
    let rec = Arc::new(Mutex::new(Recorder::new()));
    if let Ok(mut r) = rec.lock() {
        r.window = cfg.duration.map(|d| (Instant::now() + d, d));
    }
    let start = Instant::now();
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
                for _ in 0..n {
                    let (cfg, rec, started) = (cfg.clone(), rec.clone(), started.clone());
                    tasks.spawn(async move {
                        while may_start(&started) {
                            kernel_conn(cfg.clone(), Instant::now(), start, rec.clone()).await;
                        }
                    });
                }
            }
            Loop::Open(rate) => {
                let (cfg2, rec2, started2) = (cfg.clone(), rec.clone(), started.clone());
                tasks.spawn(async move {
                    let mut next = Instant::now();
                    let mut conns = tokio::task::JoinSet::new();
                    while may_start(&started2) {
                        tokio::time::sleep_until(next.into()).await;
                        conns.spawn(kernel_conn(cfg2.clone(), next, start, rec2.clone()));
                        next += Duration::from_secs_f64(1.0 / rate);
                        while conns.try_join_next().is_some() {}
                    }
                    while conns.join_next().await.is_some() {}
                });
            }
        }
        loop {
            tokio::select! {
                r = tasks.join_next() => if r.is_none() { break },
                _ = tokio::time::sleep(Duration::from_millis(200)) => {
                    if let Ok(mut r) = rec.lock() {
                        rep.tick(&mut r, 0, kernel_time_wait());
                    }
                }
            }
        }
    });
    let elapsed = start.elapsed().as_secs_f64();
    let mut r = rec
        .lock()
        .map_err(|_| anyhow::anyhow!("recorder poisoned"))?;
    r.peak_tw = r.peak_tw.max(kernel_time_wait());
    Ok(r.summary("kernel", cfg.target, elapsed))
}
