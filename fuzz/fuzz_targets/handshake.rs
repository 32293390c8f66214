//! The WebSocket handshake: RFC 6455 header checks, subprotocols (with a
//! token in `Sec-WebSocket-Protocol`), Origin, token, the query
//! (`channel`, `format`, `token`) and channel rules, as `GET /ws` runs
//! them. Input: the request target on the first line, then one header
//! per line (`name: value`).
#![no_main]

use http::Request;
use libfuzzer_sys::fuzz_target;
use redcast::config::{self, Overrides};
use redcast::handshake;
use redcast::reload::Live;
use std::net::SocketAddr;
use std::sync::OnceLock;

/// Tokens optional (HS256), an origin list, rules with `{sub}`, two
/// trusted proxies: every branch of admission is reachable.
fn live() -> &'static Live {
    static LIVE: OnceLock<Live> = OnceLock::new();
    LIVE.get_or_init(|| {
        let text = r#"
            [server]
            trusted_proxies = ["127.0.0.0/8", "::1"]
            [client]
            allowed_origins = ["https://app.example.com", "https://*.example.org"]
            [auth]
            algorithms = ["HS256"]
            hmac_secret = "fuzzing-secret-fuzzing-secret-32"
            [[channels.rules]]
            pattern = "user.{sub}.*"
            subscribe = "authenticated"
            [[channels.rules]]
            pattern = "public.*"
            subscribe = "anyone"
            [[channels.rules]]
            pattern = "*"
            subscribe = "token"
        "#;
        let settings = config::load_str(
            text,
            "fuzz.toml".as_ref(),
            Vec::new(),
            &Overrides::default(),
        )
        .expect("fuzz settings are valid");
        Live::new(settings).expect("policy builds")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split("\r\n");
    let target = lines.next().unwrap_or("/ws");
    let mut builder = Request::builder().method("GET").uri(target);
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            builder = builder.header(name.trim(), value.trim_start());
        }
    }
    let Ok(req) = builder.body(()) else {
        return;
    };
    let peer: SocketAddr = ([127, 0, 0, 1], 40000).into();
    let live = live();
    if let Ok(upgrade) = handshake::check(&req, live, peer) {
        let _ = handshake::switching_protocols(&upgrade);
        for channel in &upgrade.admission.channels {
            assert!(live.settings.channels.is_valid_name(channel), "{channel:?}");
        }
    }
    let _ = handshake::admit(&req, live, peer, None, handshake::Partial::Yes);
});
