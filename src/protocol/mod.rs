//! The wire protocol (docs/protocol.md is its public description): parsing
//! of client frames into [`Request`]s, and encoding of server frames.
//!
//! Message frames are encoded once per Redis message and shared by every
//! subscriber, so [`encode_message`] and [`encode_raw`] return [`Frame`]s
//! holding reference-counted bytes.

use bytes::Bytes;
use serde::Serialize;
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
    /// A `since` position is ahead of the channel.
    InvalidPosition,
    /// `since` or `history` on a channel that keeps no history.
    NotDurable,
    /// The history could not be read in time; retry later.
    HistoryUnavailable,
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
            ErrorCode::InvalidPosition => "invalid_position",
            ErrorCode::NotDurable => "not_durable",
            ErrorCode::HistoryUnavailable => "history_unavailable",
        }
    }
}

/// A request the client may make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `{"type":"subscribe","channels":[...],"since":{..}}`
    Subscribe {
        id: Option<String>,
        channels: Vec<String>,
        /// Positions to resume durable channels from.
        since: Vec<(String, Position)>,
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
    /// `{"type":"history","channel":..,"limit":..}`
    History {
        id: Option<String>,
        channel: String,
        limit: Option<u64>,
    },
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

mod encode;
mod parse;
mod position;

pub use encode::*;
pub use parse::parse_request;
pub use position::{frame_positions, Position, MAX_EPOCH_BYTES};

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
            text(&encode_message("a", br#"{"x":1}"#, None)),
            r#"{"type":"message","channel":"a","data":{"x":1}}"#
        );
        assert_eq!(
            text(&encode_message("a", b"hi \"you\"", None)),
            r#"{"type":"message","channel":"a","data":"hi \"you\""}"#
        );
        assert_eq!(
            text(&encode_message("a", b"", None)),
            r#"{"type":"message","channel":"a","data":""}"#
        );
        assert_eq!(
            text(&encode_message("a", &[0xff, b'a'], None)),
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
                channels: vec!["a".into(), "b".into()],
                since: Vec::new(),
            }
        );
        assert_eq!(
            parse_request(r#"{"type":"ping"}"#).unwrap(),
            Request::Ping { id: None }
        );
    }
}
