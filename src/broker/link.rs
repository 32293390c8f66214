//! One connection of redcast's own to one Redis node: the pub/sub feeds
//! run on these, and so do the few plain requests the topologies need
//! (`ROLE`, `SENTINEL ...`, `CLUSTER SLOTS`).
//!
//! redcast owns these connections instead of using redis-rs's pub/sub
//! types because a feed must see every push as it comes: Redis itself
//! sends `sunsubscribe` when a slot moves, which redis-rs takes for the
//! confirmation of whatever command is in flight. The redis crate still
//! does the protocol: it encodes every command and parses every reply.
//!
//! Reading is cancel-safe (bytes read stay in the decoder's buffer), so a
//! feed can `select!` on the next push against its timers.

use crate::config::{HostPort, RedisSettings, Secret};
use futures_util::FutureExt;
use redis::{Cmd, Value};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;

/// What a link's socket is: plain TCP or TLS over it.
trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

type Decoder = combine::stream::Decoder<
    combine::parser::combinator::AnySendSyncPartialState,
    combine::stream::PointerOffset<[u8]>,
>;

/// Why a link failed. Messages name the node; they never hold secrets.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot connect to {node}: {source}")]
    Connect {
        node: HostPort,
        source: std::io::Error,
    },
    #[error("TLS handshake with {node} failed: {source}")]
    Tls {
        node: HostPort,
        source: std::io::Error,
    },
    #[error("{node} did not answer within {limit:?}")]
    Timeout { node: HostPort, limit: Duration },
    #[error("{node} closed the connection")]
    Closed { node: HostPort },
    #[error("{node}: {source}")]
    Protocol {
        node: HostPort,
        source: redis::RedisError,
    },
    #[error("{node} refused: {message}")]
    Refused { node: HostPort, message: String },
    #[error("TLS settings for redis are unusable: {0}")]
    TlsConfig(String),
}

/// How to reach and log in to one kind of node (data nodes, sentinels).
#[derive(Clone)]
pub struct Dialer {
    tls: Option<TlsConnector>,
    username: Option<String>,
    password: Option<Secret>,
    timeout: Duration,
    /// `CLIENT SETNAME`, so that operators can tell redcast's connections.
    name: &'static str,
}

impl Dialer {
    /// Data nodes: the credentials and TLS of `redis.url` and the config.
    pub fn data(s: &RedisSettings) -> Result<Dialer, LinkError> {
        // The same details the publisher's client uses (config over URL).
        let info = super::publisher::connection_info(s, None)
            .map_err(|e| LinkError::TlsConfig(format!("redis.url: {:?}", e.kind())))?;
        let auth = info.redis_settings();
        let tls = matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. });
        Ok(Dialer {
            tls: tls.then(|| connector(s.ca_file.as_deref())).transpose()?,
            username: auth.username().map(str::to_string),
            password: auth.password().map(|p| Secret(p.to_string())),
            timeout: s.timeout,
            name: "redcast",
        })
    }

    /// Sentinels: their own credentials, TLS when `sentinel_tls`.
    pub fn sentinel(
        s: &RedisSettings,
        st: &crate::config::SentinelSettings,
    ) -> Result<Self, LinkError> {
        Ok(Dialer {
            tls: st
                .tls
                .then(|| connector(s.ca_file.as_deref()))
                .transpose()?,
            username: st.username.clone(),
            password: st.password.clone(),
            timeout: s.timeout,
            name: "redcast",
        })
    }

    /// Connects, speaks TLS when configured and logs in, all within the
    /// timeout.
    pub async fn open(&self, node: &HostPort) -> Result<Link, LinkError> {
        let limit = self.timeout;
        let expired = || LinkError::Timeout {
            node: node.clone(),
            limit,
        };
        let io = timeout(limit, self.connect(node))
            .await
            .map_err(|_| expired())??;
        let mut link = Link {
            io,
            decoder: Decoder::new(),
            node: node.clone(),
            timeout: limit,
        };
        timeout(limit, self.hello(&mut link))
            .await
            .map_err(|_| expired())??;
        Ok(link)
    }

    async fn connect(&self, node: &HostPort) -> Result<Box<dyn Io>, LinkError> {
        let tcp = TcpStream::connect((node.host.as_str(), node.port))
            .await
            .map_err(|source| LinkError::Connect {
                node: node.clone(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        let Some(tls) = &self.tls else {
            return Ok(Box::new(tcp));
        };
        let name = ServerName::try_from(node.host.clone()).map_err(|_| {
            LinkError::TlsConfig(format!("`{}` is not a TLS server name", node.host))
        })?;
        let stream = tls
            .connect(name, tcp)
            .await
            .map_err(|source| LinkError::Tls {
                node: node.clone(),
                source,
            })?;
        Ok(Box::new(stream))
    }

    /// AUTH (when there is a password) and CLIENT SETNAME, pipelined.
    async fn hello(&self, link: &mut Link) -> Result<(), LinkError> {
        let mut packed = Vec::new();
        if let Some(password) = &self.password {
            let mut auth = redis::cmd("AUTH");
            if let Some(user) = &self.username {
                auth.arg(user);
            }
            auth.arg(&password.0);
            packed.extend(auth.get_packed_command());
        }
        packed.extend(
            redis::cmd("CLIENT")
                .arg("SETNAME")
                .arg(self.name)
                .get_packed_command(),
        );
        link.send(&packed).await?;
        if self.password.is_some() {
            if let Value::ServerError(e) = link.next().await? {
                // Redis's own words ("WRONGPASS ..."): no secret in them.
                return Err(link.refused(&e));
            }
        }
        // A user without the CLIENT command still works; the name is a nicety.
        link.next().await?;
        Ok(())
    }
}

/// TLS client settings: roots from `ca_file`, else the system's.
fn connector(ca_file: Option<&std::path::Path>) -> Result<TlsConnector, LinkError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| LinkError::TlsConfig(format!("redis.ca_file: {e}")))?;
            for cert in certs {
                let cert = cert.map_err(|e| LinkError::TlsConfig(format!("redis.ca_file: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| LinkError::TlsConfig(format!("redis.ca_file: {e}")))?;
            }
        }
        None => {
            // Unreadable system certificates are skipped, as browsers do.
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| LinkError::TlsConfig(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// An open, logged-in connection to one node.
pub struct Link {
    io: Box<dyn Io>,
    decoder: Decoder,
    node: HostPort,
    timeout: Duration,
}

impl Link {
    /// The node this link is connected to.
    pub fn node(&self) -> &HostPort {
        &self.node
    }

    /// Writes packed commands (one or many, pipelined) within the timeout.
    pub async fn send(&mut self, packed: &[u8]) -> Result<(), LinkError> {
        let limit = self.timeout;
        match timeout(limit, self.io.write_all(packed)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(self.closed()),
            Err(_) => Err(LinkError::Timeout {
                node: self.node.clone(),
                limit,
            }),
        }
    }

    /// The next value the node sends: a reply or a push. Cancel-safe;
    /// waits as long as it takes (feeds bound silence with their own
    /// timers).
    pub async fn next(&mut self) -> Result<Value, LinkError> {
        let result = redis::parse_redis_value_async(&mut self.decoder, &mut self.io).await;
        result.map_err(|e| self.read_error(e))
    }

    /// The next value if it can be had without waiting.
    pub fn try_next(&mut self) -> Option<Result<Value, LinkError>> {
        self.next().now_or_never()
    }

    /// One request and its reply (not for a connection in subscribed
    /// mode, where replies and pushes interleave).
    pub async fn request(&mut self, cmd: &Cmd) -> Result<Value, LinkError> {
        self.send(&cmd.get_packed_command()).await?;
        let limit = self.timeout;
        let reply = timeout(limit, self.next())
            .await
            .map_err(|_| LinkError::Timeout {
                node: self.node.clone(),
                limit,
            })??;
        match reply {
            Value::ServerError(e) => Err(self.refused(&e)),
            v => Ok(v),
        }
    }

    /// Whether the node is a master (`ROLE`): after a failover the old
    /// master may still accept connections for a while as a replica.
    pub async fn role(&mut self) -> Result<String, LinkError> {
        match self.request(&redis::cmd("ROLE")).await? {
            Value::Array(fields) => match fields.into_iter().next() {
                Some(Value::BulkString(b)) => Ok(String::from_utf8_lossy(&b).into_owned()),
                Some(Value::SimpleString(s)) => Ok(s),
                _ => Err(self.unreadable("ROLE")),
            },
            _ => Err(self.unreadable("ROLE")),
        }
    }

    /// The error for a reply of the wrong shape.
    pub fn unreadable(&self, what: &str) -> LinkError {
        LinkError::Refused {
            node: self.node.clone(),
            message: format!("unexpected reply to {what}"),
        }
    }

    /// The error for a server's error reply.
    pub fn refused(&self, e: &redis::ServerError) -> LinkError {
        LinkError::Refused {
            node: self.node.clone(),
            message: server_error_text(e),
        }
    }

    fn closed(&self) -> LinkError {
        LinkError::Closed {
            node: self.node.clone(),
        }
    }

    fn read_error(&self, e: redis::RedisError) -> LinkError {
        if e.is_io_error() || e.is_connection_dropped() {
            return self.closed();
        }
        LinkError::Protocol {
            node: self.node.clone(),
            source: e,
        }
    }
}

/// `CODE details`, as Redis wrote it.
pub fn server_error_text(e: &redis::ServerError) -> String {
    match e.details() {
        Some(details) => format!("{} {details}", e.code()),
        None => e.code().to_string(),
    }
}
