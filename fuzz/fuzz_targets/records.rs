//! The TLS 1.3 record layer redcast keeps after an upgrade
//! (`outbox::records`): a client's records, well encrypted (any
//! plaintext, close_notify, KeyUpdate) or raw bytes (forged, truncated,
//! oversized), arriving in any slicing, never panic; the plaintext read
//! is exactly the data sent before the first record that is not data, and
//! a stream of data records alone reads back whole.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use redcast::outbox::records::memory::{self, handshake, Memory};
use redcast::outbox::records::Read;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, ServerConfig};
use std::io::Write;
use std::sync::{Arc, OnceLock};

#[derive(Arbitrary, Debug)]
enum Piece {
    Data(Vec<u8>),
    Raw(Vec<u8>),
    Close,
    KeyUpdate,
}

#[derive(Arbitrary, Debug)]
struct Input {
    read_limit: u16,
    dst_len: u16,
    pieces: Vec<Piece>,
}

fuzz_target!(|input: Input| {
    let (server, client) = configs();
    let name = ServerName::try_from("localhost").unwrap();
    let client = ClientConnection::new(client.clone(), name).unwrap();
    let (mut records, mut client) = handshake(server.clone(), client).expect("TLS 1.3");
    let wire = Memory::default();
    wire.read_limit.set(usize::from(input.read_limit).max(1));
    wire.eof.set(true);
    let (mut want, mut clean) = (Vec::new(), true);
    for piece in &input.pieces {
        match piece {
            Piece::Data(d) if !d.is_empty() => {
                let _ = client.writer().write_all(d);
                if clean {
                    want.extend_from_slice(d);
                }
            }
            Piece::Data(_) => {}
            Piece::Raw(r) => {
                wire.incoming.borrow_mut().extend_from_slice(r);
                clean &= r.is_empty();
            }
            Piece::Close => {
                client.send_close_notify();
                clean = false;
            }
            Piece::KeyUpdate => {
                let _ = client.refresh_traffic_keys();
                clean = false;
            }
        }
        client.write_tls(&mut *wire.incoming.borrow_mut()).unwrap();
    }
    let only_data = input.pieces.iter().all(|p| matches!(p, Piece::Data(_)));
    let mut got = Vec::new();
    let mut buf = vec![0u8; usize::from(input.dst_len).clamp(1, 20_000)];
    let end = loop {
        match records.read(&wire, &mut buf) {
            Ok(Read::Data(n)) => got.extend_from_slice(&buf[..n]),
            other => break other,
        }
    };
    assert!(got.starts_with(&want), "data before the first other record");
    if only_data {
        assert_eq!(got, want);
        assert!(matches!(end, Ok(Read::Closed)), "{end:?}");
    }
});

/// One certificate for the whole run (making one per input is slow).
fn configs() -> &'static (Arc<ServerConfig>, Arc<ClientConfig>) {
    static CONFIGS: OnceLock<(Arc<ServerConfig>, Arc<ClientConfig>)> = OnceLock::new();
    CONFIGS.get_or_init(|| {
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let der = CertificateDer::from(cert.cert.der().to_vec());
        let key = PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
        memory::configs(der, key, &[&rustls::version::TLS13]).unwrap()
    })
}
