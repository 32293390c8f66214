//! The hub: which local sessions listen to which channel.
//!
//! It is the single source of truth for what Redis should be subscribed
//! to. Sessions add and remove themselves; every change marks the channel
//! dirty and wakes the broker, which reconciles Redis with the hub
//! (SUBSCRIBE on a first subscriber, UNSUBSCRIBE after the last) and then
//! calls [`Hub::confirm`]. For each Redis message the broker calls
//! [`Hub::publish`], which decodes the position (durable channels),
//! encodes the frame once per format and plans a job for each fan-out
//! shard with subscribers on the channel; the shards push the shared
//! bytes into their subscribers' [`Outbox`]es ([`crate::fanout`]).
//!
//! Limits: channels per session are capped by `client.max_subscriptions`
//! and sessions by `server.max_connections`, so the map is bounded by
//! their product; an entry is removed as soon as its last subscriber goes.

mod ack;
mod channel;
mod durable;
mod gate;
mod inbox;
mod tail;

pub use ack::OnConfirmed;
use ack::PendingAck;
use channel::Channel;
pub use channel::{Member, Part};

pub use gate::Gate;
pub use inbox::Inbox;
pub use tail::HeldMessage;
use tail::Observed;

use crate::fanout::{Job, Plan, Shards};
use crate::history;
use crate::metrics::Metrics;
use crate::outbox::{Outbox, Outgoing};
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

/// Reads what a durable channel missed after a position, then calls
/// [`Hub::finish_catch_up`] (installed by the history side).
pub type CatchUp = Box<dyn Fn(String, history::Position) + Send + Sync>;

/// Channel to local subscribers map, shared by sessions and the broker.
pub struct Hub {
    channels: RwLock<HashMap<String, Channel>>,
    changes: Arc<Inbox>,
    unconfirmed: AtomicUsize,
    metrics: Arc<Metrics>,
    catch_up: std::sync::OnceLock<CatchUp>,
    shards: Shards,
}

impl Hub {
    /// An empty hub whose messages go out through `shards`.
    pub fn new(metrics: Arc<Metrics>, shards: Shards) -> Self {
        Self {
            channels: RwLock::default(),
            changes: Arc::default(),
            unconfirmed: AtomicUsize::new(0),
            metrics,
            catch_up: std::sync::OnceLock::new(),
            shards,
        }
    }

    /// Adds a session to channels; the ack is queued once all are confirmed.
    pub fn subscribe(&self, join: Join<'_>) {
        let mut created = Vec::new();
        let mut added = 0;
        // One extra count, released below, so the ack cannot fire early.
        let remaining = AtomicUsize::new(1);
        let mut waiting_on = Vec::new();
        let shard = self.shards.of(join.session);
        {
            let mut map = self.write();
            for name in &join.channels {
                let entry = map.entry(name.clone()).or_insert_with(|| {
                    created.push(name.clone());
                    self.unconfirmed.fetch_add(1, Ordering::Relaxed);
                    Channel::new(self.shards.count())
                });
                let member = Member {
                    outbox: join.outbox.clone(),
                    format: join.format,
                    gate: join.gates.get(name).cloned(),
                };
                added += entry.insert(shard, join.session, member) as i64;
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
        let shard = self.shards.of(session);
        {
            let mut map = self.write();
            for name in channels {
                let Some(entry) = map.get_mut(name) else {
                    continue;
                };
                removed += entry.remove(shard, session) as i64;
                if entry.is_empty() {
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

    /// Plans one Redis message's fan-out: its position (durable channels)
    /// decoded and each format its subscribers need encoded once, and a
    /// job for every shard with subscribers on the channel in `plan` (see
    /// [`crate::fanout`]). A durable channel's message may instead be
    /// held while a gap before it is filled (see [`tail`]).
    pub fn publish(&self, channel: &str, message: &[u8], received: Instant, plan: &mut Plan) {
        let map = self.read();
        let Some(entry) = map.get(channel) else {
            return;
        };
        let (position, payload) = history::split_envelope(message);
        if !entry.durable {
            return self.plan_message(entry, channel, position, payload, received, plan);
        }
        if position.is_none() {
            // A plain PUBLISH on a durable channel: live only, no position.
            self.metrics.history_unpositioned.inc();
        }
        let observed = lock(&entry.tail).observe(position.as_ref(), payload, received);
        match observed {
            Observed::Deliver => {
                self.plan_message(entry, channel, position, payload, received, plan)
            }
            Observed::Skip => {}
            Observed::Gap(from) if self.fills_gaps() => {
                // The catch-up may take the map's lock itself.
                drop(map);
                self.start_catch_up(channel, from);
            }
            // Nothing can fill the gap: let the message go.
            Observed::Gap(_) => {
                for m in lock(&entry.tail).finish(Vec::new()) {
                    self.plan_message(entry, channel, m.position, &m.payload, m.received, plan);
                }
                lock(&entry.tail).open();
            }
            Observed::Release(held) => {
                for m in held {
                    self.plan_message(entry, channel, m.position, &m.payload, m.received, plan);
                }
            }
        }
    }

    /// Adds one message's jobs to `plan`.
    fn plan_message(
        &self,
        entry: &Channel,
        channel: &str,
        position: Option<history::Position>,
        payload: &[u8],
        received: Instant,
        plan: &mut Plan,
    ) {
        let envelope = (entry.envelope > 0).then(|| {
            let frame = protocol::encode_message(channel, payload, position.as_ref());
            Arc::new(Outgoing::new(frame))
        });
        let raw = (entry.raw > 0).then(|| Arc::new(Outgoing::new(protocol::encode_raw(payload))));
        for (shard, _) in entry.sizes.iter().enumerate().filter(|(_, n)| **n > 0) {
            let job = Job {
                parts: entry.parts.clone(),
                envelope: envelope.clone(),
                raw: raw.clone(),
                position: position.clone(),
                received,
            };
            plan.add(shard, job);
        }
    }

    /// An empty plan for a burst of messages.
    pub fn plan(&self) -> Plan {
        self.shards.plan()
    }

    /// Hands a burst's plan to the shards, which write it out.
    pub async fn dispatch(&self, plan: &mut Plan) {
        self.shards.dispatch(plan).await
    }

    /// Marks channels as subscribed in Redis and releases their acks.
    pub fn confirm(&self, channels: &[String]) {
        let mut acks = Vec::new();
        let mut relinked = Vec::new();
        {
            let mut map = self.write();
            for name in channels {
                let Some(entry) = map.get_mut(name) else {
                    continue;
                };
                if !entry.confirmed {
                    entry.confirmed = true;
                    self.unconfirmed.fetch_sub(1, Ordering::Relaxed);
                    // Subscribed again after a lost link: fill what the
                    // link missed (nothing for a new channel).
                    let fill = entry.durable && self.fills_gaps();
                    if let Some(from) = fill.then(|| lock(&entry.tail).hold_from_last()).flatten() {
                        relinked.push((name.clone(), from));
                    }
                }
                acks.append(&mut entry.waiters);
            }
        }
        acks.iter().for_each(|a| a.complete_one());
        for (name, from) in relinked {
            self.start_catch_up(&name, from);
        }
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
