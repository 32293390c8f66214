//! One WebSocket client of durable channels: connects, subscribes (with
//! `since` to resume), reads frames cheaply, and checks each channel's
//! stream: offsets one after the other in one epoch (nothing missing,
//! nothing twice, in order), payloads on the right channel and, where
//! they were published in order, carrying the right sequence number.

use crate::client::Connector;
use crate::payload;
use crate::tls::Io;
use futures_util::{SinkExt, StreamExt};
use std::collections::HashMap;
use std::time::Duration;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

pub type Ws = WebSocketStream<Io>;

/// Connects to `url`, retrying with backoff.
pub async fn connect(conn: &Connector, url: &str) -> anyhow::Result<Ws> {
    let mut last = None;
    // Plain ws:// only: the TLS counters of `Shared` stay unused here.
    let shared = crate::client::Shared::new()?;
    for attempt in 0..=conn.retries {
        match conn.connect_once(url, None, &shared).await {
            Ok(ws) => return Ok(ws),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100u64 << attempt.min(5))).await;
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no connection attempt")))
}

/// A position: (offset, epoch).
pub type Position = (u64, String);

/// `{"type":"subscribe","id":"s","channels":[..],"since":{..}}`.
pub fn subscribe(channels: &[&str], since: &[(&str, &Position)]) -> Message {
    let mut req = serde_json::json!({"type": "subscribe", "id": "s", "channels": channels});
    if !since.is_empty() {
        let map: serde_json::Map<String, serde_json::Value> = since
            .iter()
            .map(|(c, (o, e))| (c.to_string(), serde_json::json!({"offset": o, "epoch": e})))
            .collect();
        req["since"] = map.into();
    }
    Message::text(req.to_string())
}

/// A frame from redcast, as far as the benchmark cares.
#[derive(Debug, PartialEq)]
pub enum Frame<'a> {
    Message {
        channel: &'a str,
        position: Option<(u64, &'a str)>,
        payload: Option<payload::Payload>,
    },
    Ack {
        positions: HashMap<String, Position>,
        recovered: HashMap<String, bool>,
    },
    Error(String),
    Other,
}

const MESSAGE: &[u8] = br#"{"type":"message","channel":""#;

/// Reads a frame; message frames without a JSON parse (the load
/// generator reads hundreds of thousands of them).
pub fn parse(bytes: &[u8]) -> Frame<'_> {
    if let Some(rest) = bytes.strip_prefix(MESSAGE) {
        let Some(end) = rest.iter().position(|&b| b == b'"') else {
            return Frame::Other;
        };
        let Ok(channel) = std::str::from_utf8(&rest[..end]) else {
            return Frame::Other;
        };
        return Frame::Message {
            channel,
            position: position_of(bytes),
            payload: payload::parse(bytes),
        };
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return Frame::Other;
    };
    match v["type"].as_str() {
        Some("subscribed") => {
            let positions = v["positions"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter_map(|(c, p)| {
                            let pos = (p["offset"].as_u64()?, p["epoch"].as_str()?.to_string());
                            Some((c.clone(), pos))
                        })
                        .collect()
                })
                .unwrap_or_default();
            let recovered = v["recovered"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter_map(|(c, r)| Some((c.clone(), r.as_bool()?)))
                        .collect()
                })
                .unwrap_or_default();
            Frame::Ack {
                positions,
                recovered,
            }
        }
        Some("error") => Frame::Error(v.to_string()),
        _ => Frame::Other,
    }
}

/// `"offset":N,"epoch":"E"` at the end of a message frame (after the data).
fn position_of(frame: &[u8]) -> Option<(u64, &str)> {
    let tail = frame.strip_suffix(b"\"}")?;
    let epoch_at = rfind(tail, b",\"epoch\":\"")?;
    let epoch = std::str::from_utf8(&tail[epoch_at + 10..]).ok()?;
    let head = &tail[..epoch_at];
    let offset_at = rfind(head, b",\"offset\":")?;
    let offset = std::str::from_utf8(&head[offset_at + 10..])
        .ok()?
        .parse()
        .ok()?;
    Some((offset, epoch))
}

fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}

/// Why a channel's stream is not exact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// An offset was skipped (lost).
    Gap { expected: u64, got: u64 },
    /// An offset came again, or out of order.
    Repeat { expected: u64, got: u64 },
    /// A message of another epoch.
    Epoch,
    /// A message without a position on a durable channel.
    Unpositioned,
    /// The payload is not what was published at that offset.
    Payload { offset: u64 },
}

/// One channel's stream as a client sees it.
#[derive(Debug, Clone)]
pub struct Track {
    pub epoch: String,
    /// The next offset expected.
    pub next: u64,
    /// Channel index the payloads carry.
    pub index: u32,
    /// offset - seq of the first message, when payloads were published
    /// in order (then it is the same for every message).
    delta: Option<i128>,
    in_order: bool,
    pub received: u64,
}

impl Track {
    /// From the position an ack reported.
    pub fn new(at: &Position, index: u32, in_order: bool) -> Self {
        Track {
            epoch: at.1.clone(),
            next: at.0 + 1,
            index,
            delta: None,
            in_order,
            received: 0,
        }
    }

    /// The position to resume from.
    pub fn position(&self) -> Position {
        (self.next - 1, self.epoch.clone())
    }

    /// Checks one message; the offset it had, if exact.
    pub fn on_message(
        &mut self,
        position: Option<(u64, &str)>,
        payload: Option<&payload::Payload>,
    ) -> Result<u64, Fault> {
        let Some((offset, epoch)) = position else {
            return Err(Fault::Unpositioned);
        };
        if epoch != self.epoch {
            return Err(Fault::Epoch);
        }
        if offset != self.next {
            let (expected, got) = (self.next, offset);
            return Err(if got > expected {
                Fault::Gap { expected, got }
            } else {
                Fault::Repeat { expected, got }
            });
        }
        let Some(p) = payload.filter(|p| p.channel == self.index) else {
            return Err(Fault::Payload { offset });
        };
        if self.in_order {
            let delta = i128::from(offset) - i128::from(p.seq);
            if *self.delta.get_or_insert(delta) != delta {
                return Err(Fault::Payload { offset });
            }
        }
        self.next += 1;
        self.received += 1;
        Ok(offset)
    }
}

/// Sends a close frame and drops the connection (bounded).
pub async fn close(mut ws: Ws) {
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = ws.send(Message::Close(None)).await;
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

/// The bytes of a data frame; `None` when the connection ended.
pub fn data(msg: &Option<Result<Message, WsError>>) -> Option<Option<&[u8]>> {
    match msg {
        Some(Ok(Message::Text(t))) => Some(Some(t.as_bytes())),
        Some(Ok(Message::Binary(b))) => Some(Some(b)),
        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => None,
        Some(Ok(_)) => Some(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(channel: &str, seq: u64, c: u32, offset: u64, epoch: &str) -> String {
        let data = payload::make(c, seq, false, "");
        format!(
            r#"{{"type":"message","channel":"{channel}","data":{data},"offset":{offset},"epoch":"{epoch}"}}"#
        )
    }

    #[test]
    fn parses_messages_and_acks() {
        let m = msg("h1000.s3", 9, 3, 14, "18c2f-3a1");
        let Frame::Message {
            channel,
            position,
            payload,
        } = parse(m.as_bytes())
        else {
            panic!("not a message");
        };
        assert_eq!((channel, position), ("h1000.s3", Some((14, "18c2f-3a1"))));
        assert_eq!(payload.map(|p| (p.seq, p.channel)), Some((9, 3)));
        let plain = br#"{"type":"message","channel":"plain.1","data":{"t":1,"seq":2,"c":1}}"#;
        assert!(matches!(
            parse(plain),
            Frame::Message { position: None, .. }
        ));
        let ack = br#"{"type":"subscribed","id":"s","channels":["a"],"positions":{"a":{"offset":41,"epoch":"e"}},"recovered":{"a":true}}"#;
        let Frame::Ack {
            positions,
            recovered,
        } = parse(ack)
        else {
            panic!("not an ack");
        };
        assert_eq!(positions["a"], (41, "e".to_string()));
        assert!(recovered["a"]);
        assert!(matches!(
            parse(br#"{"type":"error","code":"x"}"#),
            Frame::Error(_)
        ));
        let sub = subscribe(&["a"], &[("a", &(41, "e".to_string()))]);
        assert!(sub
            .to_text()
            .unwrap()
            .contains(r#""since":{"a":{"epoch":"e","offset":41}}"#));
    }

    #[test]
    fn tracks_exactly_once_in_order() {
        let mut t = Track::new(&(5, "e".into()), 3, true);
        let p = |seq| payload::parse(payload::make(3, seq, false, "").as_bytes());
        assert_eq!(t.on_message(Some((6, "e")), p(1).as_ref()), Ok(6));
        assert_eq!(t.on_message(Some((7, "e")), p(2).as_ref()), Ok(7));
        assert_eq!(
            t.on_message(Some((7, "e")), p(2).as_ref()),
            Err(Fault::Repeat {
                expected: 8,
                got: 7
            })
        );
        assert_eq!(
            t.on_message(Some((9, "e")), p(4).as_ref()),
            Err(Fault::Gap {
                expected: 8,
                got: 9
            })
        );
        assert_eq!(
            t.on_message(Some((8, "x")), p(3).as_ref()),
            Err(Fault::Epoch)
        );
        assert_eq!(
            t.on_message(Some((8, "e")), p(5).as_ref()),
            Err(Fault::Payload { offset: 8 })
        );
        assert_eq!(t.on_message(None, p(3).as_ref()), Err(Fault::Unpositioned));
        assert_eq!(t.on_message(Some((8, "e")), p(3).as_ref()), Ok(8));
        assert_eq!((t.position(), t.received), ((8, "e".to_string()), 3));
    }
}
