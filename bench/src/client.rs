//! The simulated WebSocket clients: one task each.
//!
//! A client connects (bind-before-connect over 127.0.0.x once past the
//! first block of connections), waits for its `subscribed` ack (redcast
//! JSON mode), records the first probe it sees on each of its channels
//! (readiness, for both targets), and then tracks every measured message
//! by (channel, seq) to count deliveries, losses and duplicates, and the
//! publish-to-receive latency from the timestamp in the payload.

use crate::payload::{self, Payload};
use crate::tls::{Io, Tls};
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpSocket;
use tokio::sync::{watch, Semaphore};
use tokio_rustls::rustls::HandshakeKind;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Which server the clients talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    Redcast,
    Nchan,
}

/// What the controller tells every client.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ctl {
    /// Bumped to make every client drop its socket and connect again.
    pub generation: u32,
    /// Close and exit.
    pub stop: bool,
}

/// Counters shared by all clients and read by the controller.
pub struct Shared {
    /// Sockets open right now.
    pub open: AtomicUsize,
    /// Successful handshakes in the current generation.
    pub gen_connected: AtomicUsize,
    /// Clients of the current generation whose `subscribed` ack arrived
    /// (or that expect none).
    pub acked: AtomicUsize,
    /// Clients of the current generation that saw a probe on every channel.
    pub verified: AtomicUsize,
    /// Successful handshakes, all generations.
    pub connects_ok: AtomicU64,
    /// Failed connection attempts (each retry counts).
    pub attempt_errors: AtomicU64,
    /// Clients that gave up after all retries.
    pub gave_up: AtomicUsize,
    /// Connections that the server closed or that broke while open.
    pub lost: AtomicU64,
    /// First measured delivery of each (client, channel, seq).
    pub delivered: AtomicU64,
    /// Repeated (client, channel, seq).
    pub duplicates: AtomicU64,
    /// Frames that were neither a payload nor an ack.
    pub unparsed: AtomicU64,
    /// Payloads for a channel the client did not subscribe to.
    pub unexpected: AtomicU64,
    /// Publish-to-receive latency of first deliveries, in nanoseconds.
    pub latency: Mutex<Histogram<u64>>,
    /// Unix nanos of the last first delivery.
    pub last_delivery: AtomicU64,
    /// A few distinct error messages, for the report.
    pub errors: Mutex<Vec<String>>,
    /// wss://: full TLS handshakes, all generations.
    pub tls_full: AtomicU64,
    /// wss://: resumed TLS handshakes (session tickets), all generations.
    pub tls_resumed: AtomicU64,
}

impl Shared {
    pub fn new() -> anyhow::Result<Self> {
        Ok(Self {
            open: AtomicUsize::new(0),
            gen_connected: AtomicUsize::new(0),
            acked: AtomicUsize::new(0),
            verified: AtomicUsize::new(0),
            connects_ok: AtomicU64::new(0),
            attempt_errors: AtomicU64::new(0),
            gave_up: AtomicUsize::new(0),
            lost: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            unparsed: AtomicU64::new(0),
            unexpected: AtomicU64::new(0),
            // 1 ns .. 60 s, 3 significant digits.
            latency: Mutex::new(Histogram::new_with_bounds(1, 60_000_000_000, 3)?),
            last_delivery: AtomicU64::new(0),
            errors: Mutex::new(Vec::new()),
            tls_full: AtomicU64::new(0),
            tls_resumed: AtomicU64::new(0),
        })
    }

    pub fn note_error(&self, e: String) {
        if let Ok(mut v) = self.errors.lock() {
            if v.len() < 10 && !v.contains(&e) {
                v.push(e);
            }
        }
    }
}

/// How to reach the server; shared by all clients.
pub struct Connector {
    pub target: Target,
    /// ws:// URL: for redcast the /ws endpoint, for Nchan a template with
    /// `{channels}` (comma-joined channel names) or a prefix to append to.
    pub url: String,
    pub dest: SocketAddr,
    pub raw: bool,
    pub names: Arc<Vec<String>>,
    /// Handshakes in flight at most.
    pub gate: Semaphore,
    /// Connection attempts so far; picks the source address.
    pub attempts: AtomicUsize,
    /// Connections per source address (127.0.0.<base>, then the next ...).
    pub per_source: usize,
    /// Last octet of the first source address; 1 lets the kernel choose
    /// for the first block (127.0.0.1).
    pub source_base: u8,
    pub retries: u32,
    /// wss://: TLS over each TCP connection.
    pub tls: Option<Tls>,
}

impl Connector {
    /// The URL one client connects to.
    pub fn url_for(&self, channels: &[u32]) -> String {
        let names: Vec<&str> = channels
            .iter()
            .map(|&c| self.names[c as usize].as_str())
            .collect();
        match self.target {
            Target::Redcast => {
                let mut url = self.url.clone();
                let mut sep = if url.contains('?') { '&' } else { '?' };
                for n in &names {
                    url.push(sep);
                    url.push_str("channel=");
                    url.push_str(n);
                    sep = '&';
                }
                if self.raw {
                    url.push(sep);
                    url.push_str("format=raw");
                }
                url
            }
            Target::Nchan => {
                let joined = names.join(",");
                if self.url.contains("{channels}") {
                    self.url.replace("{channels}", &joined)
                } else {
                    format!("{}/{}", self.url.trim_end_matches('/'), joined)
                }
            }
        }
    }

    /// Source address of the n-th connection attempt.
    fn source(&self, n: usize) -> Option<Ipv4Addr> {
        let block = n / self.per_source.max(1);
        if block == 0 && self.source_base <= 1 {
            return None; // let the kernel choose (127.0.0.1)
        }
        let base = usize::from(self.source_base.max(1));
        Some(Ipv4Addr::new(
            127,
            0,
            0,
            (1 + (base - 1 + block) % 254) as u8,
        ))
    }

    pub async fn connect_once(
        &self,
        url: &str,
        tls: Option<&TlsConnector>,
        shared: &Shared,
    ) -> anyhow::Result<WebSocketStream<Io>> {
        let _permit = self.gate.acquire().await?;
        let n = self.attempts.fetch_add(1, Ordering::Relaxed);
        let socket = TcpSocket::new_v4()?;
        if let Some(src) = self.source(n) {
            no_port_at_bind(&socket);
            socket.bind(SocketAddr::V4(SocketAddrV4::new(src, 0)))?;
        }
        let stream = tokio::time::timeout(Duration::from_secs(10), socket.connect(self.dest))
            .await
            .map_err(|_| anyhow::anyhow!("TCP connect timed out"))??;
        stream.set_nodelay(true)?;
        let stream = match (&self.tls, tls) {
            (Some(settings), Some(connector)) => {
                let s = tokio::time::timeout(
                    Duration::from_secs(10),
                    connector.connect(settings.server_name.clone(), stream),
                )
                .await
                .map_err(|_| anyhow::anyhow!("TLS handshake timed out"))??;
                let resumed = s.get_ref().1.handshake_kind() == Some(HandshakeKind::Resumed);
                let count = if resumed {
                    &shared.tls_resumed
                } else {
                    &shared.tls_full
                };
                count.fetch_add(1, Ordering::Relaxed);
                Io::Tls(Box::new(s))
            }
            _ => Io::Plain(stream),
        };
        let (ws, _response) = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_tungstenite::client_async_with_config(url, stream, Some(ws_config())),
        )
        .await
        .map_err(|_| anyhow::anyhow!("WebSocket handshake timed out"))??;
        Ok(ws)
    }
}

/// Small buffers: tungstenite's default 128 KiB read buffer, zeroed per
/// connection, costs 2.4 GiB and most of the connect CPU at 19,000 clients.
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(8192)
        .write_buffer_size(0)
}

/// IP_BIND_ADDRESS_NO_PORT: the port is chosen at connect() by the full
/// 4-tuple, not at bind() (which would scan for a port free on every
/// address, slower and slower as ports fill up). Best effort.
fn no_port_at_bind(socket: &TcpSocket) {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: a valid socket fd and a c_int option of the right size.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Seen sequence numbers of one channel.
#[derive(Default)]
struct SeqSet(Vec<u64>);

impl SeqSet {
    /// Marks `seq`; true when it was new.
    fn insert(&mut self, seq: u64) -> bool {
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if word >= self.0.len() {
            // Bounded by the number of messages the run publishes.
            self.0.resize(word + 1, 0);
        }
        let mask = 1u64 << bit;
        let new = self.0[word] & mask == 0;
        self.0[word] |= mask;
        new
    }
}

enum Ending {
    Stop,
    Reconnect,
    Lost,
}

/// How many times a client reconnects after losing its connection.
const MAX_LOSSES: u32 = 3;

/// One client, until told to stop.
pub async fn run(
    channels: Vec<u32>,
    conn: Arc<Connector>,
    shared: Arc<Shared>,
    mut ctl: watch::Receiver<Ctl>,
) {
    let url = conn.url_for(&channels);
    // wss://: this client's own ticket store, kept across reconnects.
    let tls = conn.tls.as_ref().map(Tls::for_client);
    let mut seen: Vec<SeqSet> = channels.iter().map(|_| SeqSet::default()).collect();
    let expects_ack = conn.target == Target::Redcast && !conn.raw && !channels.is_empty();
    let mut generation = ctl.borrow().generation;
    let mut losses = 0;
    loop {
        if ctl.borrow().stop {
            return;
        }
        let mut ws = None;
        for attempt in 0..=conn.retries {
            match conn.connect_once(&url, tls.as_ref(), &shared).await {
                Ok(w) => {
                    ws = Some(w);
                    break;
                }
                Err(e) => {
                    shared.attempt_errors.fetch_add(1, Ordering::Relaxed);
                    shared.note_error(format!("connect: {e}"));
                    let backoff = Duration::from_millis(100u64 << attempt.min(5));
                    tokio::time::sleep(backoff).await;
                    if ctl.borrow().stop {
                        return;
                    }
                }
            }
        }
        let Some(mut ws) = ws else {
            shared.gave_up.fetch_add(1, Ordering::Relaxed);
            return;
        };
        shared.open.fetch_add(1, Ordering::Relaxed);
        shared.connects_ok.fetch_add(1, Ordering::Relaxed);
        shared.gen_connected.fetch_add(1, Ordering::Relaxed);
        let mut acked = !expects_ack;
        if acked {
            shared.acked.fetch_add(1, Ordering::Relaxed);
        }
        let mut probed = vec![false; channels.len()];
        let mut missing = channels.len();
        if missing == 0 {
            shared.verified.fetch_add(1, Ordering::Relaxed);
        }
        let ending = loop {
            tokio::select! {
                changed = ctl.changed() => {
                    let c = *ctl.borrow_and_update();
                    if changed.is_err() || c.stop {
                        break Ending::Stop;
                    }
                    if c.generation != generation {
                        generation = c.generation;
                        break Ending::Reconnect;
                    }
                }
                msg = ws.next() => {
                    let bytes: &[u8] = match &msg {
                        Some(Ok(Message::Text(t))) => t.as_bytes(),
                        Some(Ok(Message::Binary(b))) => b,
                        Some(Ok(Message::Close(_))) | None => break Ending::Lost,
                        Some(Err(e)) => {
                            shared.note_error(format!("read: {e}"));
                            break Ending::Lost;
                        }
                        Some(Ok(_)) => continue, // ping, pong
                    };
                    let Some(p) = payload::parse(bytes) else {
                        if !acked && payload::is_ack(bytes) {
                            acked = true;
                            shared.acked.fetch_add(1, Ordering::Relaxed);
                        } else {
                            shared.unparsed.fetch_add(1, Ordering::Relaxed);
                        }
                        continue;
                    };
                    on_payload(&p, &channels, &mut seen, &mut probed, &mut missing, &shared);
                }
            }
        };
        shared.open.fetch_sub(1, Ordering::Relaxed);
        match ending {
            Ending::Stop => {
                // Dropping the stream closes the socket.
                return;
            }
            Ending::Reconnect => drop(ws),
            Ending::Lost => {
                shared.lost.fetch_add(1, Ordering::Relaxed);
                losses += 1;
                if losses > MAX_LOSSES {
                    return;
                }
            }
        }
    }
}

fn on_payload(
    p: &Payload,
    channels: &[u32],
    seen: &mut [SeqSet],
    probed: &mut [bool],
    missing: &mut usize,
    shared: &Shared,
) {
    let Some(slot) = channels.iter().position(|&c| c == p.channel) else {
        shared.unexpected.fetch_add(1, Ordering::Relaxed);
        return;
    };
    if p.probe {
        if !probed[slot] {
            probed[slot] = true;
            *missing -= 1;
            if *missing == 0 {
                shared.verified.fetch_add(1, Ordering::Relaxed);
            }
        }
        return;
    }
    if seen[slot].insert(p.seq) {
        let now = payload::unix_nanos();
        shared.delivered.fetch_add(1, Ordering::Relaxed);
        shared.last_delivery.fetch_max(now, Ordering::Relaxed);
        if let Ok(mut h) = shared.latency.lock() {
            h.saturating_record(now.saturating_sub(p.sent).max(1));
        }
    } else {
        shared.duplicates.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connector(target: Target, url: &str, raw: bool) -> Connector {
        Connector {
            target,
            url: url.into(),
            dest: "127.0.0.1:1".parse().unwrap(),
            raw,
            names: Arc::new(vec!["b0".into(), "b1".into()]),
            gate: Semaphore::new(1),
            attempts: AtomicUsize::new(0),
            per_source: 10,
            source_base: 1,
            retries: 0,
            tls: None,
        }
    }

    #[test]
    fn urls() {
        let r = connector(Target::Redcast, "ws://127.0.0.1:8080/ws", false);
        assert_eq!(
            r.url_for(&[0, 1]),
            "ws://127.0.0.1:8080/ws?channel=b0&channel=b1"
        );
        assert_eq!(r.url_for(&[]), "ws://127.0.0.1:8080/ws");
        let raw = connector(Target::Redcast, "ws://127.0.0.1:8080/ws", true);
        assert_eq!(
            raw.url_for(&[1]),
            "ws://127.0.0.1:8080/ws?channel=b1&format=raw"
        );
        let n = connector(Target::Nchan, "ws://127.0.0.1:8081/sub/{channels}", false);
        assert_eq!(n.url_for(&[0, 1]), "ws://127.0.0.1:8081/sub/b0,b1");
        let n = connector(Target::Nchan, "ws://127.0.0.1:8081/sub/", false);
        assert_eq!(n.url_for(&[1]), "ws://127.0.0.1:8081/sub/b1");
    }

    #[test]
    fn sources_spread_after_first_block() {
        let r = connector(Target::Redcast, "ws://127.0.0.1:8080/ws", false);
        assert_eq!(r.source(9), None);
        assert_eq!(r.source(10), Some(Ipv4Addr::new(127, 0, 0, 2)));
        assert_eq!(r.source(25), Some(Ipv4Addr::new(127, 0, 0, 3)));
        let b = Connector {
            source_base: 20,
            ..connector(Target::Redcast, "ws://127.0.0.1:8080/ws", false)
        };
        assert_eq!(b.source(0), Some(Ipv4Addr::new(127, 0, 0, 20)));
        assert_eq!(b.source(10), Some(Ipv4Addr::new(127, 0, 0, 21)));
    }

    #[test]
    fn seqset_finds_duplicates() {
        let mut s = SeqSet::default();
        assert!(s.insert(1));
        assert!(s.insert(700));
        assert!(!s.insert(1));
        assert!(!s.insert(700));
    }
}
