//! The vocabulary of validation, shared by every section: a key path with
//! what is wrong with its value, and the checks more than one section uses.
//! It depends on nothing else in `config`, so the sections can all use it
//! without importing each other.

use std::net::SocketAddr;
use std::time::Duration;

/// A key path (`server.listen`) and what is wrong with its value.
pub type KeyError = (String, String);

/// The error for `key`.
pub fn err(key: &str, message: impl Into<String>) -> KeyError {
    (key.to_string(), message.into())
}

/// An `IP:port` address.
pub fn addr(key: &str, value: &str) -> Result<SocketAddr, KeyError> {
    value
        .parse()
        .map_err(|_| err(key, format!("`{value}` is not an IP:port address")))
}

/// A duration that must not be zero.
pub fn positive(key: &str, value: Duration) -> Result<Duration, KeyError> {
    if value.is_zero() {
        return Err(err(key, "must be greater than zero"));
    }
    Ok(value)
}

/// A count with a lower bound.
pub fn at_least(key: &str, value: usize, min: usize) -> Result<usize, KeyError> {
    if value < min {
        return Err(err(key, format!("must be at least {min}, got {value}")));
    }
    Ok(value)
}
