//! A real Redis Cluster for integration tests: 3 masters with 1 replica
//! each, on free loopback ports with explicit bus ports (the default,
//! port+10000, breaks above 55535), created by `redis-cli --cluster
//! create` and killed on Drop. The API is async (tokio); every wait is
//! bounded and says what it last saw when it gives up.
//!
//! While a master is down (from its FAIL until its replica's promotion,
//! ~1 s) the whole cluster answers CLUSTERDOWN, other shards included.

mod reshape;
mod view;

pub use view::*;

use super::topology::{cmd, info_field, wait_for, Conns, FAILOVER_DEADLINE};
use super::{free_port, Redis, DEADLINE};
use redis::ToRedisArgs;
use std::collections::HashMap;
use std::io::{Read, Seek};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// `cluster-node-timeout` (ms). Failure detection takes about this long,
/// a whole failover 2-3 times it; 1000 ms has given no false failure on a
/// 2-core box running the suite.
pub const NODE_TIMEOUT_MS: u64 = 1000;

/// A node this harness runs: its process, cluster id and bus port.
struct Node {
    redis: Redis,
    id: String,
    bus: u16,
}

/// Starts one cluster-enabled redis-server and waits for its ready line.
fn spawn_node() -> (Redis, u16) {
    let bus = free_port();
    let redis = Redis::start_in_dir(free_port(), |dir| {
        let conf = dir.join("nodes.conf").display().to_string();
        let args = [
            ("--cluster-enabled", "yes".to_string()),
            ("--cluster-port", bus.to_string()),
            ("--cluster-config-file", conf),
            ("--cluster-node-timeout", NODE_TIMEOUT_MS.to_string()),
            // Replicas always stand for election, however stale (tests).
            ("--cluster-replica-validity-factor", "0".to_string()),
            ("--repl-diskless-sync-delay", "0".to_string()),
        ];
        args.into_iter()
            .flat_map(|(k, v)| [k.to_string(), v])
            .collect()
    });
    (redis, bus)
}

/// Runs redis-cli to completion within DEADLINE (output to a file, polled
/// without blocking the runtime); fails the test on a non-zero exit.
async fn redis_cli(args: &[String]) -> String {
    let mut out = tempfile::tempfile().unwrap();
    let mut child = Command::new("redis-cli")
        .args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out.try_clone().unwrap())
        .spawn()
        .expect("redis-cli must be installed");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            eprintln!("redis-cli {args:?} killed after {DEADLINE:?}");
            break child.wait().unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut text = String::new();
    out.rewind().unwrap();
    out.read_to_string(&mut text).unwrap();
    assert!(status.success(), "redis-cli {args:?}: {status}\n{text}");
    text
}

/// A running Redis Cluster; Drop kills every node.
pub struct Cluster {
    nodes: Vec<Node>,
    conns: Conns,
    /// The slot map last read, so `kill` knows what a master served.
    last_map: Mutex<Vec<SlotRange>>,
    /// A slot each killed master served when it died.
    killed_slot: HashMap<u16, u16>,
}

impl Cluster {
    /// Starts 6 nodes, creates the cluster (3 masters, 1 replica each) and
    /// waits until every node says ok, knows all 6, agrees on the slot map,
    /// and every replica's link is up (a master killed before its replica
    /// synced is never replaced).
    pub async fn start() -> Cluster {
        let spawned: Vec<(Redis, u16)> = (0..6).map(|_| spawn_node()).collect();
        let mut args: Vec<String> = vec!["--cluster".into(), "create".into()];
        args.extend(spawned.iter().map(|(r, _)| format!("127.0.0.1:{}", r.port)));
        args.extend(["--cluster-replicas", "1", "--cluster-yes"].map(String::from));
        let out = redis_cli(&args).await;
        assert!(out.contains("All 16384 slots covered"), "{out}");
        let mut cluster = Cluster {
            nodes: Vec::new(),
            conns: Conns::default(),
            last_map: Mutex::new(Vec::new()),
            killed_slot: HashMap::new(),
        };
        for (redis, bus) in spawned {
            let id = cluster.must(redis.port, &["CLUSTER", "MYID"]).await;
            let id = redis::from_redis_value(id).unwrap();
            cluster.nodes.push(Node { redis, id, bus });
        }
        cluster.wait_stable().await;
        let view = cluster.view().await;
        for m in cluster.masters().await {
            let id = &view.iter().find(|n| n.port == m).unwrap().id;
            let replicas = view.iter().filter(|n| n.master_id.as_ref() == Some(id));
            assert_eq!(replicas.count(), 1, "master {m} should have 1 replica");
        }
        cluster
    }

    /// Ports of the nodes this harness runs (killed ones left out).
    pub fn ports(&self) -> Vec<u16> {
        let live = self.nodes.iter().filter(|n| n.redis.is_running());
        live.map(|n| n.redis.port).collect()
    }

    /// `127.0.0.1:port` of every running node.
    pub fn node_addrs(&self) -> Vec<String> {
        self.ports()
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect()
    }

    /// `redis://127.0.0.1:P` of a running master (as last seen).
    pub fn seed_url(&self) -> String {
        let live = self.ports();
        let map = self.last_map.lock().unwrap();
        let port = map.iter().map(|r| r.2).find(|p| live.contains(p));
        format!("redis://127.0.0.1:{}", port.unwrap_or(live[0]))
    }

    /// Runs a command that must succeed on the node at `port`.
    async fn must(&self, port: u16, words: &[&str]) -> redis::Value {
        let result = self.conns.query(port, &cmd(words)).await;
        result.unwrap_or_else(|e| panic!("{words:?} on {port}: {e}"))
    }

    /// The cluster as the first running node that answers sees it.
    pub async fn view(&self) -> Vec<NodeView> {
        let start = Instant::now();
        let mut last = String::new();
        while start.elapsed() < DEADLINE {
            for p in self.ports() {
                match self
                    .conns
                    .query::<String>(p, &cmd(&["CLUSTER", "NODES"]))
                    .await
                {
                    Ok(text) => {
                        let view = parse_nodes(&text);
                        *self.last_map.lock().unwrap() = slot_map(&view);
                        return view;
                    }
                    Err(e) => last = format!("{p}: {e}"),
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no cluster node answers CLUSTER NODES; last: {last}")
    }

    /// Ports of the masters serving slots (what `CLUSTER SLOTS` lists; a
    /// killed master stays there until its replica is promoted), sorted.
    pub async fn masters(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = slot_map(&self.view().await).iter().map(|r| r.2).collect();
        ports.sort_unstable();
        ports.dedup();
        ports
    }

    /// Running replicas of the master at `master`.
    pub async fn replicas_of(&self, master: u16) -> Vec<u16> {
        let view = self.view().await;
        let id = &view
            .iter()
            .find(|n| n.port == master)
            .expect("known node")
            .id;
        let replicas = view.iter().filter(|n| n.master_id.as_ref() == Some(id));
        let live = self.ports();
        replicas
            .map(|n| n.port)
            .filter(|p| live.contains(p))
            .collect()
    }

    /// The port of the master serving `slot`.
    pub async fn owner_of_slot(&self, slot: u16) -> u16 {
        let view = self.view().await;
        let owner = view.iter().find(|n| n.owns(slot));
        owner
            .unwrap_or_else(|| panic!("slot {slot} unassigned"))
            .port
    }

    /// A name's slot as Redis computes it (`CLUSTER KEYSLOT`).
    pub async fn slot_of(&self, name: &str) -> u16 {
        let slot = self
            .must(self.ports()[0], &["CLUSTER", "KEYSLOT", name])
            .await;
        redis::from_redis_value::<u16>(slot).unwrap()
    }

    /// The port of the master serving `channel`'s slot.
    pub async fn owner_of(&self, channel: &str) -> u16 {
        self.owner_of_slot(key_slot(channel)).await
    }

    /// A channel name with no hash tag, `{stem}-{n}`, served by `master`.
    pub async fn channel_on(&self, master: u16, stem: &str) -> String {
        assert!(
            !stem.contains('{'),
            "stem {stem:?} must not hold a hash tag"
        );
        let view = self.view().await;
        let node = view
            .iter()
            .find(|n| n.port == master && !n.slots.is_empty());
        let node = node.unwrap_or_else(|| panic!("{master} is not a master serving slots"));
        let mut names = (0..1_000_000).map(|i| format!("{stem}-{i}"));
        names.find(|c| node.owns(key_slot(c))).unwrap()
    }

    /// SPUBLISH on the owner of `channel`'s slot; retries (fresh slot map)
    /// on MOVED/CLUSTERDOWN/refused until DEADLINE. Returns the receivers.
    pub async fn spublish(&self, channel: &str, payload: impl ToRedisArgs) -> i64 {
        let mut spublish = redis::cmd("SPUBLISH");
        spublish.arg(channel).arg(payload);
        let start = Instant::now();
        loop {
            let owner = self.owner_of(channel).await;
            let err = match self.conns.query(owner, &spublish).await {
                Ok(n) => return n,
                Err(e) => e,
            };
            assert!(
                start.elapsed() < DEADLINE,
                "SPUBLISH {channel} on {owner}: {err}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Runs `cmd` on the node at `port`.
    pub async fn query_on<T: redis::FromRedisValue>(
        &self,
        port: u16,
        cmd: &redis::Cmd,
    ) -> redis::RedisResult<T> {
        self.conns.query(port, cmd).await
    }

    /// Classic PUBLISH on the first running node that answers. The count is
    /// that node's local subscribers only (the bus carries it to the rest).
    pub async fn publish(&self, channel: &str, payload: impl ToRedisArgs) -> i64 {
        let mut publish = redis::cmd("PUBLISH");
        publish.arg(channel).arg(payload);
        for p in self.ports() {
            if let Ok(n) = self.conns.query(p, &publish).await {
                return n;
            }
        }
        panic!("no cluster node took PUBLISH {channel}")
    }

    /// `PUBSUB NUMSUB` (classic subscribers) on the node at `port`.
    pub async fn numsub_on(&self, port: u16, channel: &str) -> i64 {
        let (_, n): (String, i64) = self.pubsub(port, "NUMSUB", channel).await;
        n
    }

    /// `PUBSUB SHARDNUMSUB` on the node at `port` (answers for itself only).
    pub async fn shard_numsub_on(&self, port: u16, channel: &str) -> i64 {
        let (_, n): (String, i64) = self.pubsub(port, "SHARDNUMSUB", channel).await;
        n
    }

    /// `PUBSUB SHARDNUMSUB` asked on the owner of `channel`'s slot.
    pub async fn shard_numsub(&self, channel: &str) -> i64 {
        self.shard_numsub_on(self.owner_of(channel).await, channel)
            .await
    }

    async fn pubsub(&self, port: u16, sub: &str, channel: &str) -> (String, i64) {
        let v = self.must(port, &["PUBSUB", sub, channel]).await;
        redis::from_redis_value(v).unwrap()
    }

    /// SIGKILLs the node at `port` (no goodbye); `restart` brings it back.
    pub fn kill(&mut self, port: u16) {
        let map = self.last_map.lock().unwrap().clone();
        if let Some(&(slot, _, _)) = map.iter().find(|r| r.2 == port) {
            self.killed_slot.insert(port, slot);
        }
        self.node(port).redis.kill();
    }

    /// Starts a killed node again on its port, with its nodes.conf; a
    /// replaced master comes back as a replica (see `wait_stable`).
    pub fn restart(&mut self, port: u16) {
        self.node(port).redis.launch();
    }

    fn node(&mut self, port: u16) -> &mut Node {
        let node = self.nodes.iter_mut().find(|n| n.redis.port == port);
        node.unwrap_or_else(|| panic!("no node on port {port}"))
    }

    /// Waits (FAILOVER_DEADLINE) until the killed master's replica serves
    /// its slots and every running node says ok and agrees; returns the
    /// promoted node's port.
    pub async fn wait_failover(&self, killed: u16) -> u16 {
        let slot = self.killed_slot.get(&killed).copied();
        let slot = slot.unwrap_or_else(|| panic!("{killed} was not a killed master"));
        let what = format!("the failover of killed master {killed}");
        wait_for(&what, FAILOVER_DEADLINE, || self.agreed_map()).await;
        self.owner_of_slot(slot).await
    }

    /// Waits (DEADLINE) until every running node says `cluster_state:ok`,
    /// knows every node, agrees on a full slot map served by running nodes
    /// and on who replicates whom (no live node flagged failing), and (for
    /// replicas) has `master_link_status:up`.
    pub async fn wait_stable(&self) {
        wait_for("a stable cluster", DEADLINE, || self.agreed_map()).await;
    }

    /// Ok once the cluster is stable (see `wait_stable`), else what is not.
    async fn agreed_map(&self) -> Result<(), String> {
        let live = self.ports();
        let mut agreed = None;
        for &p in &live {
            let ask = |words: &'static [&'static str]| async move {
                let r = self.conns.query::<String>(p, &cmd(words)).await;
                r.map_err(|e| format!("{p}: {e}"))
            };
            let info = ask(&["CLUSTER", "INFO"]).await?;
            let state = info_field(&info, "cluster_state");
            let known = info_field(&info, "cluster_known_nodes");
            if state != Some("ok") || known != Some(&self.nodes.len().to_string()) {
                return Err(format!("{p}: state {state:?}, knows {known:?} nodes"));
            }
            let view = parse_nodes(&ask(&["CLUSTER", "NODES"]).await?);
            let seen = (slot_map(&view), roles(&view, &live)?);
            let served: u32 = seen.0.iter().map(|r| u32::from(r.1 - r.0) + 1).sum();
            if let Some(dead) = seen.0.iter().find(|r| !live.contains(&r.2)) {
                return Err(format!(
                    "{p}: slots {}-{} on dead {}",
                    dead.0, dead.1, dead.2
                ));
            }
            if served != SLOTS || agreed.as_ref().is_some_and(|a| *a != seen) {
                return Err(format!("{p} sees {seen:?}, another {agreed:?}"));
            }
            agreed = Some(seen);
            let me = view.iter().find(|n| n.has_flag("myself"));
            if me.is_some_and(|n| n.has_flag("slave")) {
                let info = ask(&["INFO", "replication"]).await?;
                let link = info_field(&info, "master_link_status");
                if link != Some("up") {
                    return Err(format!("replica {p}: master_link_status {link:?}"));
                }
            }
        }
        if let Some((map, _)) = agreed {
            *self.last_map.lock().unwrap() = map;
        }
        Ok(())
    }
}
