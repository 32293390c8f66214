//! JWT authentication: every way of presenting a token, every algorithm
//! family, and a 401 with a reason for every kind of bad token.

mod common;

use common::*;
use serde_json::json;

const SECRET: &str = "0123456789abcdef0123456789abcdef-test";

fn hs_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("REDCAST_AUTH__ALGORITHMS", r#"["HS256"]"#),
        ("REDCAST_AUTH__HMAC_SECRET", SECRET),
        ("REDCAST_AUTH__REQUIRED", "true"),
        ("REDCAST_AUTH__LEEWAY", "0s"),
    ]
}

fn hs(claims: serde_json::Value) -> String {
    jwt("HS256", SECRET.as_bytes(), None, claims)
}

async fn assert_accepted(gw: &redcast::Gateway, path: &str, headers: &[(&str, &str)]) {
    let mut ws = try_connect(gw, path, headers).await.expect("accepted");
    send_json(&mut ws, json!({"type":"ping","id":"p"})).await;
    assert_eq!(recv_json(&mut ws).await, json!({"type":"pong","id":"p"}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_from_header_query_cookie_or_subprotocol() {
    let redis = Redis::start();
    let gw = gateway(&redis, &hs_env()).await;
    let t = hs(json!({"sub":"alice"}));
    assert_accepted(&gw, "/ws", &[("Authorization", &format!("Bearer {t}"))]).await;
    assert_accepted(&gw, &format!("/ws?token={t}"), &[]).await;
    assert_accepted(
        &gw,
        "/ws",
        &[("Cookie", &format!("theme=dark; redcast_token={t}"))],
    )
    .await;
    // The subprotocol form: redcast.v1 is echoed, never the bearer entry.
    let url = format!("ws://{}/ws", gw.ws_addr);
    use tungstenite::client::IntoClientRequest;
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        format!("redcast.v1, bearer.{t}").parse().unwrap(),
    );
    let (_, resp) = tokio_tungstenite::connect_async(req)
        .await
        .expect("accepted");
    assert_eq!(resp.headers()["sec-websocket-protocol"], "redcast.v1");
    // bearer.<token> alone cannot be answered correctly: 400.
    assert_eq!(
        refused_status(
            &gw,
            "/ws",
            &[("Sec-WebSocket-Protocol", &format!("bearer.{t}"))]
        )
        .await,
        400
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_get_401_with_a_reason() {
    let redis = Redis::start();
    let mut env = hs_env();
    env.push(("REDCAST_AUTH__ISSUER", "https://issuer.test"));
    env.push(("REDCAST_AUTH__AUDIENCE", "redcast"));
    let gw = gateway(&redis, &env).await;
    let good = json!({"iss":"https://issuer.test","aud":"redcast","sub":"a"});
    assert_accepted(&gw, &format!("/ws?token={}", hs(good.clone())), &[]).await;
    let with = |extra: serde_json::Value| {
        let mut c = good.clone();
        c.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        c
    };
    let rsa = std::fs::read(fixture("rsa_private.pem")).unwrap();
    let rsa_public = std::fs::read(fixture("rsa_public.pem")).unwrap();
    let none_token = {
        let b64 = |v: serde_json::Value| base64_url(v.to_string().as_bytes());
        format!(
            "{}.{}.",
            b64(json!({"alg":"none","typ":"JWT"})),
            b64(with(json!({})))
        )
    };
    let cases = [
        ("missing", None, "token is required"),
        (
            "expired",
            Some(hs(with(json!({"exp": now() - 10})))),
            "expired",
        ),
        (
            "not yet valid",
            Some(hs(with(json!({"nbf": now() + 600})))),
            "not valid yet",
        ),
        (
            "wrong issuer",
            Some(hs(with(json!({"iss":"https://evil.test"})))),
            "issuer",
        ),
        (
            "wrong audience",
            Some(hs(with(json!({"aud":"other"})))),
            "audience",
        ),
        (
            "no exp",
            Some(jwt_without_exp(good.clone())),
            "required claim",
        ),
        (
            "wrong key",
            Some(jwt(
                "HS256",
                b"another-secret-that-is-32-bytes-long!",
                None,
                good.clone(),
            )),
            "signature",
        ),
        ("alg none", Some(none_token), "malformed"),
        (
            "RS256 not configured",
            Some(jwt("RS256", &rsa, None, good.clone())),
            "algorithm",
        ),
        (
            "HS256 signed with the public key",
            Some(jwt("HS256", &rsa_public, None, good.clone())),
            "signature",
        ),
        ("garbage", Some("not.a.jwt".to_string()), "malformed"),
    ];
    for (what, token, reason) in cases {
        let path = token
            .map(|t| format!("/ws?token={t}"))
            .unwrap_or("/ws".into());
        let (status, body) = get_with_upgrade(&gw, &path).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert!(
            www_authenticate(&gw, &path).await,
            "{what}: 401 carries WWW-Authenticate"
        );
        assert!(
            body.contains(reason),
            "{what}: `{body}` should say `{reason}`"
        );
    }
}

fn base64_url(b: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in b.chunks(3) {
        let n = chunk.iter().fold(0u32, |acc, &x| acc << 8 | x as u32) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

fn jwt_without_exp(claims: serde_json::Value) -> String {
    let key = jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()).unwrap();
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
}

async fn www_authenticate(gw: &redcast::Gateway, path: &str) -> bool {
    match try_connect(gw, path, &[]).await {
        Err(tungstenite::Error::Http(resp)) => resp
            .headers()
            .get("www-authenticate")
            .is_some_and(|v| v == "Bearer"),
        _ => false,
    }
}

/// A raw upgrade request, so the refusal body can be read.
async fn get_with_upgrade(gw: &redcast::Gateway, path: &str) -> (u16, String) {
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    http(gw.ws_addr, &req).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_key_algorithms_and_jwks_kid_selection() {
    let redis = Redis::start();
    let rsa_pub = fixture("rsa_public.pem");
    let jwks = fixture("jwks.json");
    let gw = gateway(
        &redis,
        &[
            ("REDCAST_AUTH__ALGORITHMS", r#"["RS256","PS256","ES256"]"#),
            ("REDCAST_AUTH__PUBLIC_KEY_FILE", &rsa_pub),
            ("REDCAST_AUTH__JWKS_FILE", &jwks),
            ("REDCAST_AUTH__REQUIRED", "true"),
        ],
    )
    .await;
    let rsa = std::fs::read(fixture("rsa_private.pem")).unwrap();
    let rsa2 = std::fs::read(fixture("rsa2_private.pem")).unwrap();
    let ec = std::fs::read(fixture("ec_private.pem")).unwrap();
    for token in [
        jwt("RS256", &rsa, None, json!({"sub":"pem"})),
        jwt("PS256", &rsa, None, json!({"sub":"pss"})),
        jwt("RS256", &rsa2, Some("rsa-2"), json!({"sub":"jwks"})),
        jwt("ES256", &ec, Some("ec-1"), json!({"sub":"ec"})),
        jwt("ES256", &ec, None, json!({"sub":"only EC key in the set"})),
    ] {
        assert_accepted(&gw, &format!("/ws?token={token}"), &[]).await;
    }
    // A kid naming the wrong key, and an unknown kid, are refused.
    let wrong = jwt("RS256", &rsa, Some("rsa-2"), json!({}));
    assert_eq!(
        get_with_upgrade(&gw, &format!("/ws?token={wrong}")).await.0,
        401
    );
    let unknown = jwt("RS256", &rsa2, Some("nope"), json!({}));
    assert_eq!(
        get_with_upgrade(&gw, &format!("/ws?token={unknown}"))
            .await
            .0,
        401
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eddsa_tokens() {
    let redis = Redis::start();
    let ed_pub = fixture("ed25519_public.pem");
    let gw = gateway(
        &redis,
        &[
            ("REDCAST_AUTH__ALGORITHMS", r#"["EdDSA"]"#),
            ("REDCAST_AUTH__PUBLIC_KEY_FILE", &ed_pub),
        ],
    )
    .await;
    let ed = std::fs::read(fixture("ed25519_private.pem")).unwrap();
    assert_accepted(
        &gw,
        &format!("/ws?token={}", jwt("EdDSA", &ed, None, json!({"sub":"ed"}))),
        &[],
    )
    .await;
    // Not required: anonymous clients still connect.
    assert_accepted(&gw, "/ws", &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_expiry_closes_unless_refreshed() {
    let redis = Redis::start();
    let gw = gateway(&redis, &hs_env()).await;
    let exp = now() + 2;
    let short = hs(json!({"sub":"bob","exp": exp}));
    let mut ws = try_connect(&gw, &format!("/ws?token={short}"), &[])
        .await
        .unwrap();
    assert_eq!(close_code(&mut ws).await, Some(4003));

    let mut ws = try_connect(
        &gw,
        &format!("/ws?token={}", hs(json!({"sub":"bob","exp": now() + 2}))),
        &[],
    )
    .await
    .unwrap();
    send_json(
        &mut ws,
        json!({"type":"refresh","token": hs(json!({"sub":"mallory"})),"id":"r0"}),
    )
    .await;
    let reply = recv_json(&mut ws).await;
    assert_eq!(
        (reply["code"].as_str(), reply["id"].as_str()),
        (Some("invalid_token"), Some("r0"))
    );
    send_json(&mut ws, json!({"type":"refresh","token": "junk","id":"r1"})).await;
    assert_eq!(recv_json(&mut ws).await["code"], "invalid_token");
    send_json(
        &mut ws,
        json!({"type":"refresh","token": hs(json!({"sub":"bob"})),"id":"r2"}),
    )
    .await;
    assert_eq!(
        recv_json(&mut ws).await,
        json!({"type":"refreshed","id":"r2"})
    );
    // Past the first token's expiry the connection is still served.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    send_json(&mut ws, json!({"type":"ping","id":"later"})).await;
    assert_eq!(
        recv_json(&mut ws).await,
        json!({"type":"pong","id":"later"})
    );
}
