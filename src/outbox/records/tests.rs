use super::memory::{configs, handshake, Memory};
use super::{Read, Records, OUT_LIMIT};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, ServerConfig, SupportedProtocolVersion};
use std::io::{IoSlice, Read as _, Write as _};
use std::sync::Arc;

fn peers(versions: &[&'static SupportedProtocolVersion]) -> (Arc<ServerConfig>, ClientConnection) {
    let (server, client) = peer_configs(versions);
    (server, connect(client))
}

fn peer_configs(
    versions: &[&'static SupportedProtocolVersion],
) -> (Arc<ServerConfig>, Arc<ClientConfig>) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let der = CertificateDer::from(cert.cert.der().to_vec());
    let key = PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
    configs(der, key, versions).unwrap()
}

fn connect(config: Arc<ClientConfig>) -> ClientConnection {
    ClientConnection::new(config, ServerName::try_from("localhost").unwrap()).unwrap()
}

fn pair() -> (Records, ClientConnection) {
    let (server, client) = peers(&[&rustls::version::TLS13]);
    handshake(server, client).expect("a TLS 1.3 connection is taken over")
}

/// What the client sent, as records on the server's wire.
fn from_client(client: &mut ClientConnection, wire: &Memory) {
    client.write_tls(&mut *wire.incoming.borrow_mut()).unwrap();
}

/// Everything the server read, until the wire has nothing more.
fn read_all(records: &mut Records, wire: &Memory) -> std::io::Result<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 700];
    loop {
        match records.read(wire, &mut buf) {
            Ok(Read::Data(n)) => got.extend_from_slice(&buf[..n]),
            Ok(Read::Closed) => return Ok(got),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(got),
            Err(e) => return Err(e),
        }
    }
}

#[test]
fn server_records_decrypt_at_the_client_in_order() {
    let (mut records, mut client) = pair();
    let wire = Memory::default();
    let big = vec![b'z'; 40_000];
    let parts: [&[u8]; 3] = [b"first ", &big, b" last"];
    let slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
    assert_eq!(records.encrypt(&slices).unwrap(), 40_011);
    assert!(records.write_out(&wire).unwrap());
    assert!(!records.wants_write());
    let out = wire.outgoing.borrow();
    let (mut rest, mut got) = (&out[..], Vec::new());
    while !rest.is_empty() {
        client.read_tls(&mut rest).unwrap();
        client.process_new_packets().unwrap();
        let _ = client.reader().read_to_end(&mut got);
    }
    assert!(got == parts.concat(), "{} bytes read", got.len());
}

#[test]
fn client_records_arrive_whole_in_any_slicing_and_free_the_buffer() {
    for limit in [1, 5, 6, 7, 4096, usize::MAX] {
        let (mut records, mut client) = pair();
        let wire = Memory::default();
        wire.read_limit.set(limit);
        let want: Vec<u8> = (0..50_000u32).map(|i| i as u8).collect();
        client.writer().write_all(&want).unwrap();
        client.writer().write_all(b"tail").unwrap();
        from_client(&mut client, &wire);
        let got = read_all(&mut records, &wire).unwrap();
        let whole = got == [&want[..], b"tail"].concat();
        assert!(whole, "read limit {limit}: {} bytes read", got.len());
        assert_eq!(
            records.input.capacity(),
            0,
            "an idle connection keeps no buffer"
        );
    }
}

#[test]
fn close_notify_and_end_of_stream_close() {
    let (mut records, mut client) = pair();
    let wire = Memory::default();
    client.writer().write_all(b"bye").unwrap();
    client.send_close_notify();
    from_client(&mut client, &wire);
    let mut buf = [0u8; 16];
    assert_eq!(records.read(&wire, &mut buf).unwrap(), Read::Data(3));
    assert_eq!(records.read(&wire, &mut buf).unwrap(), Read::Closed);
    let (mut records, _) = pair();
    let wire = Memory::default();
    wire.eof.set(true);
    assert_eq!(records.read(&wire, &mut buf).unwrap(), Read::Closed);
}

#[test]
fn bad_records_are_errors() {
    let cases: [fn(&mut ClientConnection, &Memory); 4] = [
        // A flipped bit in the ciphertext.
        |c, w| {
            c.writer().write_all(b"hello").unwrap();
            from_client(c, w);
            let last = w.incoming.borrow().len() - 1;
            w.incoming.borrow_mut()[last] ^= 1;
        },
        // Longer than TLS allows.
        |_, w| w.incoming.borrow_mut().extend([0x17, 3, 3, 0x48, 0x01]),
        // Not an application_data record.
        |_, w| w.incoming.borrow_mut().extend([0x16, 3, 3, 0, 1, 0]),
        // A KeyUpdate.
        |c, w| {
            c.refresh_traffic_keys().unwrap();
            from_client(c, w);
        },
    ];
    for (i, case) in cases.iter().enumerate() {
        let (mut records, mut client) = pair();
        let wire = Memory::default();
        case(&mut client, &wire);
        let err = read_all(&mut records, &wire).expect_err(&format!("case {i}"));
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "case {i}");
    }
}

#[test]
fn a_full_socket_holds_at_most_the_limit() {
    let (mut records, _) = pair();
    let wire = Memory::default();
    wire.write_room.set(1000);
    let big = vec![0u8; 4 * OUT_LIMIT];
    let taken = records.encrypt(&[IoSlice::new(&big)]).unwrap();
    assert!(taken <= OUT_LIMIT && taken > OUT_LIMIT / 2, "{taken}");
    assert!(!records.write_out(&wire).unwrap());
    assert!(records.wants_write());
    assert_eq!(wire.outgoing.borrow().len(), 1000);
    wire.write_room.set(usize::MAX);
    assert!(records.write_out(&wire).unwrap());
    assert!(!records.wants_write());
}

#[test]
fn tls12_is_not_taken_over() {
    let (server, client) = peers(&[&rustls::version::TLS12]);
    assert!(handshake(server, client).is_none());
}

/// A client that seals records of any content type itself (with the keys
/// rustls agreed), for records a TLS library would not send.
fn hand_sealed_pair() -> (Records, impl FnMut(rustls::ContentType, &[u8]) -> Vec<u8>) {
    let (server, client) = peer_configs(&[&rustls::version::TLS13]);
    let mut config = (*client).clone();
    config.enable_secret_extraction = true;
    let (records, client) = handshake(server, connect(Arc::new(config))).unwrap();
    let suite = client.negotiated_cipher_suite().unwrap().tls13().unwrap();
    let (mut seq, tx) = client.dangerous_extract_secrets().unwrap().tx;
    let (key, iv) = super::keys(tx).unwrap();
    let mut tx = suite.aead_alg.encrypter(key, iv);
    let seal = move |typ, payload: &[u8]| {
        let message = rustls::crypto::cipher::OutboundPlainMessage {
            typ,
            version: rustls::ProtocolVersion::TLSv1_2,
            payload: rustls::crypto::cipher::OutboundChunks::Single(payload),
        };
        seq += 1;
        tx.encrypt(message, seq - 1).unwrap().encode()
    };
    (records, seal)
}

#[test]
fn alerts_other_than_close_notify_are_errors_and_empty_records_are_skipped() {
    use rustls::ContentType::{Alert, ApplicationData};
    let (mut records, mut seal) = hand_sealed_pair();
    let wire = Memory::default();
    for record in [seal(ApplicationData, b""), seal(ApplicationData, b"x")] {
        wire.incoming.borrow_mut().extend(record);
    }
    assert_eq!(read_all(&mut records, &wire).unwrap(), b"x");
    // A fatal alert, and a close_notify with a stray byte.
    for alert in [&[2u8, 40][..], &[1, 0, 0]] {
        let (mut records, mut seal) = hand_sealed_pair();
        wire.incoming.borrow_mut().extend(seal(Alert, alert));
        let err = read_all(&mut records, &wire).expect_err("an alert");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{alert:?}");
        wire.incoming.borrow_mut().clear();
    }
    let (mut records, mut seal) = hand_sealed_pair();
    wire.incoming.borrow_mut().extend(seal(Alert, &[1, 0]));
    assert!(read_all(&mut records, &wire).unwrap().is_empty());
}
