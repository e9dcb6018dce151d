//! An echo server on xstack: `xstack::rt` runs one thread per AF_XDP
//! queue, each with its own tokio runtime, and every connection is echoed
//! by a task on the queue that owns it, through `xstack::net` — the same
//! code as on tokio's own sockets.
//!
//! ```text
//! sudo target/release/examples/echo_server --iface veth0 --ip 198.18.0.2 --port 7
//! sudo target/release/examples/echo_server --iface veth0 --ip 198.18.0.2,2001:2::2 --port 7
//! ```
//!
//! With addresses of both families the one listener (bound to the port
//! alone) accepts connections of both.
//!
//! Stops on SIGINT or SIGTERM, or after `--duration` seconds.

use std::{cell::Cell, net::IpAddr, rc::Rc, time::Duration};

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use xstack::net::{TcpListener, TcpStream};

#[derive(Parser, Debug)]
#[command(about = "Echo server on xstack (AF_XDP, thread per queue)")]
struct Args {
    /// Interface to attach to.
    #[arg(long)]
    iface: String,
    /// The stack's addresses, either family (one IPv4 and any IPv6 ones,
    /// comma-separated or repeated; not configured on the kernel
    /// interface).
    #[arg(long, value_delimiter = ',', required = true)]
    ip: Vec<IpAddr>,
    /// Port to serve.
    #[arg(long, default_value_t = 7)]
    port: u16,
    /// Queues (default: every rx queue of the interface).
    #[arg(long)]
    queues: Option<u32>,
    /// Spin instead of sleeping between rounds.
    #[arg(long)]
    busy_poll: bool,
    /// Stop after this many seconds.
    #[arg(long)]
    duration: Option<u64>,
}

/// Echoes until the peer half-closes, then half-closes in turn.
async fn echo(mut s: TcpStream) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            s.shutdown().await?;
            return Ok(total);
        }
        s.write_all(&buf[..n]).await?;
        total += n as u64;
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

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();
    let mut b = xstack::rt::Builder::new()
        .iface(&args.iface)
        .port(args.port)
        .busy_poll(args.busy_poll);
    for ip in &args.ip {
        b = b.ip(*ip);
    }
    if let Some(q) = args.queues {
        b = b.queues(q);
    }
    let rt = match b.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("echo_server: {e}");
            std::process::exit(1);
        }
    };
    let ips: Vec<String> = args.ip.iter().map(ToString::to_string).collect();
    eprintln!(
        "echo_server: {} port {} on {} ({} queue(s))",
        ips.join(", "),
        args.port,
        args.iface,
        rt.queues()
    );
    let port = args.port;
    let duration = args.duration;
    let r = rt.run(|net| async move {
        let listener = TcpListener::bind(&net, port).await?;
        eprintln!(
            "echo_server: queue {} listens on {}",
            net.queue(),
            listener.local_addr()?
        );
        let (conns, bytes) = (Rc::new(Cell::new(0u64)), Rc::new(Cell::new(0u64)));
        let serve = async {
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(x) => x,
                    Err(e) => return Err::<(), std::io::Error>(e),
                };
                conns.set(conns.get() + 1);
                let bytes = bytes.clone();
                tokio::task::spawn_local(async move {
                    match echo(stream).await {
                        Ok(n) => bytes.set(bytes.get() + n),
                        Err(e) => log::debug!("{peer}: {e}"),
                    }
                });
            }
        };
        let r = tokio::select! {
            r = serve => r,
            _ = stop(duration) => Ok(()),
        };
        eprintln!(
            "echo_server: queue {}: {} connection(s), {} byte(s) echoed",
            net.queue(),
            conns.get(),
            bytes.get()
        );
        r
    });
    if let Err(e) = r {
        eprintln!("echo_server: {e}");
        std::process::exit(1);
    }
}
