//! Client frame parsing (`protocol::parse_request`) and the server frames
//! built from untrusted bytes: a Redis payload becomes a JSON envelope
//! that must always be valid JSON carrying the payload (verbatim when it
//! is JSON, else as a string), and every frame's wire encoding must state
//! its own length correctly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use redcast::protocol::{self, Frame, Request};
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        requests(text);
    }
    envelope(data);
});

fn requests(text: &str) {
    match protocol::parse_request(text) {
        Ok(Request::Subscribe { channels, .. } | Request::Unsubscribe { channels, .. }) => {
            assert!(!channels.is_empty(), "a (un)subscribe names channels");
        }
        Ok(_) => {}
        // Every refusal becomes an error frame that must be valid JSON.
        Err(e) => {
            json(&protocol::encode_error(&e));
        }
    }
}

/// The envelope as a client reads it; `data` is kept as its JSON text, so
/// that a valid number beyond f64 (`1e999`: browsers read Infinity) is
/// checked for syntax, not range.
#[derive(serde::Deserialize)]
struct Envelope<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    channel: String,
    #[serde(borrow)]
    data: &'a RawValue,
}

fn envelope(payload: &[u8]) {
    let channel = String::from_utf8_lossy(&payload[..payload.len().min(16)]);
    let frame = protocol::encode_message(&channel, payload, None);
    let Frame::Text(text) = &frame else {
        panic!("envelopes are text frames: {frame:?}")
    };
    let env: Envelope = serde_json::from_str(text.as_str()).expect("envelopes are valid JSON");
    assert_eq!(env.kind, "message");
    assert_eq!(env.channel, channel);
    let embedded = std::str::from_utf8(payload)
        .is_ok_and(|t| env.data.get() == t.trim_matches([' ', '\t', '\n', '\r']));
    if !embedded {
        // Not JSON: the payload travels as a string, lossily decoded.
        let data: String = serde_json::from_str(env.data.get()).expect("data is a string");
        assert_eq!(data, String::from_utf8_lossy(payload));
    }
    wire(&frame);
    wire(&protocol::encode_raw(payload));
}

fn json(frame: &Frame) {
    let Frame::Text(text) = frame else {
        panic!("JSON frames are text: {frame:?}")
    };
    serde_json::from_str::<IgnoredAny>(text.as_str()).expect("server frames are valid JSON");
}

/// RFC 6455 section 5.2: FIN set, no mask, the smallest length form.
fn wire(frame: &Frame) {
    let bytes = protocol::encode_wire(frame);
    assert_eq!(bytes[0] & 0x80, 0x80, "FIN");
    assert_eq!(bytes[1] & 0x80, 0, "server frames are not masked");
    let (len, header) = match bytes[1] & 0x7f {
        126 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
        127 => (
            u64::from_be_bytes(bytes[2..10].try_into().unwrap()) as usize,
            10,
        ),
        n => (n as usize, 2),
    };
    assert_eq!(len, frame.len());
    assert_eq!(bytes.len(), header + len);
    assert!(header == 2 || len >= 126, "smallest length form");
}
