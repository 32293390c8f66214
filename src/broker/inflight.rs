//! What a feed has sent and Redis has not yet answered, in order.
//!
//! Commands are pipelined: a feed writes many (S)SUBSCRIBEs at once and
//! handles the confirmations as they arrive among the messages. Redis
//! answers in order, one confirmation per channel, or one error for the
//! whole command. The one push that is no answer at all is an
//! `(s)unsubscribe` Redis sends on its own when a slot moves away; it is
//! told apart by not matching the unsubscribe at the head of the queue.

use std::collections::VecDeque;
use tokio::time::Instant;

/// A command awaiting its answers.
#[derive(Debug)]
enum Command {
    /// Channels (client names) still to be confirmed, in the order sent.
    Subscribe {
        channels: Vec<String>,
        confirmed: usize,
    },
    /// Channels (Redis names) whose confirmation has not come yet.
    Unsubscribe {
        awaiting: Vec<Vec<u8>>,
    },
    Ping,
}

/// What an answer meant.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// A subscribe finished: these channels (client names) are in Redis.
    Subscribed(Vec<String>),
    /// A subscribe was refused whole: these channels are not.
    Refused(Vec<String>),
    /// Part of an answer; nothing to do yet.
    Partial,
    /// Not an answer: Redis dropped this subscription on its own.
    ServerUnsubscribed,
    /// An answer nothing was waiting for: the stream is out of step.
    Unexpected,
}

/// The queue of unanswered commands.
#[derive(Debug, Default)]
pub struct InFlight {
    queue: VecDeque<(Instant, Command)>,
}

impl InFlight {
    /// Forgets everything (the connection is gone).
    pub fn clear(&mut self) {
        self.queue.clear();
    }

    /// When the oldest unanswered command was sent.
    pub fn oldest(&self) -> Option<Instant> {
        self.queue.front().map(|(at, _)| *at)
    }

    pub fn subscribing(&mut self, channels: Vec<String>) {
        let cmd = Command::Subscribe {
            channels,
            confirmed: 0,
        };
        self.queue.push_back((Instant::now(), cmd));
    }

    pub fn unsubscribing(&mut self, redis_names: Vec<Vec<u8>>) {
        let cmd = Command::Unsubscribe {
            awaiting: redis_names,
        };
        self.queue.push_back((Instant::now(), cmd));
    }

    pub fn pinging(&mut self) {
        self.queue.push_back((Instant::now(), Command::Ping));
    }

    /// A `subscribe`/`ssubscribe` confirmation.
    pub fn subscribe_confirmed(&mut self) -> Answer {
        let Some((
            _,
            Command::Subscribe {
                channels,
                confirmed,
            },
        )) = self.queue.front_mut()
        else {
            return Answer::Unexpected;
        };
        *confirmed += 1;
        if *confirmed < channels.len() {
            return Answer::Partial;
        }
        match self.queue.pop_front() {
            Some((_, Command::Subscribe { channels, .. })) => Answer::Subscribed(channels),
            _ => Answer::Unexpected,
        }
    }

    /// An `unsubscribe`/`sunsubscribe` push for `redis_name`.
    pub fn unsubscribe_seen(&mut self, redis_name: &[u8]) -> Answer {
        let Some((_, Command::Unsubscribe { awaiting })) = self.queue.front_mut() else {
            return Answer::ServerUnsubscribed;
        };
        let Some(i) = awaiting.iter().position(|c| c == redis_name) else {
            return Answer::ServerUnsubscribed;
        };
        awaiting.swap_remove(i);
        if awaiting.is_empty() {
            self.queue.pop_front();
        }
        Answer::Partial
    }

    /// A PONG.
    pub fn pong(&mut self) -> Answer {
        match self.queue.front() {
            Some((_, Command::Ping)) => {
                self.queue.pop_front();
                Answer::Partial
            }
            _ => Answer::Unexpected,
        }
    }

    /// An error reply: it answers the command at the head whole.
    pub fn error(&mut self) -> Answer {
        match self.queue.pop_front() {
            Some((_, Command::Subscribe { channels, .. })) => Answer::Refused(channels),
            // An unsubscribe or PING refused: nothing sensible follows.
            _ => Answer::Unexpected,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn pipelined_commands_are_answered_in_order() {
        let mut q = InFlight::default();
        q.subscribing(names(&["a", "b"]));
        q.unsubscribing(vec![b"p:c".to_vec(), b"p:d".to_vec()]);
        q.pinging();
        q.subscribing(names(&["e"]));
        assert_eq!(q.subscribe_confirmed(), Answer::Partial);
        assert_eq!(
            q.subscribe_confirmed(),
            Answer::Subscribed(names(&["a", "b"]))
        );
        assert_eq!(q.unsubscribe_seen(b"p:d"), Answer::Partial);
        assert_eq!(q.unsubscribe_seen(b"p:c"), Answer::Partial);
        assert_eq!(q.pong(), Answer::Partial);
        assert_eq!(q.error(), Answer::Refused(names(&["e"])));
        assert!(q.oldest().is_none());
    }

    #[test]
    fn unsolicited_unsubscribes_are_told_apart() {
        let mut q = InFlight::default();
        assert_eq!(q.unsubscribe_seen(b"x"), Answer::ServerUnsubscribed);
        q.subscribing(names(&["a"]));
        // Slot moved while a subscribe is in flight: not its answer.
        assert_eq!(q.unsubscribe_seen(b"x"), Answer::ServerUnsubscribed);
        q.unsubscribing(vec![b"y".to_vec()]);
        assert_eq!(q.subscribe_confirmed(), Answer::Subscribed(names(&["a"])));
        assert_eq!(q.unsubscribe_seen(b"x"), Answer::ServerUnsubscribed);
        assert_eq!(q.unsubscribe_seen(b"y"), Answer::Partial);
    }

    #[test]
    fn answers_nothing_waits_for_are_unexpected() {
        let mut q = InFlight::default();
        assert_eq!(q.subscribe_confirmed(), Answer::Unexpected);
        assert_eq!(q.pong(), Answer::Unexpected);
        assert_eq!(q.error(), Answer::Unexpected);
        q.pinging();
        assert_eq!(q.subscribe_confirmed(), Answer::Unexpected);
    }
}
