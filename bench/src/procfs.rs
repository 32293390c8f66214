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
    let path = format!("/proc/{pid}/stat");
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
    }
}
