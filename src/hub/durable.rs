//! The hub's side of durable channels: gaps in live delivery are filled
//! by a catch-up (see [`super::tail`]), installed by the history side.

use super::{lock, CatchUp, HeldMessage, Hub};
use crate::history::Position;

impl Hub {
    /// Installs what fills gaps of durable channels (once).
    pub fn on_catch_up(&self, catch_up: CatchUp) {
        let _ = self.catch_up.set(catch_up);
    }

    /// Whether gaps can be filled (a catch-up is installed).
    pub(super) fn fills_gaps(&self) -> bool {
        self.catch_up.get().is_some()
    }

    pub(super) fn start_catch_up(&self, channel: &str, from: Position) {
        if let Some(catch_up) = self.catch_up.get() {
            catch_up(channel.to_string(), from);
        }
    }

    /// Ends a catch-up: `replay` (read from the history, oldest first),
    /// then the messages held meanwhile, each once, to every subscriber.
    /// The channel keeps holding live messages until all of these are in
    /// the shards' queues, so that nothing later overtakes them.
    pub async fn finish_catch_up(&self, channel: &str, replay: Vec<HeldMessage>) {
        let mut batch = match self.read().get(channel) {
            Some(entry) => lock(&entry.tail).finish(replay),
            None => return,
        };
        loop {
            let mut plan = self.plan();
            {
                let map = self.read();
                let Some(entry) = map.get(channel) else {
                    return;
                };
                for m in batch {
                    self.plan_message(
                        entry, channel, m.position, &m.payload, m.received, &mut plan,
                    );
                }
            }
            self.dispatch(&mut plan).await;
            batch = match self.read().get(channel) {
                Some(entry) => match lock(&entry.tail).drain() {
                    Some(more) => more,
                    None => return,
                },
                None => return,
            };
        }
    }

    /// Notes a position a client was told (its ack), so that a gap right
    /// after it is noticed.
    pub fn note_position(&self, channel: &str, position: &Position) {
        if let Some(entry) = self.read().get(channel) {
            lock(&entry.tail).note(position);
        }
    }
}
