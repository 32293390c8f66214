//! The report: JSON (serde) and a readable table.

use crate::cluster::PublishSetup;
use crate::procfs::{KernelMem, ProcessCpu, ThreadCpu};
use hdrhistogram::Histogram;
use serde::Serialize;
use std::fmt::Write;

#[derive(Serialize, Default)]
pub struct Report {
    pub label: Option<String>,
    pub target: String,
    pub scenario: String,
    pub clients: usize,
    pub channels: usize,
    /// (soft, hard) RLIMIT_NOFILE of the load generator after raising.
    pub nofile: (u64, u64),
    pub connections_ok: u64,
    pub connections_failed: u64,
    pub connect_attempt_errors: u64,
    pub connections_lost: u64,
    pub connect: Storm,
    /// CPU from the first connect until everyone was verified.
    pub connect_cpu: Option<Cpu>,
    pub reconnect: Option<Storm>,
    pub rate: f64,
    /// The publish command, and whether through the cluster client.
    pub publish: Option<PublishSetup>,
    pub messages_submitted: u64,
    pub published: u64,
    pub publish_errors: u64,
    pub publish_error: Option<String>,
    pub publish_seconds: f64,
    pub publish_rate: f64,
    pub expected: u64,
    pub delivered: u64,
    pub losses: u64,
    pub duplicates: u64,
    pub unparsed_frames: u64,
    pub unexpected_channel: u64,
    pub offered_deliveries_per_sec: f64,
    pub deliveries_per_sec: f64,
    pub window_seconds: f64,
    pub latency: Option<Latency>,
    pub cpu: Option<Cpu>,
    /// Each --aux-pid process over the same window as `cpu`.
    pub aux_cpu: Vec<ProcessCpu>,
    /// Each server thread's CPU over the same window as `cpu`, busiest
    /// first (/proc/PID/task/*/stat).
    pub threads: Vec<ThreadCpu>,
    /// wss://: how the TLS handshakes went.
    pub tls: Option<TlsHandshakes>,
    pub memory: Option<Memory>,
    /// Machine-wide kernel memory before the first connection and with
    /// everyone connected (both ends of each loopback connection).
    pub kernel: Option<KernelDelta>,
    pub errors: Vec<String>,
    pub notes: Vec<String>,
}

/// Full and resumed TLS handshakes: the first wave, and the reconnect.
#[derive(Serialize, Default, Clone)]
pub struct TlsHandshakes {
    pub full: u64,
    pub resumed: u64,
    pub reconnect_full: u64,
    pub reconnect_resumed: u64,
}

#[derive(Serialize, Default, Clone)]
pub struct Storm {
    pub clients: usize,
    pub failed: usize,
    pub seconds_to_connect: Option<f64>,
    pub seconds_to_ack: Option<f64>,
    pub seconds_to_verified: Option<f64>,
    pub connects_per_sec: Option<f64>,
}

#[derive(Serialize)]
pub struct Latency {
    pub count: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub mean_us: f64,
}

impl From<&Histogram<u64>> for Latency {
    fn from(h: &Histogram<u64>) -> Self {
        let us = |ns: u64| ns as f64 / 1000.0;
        Self {
            count: h.len(),
            p50_us: us(h.value_at_quantile(0.50)),
            p99_us: us(h.value_at_quantile(0.99)),
            p999_us: us(h.value_at_quantile(0.999)),
            max_us: us(h.max()),
            mean_us: h.mean() / 1000.0,
        }
    }
}

#[derive(Serialize)]
pub struct Cpu {
    pub window_seconds: f64,
    /// utime+stime of the server process(es) during the window.
    pub server_seconds: Option<f64>,
    pub server_util_pct: Option<f64>,
    pub server_us_per_delivery: Option<f64>,
    /// The load generator's own CPU (to see whether it was the bottleneck).
    pub bench_seconds: Option<f64>,
    pub bench_util_pct: Option<f64>,
    /// The --aux-pid processes (redis-server).
    pub aux_seconds: Option<f64>,
    /// Everything else on the machine (other processes, interrupts): a
    /// run with much of it was disturbed.
    pub other_seconds: Option<f64>,
    pub other_util_pct: Option<f64>,
}

impl Cpu {
    pub fn between(
        a: &[Option<f64>; 4],
        b: &[Option<f64>; 4],
        deliveries: u64,
        window: f64,
    ) -> Self {
        let d = |i: usize| Some(b[i]? - a[i]?);
        let server = d(0);
        let bench = d(1);
        let other = d(3).map(|all| {
            (all - server.unwrap_or(0.0) - bench.unwrap_or(0.0) - d(2).unwrap_or(0.0)).max(0.0)
        });
        Self {
            window_seconds: window,
            server_seconds: server,
            server_util_pct: server.map(|s| 100.0 * s / window.max(1e-9)),
            server_us_per_delivery: server
                .filter(|_| deliveries > 0)
                .map(|s| s * 1e6 / deliveries as f64),
            bench_seconds: bench,
            bench_util_pct: bench.map(|s| 100.0 * s / window.max(1e-9)),
            aux_seconds: d(2),
            other_seconds: other,
            other_util_pct: other.map(|s| 100.0 * s / window.max(1e-9)),
        }
    }
}

#[derive(Serialize)]
pub struct Memory {
    pub rss_before_kib: u64,
    pub rss_connected_kib: u64,
    pub rss_after_kib: u64,
    pub connections: usize,
    /// (RSS with everyone connected - RSS before) / connections.
    pub bytes_per_connection: Option<f64>,
    /// The same, measured at the end of the run (after publishing/settling).
    pub bytes_per_connection_end: Option<f64>,
}

impl Memory {
    pub fn new(
        before: Option<u64>,
        connected: Option<u64>,
        after: Option<u64>,
        connections: usize,
    ) -> Option<Self> {
        let (before, connected, after) = (before?, connected?, after?);
        let per = |kib: u64| {
            (connections > 0).then(|| (kib as f64 - before as f64) * 1024.0 / connections as f64)
        };
        Some(Self {
            rss_before_kib: before,
            rss_connected_kib: connected,
            rss_after_kib: after,
            connections,
            bytes_per_connection: per(connected),
            bytes_per_connection_end: per(after),
        })
    }
}

#[derive(Serialize)]
pub struct KernelDelta {
    pub before: KernelMem,
    pub connected: KernelMem,
    pub connections: usize,
    /// Sockets that appeared: about 2 per connection on loopback.
    pub sockets_added: i64,
    /// TCP buffer pages (sockstat `mem`) added, in bytes per socket.
    pub tcp_buffer_bytes_per_socket: Option<f64>,
    /// Unreclaimable slab added (struct tcp_sock, inode, file, dentry,
    /// epoll item ...), in bytes per socket.
    pub slab_bytes_per_socket: Option<f64>,
}

impl KernelDelta {
    pub fn new(before: KernelMem, connected: KernelMem, connections: usize) -> Self {
        let sockets = connected.tcp_inuse as i64 - before.tcp_inuse as i64;
        let per = |d: f64| (sockets > 0).then(|| d / sockets as f64);
        Self {
            before,
            connected,
            connections,
            sockets_added: sockets,
            tcp_buffer_bytes_per_socket: per((connected.tcp_mem_pages as f64
                - before.tcp_mem_pages as f64)
                * 4096.0),
            slab_bytes_per_socket: per((connected.slab_unreclaimable_kib as f64
                - before.slab_unreclaimable_kib as f64)
                * 1024.0),
        }
    }
}

fn opt(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(v) => format!("{v:.digits$}"),
        None => "-".into(),
    }
}

impl Report {
    pub fn new(
        label: Option<String>,
        target: String,
        scenario: String,
        clients: usize,
        channels: usize,
        nofile: (u64, u64),
    ) -> Self {
        Self {
            label,
            target,
            scenario,
            clients,
            channels,
            nofile,
            ..Self::default()
        }
    }

    /// A two-column table, one measure per line.
    pub fn table(&self) -> String {
        let mut rows: Vec<(String, String)> = Vec::new();
        let mut row = |k: &str, v: String| rows.push((k.to_string(), v));
        if let Some(l) = &self.label {
            row("label", l.clone());
        }
        row(
            "target / scenario",
            format!("{} / {}", self.target, self.scenario),
        );
        row(
            "clients / channels",
            format!("{} / {}", self.clients, self.channels),
        );
        row(
            "connections ok / failed",
            format!(
                "{} / {} ({} attempt errors, {} lost while open)",
                self.connections_ok,
                self.connections_failed,
                self.connect_attempt_errors,
                self.connections_lost
            ),
        );
        let storm = |s: &Storm| {
            format!(
                "connected {} s, acked {} s, verified {} s, {} conn/s",
                opt(s.seconds_to_connect, 3),
                opt(s.seconds_to_ack, 3),
                opt(s.seconds_to_verified, 3),
                opt(s.connects_per_sec, 0)
            )
        };
        row("connect wave", storm(&self.connect));
        if let Some(c) = &self.connect_cpu {
            row(
                "connect wave CPU s server / generator",
                format!(
                    "{} / {} over {:.2} s",
                    opt(c.server_seconds, 2),
                    opt(c.bench_seconds, 2),
                    c.window_seconds
                ),
            );
        }
        if let Some(r) = &self.reconnect {
            row("reconnect wave", storm(r));
        }
        if let Some(p) = &self.publish {
            row("publish command", p.describe());
        }
        if self.expected > 0 || self.published > 0 {
            row(
                "published (errors)",
                format!(
                    "{} of {} ({}) in {:.2} s = {:.0} msg/s",
                    self.published,
                    self.messages_submitted,
                    self.publish_errors,
                    self.publish_seconds,
                    self.publish_rate
                ),
            );
            row(
                "deliveries expected / delivered",
                format!("{} / {}", self.expected, self.delivered),
            );
            row(
                "losses / duplicates",
                format!("{} / {}", self.losses, self.duplicates),
            );
            row(
                "deliveries/s offered / achieved",
                format!(
                    "{:.0} / {:.0}",
                    self.offered_deliveries_per_sec, self.deliveries_per_sec
                ),
            );
        }
        if let Some(l) = &self.latency {
            row(
                "latency p50/p99/p999/max (µs)",
                format!(
                    "{:.0} / {:.0} / {:.0} / {:.0} (n={})",
                    l.p50_us, l.p99_us, l.p999_us, l.max_us, l.count
                ),
            );
        }
        if let Some(c) = &self.cpu {
            row(
                "server CPU s (util %)",
                format!(
                    "{} ({} %) over {:.2} s",
                    opt(c.server_seconds, 2),
                    opt(c.server_util_pct, 1),
                    c.window_seconds
                ),
            );
            row("server CPU µs/delivery", opt(c.server_us_per_delivery, 3));
            row(
                "load generator CPU s (util %)",
                format!(
                    "{} ({} %)",
                    opt(c.bench_seconds, 2),
                    opt(c.bench_util_pct, 1)
                ),
            );
            if c.aux_seconds.is_some() {
                row("aux (redis) CPU s", opt(c.aux_seconds, 2));
            }
            for a in &self.aux_cpu {
                let name = a.name.clone().unwrap_or_else(|| a.pid.to_string());
                let v = format!("{:.2} ({:.1} %)", a.seconds, a.util_pct);
                row(&format!("aux CPU s (util %): {name}"), v);
            }
            let total: f64 = self.threads.iter().map(|t| t.seconds).sum();
            for t in self.threads.iter().take(6).filter(|t| t.seconds > 0.0) {
                let share = 100.0 * t.seconds / total.max(1e-9);
                let v = format!("{:.2} ({share:.1} % of the server's)", t.seconds);
                row(&format!("server thread {} ({})", t.tid, t.name), v);
            }
            row(
                "other CPU on the machine s (%)",
                format!(
                    "{} ({} %)",
                    opt(c.other_seconds, 2),
                    opt(c.other_util_pct, 1)
                ),
            );
        }
        if let Some(t) = &self.tls {
            let v = format!(
                "first wave {} full / {} resumed; reconnect {} full / {} resumed",
                t.full, t.resumed, t.reconnect_full, t.reconnect_resumed
            );
            row("TLS handshakes", v);
        }
        if let Some(m) = &self.memory {
            row(
                "server RSS KiB before/connected/end",
                format!(
                    "{} / {} / {}",
                    m.rss_before_kib, m.rss_connected_kib, m.rss_after_kib
                ),
            );
            row(
                "server bytes/connection (end)",
                format!(
                    "{} ({})",
                    opt(m.bytes_per_connection, 0),
                    opt(m.bytes_per_connection_end, 0)
                ),
            );
        }
        if let Some(k) = &self.kernel {
            row(
                "kernel: sockets added, TCP buffer / slab bytes per socket",
                format!(
                    "{} ({} -> {} TCP mem pages), {} / {}",
                    k.sockets_added,
                    k.before.tcp_mem_pages,
                    k.connected.tcp_mem_pages,
                    opt(k.tcp_buffer_bytes_per_socket, 0),
                    opt(k.slab_bytes_per_socket, 0)
                ),
            );
        }
        if self.unparsed_frames + self.unexpected_channel > 0 {
            row(
                "unparsed / wrong-channel frames",
                format!("{} / {}", self.unparsed_frames, self.unexpected_channel),
            );
        }
        if let Some(e) = &self.publish_error {
            row("first publish error", e.clone());
        }
        for e in &self.errors {
            row("error", e.clone());
        }
        for n in &self.notes {
            row("note", n.clone());
        }
        let width = rows
            .iter()
            .map(|(k, _)| k.chars().count())
            .max()
            .unwrap_or(0);
        let mut out = String::new();
        for (k, v) in rows {
            let _ = writeln!(out, "{k:<width$}  {v}");
        }
        out
    }
}
