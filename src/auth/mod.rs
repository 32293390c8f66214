//! Who a client is and what it may do: JWT verification ([`jwt`]),
//! channel access rules ([`rules`]) and browser Origin checks
//! ([`origin`]), bundled as a [`Policy`] that a reload swaps whole.

pub mod credentials;
pub mod jwt;
pub mod origin;
pub mod rules;

use crate::config::Settings;
pub use jwt::{KeyLoadError, TokenError, Verifier};
pub use rules::{Action, Rules};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What a connection's token says (or an anonymous client).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// A valid token was presented.
    pub authenticated: bool,
    /// The token's `sub`.
    pub subject: Option<String>,
    /// Glob patterns from the `channels` claim.
    pub channels: Vec<String>,
    /// Glob patterns from the `publish` claim.
    pub publish: Vec<String>,
    /// The token's `exp` (Unix seconds).
    pub expires_at: Option<u64>,
}

impl Identity {
    /// When the token (plus leeway) runs out; a year away without a token
    /// (far enough never to fire, near enough for the timer wheel).
    pub fn deadline(&self, leeway: Duration) -> tokio::time::Instant {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let left = match self.expires_at {
            Some(exp) => Duration::from_secs(exp)
                .saturating_add(leeway)
                .saturating_sub(now),
            None => Duration::from_secs(86_400 * 365),
        };
        tokio::time::Instant::now() + left
    }
}

/// Why authentication failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    #[error("a token is required")]
    Missing,
    #[error("{0}")]
    Invalid(#[from] TokenError),
}

/// The security policy in force; replaced whole on reload.
pub struct Policy {
    pub verifier: Option<Verifier>,
    pub rules: Rules,
    pub allowed_origins: Vec<String>,
    pub cookie_name: String,
    pub required: bool,
    pub leeway: Duration,
}

impl Policy {
    /// Builds the policy, loading key files.
    pub fn from_settings(s: &Settings) -> Result<Policy, KeyLoadError> {
        Ok(Policy {
            verifier: Verifier::from_settings(&s.auth)?,
            rules: Rules::new(&s.channels.rules),
            allowed_origins: s.client.allowed_origins.clone(),
            cookie_name: s.auth.cookie_name.clone(),
            required: s.auth.required,
            leeway: s.auth.leeway,
        })
    }

    /// Turns an optional token into an identity.
    pub fn authenticate(&self, token: Option<&str>) -> Result<Identity, AuthFailure> {
        match (token, &self.verifier) {
            (Some(token), Some(v)) => Ok(v.verify(token)?),
            (None, Some(_)) if self.required => Err(AuthFailure::Missing),
            // Without configured keys a token cannot be checked: ignore it.
            _ => Ok(Identity::default()),
        }
    }

    /// Whether `who` may do `action` on `channel`.
    pub fn allows(&self, who: &Identity, channel: &str, action: Action) -> bool {
        self.rules.allows(who, channel, action)
    }
}
