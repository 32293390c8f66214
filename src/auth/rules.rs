//! Channel access rules: `[[channels.rules]]`, first match wins, no match
//! denies. `{sub}` in a pattern stands for the token's subject, escaped so
//! that a subject can never smuggle glob syntax into the pattern. With no
//! rules at all, redcast runs open: anyone may subscribe, nobody publish.

use super::Identity;
use crate::config::{Access, ChannelRule, Retention};
use globset::{Glob, GlobMatcher};

/// What a client wants to do on a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Subscribe,
    Publish,
}

struct Rule {
    /// Compiled once when the pattern does not depend on the subject.
    fixed: Option<GlobMatcher>,
    template: String,
    subscribe: Access,
    publish: Access,
    /// Matches for history purposes, where `{sub}` stands for any subject
    /// (a publish has no subject; the Redis Function matches the same way).
    any_subject: Option<GlobMatcher>,
    retention: Option<Retention>,
}

/// The configured rules, compiled.
pub struct Rules {
    rules: Vec<Rule>,
}

fn glob(pattern: &str) -> Option<GlobMatcher> {
    Glob::new(pattern).ok().map(|g| g.compile_matcher())
}

/// Whether any of the glob patterns matches `channel`.
fn any_matches(patterns: &[String], channel: &str) -> bool {
    patterns
        .iter()
        .any(|p| glob(p).is_some_and(|g| g.is_match(channel)))
}

impl Rules {
    /// Compiles the rules (patterns were validated with the config).
    pub fn new(sections: &[ChannelRule]) -> Rules {
        let rules = sections
            .iter()
            .map(|r| Rule {
                fixed: if r.pattern.contains("{sub}") {
                    None
                } else {
                    glob(&r.pattern)
                },
                template: r.pattern.clone(),
                subscribe: r.subscribe,
                publish: r.publish,
                any_subject: glob(&r.pattern.replace("{sub}", "?*")),
                retention: r.retention,
            })
            .collect();
        Rules { rules }
    }

    /// The history kept for `channel` (`None`: not durable). The first
    /// rule whose pattern matches decides, `{sub}` matching any subject.
    pub fn retention(&self, channel: &str) -> Option<Retention> {
        self.rules
            .iter()
            .find(|r| r.any_subject.as_ref().is_some_and(|g| g.is_match(channel)))
            .and_then(|r| r.retention)
    }

    /// Whether `who` may do `action` on `channel`.
    pub fn allows(&self, who: &Identity, channel: &str, action: Action) -> bool {
        if self.rules.is_empty() {
            return action == Action::Subscribe;
        }
        let Some(rule) = self.rules.iter().find(|r| r.matches(who, channel)) else {
            return false;
        };
        let access = match action {
            Action::Subscribe => rule.subscribe,
            Action::Publish => rule.publish,
        };
        match access {
            Access::Anyone => true,
            Access::Authenticated => who.authenticated,
            Access::Token => {
                let claim = if action == Action::Subscribe {
                    &who.channels
                } else {
                    &who.publish
                };
                who.authenticated && any_matches(claim, channel)
            }
            Access::Nobody => false,
        }
    }
}

impl Rule {
    fn matches(&self, who: &Identity, channel: &str) -> bool {
        if let Some(g) = &self.fixed {
            return g.is_match(channel);
        }
        // A per-subject rule cannot match a client without a subject.
        let Some(sub) = who.subject.as_deref().filter(|_| who.authenticated) else {
            return false;
        };
        let pattern = self.template.replace("{sub}", &literal(sub));
        glob(&pattern).is_some_and(|g| g.is_match(channel))
    }
}

/// `text` as a glob that matches exactly itself. `globset::escape` wraps
/// `?*[]{}` in brackets but leaves `\`, which globset reads as an escape on
/// Unix: the subject `x\*` became `x\[*]`, a wildcard between literal
/// brackets, and reached other subjects' channels (found by fuzzing,
/// fuzz/fuzz_targets/channels.rs). A backslash is doubled first.
fn literal(text: &str) -> String {
    globset::escape(&text.replace('\\', "\\\\"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(pattern: &str, subscribe: Access, publish: Access) -> ChannelRule {
        ChannelRule {
            pattern: pattern.into(),
            subscribe,
            publish,
            retention: None,
        }
    }

    fn user(sub: &str) -> Identity {
        Identity {
            authenticated: true,
            subject: Some(sub.into()),
            ..Identity::default()
        }
    }

    #[test]
    fn first_match_wins_and_no_match_denies() {
        let rules = Rules::new(&[
            rule("public.*", Access::Anyone, Access::Nobody),
            rule("user.{sub}.*", Access::Authenticated, Access::Authenticated),
            rule("*", Access::Token, Access::Token),
        ]);
        let anon = Identity::default();
        assert!(rules.allows(&anon, "public.news", Action::Subscribe));
        assert!(!rules.allows(&anon, "public.news", Action::Publish));
        assert!(rules.allows(&user("42"), "user.42.inbox", Action::Publish));
        assert!(!rules.allows(&user("42"), "user.43.inbox", Action::Subscribe));
        assert!(!rules.allows(&anon, "user.42.inbox", Action::Subscribe));
        let mut granted = user("7");
        granted.channels = vec!["orders.*".into()];
        assert!(rules.allows(&granted, "orders.9", Action::Subscribe));
        assert!(!rules.allows(&granted, "orders.9", Action::Publish));
        assert!(
            !Rules::new(&[rule("a", Access::Anyone, Access::Anyone)]).allows(
                &anon,
                "b",
                Action::Subscribe
            )
        );
    }

    #[test]
    fn subject_cannot_inject_globs() {
        let rules = Rules::new(&[rule("user.{sub}", Access::Authenticated, Access::Nobody)]);
        assert!(!rules.allows(&user("*"), "user.42", Action::Subscribe));
        assert!(rules.allows(&user("*"), "user.*", Action::Subscribe));
    }

    /// Fuzzing regression: a backslash in a subject escaped the bracket
    /// that `globset::escape` put around the next metacharacter.
    #[test]
    fn subject_backslashes_are_literal() {
        let rules = Rules::new(&[rule("user.{sub}", Access::Authenticated, Access::Nobody)]);
        assert!(!rules.allows(&user("x\\*"), "user.x[other]", Action::Subscribe));
        assert!(rules.allows(&user("x\\*"), "user.x\\*", Action::Subscribe));
        // A trailing backslash no longer makes the pattern invalid.
        assert!(rules.allows(&user("a{\\"), "user.a{\\", Action::Subscribe));
    }

    #[test]
    fn no_rules_is_open_for_subscribe_only() {
        let rules = Rules::new(&[]);
        assert!(rules.allows(&Identity::default(), "x", Action::Subscribe));
        assert!(!rules.allows(&Identity::default(), "x", Action::Publish));
    }
}
