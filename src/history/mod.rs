//! Durable channels: history and gap-free recovery through Redis Streams.
//!
//! A channel whose rule has a `history_size` is durable. Backends publish
//! with `FCALL redcast_publish 1 <channel> <payload>`: the Function
//! ([`library`], kept in place by the [`keeper`]) gives the message the
//! channel's next *position* (an offset, +1 per message, and an epoch
//! that changes whenever the history was lost), appends it to the
//! channel's stream and publishes it live as an envelope carrying the
//! position ([`split_envelope`]). The hub decodes the envelope once per
//! message and puts the position into the frame. Sessions read positions,
//! missed messages and recent history through the [`store`], and hand a
//! recovery over to live delivery without gap or duplicate
//! ([`crate::session::durable`], [`crate::hub::Gate`]).

pub mod keeper;
pub mod library;
pub mod store;

/// The Function backends call to publish.
pub const PUBLISH_FUNCTION: &str = "redcast_publish";
/// What starts a live message published by the Function.
pub const ENVELOPE_PREFIX: &[u8] = b"\0rc1:";
pub use crate::protocol::Position;

/// Splits a live message into its position (when the Function published
/// it) and the payload itself. A plain PUBLISH comes back whole.
pub fn split_envelope(message: &[u8]) -> (Option<Position>, &[u8]) {
    let Some(rest) = message.strip_prefix(ENVELOPE_PREFIX) else {
        return (None, message);
    };
    let parsed = (|| {
        let header_end = rest.iter().position(|&b| b == 0)?;
        let header = std::str::from_utf8(&rest[..header_end]).ok()?;
        let (offset, epoch) = header.split_once(':')?;
        let position = Position::new(offset.parse().ok()?, epoch)?;
        Some((position, &rest[header_end + 1..]))
    })();
    match parsed {
        Some((position, payload)) => (Some(position), payload),
        None => (None, message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_split_and_plain_messages_pass() {
        let (pos, payload) = split_envelope(b"\0rc1:42:18c2f0a\0{\"a\":1}");
        assert_eq!(pos, Position::new(42, "18c2f0a"));
        assert_eq!(payload, b"{\"a\":1}");
        assert_eq!(split_envelope(b"hello"), (None, &b"hello"[..]));
        // Malformed headers are delivered as they came.
        let odd = b"\0rc1:x:y\0z";
        assert_eq!(split_envelope(odd), (None, &odd[..]));
        assert_eq!(split_envelope(b"\0rc1:1:e"), (None, &b"\0rc1:1:e"[..]));
    }
}
