//! The SSE encoder: whatever a message holds (any line breaks, `data:`
//! lookalikes, blank lines), the event a spec-conforming EventSource
//! parses back is the message, with its line breaks as `\n`, and nothing
//! leaks into a second event.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use redcast::metrics::Metrics;
use redcast::protocol::Frame;

fuzz_target!(|text: &str| {
    let metrics = Metrics::default();
    let mut out = BytesMut::new();
    let mut ids = redcast::sse::event_id::Positions::default();
    let frame = Frame::Text(text.to_string().into());
    redcast::sse::encode_event(&mut out, &frame, &mut ids, &metrics);
    let stream = std::str::from_utf8(&out).expect("events are UTF-8");
    let events = parse(stream);
    assert_eq!(events.len(), 1, "one message is one event: {stream:?}");
    let expected = text.replace("\r\n", "\n").replace('\r', "\n");
    assert_eq!(events[0], expected);
});

/// The event stream interpretation of the HTML standard (data fields
/// only): lines end at CRLF, LF or CR; each data field appends its value
/// and a LF to the buffer; a blank line dispatches a non-empty buffer
/// without its last LF.
fn parse(stream: &str) -> Vec<String> {
    let mut events = Vec::new();
    let mut buffer = String::new();
    let normalized = stream.replace("\r\n", "\n").replace('\r', "\n");
    let mut lines: Vec<&str> = normalized.split('\n').collect();
    // The text after the last line break is an unfinished line.
    lines.pop();
    for line in lines {
        if line.is_empty() {
            if let Some(event) = buffer.strip_suffix('\n') {
                events.push(event.to_string());
            }
            buffer.clear();
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        if field == "data" {
            buffer.push_str(value.strip_prefix(' ').unwrap_or(value));
            buffer.push('\n');
        }
    }
    events
}
