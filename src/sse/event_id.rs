//! SSE event ids on durable channels: every event that carries a position
//! gets an `id:` holding the positions of *all* durable channels of the
//! stream seen so far, as `channel=offset:epoch&...` (form-encoded), so
//! that the browser's own `Last-Event-ID` resumes every one of them. A
//! client that opens a new EventSource itself passes the same string as
//! `?last_event_id=`.

use crate::handshake::Refusal;
use crate::protocol::{self, Frame, Position};
use std::collections::{BTreeMap, HashMap};

/// Longest `Last-Event-ID` accepted.
pub const MAX_EVENT_ID_BYTES: usize = 16 * 1024;

/// Reads a `Last-Event-ID` (or `last_event_id`); `None` when malformed.
pub fn parse(id: &str) -> Option<HashMap<String, Position>> {
    if id.len() > MAX_EVENT_ID_BYTES {
        return None;
    }
    form_urlencoded::parse(id.as_bytes())
        .map(|(channel, at)| {
            let (offset, epoch) = at.split_once(':')?;
            Some((
                channel.into_owned(),
                Position::new(offset.parse().ok()?, epoch)?,
            ))
        })
        .collect()
}

/// The positions a stream resumes from: the `Last-Event-ID` header, else
/// the `last_event_id` query parameter; none when neither is there.
pub fn from_request<B>(req: &hyper::Request<B>) -> Result<HashMap<String, Position>, Refusal> {
    let header = req
        .headers()
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or("\u{0}").to_string());
    let query = || {
        let query = req.uri().query().unwrap_or("");
        form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "last_event_id")
            .map(|(_, v)| v.into_owned())
    };
    match header.or_else(query) {
        None => Ok(HashMap::new()),
        Some(id) => parse(&id).ok_or(Refusal::BadRequest("malformed Last-Event-ID")),
    }
}

/// The positions a stream has delivered, by channel.
#[derive(Default)]
pub struct Positions(BTreeMap<String, Position>);

impl Positions {
    /// Starts from what the client resumed with.
    pub fn new(since: &HashMap<String, Position>) -> Positions {
        Positions(since.iter().map(|(c, p)| (c.clone(), p.clone())).collect())
    }

    /// Notes the positions a frame carries; the new event id when it
    /// carried any.
    pub fn update(&mut self, frame: &Frame) -> Option<String> {
        let Frame::Text(text) = frame else {
            return None;
        };
        let found = protocol::frame_positions(text.as_str());
        if found.is_empty() {
            return None;
        }
        self.0.extend(found);
        Some(self.encode())
    }

    fn encode(&self) -> String {
        let mut out = form_urlencoded::Serializer::new(String::new());
        for (channel, p) in &self.0 {
            out.append_pair(channel, &format!("{}:{}", p.offset, p.epoch));
        }
        out.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_bad_ones_are_refused() {
        let since = parse("a.b=4:e1&c%26d=0:e2").unwrap();
        assert_eq!(since["a.b"], Position::new(4, "e1").unwrap());
        assert_eq!(since["c&d"], Position::new(0, "e2").unwrap());
        let mut positions = Positions::new(&since);
        let frame = protocol::encode_message("x", b"1", Position::new(9, "e3").as_ref());
        assert_eq!(
            positions.update(&frame).unwrap(),
            "a.b=4%3Ae1&c%26d=0%3Ae2&x=9%3Ae3"
        );
        assert!(positions
            .update(&protocol::encode_message("x", b"1", None))
            .is_none());
        for bad in ["a=1", "a=x:e", "a=1:", "a=1:e%20f"] {
            assert!(parse(bad).is_none(), "{bad}");
        }
        assert_eq!(parse("").unwrap().len(), 0);
    }
}
