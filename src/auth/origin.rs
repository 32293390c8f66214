//! Browser Origin checks for the WebSocket and SSE handshakes.
//!
//! With `client.allowed_origins` empty, a handshake without Origin
//! (backends, CLI tools) is accepted, and so is a browser whose Origin is
//! the gateway's own (Origin host equals Host); other origins are refused.
//! Otherwise the Origin must equal an entry or match a wildcard entry
//! `scheme://*.domain[:port]` (one or more labels before the domain).

/// Whether a handshake with this Origin (and Host) may proceed.
pub fn allowed(allowed: &[String], origin: Option<&str>, host: Option<&str>) -> bool {
    let Some(origin) = origin else { return true };
    let origin = origin.trim().to_ascii_lowercase();
    if allowed.is_empty() {
        let authority = origin.split_once("://").map(|(_, a)| a);
        return authority.is_some()
            && authority == host.map(|h| h.trim().to_ascii_lowercase()).as_deref();
    }
    allowed.iter().any(|entry| matches(entry, &origin))
}

fn matches(entry: &str, origin: &str) -> bool {
    if entry == origin {
        return true;
    }
    let (Some((e_scheme, e_auth)), Some((o_scheme, o_auth))) =
        (entry.split_once("://"), origin.split_once("://"))
    else {
        return false;
    };
    let Some(suffix) = e_auth.strip_prefix("*.") else {
        return false;
    };
    e_scheme == o_scheme
        && o_auth.len() > suffix.len() + 1
        && o_auth.ends_with(suffix)
        && o_auth.as_bytes()[o_auth.len() - suffix.len() - 1] == b'.'
        && !o_auth[..o_auth.len() - suffix.len() - 1].contains([':', '/', '@'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_origin_when_no_list() {
        assert!(allowed(&[], None, Some("gw:8080")));
        assert!(allowed(&[], Some("https://gw:8080"), Some("gw:8080")));
        assert!(!allowed(&[], Some("https://evil.com"), Some("gw:8080")));
        assert!(!allowed(&[], Some("null"), Some("gw:8080")));
    }

    #[test]
    fn exact_and_wildcard() {
        let list = vec![
            "https://app.example.com".to_string(),
            "https://*.example.org".to_string(),
        ];
        assert!(allowed(&list, Some("https://app.example.com"), None));
        assert!(allowed(&list, Some("https://a.b.example.org"), None));
        assert!(!allowed(&list, Some("https://example.org"), None));
        assert!(!allowed(&list, Some("http://a.example.org"), None));
        assert!(!allowed(&list, Some("https://evilexample.org"), None));
        assert!(!allowed(&list, Some("https://a.example.org:8443"), None));
        assert!(!allowed(
            &list,
            Some("https://app.example.com.evil.com"),
            None
        ));
    }
}
