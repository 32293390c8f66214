//! Where a request's credentials come from: the token (Authorization
//! header, WebSocket subprotocol, cookie or `token` query parameter, in
//! that order) and the client address (the peer, or the forwarded client
//! when the peer is a trusted proxy).

use hyper::header::{self, HeaderMap};
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};

/// The request's token, by precedence.
pub fn token(
    h: &HeaderMap,
    query: &str,
    protocol_token: Option<String>,
    cookie_name: &str,
) -> Option<String> {
    bearer(h)
        .or(protocol_token)
        .or_else(|| cookie(h, cookie_name))
        .or_else(|| query_param(query, "token"))
}

fn bearer(h: &HeaderMap) -> Option<String> {
    let v = h.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

fn cookie(h: &HeaderMap, name: &str) -> Option<String> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

pub fn query_param(query: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Whether `ip` is in one of the `trusted` proxy ranges.
pub fn is_trusted(trusted: &[IpNet], ip: &IpAddr) -> bool {
    trusted.iter().any(|n| n.contains(ip))
}

/// The client address: the peer, unless the peer is a trusted proxy, in
/// which case the nearest untrusted hop of X-Forwarded-For (or Forwarded).
pub fn client_ip(peer: SocketAddr, h: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| is_trusted(trusted, ip);
    if !is_trusted(&peer.ip()) {
        return peer.ip();
    }
    let xff = h
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','));
    let forwarded = h
        .get_all(header::FORWARDED)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split([',', ';']))
        .filter_map(|p| {
            p.trim()
                .strip_prefix("for=")
                .or_else(|| p.trim().strip_prefix("For="))
        });
    let hops: Vec<IpAddr> = xff.chain(forwarded).filter_map(parse_hop).collect();
    hops.into_iter()
        .rev()
        .find(|ip| !is_trusted(ip))
        .unwrap_or(peer.ip())
}

fn parse_hop(s: &str) -> Option<IpAddr> {
    let s = s.trim().trim_matches('"');
    let s = s
        .strip_prefix('[')
        .map(|r| r.split(']').next().unwrap_or(r))
        .unwrap_or(s);
    s.parse()
        .ok()
        .or_else(|| s.rsplit_once(':').and_then(|(ip, _)| ip.parse().ok()))
}
