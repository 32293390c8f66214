//! The WebSocket opening handshake (RFC 6455 section 4.2): checking the
//! request, reading redcast's query parameters, and building the answer.
//! Every refusal is a [`Refusal`]: an HTTP status with a short reason.

use crate::config::Settings;
use crate::hub::Format;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use std::collections::HashSet;

/// The subprotocol redcast speaks, echoed when a client offers it.
pub const SUBPROTOCOL: &str = "redcast.v1";

/// A plain HTTP response body.
pub type Body = Full<Bytes>;

/// Why a request was not upgraded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("not found")]
    NotFound,
    #[error("this endpoint needs a WebSocket upgrade")]
    UpgradeRequired,
    #[error("unsupported Sec-WebSocket-Version; use 13")]
    UnsupportedVersion,
    #[error("{0}")]
    BadRequest(&'static str),
    #[error("server is at its connection limit; retry later")]
    AtCapacity,
}

impl Refusal {
    /// The label counted in `redcast_connections_rejected_total`.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::NotFound => "not_found",
            Refusal::UpgradeRequired | Refusal::UnsupportedVersion => "bad_handshake",
            Refusal::BadRequest(_) => "bad_request",
            Refusal::AtCapacity => "max_connections",
        }
    }

    /// The HTTP answer; the connection closes after it.
    pub fn into_response(self) -> Response<Body> {
        let status = match self {
            Refusal::NotFound => StatusCode::NOT_FOUND,
            Refusal::UpgradeRequired | Refusal::UnsupportedVersion => StatusCode::UPGRADE_REQUIRED,
            Refusal::BadRequest(_) => StatusCode::BAD_REQUEST,
            Refusal::AtCapacity => StatusCode::SERVICE_UNAVAILABLE,
        };
        let mut resp = text(status, self.to_string());
        let h = resp.headers_mut();
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        match self {
            Refusal::UpgradeRequired => {
                h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            }
            Refusal::UnsupportedVersion => {
                h.insert(
                    header::SEC_WEBSOCKET_VERSION,
                    HeaderValue::from_static("13"),
                );
            }
            _ => {}
        }
        resp
    }
}

/// A short plain-text response.
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(Body::new(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// What a valid upgrade request asks for.
pub struct Upgrade {
    /// The client's Sec-WebSocket-Key.
    pub key: String,
    /// Whether the client offered [`SUBPROTOCOL`].
    pub subprotocol: bool,
    pub format: Format,
    /// Valid, de-duplicated channels from `?channel=`, within the limit.
    pub channels: Vec<String>,
}

/// Checks the request against RFC 6455 and redcast's query rules.
pub fn check<B>(req: &Request<B>, settings: &Settings) -> Result<Upgrade, Refusal> {
    let key = check_headers(req)?;
    let (format, channels) = parse_query(req.uri().query().unwrap_or(""), settings)?;
    Ok(Upgrade {
        key,
        subprotocol: offered_subprotocol(req.headers()),
        format,
        channels,
    })
}

fn has_token(h: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    h.get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// RFC 6455 section 4.2.1; returns the client's key.
fn check_headers<B>(req: &Request<B>) -> Result<String, Refusal> {
    let h = req.headers();
    if !has_token(h, header::UPGRADE, "websocket") {
        return Err(Refusal::UpgradeRequired);
    }
    if req.method() != Method::GET || req.version() < hyper::Version::HTTP_11 {
        return Err(Refusal::BadRequest(
            "a WebSocket upgrade must be an HTTP/1.1 GET",
        ));
    }
    if !has_token(h, header::CONNECTION, "upgrade") {
        return Err(Refusal::BadRequest("missing `Connection: Upgrade`"));
    }
    if h.get(header::SEC_WEBSOCKET_VERSION).map(|v| v.as_bytes()) != Some(b"13") {
        return Err(Refusal::UnsupportedVersion);
    }
    let key = h
        .get(header::SEC_WEBSOCKET_KEY)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !is_valid_key(key) {
        return Err(Refusal::BadRequest(
            "missing or malformed Sec-WebSocket-Key",
        ));
    }
    Ok(key.to_string())
}

/// A key is the base64 of 16 bytes: 22 characters and `==`.
fn is_valid_key(key: &str) -> bool {
    let b = key.as_bytes();
    b.len() == 24
        && b[22..] == *b"=="
        && b[..22]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
}

fn offered_subprotocol(h: &HeaderMap) -> bool {
    h.get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == SUBPROTOCOL)
}

/// Reads `channel` (repeatable) and `format`; other parameters are
/// ignored so that clients may add their own.
fn parse_query(query: &str, settings: &Settings) -> Result<(Format, Vec<String>), Refusal> {
    let mut format = Format::Envelope;
    let mut channels = Vec::new();
    let mut seen = HashSet::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "channel" if !settings.channels.is_valid_name(&v) => {
                return Err(Refusal::BadRequest("invalid channel name"));
            }
            "channel" if seen.insert(v.clone()) => channels.push(v.into_owned()),
            "format" => {
                format = match &*v {
                    "json" => Format::Envelope,
                    "raw" => Format::Raw,
                    _ => return Err(Refusal::BadRequest("format must be json or raw")),
                }
            }
            _ => {}
        }
    }
    if format == Format::Raw && channels.is_empty() {
        return Err(Refusal::BadRequest("format=raw needs at least one channel"));
    }
    if channels.len() > settings.client.max_subscriptions {
        return Err(Refusal::BadRequest("too many channels"));
    }
    Ok((format, channels))
}

/// The `101 Switching Protocols` answer to a checked upgrade.
pub fn switching_protocols(upgrade: &Upgrade) -> Response<Body> {
    let mut resp = Response::new(Body::default());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    let accept = tungstenite::handshake::derive_accept_key(upgrade.key.as_bytes());
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if upgrade.subprotocol {
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(SUBPROTOCOL),
        );
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert!(is_valid_key("dGhlIHNhbXBsZSBub25jZQ=="));
        assert!(!is_valid_key("dGhlIHNhbXBsZSBub25jZQ="));
        assert!(!is_valid_key("dGhlIHNhbXBsZSBub25jZ!=="));
    }
}
