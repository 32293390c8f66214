//! Delivery liveness: a pub/sub connection can look "up" (the socket is
//! open, even PINGs may pass through some proxies) while messages no
//! longer arrive. So every feed (pub/sub connection) publishes a probe on
//! a private channel of its own every `redis.probe_interval`, over the
//! command connection, and expects it back through its own subscription.
//! When the oldest unanswered probe is older than `redis.probe_timeout`,
//! readiness fails and the feed drops and re-makes its connection.
//!
//! The channel is `<channel_prefix>__redcast.probe.<instance id>`, unique
//! per process; in sharded cluster mode each feed adds a hash tag that
//! puts the channel on its own node (`...probe.<instance>.{<tag>}`).
//! Client channel names starting with `__redcast.` are refused, so no
//! client can disturb it.

use crate::metrics::Metrics;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Client channel names may not start with this.
pub const RESERVED_PREFIX: &str = "__redcast.";

#[derive(Default)]
struct Round {
    /// Number of the last probe sent.
    sent: u64,
    /// A probe came back on the current connection.
    confirmed: bool,
    /// The oldest probe not yet seen back, and when it was sent.
    oldest_unanswered: Option<(u64, Instant)>,
}

/// One feed's probe: what was sent and what came back.
pub struct Probe {
    instance: String,
    timeout: Duration,
    round: Mutex<Round>,
    metrics: Arc<Metrics>,
}

impl Probe {
    /// A probe for one feed of this process (`instance` is shared by all
    /// feeds of the process and tells its probes from other instances').
    pub fn new(instance: &str, timeout: Duration, metrics: Arc<Metrics>) -> Probe {
        Probe {
            instance: instance.to_string(),
            timeout,
            round: Mutex::default(),
            metrics,
        }
    }

    /// The client-side name of the probe channel of `instance`, with an
    /// optional hash tag.
    pub fn channel(instance: &str, tag: Option<&str>) -> String {
        match tag {
            Some(tag) => format!("{RESERVED_PREFIX}probe.{instance}.{{{tag}}}"),
            None => format!("{RESERVED_PREFIX}probe.{instance}"),
        }
    }

    fn round(&self) -> std::sync::MutexGuard<'_, Round> {
        self.round.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A fresh connection starts unconfirmed: readiness waits until a probe
    /// has come back through it.
    pub fn reset(&self) {
        let mut round = self.round();
        round.oldest_unanswered = None;
        round.confirmed = false;
    }

    /// Records a probe coming back through the subscription.
    pub fn received(&self, payload: &[u8]) {
        let text = String::from_utf8_lossy(payload);
        let Some(n) = text
            .strip_prefix(&format!("{}:", self.instance))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            return;
        };
        let mut round = self.round();
        round.confirmed = true;
        // Redis keeps order on a connection: this one answers all before it.
        if round
            .oldest_unanswered
            .is_some_and(|(oldest, _)| n >= oldest)
        {
            round.oldest_unanswered = (n < round.sent).then(|| (n + 1, Instant::now()));
        }
    }

    /// `Ok` once a probe came back on this connection and none has been
    /// unanswered for longer than the timeout.
    pub fn check(&self) -> Result<(), String> {
        let round = self.round();
        match round.oldest_unanswered {
            Some((_, sent)) if sent.elapsed() > self.timeout => Err(format!(
                "delivery probe not received back within {:?}",
                self.timeout
            )),
            _ if !round.confirmed => {
                Err("waiting for the first delivery probe to come back".into())
            }
            _ => Ok(()),
        }
    }

    /// Whether an unanswered probe is overdue (the connection is suspect).
    pub fn overdue(&self) -> bool {
        self.round()
            .oldest_unanswered
            .is_some_and(|(_, sent)| sent.elapsed() > self.timeout)
    }

    /// The payload of the next probe, now counted as sent.
    pub fn next(&self) -> String {
        self.metrics.probes_sent.inc();
        let mut round = self.round();
        round.sent += 1;
        let n = round.sent;
        round.oldest_unanswered.get_or_insert((n, Instant::now()));
        format!("{}:{n}", self.instance)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn unanswered_probe_fails_after_timeout_and_answer_heals() {
        let p = Probe::new("i1", Duration::from_secs(3), Arc::default());
        let first = p.next();
        assert!(p.check().is_err(), "not ready before a probe came back");
        p.received(first.as_bytes());
        assert!(p.check().is_ok());
        let first = p.next();
        tokio::time::advance(Duration::from_secs(4)).await;
        assert!(p.check().is_err());
        p.next();
        p.received(first.as_bytes());
        assert!(p.check().is_ok(), "the second probe was just sent");
        p.received(format!("{}:3", p.instance).as_bytes());
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(p.check().is_ok());
        p.received(b"someone-else:9");
    }
}
