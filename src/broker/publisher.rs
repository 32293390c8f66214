//! Client publishes (and redcast's own probes) go to Redis over the
//! command connection ([`super::commands`]). On a cluster with sharded
//! pub/sub the command is `SPUBLISH`, else `PUBLISH`; on a durable channel
//! it is `FCALL redcast_publish`, which also keeps the history.
//!
//! Sessions hand jobs to a bounded queue (`PUBLISH_QUEUE`); a full queue
//! answers `publish_failed` at once rather than stalling the session. The
//! task keeps at most `MAX_IN_FLIGHT` commands pipelined and answers each
//! job through the session's outbox. A lost connection is re-made on the
//! next job; jobs meanwhile fail fast with `publish_failed`.

use super::commands::{is_lost, Commands, Conn};
use crate::config::{HostPort, RedisSettings};
use crate::outbox::Outbox;
use crate::protocol::{self, ErrorCode, RequestError};
use futures_util::stream::{FuturesUnordered, StreamExt};
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
    /// The channel keeps history: publish through the Function.
    pub durable: bool,
}

/// The sessions' handle on the publisher task.
#[derive(Clone)]
pub struct Publisher {
    tx: mpsc::Sender<Job>,
}

impl Publisher {
    /// Starts the task; it ends when `stop` is cancelled.
    pub fn start(
        commands: Arc<Commands>,
        stop: CancellationToken,
    ) -> (Publisher, impl std::future::Future<Output = ()>) {
        let (tx, rx) = mpsc::channel(PUBLISH_QUEUE);
        (Publisher { tx }, run(commands, rx, stop))
    }

    /// Publishes a delivery probe (`channel` with the prefix).
    pub fn probe(&self, channel: String, payload: String) {
        self.submit(Job {
            channel,
            payload: payload.into_bytes(),
            id: None,
            reply: None,
            retried: false,
            durable: false,
        });
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

async fn run(commands: Arc<Commands>, mut rx: mpsc::Receiver<Job>, stop: CancellationToken) {
    let mut in_flight = FuturesUnordered::new();
    loop {
        let job = tokio::select! {
            _ = stop.cancelled() => return,
            Some((outcome, generation)) = in_flight.next(), if !in_flight.is_empty() => match outcome {
                Outcome::Answered => continue,
                Outcome::Lost(retry) => {
                    commands.lost(generation).await;
                    let Some(job) = retry else { continue };
                    job
                }
            },
            job = rx.recv(), if in_flight.len() < MAX_IN_FLIGHT => match job {
                Some(job) => job,
                None => return,
            },
        };
        match commands.conn().await {
            Some((conn, generation)) => {
                let cmd = command(&commands, &job);
                let timeout = commands.timeout();
                in_flight.push(async move { (publish(conn, job, cmd, timeout).await, generation) })
            }
            None => fail(&job, "redis is unavailable; retry later"),
        }
    }
}

/// The command for a job: through the Function on durable channels (it
/// keeps the history), else a plain (S)PUBLISH. Sharded pub/sub only
/// reaches SSUBSCRIBErs through SPUBLISH.
fn command(commands: &Commands, job: &Job) -> redis::Cmd {
    if job.durable {
        let mut cmd = redis::cmd("FCALL");
        cmd.arg(crate::history::PUBLISH_FUNCTION).arg(1);
        return cmd.arg(&job.channel).arg(&job.payload).to_owned();
    }
    let name = if commands.sharded() {
        "SPUBLISH"
    } else {
        "PUBLISH"
    };
    redis::cmd(name)
        .arg(&job.channel)
        .arg(&job.payload)
        .to_owned()
}

/// Runs one publish and answers it.
async fn publish(mut conn: Conn, mut job: Job, cmd: redis::Cmd, timeout: Duration) -> Outcome {
    let result = tokio::time::timeout(timeout, conn.query::<redis::Value>(&cmd)).await;
    match result {
        Ok(Ok(_)) => {
            if let Some(reply) = &job.reply {
                reply.push(protocol::encode_published(job.id.as_deref()));
            }
            Outcome::Answered
        }
        // Command-level errors (NOPERM, ...) leave the connection usable.
        Ok(Err(e)) if !is_lost(&e) => {
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

/// The connection details of `redis.url` (or of `node` with its
/// credentials and TLS), with the config's ACL user and password, which
/// win over the URL's.
pub(super) fn connection_info(
    s: &RedisSettings,
    node: Option<&HostPort>,
) -> redis::RedisResult<redis::ConnectionInfo> {
    use redis::IntoConnectionInfo;
    let mut info = s.url.as_str().into_connection_info()?;
    if let Some(node) = node {
        let addr = match info.addr() {
            redis::ConnectionAddr::TcpTls {
                insecure,
                tls_params,
                ..
            } => redis::ConnectionAddr::TcpTls {
                host: node.host.clone(),
                port: node.port,
                insecure: *insecure,
                tls_params: tls_params.clone(),
            },
            _ => redis::ConnectionAddr::Tcp(node.host.clone(), node.port),
        };
        info = info.set_addr(addr);
    }
    let mut redis_info = info.redis_settings().clone();
    if let Some(user) = &s.username {
        redis_info = redis_info.set_username(user);
    }
    if let Some(password) = &s.password {
        redis_info = redis_info.set_password(&password.0);
    }
    Ok(info.set_redis_settings(redis_info))
}

/// The CA of `redis.ca_file`, for redis-rs's TLS.
pub(super) fn certificates(
    s: &RedisSettings,
) -> redis::RedisResult<Option<redis::TlsCertificates>> {
    let Some(path) = &s.ca_file else {
        return Ok(None);
    };
    let pem = std::fs::read(path).map_err(|e| {
        redis::RedisError::from((
            redis::ErrorKind::InvalidClientConfig,
            "cannot read redis.ca_file",
            e.to_string(),
        ))
    })?;
    Ok(Some(redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(pem),
    }))
}

/// A Redis client for `redis.url` (or `node`), TLS roots from `ca_file`.
pub fn client(s: &RedisSettings, node: Option<&HostPort>) -> redis::RedisResult<redis::Client> {
    let info = connection_info(s, node)?;
    match certificates(s)? {
        None => redis::Client::open(info),
        Some(certs) => redis::Client::build_with_tls(info, certs),
    }
}
