//! A hand-rolled WebSocket client for sending what a well-behaved library
//! never would: unmasked frames, bad UTF-8, reserved bits, silence.

use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct RawWs {
    pub stream: TcpStream,
}

pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

impl RawWs {
    /// Completes a valid handshake on `path`; panics unless 101.
    pub async fn connect(addr: SocketAddr, path: &str) -> RawWs {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut b = [0u8; 1];
            stream.read_exact(&mut b).await.unwrap();
            head.push(b[0]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        RawWs { stream }
    }

    /// Sends one frame with full control over its header bits.
    pub async fn send(&mut self, first_byte: u8, payload: &[u8], masked: bool) {
        let mut f = vec![first_byte];
        let mask_bit = if masked { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => f.push(mask_bit | n as u8),
            n if n < 65536 => {
                f.push(mask_bit | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(mask_bit | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let key = [1u8, 2, 3, 4];
        if masked {
            f.extend_from_slice(&key);
            f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        } else {
            f.extend_from_slice(payload);
        }
        self.stream.write_all(&f).await.unwrap();
    }

    /// Reads one server frame: (opcode, payload).
    pub async fn read(&mut self) -> Option<(u8, Vec<u8>)> {
        let mut h = [0u8; 2];
        self.stream.read_exact(&mut h).await.ok()?;
        let len = match h[1] & 0x7f {
            126 => {
                let mut b = [0u8; 2];
                self.stream.read_exact(&mut b).await.ok()?;
                u16::from_be_bytes(b) as usize
            }
            127 => {
                let mut b = [0u8; 8];
                self.stream.read_exact(&mut b).await.ok()?;
                u64::from_be_bytes(b) as usize
            }
            n => n as usize,
        };
        let mut payload = vec![0u8; len];
        self.stream.read_exact(&mut payload).await.ok()?;
        Some((h[0] & 0x0f, payload))
    }

    /// Reads frames until a close frame; returns its code.
    pub async fn close_code(&mut self) -> Option<u16> {
        tokio::time::timeout(super::DEADLINE, async {
            loop {
                let (op, payload) = self.read().await?;
                if op == 0x8 {
                    return (payload.len() >= 2)
                        .then(|| u16::from_be_bytes([payload[0], payload[1]]));
                }
            }
        })
        .await
        .expect("no close before the deadline")
    }
}
