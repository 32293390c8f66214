//! The Redis Function library through a real Redis: rule matching the
//! same as redcast's, keys in the channel's slot, a `}` outside a hash tag
//! refused, and the library kept in place across a flush and a reload.

mod common;

use common::durable::{fcall, library_loaded};
use common::*;
use redcast::broker::slots::key_slot;
use redcast::Gateway;
use redis::Value;

const RULES: &str = r#"[
  {pattern = "user.{sub}.inbox", subscribe = "authenticated", history_size = 7},
  {pattern = "user.*", subscribe = "anyone"},
  {pattern = "{a,b}[0-9]?.x-*", subscribe = "anyone", history_size = 3},
  {pattern = "[!z]ed", subscribe = "anyone", history_size = 4},
  {pattern = "*", subscribe = "anyone", history_size = 5}
]"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_function_matches_rules_as_redcast_does() {
    let redis = Redis::start();
    let env = [
        ("REDCAST_CHANNELS__RULES", RULES),
        ("REDCAST_REDIS__CHANNEL_PREFIX", "app:"),
    ];
    let settings = settings(&redis.url(), &env);
    let policy = redcast::auth::Policy::from_settings(&settings).unwrap();
    let _gw = redcast::Gateway::start(settings).await.unwrap();
    library_loaded(&redis).await;
    let names = [
        "user.42.inbox",
        "user.42.outbox",
        "user..inbox",
        "a1z.x-1",
        "b7.x-",
        "c1z.x-1",
        "a1.x-",
        "red",
        "zed",
        "zzz",
        "a/b.c",
        "x{t}y",
    ];
    for name in names {
        let want = policy.rules.retention(name).map(|r| r.size);
        assert_eq!(kept(&redis, &format!("app:{name}")).await, want, "{name}");
    }
    // Outside the prefix nothing is durable.
    assert_eq!(fcall(&redis, "user.42.inbox", "m").await, None);
}

/// The history size the Function applied: publish past it, count what
/// a read of the latest gives (`None`: published live only).
async fn kept(redis: &Redis, channel: &str) -> Option<usize> {
    for i in 0..10 {
        fcall(redis, channel, &i.to_string()).await?;
    }
    let mut conn = redis.conn().await;
    let reply: Vec<Value> = redis::cmd("FCALL")
        .arg("redcast_read")
        .arg(1)
        .arg(channel)
        .arg("latest")
        .arg(100)
        .query_async(&mut conn)
        .await
        .unwrap();
    Some((reply.len() - 2) / 2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_share_the_channels_slot_and_a_stray_brace_is_refused() {
    let redis = Redis::start();
    let rules = r#"[{pattern = "*", subscribe = "anyone", history_size = 5}]"#;
    let env = [
        ("REDCAST_CHANNELS__RULES", rules),
        ("REDCAST_CHANNELS__NAME_PATTERN", ".+"),
    ];
    let _gw = Gateway::start(settings(&redis.url(), &env)).await.unwrap();
    library_loaded(&redis).await;
    let mut conn = redis.conn().await;
    for (channel, stream) in [
        ("plain", "rc:{plain}:s"),
        ("{tag}.x", "rc:{tag}.x:s"),
        ("a{b", "rc:{a{b}:s"),
    ] {
        fcall(&redis, channel, "m").await.unwrap();
        let (want, got) = (key_slot(channel.as_bytes()), key_slot(stream.as_bytes()));
        let exists: i64 = redis::cmd("EXISTS")
            .arg(stream)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!((exists, got), (1, want), "{channel}");
    }
    let err = redis::cmd("FCALL")
        .arg("redcast_publish")
        .arg(1)
        .arg("a}b")
        .arg("m")
        .query_async::<Value>(&mut conn)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("hash tag"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_library_comes_back_after_a_flush_and_follows_a_reload() {
    let redis = Redis::start();
    let rules =
        |n: usize| format!(r#"[{{pattern = "*", subscribe = "anyone", history_size = {n}}}]"#);
    let first = rules(5);
    let env = [
        ("REDCAST_CHANNELS__RULES", first.as_str()),
        ("REDCAST_REDIS__PING_INTERVAL", "200ms"),
    ];
    let gw = Gateway::start(settings(&redis.url(), &env)).await.unwrap();
    library_loaded(&redis).await;
    let mut conn = redis.conn().await;
    let _: Value = redis::cmd("FUNCTION")
        .arg("FLUSH")
        .query_async(&mut conn)
        .await
        .unwrap();
    library_loaded(&redis).await;
    // A reload with another history size replaces the library at once.
    let version = || async {
        let mut conn = redis.conn().await;
        let v: Vec<String> = redis::cmd("FCALL")
            .arg("redcast_version")
            .arg(0)
            .query_async(&mut conn)
            .await
            .unwrap();
        v[0].clone()
    };
    let before = version().await;
    let second = rules(2);
    let next = [
        ("REDCAST_CHANNELS__RULES", second.as_str()),
        ("REDCAST_REDIS__PING_INTERVAL", "200ms"),
    ];
    gw.reloader().apply(settings(&redis.url(), &next)).unwrap();
    wait_until("the new library version", || async {
        version().await != before
    })
    .await;
    for i in 1..=20 {
        fcall(&redis, "c", &i.to_string()).await;
    }
    let mut ws = connect(&gw, "/ws").await;
    send_json(
        &mut ws,
        serde_json::json!({"type":"history","channel":"c","limit":10}),
    )
    .await;
    let reply = recv_json(&mut ws).await;
    assert_eq!(reply["messages"].as_array().unwrap().len(), 2, "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_library_redis_refuses_to_load_shows_in_readiness() {
    // An ACL user with pub/sub rights but no FUNCTION LOAD.
    let user = [
        "--user",
        "default",
        "on",
        "nopass",
        "~*",
        "&*",
        "+@all",
        "--user",
        "rc",
        "on",
        ">pw",
        "resetchannels",
        "&*",
        "-@all",
        "+subscribe",
        "+unsubscribe",
        "+publish",
        "+ping",
        "+fcall",
    ];
    let redis = Redis::start_with(free_port(), &user);
    let rules = r#"[{pattern = "*", subscribe = "anyone", history_size = 5}]"#;
    let env = [
        ("REDCAST_CHANNELS__RULES", rules),
        ("REDCAST_REDIS__USERNAME", "rc"),
        ("REDCAST_REDIS__PASSWORD", "pw"),
    ];
    let gw = Gateway::start(settings(&redis.url(), &env)).await.unwrap();
    let body = wait_readyz(&gw, 503, "function library for durable channels").await;
    assert!(body.contains("cannot load it"), "{body}");
}
