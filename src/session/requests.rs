//! Requests from the client: rate limiting, then subscribe, unsubscribe,
//! ping, publish and refresh. Every refusal is an error frame echoing the
//! request's `id`; the connection stays (only a client that keeps
//! hammering past its rate limit is closed).

use super::durable::{self, DEFAULT_HISTORY_LIMIT};
use super::{Ending, Session};
use crate::auth::{Action, AuthFailure};
use crate::broker::publisher::Job;
use crate::config::MAX_CHANNEL_NAME_BYTES;
use crate::hub::Join;
use crate::protocol::{self, ErrorCode, Position, Request, RequestError};
use std::collections::{HashMap, HashSet};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// Handles one text frame; `Some` ends the session.
    pub(super) fn on_request(&mut self, text: &str) -> Option<Ending> {
        let (rate, burst) = {
            let live = self.ctx.live.load();
            (
                live.settings.client.rate_limit,
                live.settings.client.rate_burst,
            )
        };
        if !self.take_token(rate, burst) {
            self.bucket.refused += 1;
            if self.bucket.refused > burst {
                return Some(Ending::RATE_LIMITED);
            }
            let id = protocol::parse_request(text)
                .ok()
                .and_then(|r| request_id(&r));
            self.reply_error(&RequestError::new(
                id,
                ErrorCode::RateLimited,
                "too many requests; slow down",
            ));
            return None;
        }
        self.bucket.refused = 0;
        let result = match protocol::parse_request(text) {
            Ok(Request::Subscribe {
                id,
                channels,
                since,
            }) => self.subscribe(id, channels, since),
            Ok(Request::History { id, channel, limit }) => self.history(id, channel, limit),
            Ok(Request::Unsubscribe { id, channels }) => self.unsubscribe(id, channels),
            Ok(Request::Ping { id }) => {
                self.outbox.push(protocol::encode_pong(id.as_deref()));
                Ok(())
            }
            Ok(Request::Publish {
                id,
                channel,
                payload,
            }) => self.publish(id, channel, payload),
            Ok(Request::Refresh { id, token }) => self.refresh(id, &token),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            self.reply_error(&e);
        }
        None
    }

    /// Token bucket: `rate` per second, up to `burst` saved.
    fn take_token(&mut self, rate: f64, burst: u32) -> bool {
        let now = Instant::now();
        let earned = now.duration_since(self.bucket.last).as_secs_f64() * rate;
        self.bucket.tokens = (self.bucket.tokens + earned).min(burst as f64);
        self.bucket.last = now;
        if self.bucket.tokens < 1.0 {
            return false;
        }
        self.bucket.tokens -= 1.0;
        true
    }

    pub(super) fn reply_error(&self, e: &RequestError) {
        durable::reply_error(&self.ctx, &self.outbox, e);
    }

    /// Checks limits, then joins what is valid and allowed.
    fn subscribe(
        &mut self,
        id: Option<String>,
        channels: Vec<String>,
        since: Vec<(String, Position)>,
    ) -> Result<(), RequestError> {
        let channels = dedup(channels);
        let since = self.check_since(&id, &channels, since)?;
        let new: Vec<String> = channels
            .iter()
            .filter(|c| !self.channels.contains(*c))
            .cloned()
            .collect();
        let max = self.ctx.live.load().settings.client.max_subscriptions;
        if self.channels.len() + new.len() > max {
            let message = format!("at most {max} subscriptions per connection");
            return Err(
                RequestError::new(id, ErrorCode::TooManySubscriptions, message).with_channels(new),
            );
        }
        self.join(id, channels, since);
        Ok(())
    }

    /// `since` may only name durable channels of the same request.
    fn check_since(
        &self,
        id: &Option<String>,
        channels: &[String],
        since: Vec<(String, Position)>,
    ) -> Result<HashMap<String, Position>, RequestError> {
        let live = self.ctx.live.load();
        let error = |code, msg: &str, c: &String| {
            let e = RequestError::new(id.clone(), code, msg);
            Err(e.with_channels(vec![c.clone()]))
        };
        for (c, _) in &since {
            if !channels.contains(c) {
                return error(
                    ErrorCode::InvalidField,
                    "`since` names a channel not in `channels`",
                    c,
                );
            }
            if live.policy.rules.retention(c).is_none() {
                return error(ErrorCode::NotDurable, "the channel keeps no history", c);
            }
        }
        Ok(since.into_iter().collect())
    }

    /// Joins the valid and allowed channels (acked once Redis confirms);
    /// the others get one error frame each kind, listing them.
    pub(super) fn join(
        &mut self,
        id: Option<String>,
        channels: Vec<String>,
        since: HashMap<String, Position>,
    ) {
        let (valid, invalid) = self.split_valid(channels);
        let live = self.ctx.live.load();
        let (allowed, forbidden): (Vec<String>, Vec<String>) = valid
            .into_iter()
            .partition(|c| live.policy.allows(&self.identity, c, Action::Subscribe));
        if !invalid.is_empty() {
            self.reply_error(&invalid_channels(id.clone(), invalid));
        }
        if !forbidden.is_empty() {
            let e = RequestError::new(id.clone(), ErrorCode::Forbidden, "not allowed to subscribe");
            self.reply_error(&e.with_channels(forbidden));
        }
        if allowed.is_empty() {
            return;
        }
        self.channels.extend(allowed.iter().cloned());
        let plan = durable::plan(
            &self.ctx,
            &self.outbox,
            self.format,
            id.clone(),
            &allowed,
            since,
        );
        let join = Join {
            session: self.id,
            outbox: &self.outbox,
            format: self.format,
            channels: allowed,
            id,
            gates: plan.gates,
            then: plan.then,
        };
        self.ctx.hub.subscribe(join);
    }

    fn unsubscribe(
        &mut self,
        id: Option<String>,
        channels: Vec<String>,
    ) -> Result<(), RequestError> {
        let (valid, invalid) = self.split_valid(dedup(channels));
        if !invalid.is_empty() {
            return Err(invalid_channels(id, invalid));
        }
        let gone: Vec<String> = valid
            .iter()
            .filter(|c| self.channels.remove(*c))
            .cloned()
            .collect();
        self.ctx.hub.unsubscribe(self.id, &gone);
        self.outbox
            .push(protocol::encode_unsubscribed(id.as_deref(), &valid));
        Ok(())
    }

    fn publish(
        &mut self,
        id: Option<String>,
        channel: String,
        payload: Vec<u8>,
    ) -> Result<(), RequestError> {
        let live = self.ctx.live.load();
        let (id, channel) = self.may(id, channel, Action::Publish, "not allowed to publish")?;
        let durable = live.policy.rules.retention(&channel).is_some();
        let redis_channel = format!("{}{}", live.settings.redis.channel_prefix, channel);
        let job = Job {
            durable,
            channel: redis_channel,
            payload,
            id,
            reply: Some(self.outbox.clone()),
            retried: false,
        };
        self.ctx.publisher.submit(job);
        Ok(())
    }

    /// The newest kept messages of a durable channel the client may read.
    fn history(
        &mut self,
        id: Option<String>,
        channel: String,
        limit: Option<u64>,
    ) -> Result<(), RequestError> {
        let live = self.ctx.live.load();
        let refusal = "not allowed to read this channel";
        let (id, channel) = self.may(id, channel, Action::Subscribe, refusal)?;
        let Some(retention) = live.policy.rules.retention(&channel) else {
            let e = RequestError::new(id, ErrorCode::NotDurable, "the channel keeps no history");
            return Err(e.with_channels(vec![channel]));
        };
        let max = live.settings.history.max_replay;
        let limit = match limit {
            None => DEFAULT_HISTORY_LIMIT.min(max),
            Some(n) if (1..=max as u64).contains(&n) => n as usize,
            Some(_) => {
                let message = format!("`limit` must be between 1 and {max}");
                return Err(RequestError::new(id, ErrorCode::InvalidField, message));
            }
        };
        durable::answer_history(
            &self.ctx,
            &self.outbox,
            id,
            channel,
            limit.min(retention.size),
        );
        Ok(())
    }

    /// A request on one channel: a valid name, and `action` allowed.
    fn may(
        &self,
        id: Option<String>,
        channel: String,
        action: Action,
        refusal: &str,
    ) -> Result<(Option<String>, String), RequestError> {
        let live = self.ctx.live.load();
        if !live.settings.channels.is_valid_name(&channel) {
            return Err(invalid_channels(id, vec![channel]));
        }
        if !live.policy.allows(&self.identity, &channel, action) {
            let e = RequestError::new(id, ErrorCode::Forbidden, refusal);
            return Err(e.with_channels(vec![channel]));
        }
        Ok((id, channel))
    }

    /// Replaces the token before it expires; the subject must not change.
    fn refresh(&mut self, id: Option<String>, token: &str) -> Result<(), RequestError> {
        let live = self.ctx.live.load();
        let invalid = |msg: String| RequestError::new(id.clone(), ErrorCode::InvalidToken, msg);
        let fresh = match live.policy.authenticate(Some(token)) {
            Ok(who) if who.authenticated => who,
            Ok(_) => return Err(invalid("authentication is not configured".into())),
            Err(AuthFailure::Invalid(e)) => return Err(invalid(e.to_string())),
            Err(e) => return Err(invalid(e.to_string())),
        };
        if self.identity.authenticated && fresh.subject != self.identity.subject {
            return Err(invalid("the new token is for another subject".into()));
        }
        self.identity = fresh;
        self.expires = self.expiry();
        self.outbox.push(protocol::encode_refreshed(id.as_deref()));
        Ok(())
    }

    /// Splits names into valid and invalid ones.
    fn split_valid(&self, channels: Vec<String>) -> (Vec<String>, Vec<String>) {
        let live = self.ctx.live.load();
        channels
            .into_iter()
            .partition(|c| live.settings.channels.is_valid_name(c))
    }
}

fn dedup(channels: Vec<String>) -> Vec<String> {
    let mut seen = HashSet::new();
    channels
        .into_iter()
        .filter(|c| seen.insert(c.clone()))
        .collect()
}

fn invalid_channels(id: Option<String>, bad: Vec<String>) -> RequestError {
    let shown: String = bad
        .first()
        .map(|c| c.chars().take(64).collect())
        .unwrap_or_default();
    let message = format!("invalid channel name `{shown}`");
    // Echo only names short enough not to amplify a hostile request.
    let listed = bad
        .into_iter()
        .filter(|c| c.len() <= MAX_CHANNEL_NAME_BYTES)
        .collect();
    RequestError::new(id, ErrorCode::InvalidChannel, message).with_channels(listed)
}

fn request_id(r: &Request) -> Option<String> {
    match r {
        Request::Subscribe { id, .. }
        | Request::Unsubscribe { id, .. }
        | Request::Ping { id }
        | Request::Publish { id, .. }
        | Request::Refresh { id, .. }
        | Request::History { id, .. } => id.clone(),
    }
}
