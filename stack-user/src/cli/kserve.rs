//! `xstack kserve`: the same applications on Linux kernel sockets.

use std::time::Duration;

use anyhow::Result;

#[derive(clap::Args, Debug)]
pub(super) struct Args {
    /// Address and port to listen on.
    #[arg(long)]
    listen: std::net::SocketAddr,
    /// Application.
    #[arg(long, value_enum, default_value = "echo")]
    app: crate::apps::App,
    /// Body size of `--app http` responses.
    #[arg(long, default_value_t = 64)]
    response_bytes: usize,
    /// `--app http`: answer with the request's body (same Content-Length) instead of the fixed body.
    #[arg(long)]
    echo_body: bool,
    /// `--app http`: largest request body in bytes; a larger Content-Length gets 413 and the connection is closed.
    #[arg(long, default_value_t = crate::apps::http::DEFAULT_MAX_BODY)]
    max_body: u64,
    /// tokio worker threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// listen(2) backlog (capped by net.core.somaxconn).
    #[arg(long, default_value_t = 4096)]
    backlog: u32,
    /// Stop after this many seconds.
    #[arg(long)]
    duration: Option<f64>,
}

pub(super) fn run(a: Args) -> Result<()> {
    if let Some(d) = a.duration {
        if !(d > 0.0 && d.is_finite()) {
            anyhow::bail!("--duration {d} is invalid: give a positive number of seconds");
        }
    }
    let st = crate::tools::kserve::run(
        a.listen,
        a.app,
        crate::apps::http::ServerConfig {
            response_bytes: a.response_bytes,
            echo_body: a.echo_body,
            max_body: a.max_body,
        },
        a.threads,
        a.backlog,
        a.duration.map(Duration::from_secs_f64),
    )?;
    use std::sync::atomic::Ordering::Relaxed;
    println!(
        "final counters: accepted {} bytes_in {} bytes_out {} http_requests {} http_errors {}",
        st.accepted.load(Relaxed),
        st.bytes_in.load(Relaxed),
        st.bytes_out.load(Relaxed),
        st.http_requests.load(Relaxed),
        st.http_errors.load(Relaxed)
    );
    Ok(())
}
