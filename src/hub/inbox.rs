//! The hub's record of channels whose Redis subscription may need
//! changing, and the wake-up of whoever brings Redis in line.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use tokio::sync::Notify;

/// Channels whose Redis subscription may need changing, and a wake-up
/// for whoever brings Redis in line: the hub has one (its consumer is the
/// broker), and so has each cluster feed (filled by the cluster's router).
/// Bounded by the channels the hub holds.
#[derive(Default)]
pub struct Inbox {
    dirty: Mutex<HashSet<String>>,
    /// Everything the consumer holds must be looked at again (the cluster
    /// topology changed).
    recheck: AtomicBool,
    wake: Notify,
}

impl Inbox {
    /// Adds channels and wakes the consumer.
    pub fn mark<I: IntoIterator<Item = String>>(&self, channels: I) {
        let mut d = self.dirty.lock().unwrap_or_else(|e| e.into_inner());
        let before = d.len();
        d.extend(channels);
        let grew = d.len() > before;
        drop(d);
        if grew {
            self.wake.notify_one();
        }
    }

    /// Asks the consumer to look at everything it holds again.
    pub fn mark_all(&self) {
        self.recheck.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// Takes the marked channels, and whether everything needs a look.
    pub fn take(&self) -> (HashSet<String>, bool) {
        let d = std::mem::take(&mut *self.dirty.lock().unwrap_or_else(|e| e.into_inner()));
        (d, self.recheck.swap(false, Ordering::AcqRel))
    }

    /// Resolves when something was marked.
    pub async fn changed(&self) {
        self.wake.notified().await
    }
}
