//! The hand-over from history to live delivery for one subscriber of one
//! durable channel.
//!
//! From the moment a session joins a durable channel until its position
//! (and any missed messages) have been read from Redis, live messages for
//! it are *held* here instead of being queued. [`Gate::release`] then
//! queues, in this order and under the gate's lock: the recovered
//! messages, the held messages that come after the position read (the
//! *floor*), and opens the gate. A live message that was published before
//! the read but reaches the hub after the release is at or before the
//! floor: it is dropped, so nothing arrives twice. The first live message
//! past the floor opens the gate for good (one atomic load per message
//! from then on).
//!
//! Bound: held frames count against `client.queue_max_bytes` (with the
//! outbox's per-frame overhead); beyond it the client is slow, and is
//! closed as such (4008), exactly as an overflowing outbox.

use crate::history::Position;
use crate::outbox::{Outbox, FRAME_OVERHEAD};
use crate::protocol::Frame;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

const HOLDING: u8 = 0;
const FLOOR: u8 = 1;
const OPEN: u8 = 2;

struct Held {
    frames: Vec<(Option<Position>, Frame)>,
    bytes: usize,
    floor: Option<Position>,
}

/// One subscriber's gate on one durable channel.
pub struct Gate {
    state: AtomicU8,
    held: Mutex<Held>,
    outbox: Arc<Outbox>,
    max_bytes: usize,
}

impl Gate {
    /// A closed gate: live messages are held until [`Gate::release`].
    pub fn new(outbox: Arc<Outbox>, max_bytes: usize) -> Arc<Gate> {
        Arc::new(Gate {
            state: AtomicU8::new(HOLDING),
            held: Mutex::new(Held {
                frames: Vec::new(),
                bytes: 0,
                floor: None,
            }),
            outbox,
            max_bytes,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Held> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the hub should queue this live message now; `false` when
    /// the gate held it or dropped it as already delivered.
    pub fn admit(&self, position: Option<&Position>, frame: &Frame) -> bool {
        if self.state.load(Ordering::Acquire) == OPEN {
            return true;
        }
        let mut held = self.lock();
        match self.state.load(Ordering::Acquire) {
            HOLDING => {
                held.bytes += frame.len() + FRAME_OVERHEAD;
                if held.bytes > self.max_bytes {
                    held.frames = Vec::new();
                    self.outbox.overflow();
                } else {
                    held.frames.push((position.cloned(), frame.clone()));
                }
                false
            }
            FLOOR => match (position, &held.floor) {
                (Some(p), Some(floor)) if p.is_at_or_before(floor) => false,
                (Some(_), _) => {
                    self.state.store(OPEN, Ordering::Release);
                    true
                }
                (None, _) => true,
            },
            _ => true,
        }
    }

    /// Queues `replay`, then the held messages after `floor`, and lets
    /// live messages through (those at or before `floor` are dropped).
    pub fn release(&self, replay: Vec<Frame>, floor: Option<Position>) {
        let mut held = self.lock();
        for frame in replay {
            self.outbox.push(frame);
        }
        let frames = std::mem::take(&mut held.frames);
        for (position, frame) in frames {
            let stale = matches!((&position, &floor), (Some(p), Some(f)) if p.is_at_or_before(f));
            if !stale {
                self.outbox.push(frame);
            }
        }
        held.bytes = 0;
        let next = if floor.is_some() { FLOOR } else { OPEN };
        held.floor = floor;
        self.state.store(next, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::Drain;

    fn text(s: &str) -> Frame {
        Frame::Text(s.to_string().into())
    }

    fn at(offset: u64) -> Position {
        Position::new(offset, "e1").unwrap()
    }

    fn drained(o: &Outbox) -> Vec<String> {
        let mut out = Vec::new();
        assert!(matches!(o.drain(&mut out), Drain::Frames(_)));
        out.iter()
            .map(|f| match f {
                Frame::Text(t) => t.to_string(),
                Frame::Binary(_) => "bin".into(),
            })
            .collect()
    }

    #[test]
    fn replay_then_held_after_floor_then_live_without_duplicates() {
        let outbox = Arc::new(Outbox::new(1 << 20));
        let gate = Gate::new(outbox.clone(), 1 << 20);
        assert!(!gate.admit(Some(&at(5)), &text("5")));
        assert!(!gate.admit(Some(&at(6)), &text("6")));
        assert!(!gate.admit(None, &text("plain")));
        gate.release(vec![text("4"), text("5r")], Some(at(5)));
        assert_eq!(drained(&outbox), ["4", "5r", "6", "plain"]);
        // A late live copy of a replayed message is dropped...
        assert!(!gate.admit(Some(&at(5)), &text("5")));
        // ...and the first one past the floor opens the gate for good.
        assert!(gate.admit(Some(&at(7)), &text("7")));
        assert!(gate.admit(Some(&at(3)), &text("3")));
        // A new epoch is never taken for a duplicate.
        let gate = Gate::new(outbox.clone(), 1 << 20);
        gate.release(Vec::new(), Some(at(9)));
        assert!(gate.admit(Position::new(1, "e2").as_ref(), &text("1")));
    }

    #[test]
    fn holding_more_than_the_bound_marks_the_client_slow() {
        let outbox = Arc::new(Outbox::new(1024));
        let gate = Gate::new(outbox.clone(), 1024);
        for i in 0..20 {
            gate.admit(Some(&at(i)), &text(&"x".repeat(100)));
        }
        assert!(outbox.is_overflowed());
    }
}
