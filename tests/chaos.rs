//! Chaos: Redis restarted again and again (kill -9 and clean shutdowns)
//! while a publisher keeps publishing, and the pub/sub link blackholed
//! (a proxy that stops forwarding without closing) and restored. After
//! every round, delivery resumes on the open client connection and
//! /readyz tells the truth: not ready while Redis is gone, ready again
//! once delivery works.
//!
//! CI runs a few rounds. The documented long run (docs/chaos.md) sets the
//! rounds and collects the resume-time tables:
//!
//! ```sh
//! REDCAST_CHAOS_ROUNDS=100 REDCAST_CHAOS_BLACKHOLES=20 REDCAST_CHAOS_REPORT=/tmp/chaos.md \
//!   cargo test --test chaos -- --nocapture --test-threads 1
//! ```
//!
//! Times are reported, not asserted (speed is measured, never a test
//! condition): each round must only resume within the harness deadline.

mod common;

use common::chaos::{first_of_round, readiness, report, rounds, Publisher, Times};
use common::proxy::Blackhole;
use common::*;
use redcast::Gateway;
use std::time::Duration;
use tokio::time::Instant;

const CHANNEL: &str = "chaos";

/// How long Redis stays down in `round`: 0.2 to 1.5 s, varied so that the
/// restarts land at every point of the reconnect backoff.
fn downtime(round: u64) -> Duration {
    Duration::from_millis(200 + (round * 389) % 1300)
}

/// Starts Redis again off the runtime's threads (launch waits for its
/// "Ready to accept connections" line); returns it and when it was ready.
async fn relaunch(mut redis: Redis) -> (Redis, Instant) {
    let redis = tokio::task::spawn_blocking(move || {
        redis.launch();
        redis
    })
    .await
    .expect("redis relaunched");
    (redis, Instant::now())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarts_while_publishing_resume_delivery_with_default_settings() {
    let total = rounds("REDCAST_CHAOS_ROUNDS", 4);
    let mut redis = Redis::start();
    // Default settings: the reconnect policy under test is the shipped one.
    let gw = gateway(&redis, &[]).await;
    let mut ws = subscribed_client(&gw, &[CHANNEL]).await;
    readiness(&gw, true).await;
    let publisher = Publisher::start(redis.url(), CHANNEL);
    first_of_round(&mut ws, 0).await;

    let mut kill = Times::new("kill -9: delivery resumed");
    let mut clean = Times::new("clean shutdown: delivery resumed");
    let mut ready_again = Times::new("any: /readyz 200 again");
    for round in 1..=total {
        let killed = round % 2 == 1;
        if killed {
            redis.kill();
        } else {
            redis.terminate();
        }
        // Truthful while Redis is gone.
        readiness(&gw, false).await;
        tokio::time::sleep(downtime(round)).await;
        publisher.next_round(round);
        let (back, up) = relaunch(redis).await;
        redis = back;
        let resumed = first_of_round(&mut ws, round).await - up;
        let ready = readiness(&gw, true).await - up;
        if killed { &mut kill } else { &mut clean }.add(resumed);
        ready_again.add(ready);
    }
    let title = format!(
        "Redis restarts, default settings ({total} rounds, down 0.2-1.5 s; \
         times from Redis accepting connections again)"
    );
    report(&title, &[&kill, &clean, &ready_again]);
    assert_eq!(
        metric(&gw, "redcast_redis_connected").await,
        1.0,
        "connected at the end"
    );
}

/// Short timeouts so that a silent link is noticed within a second; the
/// defaults take up to `ping_interval` plus `timeout` (10 s).
const FAST_DETECT: [(&str, &str); 4] = [
    ("REDCAST_REDIS__PING_INTERVAL", "200ms"),
    ("REDCAST_REDIS__TIMEOUT", "500ms"),
    ("REDCAST_REDIS__PROBE_INTERVAL", "200ms"),
    ("REDCAST_REDIS__PROBE_TIMEOUT", "500ms"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackholed_pubsub_link_is_noticed_and_delivery_resumes_after_restore() {
    let total = rounds("REDCAST_CHAOS_BLACKHOLES", 3);
    let redis = Redis::start();
    let hole = Blackhole::start(([127, 0, 0, 1], redis.port).into()).await;
    let gw = Gateway::start(settings(&hole.url(), &FAST_DETECT))
        .await
        .expect("gateway starts");
    let mut ws = subscribed_client(&gw, &[CHANNEL]).await;
    readiness(&gw, true).await;
    // The publisher reaches Redis directly: only redcast's side is cut.
    let publisher = Publisher::start(redis.url(), CHANNEL);
    first_of_round(&mut ws, 0).await;

    let mut noticed = Times::new("blackhole: /readyz 503 after the cut");
    let mut resumed = Times::new("blackhole: delivery resumed after restore");
    let mut ready_again = Times::new("blackhole: /readyz 200 after restore");
    for round in 1..=total {
        hole.set(true);
        let cut = Instant::now();
        // Nothing closed the link: only the probe and PING notice.
        noticed.add(readiness(&gw, false).await - cut);
        publisher.next_round(round);
        hole.set(false);
        let restored = Instant::now();
        resumed.add(first_of_round(&mut ws, round).await - restored);
        ready_again.add(readiness(&gw, true).await - restored);
    }
    let title = format!(
        "Pub/sub link blackholed and restored ({total} rounds; redis.ping_interval 200ms, \
         redis.timeout 500ms, redis.probe_interval 200ms, redis.probe_timeout 500ms)"
    );
    report(&title, &[&noticed, &resumed, &ready_again]);
}
