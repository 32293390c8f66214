//! Shared test harness: a real redis-server on a free port, the real
//! gateway in-process on port 0, and WebSocket/HTTP clients (including a
//! raw one for hostile frames). Readiness is awaited on signals (redis's
//! "Ready to accept connections" line, acks, /readyz), never on sleeps.
#![allow(dead_code)]

pub mod chaos;
pub mod cli;
pub mod cluster;
pub mod durable;
pub mod haproxy;
pub mod proxy;
pub mod proxy_header;
pub mod raw;
pub mod redis_server;
pub mod sentinel;
pub mod sse;
pub mod stream;
pub mod tls;
pub mod topology;

pub use redis_server::Redis;

use futures_util::{SinkExt, StreamExt};
use redcast::config::{self, Overrides};
use redcast::Gateway;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tungstenite::Message;

/// How long any single expected event may take before a test fails.
pub const DEADLINE: Duration = Duration::from_secs(15);

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Builds settings from env-style pairs, on free loopback ports.
pub fn settings(redis_url: &str, env: &[(&str, &str)]) -> config::Settings {
    let overrides = Overrides {
        listen: Some("127.0.0.1:0".into()),
        admin_listen: Some("127.0.0.1:0".into()),
        redis_url: Some(redis_url.into()),
        log_format: None,
        demo: false,
    };
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    config::load(None, env, &overrides).expect("test settings must be valid")
}

/// Starts the real gateway in-process.
pub async fn gateway(redis: &Redis, env: &[(&str, &str)]) -> Gateway {
    Gateway::start(settings(&redis.url(), env))
        .await
        .expect("gateway starts")
}

/// Connects a WebSocket client to `path` (e.g. `/ws?channel=a`).
pub async fn connect(gw: &Gateway, path: &str) -> Ws {
    let url = format!("ws://{}{}", gw.ws_addr, path);
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket connects");
    ws
}

/// Next frame that is not a ping or pong.
pub async fn next_data<S>(ws: &mut WebSocketStream<S>) -> Message
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    tokio::time::timeout(DEADLINE, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(m)) => return m,
                other => panic!("connection ended: {other:?}"),
            }
        }
    })
    .await
    .expect("no frame before the deadline")
}

/// Next frame, parsed as JSON.
pub async fn recv_json<S>(ws: &mut WebSocketStream<S>) -> Value
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match next_data(ws).await {
        Message::Text(t) => serde_json::from_str(t.as_str()).expect("server sends JSON"),
        other => panic!("expected a text frame, got {other:?}"),
    }
}

pub async fn send_json(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// Connects with `?channel=` for each channel and waits for the ack.
pub async fn subscribed_client(gw: &Gateway, channels: &[&str]) -> Ws {
    let query: Vec<String> = channels.iter().map(|c| format!("channel={c}")).collect();
    let mut ws = connect(gw, &format!("/ws?{}", query.join("&"))).await;
    let ack = recv_json(&mut ws).await;
    assert_eq!(ack["type"], "subscribed", "{ack}");
    ws
}

/// Reads until the close frame; returns its code (None if the TCP
/// connection ended without one).
pub async fn close_code(ws: &mut Ws) -> Option<u16> {
    tokio::time::timeout(DEADLINE, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => {
                    // One more read sends our close reply, as a browser would.
                    let _ = ws.next().await;
                    return frame.map(|f| u16::from(f.code));
                }
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    })
    .await
    .expect("no close before the deadline")
}

/// Waits until `/readyz` answers `status` with a body holding `needle`;
/// returns the body.
pub async fn wait_readyz(gw: &Gateway, status: u16, needle: &str) -> String {
    let start = tokio::time::Instant::now();
    loop {
        let (got, body) = get(gw.admin_addr, "/readyz").await;
        if got == status && body.contains(needle) {
            return body;
        }
        assert!(
            start.elapsed() < DEADLINE * 2,
            "/readyz never answered {status} with {needle:?}; last: {got} {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A plain HTTP/1.1 request; returns status and body.
pub async fn http(addr: SocketAddr, request: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(DEADLINE, s.read_to_end(&mut buf))
        .await
        .expect("response")
        .unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

pub async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    http(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    )
    .await
}

/// Polls `cond` until it holds (for states only visible by asking, such
/// as /readyz); fails after the deadline.
pub async fn wait_until<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = tokio::time::Instant::now();
    while !cond().await {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn ready(gw: &Gateway) -> bool {
    get(gw.admin_addr, "/readyz").await.0 == 200
}

/// A metric's value from /metrics (sum over label sets), 0 if absent.
pub async fn metric(gw: &Gateway, name: &str) -> f64 {
    metric_at(gw.admin_addr, name).await
}

/// [`metric`] from the admin listener at `admin` (e.g. a child process).
pub async fn metric_at(admin: SocketAddr, name: &str) -> f64 {
    let (_, body) = get(admin, "/metrics").await;
    body.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Connects with extra request headers; returns the handshake error as is.
pub async fn try_connect(
    gw: &Gateway,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Ws, tungstenite::Error> {
    use tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://{}{}", gw.ws_addr, path)
        .into_client_request()
        .unwrap();
    for (k, v) in headers {
        req.headers_mut().append(
            tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    tokio_tungstenite::connect_async(req)
        .await
        .map(|(ws, _)| ws)
}

/// The HTTP status of a refused handshake (panics if it was accepted).
pub async fn refused_status(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> u16 {
    match try_connect(gw, path, headers).await {
        Err(tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("expected an HTTP refusal, got {e:?}"),
        Ok(_) => panic!("expected a refusal of {path} {headers:?}, got an upgrade"),
    }
}

/// Signs a JWT for tests; `claims` is merged over a default `exp` an hour out.
pub fn jwt(alg: &str, key: &[u8], kid: Option<&str>, claims: Value) -> String {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let alg: Algorithm = alg.parse().unwrap();
    let key = match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            EncodingKey::from_secret(key).unwrap()
        }
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(key).unwrap(),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(key).unwrap(),
        _ => EncodingKey::from_rsa_pem(key).unwrap(),
    };
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    let mut body = serde_json::json!({ "exp": now() + 3600 });
    if let (Value::Object(b), Value::Object(c)) = (&mut body, claims) {
        b.extend(c);
    }
    jsonwebtoken::encode(&header, &body, &key).unwrap()
}

/// Unix seconds now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A test fixture file's path.
pub fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}
