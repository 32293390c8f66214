//! The published payload and a cheap parser for what clients receive.
//!
//! Payload: `{"t":<unix nanos at send>,"seq":<n>,"c":<channel index>}`,
//! plus `"p":1` for readiness probes (seq 0) and an optional `"pad"`
//! string. The same bytes arrive verbatim from Nchan and in redcast's raw
//! mode, or as the `data` of redcast's envelope
//! `{"type":"message","channel":..,"data":{...}}`. The parser looks for
//! the keys instead of building a JSON tree, so that the load generator
//! spends as little CPU per delivery as it can.

use std::time::{SystemTime, UNIX_EPOCH};

/// What a client needs from a received payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payload {
    pub sent: u64,
    pub seq: u64,
    pub channel: u32,
    pub probe: bool,
}

pub fn unix_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// A payload stamped with the current time.
pub fn make(channel: u32, seq: u64, probe: bool, pad: &str) -> String {
    let t = unix_nanos();
    let mut s = format!("{{\"t\":{t},\"seq\":{seq},\"c\":{channel}");
    if probe {
        s.push_str(",\"p\":1");
    }
    if !pad.is_empty() {
        s.push_str(",\"pad\":\"");
        s.push_str(pad);
        s.push('"');
    }
    s.push('}');
    s
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn number_after(hay: &[u8], key: &[u8]) -> Option<u64> {
    let start = find(hay, key)? + key.len();
    let digits = hay[start..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    if digits == 0 {
        return None;
    }
    std::str::from_utf8(&hay[start..start + digits])
        .ok()?
        .parse()
        .ok()
}

/// Reads a payload (bare or inside redcast's envelope).
pub fn parse(frame: &[u8]) -> Option<Payload> {
    // Skip an envelope's "type"/"channel" fields: the payload is the data.
    let body = match find(frame, b"\"data\":") {
        Some(i) => &frame[i..],
        None => frame,
    };
    Some(Payload {
        sent: number_after(body, b"\"t\":")?,
        seq: number_after(body, b"\"seq\":")?,
        channel: u32::try_from(number_after(body, b"\"c\":")?).ok()?,
        probe: find(body, b"\"p\":1").is_some(),
    })
}

/// Whether a frame is redcast's `subscribed` acknowledgement.
pub fn is_ack(frame: &[u8]) -> bool {
    find(frame, b"\"type\":\"subscribed\"").is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_bare_and_enveloped() {
        let p = make(7, 42, false, "xx");
        let got = parse(p.as_bytes()).unwrap();
        assert_eq!((got.seq, got.channel, got.probe), (42, 7, false));
        assert!(got.sent > 0);
        let env = format!("{{\"type\":\"message\",\"channel\":\"b7\",\"data\":{p}}}");
        assert_eq!(parse(env.as_bytes()), Some(got));
        let probe = parse(make(3, 0, true, "").as_bytes()).unwrap();
        assert!(probe.probe);
        assert_eq!(probe.channel, 3);
    }

    #[test]
    fn acks_and_garbage() {
        assert!(is_ack(br#"{"type":"subscribed","channels":["b0"]}"#));
        assert!(parse(br#"{"type":"subscribed","channels":["b0"]}"#).is_none());
        assert!(parse(b"hello").is_none());
        assert!(parse(br#"{"t":,"seq":1,"c":1}"#).is_none());
    }
}
