//! Durable channels on the client side, shared by WebSocket sessions and
//! SSE streams: joining with positions (and resuming from `since`), and
//! `history` requests.
//!
//! A join with durable channels gives each of them a [`Gate`] that holds
//! live messages, and replaces the plain ack with [`complete`]: once Redis
//! has confirmed the subscriptions, it reads every durable channel's
//! position (or recovers what the client missed), queues the ack with
//! `positions` and `recovered`, then releases each gate: the recovered
//! messages first, then the held live ones after the position read.
//! Because the subscription was confirmed before the read, every message
//! after that position reaches the hub live: no gap; the gate drops live
//! copies at or before it: no duplicate.

use super::SessionContext;
use crate::history::store::{Entry, Recovery};
use crate::history::Position;
use crate::hub::{Format, Gate, OnConfirmed};
use crate::metrics::{Code, Reason};
use crate::outbox::Outbox;
use crate::protocol::{self, ErrorCode, Frame, HistoryEntry, RequestError};
use std::collections::HashMap;
use std::sync::Arc;

/// Default `limit` of a `history` request (capped by `max_replay`).
pub const DEFAULT_HISTORY_LIMIT: usize = 100;

/// What a join with durable channels adds to the hub's [`crate::hub::Join`].
#[derive(Default)]
pub struct Plan {
    pub gates: HashMap<String, Arc<Gate>>,
    pub then: Option<OnConfirmed>,
}

/// One durable channel of a join.
struct Durable {
    channel: String,
    since: Option<Position>,
    gate: Arc<Gate>,
}

/// Gates for the durable ones among `channels` (allowed, valid), and the
/// completion that reads positions and sends the ack. Raw-format clients
/// get no positions (nor acks), so they join plainly.
pub fn plan(
    ctx: &Arc<SessionContext>,
    outbox: &Arc<Outbox>,
    format: Format,
    id: Option<String>,
    channels: &[String],
    mut since: HashMap<String, Position>,
) -> Plan {
    let live = ctx.live.load();
    if format == Format::Raw {
        return Plan::default();
    }
    let max_bytes = live.settings.client.queue_max_bytes;
    let durable: Vec<Durable> = channels
        .iter()
        .filter(|c| live.policy.rules.retention(c).is_some())
        .map(|c| Durable {
            channel: c.clone(),
            since: since.remove(c),
            gate: Gate::new(outbox.clone(), max_bytes),
        })
        .collect();
    if durable.is_empty() {
        return Plan::default();
    }
    let gates = durable
        .iter()
        .map(|d| (d.channel.clone(), d.gate.clone()))
        .collect();
    let (ctx, outbox, channels) = (ctx.clone(), outbox.clone(), channels.to_vec());
    let then: OnConfirmed = Box::new(move || {
        tokio::spawn(complete(ctx, outbox, id, channels, durable));
    });
    Plan {
        gates,
        then: Some(then),
    }
}

/// What one durable channel's read found.
struct Found {
    position: Option<Position>,
    recovered: Option<bool>,
    replay: Vec<Entry>,
    ahead: bool,
}

/// Reads, then acks, then hands over to live delivery.
async fn complete(
    ctx: Arc<SessionContext>,
    outbox: Arc<Outbox>,
    id: Option<String>,
    channels: Vec<String>,
    durable: Vec<Durable>,
) {
    let reads = durable.iter().map(|d| read(&ctx, d));
    let found = futures_util::future::join_all(reads).await;
    let mut positions = Vec::new();
    let mut recovered = Vec::new();
    for (d, f) in durable.iter().zip(&found) {
        if let Some(p) = &f.position {
            positions.push((d.channel.clone(), p.clone()));
        }
        if let Some(r) = f.recovered {
            recovered.push((d.channel.clone(), r));
        }
        if f.ahead {
            let e = RequestError::new(
                id.clone(),
                ErrorCode::InvalidPosition,
                "`since` is ahead of the channel",
            );
            reply_error(&ctx, &outbox, &e.with_channels(vec![d.channel.clone()]));
        }
    }
    let ack = protocol::encode_subscribed_durable(id.as_deref(), &channels, &positions, &recovered);
    outbox.push(ack);
    for (d, f) in durable.into_iter().zip(found) {
        let replay = replay_frames(&d.channel, &f);
        ctx.metrics.history_replayed.inc_by(replay.len() as u64);
        d.gate.release(replay, f.position);
    }
}

/// One channel's position, or its recovery from `since`.
async fn read(ctx: &SessionContext, d: &Durable) -> Found {
    let live = ctx.live.load_full();
    let redis_channel = format!("{}{}", live.settings.redis.channel_prefix, d.channel);
    let store = &ctx.history;
    let outcome = |reason: &'static str| {
        ctx.metrics
            .history_recoveries
            .get_or_create(&Reason { reason })
            .inc();
    };
    let Some(since) = &d.since else {
        let position = store.position(&redis_channel).await;
        return Found {
            position: position.map_err(|e| failed(ctx, &d.channel, e)).ok(),
            recovered: None,
            replay: Vec::new(),
            ahead: false,
        };
    };
    let max = live.settings.history.max_replay;
    match store.recover(&redis_channel, since, max).await {
        Ok((top, recovery)) => {
            let (recovered, replay, ahead) = match recovery {
                Recovery::Complete(entries) => (true, entries, false),
                Recovery::Impossible => (false, Vec::new(), false),
                Recovery::Ahead => (false, Vec::new(), true),
            };
            outcome(if recovered {
                "recovered"
            } else {
                "not_recovered"
            });
            Found {
                position: Some(top),
                recovered: Some(recovered),
                replay,
                ahead,
            }
        }
        Err(e) => {
            outcome("failed");
            failed(ctx, &d.channel, e);
            Found {
                position: None,
                recovered: Some(false),
                replay: Vec::new(),
                ahead: false,
            }
        }
    }
}

/// An error frame, counted (by code) like every other refusal.
pub(super) fn reply_error(ctx: &SessionContext, outbox: &Outbox, e: &RequestError) {
    let code = Code {
        code: e.code.as_str(),
    };
    ctx.metrics.inbound_errors.get_or_create(&code).inc();
    outbox.push(protocol::encode_error(e));
}

fn failed(ctx: &SessionContext, channel: &str, e: crate::history::store::ReadError) {
    ctx.metrics.history_read_errors.inc();
    tracing::warn!(channel, error = %e, "cannot read a durable channel's position");
}

/// The recovered messages as message frames, in order.
fn replay_frames(channel: &str, f: &Found) -> Vec<Frame> {
    let Some(top) = &f.position else {
        return Vec::new();
    };
    f.replay
        .iter()
        .map(|e| {
            let at = Position {
                offset: e.offset,
                epoch: top.epoch.clone(),
            };
            protocol::encode_message(channel, &e.payload, Some(&at))
        })
        .collect()
}

/// Answers a `history` request (already checked) from a task of its own.
pub fn answer_history(
    ctx: &Arc<SessionContext>,
    outbox: &Arc<Outbox>,
    id: Option<String>,
    channel: String,
    limit: usize,
) {
    let (ctx, outbox) = (ctx.clone(), outbox.clone());
    tokio::spawn(async move {
        let redis_channel = format!(
            "{}{}",
            ctx.live.load().settings.redis.channel_prefix,
            channel
        );
        let frame = match ctx.history.latest(&redis_channel, limit).await {
            Ok((position, entries)) => {
                let messages: Vec<HistoryEntry> = entries
                    .iter()
                    .map(|e| HistoryEntry::new(e.offset, &e.payload))
                    .collect();
                protocol::encode_history(id.as_deref(), &channel, &messages, &position)
            }
            Err(e) => {
                failed(&ctx, &channel, e);
                let e = RequestError::new(
                    id,
                    ErrorCode::HistoryUnavailable,
                    "the history could not be read; retry later",
                );
                return reply_error(&ctx, &outbox, &e.with_channels(vec![channel]));
            }
        };
        outbox.push(frame);
    });
}
