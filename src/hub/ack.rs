//! `subscribed` acknowledgements that wait for Redis to confirm every
//! channel of a join.

use crate::outbox::Outbox;
use crate::protocol;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// What runs once Redis has confirmed every channel of a join, in place
/// of the plain ack (durable channels: read positions, recover, then ack).
pub type OnConfirmed = Box<dyn FnOnce() + Send + Sync>;

/// A `subscribed` acknowledgement waiting for Redis to confirm channels.
pub(super) struct PendingAck {
    /// Raw-mode sessions get no acks (nothing but payloads).
    pub(super) send: bool,
    pub(super) id: Option<String>,
    pub(super) channels: Vec<String>,
    pub(super) remaining: AtomicUsize,
    pub(super) outbox: Arc<Outbox>,
    pub(super) then: Mutex<Option<OnConfirmed>>,
}

impl PendingAck {
    pub(super) fn complete_one(&self) {
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
