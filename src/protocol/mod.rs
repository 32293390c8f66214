//! The wire protocol (docs/protocol.md is its public description): parsing
//! of client frames into [`Request`]s, and encoding of server frames.
//!
//! Message frames are encoded once per Redis message and shared by every
//! subscriber, so [`encode_message`] and [`encode_raw`] return [`Frame`]s
//! holding reference-counted bytes.

use bytes::Bytes;
use serde::Serialize;
use serde_json::{Map, Value};
use tungstenite::protocol::frame::Utf8Bytes;

/// Longest `id` a client may attach to a request.
pub const MAX_ID_BYTES: usize = 128;

/// WebSocket close codes redcast sends.
pub mod close {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// The server is shutting down (or draining): reconnect elsewhere.
    pub const GOING_AWAY: u16 = 1001;
    /// The client broke RFC 6455 framing.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// The client sent a binary frame; the protocol is JSON text.
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// A text frame was not valid UTF-8.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// Policy violation.
    pub const POLICY: u16 = 1008;
    /// A frame or message exceeded `client.max_message_bytes`.
    pub const TOO_BIG: u16 = 1009;
    /// Something failed inside redcast.
    pub const INTERNAL: u16 = 1011;
    /// The client was silent for longer than `client.idle_timeout`.
    pub const IDLE_TIMEOUT: u16 = 4001;
    /// The connection's token expired and no fresh one was sent.
    pub const TOKEN_EXPIRED: u16 = 4003;
    /// The client did not read fast enough: its queue exceeded
    /// `client.queue_max_bytes`.
    pub const SLOW_CONSUMER: u16 = 4008;
    /// The client kept sending after being told it is rate limited.
    pub const RATE_LIMITED: u16 = 4029;
}

/// One outgoing WebSocket data frame, cheap to clone.
#[derive(Debug, Clone)]
pub enum Frame {
    /// A text frame (always valid UTF-8).
    Text(Utf8Bytes),
    /// A binary frame (raw mode, payload not UTF-8).
    Binary(Bytes),
}

impl Frame {
    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        match self {
            Frame::Text(t) => t.len(),
            Frame::Binary(b) => b.len(),
        }
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn text(s: String) -> Frame {
        Frame::Text(Utf8Bytes::from(s))
    }
}

/// Error codes of `{"type":"error"}` frames (documented in docs/protocol.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame is not a JSON object.
    InvalidJson,
    /// A field is missing or has the wrong type.
    InvalidField,
    /// `type` names no known request.
    UnknownType,
    /// A channel name breaks `channels.name_pattern`.
    InvalidChannel,
    /// The request would exceed `client.max_subscriptions`.
    TooManySubscriptions,
    /// The channel rules or the token do not allow this.
    Forbidden,
    /// The connection sends requests faster than `client.rate_limit`.
    RateLimited,
    /// A `refresh` token is invalid, or names another subject.
    InvalidToken,
    /// Redis did not take a publish (unavailable or busy); retry later.
    PublishFailed,
}

impl ErrorCode {
    /// The code as it appears on the wire and in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidField => "invalid_field",
            ErrorCode::UnknownType => "unknown_type",
            ErrorCode::InvalidChannel => "invalid_channel",
            ErrorCode::TooManySubscriptions => "too_many_subscriptions",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::PublishFailed => "publish_failed",
        }
    }
}

/// A request the client may make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `{"type":"subscribe","channels":[...]}`
    Subscribe {
        id: Option<String>,
        channels: Vec<String>,
    },
    /// `{"type":"unsubscribe","channels":[...]}`
    Unsubscribe {
        id: Option<String>,
        channels: Vec<String>,
    },
    /// `{"type":"ping"}`
    Ping { id: Option<String> },
    /// `{"type":"publish","channel":..,"data":..}`; `payload` is what goes
    /// to Redis: a string's contents, or any other value's JSON text.
    Publish {
        id: Option<String>,
        channel: String,
        payload: Vec<u8>,
    },
    /// `{"type":"refresh","token":..}`
    Refresh { id: Option<String>, token: String },
}

/// A request that could not be served; becomes an error frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestError {
    /// The request's `id`, echoed when it could be read.
    pub id: Option<String>,
    /// What went wrong.
    pub code: ErrorCode,
    /// A short human-readable explanation.
    pub message: String,
    /// The channels the error is about (rejected subscriptions), if any.
    pub channels: Vec<String>,
}

impl RequestError {
    /// Builds an error for the request with this `id`.
    pub fn new(id: Option<String>, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            id,
            code,
            message: message.into(),
            channels: Vec::new(),
        }
    }

    /// Names the channels this error is about.
    pub fn with_channels(mut self, channels: Vec<String>) -> Self {
        self.channels = channels;
        self
    }
}

/// Parses one client text frame.
pub fn parse_request(text: &str) -> Result<Request, RequestError> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        RequestError::new(None, ErrorCode::InvalidJson, format!("not valid JSON: {e}"))
    })?;
    let Value::Object(mut obj) = value else {
        return Err(RequestError::new(
            None,
            ErrorCode::InvalidJson,
            "a request must be a JSON object",
        ));
    };
    let id = take_id(&mut obj)?;
    let kind = match obj.get("type") {
        Some(Value::String(s)) => s.as_str(),
        Some(_) => {
            return Err(RequestError::new(
                id,
                ErrorCode::InvalidField,
                "`type` must be a string",
            ))
        }
        None => {
            return Err(RequestError::new(
                id,
                ErrorCode::InvalidField,
                "`type` is missing",
            ))
        }
    };
    match kind {
        "subscribe" => Ok(Request::Subscribe {
            channels: take_channels(&mut obj, &id)?,
            id,
        }),
        "unsubscribe" => Ok(Request::Unsubscribe {
            channels: take_channels(&mut obj, &id)?,
            id,
        }),
        "ping" => Ok(Request::Ping { id }),
        "publish" => parse_publish(obj, id),
        "refresh" => match obj.remove("token") {
            Some(Value::String(token)) => Ok(Request::Refresh { id, token }),
            _ => Err(RequestError::new(
                id,
                ErrorCode::InvalidField,
                "`token` must be a string",
            )),
        },
        other => {
            let shown: String = other.chars().take(40).collect();
            Err(RequestError::new(
                id,
                ErrorCode::UnknownType,
                format!("unknown type `{shown}`"),
            ))
        }
    }
}

fn parse_publish(mut obj: Map<String, Value>, id: Option<String>) -> Result<Request, RequestError> {
    let channel = match obj.remove("channel") {
        Some(Value::String(c)) => c,
        _ => {
            return Err(RequestError::new(
                id,
                ErrorCode::InvalidField,
                "`channel` must be a string",
            ))
        }
    };
    let payload = match obj.remove("data") {
        None => {
            return Err(RequestError::new(
                id,
                ErrorCode::InvalidField,
                "`data` is missing",
            ))
        }
        Some(Value::String(s)) => s.into_bytes(),
        Some(other) => serde_json::to_vec(&other).unwrap_or_default(),
    };
    Ok(Request::Publish {
        id,
        channel,
        payload,
    })
}

fn take_id(obj: &mut Map<String, Value>) -> Result<Option<String>, RequestError> {
    match obj.remove("id") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() <= MAX_ID_BYTES => Ok(Some(s)),
        Some(Value::String(_)) => Err(RequestError::new(
            None,
            ErrorCode::InvalidField,
            format!("`id` must be at most {MAX_ID_BYTES} bytes"),
        )),
        Some(_) => Err(RequestError::new(
            None,
            ErrorCode::InvalidField,
            "`id` must be a string",
        )),
    }
}

fn take_channels(
    obj: &mut Map<String, Value>,
    id: &Option<String>,
) -> Result<Vec<String>, RequestError> {
    let invalid = |msg: &str| RequestError::new(id.clone(), ErrorCode::InvalidField, msg);
    let Some(Value::Array(items)) = obj.remove("channels") else {
        return Err(invalid("`channels` must be an array of strings"));
    };
    if items.is_empty() {
        return Err(invalid("`channels` must not be empty"));
    }
    items
        .into_iter()
        .map(|v| match v {
            Value::String(s) => Ok(s),
            _ => Err(invalid("`channels` must be an array of strings")),
        })
        .collect()
}

mod encode;

pub use encode::*;

#[cfg(test)]
mod tests {
    use super::*;

    /// A text frame's text (shared with `encode`'s tests).
    pub(super) fn text(f: &Frame) -> &str {
        match f {
            Frame::Text(t) => t.as_str(),
            Frame::Binary(_) => panic!("binary"),
        }
    }

    #[test]
    fn envelope_embeds_json_and_quotes_text() {
        assert_eq!(
            text(&encode_message("a", br#"{"x":1}"#)),
            r#"{"type":"message","channel":"a","data":{"x":1}}"#
        );
        assert_eq!(
            text(&encode_message("a", b"hi \"you\"")),
            r#"{"type":"message","channel":"a","data":"hi \"you\""}"#
        );
        assert_eq!(
            text(&encode_message("a", b"")),
            r#"{"type":"message","channel":"a","data":""}"#
        );
        assert_eq!(
            text(&encode_message("a", &[0xff, b'a'])),
            "{\"type\":\"message\",\"channel\":\"a\",\"data\":\"\u{fffd}a\"}"
        );
    }

    #[test]
    fn wire_encoding_has_the_three_length_forms() {
        let small = encode_wire(&Frame::Text("hi".into()));
        assert_eq!(&small[..], b"\x81\x02hi");
        let mid = encode_wire(&Frame::Binary(Bytes::from(vec![7u8; 300])));
        assert_eq!(&mid[..4], &[0x82, 126, 1, 44]);
        let big = encode_wire(&Frame::Binary(Bytes::from(vec![0u8; 70_000])));
        assert_eq!(&big[..2], &[0x82, 127]);
        assert_eq!(u64::from_be_bytes(big[2..10].try_into().unwrap()), 70_000);
    }

    #[test]
    fn raw_keeps_bytes() {
        assert!(matches!(encode_raw(&[0xff]), Frame::Binary(_)));
        assert_eq!(text(&encode_raw(b"plain")), "plain");
    }

    #[test]
    fn parse_errors_echo_id() {
        let e = parse_request(r#"{"type":"nope","id":"7"}"#).unwrap_err();
        assert_eq!(
            (e.code, e.id.as_deref()),
            (ErrorCode::UnknownType, Some("7"))
        );
        let e = parse_request(r#"{"type":"subscribe","id":"8","channels":"a"}"#).unwrap_err();
        assert_eq!(
            (e.code, e.id.as_deref()),
            (ErrorCode::InvalidField, Some("8"))
        );
        assert_eq!(
            parse_request("[1]").unwrap_err().code,
            ErrorCode::InvalidJson
        );
        assert_eq!(parse_request("{").unwrap_err().code, ErrorCode::InvalidJson);
    }

    #[test]
    fn parse_ok() {
        assert_eq!(
            parse_request(r#"{"type":"subscribe","channels":["a","b"],"id":"1"}"#).unwrap(),
            Request::Subscribe {
                id: Some("1".into()),
                channels: vec!["a".into(), "b".into()]
            }
        );
        assert_eq!(
            parse_request(r#"{"type":"ping"}"#).unwrap(),
            Request::Ping { id: None }
        );
    }
}
