//! Token extraction (Authorization header, subprotocol, cookie, query)
//! and JWT verification up to and including the header (alg, kid, key
//! lookup, claims). Input: fuzzed request headers and query, then a
//! token assembled from a fuzzed JOSE header and claims (base64url-encoded
//! as a real client would) plus a fuzzed signature, and the raw bytes as
//! a token. Nothing may panic, and a token signed with no configured key
//! is never accepted.
#![no_main]

use arbitrary::Arbitrary;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use redcast::auth::{credentials, Verifier};
use redcast::config::{self, Overrides};
use std::sync::OnceLock;

#[derive(Arbitrary, Debug)]
struct Input {
    headers: Vec<(String, Vec<u8>)>,
    query: String,
    protocol_token: Option<String>,
    jose: String,
    claims: String,
    signature: Vec<u8>,
    raw: String,
}

/// HS256 with a secret, plus every public-key algorithm from the test
/// suite's JWKS (RS256, ES256, EdDSA), so that key lookup by `kid` runs.
fn verifier() -> &'static Verifier {
    static VERIFIER: OnceLock<Verifier> = OnceLock::new();
    VERIFIER.get_or_init(|| {
        let jwks = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/jwks.json");
        let text = format!(
            "[auth]\nalgorithms = [\"HS256\", \"RS256\", \"PS256\", \"ES256\", \"EdDSA\"]\n\
             hmac_secret = \"fuzzing-secret-fuzzing-secret-32\"\njwks_file = {jwks:?}\n"
        );
        let settings = config::load_str(
            &text,
            "fuzz.toml".as_ref(),
            Vec::new(),
            &Overrides::default(),
        )
        .expect("fuzz auth settings are valid");
        Verifier::from_settings(&settings.auth)
            .expect("keys load")
            .expect("auth is on")
    })
}

fuzz_target!(|input: Input| {
    let mut headers = HeaderMap::new();
    for (name, value) in &input.headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(value),
        ) {
            headers.append(n, v);
        }
    }
    let _ = credentials::token(
        &headers,
        &input.query,
        input.protocol_token,
        "redcast_token",
    );
    let token = format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(&input.jose),
        URL_SAFE_NO_PAD.encode(&input.claims),
        URL_SAFE_NO_PAD.encode(&input.signature)
    );
    let v = verifier();
    // The fuzzer cannot forge an HMAC or a signature: nothing it builds
    // may verify.
    assert!(v.verify(&token).is_err(), "forged token accepted: {token}");
    let _ = v.verify(&input.raw);
});
