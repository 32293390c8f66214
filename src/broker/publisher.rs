//! Client publishes (and redcast's own probes) go to Redis over one
//! multiplexed command connection, separate from the pub/sub connection.
//!
//! Sessions hand jobs to a bounded queue (`PUBLISH_QUEUE`); a full queue
//! answers `publish_failed` at once rather than stalling the session. The
//! task keeps at most `MAX_IN_FLIGHT` commands pipelined and answers each
//! job through the session's outbox. A lost connection is re-made on the
//! next job; jobs meanwhile fail fast with `publish_failed`.

use crate::config::RedisSettings;
use crate::outbox::Outbox;
use crate::protocol::{self, ErrorCode, RequestError};
use futures_util::stream::{FuturesUnordered, StreamExt};
use redis::aio::MultiplexedConnection;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Jobs waiting for the publisher task.
pub const PUBLISH_QUEUE: usize = 1024;
/// Commands pipelined on the connection at once.
pub const MAX_IN_FLIGHT: usize = 256;

/// One PUBLISH and where to send its answer.
pub struct Job {
    /// The Redis channel (prefix included).
    pub channel: String,
    pub payload: Vec<u8>,
    pub id: Option<String>,
    /// Where the answer goes; `None` for redcast's own probes.
    pub reply: Option<Arc<Outbox>>,
}

/// The sessions' handle on the publisher task.
#[derive(Clone)]
pub struct Publisher {
    tx: mpsc::Sender<Job>,
}

impl Publisher {
    /// Starts the task; it ends when `stop` is cancelled.
    pub fn start(
        settings: RedisSettings,
        stop: CancellationToken,
    ) -> (Publisher, impl std::future::Future<Output = ()>) {
        let (tx, rx) = mpsc::channel(PUBLISH_QUEUE);
        (Publisher { tx }, run(settings, rx, stop))
    }

    /// Queues a job, or answers `publish_failed` when the queue is full.
    pub fn submit(&self, job: Job) {
        if let Err(mpsc::error::TrySendError::Full(job) | mpsc::error::TrySendError::Closed(job)) =
            self.tx.try_send(job)
        {
            fail(&job, "publisher is busy; retry later");
        }
    }
}

fn fail(job: &Job, message: &str) {
    if let Some(reply) = &job.reply {
        let e = RequestError::new(job.id.clone(), ErrorCode::PublishFailed, message);
        reply.push(protocol::encode_error(&e));
    }
}

async fn run(settings: RedisSettings, mut rx: mpsc::Receiver<Job>, stop: CancellationToken) {
    let timeout = settings.timeout;
    let client = match super::client(&settings) {
        Ok(c) => c,
        Err(e) => return tracing::error!(error = %e, "publisher cannot use the redis url"),
    };
    let mut conn: Option<MultiplexedConnection> = None;
    let mut in_flight = FuturesUnordered::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            Some(healthy) = in_flight.next(), if !in_flight.is_empty() => {
                let healthy: bool = healthy;
                if !healthy {
                    conn = None;
                }
            }
            job = rx.recv(), if in_flight.len() < MAX_IN_FLIGHT => {
                let Some(job) = job else { return };
                if conn.is_none() {
                    conn = tokio::time::timeout(timeout, client.get_multiplexed_async_connection()).await.ok().and_then(Result::ok);
                }
                let Some(c) = conn.clone() else {
                    fail(&job, "redis is unavailable; retry later");
                    continue;
                };
                in_flight.push(publish(c, job, timeout));
            }
        }
    }
}

/// Runs one PUBLISH and answers it; returns whether the connection is fine.
async fn publish(mut conn: MultiplexedConnection, job: Job, timeout: Duration) -> bool {
    let cmd = redis::cmd("PUBLISH")
        .arg(&job.channel)
        .arg(&job.payload)
        .to_owned();
    let result = tokio::time::timeout(timeout, cmd.query_async::<i64>(&mut conn)).await;
    match result {
        Ok(Ok(_)) => {
            if let Some(reply) = &job.reply {
                reply.push(protocol::encode_published(job.id.as_deref()));
            }
            true
        }
        Ok(Err(e)) => {
            fail(&job, "redis refused the publish");
            // Command-level errors leave the connection usable.
            !(e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error())
        }
        Err(_) => {
            fail(&job, "redis did not answer in time");
            false
        }
    }
}
