//! Readings of other processes from /proc: CPU time and resident memory.
//!
//! The server under test is named by PID (`--server-pid`, repeatable, so
//! that an nginx master and its workers are summed). CPU is utime + stime
//! from /proc/PID/stat (all threads included), RSS is VmRSS from
//! /proc/PID/status.

use anyhow::{bail, Context};

/// Clock ticks per second (the unit of utime/stime in /proc/PID/stat).
fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions; it only reads a constant.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// utime + stime of one process, in seconds.
pub fn cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    stat_cpu(std::path::Path::new(&format!("/proc/{pid}/stat")))
}

/// utime + stime from a process's or a thread's stat file, in seconds.
fn stat_cpu(path: &std::path::Path) -> anyhow::Result<f64> {
    let path = path.display().to_string();
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // The command name (field 2) is in parentheses and may hold spaces:
    // count fields from the last ')'.
    let Some(close) = stat.rfind(')') else {
        bail!("{path}: no ')' in {stat:?}");
    };
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    // After ')': field 3 (state) is index 0, so utime (14) is 11, stime (15) is 12.
    let utime: f64 = fields.get(11).context("utime")?.parse()?;
    let stime: f64 = fields.get(12).context("stime")?.parse()?;
    Ok((utime + stime) / clock_ticks())
}

/// One thread's name and CPU seconds (utime + stime).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ThreadCpu {
    pub pid: u32,
    pub tid: u32,
    pub name: String,
    pub seconds: f64,
}

/// Every thread of the processes, from /proc/PID/task/*/stat.
pub fn threads(pids: &[u32]) -> Vec<ThreadCpu> {
    let mut out = Vec::new();
    for &pid in pids {
        let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for entry in dir.flatten() {
            let Some(tid) = entry.file_name().to_str().and_then(|t| t.parse().ok()) else {
                continue;
            };
            let stat = entry.path().join("stat");
            let Ok(seconds) = stat_cpu(&stat) else {
                continue;
            };
            let name = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            out.push(ThreadCpu {
                pid,
                tid,
                name: name.trim().to_string(),
                seconds,
            });
        }
    }
    out
}

/// Each thread's CPU between two [`threads`] readings, busiest first;
/// threads that started in between count from zero.
pub fn threads_between(a: &[ThreadCpu], b: &[ThreadCpu]) -> Vec<ThreadCpu> {
    let mut out: Vec<ThreadCpu> = b
        .iter()
        .map(|t| {
            let before = a.iter().find(|x| x.tid == t.tid).map_or(0.0, |x| x.seconds);
            ThreadCpu {
                seconds: (t.seconds - before).max(0.0),
                ..t.clone()
            }
        })
        .collect();
    out.sort_by(|x, y| y.seconds.total_cmp(&x.seconds));
    out
}

/// Resident set size of one process, in KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    for line in status.lines() {
        if let Some(rest) = line.strip_prefix("VmRSS:") {
            let kib = rest.trim().trim_end_matches("kB").trim();
            return Ok(kib.parse()?);
        }
    }
    bail!("{path}: no VmRSS line")
}

/// Sum of CPU seconds over processes; `None` when there are none.
pub fn total_cpu(pids: &[u32]) -> anyhow::Result<Option<f64>> {
    if pids.is_empty() {
        return Ok(None);
    }
    let mut sum = 0.0;
    for &pid in pids {
        sum += cpu_seconds(pid)?;
    }
    Ok(Some(sum))
}

/// Sum of RSS over processes, in KiB; `None` when there are none.
pub fn total_rss(pids: &[u32]) -> anyhow::Result<Option<u64>> {
    if pids.is_empty() {
        return Ok(None);
    }
    let mut sum = 0;
    for &pid in pids {
        sum += rss_kib(pid)?;
    }
    Ok(Some(sum))
}

/// CPU seconds spent busy by the whole machine (all cores, all
/// processes), from the first line of /proc/stat.
pub fn machine_busy() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return 0.0;
    };
    let Some(line) = stat.lines().next() else {
        return 0.0;
    };
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest is in user).
    let busy: f64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| v.get(i)).sum();
    busy / clock_ticks()
}

/// Machine-wide kernel memory readings that grow with TCP sockets: on
/// loopback both ends of every connection are on this machine, so a
/// difference covers two sockets per connection.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct KernelMem {
    /// /proc/net/sockstat `TCP: inuse`.
    pub tcp_inuse: u64,
    /// /proc/net/sockstat `TCP: mem`: pages charged to TCP socket buffers
    /// (what net.ipv4.tcp_mem limits).
    pub tcp_mem_pages: u64,
    /// /proc/meminfo `SUnreclaim` (KiB): socket objects, inodes, files,
    /// epoll items live here.
    pub slab_unreclaimable_kib: u64,
    /// /proc/meminfo `Slab` (KiB).
    pub slab_kib: u64,
    /// /proc/slabinfo `TCP` active objects (struct tcp_sock), if readable.
    pub tcp_slab_objects: Option<u64>,
    /// Their size in bytes.
    pub tcp_slab_object_size: Option<u64>,
}

/// Reads [`KernelMem`]; fields that cannot be read stay 0 / None.
pub fn kernel_mem() -> KernelMem {
    let mut k = KernelMem::default();
    if let Ok(s) = std::fs::read_to_string("/proc/net/sockstat") {
        for line in s.lines() {
            if let Some(rest) = line.strip_prefix("TCP:") {
                let f: Vec<&str> = rest.split_whitespace().collect();
                for pair in f.chunks(2) {
                    if let [key, val] = pair {
                        let v = val.parse().unwrap_or(0);
                        match *key {
                            "inuse" => k.tcp_inuse = v,
                            "mem" => k.tcp_mem_pages = v,
                            _ => {}
                        }
                    }
                }
            }
        }
    }
    if let Ok(s) = std::fs::read_to_string("/proc/meminfo") {
        for line in s.lines() {
            let kib = |rest: &str| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse()
                    .unwrap_or(0)
            };
            if let Some(rest) = line.strip_prefix("SUnreclaim:") {
                k.slab_unreclaimable_kib = kib(rest);
            } else if let Some(rest) = line.strip_prefix("Slab:") {
                k.slab_kib = kib(rest);
            }
        }
    }
    if let Ok(s) = std::fs::read_to_string("/proc/slabinfo") {
        for line in s.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.first() == Some(&"TCP") {
                k.tcp_slab_objects = f.get(1).and_then(|v| v.parse().ok());
                k.tcp_slab_object_size = f.get(3).and_then(|v| v.parse().ok());
            }
        }
    }
    k
}

/// A process measured apart (`--aux-pid [NAME=]PID`), e.g. a Redis node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuxPid {
    pub name: Option<String>,
    pub pid: u32,
}

impl std::str::FromStr for AuxPid {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (name, pid) = match s.rsplit_once('=') {
            Some(("", _)) => return Err(format!("{s:?}: empty name")),
            Some((n, p)) => (Some(n.to_string()), p),
            None => (None, s),
        };
        let pid = pid
            .parse()
            .map_err(|e| format!("{s:?}: expected [NAME=]PID ({e})"))?;
        Ok(AuxPid { name, pid })
    }
}

/// One --aux-pid process's CPU over a window.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ProcessCpu {
    pub name: Option<String>,
    pub pid: u32,
    pub seconds: f64,
    pub util_pct: f64,
}

impl ProcessCpu {
    /// Each process's CPU between two readings of [`each_cpu`] (a process
    /// that could not be read at either end is left out).
    pub fn between(aux: &[AuxPid], a: &[Option<f64>], b: &[Option<f64>], window: f64) -> Vec<Self> {
        let ends = aux.iter().zip(a.iter().zip(b));
        ends.filter_map(|(p, (a, b))| {
            let seconds = (b.as_ref()? - a.as_ref()?).max(0.0);
            Some(ProcessCpu {
                name: p.name.clone(),
                pid: p.pid,
                seconds,
                util_pct: 100.0 * seconds / window.max(1e-9),
            })
        })
        .collect()
    }
}

/// CPU seconds of each process (`None` where it cannot be read).
pub fn each_cpu(aux: &[AuxPid]) -> Vec<Option<f64>> {
    aux.iter().map(|p| cpu_seconds(p.pid).ok()).collect()
}

/// This process's own CPU seconds.
pub fn self_cpu() -> f64 {
    cpu_seconds(std::process::id()).unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_process() {
        let pid = std::process::id();
        assert!(cpu_seconds(pid).unwrap() >= 0.0);
        assert!(rss_kib(pid).unwrap() > 0);
        assert_eq!(total_rss(&[]).unwrap(), None);
        assert!(kernel_mem().slab_kib > 0);
    }

    #[test]
    fn threads_of_own_process() {
        let me = [std::process::id()];
        let a = threads(&me);
        assert!(a.iter().any(|t| t.tid == me[0]));
        let spin = std::thread::spawn(|| (0..5_000_000u64).map(std::hint::black_box).sum::<u64>());
        let _ = spin.join();
        let d = threads_between(&a, &threads(&me));
        assert!(d.windows(2).all(|w| w[0].seconds >= w[1].seconds));
    }

    #[test]
    fn aux_pids() {
        let plain: AuxPid = "123".parse().unwrap();
        assert_eq!(
            plain,
            AuxPid {
                name: None,
                pid: 123
            }
        );
        let named: AuxPid = "m1=456".parse().unwrap();
        assert_eq!(named.name.as_deref(), Some("m1"));
        assert_eq!(named.pid, 456);
        assert!("=5".parse::<AuxPid>().is_err());
        assert!("m1=".parse::<AuxPid>().is_err());
        assert!("m1".parse::<AuxPid>().is_err());
    }

    #[test]
    fn cpu_per_process() {
        let aux: Vec<AuxPid> = ["m1=1", "r1=2", "3"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let a = [Some(1.0), Some(2.0), None];
        let b = [Some(1.5), Some(2.0), Some(9.0)];
        let got = ProcessCpu::between(&aux, &a, &b, 2.0);
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].name.as_deref(), got[0].seconds), (Some("m1"), 0.5));
        assert!((got[0].util_pct - 25.0).abs() < 1e-9);
        assert_eq!((got[1].pid, got[1].seconds, got[1].util_pct), (2, 0.0, 0.0));
        let own = [AuxPid {
            name: None,
            pid: std::process::id(),
        }];
        assert!(each_cpu(&own)[0].is_some());
    }
}
