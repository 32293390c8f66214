//! Client publishes (and redcast's own probes) go to Redis over one
//! multiplexed command connection, separate from the pub/sub links: to
//! `redis.url` (standalone), to the master the sentinels name (re-dialled
//! when it changes, or when a demoted master answers READONLY), or
//! through redis-rs's cluster client, which routes by slot. On a cluster
//! with sharded pub/sub the command is `SPUBLISH`, else `PUBLISH`.
//!
//! Sessions hand jobs to a bounded queue (`PUBLISH_QUEUE`); a full queue
//! answers `publish_failed` at once rather than stalling the session. The
//! task keeps at most `MAX_IN_FLIGHT` commands pipelined and answers each
//! job through the session's outbox. A lost connection is re-made on the
//! next job; jobs meanwhile fail fast with `publish_failed`.

use crate::config::{HostPort, RedisSettings, Topology};
use crate::outbox::Outbox;
use crate::protocol::{self, ErrorCode, RequestError};
use futures_util::stream::{FuturesUnordered, StreamExt};
use redis::aio::MultiplexedConnection;
use redis::cluster_async::ClusterConnection;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
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

/// Where publishes go.
pub enum Route {
    /// `redis.url`.
    Url,
    /// The master the sentinels name.
    Master(watch::Receiver<Option<HostPort>>),
    /// The cluster, routed by slot.
    Cluster,
}

impl Publisher {
    /// Starts the task; it ends when `stop` is cancelled.
    pub fn start(
        settings: RedisSettings,
        route: Route,
        stop: CancellationToken,
    ) -> (Publisher, impl std::future::Future<Output = ()>) {
        let (tx, rx) = mpsc::channel(PUBLISH_QUEUE);
        (Publisher { tx }, run(settings, route, rx, stop))
    }

    /// Publishes a delivery probe (`channel` with the prefix).
    pub fn probe(&self, channel: String, payload: String) {
        self.submit(Job {
            channel,
            payload: payload.into_bytes(),
            id: None,
            reply: None,
            retried: false,
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

/// A command connection to a node or to the cluster.
#[derive(Clone)]
enum Conn {
    Node(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl Conn {
    async fn query(&mut self, cmd: &redis::Cmd) -> redis::RedisResult<i64> {
        match self {
            Conn::Node(c) => cmd.query_async(c).await,
            Conn::Cluster(c) => cmd.query_async(c).await,
        }
    }
}

/// The command connection and the PUBLISHes pipelined on it.
struct Pipeline {
    settings: RedisSettings,
    route: Route,
    conn: Option<Conn>,
}

impl Pipeline {
    /// A connection, made now if there is none (or the master moved).
    async fn connection(&mut self) -> Option<Conn> {
        if let Route::Master(master) = &mut self.route {
            if master.has_changed().unwrap_or(false) {
                master.mark_unchanged();
                self.conn = None;
            }
        }
        if self.conn.is_none() {
            let connect = self.connect();
            self.conn = tokio::time::timeout(self.settings.timeout, connect)
                .await
                .ok()
                .and_then(Result::ok);
        }
        self.conn.clone()
    }

    async fn connect(&self) -> redis::RedisResult<Conn> {
        let node = match &self.route {
            Route::Cluster => return Ok(Conn::Cluster(self.cluster().await?)),
            Route::Url => None,
            Route::Master(master) => match master.borrow().clone() {
                Some(m) => Some(m),
                None => return Err(unavailable("the sentinels have not named a master yet")),
            },
        };
        let client = client(&self.settings, node.as_ref())?;
        Ok(Conn::Node(client.get_multiplexed_async_connection().await?))
    }

    async fn cluster(&self) -> redis::RedisResult<ClusterConnection> {
        let Topology::Cluster(c) = &self.settings.topology else {
            return Err(unavailable("not a cluster"));
        };
        let nodes: Vec<redis::ConnectionInfo> = c
            .seeds
            .iter()
            .map(|seed| connection_info(&self.settings, Some(seed)))
            .collect::<Result<_, _>>()?;
        let mut builder = redis::cluster::ClusterClientBuilder::new(nodes)
            .connection_timeout(self.settings.timeout)
            .response_timeout(self.settings.timeout);
        if let Some(certs) = certificates(&self.settings)? {
            builder = builder.certs(certs);
        }
        builder.build()?.get_async_connection().await
    }
}

fn unavailable(why: &'static str) -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Io, why))
}

async fn run(
    settings: RedisSettings,
    route: Route,
    mut rx: mpsc::Receiver<Job>,
    stop: CancellationToken,
) {
    // Sharded pub/sub only reaches SSUBSCRIBErs through SPUBLISH.
    let command = if settings.sharded() {
        "SPUBLISH"
    } else {
        "PUBLISH"
    };
    let timeout = settings.timeout;
    let mut pipeline = Pipeline {
        settings,
        route,
        conn: None,
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
            Some(conn) => in_flight.push(publish(conn, job, command, timeout)),
            None => fail(&job, "redis is unavailable; retry later"),
        }
    }
}

/// Runs one PUBLISH and answers it.
async fn publish(mut conn: Conn, mut job: Job, command: &str, timeout: Duration) -> Outcome {
    let cmd = redis::cmd(command)
        .arg(&job.channel)
        .arg(&job.payload)
        .to_owned();
    let result = tokio::time::timeout(timeout, conn.query(&cmd)).await;
    match result {
        Ok(Ok(_)) => {
            if let Some(reply) = &job.reply {
                reply.push(protocol::encode_published(job.id.as_deref()));
            }
            Outcome::Answered
        }
        // Command-level errors (NOPERM, ...) leave the connection usable;
        // READONLY means a demoted master: find the new one.
        Ok(Err(e))
            if !(e.is_io_error()
                || e.is_connection_dropped()
                || e.is_unrecoverable_error()
                || e.code() == Some("READONLY")) =>
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
fn certificates(s: &RedisSettings) -> redis::RedisResult<Option<redis::TlsCertificates>> {
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
