//! A feed: one pub/sub link to one node, and the channels it carries.
//!
//! Standalone and Sentinel run one feed for every channel; a cluster runs
//! one feed per master for the channels whose slots it serves (sharded),
//! or one feed on any node (classic). A feed (re)connects with backoff,
//! subscribes its probe channel and every channel it owns (pipelined, in
//! batches: per slot when sharded, since Redis refuses a multi-slot
//! SSUBSCRIBE), then delivers messages to the hub, follows changes from
//! its inbox, PINGs, sends its delivery probe, and gives the link up when
//! Redis stops answering or the probe stops coming back.

mod receive;
mod subscriptions;

use super::cluster::Signal;
use super::inflight::InFlight;
use super::link::Link;
use super::probe::Probe;
use super::slots::SlotMap;
use super::state::FeedState;
use super::target::Target;
use super::{BrokerError, Core};
use crate::config::HostPort;
use crate::fanout::Plan;
use crate::hub::Inbox;
use arc_swap::ArcSwap;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

/// Which channels a feed carries.
pub enum Scope {
    /// All of them, classic pub/sub.
    All,
    /// Those whose slot its node serves, sharded pub/sub.
    Slots(Arc<ArcSwap<SlotMap>>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sub {
    Pending,
    Confirmed,
}

/// One feed; see the module docs.
pub struct Feed {
    core: Arc<Core>,
    scope: Scope,
    inbox: Arc<Inbox>,
    state: Arc<FeedState>,
    /// Cluster feeds: tells the router to read the topology again, and
    /// where MOVED replies said slots went.
    router: Option<Arc<Signal>>,
    /// Channels whose subscribe Redis refused, tried again at `retry_at`.
    refused: HashSet<String>,
    retry_at: Option<Instant>,
    refusals: u32,
    /// The node of the current (or last) link.
    node: HostPort,
    /// Channels (client names) subscribed or being subscribed here.
    channels: HashMap<String, Sub>,
    inflight: InFlight,
    probe_name: String,
    last_probe: Option<Instant>,
    /// The fan-out plan of the current batch (kept to reuse its memory).
    plan: Option<Plan>,
    /// Messages (not confirmations or PONGs) in the current batch.
    batch_messages: usize,
}

impl Feed {
    /// A feed fed by `inbox`; its state is registered for readiness.
    pub fn new(
        core: Arc<Core>,
        scope: Scope,
        inbox: Arc<Inbox>,
        router: Option<Arc<Signal>>,
    ) -> Feed {
        let probe = Probe::new(
            &core.instance,
            core.settings.probe_timeout,
            core.metrics.clone(),
        );
        let state = FeedState::new(probe);
        core.state.add(state.clone());
        Feed {
            probe_name: Probe::channel(&core.instance, None),
            core,
            scope,
            inbox,
            state,
            router,
            refused: HashSet::new(),
            retry_at: None,
            refusals: 0,
            node: HostPort {
                host: String::new(),
                port: 0,
            },
            channels: HashMap::new(),
            inflight: InFlight::default(),
            last_probe: None,
            plan: None,
            batch_messages: 0,
        }
    }

    /// Runs until `stop`; never returns early on errors.
    pub async fn run(mut self, mut target: Target, stop: CancellationToken) {
        let mut attempt: u32 = 0;
        loop {
            let result = tokio::select! {
                _ = stop.cancelled() => break,
                r = self.life(&mut target, &mut attempt) => r,
            };
            let switched = result.is_ok();
            self.lost(result.err().map(|e| e.to_string()));
            if switched {
                continue;
            }
            let delay = super::backoff(
                attempt,
                self.core.settings.reconnect_min,
                self.core.settings.reconnect_max,
            );
            attempt = attempt.saturating_add(1);
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(delay) => {}
                _ = target.changed() => {}
            }
        }
        if self.state.is_connected() {
            tracing::info!(node = %self.node, "redis pub/sub connection closed (stopping)");
        }
        self.lost(None);
        self.core.state.remove(&self.state);
    }

    /// One connection: find the node, connect, serve. `Ok` means the
    /// target moved (a Sentinel switch): reconnect at once.
    async fn life(&mut self, target: &mut Target, attempt: &mut u32) -> Result<(), BrokerError> {
        self.node = target.resolve().await?;
        let mut link = self.core.dialer.open(&self.node).await?;
        if target.expects_master() {
            let role = link.role().await?;
            if role != "master" {
                return Err(BrokerError::NotMaster {
                    node: self.node.clone(),
                    role,
                });
            }
        }
        if *attempt > 0 {
            self.core.metrics.redis_reconnects.inc();
        }
        *attempt = 0;
        let node = self.node.clone();
        let switch = target.switched(&node);
        tokio::pin!(switch);
        tokio::select! {
            r = self.serve(&mut link) => r,
            _ = &mut switch => Ok(()),
        }
    }

    /// After a link is gone (`why`: the error; none for a switch or a
    /// stop): nothing it carried is confirmed any more.
    fn lost(&mut self, why: Option<String>) {
        if let Some(why) = &why {
            if self.state.is_connected() {
                tracing::warn!(node = %self.node, error = %why, "redis pub/sub connection lost; reconnecting");
            } else {
                tracing::debug!(node = %self.node, error = %why, "redis pub/sub connection attempt failed");
            }
        }
        self.state
            .down(why.unwrap_or_else(|| "switching node".into()));
        self.unconfirm(self.channels.iter().map(|(n, s)| (n, *s)));
        self.channels.clear();
        self.inflight.clear();
        self.core.state.update_metrics();
        self.refused.clear();
        self.retry_at = None;
        if let Some(router) = &self.router {
            router.refresh();
        }
    }

    async fn serve(&mut self, link: &mut Link) -> Result<(), BrokerError> {
        self.state.up(&self.node);
        // The node may have restarted empty: have its library checked.
        self.core.state.linked.notify_one();
        self.state.probe.reset();
        self.last_probe = None;
        self.probe_name = self.choose_probe()?;
        // Take the inbox first: a channel created after this point is
        // either in the snapshot below or marked again.
        self.inbox.take();
        let mut all = self.core.hub.channel_names();
        all.push(self.probe_name.clone());
        self.reconcile(link, all).await?;
        let channels = self.channels.len().saturating_sub(1);
        tracing::info!(node = %self.node, channels, "redis pub/sub connected");
        self.core.state.update_metrics();
        let s = &self.core.settings;
        let mut ping = tokio::time::interval_at(Instant::now() + s.ping_interval, s.ping_interval);
        ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let every = (s.probe_interval.min(s.timeout) / 4).max(std::time::Duration::from_millis(10));
        let mut watchdog = tokio::time::interval(every);
        let inbox = self.inbox.clone();
        loop {
            tokio::select! {
                v = link.next() => self.batch(v?, link).await?,
                _ = inbox.changed() => {
                    let (names, recheck) = inbox.take();
                    if recheck {
                        self.recheck(link).await?;
                    }
                    self.reconcile(link, names).await?;
                }
                _ = ping.tick() => {
                    link.send(&redis::cmd("PING").get_packed_command()).await?;
                    self.inflight.pinging();
                }
                _ = watchdog.tick() => self.watchdog()?,
            }
        }
    }

    /// Runs on a short tick: a link that stopped answering, or whose probe
    /// stopped coming back, is given up; probes go out on time.
    fn watchdog(&mut self) -> Result<(), BrokerError> {
        self.core.state.update_metrics();
        if self.state.probe.overdue() {
            self.core.metrics.probe_failures.inc();
            let why = self.state.probe.check().err().unwrap_or_default();
            return Err(BrokerError::ProbeLost(why));
        }
        let limit = self.core.settings.timeout;
        if self.inflight.oldest().is_some_and(|t| t.elapsed() > limit) {
            return Err(BrokerError::Timeout(limit));
        }
        if self.retry_at.is_some_and(|t| t <= Instant::now()) {
            self.retry_at = None;
            self.inbox.mark(std::mem::take(&mut self.refused));
        }
        let due = self
            .last_probe
            .is_none_or(|t| t.elapsed() >= self.core.settings.probe_interval);
        if due && self.channels.get(&self.probe_name) == Some(&Sub::Confirmed) {
            self.send_probe();
        }
        Ok(())
    }

    fn send_probe(&mut self) {
        self.last_probe = Some(Instant::now());
        let channel = format!("{}{}", self.core.settings.channel_prefix, self.probe_name);
        self.core.publisher.probe(channel, self.state.probe.next());
    }
}
