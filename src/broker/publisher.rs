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
    /// A probe already tried once more after a lost connection.
    pub retried: bool,
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

/// How a PUBLISH went, for the connection's sake.
enum Outcome {
    /// Answered (success or a command error): the connection is fine.
    Answered,
    /// The connection failed; a probe job comes back to be tried once more
    /// on a fresh connection (a lost probe would fail readiness for
    /// nothing more than a stale connection after a Redis restart).
    Lost(Option<Job>),
}

/// The command connection and the PUBLISHes pipelined on it.
struct Pipeline {
    client: redis::Client,
    conn: Option<MultiplexedConnection>,
    timeout: Duration,
}

impl Pipeline {
    /// A connection, made now if there is none.
    async fn connection(&mut self) -> Option<MultiplexedConnection> {
        if self.conn.is_none() {
            let connect = self.client.get_multiplexed_async_connection();
            self.conn = tokio::time::timeout(self.timeout, connect)
                .await
                .ok()
                .and_then(Result::ok);
        }
        self.conn.clone()
    }
}

async fn run(settings: RedisSettings, mut rx: mpsc::Receiver<Job>, stop: CancellationToken) {
    let client = match super::client(&settings) {
        Ok(c) => c,
        Err(e) => return tracing::error!(error = %e, "publisher cannot use the redis url"),
    };
    let mut pipeline = Pipeline {
        client,
        conn: None,
        timeout: settings.timeout,
    };
    let mut in_flight = FuturesUnordered::new();
    loop {
        let job = tokio::select! {
            _ = stop.cancelled() => return,
            Some(outcome) = in_flight.next(), if !in_flight.is_empty() => match outcome {
                Outcome::Answered => continue,
                Outcome::Lost(retry) => {
                    pipeline.conn = None;
                    let Some(job) = retry else { continue };
                    job
                }
            },
            job = rx.recv(), if in_flight.len() < MAX_IN_FLIGHT => match job {
                Some(job) => job,
                None => return,
            },
        };
        match pipeline.connection().await {
            Some(conn) => in_flight.push(publish(conn, job, pipeline.timeout)),
            None => fail(&job, "redis is unavailable; retry later"),
        }
    }
}

/// Runs one PUBLISH and answers it.
async fn publish(mut conn: MultiplexedConnection, mut job: Job, timeout: Duration) -> Outcome {
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
            Outcome::Answered
        }
        // Command-level errors (NOPERM, ...) leave the connection usable.
        Ok(Err(e))
            if !(e.is_io_error() || e.is_connection_dropped() || e.is_unrecoverable_error()) =>
        {
            fail(&job, "redis refused the publish");
            Outcome::Answered
        }
        Ok(Err(_)) if job.reply.is_none() && !job.retried => {
            job.retried = true;
            Outcome::Lost(Some(job))
        }
        Ok(Err(_)) => {
            fail(&job, "redis connection lost; retry later");
            Outcome::Lost(None)
        }
        Err(_) => {
            fail(&job, "redis did not answer in time");
            Outcome::Lost(None)
        }
    }
}
