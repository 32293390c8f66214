//! What a feed receives: messages (delivered to the hub in batches),
//! confirmations and errors (matched to what is in flight), and the
//! subscriptions Redis drops on its own when a slot moves.

use super::{Feed, Sub};
use crate::broker::inflight::Answer;
use crate::broker::link::{server_error_text, Link};
use crate::broker::{BrokerError, MAX_BATCH};
use crate::config::HostPort;
use crate::fanout::Plan;
use redis::Value;
use tokio::time::Instant;

impl Feed {
    /// Handles `first` and every value already waiting behind it (up to
    /// [`MAX_BATCH`]), then hands the burst to the fan-out shards, which
    /// write each touched client once: under load a client gets several
    /// frames per write, at low rates nothing waits.
    pub(super) async fn batch(&mut self, first: Value, link: &mut Link) -> Result<(), BrokerError> {
        let received = Instant::now();
        self.batch_messages = 0;
        let mut plan = self.plan.take().unwrap_or_else(|| self.core.hub.plan());
        let mut result = self.on_value(first, received, &mut plan);
        for _ in 1..MAX_BATCH {
            let Some(next) = result.is_ok().then(|| link.try_next()).flatten() else {
                break;
            };
            result = next
                .map_err(BrokerError::from)
                .and_then(|v| self.on_value(v, Instant::now(), &mut plan));
        }
        self.core.hub.dispatch(&mut plan).await;
        self.plan = Some(plan);
        // Confirmations and PONGs are not messages.
        if self.batch_messages > 0 {
            self.core.delivered();
        }
        result
    }

    fn on_value(
        &mut self,
        v: Value,
        received: Instant,
        plan: &mut Plan,
    ) -> Result<(), BrokerError> {
        match v {
            Value::Array(items) => self.on_push(items, received, plan),
            Value::SimpleString(s) if s.eq_ignore_ascii_case("pong") => {
                let a = self.inflight.pong();
                self.answer(a)
            }
            Value::ServerError(e) => self.on_error(&e),
            other => {
                tracing::debug!(node = %self.node, ?other, "ignored a value from redis");
                Ok(())
            }
        }
    }

    fn on_push(
        &mut self,
        items: Vec<Value>,
        received: Instant,
        plan: &mut Plan,
    ) -> Result<(), BrokerError> {
        let mut items = items.into_iter().map(|v| match v {
            Value::BulkString(b) => b,
            _ => Vec::new(),
        });
        let (kind, channel) = (
            items.next().unwrap_or_default(),
            items.next().unwrap_or_default(),
        );
        match kind.as_slice() {
            b"message" | b"smessage" => {
                self.deliver(&channel, &items.next().unwrap_or_default(), received, plan);
                Ok(())
            }
            b"subscribe" | b"ssubscribe" => {
                let a = self.inflight.subscribe_confirmed();
                self.answer(a)
            }
            b"unsubscribe" | b"sunsubscribe" => {
                if self.inflight.unsubscribe_seen(&channel) == Answer::ServerUnsubscribed {
                    self.dropped(&channel);
                }
                Ok(())
            }
            b"pong" => {
                let a = self.inflight.pong();
                self.answer(a)
            }
            _ => Ok(()),
        }
    }

    fn deliver(&mut self, channel: &[u8], payload: &[u8], received: Instant, plan: &mut Plan) {
        self.core.metrics.redis_messages.inc();
        self.batch_messages += 1;
        // Messages for channels outside our prefix cannot be ours.
        let Some(name) = channel
            .strip_prefix(self.core.settings.channel_prefix.as_bytes())
            .and_then(|n| std::str::from_utf8(n).ok())
        else {
            return;
        };
        if name == self.probe_name {
            return self.state.probe.received(payload);
        }
        self.core.hub.publish(name, payload, received, plan);
    }

    fn answer(&mut self, answer: Answer) -> Result<(), BrokerError> {
        match answer {
            Answer::Subscribed(names) => {
                let confirmed: Vec<String> = names
                    .into_iter()
                    .filter(|n| match self.channels.get_mut(n) {
                        Some(state @ Sub::Pending) => {
                            *state = Sub::Confirmed;
                            true
                        }
                        _ => false,
                    })
                    .collect();
                if confirmed.contains(&self.probe_name) {
                    self.send_probe();
                }
                self.core.hub.confirm(&confirmed);
                Ok(())
            }
            Answer::Unexpected => Err(BrokerError::OutOfStep),
            _ => Ok(()),
        }
    }

    /// An error reply: a refused subscribe (MOVED, CLUSTERDOWN, NOPERM).
    /// The channels are tried again after a backoff; a MOVED also tells
    /// the router where the slot went.
    fn on_error(&mut self, e: &redis::ServerError) -> Result<(), BrokerError> {
        let message = server_error_text(e);
        let Answer::Refused(names) = self.inflight.error() else {
            return Err(BrokerError::Refused(message));
        };
        for n in &names {
            if self.channels.get(n) == Some(&Sub::Pending) {
                self.channels.remove(n);
            }
        }
        self.core
            .metrics
            .redis_dropped_subscriptions
            .inc_by(names.len() as u64);
        tracing::warn!(node = %self.node, error = %message, channels = names.len(), "redis refused a subscription");
        let (min, max) = (
            self.core.settings.reconnect_min,
            self.core.settings.reconnect_max,
        );
        self.retry_at = Some(Instant::now() + crate::broker::backoff(self.refusals, min, max));
        self.refusals = self.refusals.saturating_add(1);
        self.refused.extend(names);
        if let Some(router) = &self.router {
            match moved_to(&message, &self.node) {
                Some((slot, node)) => router.moved(slot, node),
                None => router.refresh(),
            }
        }
        Ok(())
    }

    /// Redis dropped a subscription by itself: its slot moved away.
    fn dropped(&mut self, redis_name: &[u8]) {
        let prefix = self.core.settings.channel_prefix.as_bytes();
        let Some(name) = redis_name
            .strip_prefix(prefix)
            .and_then(|n| std::str::from_utf8(n).ok())
        else {
            return;
        };
        let name = name.to_string();
        let Some(state) = self.channels.remove(&name) else {
            return;
        };
        self.unconfirm([(&name, state)]);
        self.core.metrics.redis_dropped_subscriptions.inc();
        tracing::info!(node = %self.node, channel = %name, "redis dropped a subscription (slot moved); following it");
        // Asking this node again gets a MOVED that names the new owner
        // (or, if it just became the owner's replica, serves it there
        // until the topology read moves it on).
        self.inbox.mark([name]);
        if let Some(router) = &self.router {
            router.refresh();
        }
    }
}

/// `MOVED <slot> <host>:<port>`: where a slot lives now. An empty host
/// means the host of the node that answered.
fn moved_to(message: &str, asked: &HostPort) -> Option<(u16, HostPort)> {
    let mut words = message.split_whitespace();
    (words.next()? == "MOVED").then_some(())?;
    let slot = words.next()?.parse::<u16>().ok()?;
    let (host, port) = words.next()?.rsplit_once(':')?;
    let host = match host.trim_start_matches('[').trim_end_matches(']') {
        "" => asked.host.clone(),
        h => h.to_string(),
    };
    Some((
        slot,
        HostPort {
            host,
            port: port.parse().ok()?,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moved_replies_name_the_new_owner() {
        let asked = HostPort {
            host: "10.0.0.1".into(),
            port: 7000,
        };
        let hp = |h: &str, p| HostPort {
            host: h.into(),
            port: p,
        };
        assert_eq!(
            moved_to("MOVED 3999 127.0.0.1:6381", &asked),
            Some((3999, hp("127.0.0.1", 6381)))
        );
        assert_eq!(
            moved_to("MOVED 1 :7002", &asked),
            Some((1, hp("10.0.0.1", 7002)))
        );
        assert_eq!(
            moved_to("MOVED 2 [::1]:7003", &asked),
            Some((2, hp("::1", 7003)))
        );
        for other in [
            "ASK 3999 127.0.0.1:6381",
            "CLUSTERDOWN The cluster is down",
            "MOVED x y",
            "MOVED 1",
        ] {
            assert_eq!(moved_to(other, &asked), None, "{other}");
        }
    }
}
