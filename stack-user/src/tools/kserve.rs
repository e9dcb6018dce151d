//! `xstack kserve`: the same applications as `xstack serve --app`, on Linux
//! kernel sockets with tokio — the baseline for comparisons.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use anyhow::{Context, Result};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use crate::apps::{http, App};

/// Counters of a kernel-socket server.
#[derive(Debug, Default)]
pub struct KserveStats {
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Bytes read.
    pub bytes_in: AtomicU64,
    /// Bytes written.
    pub bytes_out: AtomicU64,
    /// HTTP requests answered.
    pub http_requests: AtomicU64,
    /// HTTP requests refused with an error status.
    pub http_errors: AtomicU64,
}

/// How long a lingering close waits for each read of the client's rest.
const LINGER_READ: Duration = Duration::from_secs(2);

async fn serve_conn(
    mut s: TcpStream,
    app: App,
    http_cfg: http::ServerConfig,
    stats: Arc<KserveStats>,
) -> std::io::Result<()> {
    let _ = s.set_nodelay(true);
    let mut buf = vec![0u8; 64 * 1024];
    let mut conn = http::ServerConn::default();
    let mut out: Vec<u8> = Vec::new();
    loop {
        let want = match app {
            App::Http => conn.read_hint().min(buf.len()),
            _ => buf.len(),
        };
        let n = s.read(&mut buf[..want]).await?;
        if n == 0 {
            return Ok(());
        }
        stats.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
        match app {
            App::Echo => {
                s.write_all(&buf[..n]).await?;
                stats.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
            }
            App::Discard | App::Manual => {}
            App::Http => {
                // The same server as the engine's `--app http`.
                let mut tally = http::Tally::default();
                let flow = conn.input(&http_cfg, &buf[..n], &mut out, &mut tally);
                if !out.is_empty() {
                    s.write_all(&out).await?;
                    stats
                        .bytes_out
                        .fetch_add(out.len() as u64, Ordering::Relaxed);
                    out.clear();
                }
                stats
                    .http_requests
                    .fetch_add(tally.requests, Ordering::Relaxed);
                stats.http_errors.fetch_add(tally.errors, Ordering::Relaxed);
                match flow {
                    http::Flow::Continue => {}
                    http::Flow::Close => return s.shutdown().await,
                    http::Flow::Linger => {
                        // Lingering close (RFC 9112 §9.6), as the engine does.
                        s.shutdown().await?;
                        let mut left = http::LINGER_BYTES;
                        while left > 0 {
                            let room = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                            match tokio::time::timeout(LINGER_READ, s.read(&mut buf[..room])).await
                            {
                                Ok(Ok(k)) if k > 0 => left -= k as u64,
                                _ => break,
                            }
                        }
                        return Ok(());
                    }
                }
            }
        }
    }
}

/// Serves `app` on `listen` with `threads` tokio workers until SIGINT/SIGTERM
/// or `duration`; returns the counters.
pub fn run(
    listen: SocketAddr,
    app: App,
    http_cfg: http::ServerConfig,
    threads: usize,
    backlog: u32,
    duration: Option<Duration>,
) -> Result<Arc<KserveStats>> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let stats = Arc::new(KserveStats::default());
    let st = stats.clone();
    rt.block_on(async move {
        let sock = match listen {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
        }?;
        sock.set_reuseaddr(true)?;
        sock.bind(listen).with_context(|| {
            format!("binding {listen} (is the address configured in this namespace?)")
        })?;
        let listener: TcpListener = sock.listen(backlog)?;
        println!("xstack kserve: {app:?} on {listen} (kernel sockets, {threads} thread(s))");
        let accept = async {
            loop {
                let (s, _) = listener.accept().await?;
                st.accepted.fetch_add(1, Ordering::Relaxed);
                let st2 = st.clone();
                tokio::spawn(async move {
                    let _ = serve_conn(s, app, http_cfg, st2).await;
                });
            }
            #[allow(unreachable_code)]
            Ok::<(), anyhow::Error>(())
        };
        let stop = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            match duration {
                Some(d) => tokio::select! {
                    _ = tokio::signal::ctrl_c() => {},
                    _ = term.recv() => {},
                    _ = tokio::time::sleep(d) => {},
                },
                None => tokio::select! {
                    _ = tokio::signal::ctrl_c() => {},
                    _ = term.recv() => {},
                },
            }
            Ok::<(), anyhow::Error>(())
        };
        tokio::select! {
            r = accept => r,
            r = stop => r,
        }
    })?;
    Ok(stats)
}
