//! JWT verification. The accepted algorithms come from the config, never
//! from the token: a token whose `alg` is not configured is refused before
//! any key is touched, `none` is never configured, and each algorithm
//! family only ever sees keys of its own kind (an HS token is checked with
//! `hmac_secret` only, so a public key can never be used as an HMAC key).

use super::Identity;
use crate::config::AuthSettings;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};
use serde::Deserialize;
use std::str::FromStr;

/// Why a token was refused; the message is safe to show a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is malformed")]
    Malformed,
    #[error("token algorithm is not accepted")]
    AlgorithmNotAllowed,
    #[error("no key for this token")]
    UnknownKey,
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token issuer is not accepted")]
    WrongIssuer,
    #[error("token audience is not accepted")]
    WrongAudience,
    #[error("token lacks a required claim")]
    MissingClaim,
}

/// A key-loading problem, naming the config key.
#[derive(Debug, thiserror::Error)]
#[error("key `{key}`: {message}")]
pub struct KeyLoadError {
    pub key: &'static str,
    pub message: String,
}

struct JwkKey {
    kid: Option<String>,
    /// The key's own `alg`, when the set names one: only that one is used.
    alg: Option<Algorithm>,
    key: DecodingKey,
}

/// Verifies tokens against the configured keys.
pub struct Verifier {
    algorithms: Vec<Algorithm>,
    hmac: Option<DecodingKey>,
    pem: Option<DecodingKey>,
    jwks: Vec<JwkKey>,
    issuer: Option<String>,
    audience: Vec<String>,
    leeway: u64,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    exp: Option<u64>,
    #[serde(default)]
    channels: Vec<String>,
    #[serde(default)]
    publish: Vec<String>,
}

impl Verifier {
    /// Loads every configured key; `None` when authentication is off.
    pub fn from_settings(a: &AuthSettings) -> Result<Option<Verifier>, KeyLoadError> {
        if !a.enabled() {
            return Ok(None);
        }
        let algorithms = a
            .algorithms
            .iter()
            .map(|s| {
                Algorithm::from_str(s)
                    .map_err(|_| load_err("auth.algorithms", format!("`{s}` is not supported")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let hmac = match &a.hmac_secret {
            Some(secret) => Some(
                DecodingKey::from_secret(secret.0.as_bytes())
                    .map_err(|_| load_err("auth.hmac_secret", "unusable".into()))?,
            ),
            None => None,
        };
        let pem = a.public_key_file.as_deref().map(load_pem).transpose()?;
        let jwks = a
            .jwks_file
            .as_deref()
            .map(load_jwks)
            .transpose()?
            .unwrap_or_default();
        Ok(Some(Verifier {
            algorithms,
            hmac,
            pem,
            jwks,
            issuer: a.issuer.clone(),
            audience: a.audience.clone(),
            leeway: a.leeway.as_secs(),
        }))
    }

    /// Checks signature and claims; returns who the token speaks for.
    pub fn verify(&self, token: &str) -> Result<Identity, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if !self.algorithms.contains(&header.alg) {
            return Err(TokenError::AlgorithmNotAllowed);
        }
        let key = self
            .key_for(header.alg, header.kid.as_deref())
            .ok_or(TokenError::UnknownKey)?;
        let mut v = Validation::new(header.alg);
        v.leeway = self.leeway;
        v.validate_nbf = true;
        // A configured issuer or audience must be present, not just
        // correct when present.
        let mut required = vec!["exp"];
        match &self.issuer {
            Some(iss) => {
                v.set_issuer(&[iss]);
                required.push("iss");
            }
            None => v.iss = None,
        }
        if self.audience.is_empty() {
            v.validate_aud = false;
        } else {
            v.set_audience(&self.audience);
            required.push("aud");
        }
        v.set_required_spec_claims(&required);
        let data =
            jsonwebtoken::decode::<Claims>(token, key, &v).map_err(|e| token_error(e.kind()))?;
        let c = data.claims;
        Ok(Identity {
            authenticated: true,
            subject: c.sub,
            channels: c.channels,
            publish: c.publish,
            expires_at: c.exp,
        })
    }

    fn key_for(&self, alg: Algorithm, kid: Option<&str>) -> Option<&DecodingKey> {
        let family = alg.family();
        if family == AlgorithmFamily::Hmac {
            return self.hmac.as_ref();
        }
        let fits = |k: &&DecodingKey| k.family() == family;
        let usable = |k: &&JwkKey| k.key.family() == family && k.alg.is_none_or(|a| a == alg);
        if let Some(kid) = kid.filter(|_| !self.jwks.is_empty()) {
            // With a key set, a kid must name one of its keys.
            return self
                .jwks
                .iter()
                .find(|k| k.kid.as_deref() == Some(kid))
                .filter(usable)
                .map(|k| &k.key);
        }
        self.pem.as_ref().filter(fits).or_else(|| {
            let mut candidates = self.jwks.iter().filter(usable).map(|k| &k.key);
            // Without a kid, a JWKS key is only used when it is unambiguous.
            match (candidates.next(), candidates.next()) {
                (Some(k), None) => Some(k),
                _ => None,
            }
        })
    }
}

fn load_err(key: &'static str, message: String) -> KeyLoadError {
    KeyLoadError { key, message }
}

fn load_pem(path: &std::path::Path) -> Result<DecodingKey, KeyLoadError> {
    let key = "auth.public_key_file";
    let pem = std::fs::read(path)
        .map_err(|e| load_err(key, format!("cannot read {}: {e}", path.display())))?;
    DecodingKey::from_rsa_pem(&pem)
        .or_else(|_| DecodingKey::from_ec_pem(&pem))
        .or_else(|_| DecodingKey::from_ed_pem(&pem))
        .map_err(|_| {
            load_err(
                key,
                format!(
                    "{} is not an RSA, EC or Ed25519 public key in PEM",
                    path.display()
                ),
            )
        })
}

fn load_jwks(path: &std::path::Path) -> Result<Vec<JwkKey>, KeyLoadError> {
    let key = "auth.jwks_file";
    let text = std::fs::read(path)
        .map_err(|e| load_err(key, format!("cannot read {}: {e}", path.display())))?;
    let set: JwkSet =
        serde_json::from_slice(&text).map_err(|e| load_err(key, format!("not a JWK set: {e}")))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        // Symmetric keys have no place in a published key set.
        if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
            return Err(load_err(
                key,
                "symmetric (oct) keys are not accepted; use auth.hmac_secret".into(),
            ));
        }
        let decoding =
            DecodingKey::from_jwk(jwk).map_err(|e| load_err(key, format!("unusable key: {e}")))?;
        let alg = jwk
            .common
            .key_algorithm
            .and_then(|a| Algorithm::from_str(&a.to_string()).ok());
        keys.push(JwkKey {
            kid: jwk.common.key_id.clone(),
            alg,
            key: decoding,
        });
    }
    if keys.is_empty() {
        return Err(load_err(key, "the key set is empty".into()));
    }
    Ok(keys)
}

fn token_error(kind: &ErrorKind) -> TokenError {
    match kind {
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
        ErrorKind::InvalidAudience => TokenError::WrongAudience,
        ErrorKind::MissingRequiredClaim(_) => TokenError::MissingClaim,
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => {
            TokenError::AlgorithmNotAllowed
        }
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_) => TokenError::BadSignature,
        _ => TokenError::Malformed,
    }
}
