//! The receiver core ("victim core" in `xstack bench synflood`): where
//! the CPU goes.
//!
//! On veth the receive path (XDP included) runs on the *sender's* CPU
//! unless the receiving end's NAPI is threaded. The arrangement here makes
//! the receiving end's NAPI threaded and pins it and the receiver to one
//! CPU ([`RX_CPU`]), the sender and its own end's NAPI to the other
//! ([`TX_CPU`]), so the receiver pays for what it receives as on a real
//! NIC. `xstack bench synflood` (the server is the victim), `bench rx`
//! and `bench bulk` run under it. veth runs NAPI at an end only with an
//! XDP program there or GRO on ([`set_gro`]); a Linux receiver with GRO
//! off gets the pass-through program ([`crate::datapath::sink::XdpSink`]
//! with no prefix). Measured: per-CPU busy time (`/proc/stat`), a thread's
//! CPU time (`/proc/PID/stat`) and, with `kernel.bpf_stats_enabled`, the
//! XDP program's run time per packet.

use std::{collections::BTreeSet, process::Command, time::Instant};

use anyhow::{bail, Context, Result};

/// Busy, stolen and total jiffies of one CPU line of `/proc/stat`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// user + nice + system + irq + softirq: work done on this CPU.
    pub busy: u64,
    /// steal: time the hypervisor ran something else while this (virtual)
    /// CPU had work; neither the victim's work nor idle.
    pub steal: u64,
    /// busy + steal + idle + iowait.
    pub total: u64,
}

/// Parses `/proc/stat` text into per-CPU times (index = CPU number);
/// CPUs absent from the text (offline) are left at zero.
pub fn parse_proc_stat(text: &str) -> Vec<CpuTimes> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut it = line.split_whitespace();
        let Some(name) = it.next() else { continue };
        let Some(n) = name
            .strip_prefix("cpu")
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        // user nice system idle iowait irq softirq steal (guest is in user).
        let v: Vec<u64> = it.take(8).filter_map(|x| x.parse().ok()).collect();
        if v.len() < 4 {
            continue;
        }
        let g = |i: usize| v.get(i).copied().unwrap_or(0);
        let idle = g(3) + g(4);
        let busy = g(0) + g(1) + g(2) + g(5) + g(6);
        let steal = g(7);
        if out.len() <= n {
            out.resize(n + 1, CpuTimes::default());
        }
        out[n] = CpuTimes {
            busy,
            steal,
            total: busy + steal + idle,
        };
    }
    out
}

/// Per-CPU times now.
pub fn per_cpu() -> Vec<CpuTimes> {
    parse_proc_stat(&std::fs::read_to_string("/proc/stat").unwrap_or_default())
}

/// Busy % of `cpu` between two snapshots.
pub fn busy_pct(a: &[CpuTimes], b: &[CpuTimes], cpu: usize) -> f64 {
    match (a.get(cpu), b.get(cpu)) {
        (Some(x), Some(y)) => {
            let t = y.total.saturating_sub(x.total);
            100.0 * y.busy.saturating_sub(x.busy) as f64 / t.max(1) as f64
        }
        _ => 0.0,
    }
}

/// Stolen % of `cpu` between two snapshots: the share of the time the
/// hypervisor gave this virtual CPU's turn to another guest.
pub fn steal_pct(a: &[CpuTimes], b: &[CpuTimes], cpu: usize) -> f64 {
    match (a.get(cpu), b.get(cpu)) {
        (Some(x), Some(y)) => {
            let t = y.total.saturating_sub(x.total);
            100.0 * y.steal.saturating_sub(x.steal) as f64 / t.max(1) as f64
        }
        _ => 0.0,
    }
}

/// Busy nanoseconds of `cpu` between two snapshots.
pub fn busy_ns(a: &[CpuTimes], b: &[CpuTimes], cpu: usize) -> f64 {
    match (a.get(cpu), b.get(cpu)) {
        (Some(x), Some(y)) => y.busy.saturating_sub(x.busy) as f64 * 1e9 / clk_tck(),
        _ => 0.0,
    }
}

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// utime + stime (clock ticks) from `/proc/PID/stat` text; the command
/// name may hold spaces and parentheses, so fields count from the last ')'.
pub fn parse_pid_stat(text: &str) -> Option<u64> {
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 (state) is f[0]: utime (14) is f[11], stime (15) f[12].
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// CPU time of `pids` in nanoseconds: a thread of this process counts
/// alone (`/proc/self/task/TID/stat`: `/proc/TID/stat` would sum its whole
/// thread group), any other id as its process (a `napi/*` kernel thread,
/// a server process with all its threads).
pub fn threads_ns(pids: &[i32]) -> f64 {
    pids.iter()
        .filter_map(|p| {
            std::fs::read_to_string(format!("/proc/self/task/{p}/stat"))
                .or_else(|_| std::fs::read_to_string(format!("/proc/{p}/stat")))
                .ok()
        })
        .filter_map(|s| parse_pid_stat(&s))
        .sum::<u64>() as f64
        * 1e9
        / clk_tck()
}

/// Ns per packet: `ns` spent on `packets` packets (None without packets).
pub fn ns_per_packet(ns: f64, packets: f64) -> Option<f64> {
    (packets >= 1.0 && ns >= 0.0).then(|| ns / packets)
}

/// Ns per flood packet on a core busy `busy_ns_per_s` while it also served
/// `cps` legit connections/s at `ns_per_conn` each (measured without flood):
/// what is left, over `flood_pps`.
pub fn flood_share_ns(
    busy_ns_per_s: f64,
    cps: f64,
    ns_per_conn: f64,
    flood_pps: f64,
) -> Option<f64> {
    ns_per_packet((busy_ns_per_s - cps * ns_per_conn).max(0.0), flood_pps)
}

/// Packets per second one core absorbs at `ns` per packet.
pub fn absorbs_pps(ns: f64) -> Option<f64> {
    (ns > 0.0).then(|| 1e9 / ns)
}

/// Pins thread or process `pid` (0 = the calling thread) to `cpu`.
pub fn pin(pid: i32, cpu: usize) -> Result<()> {
    // SAFETY: a zeroed cpu_set_t is valid; CPU_SET writes inside it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: set is a valid cpu_set_t of the size passed.
    let r = unsafe { libc::sched_setaffinity(pid, std::mem::size_of_val(&set), &set) };
    if r != 0 {
        bail!(
            "sched_setaffinity({pid}, cpu {cpu}): {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Sets thread `pid`'s policy: SCHED_FIFO at `priority` (1..=99), or
/// SCHED_OTHER for 0. A threaded NAPI at SCHED_FIFO preempts ordinary
/// threads on its CPU, as receive work in softirq context does behind a
/// NIC's interrupt; at SCHED_OTHER it shares the CPU fairly with whatever
/// else runs there, which on a shared machine starves the receive ring.
/// The kernel's RT throttling (`sched_rt_runtime_us`, 95% by default)
/// still leaves the other threads a share.
pub fn set_fifo(pid: i32, priority: i32) -> Result<()> {
    let policy = if priority > 0 {
        libc::SCHED_FIFO
    } else {
        libc::SCHED_OTHER
    };
    let param = libc::sched_param {
        sched_priority: priority.clamp(0, 99),
    };
    // SAFETY: a valid sched_param for the policy.
    if unsafe { libc::sched_setscheduler(pid, policy, &param) } != 0 {
        bail!(
            "sched_setscheduler({pid}, priority {priority}): {}",
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Pids of the `napi/*` kernel threads now.
pub fn napi_threads() -> BTreeSet<i32> {
    let Ok(d) = std::fs::read_dir("/proc") else {
        return BTreeSet::new();
    };
    d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm"))
                .map(|c| c.starts_with("napi/"))
                .unwrap_or(false)
        })
        .collect()
}

/// Makes `iface`'s NAPI (in namespace `ns`) threaded and returns the new
/// `napi/*` threads (names are cut at 15 characters, so they are found as
/// the threads that appear, not by name).
pub fn make_threaded(ns: &str, iface: &str) -> Result<Vec<i32>> {
    let before = napi_threads();
    // `ip netns exec` mounts the namespace's own /sys.
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "sh", "-c"])
        .arg(format!("echo 1 > /sys/class/net/{iface}/threaded"))
        .output()
        .context("ip netns exec")?;
    if !out.status.success() {
        bail!(
            "threaded NAPI on {iface}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let new: Vec<i32> = napi_threads().difference(&before).copied().collect();
    if new.is_empty() {
        bail!("threaded NAPI on {iface}: no napi/ thread appeared (no XDP program and GRO off?)");
    }
    Ok(new)
}

/// Waits until none of the threads or processes `pids` exists any more,
/// at most `limit`; true if they are all gone.
pub fn wait_gone(pids: &[i32], limit: std::time::Duration) -> bool {
    let end = std::time::Instant::now() + limit;
    loop {
        if pids
            .iter()
            .all(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
        {
            return true;
        }
        if std::time::Instant::now() >= end {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The receiver's CPU: the receiving veth end's NAPI thread and the
/// receiver (server, sink, engine).
pub const RX_CPU: usize = 0;
/// The sender's CPU: the sender (generator, client) and its own veth
/// end's NAPI thread.
pub const TX_CPU: usize = 1;

/// Makes `iface`'s NAPI (in namespace `ns`) threaded and pins its
/// `napi/*` threads to `cpu`; returns them.
pub fn thread_napi(ns: &str, iface: &str, cpu: usize) -> Result<Vec<i32>> {
    let threads = make_threaded(ns, iface)?;
    for p in &threads {
        pin(*p, cpu)?;
    }
    Ok(threads)
}

/// Turns GRO on or off at `iface` in namespace `ns` (ethtool).
pub fn set_gro(ns: &str, iface: &str, on: bool) -> Result<()> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "ethtool", "-K", iface, "gro"])
        .arg(if on { "on" } else { "off" })
        .output()
        .context("ethtool (install ethtool)")?;
    if !out.status.success() {
        bail!(
            "GRO {} at {iface}: {}",
            if on { "on" } else { "off" },
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Whether `ethtool -k` text says generic-receive-offload is on.
pub fn parse_gro(text: &str) -> Option<bool> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("generic-receive-offload:"))
        .map(|v| v.trim().starts_with("on"))
        .next()
}

/// GRO at `iface` in namespace `ns`, as `ethtool -k` reports it.
pub fn gro(ns: &str, iface: &str) -> Result<bool> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "ethtool", "-k", iface])
        .output()
        .context("ethtool (install ethtool)")?;
    parse_gro(&String::from_utf8_lossy(&out.stdout))
        .with_context(|| format!("ethtool -k {iface}: no generic-receive-offload line"))
}

/// Frames `iface` (in namespace `ns`) dropped on transmit: on veth, the
/// frames the other end's receive ring had no room for (its NAPI, or
/// backlog, did not keep up). 0 when unknown.
pub fn tx_dropped(ns: &str, iface: &str) -> u64 {
    link_stat(ns, iface)
        .and_then(|j| parse_tx_dropped(&j))
        .unwrap_or(0)
}

/// `stats64.tx.dropped` of `ip -j -s link show` output.
pub fn parse_tx_dropped(json: &[u8]) -> Option<u64> {
    parse_link_stat(json, "tx", "dropped")
}

/// Packets `iface` (in namespace `ns`) received: on a veth end that runs
/// NAPI, every frame and skb its NAPI took off the ring, whatever XDP or
/// the stack then did with it. `None` when unknown.
pub fn rx_packets(ns: &str, iface: &str) -> Option<u64> {
    link_stat(ns, iface).and_then(|j| parse_rx_packets(&j))
}

/// `stats64.rx.packets` of `ip -j -s link show` output.
pub fn parse_rx_packets(json: &[u8]) -> Option<u64> {
    parse_link_stat(json, "rx", "packets")
}

/// `ip -j -s link show dev IFACE` in namespace `ns`, as JSON bytes.
fn link_stat(ns: &str, iface: &str) -> Option<Vec<u8>> {
    Command::new("ip")
        .args(["-n", ns, "-j", "-s", "link", "show", "dev", iface])
        .output()
        .ok()
        .map(|o| o.stdout)
}

/// `stats64.DIR.FIELD` of the first link in `ip -j -s link show` output.
fn parse_link_stat(json: &[u8], dir: &str, field: &str) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_slice(json).ok()?;
    v.get(0)?.get("stats64")?.get(dir)?.get(field)?.as_u64()
}

/// The calling thread's id (for [`threads_ns`] and [`pin`]).
pub fn tid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

/// After a testbed is gone: waits (3 s at most) for its `napi/*` threads
/// to go, so the next measurement does not share its CPU with their
/// teardown; says so when they outlive the wait.
pub fn wait_napi_gone(pids: &[i32], bench: &str) {
    if !wait_gone(pids, std::time::Duration::from_secs(3)) {
        println!("{bench}: the last testbed's NAPI threads outlived 3 s; the next measurement may share its CPU with their teardown");
    }
}

/// CPU use over one interval: each CPU's busy % and each group of
/// threads' CPU % (of one core).
pub struct Meter {
    at: Instant,
    cpus: Vec<CpuTimes>,
    groups: Vec<(Vec<i32>, f64)>,
}

/// What a [`Meter`] measured.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct CpuUse {
    /// Busy % of each CPU (index = CPU number).
    pub cpu_busy_pct: Vec<f64>,
    /// CPU % of each group of threads, in the order given.
    pub threads_pct: Vec<f64>,
}

impl Meter {
    /// Starts measuring; `groups` are sets of thread or process ids.
    pub fn start(groups: Vec<Vec<i32>>) -> Meter {
        let groups = groups
            .into_iter()
            .map(|g| {
                let ns = threads_ns(&g);
                (g, ns)
            })
            .collect();
        Meter {
            at: Instant::now(),
            cpus: per_cpu(),
            groups,
        }
    }

    /// Stops measuring.
    pub fn stop(self) -> CpuUse {
        let el = self.at.elapsed().as_secs_f64().max(1e-9);
        let now = per_cpu();
        CpuUse {
            cpu_busy_pct: (0..now.len())
                .map(|c| busy_pct(&self.cpus, &now, c))
                .collect(),
            threads_pct: self
                .groups
                .iter()
                .map(|(g, ns0)| 100.0 * (threads_ns(g) - ns0).max(0.0) / (el * 1e9))
                .collect(),
        }
    }
}

/// `kernel.bpf_stats_enabled` on for its lifetime; the old value comes
/// back on drop (also on error and panic unwinding).
pub struct BpfStats {
    old: Option<String>,
}

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl BpfStats {
    /// Turns the statistics on.
    pub fn enable() -> Result<BpfStats> {
        let old = std::fs::read_to_string(BPF_STATS).context(BPF_STATS)?;
        std::fs::write(BPF_STATS, "1").context(BPF_STATS)?;
        Ok(BpfStats {
            old: Some(old.trim().to_string()),
        })
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        if let Some(o) = self.old.take() {
            let _ = std::fs::write(BPF_STATS, o);
        }
    }
}

/// The id of the XDP program attached to `iface` in namespace `ns`.
pub fn xdp_prog_id(ns: &str, iface: &str) -> Option<u32> {
    let out = Command::new("ip")
        .args(["-n", ns, "-j", "link", "show", "dev", iface])
        .output()
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v.get(0)?
        .get("xdp")?
        .get("prog")?
        .get("id")?
        .as_u64()
        .map(|x| x as u32)
}

/// (run_time_ns, run_cnt) of program `id` (needs bpf_stats_enabled).
pub fn prog_stats(id: u32) -> Option<(u64, u64)> {
    aya::programs::loaded_programs()
        .filter_map(|p| p.ok())
        .find(|p| p.id() == id)
        .map(|p| (p.run_time().as_nanos() as u64, p.run_count()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  10 0 10 100 0 0 0 0 0 0
cpu0 4 1 3 50 2 1 1 0 0 0
cpu1 6 0 7 48 0 0 0 5 0 0
intr 12345
";

    #[test]
    fn proc_stat_per_cpu() {
        let v = parse_proc_stat(STAT);
        assert_eq!(v.len(), 2);
        assert_eq!(
            v[0],
            CpuTimes {
                busy: 10,
                steal: 0,
                total: 62
            }
        );
        // Stolen time is neither this CPU's work nor idle.
        assert_eq!(
            v[1],
            CpuTimes {
                busy: 13,
                steal: 5,
                total: 66
            }
        );
    }

    #[test]
    fn steal_pct_between_snapshots() {
        let a = [CpuTimes {
            busy: 10,
            steal: 2,
            total: 100,
        }];
        let b = [CpuTimes {
            busy: 40,
            steal: 22,
            total: 200,
        }];
        assert!((steal_pct(&a, &b, 0) - 20.0).abs() < 1e-9);
        assert!((busy_pct(&a, &b, 0) - 30.0).abs() < 1e-9);
        assert_eq!(steal_pct(&a, &b, 1), 0.0);
    }

    #[test]
    fn busy_pct_between_snapshots() {
        let a = [CpuTimes {
            busy: 10,
            steal: 0,
            total: 100,
        }];
        let b = [CpuTimes {
            busy: 35,
            steal: 0,
            total: 200,
        }];
        assert!((busy_pct(&a, &b, 0) - 25.0).abs() < 1e-9);
        assert_eq!(busy_pct(&a, &b, 1), 0.0);
    }

    #[test]
    fn pid_stat_with_odd_comm() {
        let s = "42 (napi/a) b-1) S 2 0 0 0 -1 69238880 0 0 0 0 7 5 0 0 20 0 1 0";
        assert_eq!(parse_pid_stat(s), Some(12));
        assert_eq!(parse_pid_stat("garbage"), None);
    }

    #[test]
    fn per_packet_arithmetic() {
        assert_eq!(ns_per_packet(1000.0, 10.0), Some(100.0));
        assert_eq!(ns_per_packet(1000.0, 0.0), None);
        assert_eq!(absorbs_pps(100.0), Some(1e7));
        assert_eq!(absorbs_pps(0.0), None);
        // 0.5 core busy, 1000 conn/s at 100 µs each = 0.1 core: 0.4 core
        // over 100 kpps = 4 µs per flood packet.
        assert_eq!(flood_share_ns(0.5e9, 1000.0, 100e3, 1e5), Some(4000.0));
        assert_eq!(flood_share_ns(0.1e9, 2000.0, 100e3, 1e5), Some(0.0));
        assert_eq!(flood_share_ns(0.1e9, 0.0, 0.0, 0.0), None);
    }

    #[test]
    fn tx_drops_are_read_from_ip_json() {
        let j = br#"[{"ifname":"v0","stats64":{"rx":{"dropped":3},"tx":{"bytes":1,"packets":2,"dropped":17}}}]"#;
        assert_eq!(parse_tx_dropped(j), Some(17));
        assert_eq!(parse_tx_dropped(b"[]"), None);
        assert_eq!(parse_tx_dropped(b"garbage"), None);
    }

    #[test]
    fn rx_packets_are_read_from_ip_json() {
        let j = br#"[{"ifname":"v0","stats64":{"rx":{"bytes":640,"packets":10,"dropped":3},"tx":{"packets":2}}}]"#;
        assert_eq!(parse_rx_packets(j), Some(10));
        assert_eq!(
            parse_rx_packets(br#"[{"stats64":{"tx":{"packets":2}}}]"#),
            None
        );
        assert_eq!(parse_rx_packets(b"garbage"), None);
    }

    #[test]
    fn gro_state_is_read_from_ethtool_k() {
        let text = "Features for v0:\nrx-checksumming: on\ngeneric-segmentation-offload: off\ngeneric-receive-offload: on\nlarge-receive-offload: off [fixed]\n";
        assert_eq!(parse_gro(text), Some(true));
        assert_eq!(
            parse_gro("generic-receive-offload: off\nrx-gro-list: off\n"),
            Some(false)
        );
        assert_eq!(parse_gro("rx-gro-hw: off [fixed]\n"), None);
    }

    #[test]
    fn a_meter_reports_every_cpu_and_each_thread_of_this_process_alone() {
        let (tx, rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let sleeper = std::thread::spawn(move || {
            let _ = tx.send(tid());
            let _ = stop_rx.recv();
        });
        let idle = rx.recv().expect("sleeper tid");
        let m = Meter::start(vec![vec![tid()], vec![i32::MAX], vec![idle]]);
        let end = Instant::now() + std::time::Duration::from_millis(50);
        while Instant::now() < end {
            std::hint::spin_loop();
        }
        let u = m.stop();
        let _ = stop_tx.send(());
        let _ = sleeper.join();
        assert_eq!(u.cpu_busy_pct.len(), per_cpu().len());
        assert_eq!(u.threads_pct.len(), 3);
        // A thread that does not exist used nothing.
        assert_eq!(u.threads_pct[1], 0.0);
        // Counted per thread, not per process: the blocked thread used
        // nothing while this one spun (clock ticks: 0 or one tick).
        assert!(u.threads_pct[2] <= 25.0, "{u:?}");
        assert!(
            u.threads_pct[0] >= 0.0 && u.threads_pct[0] <= 200.0,
            "{u:?}"
        );
    }

    #[test]
    fn waiting_for_threads_to_go_ends_when_they_are_gone_or_at_the_limit() {
        use std::time::{Duration, Instant};
        assert!(wait_gone(&[], Duration::ZERO));
        // Pids above pid_max never exist.
        assert!(wait_gone(&[i32::MAX], Duration::from_secs(5)));
        let t = Instant::now();
        let me = std::process::id() as i32;
        assert!(!wait_gone(&[me, i32::MAX], Duration::from_millis(100)));
        assert!(t.elapsed() >= Duration::from_millis(100));
    }

    #[test]
    fn set_fifo_puts_a_thread_in_sched_fifo_and_zero_takes_it_back() {
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let h = std::thread::spawn(move || {
            // SAFETY: gettid has no arguments.
            let _ = tx.send(unsafe { libc::gettid() });
            let _ = done_rx.recv();
        });
        let tid = rx.recv().unwrap();
        // SAFETY: sched_getscheduler of a live thread.
        let policy = || unsafe { libc::sched_getscheduler(tid) };
        match set_fifo(tid, 10) {
            Ok(()) => {
                assert_eq!(policy(), libc::SCHED_FIFO);
                set_fifo(tid, 0).unwrap();
                assert_eq!(policy(), libc::SCHED_OTHER);
            }
            // Without CAP_SYS_NICE: refused in one line, policy unchanged.
            Err(e) => {
                assert!(e.to_string().contains("sched_setscheduler"), "{e}");
                assert_eq!(policy(), libc::SCHED_OTHER);
            }
        }
        let _ = done_tx.send(());
        h.join().unwrap();
    }
}
