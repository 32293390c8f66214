//! Publishing for durable-publish: `depth` requests in flight on one
//! Redis connection, for a count of messages or a time.

use super::cost::Mode;
use crate::payload;
use anyhow::bail;
use redis::aio::MultiplexedConnection;
use redis::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::runtime::Handle;

/// A cell ends after `count` publishes or `seconds`, whichever first.
pub struct Limit {
    pub count: u64,
    pub seconds: Option<f64>,
}

/// Publishing with `depth` requests in flight on one connection.
pub struct Cell<'a> {
    mode: &'a Mode,
    channels: (u32, u32),
    depth: usize,
    limit: Limit,
}

pub struct Done {
    pub ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub seconds: f64,
}

impl<'a> Cell<'a> {
    pub fn new(mode: &'a Mode, channels: (u32, u32), depth: usize, limit: Limit) -> Self {
        Cell {
            mode,
            channels,
            depth: depth.max(1),
            limit,
        }
    }

    /// `depth` workers on the publisher runtime, each sending its next
    /// request as soon as its previous one is answered.
    pub async fn publish(
        &self,
        rt: &Handle,
        conn: &MultiplexedConnection,
        names: &Arc<Vec<String>>,
    ) -> anyhow::Result<Done> {
        let next = Arc::new(AtomicU64::new(0));
        let count = self.limit.count;
        let deadline = (self.limit.seconds).map(|s| Instant::now() + Duration::from_secs_f64(s));
        let (first, n) = self.channels;
        let durable = self.mode.history.is_some();
        let fcall = self.mode.command == "FCALL";
        let start = Instant::now();
        let mut workers = Vec::new();
        for _ in 0..self.depth {
            let (next, names, mut conn) = (next.clone(), names.clone(), conn.clone());
            workers.push(rt.spawn(async move {
                let (mut ok, mut errors, mut first_error) = (0u64, 0u64, None);
                loop {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k >= count || deadline.is_some_and(|d| Instant::now() >= d) {
                        break;
                    }
                    let c = first + (k % u64::from(n)) as u32;
                    let body = payload::make(c, k, false, "");
                    let name = &names[c as usize];
                    let cmd = if fcall {
                        super::fcall(name, &body)
                    } else {
                        redis::cmd("PUBLISH").arg(name).arg(body).to_owned()
                    };
                    let reply = tokio::time::timeout(Duration::from_secs(10), async {
                        cmd.query_async::<Value>(&mut conn).await
                    })
                    .await;
                    let checked = match reply {
                        Ok(Ok(v)) if fcall => match super::offset_of(&v) {
                            Ok(o) if o.is_some() == durable => Ok(()),
                            Ok(_) => Err(format!("{name}: durable is not {durable} (rules?)")),
                            Err(e) => Err(e.to_string()),
                        },
                        Ok(Ok(_)) => Ok(()),
                        Ok(Err(e)) => Err(e.to_string()),
                        Err(_) => Err("timed out after 10 s".into()),
                    };
                    match checked {
                        Ok(()) => ok += 1,
                        Err(e) => {
                            errors += 1;
                            first_error.get_or_insert(e);
                        }
                    }
                }
                (ok, errors, first_error)
            }));
        }
        let mut done = Done {
            ok: 0,
            errors: 0,
            first_error: None,
            seconds: 0.0,
        };
        for w in workers {
            let (ok, errors, e) = w.await?;
            done.ok += ok;
            done.errors += errors;
            done.first_error = done.first_error.or(e);
        }
        done.seconds = start.elapsed().as_secs_f64();
        if done.errors > 0 && done.ok == 0 {
            bail!(
                "{}: every publish failed: {}",
                self.mode.name,
                done.first_error.unwrap_or_default()
            );
        }
        Ok(done)
    }
}
