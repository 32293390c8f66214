//! Channel access rules, client publish, Origin checks and abuse limits.

mod common;

use common::*;
use serde_json::json;

const SECRET: &str = "0123456789abcdef0123456789abcdef-test";
const RULES: &str = r#"[
  {pattern = "public.*", subscribe = "anyone", publish = "nobody"},
  {pattern = "user.{sub}.*", subscribe = "authenticated", publish = "authenticated"},
  {pattern = "team.*", subscribe = "token", publish = "token"},
]"#;

fn env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("REDCAST_AUTH__ALGORITHMS", r#"["HS256"]"#),
        ("REDCAST_AUTH__HMAC_SECRET", SECRET),
        ("REDCAST_CHANNELS__RULES", RULES),
    ]
}

fn token(claims: serde_json::Value) -> String {
    jwt("HS256", SECRET.as_bytes(), None, claims)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_decide_subscribe_with_partial_acceptance() {
    let redis = Redis::start();
    let gw = gateway(&redis, &env()).await;
    let t = token(json!({"sub":"42","channels":["team.red"]}));
    let mut ws = try_connect(&gw, &format!("/ws?token={t}"), &[])
        .await
        .unwrap();
    let all = [
        "public.news",
        "user.42.inbox",
        "user.43.inbox",
        "team.red",
        "team.blue",
        "other",
    ];
    send_json(
        &mut ws,
        json!({"type":"subscribe","channels": all,"id":"s"}),
    )
    .await;
    let err = recv_json(&mut ws).await;
    assert_eq!(err["code"], "forbidden", "{err}");
    assert_eq!(err["id"], "s");
    assert_eq!(
        err["channels"],
        json!(["user.43.inbox", "team.blue", "other"])
    );
    let ack = recv_json(&mut ws).await;
    assert_eq!(
        ack,
        json!({"type":"subscribed","id":"s","channels":["public.news","user.42.inbox","team.red"]})
    );
    assert_eq!(redis.numsub("other").await, 0);

    // Anonymous: only public channels; a query channel needing a token is 401.
    let mut anon = connect(&gw, "/ws?channel=public.news").await;
    assert_eq!(recv_json(&mut anon).await["type"], "subscribed");
    assert_eq!(
        refused_status(&gw, "/ws?channel=user.42.inbox", &[]).await,
        401
    );
    // Authenticated but not allowed: 403.
    assert_eq!(
        refused_status(&gw, &format!("/ws?channel=user.43.inbox&token={t}"), &[]).await,
        403
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_publish_is_ruled_acked_and_delivered() {
    let redis = Redis::start();
    let gw = gateway(&redis, &env()).await;
    let mut listener = subscribed_client(&gw, &["public.news"]).await;
    let t = token(json!({"sub":"42","publish":["team.*"]}));
    let mut ws = try_connect(&gw, &format!("/ws?token={t}&channel=user.42.inbox"), &[])
        .await
        .unwrap();
    assert_eq!(recv_json(&mut ws).await["type"], "subscribed");

    send_json(
        &mut ws,
        json!({"type":"publish","channel":"user.42.inbox","data":{"n":1},"id":"p1"}),
    )
    .await;
    let mut got = [recv_json(&mut ws).await, recv_json(&mut ws).await];
    got.sort_by_key(|v| v["type"].as_str().unwrap().to_string());
    assert_eq!(
        got[0],
        json!({"type":"message","channel":"user.42.inbox","data":{"n":1}})
    );
    assert_eq!(got[1], json!({"type":"published","id":"p1"}));

    let cases = [
        (
            json!({"type":"publish","channel":"public.news","data":"x","id":"f1"}),
            "forbidden",
        ),
        (
            json!({"type":"publish","channel":"user.43.inbox","data":"x","id":"f2"}),
            "forbidden",
        ),
        (
            json!({"type":"publish","channel":"bad name","data":"x","id":"f3"}),
            "invalid_channel",
        ),
        (
            json!({"type":"publish","channel":"team.x","id":"f4"}),
            "invalid_field",
        ),
        (
            json!({"type":"publish","data":1,"id":"f5"}),
            "invalid_field",
        ),
    ];
    for (req, code) in cases {
        let id = req["id"].clone();
        send_json(&mut ws, req).await;
        let reply = recv_json(&mut ws).await;
        assert_eq!(
            (reply["code"].as_str(), &reply["id"]),
            (Some(code), &id),
            "{reply}"
        );
    }
    // Token claim grants publish; a string is published as its contents.
    send_json(
        &mut ws,
        json!({"type":"publish","channel":"team.x","data":"hello","id":"p2"}),
    )
    .await;
    assert_eq!(
        recv_json(&mut ws).await,
        json!({"type":"published","id":"p2"})
    );
    // Nothing forbidden reached anyone.
    redis.publish("public.news", "\"after\"").await;
    assert_eq!(recv_json(&mut listener).await["data"], "after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_rules_anyone_subscribes_and_nobody_publishes() {
    let redis = Redis::start();
    let gw = gateway(&redis, &[]).await;
    let mut ws = subscribed_client(&gw, &["anything"]).await;
    send_json(
        &mut ws,
        json!({"type":"publish","channel":"anything","data":1,"id":"p"}),
    )
    .await;
    assert_eq!(recv_json(&mut ws).await["code"], "forbidden");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origins_are_checked() {
    let redis = Redis::start();
    let gw = gateway(
        &redis,
        &[(
            "REDCAST_CLIENT__ALLOWED_ORIGINS",
            r#"["https://app.example.com", "https://*.example.org"]"#,
        )],
    )
    .await;
    for ok in ["https://app.example.com", "https://a.b.example.org"] {
        assert!(
            try_connect(&gw, "/ws", &[("Origin", ok)]).await.is_ok(),
            "{ok}"
        );
    }
    assert!(
        try_connect(&gw, "/ws", &[]).await.is_ok(),
        "no Origin: not a browser"
    );
    for bad in [
        "https://evil.com",
        "http://app.example.com",
        "https://example.org",
        "null",
    ] {
        assert_eq!(
            refused_status(&gw, "/ws", &[("Origin", bad)]).await,
            403,
            "{bad}"
        );
    }

    let open = gateway(&redis, &[]).await;
    let same = format!("http://{}", open.ws_addr);
    assert!(try_connect(&open, "/ws", &[("Origin", &same)])
        .await
        .is_ok());
    assert_eq!(
        refused_status(&open, "/ws", &[("Origin", "https://elsewhere.test")]).await,
        403
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_ip_limit_and_trusted_proxies() {
    let redis = Redis::start();
    let gw = gateway(
        &redis,
        &[
            ("REDCAST_CLIENT__MAX_CONNECTIONS_PER_IP", "2"),
            ("REDCAST_SERVER__TRUSTED_PROXIES", r#"["127.0.0.2"]"#),
        ],
    )
    .await;
    let _a = connect(&gw, "/ws").await;
    let _b = connect(&gw, "/ws").await;
    assert_eq!(refused_status(&gw, "/ws", &[]).await, 429);
    // Forwarded headers from an untrusted peer change nothing.
    assert_eq!(
        refused_status(&gw, "/ws", &[("X-Forwarded-For", "10.9.9.9")]).await,
        429
    );
    // From the trusted proxy, each forwarded client counts on its own.
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(
            via_proxy(&gw, Some("10.0.0.1, 127.0.0.2"))
                .await
                .expect("within the limit"),
        );
    }
    match via_proxy(&gw, Some("10.0.0.1")).await {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 429),
        other => panic!("third connection of 10.0.0.1 must be refused: {other:?}"),
    }
    held.push(
        via_proxy(&gw, Some("10.0.0.2"))
            .await
            .expect("another client"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_ip_limit_spares_a_trusted_proxy_that_forwards_no_client() {
    let redis = Redis::start();
    let gw = gateway(
        &redis,
        &[
            ("REDCAST_CLIENT__MAX_CONNECTIONS_PER_IP", "1"),
            ("REDCAST_SERVER__TRUSTED_PROXIES", r#"["127.0.0.2"]"#),
        ],
    )
    .await;
    // The proxy named no client: the real clients are unknown, and counting
    // the proxy would cap all of them together, so none is counted.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(via_proxy(&gw, None).await.expect("not limited"));
    }
    // A forwarded client is counted; so is a directly connected peer.
    held.push(via_proxy(&gw, Some("10.0.0.1")).await.expect("first"));
    match via_proxy(&gw, Some("10.0.0.1")).await {
        Err(tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 429),
        other => panic!("second connection of 10.0.0.1 must be refused: {other:?}"),
    }
    held.push(connect(&gw, "/ws").await);
    assert_eq!(refused_status(&gw, "/ws", &[]).await, 429);
    // A forwarded chain of trusted hops only: still no client named.
    held.push(
        via_proxy(&gw, Some("127.0.0.2"))
            .await
            .expect("not limited"),
    );
}

/// Connects from 127.0.0.2 (the trusted proxy), with an X-Forwarded-For
/// when `xff` is set.
async fn via_proxy(gw: &redcast::Gateway, xff: Option<&str>) -> Result<Ws, tungstenite::Error> {
    use tungstenite::client::IntoClientRequest;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let stream = socket.connect(gw.ws_addr).await.unwrap();
    let mut req = format!("ws://{}/ws", gw.ws_addr)
        .into_client_request()
        .unwrap();
    if let Some(xff) = xff {
        req.headers_mut()
            .insert("X-Forwarded-For", xff.parse().unwrap());
    }
    let stream = tokio_tungstenite::MaybeTlsStream::Plain(stream);
    tokio_tungstenite::client_async(req, stream)
        .await
        .map(|(ws, _)| ws)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_flood_is_rate_limited_then_closed() {
    let redis = Redis::start();
    let gw = gateway(
        &redis,
        &[
            ("REDCAST_CLIENT__RATE_LIMIT", "0.001"),
            ("REDCAST_CLIENT__RATE_BURST", "3"),
        ],
    )
    .await;
    let mut bystander = subscribed_client(&gw, &["calm"]).await;
    let mut ws = connect(&gw, "/ws").await;
    for i in 0..3 {
        send_json(&mut ws, json!({"type":"ping","id":i.to_string()})).await;
        assert_eq!(recv_json(&mut ws).await["type"], "pong");
    }
    send_json(&mut ws, json!({"type":"ping","id":"over"})).await;
    let reply = recv_json(&mut ws).await;
    assert_eq!(
        (reply["code"].as_str(), reply["id"].as_str()),
        (Some("rate_limited"), Some("over"))
    );
    for _ in 0..10 {
        send_json(&mut ws, json!({"type":"ping"})).await;
    }
    assert_eq!(close_code(&mut ws).await, Some(4029));
    redis.publish("calm", "1").await;
    assert_eq!(recv_json(&mut bystander).await["data"], json!(1));
}
