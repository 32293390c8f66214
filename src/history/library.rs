//! The Redis Function library that keeps durable channels' history,
//! generated from the channel rules: backends call `redcast_publish`
//! (one atomic step: next offset, append to the stream, trim, expire,
//! publish live with the position), redcast calls `redcast_read`.
//!
//! The rules are compiled into Lua patterns in rule order, so that the
//! first matching rule decides as it does in redcast (`{sub}` matches any
//! subject). Keys live in the channel's own hash slot (see `keys_of`), so
//! the library works on a cluster with sharded pub/sub too.

use crate::config::{ChannelRule, Settings};

/// The library's name in `FUNCTION LIST`.
pub const LIBRARY: &str = "redcast";
/// Alternatives one rule pattern may expand to (`{a,b}` groups multiply).
pub const MAX_ALTERNATIVES: usize = 256;

/// A rule pattern that cannot be turned into Lua.
#[derive(Debug, thiserror::Error)]
#[error("channels.rules[{index}].pattern: {message}")]
pub struct LibraryError {
    pub index: usize,
    pub message: String,
}

/// The generated code and its version (a hash of the code).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Library {
    pub code: String,
    pub version: String,
}

impl Library {
    /// Generates the library for these settings.
    pub fn generate(settings: &Settings) -> Result<Library, LibraryError> {
        let rules = settings
            .channels
            .rules
            .iter()
            .enumerate()
            .map(|(index, r)| rule_entry(r).map_err(|message| LibraryError { index, message }))
            .collect::<Result<Vec<_>, _>>()?
            .join("\n");
        let publish = if settings.redis.sharded() {
            "SPUBLISH"
        } else {
            "PUBLISH"
        };
        let body = TEMPLATE
            .replace("@PREFIX@", &lua_string(&settings.redis.channel_prefix))
            .replace("@PUBLISH@", publish)
            .replace("@RULES@", &rules);
        let version = format!("{:016x}", fnv1a(body.as_bytes()));
        let code = format!("#!lua name={LIBRARY}\nlocal VERSION = '{version}'\n{body}");
        Ok(Library { code, version })
    }
}

/// `{{patterns...}, size, ttl_ms},` for one rule; size 0: no history.
fn rule_entry(r: &ChannelRule) -> Result<String, String> {
    let patterns = lua_patterns(&r.pattern)?
        .iter()
        .map(|p| lua_string(p))
        .collect::<Vec<_>>()
        .join(", ");
    let (size, ttl) = r
        .retention
        .map_or((0, 0), |h| (h.size, h.ttl.as_millis().max(1)));
    Ok(format!("  {{{{{patterns}}}, {size}, {ttl}}},"))
}

/// The glob as anchored Lua patterns (one per `{a,b}` alternative).
pub fn lua_patterns(glob: &str) -> Result<Vec<String>, String> {
    let mut out = vec![String::from("^")];
    let chars: Vec<char> = glob.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let (pieces, next) = token(&chars, i)?;
        out = out
            .iter()
            .flat_map(|p| pieces.iter().map(move |x| format!("{p}{x}")))
            .collect();
        if out.len() > MAX_ALTERNATIVES {
            return Err(format!(
                "expands to more than {MAX_ALTERNATIVES} alternatives"
            ));
        }
        i = next;
    }
    Ok(out.into_iter().map(|p| p + "$").collect())
}

/// One glob token at `i`: its Lua alternatives and where the next starts.
fn token(c: &[char], i: usize) -> Result<(Vec<String>, usize), String> {
    let rest: String = c[i..].iter().take(5).collect();
    Ok(match c[i] {
        '{' if rest == "{sub}" => (vec![".+".into()], i + 5),
        '{' => alternation(c, i)?,
        '*' => (
            vec![".*".into()],
            i + 1 + c[i + 1..].iter().take_while(|&&x| x == '*').count(),
        ),
        '?' => (vec![".".into()], i + 1),
        '[' => class(c, i)?,
        '\\' if i + 1 < c.len() => (vec![literal(c[i + 1])], i + 2),
        x => (vec![literal(x)], i + 1),
    })
}

/// `{a,b*}`: each branch translated (no nesting, as globset).
fn alternation(c: &[char], i: usize) -> Result<(Vec<String>, usize), String> {
    let close = (i + 1..c.len())
        .find(|&j| c[j] == '}')
        .ok_or("has an unclosed `{`")?;
    let inner: String = c[i + 1..close].iter().collect();
    let mut out = Vec::new();
    for branch in inner.split(',') {
        for p in lua_patterns(branch)? {
            // Strip the anchors the recursive call added.
            out.push(p[1..p.len() - 1].to_string());
        }
    }
    Ok((out, close + 1))
}

/// `[abc]`, `[a-z]`, `[!x]` / `[^x]` as a Lua set.
fn class(c: &[char], i: usize) -> Result<(Vec<String>, usize), String> {
    let mut j = i + 1;
    let mut set = String::from("[");
    if j < c.len() && (c[j] == '!' || c[j] == '^') {
        set.push('^');
        j += 1;
    }
    let start = j;
    while j < c.len() && (c[j] != ']' || j == start) {
        match c[j] {
            x if x.is_ascii_alphanumeric() => set.push(x),
            '-' if j > start && j + 1 < c.len() && c[j + 1] != ']' => set.push('-'),
            x => set.push_str(&literal(x)),
        }
        j += 1;
    }
    if j >= c.len() {
        return Err("has an unclosed `[`".into());
    }
    set.push(']');
    Ok((vec![set], j + 1))
}

/// A character matched literally (Lua escapes punctuation with `%`).
fn literal(x: char) -> String {
    if x.is_ascii_alphanumeric() || !x.is_ascii() {
        x.to_string()
    } else {
        format!("%{x}")
    }
}

/// A Lua string literal: printable ASCII as is, the rest as `\ddd` bytes.
pub fn lua_string(s: &str) -> String {
    let mut out = String::from("'");
    for b in s.bytes() {
        match b {
            b'\'' | b'\\' => {
                out.push('\\');
                out.push(b as char);
            }
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\{b:03}")),
        }
    }
    out.push('\'');
    out
}

/// FNV-1a, 64 bits: a stable fingerprint of the code across builds.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

const TEMPLATE: &str = include_str!("redcast.lua");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_become_anchored_lua_patterns() {
        assert_eq!(lua_patterns("chat.*").unwrap(), ["^chat%..*$"]);
        assert_eq!(lua_patterns("a?[!x-z]").unwrap(), ["^a.[^x-z]$"]);
        assert_eq!(lua_patterns("user.{sub}.in").unwrap(), ["^user%..+%.in$"]);
        assert_eq!(lua_patterns("{a,b}-*").unwrap(), ["^a%-.*$", "^b%-.*$"]);
        assert_eq!(lua_patterns("x\\*").unwrap(), ["^x%*$"]);
        assert!(lua_patterns("a[b").is_err());
        assert!(lua_patterns("{a,b").is_err());
    }

    #[test]
    fn lua_strings_escape_everything_odd() {
        assert_eq!(lua_string("a'b\\c\n"), "'a\\'b\\\\c\\010'");
    }
}
