//! What a feed subscribes: its probe channel and the channels it owns,
//! in command-sized batches (one slot per SSUBSCRIBE), pipelined.

use super::{Feed, Scope, Sub};
use crate::broker::link::Link;
use crate::broker::probe::Probe;
use crate::broker::slots::key_slot;
use crate::broker::{BrokerError, SUBSCRIBE_BATCH};
use std::collections::BTreeMap;

impl Feed {
    /// The probe channel: on this feed's node when sharded (the prefix
    /// holds no hash tag there, so the probe's own tag decides its slot).
    pub(super) fn choose_probe(&self) -> Result<String, BrokerError> {
        let tag =
            match &self.scope {
                Scope::All => None,
                Scope::Slots(map) => Some(map.load().tag_on(&self.node).ok_or_else(|| {
                    BrokerError::Topology(format!("{} serves no slot", self.node))
                })?),
            };
        Ok(Probe::channel(&self.core.instance, tag.as_deref()))
    }

    /// Whether this feed should carry `name`.
    fn wants(&self, name: &str) -> bool {
        name == self.probe_name || (self.core.hub.wants(name) && self.owns(name))
    }

    /// Marks unconfirmed in the hub what this feed had confirmed and
    /// still owns: a channel that moved to another feed is that feed's.
    pub(super) fn unconfirm<'a>(&self, names: impl IntoIterator<Item = (&'a String, Sub)>) {
        let mine: Vec<&String> = names
            .into_iter()
            .filter(|(n, state)| *state == Sub::Confirmed && self.owns(n))
            .map(|(n, _)| n)
            .collect();
        self.core.hub.unconfirm(mine);
    }

    fn owns(&self, name: &str) -> bool {
        match &self.scope {
            Scope::All => true,
            Scope::Slots(map) => {
                let redis_name = format!("{}{name}", self.core.settings.channel_prefix);
                map.load().owner(key_slot(redis_name.as_bytes())) == Some(&self.node)
            }
        }
    }

    /// The topology changed: re-place the probe, drop what moved away.
    pub(super) async fn recheck(&mut self, link: &mut Link) -> Result<(), BrokerError> {
        let probe = self.choose_probe()?;
        if probe != self.probe_name {
            self.state.probe.reset();
            self.probe_name = probe.clone();
        }
        let mut names: Vec<String> = self.channels.keys().cloned().collect();
        names.push(probe);
        self.reconcile(link, names).await
    }

    /// Brings this link in line with what the feed should carry.
    pub(super) async fn reconcile(
        &mut self,
        link: &mut Link,
        names: impl IntoIterator<Item = String>,
    ) -> Result<(), BrokerError> {
        let (mut add, mut remove, mut confirm) = (Vec::new(), Vec::new(), Vec::new());
        for name in names {
            match (self.wants(&name), self.channels.get(&name)) {
                (true, None) => add.push(name),
                // Already in Redis: a quick leave and rejoin still needs
                // the hub to see it confirmed.
                (true, Some(Sub::Confirmed)) => confirm.push(name),
                (false, Some(_)) => remove.push(name),
                (true, Some(Sub::Pending)) | (false, None) => {}
            }
        }
        self.core.hub.confirm(&confirm);
        let mut packed = Vec::new();
        let (sub, unsub) = self.commands();
        for batch in self.batches(remove) {
            for n in &batch {
                self.channels.remove(n);
            }
            let names = self.redis_names(&batch);
            packed.extend(redis::cmd(unsub).arg(&names).get_packed_command());
            self.inflight.unsubscribing(names);
        }
        for batch in self.batches(add) {
            packed.extend(
                redis::cmd(sub)
                    .arg(self.redis_names(&batch))
                    .get_packed_command(),
            );
            for n in &batch {
                self.channels.insert(n.clone(), Sub::Pending);
            }
            self.inflight.subscribing(batch);
        }
        if !packed.is_empty() {
            link.send(&packed).await?;
        }
        Ok(())
    }

    fn commands(&self) -> (&'static str, &'static str) {
        match self.scope {
            Scope::All => ("SUBSCRIBE", "UNSUBSCRIBE"),
            Scope::Slots(_) => ("SSUBSCRIBE", "SUNSUBSCRIBE"),
        }
    }

    /// Command-sized groups: one slot per group when sharded.
    fn batches(&self, names: Vec<String>) -> Vec<Vec<String>> {
        let groups: Vec<Vec<String>> = match self.scope {
            Scope::All => vec![names],
            Scope::Slots(_) => {
                let mut by_slot: BTreeMap<u16, Vec<String>> = BTreeMap::new();
                for name in names {
                    let slot =
                        key_slot(format!("{}{name}", self.core.settings.channel_prefix).as_bytes());
                    by_slot.entry(slot).or_default().push(name);
                }
                by_slot.into_values().collect()
            }
        };
        groups
            .into_iter()
            .flat_map(|g| {
                g.chunks(SUBSCRIBE_BATCH)
                    .map(<[String]>::to_vec)
                    .collect::<Vec<_>>()
            })
            .filter(|g| !g.is_empty())
            .collect()
    }

    fn redis_names(&self, names: &[String]) -> Vec<Vec<u8>> {
        let prefix = &self.core.settings.channel_prefix;
        names
            .iter()
            .map(|c| format!("{prefix}{c}").into_bytes())
            .collect()
    }
}
