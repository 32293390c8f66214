//! Prometheus metrics, served by the admin listener at `/metrics`.
//!
//! Labels are low-cardinality by construction: reasons and codes are
//! `&'static str` from fixed lists, never channel names or client ids.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Label for counters split by a fixed reason or code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    /// One of a fixed set of reasons.
    pub reason: &'static str,
}

/// Label for errors by protocol error code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Code {
    /// A protocol error code.
    pub code: &'static str,
}

/// Every metric redcast keeps.
#[derive(Default)]
pub struct Metrics {
    pub connections_open: Gauge,
    pub connections_accepted: Counter,
    pub connections_rejected: Family<Reason, Counter>,
    pub connections_closed: Family<Reason, Counter>,
    pub handshakes_pending: Gauge,
    /// Tasks of the public listener (accept loop, handshakes, sessions,
    /// SSE streams), read at each scrape: a leak shows as a level that
    /// does not come back down when clients leave.
    pub connection_tasks: Gauge,
    pub subscriptions: Gauge,
    pub channels_active: Gauge,
    pub redis_messages: Counter,
    pub redis_connected: Gauge,
    pub redis_reconnects: Counter,
    pub redis_last_message_unix: Gauge,
    pub redis_links: Gauge,
    pub redis_links_up: Gauge,
    pub redis_dropped_subscriptions: Counter,
    pub redis_topology_refreshes: Counter,
    pub redis_master_switches: Counter,
    pub frames_delivered: Counter,
    pub bytes_out: Counter,
    pub slow_consumers: Counter,
    pub fanout_waits: Counter,
    pub inbound_messages: Counter,
    pub inbound_errors: Family<Code, Counter>,
    pub sse_binary_dropped: Counter,
    pub probe_ok: Gauge,
    pub probes_sent: Counter,
    pub probe_failures: Counter,
    pub delivery_latency: Latency,
    pub history_unpositioned: Counter,
    pub history_recoveries: Family<Reason, Counter>,
    pub history_replayed: Counter,
    pub history_read_errors: Counter,
    pub history_catch_ups: Family<Reason, Counter>,
}

/// The delivery latency histogram, with buckets from 50 us to ~3.3 s
/// (loopback writes up to clients that are about to be cut off as slow).
#[derive(Clone, Debug)]
pub struct Latency(pub Histogram);

impl Default for Latency {
    fn default() -> Self {
        Latency(Histogram::new(exponential_buckets(0.00005, 2.0, 17)))
    }
}

impl Metrics {
    /// Registers every metric under the `redcast_` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("redcast");
        r.register(
            "connections_open",
            "Open client connections (WebSocket and SSE)",
            self.connections_open.clone(),
        );
        r.register(
            "connections_accepted",
            "Client connections accepted (WebSocket upgrades and SSE streams)",
            self.connections_accepted.clone(),
        );
        r.register(
            "connections_rejected",
            "Connections refused before the upgrade, by reason",
            self.connections_rejected.clone(),
        );
        r.register(
            "connections_closed",
            "WebSocket connections closed, by reason",
            self.connections_closed.clone(),
        );
        r.register(
            "handshakes_pending",
            "Connections still in their handshake",
            self.handshakes_pending.clone(),
        );
        r.register(
            "connection_tasks",
            "Tasks of the public listener: accept loop, handshakes, sessions and streams",
            self.connection_tasks.clone(),
        );
        r.register(
            "subscriptions",
            "Client subscriptions (connection x channel)",
            self.subscriptions.clone(),
        );
        r.register(
            "channels_active",
            "Channels with at least one local subscriber",
            self.channels_active.clone(),
        );
        r.register(
            "redis_messages",
            "Messages received from Redis pub/sub",
            self.redis_messages.clone(),
        );
        r.register(
            "redis_connected",
            "1 while every Redis pub/sub connection is up",
            self.redis_connected.clone(),
        );
        r.register(
            "redis_reconnects",
            "Redis pub/sub connections lost and re-established",
            self.redis_reconnects.clone(),
        );
        r.register(
            "redis_pubsub_connections",
            "Redis pub/sub connections redcast keeps (one, or one per cluster master)",
            self.redis_links.clone(),
        );
        r.register(
            "redis_pubsub_connections_up",
            "Redis pub/sub connections currently up",
            self.redis_links_up.clone(),
        );
        r.register(
            "redis_dropped_subscriptions",
            "Subscriptions Redis dropped or refused (slot moved, MOVED, CLUSTERDOWN), then re-made where the slot lives",
            self.redis_dropped_subscriptions.clone(),
        );
        r.register(
            "redis_topology_refreshes",
            "Cluster topology reads (CLUSTER SLOTS) that changed what redcast follows, or were asked for by a failure",
            self.redis_topology_refreshes.clone(),
        );
        r.register(
            "redis_master_switches",
            "Times redcast followed a Sentinel master switch to a new master",
            self.redis_master_switches.clone(),
        );
        r.register(
            "redis_last_message_timestamp_seconds",
            "Unix time of the last message from Redis",
            self.redis_last_message_unix.clone(),
        );
        r.register(
            "frames_delivered",
            "Message frames queued to clients",
            self.frames_delivered.clone(),
        );
        r.register(
            "bytes_out",
            "Payload bytes of messages delivered to clients",
            self.bytes_out.clone(),
        );
        r.register(
            "slow_consumers",
            "Clients closed because their queue overflowed",
            self.slow_consumers.clone(),
        );
        r.register(
            "fanout_waits",
            "Bursts a feed waited to hand to a fan-out shard whose queue was full (back-pressure onto Redis)",
            self.fanout_waits.clone(),
        );
        r.register(
            "inbound_messages",
            "Frames received from clients",
            self.inbound_messages.clone(),
        );
        r.register(
            "inbound_errors",
            "Client requests answered with an error, by code",
            self.inbound_errors.clone(),
        );
        r.register(
            "delivery_probe_ok",
            "1 while redcast's own probe messages come back through every pub/sub connection",
            self.probe_ok.clone(),
        );
        r.register(
            "delivery_probes_sent",
            "Delivery probes published",
            self.probes_sent.clone(),
        );
        r.register(
            "delivery_probe_failures",
            "Times the pub/sub connection was re-made because probes stopped coming back",
            self.probe_failures.clone(),
        );
        r.register(
            "delivery_latency_seconds",
            "Time from a message's arrival from Redis to the end of the socket write that carried it (oldest frame of each write batch)",
            self.delivery_latency.0.clone(),
        );
        r.register(
            "sse_binary_dropped",
            "Binary payloads skipped on raw SSE streams (SSE carries text only)",
            self.sse_binary_dropped.clone(),
        );
        self.register_history(r);
    }

    fn register_history(&self, r: &mut Registry) {
        r.register(
            "history_unpositioned_messages",
            "Messages on durable channels that came from a plain PUBLISH (delivered live, never recoverable)",
            self.history_unpositioned.clone(),
        );
        r.register(
            "history_recoveries",
            "Resumes of durable channels by outcome (recovered, not_recovered, failed)",
            self.history_recoveries.clone(),
        );
        r.register(
            "history_replayed_messages",
            "Missed messages sent by recoveries",
            self.history_replayed.clone(),
        );
        r.register(
            "history_catch_ups",
            "Gaps in a durable channel's live delivery (a re-made link, or an offset jump) by outcome: filled from the history (filled), not fillable (lost), history unreadable (failed)",
            self.history_catch_ups.clone(),
        );
        r.register(
            "history_read_errors",
            "History reads that failed (redis unavailable, timeout, refused)",
            self.history_read_errors.clone(),
        );
    }

    /// Counts a closed connection.
    pub fn closed(&self, reason: &'static str) {
        self.connections_closed
            .get_or_create(&Reason { reason })
            .inc();
    }

    /// Counts a connection refused before the upgrade.
    pub fn rejected(&self, reason: &'static str) {
        self.connections_rejected
            .get_or_create(&Reason { reason })
            .inc();
    }
}

/// Rewrites prometheus-client's OpenMetrics output as Prometheus text
/// format 0.0.4, for scrapers and tools (curl, promtool) that do not ask
/// for OpenMetrics: counter families are named with their `_total`
/// suffix, and the OpenMetrics-only `# EOF` and `# UNIT` lines go.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut lines = openmetrics.lines().peekable();
    while let Some(line) = lines.next() {
        if line.starts_with("# EOF") || line.starts_with("# UNIT") {
            continue;
        }
        let counter = line
            .strip_prefix("# HELP ")
            .and_then(|rest| rest.split(' ').next())
            .filter(|name| lines.peek() == Some(&format!("# TYPE {name} counter").as_str()));
        match counter {
            Some(name) => {
                let help = &line["# HELP ".len() + name.len()..];
                out.push_str(&format!(
                    "# HELP {name}_total{help}\n# TYPE {name}_total counter\n"
                ));
                lines.next();
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn counters_get_total_in_text_format() {
        let om = "# HELP a_x Things.\n# TYPE a_x counter\na_x_total 1\n# HELP g G.\n# TYPE g gauge\ng 2\n# EOF\n";
        let text = super::to_prometheus_text(om);
        assert_eq!(text, "# HELP a_x_total Things.\n# TYPE a_x_total counter\na_x_total 1\n# HELP g G.\n# TYPE g gauge\ng 2\n");
    }
}
