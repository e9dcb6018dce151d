//! The local control socket: a Unix stream socket per running instance, at
//! `/run/xstack/<iface>.<netns>.sock`. A client writes one command line
//! (`stats`) and reads one JSON document back. Filesystem sockets (not
//! abstract ones) so that `xstack stats` finds an instance running in another
//! network namespace.
//!
//! Who may do what: the socket is created mode 0600, owned by the user that
//! runs `xstack serve` (root, or the user holding its capabilities), inside
//! the run directory (mode 0755). Only that user and root can connect. Every
//! connection's peer uid is read with `SO_PEERCRED` (unix(7)); reading
//! (`stats`) is open to whoever could connect, changing (`set`) is refused
//! with a one-line error unless the peer is root or the owner — a second
//! line of defence should the socket's mode be widened.
//!
//! No window where the socket is reachable by others: it is bound inside a
//! fresh mode-0700 directory, chmod-ed to 0600 there, then renamed into the
//! run directory (a rename keeps the bound socket; no umask games, which
//! would affect every thread of the process).

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

use crate::runtime::sys::{create_run_dir, euid, netns_id, peer_uid, run_dir};

/// What a control command does to the instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Reads counters (`stats`; unknown commands, which only get an error).
    Read,
    /// Changes state (`set ...`).
    Change,
}

/// The access `command` (one request line) needs.
pub fn access(command: &str) -> Access {
    let command = command.trim();
    if command == "set" || command.starts_with("set ") {
        Access::Change
    } else {
        Access::Read
    }
}

/// Whether a peer of uid `peer` (`None`: its credentials could not be read)
/// may run `command` on an instance owned by uid `owner`. Reads are open to
/// whoever could connect (the socket's mode 0600 limits that to the owner
/// and root); changes only to root and the owner. `Err` is the one-line
/// reason sent back.
pub fn authorize(peer: Option<u32>, owner: u32, command: &str) -> Result<(), String> {
    match (access(command), peer) {
        (Access::Read, _) => Ok(()),
        (Access::Change, Some(uid)) if uid == 0 || uid == owner => Ok(()),
        (Access::Change, Some(uid)) => Err(format!(
            "set refused: uid {uid} is neither root nor the owner of this instance (uid {owner}); run `xstack config` as one of them"
        )),
        (Access::Change, None) => Err(format!(
            "set refused: the peer's credentials (SO_PEERCRED) could not be read; only root or uid {owner} may change settings"
        )),
    }
}

/// Binds a listening socket at `path`, mode 0600, never reachable by others
/// (see the module comment): bind in a fresh 0700 directory, chmod, rename.
fn bind_private(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    use std::sync::atomic::AtomicU32;
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("control socket path has no directory"))?;
    create_run_dir(dir)?;
    let tmp = dir.join(format!(
        ".bind-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    // A leftover of an earlier process that had our pid.
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::DirBuilder::new().mode(0o700).create(&tmp)?;
    let inner = tmp.join("s");
    let bound = (|| {
        let listener = UnixListener::bind(&inner)?;
        std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o600))?;
        // Atomically replaces a stale socket of a dead instance (the caller
        // holds the interface lock, so no live one is there).
        std::fs::rename(&inner, path)?;
        Ok(listener)
    })();
    let _ = std::fs::remove_file(&inner);
    let _ = std::fs::remove_dir(&tmp);
    bound
}

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
    /// The socket is not ours to connect to.
    #[error("control socket {path} is private to uid {owner} (the user running `xstack serve`): permission denied; run this as that user or as root")]
    Forbidden {
        /// Socket path.
        path: String,
        /// Uid owning the socket.
        owner: u32,
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
            |line: &str| serde_json::json!({"error": format!("this instance answers only \"stats\", not {line:?}")}),
        )
    }

    /// Serves `stats`, and hands every other command line (`set key=value
    /// ...`, `sockets`) to `other`, which answers with a JSON document
    /// (`{"error": ...}` for what it does not know).
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
        let listener = bind_private(&path).map_err(io)?;
        if let Err(e) = listener.set_nonblocking(true) {
            let _ = std::fs::remove_file(&path);
            return Err(io(e));
        }
        let owner = euid();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("xstack-control".into())
            .spawn(move || {
                while !stop2.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let _ = handle(stream, owner, &stats, &set);
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
    owner: u32,
    stats: &F,
    set: &S,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut line = String::new();
    BufReader::new(&stream).take(4096).read_line(&mut line)?;
    let mut w = &stream;
    let peer = peer_uid(&stream);
    if let Err(why) = authorize(peer, owner, &line) {
        log::warn!("control socket: {why}");
        serde_json::to_writer(&mut w, &serde_json::json!({ "error": why }))?;
        return w.write_all(b"\n");
    }
    match line.trim() {
        "stats" => {
            let v = stats();
            serde_json::to_writer(&mut w, &v)?;
        }
        other => {
            let v = set(other);
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

/// Asks the instance on `iface` (or the only one) for its connections
/// (`xstack ss`).
pub fn query_sockets(iface: Option<&str>) -> Result<serde_json::Value, ControlError> {
    query(iface, "sockets")
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
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            use std::os::unix::fs::MetadataExt;
            let owner = std::fs::metadata(path).map(|m| m.uid()).unwrap_or(0);
            return Err(ControlError::Forbidden {
                path: path.display().to_string(),
                owner,
            });
        }
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

    #[test]
    fn the_control_socket_is_created_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        crate::runtime::sys::use_test_run_dir();
        let server = ControlServer::start("modeif0", || serde_json::json!({})).unwrap();
        let mode = std::fs::metadata(server.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o600);
        // No temporary bind directory is left next to it.
        let dir = server.path().parent().unwrap();
        let left: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with(".bind-"))
            .collect();
        assert!(left.is_empty(), "{left:?}");
        assert!(query_stats(Some("modeif0")).is_ok());
    }

    #[test]
    fn set_is_refused_unless_the_peer_is_root_or_the_owner() {
        let set = "set syncookies=always";
        assert_eq!(authorize(Some(0), 1000, set), Ok(()));
        assert_eq!(authorize(Some(1000), 1000, set), Ok(()));
        let err = authorize(Some(65534), 1000, set).unwrap_err();
        assert!(err.contains("refused") && err.contains("65534"), "{err}");
        assert!(!err.contains('\n'));
        assert!(authorize(None, 1000, set).is_err());
        assert!(authorize(Some(65534), 0, "set").is_err());
        assert!(authorize(Some(65534), 0, "  set  x=1\n").is_err());
    }

    #[test]
    fn stats_is_open_to_whoever_can_connect() {
        for peer in [Some(0), Some(1000), Some(65534), None] {
            assert_eq!(authorize(peer, 1000, "stats\n"), Ok(()));
            assert_eq!(authorize(peer, 1000, "settings"), Ok(()));
        }
    }
}
