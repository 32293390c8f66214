//! What the controller of the recovery storm tells its clients, and the
//! board they report to: counters, a few samples of what went wrong, and
//! the histograms of recovery times and of the others' latency.

use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// What the controller tells every client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmd {
    Hold,
    Drop,
    Resume,
    Stop,
}

/// Phases in which others' latency is recorded (0: not recorded).
pub const BASELINE: u8 = 1;
pub const STORM: u8 = 2;
pub const AFTER: u8 = 3;

/// A client's `last` once its stream was found inexact (every top is >= 1).
pub const BROKEN: u64 = 0;

pub struct Board {
    /// First-wave acks (storm and others), and those without a position.
    pub acked: AtomicUsize,
    pub no_position: AtomicUsize,
    /// Storm clients that dropped their connection.
    pub away: AtomicUsize,
    /// Per client (storm, then others): the last offset of an exact stream.
    pub last: Vec<AtomicU64>,
    /// Storm clients done with their resume: recovered, refused, faulted or failed.
    pub settled: AtomicUsize,
    pub recovered: AtomicUsize,
    pub refused: AtomicUsize,
    pub faulted: AtomicUsize,
    pub failed: AtomicUsize,
    /// Inexact streams (any client, any time) and connections lost.
    pub broken: AtomicUsize,
    pub lost: AtomicUsize,
    /// Messages received after resuming (storm clients).
    pub resumed_messages: AtomicU64,
    /// Sum of the offsets storm clients resumed from.
    pub since_sum: AtomicU64,
    pub samples: Mutex<Vec<String>>,
    pub start: Mutex<Option<Instant>>,
    /// Since the storm's start, ns: the ack, and the last missed message.
    pub acks: Mutex<Histogram<u64>>,
    pub recoveries: Mutex<Histogram<u64>>,
    pub phase: AtomicU8,
    /// Others' latency in BASELINE, STORM, AFTER (ns).
    pub latency: [Mutex<Histogram<u64>>; 3],
}

fn histogram() -> anyhow::Result<Mutex<Histogram<u64>>> {
    Ok(Mutex::new(Histogram::new_with_bounds(
        1,
        600_000_000_000,
        3,
    )?))
}

impl Board {
    pub fn new(clients: usize) -> anyhow::Result<Self> {
        Ok(Board {
            acked: AtomicUsize::new(0),
            no_position: AtomicUsize::new(0),
            away: AtomicUsize::new(0),
            last: (0..clients).map(|_| AtomicU64::new(0)).collect(),
            settled: AtomicUsize::new(0),
            recovered: AtomicUsize::new(0),
            refused: AtomicUsize::new(0),
            faulted: AtomicUsize::new(0),
            failed: AtomicUsize::new(0),
            broken: AtomicUsize::new(0),
            lost: AtomicUsize::new(0),
            resumed_messages: AtomicU64::new(0),
            since_sum: AtomicU64::new(0),
            samples: Mutex::new(Vec::new()),
            start: Mutex::new(None),
            acks: histogram()?,
            recoveries: histogram()?,
            phase: AtomicU8::new(0),
            latency: [histogram()?, histogram()?, histogram()?],
        })
    }

    pub fn note(&self, s: String) {
        if let Ok(mut v) = self.samples.lock() {
            if v.len() < 20 {
                v.push(s);
            }
        }
    }

    pub fn since_start(&self, h: &Mutex<Histogram<u64>>) {
        let start = *self.start.lock().unwrap_or_else(|e| e.into_inner());
        if let (Some(t), Ok(mut h)) = (start, h.lock()) {
            h.saturating_record((t.elapsed().as_nanos() as u64).max(1));
        }
    }

    pub fn count(&self, a: &AtomicUsize) -> usize {
        a.load(Ordering::Relaxed)
    }
}
