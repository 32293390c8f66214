//! The WebSocket opening handshake (RFC 6455 section 4.2): checking the
//! request, reading redcast's query parameters, and building the answer.
//! Every refusal is a [`Refusal`]: an HTTP status with a short reason.

use crate::auth::{credentials, origin, Action, AuthFailure, Identity};
use crate::config::{Settings, MAX_CHANNEL_NAME_BYTES};
use crate::hub::Format;
use crate::protocol::{ErrorCode, RequestError};
use crate::reload::Live;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};

/// The subprotocol redcast speaks, echoed when a client offers it.
pub const SUBPROTOCOL: &str = "redcast.v1";

/// Every HTTP response body redcast sends (fixed, or an SSE stream).
pub type Body = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

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
    #[error("too many connections from this address; retry later")]
    TooManyFromIp,
    #[error("unauthorized: {0}")]
    Unauthorized(AuthFailure),
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
}

impl Refusal {
    /// The label counted in `redcast_connections_rejected_total`.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::NotFound => "not_found",
            Refusal::UpgradeRequired | Refusal::UnsupportedVersion => "bad_handshake",
            Refusal::BadRequest(_) => "bad_request",
            Refusal::AtCapacity => "max_connections",
            Refusal::TooManyFromIp => "max_connections_per_ip",
            Refusal::Unauthorized(_) => "unauthorized",
            Refusal::Forbidden(_) => "forbidden",
        }
    }

    /// The HTTP answer; the connection closes after it.
    pub fn into_response(self) -> Response<Body> {
        let status = match self {
            Refusal::NotFound => StatusCode::NOT_FOUND,
            Refusal::UpgradeRequired | Refusal::UnsupportedVersion => StatusCode::UPGRADE_REQUIRED,
            Refusal::BadRequest(_) => StatusCode::BAD_REQUEST,
            Refusal::AtCapacity => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::TooManyFromIp => StatusCode::TOO_MANY_REQUESTS,
            Refusal::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Refusal::Forbidden(_) => StatusCode::FORBIDDEN,
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
            Refusal::Unauthorized(_) => {
                h.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        resp
    }
}

/// A short plain-text response.
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(Full::new(body.into()).boxed());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// What an admitted request (WebSocket or SSE) asks for and who sent it.
pub struct Admission {
    pub format: Format,
    /// Valid, allowed, de-duplicated channels from `?channel=`.
    pub channels: Vec<String>,
    /// With partial admission: the refused channels, as error frames.
    pub rejected: Vec<RequestError>,
    pub identity: Identity,
    /// The client's address (from trusted proxy headers when present).
    pub client_ip: IpAddr,
}

/// Whether some requested channels may be refused while others are served.
/// SSE needs it: EventSource cannot read an HTTP error, but can read an
/// error event on a stream that serves the rest. With nothing left to
/// serve, the request is refused either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partial {
    No,
    Yes,
}

/// What a valid WebSocket upgrade request asks for.
pub struct Upgrade {
    /// The client's Sec-WebSocket-Key.
    pub key: String,
    /// Whether to answer with [`SUBPROTOCOL`].
    pub subprotocol: bool,
    pub admission: Admission,
}

/// Checks an upgrade against RFC 6455, then [`admit`]s it.
pub fn check<B>(req: &Request<B>, live: &Live, peer: SocketAddr) -> Result<Upgrade, Refusal> {
    let key = check_headers(req)?;
    let (subprotocol, protocol_token) = subprotocols(req.headers())?;
    let admission = admit(req, live, peer, protocol_token, Partial::No)?;
    Ok(Upgrade {
        key,
        subprotocol,
        admission,
    })
}

/// The checks every transport shares, in order: Origin (a foreign page
/// must not learn whether a token works), token, query, channel rules.
pub fn admit<B>(
    req: &Request<B>,
    live: &Live,
    peer: SocketAddr,
    protocol_token: Option<String>,
    partial: Partial,
) -> Result<Admission, Refusal> {
    let h = req.headers();
    let origin_header = h.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = h.get(header::HOST).and_then(|v| v.to_str().ok());
    if !origin::allowed(&live.policy.allowed_origins, origin_header, host) {
        return Err(Refusal::Forbidden("origin not allowed"));
    }
    let query = req.uri().query().unwrap_or("");
    let token = credentials::token(h, query, protocol_token, &live.policy.cookie_name);
    let identity = live
        .policy
        .authenticate(token.as_deref())
        .map_err(Refusal::Unauthorized)?;
    let (format, requested, invalid) = parse_query(query, &live.settings)?;
    let (channels, forbidden): (Vec<String>, Vec<String>) = requested
        .into_iter()
        .partition(|c| live.policy.allows(&identity, c, Action::Subscribe));
    let strict = partial == Partial::No || channels.is_empty();
    if strict && !invalid.is_empty() {
        return Err(Refusal::BadRequest("invalid channel name"));
    }
    if strict && !forbidden.is_empty() {
        // Anonymous and a token could help: 401; otherwise: 403.
        let could_authenticate = !identity.authenticated && live.policy.verifier.is_some();
        return Err(match could_authenticate {
            true => Refusal::Unauthorized(AuthFailure::Missing),
            false => Refusal::Forbidden("a requested channel is not allowed"),
        });
    }
    let mut rejected = Vec::new();
    if !invalid.is_empty() {
        rejected.push(
            RequestError::new(None, ErrorCode::InvalidChannel, "invalid channel name")
                .with_channels(invalid),
        );
    }
    if !forbidden.is_empty() {
        rejected.push(
            RequestError::new(None, ErrorCode::Forbidden, "not allowed to subscribe")
                .with_channels(forbidden),
        );
    }
    let client_ip = credentials::client_ip(peer, h, &live.settings.server.trusted_proxies);
    Ok(Admission {
        format,
        channels,
        rejected,
        identity,
        client_ip,
    })
}

/// Reads offered subprotocols: whether [`SUBPROTOCOL`] was offered, and
/// a `bearer.<token>` if one was. A bearer entry needs `redcast.v1` beside
/// it, since the server must echo a protocol the client offered.
fn subprotocols(h: &HeaderMap) -> Result<(bool, Option<String>), Refusal> {
    let offered: Vec<&str> = h
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let ours = offered.contains(&SUBPROTOCOL);
    let token = offered
        .iter()
        .find_map(|p| p.strip_prefix("bearer."))
        .map(str::to_string);
    if token.is_some() && !ours {
        return Err(Refusal::BadRequest(
            "offer `redcast.v1` together with `bearer.<token>`",
        ));
    }
    Ok((ours, token))
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

/// Reads `channel` (repeatable) and `format`; other parameters are
/// ignored so that clients may add their own.
fn parse_query(
    query: &str,
    settings: &Settings,
) -> Result<(Format, Vec<String>, Vec<String>), Refusal> {
    let mut format = Format::Envelope;
    let (mut channels, mut invalid) = (Vec::new(), Vec::new());
    let mut seen = HashSet::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "channel" if !seen.insert(v.clone()) => {}
            "channel" if settings.channels.is_valid_name(&v) => channels.push(v.into_owned()),
            // Echo only names short enough not to amplify a hostile request.
            "channel" if v.len() <= MAX_CHANNEL_NAME_BYTES => invalid.push(v.into_owned()),
            "channel" => return Err(Refusal::BadRequest("invalid channel name")),
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
    if format == Format::Raw && channels.is_empty() && invalid.is_empty() {
        return Err(Refusal::BadRequest("format=raw needs at least one channel"));
    }
    if channels.len() + invalid.len() > settings.client.max_subscriptions {
        return Err(Refusal::BadRequest("too many channels"));
    }
    Ok((format, channels, invalid))
}

/// The `101 Switching Protocols` answer to a checked upgrade.
pub fn switching_protocols(upgrade: &Upgrade) -> Response<Body> {
    let mut resp = Response::new(Empty::new().boxed());
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
