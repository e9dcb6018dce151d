//! Small system facts: privileges, interfaces, network namespaces, and the
//! per-instance lock files that keep two xstack instances off one address.

use std::{
    fs::File,
    io::{Read, Seek, Write},
    net::Ipv4Addr,
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
        addr: Ipv4Addr,
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
    Ok(Interface {
        name: name.into(),
        index,
        mac,
        rx_queues,
        max_rx_queues,
        driver,
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
    /// `struct ifreq` with the `ifr_data` member.
    #[repr(C)]
    struct IfreqData {
        name: [u8; libc::IFNAMSIZ],
        data: *mut libc::c_void,
        _pad: [u8; 16],
    }
    const ETHTOOL_GCHANNELS: u32 = 0x3c;
    const SIOCETHTOOL: libc::c_ulong = 0x8946;
    if name.len() >= libc::IFNAMSIZ {
        return None;
    }
    let mut ch = EthtoolChannels {
        cmd: ETHTOOL_GCHANNELS,
        ..Default::default()
    };
    let mut ifr = IfreqData {
        name: [0; libc::IFNAMSIZ],
        data: (&mut ch as *mut EthtoolChannels).cast(),
        _pad: [0; 16],
    };
    ifr.name[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: a datagram socket we close below; the ioctl reads `ifr` and
    // writes `ch`, both alive and of the layout the kernel expects.
    let ok = unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return None;
        }
        let r = libc::ioctl(fd, SIOCETHTOOL as _, &mut ifr);
        libc::close(fd);
        r == 0
    };
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

/// An exclusive `flock` on a file that records the owner's pid; released when
/// dropped or when the process dies.
#[derive(Debug)]
pub struct InstanceLock {
    file: File,
    path: PathBuf,
}

impl InstanceLock {
    fn acquire(path: PathBuf) -> Result<Result<InstanceLock, String>, SysError> {
        let io = |source| SysError::Io {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        // SAFETY: flock on an fd we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            return Ok(Err(pid.trim().to_string()));
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        write!(file, "{}", std::process::id()).map_err(io)?;
        Ok(Ok(InstanceLock { file, path }))
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
    pub fn address(addr: Ipv4Addr) -> Result<InstanceLock, SysError> {
        let path = run_dir().join(format!("addr-{addr}.{}.lock", netns_id()));
        Self::acquire(path)?.map_err(|pid| SysError::AddressInUse { addr, pid })
    }
}

impl InstanceLock {
    /// The lock file (kept after release: removing it would let a waiter
    /// and a newcomer lock two different inodes of one path).
    pub fn path(&self) -> &Path {
        let _ = &self.file;
        &self.path
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
        let addr = Ipv4Addr::new(198, 18, 200, 1);
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
    fn loopback_interface_facts() {
        let lo = interface("lo").unwrap();
        assert!(lo.index > 0);
        assert!(lo.rx_queues >= 1);
        assert!(interface("no-such-if0").is_err());
        assert!(interface("../etc").is_err());
    }
}
