//! Positions in durable channels as they travel in frames: parsed from
//! `since`, written into messages, acks and `history` replies.

use super::{ErrorCode, RequestError};
use serde_json::{Map, Value};
use std::sync::Arc;

/// Longest epoch accepted from Redis or a client.
pub const MAX_EPOCH_BYTES: usize = 32;

/// Where a message stands in its channel's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// +1 per message, from 1; 0 before the first.
    pub offset: u64,
    /// Names one unbroken history of the channel.
    pub epoch: Arc<str>,
}

impl Position {
    /// A position with an epoch checked for shape (short, letters, digits
    /// and dashes, as the Function makes them).
    pub fn new(offset: u64, epoch: &str) -> Option<Position> {
        let ok = !epoch.is_empty()
            && epoch.len() <= MAX_EPOCH_BYTES
            && epoch
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-');
        ok.then(|| Position {
            offset,
            epoch: Arc::from(epoch),
        })
    }

    /// Whether a message at `self` was already delivered to a client
    /// standing at `floor` (same history, not after it).
    pub fn is_at_or_before(&self, floor: &Position) -> bool {
        self.epoch == floor.epoch && self.offset <= floor.offset
    }

    /// `{"offset":..,"epoch":..}`
    pub fn to_json(&self) -> Value {
        serde_json::json!({ "offset": self.offset, "epoch": &*self.epoch })
    }
}

/// The positions a server frame carries: a durable channel's message
/// (read from its fixed shape, no full parse), or a `subscribed` ack's
/// `positions` (acks are rare: parsed whole).
pub fn frame_positions(text: &str) -> Vec<(String, Position)> {
    if let Some(rest) = text.strip_prefix(r#"{"type":"message","channel":"#) {
        return message_position(rest).into_iter().collect();
    }
    if !text.starts_with(r#"{"type":"subscribed""#) {
        return Vec::new();
    }
    let Ok(Value::Object(mut ack)) = serde_json::from_str::<Value>(text) else {
        return Vec::new();
    };
    let Some(Value::Object(positions)) = ack.remove("positions") else {
        return Vec::new();
    };
    positions
        .into_iter()
        .filter_map(|(c, v)| Some((c, position_of(&v)?)))
        .collect()
}

/// `"<channel>","data":<data>,"offset":N,"epoch":"E"}`: the channel is
/// the leading JSON string, the position the fixed tail that
/// `encode_message` appends (an epoch never needs escaping, so a tail
/// inside `data` could not end the frame this way).
fn message_position(rest: &str) -> Option<(String, Position)> {
    // The tail first: most frames have none, and it costs no parsing.
    let (head, epoch) = rest.strip_suffix("\"}")?.rsplit_once(r#","epoch":""#)?;
    let (_, offset) = head.rsplit_once(r#","offset":"#)?;
    if !offset.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let position = Position::new(offset.parse().ok()?, epoch)?;
    let mut strings = serde_json::Deserializer::from_str(rest).into_iter::<String>();
    Some((strings.next()?.ok()?, position))
}

/// `since`: channel name to `{"offset":..,"epoch":..}`.
pub(super) fn parse_since(
    value: Option<Value>,
    id: &Option<String>,
) -> Result<Vec<(String, Position)>, RequestError> {
    let invalid = |msg: String| RequestError::new(id.clone(), ErrorCode::InvalidField, msg);
    let entries = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Object(entries)) => entries,
        Some(_) => {
            return Err(invalid(
                "`since` must be an object of positions by channel".into(),
            ))
        }
    };
    entries
        .into_iter()
        .map(|(channel, v)| match position_of(&v) {
            Some(p) => Ok((channel, p)),
            None => {
                let shown: String = channel.chars().take(64).collect();
                let e = invalid(format!(
                    "`since.{shown}` must be {{\"offset\": <integer >= 0>, \"epoch\": <string>}}"
                ));
                Err(e.with_channels(vec![channel]))
            }
        })
        .collect()
}

fn position_of(v: &Value) -> Option<Position> {
    let obj: &Map<String, Value> = v.as_object()?;
    if obj.len() != 2 {
        return None;
    }
    Position::new(obj.get("offset")?.as_u64()?, obj.get("epoch")?.as_str()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_positions_and_names_bad_ones() {
        let ok = parse_since(
            Some(serde_json::json!({"c": {"offset": 4, "epoch": "ab-1"}})),
            &None,
        );
        assert_eq!(
            ok.unwrap(),
            [("c".to_string(), Position::new(4, "ab-1").unwrap())]
        );
        for bad in [
            serde_json::json!([1]),
            serde_json::json!({"c": {"offset": -1, "epoch": "a"}}),
            serde_json::json!({"c": {"offset": 1}}),
            serde_json::json!({"c": {"offset": 1, "epoch": "a b"}}),
            serde_json::json!({"c": {"offset": 1.5, "epoch": "a"}}),
            serde_json::json!({"c": {"offset": 1, "epoch": "a", "x": 1}}),
        ] {
            let e = parse_since(Some(bad.clone()), &Some("7".into())).unwrap_err();
            assert_eq!(
                (e.code, e.id.as_deref()),
                (ErrorCode::InvalidField, Some("7")),
                "{bad}"
            );
        }
    }

    #[test]
    fn positions_are_read_back_from_frames() {
        let at = Position::new(42, "e-1").unwrap();
        let text = |f: super::super::Frame| match f {
            super::super::Frame::Text(t) => t.to_string(),
            super::super::Frame::Binary(_) => String::new(),
        };
        let durable = text(super::super::encode_message(
            "a\"b",
            br#"{"offset":1,"epoch":"x"}"#,
            Some(&at),
        ));
        assert_eq!(
            frame_positions(&durable),
            [("a\"b".to_string(), at.clone())]
        );
        for plain in [
            &br#"{"offset":1,"epoch":"x"}"#[..],
            br#"x","offset":1,"epoch":"x"#,
            b"\",\"offset\":1,\"epoch\":\"x",
        ] {
            let frame = text(super::super::encode_message("a", plain, None));
            assert!(frame_positions(&frame).is_empty(), "{frame}");
        }
        let ack = text(super::super::encode_subscribed_durable(
            None,
            &["a".into()],
            &[("a".into(), at.clone())],
            &[],
        ));
        assert_eq!(frame_positions(&ack), [("a".to_string(), at)]);
    }

    #[test]
    fn epochs_are_checked() {
        assert!(Position::new(1, "").is_none());
        assert!(Position::new(1, &"a".repeat(33)).is_none());
        let a = Position::new(5, "e1").unwrap();
        assert!(Position::new(5, "e1").unwrap().is_at_or_before(&a));
        assert!(!Position::new(6, "e1").unwrap().is_at_or_before(&a));
        assert!(!Position::new(1, "e2").unwrap().is_at_or_before(&a));
    }
}
