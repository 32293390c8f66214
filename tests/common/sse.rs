//! A minimal SSE client over a raw socket (HTTP/1.1, chunked body).

use std::net::SocketAddr;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

pub struct SseClient {
    reader: BufReader<TcpStream>,
    /// Decoded body bytes not yet parsed into events.
    pending: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
}

impl SseClient {
    /// Sends `GET path` with extra headers and reads the response head.
    pub async fn open(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> SseClient {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let extra: String = headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}\r\n"))
            .collect();
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n{extra}\r\n"
        );
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).await.unwrap();
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut headers = Vec::new();
        loop {
            line.clear();
            reader.read_line(&mut line).await.unwrap();
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        SseClient {
            reader,
            pending: String::new(),
            status,
            headers,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Next event block (lines up to a blank line), or None at the end.
    pub async fn next_block(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.pending.find("\n\n") {
                let block = self.pending[..i].to_string();
                self.pending.drain(..i + 2);
                return Some(block);
            }
            let chunk = self.read_chunk().await?;
            self.pending.push_str(&chunk);
        }
    }

    /// Next `data:` event, joined as EventSource does; skips comments.
    pub async fn next_data(&mut self) -> Option<String> {
        tokio::time::timeout(super::DEADLINE, async {
            loop {
                let block = self.next_block().await?;
                let data: Vec<&str> = block
                    .lines()
                    .filter_map(|l| l.strip_prefix("data: "))
                    .collect();
                if !data.is_empty() {
                    return Some(data.join("\n"));
                }
            }
        })
        .await
        .expect("no event before the deadline")
    }

    /// Next event as JSON.
    pub async fn next_json(&mut self) -> serde_json::Value {
        serde_json::from_str(&self.next_data().await.expect("stream ended")).unwrap()
    }

    async fn read_chunk(&mut self) -> Option<String> {
        let mut size = String::new();
        if self.reader.read_line(&mut size).await.ok()? == 0 {
            return None;
        }
        let n = usize::from_str_radix(size.trim(), 16).ok()?;
        if n == 0 {
            return None;
        }
        let mut buf = vec![0u8; n + 2];
        self.reader.read_exact(&mut buf).await.ok()?;
        buf.truncate(n);
        Some(String::from_utf8_lossy(&buf).into_owned())
    }
}
