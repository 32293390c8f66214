//! The hub's side of durable channels: gaps in live delivery are filled
//! by a catch-up (see [`super::tail`]), installed by the history side.

use super::{lock, CatchUp, HeldMessage, Hub};
use crate::history::Position;

impl Hub {
    /// Installs what fills gaps of durable channels (once).
    pub fn on_catch_up(&self, catch_up: CatchUp) {
        let _ = self.catch_up.set(catch_up);
    }

    pub(super) fn start_catch_up(&self, channel: &str, from: Position) {
        match self.catch_up.get() {
            Some(catch_up) => catch_up(channel.to_string(), from),
            // Nothing can fill it: let the held messages go.
            None => self.finish_catch_up(channel, Vec::new()),
        }
    }

    /// Ends a catch-up: `replay` (read from the history, oldest first),
    /// then the messages held meanwhile, each once, to every subscriber.
    pub fn finish_catch_up(&self, channel: &str, replay: Vec<HeldMessage>) {
        let map = self.read();
        let Some(entry) = map.get(channel) else {
            return;
        };
        let mut dirty = Vec::new();
        // Under the tail's lock: a live message waits until these are queued.
        let mut tail = lock(&entry.tail);
        for m in tail.finish(replay) {
            self.fan_out(
                entry,
                channel,
                m.position.as_ref(),
                &m.payload,
                m.received,
                &mut dirty,
            );
        }
        drop(tail);
        self.flush(&mut dirty);
    }

    /// Notes a position a client was told (its ack), so that a gap right
    /// after it is noticed.
    pub fn note_position(&self, channel: &str, position: &Position) {
        if let Some(entry) = self.read().get(channel) {
            lock(&entry.tail).note(position);
        }
    }
}
