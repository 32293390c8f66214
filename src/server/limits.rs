//! The connection limits' bookkeeping: a place under a global limit
//! ([`Permit`]: handshakes in progress, open connections) and a place
//! under the per-IP limit ([`IpPermit`]). Both give their place back when
//! dropped, so a connection that ends in any way releases them.
//!
//! The per-IP limit does not apply to a client address that is itself a
//! trusted proxy: that proxy gave no forwarding information, so the real
//! client is unknown, and counting the proxy would cap every client behind
//! it together (docs/security.md, "Per-IP limits behind proxies").

use crate::auth::credentials;
use crate::handshake::Refusal;
use crate::reload::Live;
use prometheus_client::metrics::gauge::Gauge;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// A taken place under a limit; gives it back (counter and gauge) on drop.
pub(super) struct Permit {
    counter: Arc<AtomicUsize>,
    gauge: Gauge,
}

impl Permit {
    /// Takes a place if fewer than `max` are taken.
    pub(super) fn try_take(
        counter: &Arc<AtomicUsize>,
        gauge: &Gauge,
        max: usize,
    ) -> Option<Permit> {
        counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()?;
        gauge.inc();
        Some(Permit {
            counter: counter.clone(),
            gauge: gauge.clone(),
        })
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::AcqRel);
        self.gauge.dec();
    }
}

/// One client IP's place; the map entry goes when its count reaches zero,
/// so the map never holds more entries than open connections.
pub(super) struct IpPermit {
    map: Arc<Mutex<HashMap<IpAddr, usize>>>,
    ip: IpAddr,
}

impl IpPermit {
    pub(super) fn try_take(
        map: &Arc<Mutex<HashMap<IpAddr, usize>>>,
        ip: IpAddr,
        max: usize,
    ) -> Option<IpPermit> {
        let mut m = map.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(ip).or_insert(0);
        if max > 0 && *n >= max {
            if *n == 0 {
                m.remove(&ip);
            }
            return None;
        }
        *n += 1;
        Some(IpPermit {
            map: map.clone(),
            ip,
        })
    }
}

impl Drop for IpPermit {
    fn drop(&mut self) {
        let mut m = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// What an admitted connection holds for its life: its place among open
/// connections, and its place under its IP's limit (none when exempt).
pub(super) type Permits = (Permit, Option<IpPermit>);

impl super::Server {
    /// Takes the places of a new connection from `ip`, or refuses it.
    pub(super) fn take_permits(&self, live: &Live, ip: IpAddr) -> Result<Permits, Refusal> {
        let metrics = &self.session.metrics;
        let trusted = &live.settings.server.trusted_proxies;
        let ip_permit = match credentials::is_trusted(trusted, &ip) {
            true => None,
            false => {
                let max = live.settings.client.max_connections_per_ip;
                let permit = IpPermit::try_take(&self.per_ip, ip, max);
                Some(permit.ok_or(Refusal::TooManyFromIp)?)
            }
        };
        let max = live.settings.server.max_connections;
        let permit = Permit::try_take(&self.open, &metrics.connections_open, max)
            .ok_or(Refusal::AtCapacity)?;
        Ok((permit, ip_permit))
    }
}
