//! Clients of a PROXY-protocol listener: v1 and v2 headers as a balancer
//! writes them, and the WebSocket handshake after one.

use std::net::SocketAddr;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A v1 header naming `client` (`ip:port`).
pub fn v1(client: &str) -> Vec<u8> {
    let (ip, port) = client.rsplit_once(':').unwrap();
    format!("PROXY TCP4 {ip} 127.0.0.1 {port} 8080\r\n").into_bytes()
}

/// A v2 header: PROXY (or LOCAL), TCP over IPv4, one NOOP TLV.
pub fn v2(client: &str, local: bool) -> Vec<u8> {
    let client: std::net::SocketAddrV4 = client.parse().unwrap();
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend([if local { 0x20 } else { 0x21 }, 0x11, 0, 12 + 4]);
    h.extend(client.ip().octets());
    h.extend([127, 0, 0, 1]);
    h.extend(client.port().to_be_bytes());
    h.extend(8080u16.to_be_bytes());
    h.extend([0x04, 0, 1, 0]);
    h
}

/// A TCP connection to `addr` that has sent `header`.
pub async fn with_header(addr: SocketAddr, header: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(header).await.unwrap();
    s
}

/// A plain stream as the shared helpers ([`super::recv_json`]) take it.
pub fn plain(s: TcpStream) -> MaybeTlsStream<TcpStream> {
    MaybeTlsStream::Plain(s)
}

/// The WebSocket handshake on `stream`, as a client library does it.
pub async fn upgrade<S>(stream: S, url: &str) -> Result<WebSocketStream<S>, tungstenite::Error>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    tokio_tungstenite::client_async(url, stream)
        .await
        .map(|(ws, _)| ws)
}

pub fn status<T>(r: Result<T, tungstenite::Error>) -> u16 {
    match r {
        Ok(_) => 101,
        Err(tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(e) => panic!("expected an HTTP answer, got {e}"),
    }
}

/// Waits until the server closes `s` without sending anything.
pub async fn closed_silently(s: &mut TcpStream) {
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(super::DEADLINE, s.read(&mut buf))
        .await
        .expect("closed before the deadline")
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without an answer: {:?}", &buf[..n]);
}
