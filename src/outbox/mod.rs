//! A session's bounded outbound queue, and its direct path to the socket.
//!
//! The session's fan-out shard ([`crate::fanout`]) pushes shared frames.
//! In *direct* mode (`server.direct_writes`, the default; plain TCP and
//! TLS alike) the shard queues the pre-encoded WebSocket frames of every
//! message in a burst, then writes each touched client's queue straight
//! to its socket with one vectored write ([`Outbox::flush_now`]; over TLS
//! encrypted first, several frames per record: `tls`): no task wake-up,
//! no copy, one `write` per client per burst (per delivery when messages
//! come one by one). Only what the socket does not take stays queued, for
//! the session to flush when the socket is writable again. In *queued*
//! mode (`server.direct_writes = false`, and SSE streams) the session's
//! writer drains everything queued at once and writes it with a single
//! flush.
//!
//! The bound is in bytes (`client.queue_max_bytes`), counting a fixed
//! overhead per frame so that even empty frames are bounded in number.
//! Overflow policy: the client is slow, so its queue is dropped at once
//! (freeing memory; a half-written frame is kept so that the stream stays
//! well-formed) and the session closes it with the slow-consumer code. A
//! single frame is always accepted into an empty queue, so a message
//! larger than the bound does not make every subscriber "slow".

mod direct;
pub mod records;
mod tls;

pub use direct::{Socket, WireIo};
pub use records::Records;
pub use tls::TlsLink;

use crate::protocol::{self, Frame};
use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Bytes charged per queued frame on top of its payload.
pub const FRAME_OVERHEAD: usize = 64;

/// Result of a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// Queued for the writer (or written at once, in direct mode).
    Queued,
    /// This push overflowed the queue: the client is now marked slow.
    Overflow,
    /// The session is closing or already slow; the frame was dropped.
    Closed,
}

/// One message as every subscriber shares it: the frame (for queued
/// sessions) and, made on first use, its wire encoding (for direct ones).
pub struct Outgoing {
    pub frame: Frame,
    wire: std::sync::OnceLock<Bytes>,
}

impl Outgoing {
    pub fn new(frame: Frame) -> Self {
        Self {
            frame,
            wire: std::sync::OnceLock::new(),
        }
    }

    fn wire(&self) -> &Bytes {
        self.wire.get_or_init(|| protocol::encode_wire(&self.frame))
    }
}

enum Item {
    Frame(Frame),
    Wire(Bytes),
}

impl Item {
    fn len(&self) -> usize {
        match self {
            Item::Frame(f) => f.len(),
            Item::Wire(b) => b.len(),
        }
    }
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Item>,
    bytes: usize,
    /// When the oldest queued message arrived from Redis (for latency).
    oldest: Option<Instant>,
    /// The front item is partly written (direct mode).
    front_started: bool,
    overflowed: bool,
    closed: bool,
    /// The socket failed (direct mode).
    broken: bool,
}

/// The queue between the hub and one session's writer.
pub struct Outbox {
    queue: Mutex<Queue>,
    notify: Notify,
    max_bytes: usize,
    /// Direct mode: where frames are written.
    socket: Option<Socket>,
}

/// What the writer takes from the queue (queued mode).
#[derive(Debug, PartialEq, Eq)]
pub enum Drain {
    /// Frames were moved into the caller's buffer (possibly none), with
    /// the arrival time of the oldest message among them.
    Frames(Option<Instant>),
    /// The client overflowed its queue and must be closed as slow.
    Overflowed,
}

impl Outbox {
    /// A queued-mode outbox holding at most `max_bytes` (plus overhead).
    pub fn new(max_bytes: usize) -> Self {
        Self {
            queue: Mutex::new(Queue::default()),
            notify: Notify::new(),
            max_bytes,
            socket: None,
        }
    }

    /// A direct-mode outbox writing to `socket` (plain or TLS).
    pub fn direct(max_bytes: usize, socket: Socket) -> Self {
        Self {
            socket: Some(socket),
            ..Self::new(max_bytes)
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a reply frame (ack, error, pong), waking the writer.
    pub fn push(&self, frame: Frame) -> Push {
        let item = match self.socket {
            Some(_) => Item::Wire(protocol::encode_wire(&frame)),
            None => Item::Frame(frame),
        };
        self.push_item(item, None, false).0
    }

    /// Queues a message that arrived at `received`, as part of a batch of
    /// messages: nothing is written yet. Returns the push result and
    /// whether a direct-mode queue was empty before (its session then
    /// needs [`Outbox::flush_now`] once the batch is queued), so that a
    /// burst goes out as one vectored write per client.
    pub fn push_message(&self, msg: &Outgoing, received: Instant) -> (Push, bool) {
        match self.socket {
            None => (
                self.push_item(Item::Frame(msg.frame.clone()), Some(received), false)
                    .0,
                false,
            ),
            Some(_) => self.push_item(Item::Wire(msg.wire().clone()), Some(received), true),
        }
    }

    /// Direct mode: sends whatever the kernel holds back for this socket
    /// (the 101 written with `MSG_MORE` during the upgrade). Setting
    /// `TCP_NODELAY` pushes pending data even when it is already set.
    pub fn push_held(&self) {
        if let Some(Socket::Plain(socket)) = &self.socket {
            let _ = socket.as_ref().set_nodelay(true);
        }
    }

    /// Writes what the socket takes now (direct mode, after a batch); the
    /// session is woken to wait for the rest.
    pub fn flush_now(&self) {
        let Some(socket) = &self.socket else { return };
        let mut q = self.lock();
        if socket.write_queued(&mut q).is_err() {
            q.broken = true;
        }
        let wake = q.broken || !q.items.is_empty() || socket.pending();
        if q.items.is_empty() {
            q.oldest = None;
        }
        drop(q);
        if wake {
            self.notify.notify_one();
        }
    }

    /// Queues (or writes) an item; also says whether the queue was empty,
    /// read under the same lock (a deferred push into an empty queue makes
    /// the caller responsible for flushing it).
    fn push_item(&self, item: Item, received: Option<Instant>, deferred: bool) -> (Push, bool) {
        let cost = item.len() + FRAME_OVERHEAD;
        let mut q = self.lock();
        if q.closed || q.overflowed || q.broken {
            return (Push::Closed, false);
        }
        if !q.items.is_empty() && q.bytes + cost > self.max_bytes {
            overflow(&mut q);
            drop(q);
            self.notify.notify_one();
            return (Push::Overflow, false);
        }
        let was_empty = q.items.is_empty();
        if deferred {
            // The batch's flush_now writes it; no wake-up needed.
            return (self.enqueue(q, item, received, false), was_empty);
        }
        if was_empty {
            if let (Some(socket), Item::Wire(bytes)) = (&self.socket, &item) {
                return match socket.try_send(bytes, &mut q) {
                    None if socket.pending() => {
                        // Encrypted, not all sent: the session flushes it.
                        drop(q);
                        self.notify.notify_one();
                        (Push::Queued, true)
                    }
                    None => (Push::Queued, true),
                    // Partly written or refused: the rest waits for the writer.
                    Some(rest) => (self.enqueue(q, Item::Wire(rest), received, true), true),
                };
            }
        }
        (self.enqueue(q, item, received, was_empty), was_empty)
    }

    fn enqueue(
        &self,
        mut q: MutexGuard<'_, Queue>,
        item: Item,
        received: Option<Instant>,
        wake: bool,
    ) -> Push {
        if q.broken {
            drop(q);
            self.notify.notify_one();
            return Push::Closed;
        }
        if q.oldest.is_none() {
            q.oldest = received;
        }
        q.bytes += item.len() + FRAME_OVERHEAD;
        q.items.push_back(item);
        drop(q);
        // The writer takes everything at once, so only the first item
        // after it emptied the queue needs to wake it.
        if wake {
            self.notify.notify_one();
        }
        Push::Queued
    }

    /// Moves every queued frame into `out` (queued mode; in direct mode
    /// the queue stays for [`Outbox::poll_flush`] and only an overflow is
    /// reported).
    pub fn drain(&self, out: &mut Vec<Frame>) -> Drain {
        let mut q = self.lock();
        if q.overflowed {
            return Drain::Overflowed;
        }
        if self.socket.is_some() {
            return Drain::Frames(None);
        }
        out.extend(q.items.drain(..).filter_map(|i| match i {
            Item::Frame(f) => Some(f),
            Item::Wire(_) => None,
        }));
        q.bytes = 0;
        if q.items.capacity() > 64 {
            // Give back memory after a burst, so idle sessions stay small.
            q.items.shrink_to(16);
        }
        Drain::Frames(q.oldest.take())
    }

    /// Resolves when frames (or an overflow) may be waiting.
    pub async fn ready(&self) {
        self.notify.notified().await
    }

    /// Refuses further messages and replies; what is queued stays, and
    /// the session may still write its close frame.
    pub fn close(&self) {
        self.lock().closed = true;
    }

    /// Marks the client slow from outside the queue (it overflowed what
    /// was held for it elsewhere): the session closes it as such.
    pub fn overflow(&self) {
        overflow(&mut self.lock());
        self.notify.notify_one();
    }

    /// Whether bytes wait for the socket (direct mode).
    pub fn has_backlog(&self) -> bool {
        let Some(socket) = &self.socket else {
            return false;
        };
        !self.lock().items.is_empty() || socket.pending()
    }

    /// Whether the client has overflowed its queue.
    pub fn is_overflowed(&self) -> bool {
        self.lock().overflowed
    }

    /// Bytes currently queued (payload plus overhead).
    pub fn queued_bytes(&self) -> usize {
        self.lock().bytes
    }
}

/// Marks the client slow and frees its queue, keeping only a frame that
/// is already partly on the wire (cutting it would corrupt the stream).
fn overflow(q: &mut Queue) {
    q.overflowed = true;
    let keep = if q.front_started {
        q.items.pop_front()
    } else {
        None
    };
    q.items = VecDeque::new();
    q.bytes = 0;
    if let Some(front) = keep {
        q.bytes = front.len() + FRAME_OVERHEAD;
        q.items.push_back(front);
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
