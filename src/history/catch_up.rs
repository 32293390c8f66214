//! Fills gaps in durable channels' live delivery from their history (see
//! the hub's tail): reads what came after the last delivered position and
//! hands it back to the hub, which sends it to every subscriber in order.

use super::store::{Recovery, Store};
use super::Position;
use crate::hub::{HeldMessage, Hub};
use crate::metrics::{Metrics, Reason};
use crate::reload::Live;
use arc_swap::ArcSwap;
use bytes::Bytes;
use std::sync::{Arc, Weak};
use tokio::time::Instant;

/// Installs the catch-up into the hub.
pub fn install(hub: &Arc<Hub>, store: Arc<Store>, live: Arc<ArcSwap<Live>>, metrics: Arc<Metrics>) {
    // Weak: the hub owns this closure.
    let weak: Weak<Hub> = Arc::downgrade(hub);
    hub.on_catch_up(Box::new(move |channel: String, from: Position| {
        let (weak, store, live, metrics) =
            (weak.clone(), store.clone(), live.clone(), metrics.clone());
        tokio::spawn(async move {
            let replay = read(&store, &live, &metrics, &channel, &from).await;
            if let Some(hub) = weak.upgrade() {
                hub.finish_catch_up(&channel, replay).await;
            }
        });
    }));
}

/// What came after `from`; nothing when it cannot be read whole.
async fn read(
    store: &Store,
    live: &ArcSwap<Live>,
    metrics: &Metrics,
    channel: &str,
    from: &Position,
) -> Vec<HeldMessage> {
    let (redis_channel, max) = {
        let live = live.load();
        (
            format!("{}{}", live.settings.redis.channel_prefix, channel),
            live.settings.history.max_replay,
        )
    };
    let outcome = |reason: &'static str| {
        metrics
            .history_catch_ups
            .get_or_create(&Reason { reason })
            .inc()
    };
    match store.recover(&redis_channel, from, max).await {
        Ok((top, Recovery::Complete(entries))) => {
            outcome("filled");
            metrics.history_replayed.inc_by(entries.len() as u64);
            let received = Instant::now();
            entries
                .into_iter()
                .map(|e| HeldMessage {
                    position: Some(Position {
                        offset: e.offset,
                        epoch: top.epoch.clone(),
                    }),
                    payload: Bytes::from(e.payload),
                    received,
                })
                .collect()
        }
        Ok(_) => {
            outcome("lost");
            tracing::warn!(
                channel,
                after = from.offset,
                "live delivery missed messages the history no longer holds"
            );
            Vec::new()
        }
        Err(e) => {
            outcome("failed");
            metrics.history_read_errors.inc();
            tracing::warn!(channel, error = %e, "cannot read the history to fill a gap in live delivery");
            Vec::new()
        }
    }
}
