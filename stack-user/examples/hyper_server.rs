//! hyper's HTTP/1.1 server on xstack — and, with `--kernel`, the same code
//! on tokio's own (kernel) sockets, for comparisons.
//!
//! On xstack, `xstack::rt` runs one thread per AF_XDP queue with its own
//! current-thread tokio runtime; each connection is an `xstack::net`
//! `TcpStream` handed to hyper through hyper-util's `TokioIo` adapter and
//! served by a task on its queue. `GET` (any path) answers a fixed body of
//! `--body-bytes` bytes; `POST`/`PUT` read the request body (at most
//! `--max-body` bytes, 413 above) and answer its length.
//!
//! ```text
//! sudo target/release/examples/hyper_server --iface veth0 --ip 198.18.0.2 --port 80
//! sudo target/release/examples/hyper_server --iface veth0 --ip 198.18.0.2,2001:2::2 --port 80
//! target/release/examples/hyper_server --kernel --ip 198.18.0.1 --port 8080
//! curl http://198.18.0.2/
//! curl -6 'http://[2001:2::2]/'
//! ```
//!
//! Stops on SIGINT or SIGTERM, or after `--duration` seconds.

use std::{
    convert::Infallible,
    net::{IpAddr, Ipv4Addr},
    time::Duration,
};

use clap::Parser;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{
    body::{Bytes, Incoming},
    server::conn::http1,
    service::service_fn,
    Method, Request, Response,
};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

#[derive(Parser, Debug, Clone)]
#[command(about = "hyper HTTP/1.1 server on xstack (or on kernel sockets with --kernel)")]
struct Args {
    /// Interface to attach to (xstack mode).
    #[arg(long, required_unless_present = "kernel")]
    iface: Option<String>,
    /// The addresses to serve, either family: the stack's (xstack mode;
    /// one IPv4 and any IPv6 ones, comma-separated or repeated: dual-stack)
    /// or one of the kernel's (`--kernel`; default 0.0.0.0).
    #[arg(long, value_delimiter = ',')]
    ip: Vec<IpAddr>,
    /// Port to serve.
    #[arg(long, default_value_t = 80)]
    port: u16,
    /// Serve on tokio's kernel sockets instead of xstack.
    #[arg(long)]
    kernel: bool,
    /// Queues (xstack; default every rx queue) or worker threads
    /// (`--kernel`; default 1).
    #[arg(long)]
    queues: Option<u32>,
    /// Spin instead of sleeping between rounds (xstack).
    #[arg(long)]
    busy_poll: bool,
    /// Size of the body of GET responses.
    #[arg(long, default_value_t = 13)]
    body_bytes: usize,
    /// Largest request body accepted (413 above).
    #[arg(long, default_value_t = 64 << 20)]
    max_body: usize,
    /// Stop after this many seconds.
    #[arg(long)]
    duration: Option<u64>,
}

/// What every connection needs: the GET body and the body limit.
#[derive(Clone)]
struct Site {
    body: Bytes,
    max_body: usize,
}

async fn handle(site: Site, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let status_text = |code: u16, text: String| {
        let mut r = Response::new(Full::new(Bytes::from(text)));
        *r.status_mut() = hyper::StatusCode::from_u16(code).unwrap_or_default();
        r
    };
    Ok(match *req.method() {
        Method::GET | Method::HEAD => Response::new(Full::new(site.body.clone())),
        Method::POST | Method::PUT => {
            match Limited::new(req.into_body(), site.max_body).collect().await {
                Ok(b) => status_text(200, format!("{}\n", b.to_bytes().len())),
                Err(e) => status_text(413, format!("request body: {e}\n")),
            }
        }
        _ => status_text(405, "GET, HEAD, POST or PUT\n".into()),
    })
}

/// Serves one connection with hyper, whatever the socket type.
async fn serve_conn<I>(io: I, site: Site)
where
    I: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let service = service_fn(move |req| handle(site.clone(), req));
    if let Err(e) = http1::Builder::new()
        .serve_connection(TokioIo::new(io), service)
        .await
    {
        log::debug!("connection: {e}");
    }
}

/// Resolves on SIGINT, SIGTERM or after `duration`.
async fn stop(duration: Option<u64>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    let limit = async {
        match duration {
            Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
        _ = limit => {}
    }
}

/// `--kernel`: the same service on tokio's TcpListener.
fn run_kernel(args: &Args, site: Site) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.queues.unwrap_or(1).max(1) as usize)
        .enable_all()
        .build()?;
    let ip = args
        .ip
        .first()
        .copied()
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let addr = (ip, args.port);
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        eprintln!("hyper_server: kernel sockets on {}", listener.local_addr()?);
        let serve = async {
            loop {
                let (stream, _) = match listener.accept().await {
                    Ok(x) => x,
                    Err(e) => return Err::<(), std::io::Error>(e),
                };
                let _ = stream.set_nodelay(true);
                let site = site.clone();
                // The same connection code as on xstack; kernel streams
                // are Send, so any worker thread may run it.
                tokio::spawn(serve_conn(stream, site));
            }
        };
        tokio::select! {
            r = serve => r,
            _ = stop(args.duration) => Ok(()),
        }
    })
}

/// The service on xstack: one thread per queue.
fn run_xstack(args: &Args, site: Site) -> Result<(), String> {
    let (Some(iface), false) = (&args.iface, args.ip.is_empty()) else {
        return Err("--iface and --ip are required without --kernel".into());
    };
    let mut b = xstack::rt::Builder::new()
        .iface(iface)
        .port(args.port)
        .busy_poll(args.busy_poll);
    if let Some(q) = args.queues {
        b = b.queues(q);
    }
    for ip in &args.ip {
        b = b.ip(*ip);
    }
    let rt = b.build().map_err(|e| e.to_string())?;
    let ips: Vec<String> = args.ip.iter().map(ToString::to_string).collect();
    eprintln!(
        "hyper_server: xstack on {} port {} ({iface}, {} queue(s))",
        ips.join(", "),
        args.port,
        rt.queues()
    );
    let (port, duration) = (args.port, args.duration);
    rt.run(|net| {
        let site = site.clone();
        async move {
            let listener = xstack::net::TcpListener::bind(&net, port).await?;
            let serve = async {
                loop {
                    let (stream, _) = match listener.accept().await {
                        Ok(x) => x,
                        Err(e) => return Err::<(), std::io::Error>(e),
                    };
                    let _ = stream.set_nodelay(true);
                    tokio::task::spawn_local(serve_conn(stream, site.clone()));
                }
            };
            tokio::select! {
                r = serve => r,
                _ = stop(duration) => Ok(()),
            }
        }
    })
    .map_err(|e| e.to_string())
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();
    let site = Site {
        body: Bytes::from(
            b"Hello, world\n"
                .iter()
                .copied()
                .cycle()
                .take(args.body_bytes)
                .collect::<Vec<u8>>(),
        ),
        max_body: args.max_body,
    };
    let r = if args.kernel {
        run_kernel(&args, site).map_err(|e| e.to_string())
    } else {
        run_xstack(&args, site)
    };
    if let Err(e) = r {
        eprintln!("hyper_server: {e}");
        std::process::exit(1);
    }
}
