//! Configuration: read once at startup from a TOML file, environment
//! variables (`REDCAST_<SECTION>__<KEY>`) and command-line flags, in that
//! order of precedence (flags win), then validated into [`Settings`], a
//! runtime type with every value checked and no `Option` left to unwrap.
//!
//! Errors name the source and the key path (`server.listen`), so an
//! operator never has to guess which line is wrong.

mod file;
mod history;
mod key;
mod redis;
mod render;
mod security;
mod settings;
mod topology;

pub use self::redis::*;
pub use file::*;
pub use history::*;
pub use security::*;
pub use settings::*;
pub use topology::*;

use std::path::{Path, PathBuf};

/// Prefix of environment variables that set configuration keys.
pub const ENV_PREFIX: &str = "REDCAST_";

/// A configuration that cannot be used, with where and why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    /// An environment variable could not be applied.
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    /// A key has a value of the wrong type or an unknown name.
    #[error("{origin}: key `{key}`: {message}")]
    Invalid {
        origin: String,
        key: String,
        message: String,
    },
}

/// Values given on the command line; they override file and environment.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--listen`
    pub listen: Option<String>,
    /// `--admin-listen`
    pub admin_listen: Option<String>,
    /// `--redis-url`
    pub redis_url: Option<String>,
    /// `--log-format`
    pub log_format: Option<String>,
    /// `--demo`: serve the demo page.
    pub demo: bool,
}

/// Loads and validates the configuration from every source.
pub fn load(
    path: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    overrides: &Overrides,
) -> Result<Settings, ConfigError> {
    let table = match path {
        Some(path) => read_table(path)?,
        None => toml::Table::new(),
    };
    let origin = match path {
        Some(p) => format!("config {}", p.display()),
        None => "config (defaults, environment and flags)".to_string(),
    };
    resolve(table, &origin, env, overrides)
}

/// [`load`] with the file's contents given as text (`origin` names it in
/// errors): the same parsing, precedence and validation, without a file.
pub fn load_str(
    text: &str,
    origin: &Path,
    env: impl IntoIterator<Item = (String, String)>,
    overrides: &Overrides,
) -> Result<Settings, ConfigError> {
    let table = parse_table(text, origin)?;
    resolve(
        table,
        &format!("config {}", origin.display()),
        env,
        overrides,
    )
}

/// Applies environment and flags to the file's table, then validates.
fn resolve(
    mut table: toml::Table,
    origin: &str,
    env: impl IntoIterator<Item = (String, String)>,
    overrides: &Overrides,
) -> Result<Settings, ConfigError> {
    let from_env = apply_env(&mut table, env)?;
    apply_overrides(&mut table, overrides);
    let raw: FileConfig =
        serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
            invalid(
                origin,
                &from_env,
                e.path().to_string(),
                e.into_inner().message().to_string(),
            )
        })?;
    Settings::validate(raw).map_err(|(key, message)| invalid(origin, &from_env, key, message))
}

/// Builds the error, naming the environment variable when one set the key.
fn invalid(
    origin: &str,
    from_env: &[(String, String)],
    key: String,
    message: String,
) -> ConfigError {
    let origin = match from_env.iter().find(|(path, _)| *path == key) {
        Some((_, var)) => format!("{origin}, from environment variable {var}"),
        None => origin.to_string(),
    };
    ConfigError::Invalid {
        origin,
        key,
        message,
    }
}

fn read_table(path: &Path) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_table(&text, path)
}

fn parse_table(text: &str, path: &Path) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>()
        .map_err(|e| ConfigError::Syntax {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_string(),
        })
}

/// Applies `REDCAST_SECTION__KEY=value` variables. A value is read as a
/// TOML value when it is one (`10`, `true`, `["a"]`, `"quoted"`), else as
/// a plain string, so `REDCAST_SERVER__LISTEN=0.0.0.0:8080` just works.
/// Returns which key path each variable set, for error messages.
fn apply_env(
    table: &mut toml::Table,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let mut applied = Vec::new();
    for (var, raw) in env {
        let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        // Variables without a section separator (REDCAST_CONFIG) are not keys.
        let Some((section, key)) = rest.split_once("__") else {
            continue;
        };
        if section.is_empty() || key.is_empty() || key.contains("__") {
            return Err(ConfigError::Env {
                var,
                message: "expected REDCAST_<SECTION>__<KEY>".into(),
            });
        }
        let value = parse_env_value(&raw);
        let section = section.to_ascii_lowercase();
        let entry = table
            .entry(section.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        let Some(section_table) = entry.as_table_mut() else {
            return Err(ConfigError::Env {
                var,
                message: format!("`{section}` is not a section"),
            });
        };
        let key = key.to_ascii_lowercase();
        section_table.insert(key.clone(), value);
        applied.push((format!("{section}.{key}"), var));
    }
    Ok(applied)
}

fn parse_env_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

fn apply_overrides(table: &mut toml::Table, o: &Overrides) {
    if o.demo {
        set_key(table, "server", "demo", toml::Value::Boolean(true));
    }
    let pairs = [
        ("server", "listen", &o.listen),
        ("admin", "listen", &o.admin_listen),
        ("redis", "url", &o.redis_url),
        ("log", "format", &o.log_format),
    ];
    for (section, key, value) in pairs {
        if let Some(value) = value {
            set_key(table, section, key, toml::Value::String(value.clone()));
        }
    }
}

fn set_key(table: &mut toml::Table, section: &str, key: &str, value: toml::Value) {
    let entry = table
        .entry(section)
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if !entry.is_table() {
        // The file made this section a scalar; a flag replaces it whole.
        *entry = toml::Value::Table(toml::Table::new());
    }
    if let Some(t) = entry.as_table_mut() {
        t.insert(key.into(), value);
    }
}

/// Replaces the password in `scheme://user:password@host` with `***`.
pub fn mask_url_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let Some(at) = rest.rfind('@') else {
        return url.to_string();
    };
    let userinfo = &rest[..at];
    let masked = match userinfo.split_once(':') {
        Some((user, _)) => format!("{user}:***"),
        None => "***".to_string(),
    };
    format!("{}{}@{}", &url[..scheme_end + 3], masked, &rest[at + 1..])
}
