//! Channel names and access rules: the name check, and rule matching with
//! per-subject (`{sub}`) patterns. A subject is escaped before it goes
//! into a pattern, so a rule `<prefix>{sub}` lets a token holder reach
//! exactly the channel `<prefix><their subject>`, however the subject is
//! spelled (glob metacharacters, backslashes, braces).
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use redcast::auth::{Action, Identity, Rules};
use redcast::config::{self, Access, ChannelRule, Overrides, MAX_CHANNEL_NAME_BYTES};
use std::sync::OnceLock;

#[derive(Arbitrary, Debug)]
struct Input {
    prefix: String,
    subject: String,
    channel: String,
    pattern: String,
    claims: Vec<String>,
}

fn channels() -> &'static config::ChannelSettings {
    static SETTINGS: OnceLock<config::Settings> = OnceLock::new();
    let s = SETTINGS.get_or_init(|| {
        config::load(None, Vec::new(), &Overrides::default()).expect("defaults are valid")
    });
    &s.channels
}

fn identity(subject: &str, claims: Vec<String>) -> Identity {
    Identity {
        authenticated: true,
        subject: Some(subject.to_string()),
        channels: claims.clone(),
        publish: claims,
        expires_at: None,
    }
}

fn rule(pattern: String, subscribe: Access) -> ChannelRule {
    ChannelRule {
        pattern,
        subscribe,
        publish: Access::Token,
        retention: None,
    }
}

fuzz_target!(|input: Input| {
    let names = channels();
    if names.is_valid_name(&input.channel) {
        assert!(input.channel.len() <= MAX_CHANNEL_NAME_BYTES);
        assert!(!input.channel.starts_with("__redcast."));
    }
    let who = identity(&input.subject, input.claims);
    // Arbitrary rules and claims: matching never panics.
    let rules = Rules::new(&[rule(input.pattern, Access::Token)]);
    let _ = rules.allows(&who, &input.channel, Action::Subscribe);
    let _ = rules.allows(&who, &input.channel, Action::Publish);
    // A per-subject rule: only the subject's own channel.
    if input
        .prefix
        .contains(['*', '?', '[', ']', '{', '}', '\\', ','])
    {
        return;
    }
    let own = Rules::new(&[rule(format!("{}{{sub}}", input.prefix), Access::Anyone)]);
    let mine = format!("{}{}", input.prefix, input.subject);
    let allowed = own.allows(&who, &input.channel, Action::Subscribe);
    assert_eq!(
        allowed,
        input.channel == mine,
        "rule {:?}{{sub}}, subject {:?}, channel {:?}",
        input.prefix,
        input.subject,
        input.channel
    );
    assert!(
        own.allows(&who, &mine, Action::Subscribe),
        "own channel {mine:?}"
    );
});
