//! Small system facts: privileges, interfaces, network namespaces, and the
//! per-instance lock files that keep two xstack instances off one address.

use std::{
    fs::File,
    io::{Read, Seek, Write},
    os::{fd::AsRawFd, unix::fs::MetadataExt},
    path::{Path, PathBuf},
};

use thiserror::Error;

use crate::wire::ethernet::Mac;

/// Directory of control sockets and lock files.
pub fn run_dir() -> PathBuf {
    std::env::var_os("XSTACK_RUN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/xstack"))
}

/// Errors of this module.
#[derive(Debug, Error)]
pub enum SysError {
    /// Missing privileges.
    #[error("{what} needs root or the capabilities {missing}; run it with sudo, or grant them with `setcap cap_bpf,cap_net_admin,cap_net_raw,cap_perfmon+ep $(command -v xstack)`")]
    NotPrivileged {
        /// The command.
        what: String,
        /// Missing capabilities.
        missing: String,
    },
    /// Interface missing.
    #[error("interface {0} does not exist in this network namespace; check `ip link` (or run inside the namespace with `ip netns exec NS`)")]
    UnknownInterface(String),
    /// Address taken by another instance.
    #[error("{addr} is already served by another xstack instance (pid {pid}) in this network namespace; stop it first or choose another --ip")]
    AddressInUse {
        /// Address.
        addr: std::net::IpAddr,
        /// Owner pid.
        pid: String,
    },
    /// Interface taken by another instance.
    #[error("interface {iface} is already driven by another xstack instance (pid {pid}); stop it first (`kill {pid}`)")]
    InterfaceInUse {
        /// Interface.
        iface: String,
        /// Owner pid.
        pid: String,
    },
    /// I/O error on a lock file.
    #[error("{path}: {source}")]
    Io {
        /// Path.
        path: String,
        /// OS error.
        source: std::io::Error,
    },
}

const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Effective capability set of this process, from /proc/self/status.
pub fn effective_caps() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

/// Checks the capabilities needed to load XDP and open AF_XDP sockets:
/// CAP_BPF (or CAP_SYS_ADMIN), CAP_PERFMON (or CAP_SYS_ADMIN),
/// CAP_NET_ADMIN and CAP_NET_RAW.
pub fn check_privileges(what: &str) -> Result<(), SysError> {
    let caps = effective_caps();
    let has = |c: u32| caps & (1u64 << c) != 0;
    let mut missing = Vec::new();
    if !has(CAP_BPF) && !has(CAP_SYS_ADMIN) {
        missing.push("CAP_BPF");
    }
    if !has(CAP_PERFMON) && !has(CAP_SYS_ADMIN) {
        missing.push("CAP_PERFMON");
    }
    if !has(CAP_NET_ADMIN) {
        missing.push("CAP_NET_ADMIN");
    }
    if !has(CAP_NET_RAW) {
        missing.push("CAP_NET_RAW");
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(SysError::NotPrivileged {
            what: what.into(),
            missing: missing.join("+"),
        })
    }
}

/// Facts about a network interface.
#[derive(Clone, Debug)]
pub struct Interface {
    /// Name.
    pub name: String,
    /// Index.
    pub index: u32,
    /// MAC address.
    pub mac: Mac,
    /// Active rx queues: the channels in use (`ethtool -l`, "Current
    /// hardware settings": RX + Combined), which is how many queues an
    /// AF_XDP socket can bind to. Falls back to the allocated count where
    /// the driver does not report channels.
    pub rx_queues: u32,
    /// Rx queues the device has allocated (`ip -d link`'s `numrxqueues`;
    /// `ethtool -l`'s maximum for veth). A plain veth has 2 on a 2-CPU
    /// machine but only 1 active: binding queue 1 fails with EINVAL.
    pub max_rx_queues: u32,
    /// Driver name, when known.
    pub driver: String,
    /// MTU in bytes (`ip link`'s `mtu`): the largest IP packet the link
    /// carries, which bounds the MSS we offer and use.
    pub mtu: u32,
}

/// A 128-bit secret shared by every process of this boot and unknown off
/// the host: the kernel's random boot id (`/proc/sys/kernel/random/boot_id`,
/// a UUID drawn at boot). TCP timestamp offsets are keyed with it, as
/// Linux keys `secure_tcp_ts_off` with a per-boot secret, so that TSvals
/// between two addresses rise across processes. `None` when it cannot be
/// read or parsed.
pub fn boot_key() -> Option<[u8; 16]> {
    let text = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    parse_uuid(text.trim())
}

/// The 16 bytes of a UUID written as 32 hex digits with or without dashes.
fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let hex: Vec<u8> = s.bytes().filter(|&b| b != b'-').collect();
    if hex.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        let pair = std::str::from_utf8(pair).ok()?;
        out[i] = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

/// Whether a kernel interface of the calling thread's network namespace
/// has `ip` (`ip -json -4 addr show`). `None` when that cannot be read.
pub fn address_on_kernel(ip: impl Into<std::net::IpAddr>) -> Option<bool> {
    let ip = ip.into();
    let family = if ip.is_ipv4() { "-4" } else { "-6" };
    let out = std::process::Command::new("ip")
        .args(["-json", family, "addr", "show"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let want = ip.to_string();
    Some(v.as_array()?.iter().any(|link| {
        link["addr_info"].as_array().is_some_and(|addrs| {
            addrs
                .iter()
                .any(|a| a["local"].as_str() == Some(want.as_str()))
        })
    }))
}

/// Reads interface facts of the calling thread's network namespace (over
/// rtnetlink, with `ip -details -json link show`, so it is right however the
/// namespace was entered: `ip netns exec`, `nsenter` or `setns`).
pub fn interface(name: &str) -> Result<Interface, SysError> {
    if name.is_empty()
        || name.len() > 15
        || name.contains('/')
        || name.contains(char::is_whitespace)
    {
        return Err(SysError::UnknownInterface(name.into()));
    }
    let out = std::process::Command::new("ip")
        .args(["-details", "-json", "link", "show", "dev", name])
        .output()
        .map_err(|source| SysError::Io {
            path: "ip (iproute2; install it with `apt-get install iproute2`)".into(),
            source,
        })?;
    if !out.status.success() {
        return Err(SysError::UnknownInterface(name.into()));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|_| SysError::UnknownInterface(name.into()))?;
    let link = &v[0];
    let index = link["ifindex"].as_u64().unwrap_or(0) as u32;
    if index == 0 {
        return Err(SysError::UnknownInterface(name.into()));
    }
    let mac = link["address"]
        .as_str()
        .and_then(|a| a.parse().ok())
        .unwrap_or_default();
    let max_rx_queues = link["num_rx_queues"].as_u64().unwrap_or(1).max(1) as u32;
    let rx_queues = active_rx_queues(name)
        .unwrap_or(max_rx_queues)
        .clamp(1, max_rx_queues);
    let driver = link["linkinfo"]["info_kind"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| {
            std::fs::read_link(Path::new("/sys/class/net").join(name).join("device/driver"))
                .ok()
                .and_then(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()))
                .unwrap_or_default()
        });
    let mtu = link["mtu"].as_u64().unwrap_or(1500) as u32;
    Ok(Interface {
        name: name.into(),
        index,
        mac,
        rx_queues,
        max_rx_queues,
        driver,
        mtu,
    })
}

/// The active rx channel count of `name` (RX + Combined of `ethtool -l`'s
/// current settings), read with the `ETHTOOL_GCHANNELS` ioctl on a socket of
/// the calling thread's network namespace. `None` when the driver does not
/// report channels or reports none.
fn active_rx_queues(name: &str) -> Option<u32> {
    /// `struct ethtool_channels` (linux/ethtool.h).
    #[repr(C)]
    #[derive(Default)]
    struct EthtoolChannels {
        cmd: u32,
        max_rx: u32,
        max_tx: u32,
        max_other: u32,
        max_combined: u32,
        rx_count: u32,
        tx_count: u32,
        other_count: u32,
        combined_count: u32,
    }
    const ETHTOOL_GCHANNELS: u32 = 0x3c;
    let mut ch = EthtoolChannels {
        cmd: ETHTOOL_GCHANNELS,
        ..Default::default()
    };
    // SAFETY: `EthtoolChannels` is the kernel's `struct ethtool_channels`.
    let ok = unsafe { ethtool_ioctl(name, &mut ch) };
    let n = ch.rx_count + ch.combined_count;
    (ok && n > 0).then_some(n)
}

/// Memory of this process: what the kernel holds for it and what the
/// allocator has handed out, so that a soak can tell a leak (heap in use
/// grows) from allocator retention (RSS grows, heap in use does not).
#[derive(Clone, Copy, Debug, Default, serde::Serialize)]
pub struct MemoryUsage {
    /// Resident set size (`/proc/self/statm`).
    pub rss_bytes: u64,
    /// Bytes the allocator has handed out and not had back (glibc
    /// `mallinfo2`: `uordblks + hblkhd`).
    pub heap_in_use_bytes: u64,
    /// Bytes the allocator holds from the kernel (`arena + hblkhd`).
    pub heap_held_bytes: u64,
}

/// Resident set size of process `pid` ("self" for this one) in bytes, from
/// `/proc/PID/statm`; 0 when it cannot be read.
pub fn rss_bytes(pid: &str) -> u64 {
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    std::fs::read_to_string(format!("/proc/{pid}/statm"))
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * page)
}

/// This process's [`MemoryUsage`].
pub fn memory() -> MemoryUsage {
    // SAFETY: mallinfo2 only reads the allocator's counters.
    let m = unsafe { libc::mallinfo2() };
    MemoryUsage {
        rss_bytes: rss_bytes("self"),
        heap_in_use_bytes: (m.uordblks + m.hblkhd) as u64,
        heap_held_bytes: (m.arena + m.hblkhd) as u64,
    }
}

/// Inode of this thread's network namespace: identifies the namespace in
/// lock and socket names (interface names repeat across namespaces).
pub fn netns_id() -> u64 {
    std::fs::metadata("/proc/thread-self/ns/net")
        .or_else(|_| std::fs::metadata("/proc/self/ns/net"))
        .map(|m| m.ino())
        .unwrap_or(0)
}

/// Creates the run directory (and its parents) where missing, mode 0755:
/// anyone may look up an instance's socket, only its creator (root, or the
/// user holding serve's capabilities) may add or remove entries. An existing
/// directory keeps its mode; one that others may write to without the
/// sticky bit is reported, since they could replace sockets and locks.
pub fn create_run_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)?;
    let mode = std::fs::metadata(dir)?.permissions().mode();
    if mode & 0o022 != 0 && mode & 0o1000 == 0 {
        log::warn!(
            "{}: writable by other users (mode {:o}); they could replace control sockets and lock files: `chmod 755 {}`",
            dir.display(),
            mode & 0o7777,
            dir.display()
        );
    }
    Ok(())
}

/// Effective uid of this process.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// Uid of the process at the other end of a connected Unix socket, as the
/// kernel recorded it at connect time (`SO_PEERCRED`, unix(7)); `None` if it
/// cannot be read.
pub fn peer_uid(sock: &impl AsRawFd) -> Option<u32> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`, which we own.
    let r = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    (r == 0 && len as usize == std::mem::size_of::<libc::ucred>()).then_some(cred.uid)
}

/// An exclusive `flock` on a file that records the owner's pid; the file is
/// removed when the lock is dropped (clean exit, error return), and the
/// kernel drops the flock when the process dies however it dies.
///
/// The flock, not the pid, says whether a lock is held: a file left by an
/// instance killed with SIGKILL (its pid gone, or reused by some other
/// process) has no flock on it and is reclaimed; [`InstanceLock::reclaimed`]
/// says so, for the caller to log once it has started (so that an error
/// after the lock stays a one-line message).
///
/// Removing a lock file is safe with this protocol: the holder unlinks the
/// path *before* it lets go of the flock, and a newcomer, after it got the
/// flock, checks that the path still names the inode it locked (else it
/// locked a file that was just removed, and starts over).
#[derive(Debug)]
pub struct InstanceLock {
    file: File,
    path: PathBuf,
    reclaimed: Option<String>,
}

/// How many times [`InstanceLock::acquire`] starts over when the file it
/// locked was removed under it (each time another instance exited between
/// our open and our flock).
const LOCK_ATTEMPTS: u32 = 16;

impl InstanceLock {
    fn acquire(path: PathBuf) -> Result<Result<InstanceLock, String>, SysError> {
        let io = |source| SysError::Io {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent() {
            create_run_dir(dir).map_err(io)?;
        }
        for _ in 0..LOCK_ATTEMPTS {
            let mut file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(io)?;
            // SAFETY: flock on an fd we own.
            let locked =
                unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = pid.trim().to_string();
            if !locked {
                return Ok(Err(pid));
            }
            // The holder we raced with removed the file before unlocking it:
            // our flock is on an orphan inode.
            let ours = file.metadata().map_err(io)?;
            match std::fs::metadata(&path) {
                Ok(now) if now.dev() == ours.dev() && now.ino() == ours.ino() => {}
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io(e)),
            }
            file.set_len(0).map_err(io)?;
            file.rewind().map_err(io)?;
            write!(file, "{}", std::process::id()).map_err(io)?;
            return Ok(Ok(InstanceLock {
                file,
                path,
                reclaimed: (!pid.is_empty()).then_some(pid),
            }));
        }
        Err(io(std::io::Error::other(
            "the lock file kept being removed while being locked; try again",
        )))
    }

    /// Locks interface `iface` of this namespace for this process.
    pub fn interface(iface: &str) -> Result<InstanceLock, SysError> {
        let path = run_dir().join(format!("iface-{iface}.{}.lock", netns_id()));
        Self::acquire(path)?.map_err(|pid| SysError::InterfaceInUse {
            iface: iface.into(),
            pid,
        })
    }

    /// Locks address `addr` of this namespace for this process.
    pub fn address(addr: impl Into<std::net::IpAddr>) -> Result<InstanceLock, SysError> {
        let addr = addr.into();
        let path = run_dir().join(format!("addr-{addr}.{}.lock", netns_id()));
        Self::acquire(path)?.map_err(|pid| SysError::AddressInUse { addr, pid })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// When the lock file was stale (left by an instance that ended without
    /// removing it), a one-line note saying that it was reclaimed.
    pub fn reclaimed(&self) -> Option<String> {
        self.reclaimed.as_ref().map(|pid| {
            format!(
                "{}: reclaimed a stale lock file (pid {pid} did not hold it: that instance ended without removing it)",
                self.path.display()
            )
        })
    }
}

impl Drop for InstanceLock {
    fn drop(&mut self) {
        // Unlink while still holding the flock (see the type's comment);
        // closing `file` afterwards releases it. Only our own inode: a file
        // someone put in its place is theirs.
        let same = match (self.file.metadata(), std::fs::metadata(&self.path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        };
        if same {
            if let Err(e) = std::fs::remove_file(&self.path) {
                log::warn!("removing the lock file {}: {e}", self.path.display());
            }
        }
        // SAFETY: unlock an fd we own (closing it would too).
        unsafe { libc::flock(self.file.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// SIGINT/SIGTERM delivered synchronously: blocked in every thread (call
/// [`Signals::block`] before spawning any) and collected with `sigtimedwait`.
pub struct Signals {
    set: libc::sigset_t,
}

impl Signals {
    /// Blocks SIGINT and SIGTERM in the calling thread (threads spawned
    /// later inherit the mask).
    pub fn block() -> Signals {
        // SAFETY: plain sigset manipulation on a zeroed set.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGINT);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            Signals { set }
        }
    }

    /// Waits up to `timeout` for SIGINT or SIGTERM; returns its name.
    pub fn wait(&self, timeout: std::time::Duration) -> Option<&'static str> {
        let ts = libc::timespec {
            tv_sec: timeout.as_secs() as libc::time_t,
            tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
        };
        // SAFETY: valid set and timespec; siginfo may be null.
        let sig = unsafe { libc::sigtimedwait(&self.set, std::ptr::null_mut(), &ts) };
        match sig {
            libc::SIGINT => Some("SIGINT"),
            libc::SIGTERM => Some("SIGTERM"),
            _ => None,
        }
    }
}

/// `ip -details -json link show [dev NAME]` in the calling thread's network
/// namespace: the one link `name`, or every link with `None`. `None` when
/// `ip` fails (no such link, no iproute2).
pub fn link_details(name: Option<&str>) -> Option<Vec<serde_json::Value>> {
    let mut cmd = std::process::Command::new("ip");
    cmd.args(["-details", "-json", "link", "show"]);
    if let Some(n) = name {
        cmd.args(["dev", n]);
    }
    let out = cmd.output().ok()?;
    if !out.status.success() {
        return None;
    }
    match serde_json::from_slice(&out.stdout).ok()? {
        serde_json::Value::Array(links) => Some(links),
        _ => None,
    }
}

/// The names of the network namespaces this one knows by id (`ip -json
/// netns list-id`: the nsid a link's `link_netnsid` refers to, and the
/// /run/netns name iproute2 found for it).
pub fn netns_ids() -> Vec<(u64, String)> {
    let Ok(out) = std::process::Command::new("ip")
        .args(["-json", "netns", "list-id"])
        .output()
    else {
        return Vec::new();
    };
    let Ok(serde_json::Value::Array(ids)) = serde_json::from_slice(&out.stdout) else {
        return Vec::new();
    };
    ids.iter()
        .filter_map(|e| Some((e["nsid"].as_u64()?, e["name"].as_str()?.to_string())))
        .collect()
}

/// Runs `f` on a thread that has joined the named network namespace
/// (`/run/netns/NS`); commands it spawns and sockets it opens live there.
/// Fails (without running `f`) when the namespace cannot be opened or
/// joined (joining needs CAP_SYS_ADMIN).
pub fn in_named_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> std::io::Result<T> {
    if ns.is_empty() || ns.contains('/') || ns == "." || ns == ".." {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("bad namespace name {ns:?}"),
        ));
    }
    let file = File::open(Path::new("/run/netns").join(ns))?;
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: setns on a namespace fd we hold, affecting only this
            // thread, which ends when `f` returns.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(f())
        })
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("netns thread panicked")))
    })
}

/// The offloads of an interface that decide what XDP and AF_XDP see, as
/// `ethtool -k` reports them (read with the legacy `ETHTOOL_G*` ioctls in
/// the calling thread's network namespace).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Offloads {
    /// `tx-checksumming`: the kernel leaves the L4 checksum to the device
    /// (on veth: the frame crosses with only the pseudo-header sum).
    pub tx_checksum: bool,
    /// `rx-checksumming`.
    pub rx_checksum: bool,
    /// `tcp-segmentation-offload`.
    pub tso: bool,
    /// `generic-segmentation-offload`.
    pub gso: bool,
    /// `generic-receive-offload`.
    pub gro: bool,
    /// `large-receive-offload`.
    pub lro: bool,
    /// `rx-vlan-offload`: VLAN tags stripped into metadata before XDP.
    pub rx_vlan: bool,
}

/// Reads [`Offloads`] of `name`; `None` when the interface has no ethtool
/// operations or does not exist.
pub fn offloads(name: &str) -> Option<Offloads> {
    const ETHTOOL_GRXCSUM: u32 = 0x14;
    const ETHTOOL_GTXCSUM: u32 = 0x16;
    const ETHTOOL_GTSO: u32 = 0x1e;
    const ETHTOOL_GGSO: u32 = 0x23;
    const ETHTOOL_GFLAGS: u32 = 0x25;
    const ETHTOOL_GGRO: u32 = 0x2b;
    const ETH_FLAG_RXVLAN: u32 = 1 << 8;
    const ETH_FLAG_LRO: u32 = 1 << 15;
    let flags = ethtool_value(name, ETHTOOL_GFLAGS)?;
    let on = |cmd| ethtool_value(name, cmd).is_some_and(|v| v != 0);
    Some(Offloads {
        tx_checksum: on(ETHTOOL_GTXCSUM),
        rx_checksum: on(ETHTOOL_GRXCSUM),
        tso: on(ETHTOOL_GTSO),
        gso: on(ETHTOOL_GGSO),
        gro: on(ETHTOOL_GGRO),
        lro: flags & ETH_FLAG_LRO != 0,
        rx_vlan: flags & ETH_FLAG_RXVLAN != 0,
    })
}

/// One `struct ethtool_value` get (`cmd`) on `name` over `SIOCETHTOOL`.
fn ethtool_value(name: &str, cmd: u32) -> Option<u32> {
    /// `struct ethtool_value` (linux/ethtool.h).
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    let mut v = EthtoolValue { cmd, data: 0 };
    // SAFETY: `EthtoolValue` is the kernel's `struct ethtool_value`.
    let ok = unsafe { ethtool_ioctl(name, &mut v) };
    ok.then_some(v.data)
}

/// A NIC's receive-side scaling settings, as `ethtool -x IF` and `ethtool
/// -n IF rx-flow-hash tcp4|tcp6` show them (read with `ETHTOOL_GRSSH` and
/// `ETHTOOL_GRXFH`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RssSettings {
    /// The hash key.
    pub key: Vec<u8>,
    /// The indirection table: entry `i` is the rx queue of hashes whose
    /// low bits are `i`.
    pub indirection: Vec<u32>,
    /// The hash function, as `ETH_RSS_HASH_*` bits (1: Toeplitz).
    pub hfunc: u8,
    /// The input transform (`RXH_XFRM_*`; 0: none, the hash of the
    /// tuple as it is).
    pub input_xfrm: u8,
    /// The fields hashed for TCP over IPv4 and IPv6 (`RXH_*` bits);
    /// `None` when the driver does not say.
    pub tcp_fields: [Option<u64>; 2],
}

/// `ETH_RSS_HASH_TOP`: the Toeplitz hash.
const ETH_RSS_HASH_TOP: u8 = 1;
/// `RXH_IP_SRC | RXH_IP_DST | RXH_L4_B_0_1 | RXH_L4_B_2_3`: addresses and
/// ports.
const RXH_TUPLE4: u64 = (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7);

impl RssSettings {
    /// The settings as an [`RssTable`] that predicts the queue of a TCP
    /// frame of the family (`ipv6`), or why they cannot: another hash
    /// function than Toeplitz, a symmetric input transform, TCP hashed on
    /// fewer fields than addresses and ports (then the local port cannot
    /// choose the queue), or a key too short.
    ///
    /// [`RssTable`]: crate::wire::rss::RssTable
    pub fn table(&self, ipv6: bool) -> Result<crate::wire::rss::RssTable, String> {
        if self.hfunc & ETH_RSS_HASH_TOP == 0 {
            return Err(format!(
                "its RSS hash function is not Toeplitz (ETH_RSS_HASH bits {:#x})",
                self.hfunc
            ));
        }
        if self.input_xfrm != 0 {
            return Err(format!(
                "its RSS input is transformed (RXH_XFRM bits {:#x}, e.g. symmetric-xor)",
                self.input_xfrm
            ));
        }
        if let Some(f) = self.tcp_fields[usize::from(ipv6)] {
            if f & RXH_TUPLE4 != RXH_TUPLE4 {
                return Err(format!(
                    "it hashes TCP/IPv{} on fields {f:#x}, not addresses and ports (ethtool -N IF rx-flow-hash tcp{} sdfn)",
                    if ipv6 { 6 } else { 4 },
                    if ipv6 { 6 } else { 4 },
                ));
            }
        }
        let t = crate::wire::rss::RssTable::new(&self.key, self.indirection.clone())
            .map_err(|e| e.to_string())?;
        if !t.supports(ipv6) {
            return Err(format!(
                "its {}-byte RSS key is too short for TCP/IPv6",
                self.key.len()
            ));
        }
        Ok(t)
    }
}

/// Reads the RSS settings of `name` (in the calling thread's network
/// namespace): `ETHTOOL_GRSSH` twice (the sizes, then the key and table),
/// then `ETHTOOL_GRXFH` for TCP over each family. The error is the
/// kernel's: `EOPNOTSUPP` from a driver without RSS (veth).
pub fn rss(name: &str) -> std::io::Result<RssSettings> {
    /// `struct ethtool_rxfh` (linux/ethtool.h) without its flexible
    /// `rss_config` (the table's u32 entries, then the key's bytes).
    #[repr(C)]
    #[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
    struct EthtoolRxfh {
        cmd: u32,
        rss_context: u32,
        indir_size: u32,
        key_size: u32,
        hfunc: u8,
        input_xfrm: u8,
        rsvd8: [u8; 2],
        rsvd32: u32,
    }
    /// `struct ethtool_rxnfc` as `ETHTOOL_GRXFH` reads it (the kernel
    /// copies only these fields for that command).
    #[repr(C)]
    #[derive(Default)]
    struct EthtoolRxfhFields {
        cmd: u32,
        flow_type: u32,
        data: u64,
    }
    const ETHTOOL_GRSSH: u32 = 0x46;
    const ETHTOOL_GRXFH: u32 = 0x29;
    const TCP_V4_FLOW: u32 = 0x01;
    const TCP_V6_FLOW: u32 = 0x05;
    const HEAD: usize = std::mem::size_of::<EthtoolRxfh>() / 4;
    let mut head = EthtoolRxfh {
        cmd: ETHTOOL_GRSSH,
        ..Default::default()
    };
    // SAFETY: `EthtoolRxfh` is the kernel's structure; with both sizes 0
    // the kernel writes only the sizes and the hash function.
    unsafe { ethtool_ioctl_raw(name, (&mut head as *mut EthtoolRxfh).cast())? };
    let (indir, key) = (head.indir_size as usize, head.key_size as usize);
    if indir > 1 << 16 || key > 1024 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("implausible RSS sizes: {indir} table entries, {key}-byte key"),
        ));
    }
    // The header, the table, the key, in u32 words (aligned for both).
    let mut buf = vec![0u32; HEAD + indir + key.div_ceil(4)];
    let ask = EthtoolRxfh {
        cmd: ETHTOOL_GRSSH,
        indir_size: head.indir_size,
        key_size: head.key_size,
        ..Default::default()
    };
    buf[..HEAD].copy_from_slice(bytemuck::cast_slice(bytemuck::bytes_of(&ask)));
    // SAFETY: `buf` holds the structure and the `indir_size` u32 entries
    // and `key_size` bytes the kernel writes after it for these sizes.
    unsafe { ethtool_ioctl_raw(name, buf.as_mut_ptr().cast())? };
    let got: EthtoolRxfh = bytemuck::pod_read_unaligned(bytemuck::cast_slice(&buf[..HEAD]));
    let fields = |flow_type| {
        let mut f = EthtoolRxfhFields {
            cmd: ETHTOOL_GRXFH,
            flow_type,
            data: 0,
        };
        // SAFETY: `EthtoolRxfhFields` is what the kernel reads and writes
        // for ETHTOOL_GRXFH.
        unsafe { ethtool_ioctl_raw(name, (&mut f as *mut EthtoolRxfhFields).cast()) }
            .ok()
            .map(|()| f.data)
    };
    Ok(RssSettings {
        key: bytemuck::cast_slice::<u32, u8>(&buf[HEAD + indir..])[..key].to_vec(),
        indirection: buf[HEAD..HEAD + indir].to_vec(),
        hfunc: got.hfunc,
        input_xfrm: got.input_xfrm,
        tcp_fields: [fields(TCP_V4_FLOW), fields(TCP_V6_FLOW)],
    })
}

/// Runs the `SIOCETHTOOL` ioctl for interface `name` (of the calling
/// thread's network namespace) with `data` as `ifr_data`, on a datagram
/// socket opened and closed here. False on any failure.
///
/// # Safety
/// `T` must be the kernel structure of the ethtool command stored in its
/// first `u32` (`cmd`), so that the kernel reads and writes within it.
unsafe fn ethtool_ioctl<T>(name: &str, data: &mut T) -> bool {
    // SAFETY: the caller's promise.
    unsafe { ethtool_ioctl_raw(name, (data as *mut T).cast()) }.is_ok()
}

/// [`ethtool_ioctl`] on a raw `ifr_data`, with the kernel's error.
///
/// # Safety
/// `data` must point to the kernel structure of the ethtool command in its
/// first `u32`, with all the room the command writes.
unsafe fn ethtool_ioctl_raw(name: &str, data: *mut libc::c_void) -> std::io::Result<()> {
    /// `struct ifreq` with the `ifr_data` member.
    #[repr(C)]
    struct IfreqData {
        name: [u8; libc::IFNAMSIZ],
        data: *mut libc::c_void,
        _pad: [u8; 16],
    }
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(std::io::Error::from_raw_os_error(libc::ENODEV));
    }
    let mut ifr = IfreqData {
        name: [0; libc::IFNAMSIZ],
        data,
        _pad: [0; 16],
    };
    ifr.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: a socket we close below; the ioctl reads `ifr` and, by the
    // caller's promise, reads and writes `data` within its size.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let r = libc::ioctl(fd, SIOCETHTOOL as _, &mut ifr);
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if r == 0 {
            Ok(())
        } else {
            Err(err)
        }
    }
}

/// The running kernel's release (`uname -r`), and its major and minor
/// version where they parse.
pub fn kernel_release() -> (String, Option<(u32, u32)>) {
    let rel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let mut it = rel.split(|c: char| !c.is_ascii_digit());
    let ver = match (it.next(), it.next()) {
        (Some(a), Some(b)) => a.parse().ok().zip(b.parse().ok()),
        _ => None,
    };
    (rel, ver)
}

/// Points [`run_dir`] at a per-process temporary directory (unit tests).
#[cfg(test)]
pub(crate) fn use_test_run_dir() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let dir = std::env::temp_dir().join(format!("xstack-unit-{}", std::process::id()));
        std::env::set_var("XSTACK_RUN_DIR", dir);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_address_names_the_owner() {
        use_test_run_dir();
        let addr = std::net::Ipv4Addr::new(198, 18, 200, 1);
        let first = InstanceLock::address(addr).unwrap();
        let err = InstanceLock::address(addr).unwrap_err().to_string();
        assert!(err.contains(&std::process::id().to_string()), "{err}");
        drop(first);
        // A child forked by a parallel test may hold the descriptor (and so
        // the flock) until its exec closes it: allow it a moment.
        let again = (0..100).find_map(|_| {
            InstanceLock::address(addr).ok().or_else(|| {
                std::thread::sleep(std::time::Duration::from_millis(10));
                None
            })
        });
        assert!(again.is_some(), "lock not released");
    }

    #[test]
    fn a_lock_file_is_removed_when_the_lock_is_dropped() {
        use_test_run_dir();
        let lock = InstanceLock::interface("rmtest0").unwrap();
        let path = lock.path().to_path_buf();
        assert_eq!(lock.reclaimed(), None);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            std::process::id().to_string()
        );
        drop(lock);
        assert!(!path.exists(), "{} left behind", path.display());
    }

    #[test]
    fn a_stale_lock_file_is_reclaimed() {
        use_test_run_dir();
        let addr = std::net::Ipv4Addr::new(198, 18, 200, 2);
        let path = run_dir().join(format!("addr-{addr}.{}.lock", netns_id()));
        create_run_dir(&run_dir()).unwrap();
        // What an instance killed with SIGKILL leaves: a pid, no flock.
        std::fs::write(&path, "4194304").unwrap();
        let lock = InstanceLock::address(addr).expect("stale lock reclaimed");
        let note = lock.reclaimed().expect("reclaim noted");
        assert!(note.contains("pid 4194304"), "{note}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            std::process::id().to_string()
        );
        drop(lock);
        assert!(!path.exists());
    }

    /// The remove-on-exit protocol (unlink before unlock; the newcomer
    /// checks that the path still names the inode it locked) never lets two
    /// holders in, however acquisitions and removals interleave. Removing
    /// without the inode check fails this within a few hundred rounds.
    #[test]
    fn two_holders_never_share_a_lock_while_its_file_comes_and_goes() {
        use std::sync::atomic::{AtomicU32, Ordering};
        use_test_run_dir();
        let holders = std::sync::Arc::new(AtomicU32::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let holders = holders.clone();
                std::thread::spawn(move || {
                    let mut held = 0u32;
                    for _ in 0..300 {
                        if let Ok(lock) = InstanceLock::interface("racetest0") {
                            held += 1;
                            assert_eq!(holders.fetch_add(1, Ordering::SeqCst), 0, "two holders");
                            std::thread::yield_now();
                            holders.fetch_sub(1, Ordering::SeqCst);
                            drop(lock);
                        }
                    }
                    held
                })
            })
            .collect();
        let held: u32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert!(held > 0);
    }

    #[test]
    fn peer_uid_is_the_connecting_process_uid() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        assert_eq!(peer_uid(&a), Some(euid()));
        assert_eq!(peer_uid(&b), Some(euid()));
    }

    #[test]
    fn offloads_and_kernel_release_are_read() {
        // Loopback: no LRO, no VLAN stripping, whatever the kernel.
        let lo = offloads("lo").expect("lo answers ethtool");
        assert!(!lo.lro && !lo.rx_vlan, "{lo:?}");
        assert_eq!(offloads("no-such-if0"), None);
        let (rel, ver) = kernel_release();
        assert!(!rel.is_empty() && ver.is_some(), "{rel}");
    }

    #[test]
    fn the_boot_key_is_the_boot_id_and_the_same_on_every_read() {
        assert_eq!(
            parse_uuid("0123abcd-4567-89ef-0011-223344556677"),
            Some([
                0x01, 0x23, 0xab, 0xcd, 0x45, 0x67, 0x89, 0xef, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55,
                0x66, 0x77
            ])
        );
        assert_eq!(parse_uuid("0123"), None);
        assert_eq!(parse_uuid("zz23abcd-4567-89ef-0011-223344556677"), None);
        let k = boot_key().expect("a readable boot id");
        assert_eq!(boot_key(), Some(k));
    }

    #[test]
    fn loopback_interface_facts() {
        let lo = interface("lo").unwrap();
        assert!(lo.index > 0);
        assert!(lo.rx_queues >= 1);
        assert!(interface("no-such-if0").is_err());
        assert!(interface("../etc").is_err());
    }

    #[test]
    fn a_device_without_rss_reports_the_kernels_error() {
        // The loopback device has no RSS (as veth): EOPNOTSUPP.
        let e = rss("lo").unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EOPNOTSUPP), "{e}");
        assert!(rss("no-such-if0").is_err());
    }

    #[test]
    fn rss_settings_predict_queues_only_for_a_toeplitz_hash_of_addresses_and_ports() {
        use crate::wire::rss::VERIFICATION_KEY;
        let good = RssSettings {
            key: VERIFICATION_KEY.to_vec(),
            indirection: (0..128).map(|i| i % 2).collect(),
            hfunc: ETH_RSS_HASH_TOP,
            input_xfrm: 0,
            tcp_fields: [Some(RXH_TUPLE4), None],
        };
        let t = good.table(false).unwrap();
        assert_eq!(t.indirection().len(), 128);
        // A driver that does not say which fields it hashes: the spec's
        // default for TCP (addresses and ports).
        assert!(good.table(true).is_ok());
        let cases = [
            (
                RssSettings {
                    hfunc: 1 << 1,
                    ..good.clone()
                },
                "not Toeplitz",
            ),
            (
                RssSettings {
                    input_xfrm: 1,
                    ..good.clone()
                },
                "transformed",
            ),
            (
                RssSettings {
                    tcp_fields: [Some((1 << 4) | (1 << 5)), None],
                    ..good.clone()
                },
                "not addresses and ports",
            ),
            (
                RssSettings {
                    indirection: vec![],
                    ..good.clone()
                },
                "indirection table is empty",
            ),
        ];
        for (s, why) in cases {
            let e = s.table(false).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
        let short = RssSettings {
            key: VERIFICATION_KEY[..16].to_vec(),
            ..good
        };
        assert!(short.table(false).is_ok());
        assert!(short.table(true).unwrap_err().contains("too short"));
    }
}
