//! Samples taken during the soak, the pass criteria and the Markdown
//! report (docs/soak.md is one).

use crate::load::Tally;
use crate::procs::Redcast;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// redcast idle, before any client.
pub struct Baseline {
    pub fds: usize,
    pub rss_kib: u64,
    pub tasks: f64,
}

/// The run's parameters, for the report.
pub struct Params {
    pub duration: Duration,
    pub warmup: Duration,
    pub clients: usize,
    pub rate: f64,
    pub channels: usize,
    pub redis_restart_every: Duration,
    pub sighup_every: Duration,
    pub rss_tolerance: f64,
}

/// One reading of redcast during the run.
#[derive(serde::Serialize)]
pub struct Sample {
    pub t_s: f64,
    pub rss_kib: u64,
    pub fds: usize,
    pub connections: f64,
    pub deliveries_per_s: f64,
}

impl Sample {
    pub async fn take(
        r: &Redcast,
        t: Duration,
        delivered: u64,
        window: Duration,
    ) -> anyhow::Result<Sample> {
        Ok(Sample {
            t_s: t.as_secs_f64(),
            rss_kib: r.rss_kib()?,
            fds: r.fds()?,
            connections: r.metric("redcast_connections_open").await?,
            deliveries_per_s: delivered as f64 / window.as_secs_f64(),
        })
    }

    pub fn line(&self) -> String {
        format!(
            "t={:>6.0}s rss={} KiB fds={} connections={} deliveries/s={:.0}",
            self.t_s, self.rss_kib, self.fds, self.connections, self.deliveries_per_s
        )
    }
}

/// redcast once every client has left.
pub struct Settled {
    pub after: Duration,
    pub fds: usize,
    pub rss_kib: u64,
    /// (metric, value) for each gauge that must be back to zero.
    pub gauges: Vec<(&'static str, f64)>,
    /// `redcast_connection_tasks`: must be back to its idle level.
    pub tasks: f64,
}

/// The listener's task gauge (absent before redcast had it: reads 0).
pub const TASKS: &str = "redcast_connection_tasks";

const GAUGES: [&str; 4] = [
    "redcast_connections_open",
    "redcast_subscriptions",
    "redcast_channels_active",
    "redcast_handshakes_pending",
];

impl Settled {
    pub async fn read(r: &Redcast) -> Settled {
        let mut gauges = Vec::new();
        for g in GAUGES {
            gauges.push((g, r.metric(g).await.unwrap_or(f64::NAN)));
        }
        Settled {
            after: Duration::ZERO,
            fds: r.fds().unwrap_or(usize::MAX),
            rss_kib: r.rss_kib().unwrap_or(0),
            gauges,
            tasks: r.metric(TASKS).await.unwrap_or(f64::NAN),
        }
    }

    pub fn is_clean(&self) -> bool {
        self.gauges.iter().all(|(_, v)| *v == 0.0)
    }
}

/// The verdict, criterion by criterion.
pub struct Outcome {
    /// Largest RSS deviation after the warm-up, in percent of the first
    /// sample after it.
    pub rss_drift: f64,
    pub failures: Vec<String>,
}

impl Outcome {
    pub fn judge(
        p: &Params,
        idle: &Baseline,
        samples: &[Sample],
        s: &Settled,
        tally: &Tally,
    ) -> Outcome {
        let base_fds = idle.fds;
        let after: Vec<&Sample> = samples
            .iter()
            .filter(|x| x.t_s >= p.warmup.as_secs_f64())
            .collect();
        let base = after.first().map_or(0, |x| x.rss_kib) as f64;
        let rss_drift = after
            .iter()
            .map(|x| (x.rss_kib as f64 - base).abs() / base.max(1.0) * 100.0)
            .fold(0.0, f64::max);
        let mut failures = Vec::new();
        if after.is_empty() {
            failures.push("no sample after the warm-up".into());
        }
        if rss_drift > p.rss_tolerance {
            failures.push(format!("RSS drifted {rss_drift:.1} % after the warm-up"));
        }
        if s.fds > base_fds {
            failures.push(format!(
                "{} fds open after the run, {base_fds} before",
                s.fds
            ));
        }
        if s.tasks > idle.tasks {
            failures.push(format!(
                "{TASKS} = {} after every client left, {} idle",
                s.tasks, idle.tasks
            ));
        }
        for (g, v) in &s.gauges {
            if *v != 0.0 {
                failures.push(format!("{g} = {v} after every client left"));
            }
        }
        let lost = tally.lost.load(Ordering::Relaxed);
        if lost > 0 {
            failures.push(format!("{lost} messages lost outside Redis restarts"));
        }
        Outcome {
            rss_drift,
            failures,
        }
    }

    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

fn mins(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// The report: parameters, verdict, then RSS and fds per minute.
pub fn markdown(
    p: &Params,
    base: &Baseline,
    samples: &[Sample],
    s: &Settled,
    tally: &Tally,
    o: &Outcome,
) -> String {
    let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let (base_fds, base_rss) = (base.fds, base.rss_kib);
    let mut out = format!(
        "Run: {} ({} warm-up), {} client slots over {} channels, {} msg/s, Redis restarted every {}, \
         SIGHUP every {}.\n\n| criterion | result |\n|---|---|\n",
        mins(p.duration), mins(p.warmup), p.clients, p.channels, p.rate,
        mins(p.redis_restart_every), mins(p.sighup_every),
    );
    out += &format!(
        "| verdict | **{}** |\n",
        if o.passed() { "PASS" } else { "FAIL" }
    );
    out += &format!(
        "| RSS drift after warm-up (limit {} %) | {:.2} % |\n",
        p.rss_tolerance, o.rss_drift
    );
    out += &format!(
        "| open fds: idle before, after every client left | {base_fds}, {} |\n",
        s.fds
    );
    let gauges: Vec<String> = s.gauges.iter().map(|(g, v)| format!("`{g}` {v}")).collect();
    out += &format!(
        "| gauges after every client left ({:.1} s) | {} |\n",
        s.after.as_secs_f64(),
        gauges.join(", ")
    );
    out += &format!(
        "| `{TASKS}`: idle before, after every client left | {}, {} |\n",
        base.tasks, s.tasks
    );
    out += &format!(
        "| lost in phases without a restart | {} (duplicates {}) |\n",
        n(&tally.lost),
        n(&tally.duplicates)
    );
    out += &format!(
        "| client sessions / failed connects | {} / {} |\n| published / failed publishes (restarts) | {} / {} |\n\
         | deliveries | {} |\n| RSS idle before, after the run | {base_rss} KiB, {} KiB |\n",
        n(&tally.sessions), n(&tally.connect_errors), n(&tally.published), n(&tally.publish_errors),
        n(&tally.delivered), s.rss_kib,
    );
    out += "\n| t (min) | RSS (KiB) | open fds | connections | deliveries/s |\n|---|---|---|---|---|\n";
    let per_min = (60.0 / samples.get(1).map_or(60.0, |x| x.t_s - samples[0].t_s))
        .round()
        .max(1.0) as usize;
    for x in samples
        .iter()
        .skip(per_min.saturating_sub(1))
        .step_by(per_min)
    {
        out += &format!(
            "| {:.1} | {} | {} | {} | {:.0} |\n",
            x.t_s / 60.0,
            x.rss_kib,
            x.fds,
            x.connections,
            x.deliveries_per_s
        );
    }
    if !o.passed() {
        out += &format!("\nFailures: {}\n", o.failures.join("; "));
    }
    out
}
