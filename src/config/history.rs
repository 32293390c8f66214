//! Durable channels: the `[history]` section and the per-rule retention
//! keys (`history_size`, `history_ttl` in `[[channels.rules]]`).

use super::key::{at_least, err, positive, KeyError};
use serde::Deserialize;
use std::time::Duration;

/// Default `history_ttl` of a rule with a `history_size`.
pub const DEFAULT_HISTORY_TTL: Duration = Duration::from_secs(3600);
/// Largest `history_size` (entries kept per channel).
pub const MAX_HISTORY_SIZE: usize = 1_000_000;
/// Default `history.max_replay`.
pub const DEFAULT_MAX_REPLAY: usize = 1_000;
/// Largest `history.max_replay`: one replay is queued for the client at
/// once, so it must stay well inside a client queue.
pub const MAX_MAX_REPLAY: usize = 100_000;
/// Default `history.max_reads`.
pub const DEFAULT_MAX_READS: usize = 64;
/// Default `history.read_timeout`.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// `[history]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HistorySection {
    /// Most entries one recovery or one `history` request sends.
    pub max_replay: usize,
    /// Concurrent Redis reads for recoveries and `history` requests.
    pub max_reads: usize,
    #[serde(with = "humantime_serde")]
    pub read_timeout: Duration,
}

impl Default for HistorySection {
    fn default() -> Self {
        Self {
            max_replay: DEFAULT_MAX_REPLAY,
            max_reads: DEFAULT_MAX_READS,
            read_timeout: DEFAULT_READ_TIMEOUT,
        }
    }
}

/// `[history]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistorySettings {
    /// A client that missed more gets `recovered: false`; also the
    /// largest `limit` of a `history` request.
    pub max_replay: usize,
    /// Reads waiting beyond this many take turns (restart-only).
    pub max_reads: usize,
    /// A read that takes longer fails (`history_unavailable`, or
    /// `recovered: false`).
    pub read_timeout: Duration,
}

pub(super) fn validate_history(h: HistorySection) -> Result<HistorySettings, KeyError> {
    let max_replay = at_least("history.max_replay", h.max_replay, 1)?;
    if max_replay > MAX_MAX_REPLAY {
        return Err(err(
            "history.max_replay",
            format!("must be at most {MAX_MAX_REPLAY}"),
        ));
    }
    Ok(HistorySettings {
        max_replay,
        max_reads: at_least("history.max_reads", h.max_reads, 1)?,
        read_timeout: positive("history.read_timeout", h.read_timeout)?,
    })
}

/// How long a durable channel's history is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Entries kept (the newest).
    pub size: usize,
    /// How long the history outlives the channel's last publish.
    pub ttl: Duration,
}

/// Resolves a rule's `history_size` / `history_ttl` (rule number `i`):
/// `None` for a channel without history.
pub(super) fn retention(
    i: usize,
    size: usize,
    ttl: Option<Duration>,
) -> Result<Option<Retention>, KeyError> {
    let key = |k: &str| format!("channels.rules[{i}].{k}");
    if size > MAX_HISTORY_SIZE {
        return Err(err(
            &key("history_size"),
            format!("must be at most {MAX_HISTORY_SIZE}"),
        ));
    }
    match (size, ttl) {
        (0, Some(_)) => Err(err(
            &key("history_ttl"),
            "needs history_size (history is kept only for a rule with a history_size)",
        )),
        (0, None) => Ok(None),
        (_, Some(ttl)) if ttl < Duration::from_millis(1) => {
            Err(err(&key("history_ttl"), "must be at least 1ms"))
        }
        (size, ttl) => Ok(Some(Retention {
            size,
            ttl: ttl.unwrap_or(DEFAULT_HISTORY_TTL),
        })),
    }
}
