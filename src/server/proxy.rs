//! The PROXY protocol (haproxy's proxy-protocol.txt, v1 text and v2
//! binary): an L4 balancer in front of redcast prepends a header naming
//! the client's address, since the TCP peer is the balancer itself.
//!
//! With `server.proxy_protocol = true`, a connection whose TCP peer is in
//! `server.trusted_proxies` **must** start with a header; the spec forbids
//! guessing ("the receiver ... MUST not try to guess whether the protocol
//! header is present or not"), because a balancer that forwards raw client
//! bytes without a header of its own would let any client write one. A
//! connection from any other peer is never read for a header: its bytes go
//! to TLS/HTTP as they are, so a header it sends is a bad request.
//!
//! The header is read in the connection's own task, under the handshake
//! timeout, and exactly its bytes are consumed: bytes are peeked, and only
//! those known to belong to the header are read, so the socket stays a
//! plain `TcpStream` (direct writes need it) and the TLS or HTTP bytes
//! behind the header stay in the kernel for the next reader.

use crate::auth::credentials;
use ppp::v2::ParseError as V2Error;
use ppp::{v1, v2, PartialResult};
use std::io;
use std::net::SocketAddr;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Largest header read. v1 is at most 107 bytes by the spec. A v2 length
/// field allows 16 + 65535, but what real senders put there (addresses,
/// 216 bytes for unix sockets, plus haproxy's authority/SSL/unique-id TLVs
/// or a cloud balancer's endpoint-id TLV) stays well under 1 KiB; 2 KiB
/// keeps a wide margin while a pending handshake holds no more than that.
pub const MAX_HEADER_BYTES: usize = 2048;

/// The v1 prefix, with the space that follows it.
const V1_SIGNATURE: &[u8] = b"PROXY ";
/// The fixed part of a v2 header: signature, version and command,
/// family, length.
const V2_FIXED_BYTES: usize = 16;
/// The longest v1 line, CRLF included (the spec's worst case, TCP6).
const V1_MAX_BYTES: usize = 107;

/// Why a trusted peer's connection was closed before TLS/HTTP.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no PROXY protocol header (the connection starts with other bytes)")]
    Missing,
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(String),
    #[error("PROXY protocol header longer than {MAX_HEADER_BYTES} bytes")]
    TooLong,
    #[error("connection closed inside the PROXY protocol header")]
    Closed,
    #[error("reading the PROXY protocol header: {0}")]
    Io(#[from] io::Error),
}

impl super::Server {
    /// The client's address for everything after the header: the PROXY
    /// header's when `server.proxy_protocol` is on and `peer` is a trusted
    /// proxy, else `peer`. `None`: the connection is to be closed (counted
    /// as `proxy_protocol`).
    pub(super) async fn client_addr(
        &self,
        stream: &mut TcpStream,
        peer: SocketAddr,
    ) -> Option<SocketAddr> {
        // On a `[::]` listener IPv4 peers arrive as ::ffff:a.b.c.d, which
        // IPv4 ranges in trusted_proxies would not contain.
        let peer = canonical(peer);
        let expected = {
            let live = self.session.live.load();
            let server = &live.settings.server;
            server.proxy_protocol && credentials::is_trusted(&server.trusted_proxies, &peer.ip())
        };
        if !expected {
            return Some(peer);
        }
        match read_header(stream, peer).await {
            Ok(client) => Some(canonical(client)),
            Err(e) => {
                // Debug only: a misconfigured balancer would log every connection.
                tracing::debug!(%peer, error = %e, "closing: PROXY protocol header refused");
                self.session.metrics.rejected("proxy_protocol");
                None
            }
        }
    }
}

/// `addr` with an IPv4-mapped IPv6 address written as IPv4.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

/// What the bytes seen so far say.
enum Parsed {
    /// A whole header of this many bytes, naming this client (`None`: use
    /// the TCP peer, for v2 LOCAL, v1 UNKNOWN and non-IP families).
    Done(usize, Option<SocketAddr>),
    /// Every byte seen belongs to a header that is not complete yet.
    Partial,
}

/// Reads the header at the start of `stream`, consuming exactly its
/// bytes, and returns the client address: the header's source, or `peer`
/// when the header names none.
pub async fn read_header(
    stream: &mut TcpStream,
    peer: SocketAddr,
) -> Result<SocketAddr, ProxyError> {
    let mut buf = vec![0u8; MAX_HEADER_BYTES];
    let mut have = 0;
    loop {
        if have == buf.len() {
            return Err(ProxyError::TooLong);
        }
        // Waits for bytes not yet consumed: no spinning on a partial header.
        let n = stream.peek(&mut buf[have..]).await?;
        if n == 0 {
            return Err(ProxyError::Closed);
        }
        match parse(&buf[..have + n])? {
            Parsed::Done(len, source) => {
                // The header's bytes not consumed yet (all were peeked).
                let rest = len.saturating_sub(have);
                stream.read_exact(&mut buf[have..have + rest]).await?;
                return Ok(source.unwrap_or(peer));
            }
            Parsed::Partial => {
                stream.read_exact(&mut buf[have..have + n]).await?;
                have += n;
            }
        }
    }
}

/// Parses the start of a connection with `ppp`, by its signature.
fn parse(input: &[u8]) -> Result<Parsed, ProxyError> {
    if starts_with(input, V1_SIGNATURE) {
        v1_line(input)
    } else if starts_with(input, v2::PROTOCOL_PREFIX) {
        v2_result(v2::Header::try_from(input))
    } else {
        Err(ProxyError::Missing)
    }
}

/// Whether `input` and `signature` agree on the bytes both have.
fn starts_with(input: &[u8], signature: &[u8]) -> bool {
    let n = input.len().min(signature.len());
    input[..n] == signature[..n]
}

/// A v1 header is one line: it is parsed once its CR and the byte after
/// it are there (ppp would call a cut such as `... 80 ` malformed).
fn v1_line(input: &[u8]) -> Result<Parsed, ProxyError> {
    match input.iter().position(|&b| b == b'\r') {
        None if input.len() < V1_MAX_BYTES => return Ok(Parsed::Partial),
        Some(cr) if cr + 1 == input.len() => return Ok(Parsed::Partial),
        _ => {}
    }
    let h = v1::Header::try_from(input).map_err(|e| ProxyError::Malformed(e.to_string()))?;
    let source = match h.addresses {
        v1::Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        v1::Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        v1::Addresses::Unknown => None,
    };
    Ok(Parsed::Done(h.header.len(), source))
}

fn v2_result(r: Result<v2::Header, V2Error>) -> Result<Parsed, ProxyError> {
    match r {
        Ok(h) => {
            let source = match (h.command, h.addresses) {
                (v2::Command::Proxy, v2::Addresses::IPv4(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                (v2::Command::Proxy, v2::Addresses::IPv6(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                // LOCAL (the balancer's own health check), unspecified or
                // unix: the spec says to use the connection's own addresses.
                _ => None,
            };
            Ok(Parsed::Done(h.len(), source))
        }
        Err(V2Error::Partial(_, len)) if V2_FIXED_BYTES + len > MAX_HEADER_BYTES => {
            Err(ProxyError::TooLong)
        }
        Err(e) if e.is_incomplete() => Ok(Parsed::Partial),
        Err(e) => Err(ProxyError::Malformed(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(input: &[u8]) -> (usize, Option<SocketAddr>) {
        match parse(input) {
            Ok(Parsed::Done(n, a)) => (n, a),
            Ok(Parsed::Partial) => panic!("partial: {input:?}"),
            Err(e) => panic!("{e}: {input:?}"),
        }
    }

    fn v2_ipv4(command: u8, tlv_len: u16) -> Vec<u8> {
        let mut h = v2::PROTOCOL_PREFIX.to_vec();
        h.extend([0x20 | command, 0x11]);
        h.extend((12 + tlv_len).to_be_bytes());
        h.extend([10, 0, 0, 7, 10, 0, 0, 1, 0x1f, 0x90, 0x01, 0xbb]);
        h.extend(vec![0u8; tlv_len as usize]);
        h
    }

    #[test]
    fn v1_header_names_the_source_and_its_length() {
        let h = b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\nGET / HTTP/1.1\r\n";
        let (n, a) = done(h);
        assert_eq!(&h[..n], b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 443\r\n");
        assert_eq!(a, Some("203.0.113.7:51234".parse().unwrap()));
        let (_, a) = done(b"PROXY TCP6 2001:db8::1 2001:db8::2 5 6\r\n");
        assert_eq!(a, Some("[2001:db8::1]:5".parse().unwrap()));
        assert_eq!(done(b"PROXY UNKNOWN\r\n"), (15, None));
    }

    #[test]
    fn every_prefix_of_a_header_is_partial() {
        let mut v2 = v2_ipv4(1, 3);
        v2.extend(b"GET");
        for h in [&b"PROXY TCP4 1.2.3.4 5.6.7.8 80 443\r\nX"[..], &v2] {
            for cut in 1..h.len() - 3 {
                assert!(
                    matches!(parse(&h[..cut]), Ok(Parsed::Partial)),
                    "cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn v2_proxy_names_the_source_and_local_names_none() {
        let h = v2_ipv4(1, 5);
        assert_eq!(
            done(&h),
            (16 + 12 + 5, Some("10.0.0.7:8080".parse().unwrap()))
        );
        assert_eq!(done(&v2_ipv4(0, 0)), (28, None));
    }

    #[test]
    fn other_bytes_are_missing_and_broken_headers_malformed() {
        assert!(matches!(
            parse(b"GET /ws HTTP/1.1\r\n"),
            Err(ProxyError::Missing)
        ));
        assert!(matches!(parse(&[0x16, 3, 1]), Err(ProxyError::Missing)));
        for bad in [
            &b"PROXY TCP4 1.2.3.4 5.6.7.8 80\r\nGET"[..],
            b"PROXY TCP4 1.2.3.999 5.6.7.8 80 443\r\n",
            b"PROXY UDP4 1.2.3.4 5.6.7.8 80 443\r\n",
            b"PROXY TCP4 1.2.3.4\rX",
        ] {
            assert!(
                matches!(parse(bad), Err(ProxyError::Malformed(_))),
                "{bad:?}"
            );
        }
        let mut v3 = v2_ipv4(1, 0);
        v3[12] = 0x31;
        assert!(matches!(parse(&v3), Err(ProxyError::Malformed(_))));
    }

    #[test]
    fn mapped_ipv4_peers_are_written_as_ipv4() {
        let mapped: SocketAddr = "[::ffff:10.0.0.1]:5".parse().unwrap();
        assert_eq!(canonical(mapped), "10.0.0.1:5".parse().unwrap());
        let v6: SocketAddr = "[2001:db8::1]:5".parse().unwrap();
        assert_eq!(canonical(v6), v6);
    }

    #[test]
    fn headers_over_the_limit_are_refused_before_they_are_read() {
        let h = v2_ipv4(1, MAX_HEADER_BYTES as u16);
        assert!(matches!(parse(&h[..20]), Err(ProxyError::TooLong)));
        let long = [b"PROXY TCP4 ".as_slice(), &[b'1'; 120]].concat();
        assert!(parse(&long).is_err());
    }
}
