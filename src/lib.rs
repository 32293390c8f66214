//! redcast: a gateway that fans Redis pub/sub channels out to browsers
//! over WebSocket.
//!
//! # Layout
//! - [`config`]: file, environment and flags, validated once into [`config::Settings`].
//! - [`gateway`]: wiring of every part, and the shutdown sequence.
//! - [`server`]: the public listener, PROXY protocol headers, handshakes
//!   under a timeout, upgrades.
//! - [`handshake`]: RFC 6455 upgrade checks and query parameters.
//! - [`session`]: one WebSocket client, from upgrade to close; with
//!   `session::durable`, joins that resume durable channels (`since`) and
//!   `history` requests (shared with SSE).
//! - [`sse`]: the Server-Sent Events transport (same admission and fan-out).
//! - [`auth`]: tokens, channel rules, origins; [`tls`]: certificates.
//! - [`reload`]: what SIGHUP swaps; [`assets`]: the served JS client and demo.
//! - [`protocol`]: client requests and server frames (docs/protocol.md).
//! - [`hub`]: channel to local subscribers; encodes each message once;
//!   its gates hand a durable channel over from history to live delivery.
//! - [`history`]: durable channels: the Redis Function library (generated
//!   from the rules, kept in place on every master), positions, and reads
//!   of missed and recent messages.
//! - [`fanout`]: one shard per worker thread, each queueing and writing
//!   the messages of its own sessions.
//! - [`outbox`]: each session's bounded outbound queue, and its direct
//!   path, which writes frames to the socket (plain, or TLS 1.3 through
//!   the record layer kept from the handshake) from the shard.
//! - [`broker`]: the Redis side. Feeds (one pub/sub connection each: one
//!   for standalone and Sentinel, one per master for sharded cluster
//!   pub/sub) on redcast's own links, reconnects, resubscribes, delivery
//!   probes; the Sentinel watcher and the cluster's slot router; the
//!   publisher's command connection.
//! - [`admin`]: health, readiness and metrics.
//! - [`metrics`], [`shutdown`].
//!
//! # The path of a message
//! `Redis --(pub/sub connections: one per process, or one per master with
//! sharded cluster pub/sub)--> broker feed (takes every message at hand)
//! --> hub (position decoded, frame encoded once, a job per shard) -->
//! fan-out shard (one per worker thread, sessions split by id) --> each
//! of its sessions' outbox (bounded) --> socket`: with
//! `server.direct_writes` (the default) the shard then writes each
//! touched outbox straight to its socket, encrypting first over TLS (one
//! write per client per burst); otherwise the session's writer drains the
//! outbox and flushes once.
//!
//! # The path of a request
//! `socket --> session --> protocol (parse, validate) --> hub
//! (ref-counted) --> broker (SUBSCRIBE on first, UNSUBSCRIBE on last; on a
//! sharded cluster the router hands the channel to the feed of the master
//! that serves its slot, which SSUBSCRIBEs there)`. A durable channel's
//! join then reads its position (or the messages missed since `since`)
//! with `FCALL redcast_read` on the command connection, acks, replays, and
//! opens the channel's gate: held live messages after the position follow.

pub mod admin;
pub mod assets;
pub mod auth;
pub mod broker;
pub mod config;
pub mod fanout;
pub mod gateway;
pub mod handshake;
pub mod history;
pub mod hub;
pub mod metrics;
pub mod outbox;
pub mod protocol;
pub mod reload;
pub mod server;
pub mod session;
pub mod shutdown;
pub mod sse;
pub mod tls;

pub use gateway::Gateway;
