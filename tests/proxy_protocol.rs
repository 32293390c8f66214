//! `server.proxy_protocol`: a v1 or v2 header from a trusted proxy sets
//! the client address (seen through the per-IP limit and the logs), over
//! plain TCP and TLS; untrusted peers are never believed; a missing,
//! malformed or slow header costs only its own connection. End to end:
//! two real redcast processes behind a real haproxy with `send-proxy-v2`.

mod common;

use common::cli::Instance;
use common::haproxy::{Backend, Haproxy};
use common::proxy_header::*;
use common::*;
use serde_json::json;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Gateway settings with PROXY headers expected from 127.0.0.1 (the tests).
const FROM_LOOPBACK: [(&str, &str); 3] = [
    ("REDCAST_SERVER__PROXY_PROTOCOL", "true"),
    ("REDCAST_SERVER__TRUSTED_PROXIES", r#"["127.0.0.1"]"#),
    ("REDCAST_CLIENT__MAX_CONNECTIONS_PER_IP", "1"),
];

const PROXY_REJECTED: &str = r#"redcast_connections_rejected_total{reason="proxy_protocol"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_and_v2_headers_set_the_client_address() {
    let redis = Redis::start();
    let gw = gateway(&redis, &FROM_LOOPBACK).await;
    let url = format!("ws://{}/ws", gw.ws_addr);
    let mut held = Vec::new();
    for header in [v1("10.1.0.1:4000"), v2("10.1.0.2:4000", false)] {
        let s = with_header(gw.ws_addr, &header).await;
        held.push(
            upgrade(plain(s), &url)
                .await
                .expect("first from this address"),
        );
    }
    // Same addresses again (other ports, other header versions): 429.
    for header in [v2("10.1.0.1:4001", false), v1("10.1.0.2:4001")] {
        let s = with_header(gw.ws_addr, &header).await;
        assert_eq!(status(upgrade(s, &url).await), 429);
    }
    let s = with_header(gw.ws_addr, &v1("10.1.0.3:4000")).await;
    held.push(upgrade(plain(s), &url).await.expect("another address"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_and_v2_headers_come_before_tls() {
    let redis = Redis::start();
    let dir = tempfile::tempdir().unwrap();
    let c = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, c.cert.pem()).unwrap();
    std::fs::write(&key, c.signing_key.serialize_pem()).unwrap();
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let mut env = FROM_LOOPBACK.to_vec();
    env.extend([("REDCAST_TLS__CERT", &*cert), ("REDCAST_TLS__KEY", &*key)]);
    let gw = gateway(&redis, &env).await;
    let connector = tls_connector(c.cert.der().clone());
    let (addr, url) = (
        gw.ws_addr,
        format!("wss://localhost:{}/ws", gw.ws_addr.port()),
    );
    let wss = |header: Vec<u8>| {
        let (connector, url) = (connector.clone(), url.clone());
        async move {
            let tcp = with_header(addr, &header).await;
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            let tls = connector
                .connect(name, tcp)
                .await
                .expect("tls after the header");
            upgrade(tls, &url).await
        }
    };
    let _a = wss(v1("10.2.0.1:1")).await.expect("v1 then TLS");
    let _b = wss(v2("10.2.0.2:1", false)).await.expect("v2 then TLS");
    assert_eq!(status(wss(v2("10.2.0.1:2", false)).await), 429);
    assert_eq!(status(wss(v1("10.2.0.2:2")).await), 429);
}

fn tls_connector(root: rustls::pki_types::CertificateDer<'static>) -> tokio_rustls::TlsConnector {
    let mut store = rustls::RootCertStore::empty();
    store.add(root).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_headers_are_judged_against_the_header_address() {
    let redis = Redis::start();
    let mut env = FROM_LOOPBACK.to_vec();
    // 10.8.0.0/16: an L7 proxy behind the L4 balancer at 127.0.0.1.
    env[1] = (
        "REDCAST_SERVER__TRUSTED_PROXIES",
        r#"["127.0.0.1", "10.8.0.0/16"]"#,
    );
    let gw = gateway(&redis, &env).await;
    let xff = |header: Vec<u8>, xff: &'static str| {
        let addr = gw.ws_addr;
        async move {
            use tungstenite::client::IntoClientRequest;
            let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
            req.headers_mut()
                .insert("X-Forwarded-For", xff.parse().unwrap());
            let s = plain(with_header(addr, &header).await);
            tokio_tungstenite::client_async(req, s)
                .await
                .map(|(ws, _)| ws)
        }
    };
    // From the trusted 10.8.0.5, X-Forwarded-For names the client.
    let _a = xff(v1("10.8.0.5:1"), "203.0.113.9")
        .await
        .expect("203.0.113.9");
    assert_eq!(
        status(xff(v2("10.8.0.6:1", false), "203.0.113.9").await),
        429
    );
    // From the untrusted 203.0.113.50, it is ignored: the header's address counts.
    let _b = xff(v1("203.0.113.50:1"), "198.51.100.1")
        .await
        .expect("203.0.113.50");
    assert_eq!(status(xff(v1("203.0.113.50:2"), "198.51.100.2").await), 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_is_switched_on_by_a_reload_for_new_connections() {
    let redis = Redis::start();
    let off = [FROM_LOOPBACK[1], FROM_LOOPBACK[2]];
    let gw = gateway(&redis, &off).await;
    let url = format!("ws://{}/ws?channel=r", gw.ws_addr);
    let mut before = upgrade(plain(TcpStream::connect(gw.ws_addr).await.unwrap()), &url)
        .await
        .expect("no header expected yet");
    assert_eq!(recv_json(&mut before).await["type"], "subscribed");
    gw.reloader()
        .apply(settings(&redis.url(), &FROM_LOOPBACK))
        .expect("reload");
    let mut bare = TcpStream::connect(gw.ws_addr).await.unwrap();
    bare.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    closed_silently(&mut bare).await;
    assert_eq!(metric(&gw, PROXY_REJECTED).await, 1.0);
    let s = with_header(gw.ws_addr, &v2("10.9.0.1:1", false)).await;
    let mut after = upgrade(plain(s), &url).await.expect("with a header");
    assert_eq!(recv_json(&mut after).await["type"], "subscribed");
    redis.publish("r", 1).await;
    for ws in [&mut before, &mut after] {
        assert_eq!(
            recv_json(ws).await["data"],
            json!(1),
            "open connections unaffected"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_from_an_untrusted_peer_is_a_bad_request() {
    let redis = Redis::start();
    let mut env = FROM_LOOPBACK.to_vec();
    env[1] = ("REDCAST_SERVER__TRUSTED_PROXIES", r#"["127.0.0.2"]"#);
    let gw = gateway(&redis, &env).await;
    let url = format!("ws://{}/ws", gw.ws_addr);
    // From 127.0.0.1 (not trusted) the header is HTTP garbage: 400.
    for header in [v1("10.3.0.1:1"), v2("10.3.0.2:1", false)] {
        let s = with_header(gw.ws_addr, &header).await;
        assert_eq!(status(upgrade(s, &url).await), 400);
    }
    // Without one, the peer itself is the client, counted as such.
    let _own = upgrade(TcpStream::connect(gw.ws_addr).await.unwrap(), &url)
        .await
        .expect("an untrusted peer needs no header");
    let again = TcpStream::connect(gw.ws_addr).await.unwrap();
    assert_eq!(
        status(upgrade(again, &url).await),
        429,
        "counted as 127.0.0.1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_and_malformed_headers_are_closed_and_counted() {
    let redis = Redis::start();
    let gw = gateway(&redis, &FROM_LOOPBACK).await;
    let s = with_header(gw.ws_addr, &v1("10.4.0.9:1")).await;
    let url = format!("ws://{}/ws?channel=calm", gw.ws_addr);
    let mut bystander = upgrade(plain(s), &url).await.unwrap();
    let mut too_long = v2("10.4.0.1:1", false);
    too_long[14..16].copy_from_slice(&4000u16.to_be_bytes());
    let mut bad_version = v2("10.4.0.1:1", false);
    bad_version[12] = 0x31;
    let cases: Vec<Vec<u8>> = vec![
        b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        b"PROXY TCP4 10.4.0.1 127.0.0.1 1\r\nGET / HTTP/1.1\r\n\r\n".to_vec(),
        b"PROXY TCP4 10.4.0.999 127.0.0.1 1 2\r\n".to_vec(),
        [b"PROXY TCP4 ".as_slice(), &[b'1'; 200]].concat(),
        bad_version,
        too_long,
    ];
    for (i, bytes) in cases.iter().enumerate() {
        let mut s = with_header(gw.ws_addr, bytes).await;
        closed_silently(&mut s).await;
        let want = (i + 1) as f64;
        wait_until("counted", || async {
            metric(&gw, PROXY_REJECTED).await == want
        })
        .await;
    }
    redis.publish("calm", "1").await;
    assert_eq!(recv_json(&mut bystander).await["type"], "subscribed");
    assert_eq!(recv_json(&mut bystander).await["data"], json!(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_split_across_segments_is_read_whole() {
    let redis = Redis::start();
    let gw = gateway(&redis, &FROM_LOOPBACK).await;
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n\r\n",
        common::raw::KEY
    );
    for header in [v1("10.5.0.1:1"), v2("10.5.0.2:1", false)] {
        let mut s = TcpStream::connect(gw.ws_addr).await.unwrap();
        s.set_nodelay(true).unwrap();
        // The last piece of the header and the request share a segment,
        // so the server must stop at the header's exact end.
        let bytes = [header.as_slice(), request.as_bytes()].concat();
        let (head, tail) = bytes.split_at(header.len() - 2);
        for piece in head.chunks(3) {
            s.write_all(piece).await.unwrap();
            // A pause between writes, so each goes out as its own segment.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        s.write_all(tail).await.unwrap();
        let mut answer = [0u8; 12];
        s.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"HTTP/1.1 101");
    }
    assert_eq!(metric(&gw, PROXY_REJECTED).await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_header_is_cut_at_the_handshake_timeout_alone() {
    let redis = Redis::start();
    let mut env = FROM_LOOPBACK.to_vec();
    env.push(("REDCAST_SERVER__HANDSHAKE_TIMEOUT", "300ms"));
    let gw = gateway(&redis, &env).await;
    let header = v2("10.6.0.1:1", false);
    let mut slow = with_header(gw.ws_addr, &header[..20]).await;
    // Meanwhile others connect and are served.
    let s = with_header(gw.ws_addr, &v1("10.6.0.2:1")).await;
    let url = format!("ws://{}/ws?channel=on", gw.ws_addr);
    let mut ws = upgrade(plain(s), &url).await.unwrap();
    assert_eq!(recv_json(&mut ws).await["type"], "subscribed");
    closed_silently(&mut slow).await;
    let timeouts = r#"redcast_connections_rejected_total{reason="handshake_timeout"}"#;
    assert_eq!(metric(&gw, timeouts).await, 1.0);
    assert_eq!(metric(&gw, PROXY_REJECTED).await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_writes_deliver_after_a_v2_header_and_local_uses_the_peer() {
    let redis = Redis::start();
    let gw = gateway(&redis, &FROM_LOOPBACK).await;
    let url = format!("ws://{}/ws?channel=d", gw.ws_addr);
    let s = with_header(gw.ws_addr, &v2("10.7.0.1:1", false)).await;
    let mut ws = upgrade(plain(s), &url).await.unwrap();
    assert_eq!(recv_json(&mut ws).await["type"], "subscribed");
    // LOCAL (and v1 UNKNOWN): the peer, 127.0.0.1, a trusted proxy, whose
    // connections the per-IP limit (1 here) does not count.
    let mut locals = Vec::new();
    for header in [
        v2("10.7.0.2:1", true),
        v2("10.7.0.2:2", true),
        b"PROXY UNKNOWN\r\n".to_vec(),
    ] {
        let s = with_header(gw.ws_addr, &header).await;
        let mut l = upgrade(plain(s), &url).await.unwrap();
        assert_eq!(recv_json(&mut l).await["type"], "subscribed");
        locals.push(l);
    }
    for i in 0..3 {
        redis.publish("d", i).await;
    }
    for w in std::iter::once(&mut ws).chain(locals.iter_mut()) {
        for i in 0..3 {
            assert_eq!(recv_json(w).await["data"], json!(i));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_behind_haproxy_deliver_everything_and_log_real_clients() {
    let redis = Redis::start();
    let env = [FROM_LOOPBACK[0], FROM_LOOPBACK[1]];
    let instances = [0, 1].map(|_| Instance::start(&redis.url(), &env));
    let backends: Vec<Backend> = instances
        .iter()
        .map(|i| Backend {
            ws: i.ws_addr,
            admin: i.admin_addr,
        })
        .collect();
    let haproxy = Haproxy::start(&backends);
    haproxy.wait_all_up(backends.len()).await;
    let mut clients = Vec::new();
    for _ in 0..6 {
        // Clients on 127.0.0.2; haproxy reaches redcast from 127.0.0.1.
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        let stream = socket.connect(haproxy.addr).await.unwrap();
        let local = stream.local_addr().unwrap();
        let url = format!("ws://{}/ws?channel=news", haproxy.addr);
        let mut ws = upgrade(plain(stream), &url).await.expect("through haproxy");
        assert_eq!(recv_json(&mut ws).await["type"], "subscribed");
        clients.push((local, ws));
    }
    let mut open = Vec::new();
    for i in &instances {
        open.push(metric_at(i.admin_addr, "redcast_connections_open").await);
    }
    assert!(
        open.iter().all(|n| *n >= 1.0),
        "both instances serve: {open:?}"
    );
    assert_eq!(open.iter().sum::<f64>(), 6.0);
    for n in 0..5 {
        assert_eq!(
            redis.publish("news", n).await,
            2,
            "one subscription per instance"
        );
    }
    for (_, ws) in &mut clients {
        for n in 0..5 {
            assert_eq!(recv_json(ws).await["data"], json!(n));
        }
    }
    let peers = || -> Vec<String> {
        let fields = instances
            .iter()
            .flat_map(|i| i.log_fields("connection open"));
        fields
            .map(|f| f["peer"].as_str().unwrap_or("").to_string())
            .collect()
    };
    wait_until("every client's open line is logged", || async {
        peers().len() == 6
    })
    .await;
    let mut logged = peers();
    let mut real: Vec<String> = clients.iter().map(|(a, _)| a.to_string()).collect();
    logged.sort();
    real.sort();
    assert_eq!(
        logged, real,
        "redcast logs the clients' own addresses, not haproxy's"
    );
}
