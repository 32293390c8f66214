//! Durable channels' configuration through the real binary's
//! check-config: defaults, rendering, and errors that name the key.

mod common;

use common::cli::check;

#[test]
fn history_keys_render_with_their_defaults() {
    let text = r#"
[[channels.rules]]
pattern = "chat.*"
subscribe = "anyone"
history_size = 50

[[channels.rules]]
pattern = "feed.*"
subscribe = "anyone"
history_size = 10
history_ttl = "10m"

[[channels.rules]]
pattern = "*"
subscribe = "anyone"
"#;
    let (ok, out, err) = check(text, &[("REDCAST_HISTORY__MAX_REPLAY", "300")]);
    assert!(ok, "{err}");
    for want in [
        "history_size = 50\nhistory_ttl = \"1h\"",
        "history_size = 10\nhistory_ttl = \"10m\"",
        "[history]\nmax_replay = 300\nmax_reads = 64\nread_timeout = \"5s\"",
    ] {
        assert!(out.contains(want), "missing {want}: {out}");
    }
    assert_eq!(out.matches("history_size").count(), 2, "{out}");
}

#[test]
fn bad_history_settings_name_the_key() {
    let rule = |extra: &str| {
        format!("[[channels.rules]]\npattern = \"a.*\"\nsubscribe = \"anyone\"\n{extra}\n")
    };
    let cases = [
        (rule("history_ttl = \"1m\""), "channels.rules[0].history_ttl"),
        (rule("history_size = 1000001"), "channels.rules[0].history_size"),
        (rule("history_size = 5\nhistory_ttl = \"0s\""), "channels.rules[0].history_ttl"),
        (rule("history_size = -1"), "history_size"),
        (rule("history_size = 5\nhistory = 3"), "history"),
        ("[history]\nmax_replay = 0\n".into(), "history.max_replay"),
        ("[history]\nmax_replay = 100001\n".into(), "history.max_replay"),
        ("[history]\nmax_reads = 0\n".into(), "history.max_reads"),
        ("[history]\nread_timeout = \"0s\"\n".into(), "history.read_timeout"),
        ("[history]\nbogus = 1\n".into(), "bogus"),
        (
            rule("history_size = 5") + "[[channels.rules]]\npattern = \"{a,b}{c,d}{e,f}{g,h}{i,j}{k,l}{m,n}{o,p}{q,r}\"\n",
            "channels.rules[1].pattern",
        ),
    ];
    for (text, key) in cases {
        let (ok, _, err) = check(&text, &[]);
        assert!(!ok, "accepted: {text}");
        assert!(err.contains(key), "{key} not named for {text}: {err}");
    }
}
