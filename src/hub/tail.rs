//! A durable channel's tail in the hub: the last position delivered, and
//! the catch-up that fills a gap.
//!
//! Live delivery can miss messages without any client noticing: the
//! pub/sub link to Redis was lost and re-made, or a path swallowed
//! messages without breaking the connection. On a durable channel the
//! offsets tell: a live message more than one past the last delivered
//! one, or a re-confirmed subscription after a lost link, starts a
//! *catch-up*: live messages are held, the missed ones are read from the
//! channel's history (`redcast_read recover`), and both go out in offset
//! order without duplicates, to every subscriber at once. When the gap
//! cannot be filled (the history lost, trimmed past it, or unreadable)
//! the held messages go out and clients see the gap in the offsets (the
//! JS client then resumes with `since` and learns `recovered: false`).
//!
//! Bound: at most [`MAX_HELD`] messages are held during a catch-up; one
//! more ends the hold (all go out at once, and the gap is left to clients).

use crate::history::Position;
use bytes::Bytes;
use tokio::time::Instant;

/// Messages held while a catch-up reads the history.
pub const MAX_HELD: usize = 10_000;

/// A live message held during a catch-up.
pub struct HeldMessage {
    pub position: Option<Position>,
    pub payload: Bytes,
    pub received: Instant,
}

/// What to do with a live message.
pub enum Observed {
    /// Deliver it now.
    Deliver,
    /// Held (a catch-up is running) or already delivered: nothing now.
    Skip,
    /// It reveals a gap after this position: held; start a catch-up.
    Gap(Position),
    /// The hold overflowed: deliver these (this message last) now.
    Release(Vec<HeldMessage>),
}

/// The channel's durable state.
#[derive(Default)]
pub struct Tail {
    /// The last position delivered through the hub: only what was really
    /// delivered counts as a duplicate.
    last: Option<Position>,
    /// Before anything was delivered: the lowest position clients were
    /// told (acks), from which a gap is measured.
    noted: Option<Position>,
    /// `Some` while a catch-up runs.
    held: Option<Vec<HeldMessage>>,
}

impl Tail {
    /// Looks at a live message before it is delivered.
    pub fn observe(
        &mut self,
        position: Option<&Position>,
        payload: &[u8],
        received: Instant,
    ) -> Observed {
        if let Some(held) = &mut self.held {
            held.push(HeldMessage {
                position: position.cloned(),
                payload: Bytes::copy_from_slice(payload),
                received,
            });
            if held.len() <= MAX_HELD {
                return Observed::Skip;
            }
            let released = self.finish(Vec::new());
            self.open();
            return Observed::Release(released);
        }
        let Some(p) = position else {
            return Observed::Deliver;
        };
        if self.last.as_ref().is_some_and(|l| p.is_at_or_before(l)) {
            return Observed::Skip;
        }
        match self.last.as_ref().or(self.noted.as_ref()) {
            Some(base) if base.epoch == p.epoch && p.offset > base.offset + 1 => {
                let from = base.clone();
                self.held = Some(Vec::new());
                self.observe(position, payload, received);
                Observed::Gap(from)
            }
            _ => {
                self.last = Some(p.clone());
                Observed::Deliver
            }
        }
    }

    /// Notes a position clients were told (an ack), so that a gap right
    /// after it is seen before anything is delivered; the lowest counts.
    pub fn note(&mut self, p: &Position) {
        match &self.noted {
            Some(n) if n.epoch == p.epoch && n.offset <= p.offset => {}
            _ => self.noted = Some(p.clone()),
        }
    }

    /// Starts holding for a catch-up after a re-made link; the position
    /// to read from, if the channel has delivered (or told) any.
    pub fn hold_from_last(&mut self) -> Option<Position> {
        if self.held.is_some() {
            return None;
        }
        let from = self.last.clone().or_else(|| self.noted.clone())?;
        self.held = Some(Vec::new());
        Some(from)
    }

    /// The messages to deliver, in order, without those already
    /// delivered (`replay` first: the history read, oldest first). The
    /// hold goes on (empty) until [`Tail::drain`] or [`Tail::open`].
    pub fn finish(&mut self, replay: Vec<HeldMessage>) -> Vec<HeldMessage> {
        let held = self.held.as_mut().map(std::mem::take).unwrap_or_default();
        let mut out = Vec::with_capacity(replay.len() + held.len());
        for m in replay.into_iter().chain(held) {
            if let Some(p) = &m.position {
                if self.last.as_ref().is_some_and(|l| p.is_at_or_before(l)) {
                    continue;
                }
                self.last = Some(p.clone());
            }
            out.push(m);
        }
        out
    }
}

impl Tail {
    /// What was held since the last take, or `None` once nothing was:
    /// the hold then ends.
    pub fn drain(&mut self) -> Option<Vec<HeldMessage>> {
        if self.held.as_ref().is_some_and(|h| !h.is_empty()) {
            return Some(self.finish(Vec::new()));
        }
        self.open();
        None
    }

    /// Ends the hold.
    pub fn open(&mut self) {
        self.held = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(offset: u64) -> Position {
        Position::new(offset, "e").unwrap()
    }

    fn offsets(v: &[HeldMessage]) -> Vec<u64> {
        v.iter()
            .map(|m| m.position.as_ref().map_or(0, |p| p.offset))
            .collect()
    }

    fn msg(offset: u64) -> HeldMessage {
        HeldMessage {
            position: Some(at(offset)),
            payload: Bytes::new(),
            received: Instant::now(),
        }
    }

    #[test]
    fn a_gap_holds_until_the_history_fills_it() {
        let now = Instant::now();
        let mut t = Tail::default();
        t.note(&at(5));
        t.note(&at(3));
        assert!(matches!(
            t.observe(Some(&at(4)), b"", now),
            Observed::Deliver
        ));
        assert!(matches!(t.observe(Some(&at(4)), b"", now), Observed::Skip));
        assert!(matches!(t.observe(Some(&at(7)), b"", now), Observed::Gap(p) if p.offset == 4));
        assert!(matches!(t.observe(None, b"", now), Observed::Skip));
        assert!(matches!(t.observe(Some(&at(8)), b"", now), Observed::Skip));
        let out = t.finish(vec![msg(5), msg(6), msg(7)]);
        assert_eq!(offsets(&out), [5, 6, 7, 0, 8]);
        // Held while the shards take them; then the hold ends.
        assert!(matches!(t.observe(Some(&at(9)), b"", now), Observed::Skip));
        assert_eq!(offsets(&t.drain().unwrap()), [9]);
        assert!(t.drain().is_none());
        assert!(matches!(
            t.observe(Some(&at(10)), b"", now),
            Observed::Deliver
        ));
        // A new epoch (history lost) is no gap.
        let other = Position::new(1, "f").unwrap();
        assert!(matches!(
            t.observe(Some(&other), b"", now),
            Observed::Deliver
        ));
    }

    #[test]
    fn a_relink_catch_up_starts_from_the_last_delivered() {
        let mut t = Tail::default();
        assert!(t.hold_from_last().is_none());
        t.note(&at(10));
        t.observe(Some(&at(11)), b"", Instant::now());
        assert_eq!(t.hold_from_last().unwrap().offset, 11);
        assert!(t.hold_from_last().is_none());
        assert_eq!(offsets(&t.finish(Vec::new())), Vec::<u64>::new());
        assert!(t.drain().is_none());
    }
}
