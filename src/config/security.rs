//! `[tls]`, `[auth]` and `[[channels.rules]]`: the file types and their
//! validated runtime forms. Key material itself (certificates, public
//! keys) is loaded by the `tls` and `auth` modules, which report errors
//! with the same key paths.

use super::history::{retention, Retention};
use super::key::{err, KeyError};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

/// Default interval for checking certificate files for changes.
pub const DEFAULT_TLS_WATCH_INTERVAL: Duration = Duration::from_secs(10);
/// Default clock skew tolerated on `exp` and `nbf`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
/// Default cookie carrying a token.
pub const DEFAULT_COOKIE_NAME: &str = "redcast_token";

/// `[tls]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSection {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    #[serde(with = "humantime_serde")]
    pub watch_interval: Duration,
    /// TLS 1.3 resumption with stateless tickets (rotating keys).
    pub session_tickets: bool,
}

/// Default for `tls.session_tickets`: on (every client may resume).
pub const DEFAULT_TLS_SESSION_TICKETS: bool = true;

impl Default for TlsSection {
    fn default() -> Self {
        Self {
            cert: None,
            key: None,
            watch_interval: DEFAULT_TLS_WATCH_INTERVAL,
            session_tickets: DEFAULT_TLS_SESSION_TICKETS,
        }
    }
}

/// `[tls]`, validated: both files named.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub watch_interval: Duration,
    /// Issue stateless TLS 1.3 session tickets (keys rotated by redcast).
    pub session_tickets: bool,
}

/// One string or a list of strings.
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// `[auth]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    pub algorithms: Vec<String>,
    pub hmac_secret: Option<Secret>,
    pub public_key_file: Option<PathBuf>,
    pub jwks_file: Option<PathBuf>,
    pub issuer: Option<String>,
    pub audience: Option<OneOrMany>,
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
    pub cookie_name: String,
    /// Whether every connection must carry a valid token.
    pub required: bool,
}

impl Default for AuthSection {
    fn default() -> Self {
        Self {
            algorithms: Vec::new(),
            hmac_secret: None,
            public_key_file: None,
            jwks_file: None,
            issuer: None,
            audience: None,
            leeway: DEFAULT_LEEWAY,
            cookie_name: DEFAULT_COOKIE_NAME.into(),
            required: false,
        }
    }
}

/// A secret string: never shown in Debug, logs or check-config.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

/// `[auth]`, validated. Empty `algorithms` means authentication is off.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub algorithms: Vec<String>,
    pub hmac_secret: Option<Secret>,
    pub public_key_file: Option<PathBuf>,
    pub jwks_file: Option<PathBuf>,
    pub issuer: Option<String>,
    pub audience: Vec<String>,
    pub leeway: Duration,
    pub cookie_name: String,
    pub required: bool,
}

impl AuthSettings {
    /// Whether tokens are verified at all.
    pub fn enabled(&self) -> bool {
        !self.algorithms.is_empty()
    }
}

/// Who may do something on a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// Every client, with or without a token.
    Anyone,
    /// Clients with a valid token.
    Authenticated,
    /// Clients whose token's claim (`channels` or `publish`) lists it.
    Token,
    /// No client.
    Nobody,
}

/// `[[channels.rules]]` as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSection {
    pub pattern: String,
    #[serde(default = "nobody")]
    pub subscribe: Access,
    #[serde(default = "nobody")]
    pub publish: Access,
    /// Entries kept per channel; 0: not durable.
    #[serde(default)]
    pub history_size: usize,
    #[serde(default, with = "humantime_serde")]
    pub history_ttl: Option<Duration>,
}

/// One channel rule, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelRule {
    pub pattern: String,
    pub subscribe: Access,
    pub publish: Access,
    /// `Some` for durable channels.
    pub retention: Option<Retention>,
}

fn nobody() -> Access {
    Access::Nobody
}

pub(super) fn validate_tls(t: TlsSection) -> Result<Option<TlsSettings>, KeyError> {
    match (t.cert, t.key) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => {
            if t.watch_interval.is_zero() {
                return Err(err("tls.watch_interval", "must be greater than zero"));
            }
            Ok(Some(TlsSettings {
                cert,
                key,
                watch_interval: t.watch_interval,
                session_tickets: t.session_tickets,
            }))
        }
        (Some(_), None) => Err(err("tls.key", "is required when tls.cert is set")),
        (None, Some(_)) => Err(err("tls.cert", "is required when tls.key is set")),
    }
}

/// Algorithms redcast verifies, by family.
pub const HMAC_ALGORITHMS: [&str; 3] = ["HS256", "HS384", "HS512"];
/// Algorithms verified with a public key (PEM or JWKS).
pub const PUBLIC_KEY_ALGORITHMS: [&str; 9] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

pub(super) fn validate_auth(a: AuthSection) -> Result<AuthSettings, KeyError> {
    for alg in &a.algorithms {
        if !HMAC_ALGORITHMS.contains(&alg.as_str())
            && !PUBLIC_KEY_ALGORITHMS.contains(&alg.as_str())
        {
            return Err(err(
                "auth.algorithms",
                format!("`{alg}` is not supported (`none` never is)"),
            ));
        }
    }
    let wants_hmac = a
        .algorithms
        .iter()
        .any(|x| HMAC_ALGORITHMS.contains(&x.as_str()));
    let wants_public = a
        .algorithms
        .iter()
        .any(|x| PUBLIC_KEY_ALGORITHMS.contains(&x.as_str()));
    let secret_len = a.hmac_secret.as_ref().map_or(0, |s| s.0.len());
    if wants_hmac && secret_len == 0 {
        return Err(err("auth.hmac_secret", "is required for HS* algorithms"));
    }
    if wants_hmac && secret_len < 32 {
        return Err(err("auth.hmac_secret", "must be at least 32 bytes"));
    }
    if wants_public && a.public_key_file.is_none() && a.jwks_file.is_none() {
        return Err(err(
            "auth.public_key_file",
            "or auth.jwks_file is required for RS*/PS*/ES*/EdDSA",
        ));
    }
    if a.required && a.algorithms.is_empty() {
        return Err(err("auth.required", "needs auth.algorithms and a key"));
    }
    if a.cookie_name.is_empty()
        || !a
            .cookie_name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'=' && b != b';')
    {
        return Err(err("auth.cookie_name", "must be a non-empty cookie name"));
    }
    Ok(AuthSettings {
        algorithms: a.algorithms,
        hmac_secret: a.hmac_secret,
        public_key_file: a.public_key_file,
        jwks_file: a.jwks_file,
        issuer: a.issuer,
        audience: a.audience.map(OneOrMany::into_vec).unwrap_or_default(),
        leeway: a.leeway,
        cookie_name: a.cookie_name,
        required: a.required,
    })
}

pub(super) fn validate_rules(rules: Vec<RuleSection>) -> Result<Vec<ChannelRule>, KeyError> {
    let mut out = Vec::with_capacity(rules.len());
    for (i, r) in rules.into_iter().enumerate() {
        let probe = r.pattern.replace("{sub}", "x");
        if r.pattern.is_empty() || globset::Glob::new(&probe).is_err() {
            return Err(err(
                &format!("channels.rules[{i}].pattern"),
                "is not a valid glob pattern",
            ));
        }
        let retention = retention(i, r.history_size, r.history_ttl)?;
        out.push(ChannelRule {
            pattern: r.pattern,
            subscribe: r.subscribe,
            publish: r.publish,
            retention,
        });
    }
    // With durable channels, every rule is also compiled into the Redis
    // Function (first match wins there too): it must translate.
    if out.iter().any(|r| r.retention.is_some()) {
        for (i, r) in out.iter().enumerate() {
            crate::history::library::lua_patterns(&r.pattern)
                .map_err(|e| err(&format!("channels.rules[{i}].pattern"), e))?;
        }
    }
    Ok(out)
}
