//! One channel's entry in the hub: its subscribers, one part per fan-out
//! shard, with counts that say which shards and formats a message needs.

use super::ack::PendingAck;
use super::gate::Gate;
use super::tail::Tail;
use super::{Format, SessionId};
use crate::outbox::Outbox;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// One subscriber as its shard sees it.
pub struct Member {
    pub outbox: Arc<Outbox>,
    pub format: Format,
    /// Durable channels: the hand-over from history to live delivery.
    pub gate: Option<Arc<Gate>>,
}

/// One shard's subscribers of a channel: the hub changes it under its
/// own lock, the shard reads it while queueing a message.
#[derive(Default)]
pub struct Part(Mutex<HashMap<SessionId, Member>>);

impl Part {
    /// The subscribers (a poisoned lock still holds a consistent map).
    pub fn lock(&self) -> MutexGuard<'_, HashMap<SessionId, Member>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub(super) struct Channel {
    /// Subscribers, one part per fan-out shard.
    pub(super) parts: Arc<[Part]>,
    /// Subscribers per part, kept under the hub's lock so that a message
    /// goes only to the shards that have some.
    pub(super) sizes: Vec<usize>,
    /// Subscribers per format: which frames a message needs.
    pub(super) envelope: usize,
    pub(super) raw: usize,
    /// Joined with a gate: the channel keeps history.
    pub(super) durable: bool,
    /// Durable channels: the last position delivered, and catch-ups.
    pub(super) tail: Mutex<Tail>,
    pub(super) confirmed: bool,
    pub(super) waiters: Vec<Arc<PendingAck>>,
}

impl Channel {
    pub(super) fn new(shards: usize) -> Self {
        Self {
            parts: (0..shards).map(|_| Part::default()).collect(),
            sizes: vec![0; shards],
            envelope: 0,
            raw: 0,
            durable: false,
            tail: Mutex::default(),
            confirmed: false,
            waiters: Vec::new(),
        }
    }

    fn count(&mut self, shard: usize, format: Format, added: bool) {
        let step = |n: &mut usize| {
            *n = if added { *n + 1 } else { n.saturating_sub(1) };
        };
        if let Some(size) = self.sizes.get_mut(shard) {
            step(size);
        }
        match format {
            Format::Envelope => step(&mut self.envelope),
            Format::Raw => step(&mut self.raw),
        }
    }

    /// Adds (or replaces) a subscriber; whether it is new.
    pub(super) fn insert(&mut self, shard: usize, session: SessionId, member: Member) -> bool {
        let Some(part) = self.parts.get(shard) else {
            return false;
        };
        let format = member.format;
        self.durable |= member.gate.is_some();
        let old = part.lock().insert(session, member);
        if let Some(was) = &old {
            self.count(shard, was.format, false);
        }
        self.count(shard, format, true);
        old.is_none()
    }

    /// Removes a subscriber; whether it was there.
    pub(super) fn remove(&mut self, shard: usize, session: SessionId) -> bool {
        let old = self
            .parts
            .get(shard)
            .and_then(|p| p.lock().remove(&session));
        let Some(member) = old else { return false };
        self.count(shard, member.format, false);
        true
    }

    pub(super) fn is_empty(&self) -> bool {
        self.envelope + self.raw == 0
    }
}
