//! The hub: which local sessions listen to which channel.
//!
//! It is the single source of truth for what Redis should be subscribed
//! to. Sessions add and remove themselves; every change marks the channel
//! dirty and wakes the broker, which reconciles Redis with the hub
//! (SUBSCRIBE on a first subscriber, UNSUBSCRIBE after the last) and then
//! calls [`Hub::confirm`]. For each Redis message the broker calls
//! [`Hub::publish`], which encodes the frame once per format and pushes the
//! shared bytes into each subscriber's [`Outbox`].
//!
//! Limits: channels per session are capped by `client.max_subscriptions`
//! and sessions by `server.max_connections`, so the map is bounded by
//! their product; an entry is removed as soon as its last subscriber goes.

mod gate;
mod inbox;

pub use gate::Gate;
pub use inbox::Inbox;

use crate::history;
use crate::metrics::Metrics;
use crate::outbox::{Outbox, Outgoing, Push};
use crate::protocol;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use tokio::time::Instant;

/// Identifies one session in the hub.
pub type SessionId = u64;

/// How a subscriber wants its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `{"type":"message","channel":..,"data":..}` envelopes.
    Envelope,
    /// The payload verbatim, nothing else.
    Raw,
}

/// What runs once Redis has confirmed every channel of a join, in place
/// of the plain ack (durable channels: read positions, recover, then ack).
pub type OnConfirmed = Box<dyn FnOnce() + Send + Sync>;

/// A `subscribed` acknowledgement waiting for Redis to confirm channels.
struct PendingAck {
    /// Raw-mode sessions get no acks (nothing but payloads).
    send: bool,
    id: Option<String>,
    channels: Vec<String>,
    remaining: AtomicUsize,
    outbox: Arc<Outbox>,
    then: Mutex<Option<OnConfirmed>>,
}

impl PendingAck {
    fn complete_one(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        let then = self.then.lock().unwrap_or_else(|e| e.into_inner()).take();
        match then {
            Some(then) => then(),
            None if self.send => {
                let ack = protocol::encode_subscribed(self.id.as_deref(), &self.channels);
                self.outbox.push(ack);
            }
            None => {}
        }
    }
}

struct Subscriber {
    outbox: Arc<Outbox>,
    format: Format,
    /// Durable channels: the hand-over from history to live delivery.
    gate: Option<Arc<Gate>>,
}

#[derive(Default)]
struct Channel {
    subscribers: HashMap<SessionId, Subscriber>,
    /// Joined with a gate: the channel keeps history.
    durable: bool,
    confirmed: bool,
    waiters: Vec<Arc<PendingAck>>,
}

/// A session's request to join channels.
pub struct Join<'a> {
    pub session: SessionId,
    pub outbox: &'a Arc<Outbox>,
    pub format: Format,
    /// Channels to join; ones the session already has are kept as they are,
    /// but the ack still waits until Redis has confirmed every one.
    pub channels: Vec<String>,
    /// The request id, echoed in the ack.
    pub id: Option<String>,
    /// Gates for the durable channels among `channels`.
    pub gates: HashMap<String, Arc<Gate>>,
    /// Runs instead of the plain ack once every channel is confirmed.
    pub then: Option<OnConfirmed>,
}

/// Channel to local subscribers map, shared by sessions and the broker.
pub struct Hub {
    channels: RwLock<HashMap<String, Channel>>,
    changes: Arc<Inbox>,
    unconfirmed: AtomicUsize,
    metrics: Arc<Metrics>,
}

impl Hub {
    /// An empty hub.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            channels: RwLock::default(),
            changes: Arc::default(),
            unconfirmed: AtomicUsize::new(0),
            metrics,
        }
    }

    /// Adds a session to channels; the ack is queued once all are confirmed.
    pub fn subscribe(&self, join: Join<'_>) {
        let mut created = Vec::new();
        let mut added = 0;
        // One extra count, released below, so the ack cannot fire early.
        let remaining = AtomicUsize::new(1);
        let mut waiting_on = Vec::new();
        {
            let mut map = self.write();
            for name in &join.channels {
                let entry = map.entry(name.clone()).or_insert_with(|| {
                    created.push(name.clone());
                    self.unconfirmed.fetch_add(1, Ordering::Relaxed);
                    Channel::default()
                });
                let sub = Subscriber {
                    outbox: join.outbox.clone(),
                    format: join.format,
                    gate: join.gates.get(name).cloned(),
                };
                entry.durable |= sub.gate.is_some();
                added += entry.subscribers.insert(join.session, sub).is_none() as i64;
                if !entry.confirmed {
                    remaining.fetch_add(1, Ordering::Relaxed);
                    waiting_on.push(name.clone());
                }
            }
            self.metrics.channels_active.set(map.len() as i64);
        }
        let ack = Arc::new(PendingAck {
            send: join.format == Format::Envelope,
            id: join.id,
            channels: join.channels,
            remaining,
            outbox: join.outbox.clone(),
            then: Mutex::new(join.then),
        });
        self.add_waiters(&waiting_on, &ack);
        self.metrics.subscriptions.inc_by(added);
        self.mark_dirty(created);
        ack.complete_one();
    }

    /// Registers `ack` on channels that were unconfirmed a moment ago; a
    /// channel confirmed (or removed) in between releases its count now.
    fn add_waiters(&self, channels: &[String], ack: &Arc<PendingAck>) {
        let mut map = self.write();
        for name in channels {
            match map.get_mut(name) {
                Some(entry) if !entry.confirmed => entry.waiters.push(ack.clone()),
                _ => ack.complete_one(),
            }
        }
    }

    /// Removes a session from channels it had joined.
    pub fn unsubscribe(&self, session: SessionId, channels: &[String]) {
        let mut emptied = Vec::new();
        let mut removed = 0;
        {
            let mut map = self.write();
            for name in channels {
                let Some(entry) = map.get_mut(name) else {
                    continue;
                };
                removed += entry.subscribers.remove(&session).is_some() as i64;
                if entry.subscribers.is_empty() {
                    if let Some(entry) = map.remove(name) {
                        self.drop_channel(entry);
                    }
                    emptied.push(name.clone());
                }
            }
            self.metrics.channels_active.set(map.len() as i64);
        }
        self.metrics.subscriptions.dec_by(removed);
        self.mark_dirty(emptied);
    }

    fn drop_channel(&self, entry: Channel) {
        if !entry.confirmed {
            self.unconfirmed.fetch_sub(1, Ordering::Relaxed);
        }
        // Nobody is left to read these acks, but release them anyway.
        entry.waiters.iter().for_each(|w| w.complete_one());
    }

    /// Fans one Redis message out to the channel's local subscribers: the
    /// position (durable channels) is decoded and each format encoded
    /// once, and shared. Direct-mode subscribers whose queue this message
    /// started are added to `dirty`, for [`Hub::flush`] after the batch.
    /// Returns how many deliveries were queued.
    pub fn publish(
        &self,
        channel: &str,
        message: &[u8],
        received: Instant,
        dirty: &mut Vec<Arc<Outbox>>,
    ) -> usize {
        let map = self.read();
        let Some(entry) = map.get(channel) else {
            return 0;
        };
        let (position, payload) = history::split_envelope(message);
        let (mut envelope, mut raw): (Option<Outgoing>, Option<Outgoing>) = (None, None);
        let (mut queued, mut slow, mut bytes) = (0u64, 0u64, 0u64);
        for sub in entry.subscribers.values() {
            let msg = match sub.format {
                Format::Envelope => envelope.get_or_insert_with(|| {
                    let frame = protocol::encode_message(channel, payload, position.as_ref());
                    Outgoing::new(frame)
                }),
                Format::Raw => {
                    raw.get_or_insert_with(|| Outgoing::new(protocol::encode_raw(payload)))
                }
            };
            if let Some(gate) = &sub.gate {
                if !gate.admit(position.as_ref(), &msg.frame) {
                    continue;
                }
            }
            match sub.outbox.push_message(msg, received) {
                (Push::Queued, first) => {
                    queued += 1;
                    bytes += msg.frame.len() as u64;
                    if first {
                        dirty.push(sub.outbox.clone());
                    }
                }
                (Push::Overflow, _) => slow += 1,
                (Push::Closed, _) => {}
            }
        }
        self.metrics.frames_delivered.inc_by(queued);
        self.metrics.bytes_out.inc_by(bytes);
        self.metrics.slow_consumers.inc_by(slow);
        if entry.durable && position.is_none() {
            // A plain PUBLISH on a durable channel: live only, no position.
            self.metrics.history_unpositioned.inc();
        }
        queued as usize
    }

    /// Writes the queues a batch of messages started (direct mode).
    pub fn flush(&self, dirty: &mut Vec<Arc<Outbox>>) {
        dirty.drain(..).for_each(|outbox| outbox.flush_now());
    }

    /// Marks channels as subscribed in Redis and releases their acks.
    pub fn confirm(&self, channels: &[String]) {
        let mut acks = Vec::new();
        {
            let mut map = self.write();
            for name in channels {
                let Some(entry) = map.get_mut(name) else {
                    continue;
                };
                if !entry.confirmed {
                    entry.confirmed = true;
                    self.unconfirmed.fetch_sub(1, Ordering::Relaxed);
                }
                acks.append(&mut entry.waiters);
            }
        }
        acks.iter().for_each(|a| a.complete_one());
    }

    /// After a pub/sub connection is lost (or Redis dropped a
    /// subscription): these channels are not confirmed any more.
    pub fn unconfirm<'a>(&self, channels: impl IntoIterator<Item = &'a String>) {
        let mut map = self.write();
        for name in channels {
            if let Some(entry) = map.get_mut(name) {
                if entry.confirmed {
                    entry.confirmed = false;
                    self.unconfirmed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Whether the channel has local subscribers (what Redis should have).
    pub fn wants(&self, channel: &str) -> bool {
        self.read().contains_key(channel)
    }

    /// Every channel with local subscribers.
    pub fn channel_names(&self) -> Vec<String> {
        self.read().keys().cloned().collect()
    }

    /// Channels with subscribers that Redis has not confirmed yet.
    pub fn unconfirmed(&self) -> usize {
        self.unconfirmed.load(Ordering::Relaxed)
    }

    /// Channels whose Redis state may need changing (created or emptied).
    pub fn changes(&self) -> &Arc<Inbox> {
        &self.changes
    }

    fn mark_dirty(&self, channels: Vec<String>) {
        if !channels.is_empty() {
            self.changes.mark(channels);
        }
    }

    // A poisoned lock means a panic mid-update elsewhere; the map itself
    // is still consistent per entry, so keep serving rather than crash.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Channel>> {
        self.channels.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Channel>> {
        self.channels.write().unwrap_or_else(|e| e.into_inner())
    }
}
