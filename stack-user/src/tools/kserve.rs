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
}

async fn serve_conn(
    mut s: TcpStream,
    app: App,
    response_bytes: usize,
    stats: Arc<KserveStats>,
) -> std::io::Result<()> {
    let _ = s.set_nodelay(true);
    let mut buf = vec![0u8; 64 * 1024];
    let mut inbuf: Vec<u8> = Vec::new();
    let ka_response = http::response(response_bytes, true);
    let close_response = http::response(response_bytes, false);
    loop {
        let n = s.read(&mut buf).await?;
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
                inbuf.extend_from_slice(&buf[..n]);
                loop {
                    match http::parse_request(&inbuf) {
                        Ok(Some(req)) => {
                            inbuf.drain(..req.len);
                            let r = if req.keep_alive {
                                &ka_response
                            } else {
                                &close_response
                            };
                            s.write_all(r).await?;
                            stats.bytes_out.fetch_add(r.len() as u64, Ordering::Relaxed);
                            stats.http_requests.fetch_add(1, Ordering::Relaxed);
                            if !req.keep_alive {
                                return s.shutdown().await;
                            }
                        }
                        Ok(None) => break,
                        Err(_) => {
                            s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                                .await?;
                            return s.shutdown().await;
                        }
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
    response_bytes: usize,
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
                    let _ = serve_conn(s, app, response_bytes, st2).await;
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
