//! Server frames: replies to requests, and the message frames that are
//! encoded once per Redis message and shared by every subscriber.

use super::{Frame, Position, RequestError};
use bytes::Bytes;
use serde::Serialize;
use tungstenite::protocol::frame::Utf8Bytes;

#[derive(Serialize)]
struct Reply<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    channels: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<&'a str>,
}

impl<'a> Reply<'a> {
    fn new(kind: &'a str, id: Option<&'a str>) -> Self {
        Self {
            kind,
            id,
            channels: None,
            code: None,
            message: None,
        }
    }

    fn encode(&self) -> Frame {
        // Serializing plain strings into a String cannot fail.
        Frame::text(serde_json::to_string(self).unwrap_or_default())
    }
}

/// `{"type":"subscribed","id":..,"channels":[..]}`
pub fn encode_subscribed(id: Option<&str>, channels: &[String]) -> Frame {
    Reply {
        channels: Some(channels),
        ..Reply::new("subscribed", id)
    }
    .encode()
}

/// `{"type":"unsubscribed","id":..,"channels":[..]}`
pub fn encode_unsubscribed(id: Option<&str>, channels: &[String]) -> Frame {
    Reply {
        channels: Some(channels),
        ..Reply::new("unsubscribed", id)
    }
    .encode()
}

/// `{"type":"pong","id":..}`
pub fn encode_pong(id: Option<&str>) -> Frame {
    Reply::new("pong", id).encode()
}

/// `{"type":"published","id":..}`
pub fn encode_published(id: Option<&str>) -> Frame {
    Reply::new("published", id).encode()
}

/// `{"type":"refreshed","id":..}`
pub fn encode_refreshed(id: Option<&str>) -> Frame {
    Reply::new("refreshed", id).encode()
}

/// `{"type":"error","id":..,"code":..,"message":..}`
pub fn encode_error(err: &RequestError) -> Frame {
    Reply {
        code: Some(err.code.as_str()),
        message: Some(&err.message),
        channels: (!err.channels.is_empty()).then_some(err.channels.as_slice()),
        ..Reply::new("error", err.id.as_deref())
    }
    .encode()
}

/// The JSON envelope for one Redis message: `data` is the payload itself
/// when it is valid JSON, else the payload as a JSON string (invalid UTF-8
/// replaced by U+FFFD; raw mode delivers bytes untouched). Messages of
/// durable channels end with their `offset` and `epoch`.
pub fn encode_message(channel: &str, payload: &[u8], position: Option<&Position>) -> Frame {
    let mut out = Vec::with_capacity(payload.len() + channel.len() + 96);
    out.extend_from_slice(br#"{"type":"message","channel":"#);
    write_json_string(&mut out, channel);
    out.extend_from_slice(br#","data":"#);
    write_data(&mut out, payload);
    if let Some(p) = position {
        // The epoch is letters, digits and dashes: no escaping needed.
        out.extend_from_slice(
            format!(r#","offset":{},"epoch":"{}""#, p.offset, p.epoch).as_bytes(),
        );
    }
    out.push(b'}');
    // Built from valid UTF-8 pieces: the payload is valid JSON (thus UTF-8)
    // or was escaped; the conversion cannot fail, but is checked anyway.
    match String::from_utf8(out) {
        Ok(s) => Frame::text(s),
        Err(e) => Frame::Binary(Bytes::from(e.into_bytes())),
    }
}

/// The payload verbatim: a text frame when it is UTF-8, else binary.
pub fn encode_raw(payload: &[u8]) -> Frame {
    let bytes = Bytes::copy_from_slice(payload);
    match Utf8Bytes::try_from(bytes.clone()) {
        Ok(text) => Frame::Text(text),
        Err(_) => Frame::Binary(bytes),
    }
}

/// A frame as it goes on the wire from a server: FIN, opcode, length,
/// no mask (RFC 6455 section 5.2). Server frames are the same for every
/// client, so one encoding is shared by all direct-mode subscribers.
pub fn encode_wire(frame: &Frame) -> Bytes {
    let (opcode, payload): (u8, &[u8]) = match frame {
        Frame::Text(t) => (0x1, t.as_bytes()),
        Frame::Binary(b) => (0x2, b),
    };
    let mut out = Vec::with_capacity(payload.len() + 10);
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= u16::MAX as usize => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    Bytes::from(out)
}

/// A payload as a `data` value: itself when it is JSON, else a string.
fn write_data(out: &mut Vec<u8>, payload: &[u8]) {
    if is_json(payload) {
        out.extend_from_slice(payload);
    } else {
        write_json_string(out, &String::from_utf8_lossy(payload));
    }
}

/// A payload as a JSON value (for replies built with serde_json).
fn data_value(payload: &[u8]) -> Box<serde_json::value::RawValue> {
    let mut out = Vec::with_capacity(payload.len() + 2);
    write_data(&mut out, payload);
    // Valid JSON by construction; `null` only if that ever broke.
    String::from_utf8(out)
        .ok()
        .and_then(|text| serde_json::value::RawValue::from_string(text).ok())
        .unwrap_or_else(|| serde_json::value::RawValue::NULL.to_owned())
}

/// The `subscribed` ack of a join with durable channels: `positions` of
/// each confirmed durable channel, `recovered` for each resumed one.
pub fn encode_subscribed_durable(
    id: Option<&str>,
    channels: &[String],
    positions: &[(String, Position)],
    recovered: &[(String, bool)],
) -> Frame {
    #[derive(Serialize)]
    struct Ack<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a str>,
        channels: &'a [String],
        #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
        positions: serde_json::Map<String, serde_json::Value>,
        #[serde(skip_serializing_if = "serde_json::Map::is_empty")]
        recovered: serde_json::Map<String, serde_json::Value>,
    }
    let ack = Ack {
        kind: "subscribed",
        id,
        channels,
        positions: positions
            .iter()
            .map(|(c, p)| (c.clone(), p.to_json()))
            .collect(),
        recovered: recovered
            .iter()
            .map(|(c, r)| (c.clone(), (*r).into()))
            .collect(),
    };
    Frame::text(serde_json::to_string(&ack).unwrap_or_default())
}

/// One kept message in a `history` reply.
#[derive(Serialize)]
pub struct HistoryEntry {
    pub offset: u64,
    pub data: Box<serde_json::value::RawValue>,
}

impl HistoryEntry {
    pub fn new(offset: u64, payload: &[u8]) -> Self {
        Self {
            offset,
            data: data_value(payload),
        }
    }
}

/// `{"type":"history","id":..,"channel":..,"messages":[..],"position":..}`
pub fn encode_history(
    id: Option<&str>,
    channel: &str,
    messages: &[HistoryEntry],
    position: &Position,
) -> Frame {
    #[derive(Serialize)]
    struct Reply<'a> {
        #[serde(rename = "type")]
        kind: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a str>,
        channel: &'a str,
        messages: &'a [HistoryEntry],
        position: serde_json::Value,
    }
    let reply = Reply {
        kind: "history",
        id,
        channel,
        messages,
        position: position.to_json(),
    };
    Frame::text(serde_json::to_string(&reply).unwrap_or_default())
}

/// Whether the payload can be embedded as it is: valid JSON, and valid
/// UTF-8 throughout. Parsing from a `&str` matters: from bytes, serde_json
/// skips ignored strings without checking their UTF-8, so JSON with a bad
/// byte inside a string passed, and the envelope became a binary frame
/// (found by fuzzing, fuzz/fuzz_targets/protocol.rs).
fn is_json(payload: &[u8]) -> bool {
    std::str::from_utf8(payload)
        .is_ok_and(|text| serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok())
}

fn write_json_string(out: &mut Vec<u8>, s: &str) {
    // Writing a &str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Regressions found by fuzzing (fuzz/fuzz_targets/protocol.rs).
#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::tests::text;

    /// JSON with a bad UTF-8 byte inside a string is
    /// not embedded (it became a binary frame); it travels as a string.
    #[test]
    fn json_with_invalid_utf8_in_a_string_is_quoted() {
        assert_eq!(
            text(&encode_message("a", b"{\"k\":\"\xaf\"}", None)),
            "{\"type\":\"message\",\"channel\":\"a\",\"data\":\"{\\\"k\\\":\\\"\u{fffd}\\\"}\"}"
        );
    }

    /// A number beyond f64 is valid JSON (browsers read
    /// Infinity), so it is embedded as published, like any JSON.
    #[test]
    fn json_numbers_beyond_f64_are_embedded_verbatim() {
        assert_eq!(
            text(&encode_message("a", b"4444e4444", None)),
            r#"{"type":"message","channel":"a","data":4444e4444}"#
        );
    }
}
