//! A session's bounded outbound queue.
//!
//! The hub pushes shared frames from the broker task; the session's writer
//! drains everything queued at once and writes it with a single flush.
//! The bound is in bytes (`client.queue_max_bytes`), counting a fixed
//! overhead per frame so that even empty frames are bounded in number.
//! Overflow policy: the client is slow, so its queue is dropped at once
//! (freeing memory) and the session closes it with the slow-consumer code.
//! A single frame is always accepted into an empty queue, so a message
//! larger than the bound does not make every subscriber "slow".

use crate::protocol::Frame;
use std::collections::VecDeque;
use std::sync::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Bytes charged per queued frame on top of its payload.
pub const FRAME_OVERHEAD: usize = 64;

/// Result of [`Outbox::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// Queued for the writer.
    Queued,
    /// This push overflowed the queue: the client is now marked slow.
    Overflow,
    /// The session is closing or already slow; the frame was dropped.
    Closed,
}

#[derive(Default)]
struct Queue {
    frames: VecDeque<Frame>,
    bytes: usize,
    /// When the oldest queued message arrived from Redis (for latency).
    oldest: Option<Instant>,
    overflowed: bool,
    closed: bool,
}

/// The queue between the hub and one session's writer.
pub struct Outbox {
    queue: Mutex<Queue>,
    notify: Notify,
    max_bytes: usize,
}

/// What the writer takes from the queue.
#[derive(Debug, PartialEq, Eq)]
pub enum Drain {
    /// Frames were moved into the caller's buffer (possibly none), with
    /// the arrival time of the oldest message among them.
    Frames(Option<Instant>),
    /// The client overflowed its queue and must be closed as slow.
    Overflowed,
}

impl Outbox {
    /// An empty queue holding at most `max_bytes` (plus overhead).
    pub fn new(max_bytes: usize) -> Self {
        Self {
            queue: Mutex::new(Queue::default()),
            notify: Notify::new(),
            max_bytes,
        }
    }

    /// Queues a reply frame (ack, error, pong), waking the writer.
    pub fn push(&self, frame: Frame) -> Push {
        self.push_inner(frame, None)
    }

    /// Queues a message frame that arrived from Redis at `received`.
    pub fn push_message(&self, frame: Frame, received: Instant) -> Push {
        self.push_inner(frame, Some(received))
    }

    fn push_inner(&self, frame: Frame, received: Option<Instant>) -> Push {
        let cost = frame.len() + FRAME_OVERHEAD;
        let Ok(mut q) = self.queue.lock() else {
            return Push::Closed;
        };
        if q.closed || q.overflowed {
            return Push::Closed;
        }
        if !q.frames.is_empty() && q.bytes + cost > self.max_bytes {
            q.overflowed = true;
            q.frames = VecDeque::new();
            q.bytes = 0;
            drop(q);
            self.notify.notify_one();
            return Push::Overflow;
        }
        let was_empty = q.frames.is_empty();
        if q.oldest.is_none() {
            q.oldest = received;
        }
        q.bytes += cost;
        q.frames.push_back(frame);
        drop(q);
        // The writer drains everything at once, so only the first frame
        // after a drain needs to wake it.
        if was_empty {
            self.notify.notify_one();
        }
        Push::Queued
    }

    /// Moves every queued frame into `out`.
    pub fn drain(&self, out: &mut Vec<Frame>) -> Drain {
        let Ok(mut q) = self.queue.lock() else {
            return Drain::Overflowed;
        };
        if q.overflowed {
            return Drain::Overflowed;
        }
        out.extend(q.frames.drain(..));
        q.bytes = 0;
        if q.frames.capacity() > 64 {
            // Give back memory after a burst, so idle sessions stay small.
            q.frames.shrink_to(16);
        }
        Drain::Frames(q.oldest.take())
    }

    /// Resolves when frames (or an overflow) may be waiting.
    pub async fn ready(&self) {
        self.notify.notified().await
    }

    /// Marks the queue closed: further pushes are dropped.
    pub fn close(&self) {
        if let Ok(mut q) = self.queue.lock() {
            q.closed = true;
            q.frames = VecDeque::new();
            q.bytes = 0;
        }
    }

    /// Whether the client has overflowed its queue.
    pub fn is_overflowed(&self) -> bool {
        self.queue.lock().map(|q| q.overflowed).unwrap_or(true)
    }

    /// Bytes currently queued (payload plus overhead).
    pub fn queued_bytes(&self) -> usize {
        self.queue.lock().map(|q| q.bytes).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tungstenite::protocol::frame::Utf8Bytes;

    fn frame(n: usize) -> Frame {
        Frame::Text(Utf8Bytes::from("x".repeat(n)))
    }

    #[test]
    fn overflow_drops_queue_and_reports_once() {
        let o = Outbox::new(1000);
        assert_eq!(o.push(frame(500)), Push::Queued);
        assert_eq!(o.push(frame(300)), Push::Queued);
        assert_eq!(o.push(frame(300)), Push::Overflow);
        assert_eq!(o.push(frame(1)), Push::Closed);
        assert_eq!(o.queued_bytes(), 0);
        assert_eq!(o.drain(&mut Vec::new()), Drain::Overflowed);
    }

    #[test]
    fn one_big_frame_fits_an_empty_queue() {
        let o = Outbox::new(1000);
        assert_eq!(o.push(frame(5000)), Push::Queued);
        let mut out = Vec::new();
        assert_eq!(o.drain(&mut out), Drain::Frames(None));
        assert_eq!(out.len(), 1);
        assert_eq!(o.push(frame(10)), Push::Queued);
    }

    #[test]
    fn empty_frames_are_bounded_too() {
        let o = Outbox::new(1024);
        let queued = (0..100)
            .take_while(|_| o.push(frame(0)) == Push::Queued)
            .count();
        assert_eq!(queued, 1024 / FRAME_OVERHEAD);
    }
}
