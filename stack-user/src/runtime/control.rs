//! The local control socket: a Unix stream socket per running instance, at
//! `/run/xstack/<iface>.<netns>.sock`. A client writes one command line
//! (`stats`) and reads one JSON document back. Filesystem sockets (not
//! abstract ones) so that `xstack stats` finds an instance running in another
//! network namespace.

use std::{
    io::{BufRead, BufReader, Read, Write},
    os::unix::net::{UnixListener, UnixStream},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::Duration,
};

use thiserror::Error;

use crate::runtime::sys::{netns_id, run_dir};

/// Errors of the control socket.
#[derive(Debug, Error)]
pub enum ControlError {
    /// No instance runs.
    #[error("no running xstack instance{0}; start one with `xstack serve --iface IF --ip ADDR --port P`")]
    NoInstance(String),
    /// More than one instance runs and none was chosen.
    #[error("several xstack instances are running ({0}); choose one with --iface")]
    Ambiguous(String),
    /// Socket I/O failed.
    #[error("control socket {path}: {source}")]
    Io {
        /// Socket path.
        path: String,
        /// OS error.
        source: std::io::Error,
    },
    /// The instance answered something that is not JSON.
    #[error("control socket {0}: the instance answered with invalid JSON")]
    BadReply(String),
}

/// Path of the control socket of `iface` in this network namespace.
pub fn socket_path(iface: &str) -> PathBuf {
    run_dir().join(format!("{iface}.{}.sock", netns_id()))
}

/// A running control server; stops and removes its socket when dropped.
pub struct ControlServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ControlServer {
    /// Serves `stats` requests with the JSON produced by `stats`.
    pub fn start<F>(iface: &str, stats: F) -> Result<ControlServer, ControlError>
    where
        F: Fn() -> serde_json::Value + Send + 'static,
    {
        Self::start_with(
            iface,
            stats,
            |_: &str| serde_json::json!({"error": "this instance takes no settings"}),
        )
    }

    /// Serves `stats`, and `set key=value ...` with `set` (which answers
    /// with a JSON document: `{"ok": true, ...}` or `{"error": ...}`).
    pub fn start_with<F, S>(iface: &str, stats: F, set: S) -> Result<ControlServer, ControlError>
    where
        F: Fn() -> serde_json::Value + Send + 'static,
        S: Fn(&str) -> serde_json::Value + Send + 'static,
    {
        let path = socket_path(iface);
        let io = |source| ControlError::Io {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        // The caller holds the interface lock, so a socket file here is stale.
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).map_err(io)?;
        listener.set_nonblocking(true).map_err(io)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("xstack-control".into())
            .spawn(move || {
                while !stop2.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let _ = handle(stream, &stats, &set);
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        Err(e) => {
                            log::warn!("control socket: {e}");
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                }
            })
            .map_err(io)?;
        Ok(ControlServer {
            path,
            stop,
            thread: Some(thread),
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn handle<F: Fn() -> serde_json::Value, S: Fn(&str) -> serde_json::Value>(
    stream: UnixStream,
    stats: &F,
    set: &S,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut line = String::new();
    BufReader::new(&stream).take(4096).read_line(&mut line)?;
    let mut w = &stream;
    match line.trim() {
        "stats" => {
            let v = stats();
            serde_json::to_writer(&mut w, &v)?;
        }
        l if l.starts_with("set ") => {
            let v = set(&l[4..]);
            serde_json::to_writer(&mut w, &v)?;
        }
        other => {
            let v = serde_json::json!({ "error": format!("unknown command {other:?}; try \"stats\" or \"set key=value\"") });
            serde_json::to_writer(&mut w, &v)?;
        }
    }
    w.write_all(b"\n")
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Running instances: (interface, socket path), from the socket files.
pub fn instances() -> Vec<(String, PathBuf)> {
    let Ok(dir) = std::fs::read_dir(run_dir()) else {
        return Vec::new();
    };
    let mut out: Vec<(String, PathBuf)> = dir
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let stem = name.strip_suffix(".sock")?;
            let (iface, _ns) = stem.rsplit_once('.')?;
            Some((iface.to_string(), e.path()))
        })
        .collect();
    out.sort();
    out
}

/// Asks the instance on `iface` (or the only one) for its counters.
pub fn query_stats(iface: Option<&str>) -> Result<serde_json::Value, ControlError> {
    query(iface, "stats")
}

/// Sends `set key=value ...` to the instance on `iface` (or the only one).
pub fn set(iface: Option<&str>, settings: &[String]) -> Result<serde_json::Value, ControlError> {
    query(iface, &format!("set {}", settings.join(" ")))
}

/// Sends one command line and reads the JSON answer.
pub fn query(iface: Option<&str>, command: &str) -> Result<serde_json::Value, ControlError> {
    let all = instances();
    let chosen: Vec<_> = all
        .iter()
        .filter(|(i, _)| iface.is_none_or(|want| want == i))
        .collect();
    let (_, path) = match chosen.as_slice() {
        [] => {
            return Err(ControlError::NoInstance(
                iface.map(|i| format!(" on {i}")).unwrap_or_default(),
            ))
        }
        [one] => *one,
        many => {
            return Err(ControlError::Ambiguous(
                many.iter()
                    .map(|(i, _)| i.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            ))
        }
    };
    let io = |source| ControlError::Io {
        path: path.display().to_string(),
        source,
    };
    let mut s = match UnixStream::connect(path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            // The instance died without removing its socket.
            let _ = std::fs::remove_file(path);
            return Err(ControlError::NoInstance(
                iface.map(|i| format!(" on {i}")).unwrap_or_default(),
            ));
        }
        Err(e) => return Err(io(e)),
    };
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(io)?;
    s.write_all(format!("{}\n", command.replace('\n', " ")).as_bytes())
        .map_err(io)?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).map_err(io)?;
    serde_json::from_str(&buf).map_err(|_| ControlError::BadReply(path.display().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_roundtrip_over_the_socket() {
        crate::runtime::sys::use_test_run_dir();
        let server =
            ControlServer::start("testif0", || serde_json::json!({"rx_packets": 42})).unwrap();
        let v = query_stats(Some("testif0")).unwrap();
        assert_eq!(v["rx_packets"], 42);
        assert!(matches!(
            query_stats(Some("other0")),
            Err(ControlError::NoInstance(_))
        ));
        drop(server);
        assert!(query_stats(Some("testif0")).is_err());
    }
}
