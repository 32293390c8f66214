//! A real Sentinel set for integration tests: 1 master, 1 replica and 3
//! sentinels (quorum 2) on free loopback ports, killed on Drop. The API is
//! async (tokio); every wait is bounded and says what it last saw.
//!
//! After a failover the old master, if alive (SENTINEL FAILOVER) or
//! restarted, goes on serving as a master for ~10 s before the sentinels
//! turn it into a replica (a fixed 8 s grace in Sentinel); PUBLISH also
//! reaches replicas, so check where a subscriber is with `numsub_by_node`.

use super::topology::{cmd, info_field, wait_for, Conns, FAILOVER_DEADLINE};
use super::{free_port, Redis, DEADLINE};
use redis::ToRedisArgs;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// `down-after-milliseconds`: how long a silent master takes to be down.
pub const DOWN_AFTER_MS: u64 = 1000;
/// `failover-timeout`: bounds a stuck promotion, and a failed election is
/// retried after twice this (the default, 3 min, would stall tests).
pub const FAILOVER_TIMEOUT_MS: u64 = 3000;
const NAME: &str = "mymaster";

/// A running master, replica and 3 sentinels; Drop kills them all.
pub struct SentinelSet {
    /// The data nodes: the initial master, then the initial replica.
    data: Vec<Redis>,
    sentinels: Vec<Redis>,
    conns: Conns,
}

/// Starts a Sentinel (`redis-server <conf> --sentinel`) on `port`; `conf`
/// holds the `sentinel ...` lines, in a file Sentinel may rewrite. Ready
/// when it logs its Sentinel ID (it never logs "Ready to accept").
fn spawn_sentinel(port: u16, conf: &str) -> Redis {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sentinel.conf");
    std::fs::write(&path, conf).unwrap();
    let mut redis = Redis {
        port,
        child: None,
        dir,
        extra: Vec::new(),
        sentinel_conf: Some(path),
    };
    redis.launch();
    redis
}

/// A data node; a replica of `master` if given.
fn data_node(master: Option<u16>) -> Redis {
    Redis::start_in_dir(free_port(), |_| {
        let mut args = vec!["--repl-diskless-sync-delay".to_string(), "0".into()];
        if let Some(m) = master {
            args.extend(["--replicaof".into(), "127.0.0.1".into(), m.to_string()]);
        }
        args
    })
}

impl SentinelSet {
    /// Starts the master and the replica, waits for the replica's link,
    /// then starts 3 sentinels and waits until each knows the replica
    /// and the 2 other sentinels (so a failover can be agreed on).
    pub async fn start() -> SentinelSet {
        let master = data_node(None);
        let replica = data_node(Some(master.port));
        let (m, r) = (master.port, replica.port);
        let mut set = SentinelSet {
            data: vec![master, replica],
            sentinels: Vec::new(),
            conns: Conns::default(),
        };
        set.wait_replica_of(r, m).await;
        let conf = format!(
            "sentinel monitor {NAME} 127.0.0.1 {m} 2\n\
             sentinel down-after-milliseconds {NAME} {DOWN_AFTER_MS}\n\
             sentinel failover-timeout {NAME} {FAILOVER_TIMEOUT_MS}\n\
             sentinel parallel-syncs {NAME} 1\n"
        );
        set.sentinels = (0..3).map(|_| spawn_sentinel(free_port(), &conf)).collect();
        let what = "every sentinel to know the replica and the 2 other sentinels";
        wait_for(what, DEADLINE, || set.sentinels_ready(r)).await;
        set
    }

    async fn sentinels_ready(&self, replica: u16) -> Result<(), String> {
        for s in self.sentinel_ports() {
            let replicas = self.sentinel_list(s, "REPLICAS").await?;
            let ok = replicas.iter().any(|r| {
                let flags = r.get("flags").map(String::as_str);
                r.get("port") == Some(&replica.to_string()) && flags == Some("slave")
            });
            let others = self.sentinel_list(s, "SENTINELS").await?.len();
            if !ok || others != 2 {
                return Err(format!(
                    "sentinel {s}: replicas {replicas:?}, {others} sentinels"
                ));
            }
        }
        Ok(())
    }

    /// `SENTINEL <sub> mymaster` (REPLICAS, SENTINELS) on sentinel `port`.
    async fn sentinel_list(
        &self,
        port: u16,
        sub: &str,
    ) -> Result<Vec<HashMap<String, String>>, String> {
        let r = self.conns.query(port, &cmd(&["SENTINEL", sub, NAME])).await;
        r.map_err(|e| format!("sentinel {port}: {e}"))
    }

    /// `127.0.0.1:port` of each sentinel (killed ones included).
    pub fn sentinel_addrs(&self) -> Vec<String> {
        let ports = self.sentinels.iter().map(|s| s.port);
        ports.map(|p| format!("127.0.0.1:{p}")).collect()
    }

    fn sentinel_ports(&self) -> Vec<u16> {
        let live = self.sentinels.iter().filter(|s| s.is_running());
        live.map(|s| s.port).collect()
    }

    /// The monitored master's name: "mymaster".
    pub fn master_name(&self) -> &str {
        NAME
    }

    /// Ports of the two data nodes (initial master first).
    pub fn data_ports(&self) -> Vec<u16> {
        self.data.iter().map(|r| r.port).collect()
    }

    /// The master's port per each running sentinel.
    async fn reported_masters(&self) -> Result<Vec<u16>, String> {
        let mut ports = Vec::new();
        for s in self.sentinel_ports() {
            let ask = cmd(&["SENTINEL", "get-master-addr-by-name", NAME]);
            let (_, port): (String, u16) = self
                .conns
                .query(s, &ask)
                .await
                .map_err(|e| format!("{s}: {e}"))?;
            ports.push(port);
        }
        Ok(ports)
    }

    /// The master's port as the first running sentinel that answers says.
    pub async fn master_port(&self) -> u16 {
        for s in self.sentinel_ports() {
            let ask = cmd(&["SENTINEL", "get-master-addr-by-name", NAME]);
            if let Ok((_, port)) = self.conns.query::<(String, u16)>(s, &ask).await {
                return port;
            }
        }
        panic!("no sentinel answers get-master-addr-by-name")
    }

    /// `SENTINEL FAILOVER` (retried while refused, e.g. INPROG), then
    /// `wait_new_master`. Returns the new master's port.
    pub async fn failover(&self) -> u16 {
        let old = self.master_port().await;
        wait_for("SENTINEL FAILOVER to be accepted", DEADLINE, || async {
            let s = self.sentinel_ports()[0];
            let r: redis::RedisResult<()> = self
                .conns
                .query(s, &cmd(&["SENTINEL", "FAILOVER", NAME]))
                .await;
            r.map_err(|e| format!("{s}: {e}"))
        })
        .await;
        self.wait_new_master(old).await
    }

    /// SIGKILLs the current master; returns its port.
    pub async fn kill_master(&mut self) -> u16 {
        let port = self.master_port().await;
        self.data_node(port).kill();
        port
    }

    /// Waits (FAILOVER_DEADLINE) until every running sentinel reports the
    /// same master other than `old` and that node answers ROLE as master.
    pub async fn wait_new_master(&self, old: u16) -> u16 {
        let what = format!("a new master instead of {old}");
        wait_for(&what, FAILOVER_DEADLINE, || async {
            let ports = self.reported_masters().await?;
            if ports.contains(&old) || ports.windows(2).any(|w| w[0] != w[1]) {
                return Err(format!("sentinels report {ports:?}"));
            }
            let role = self.role_of(ports[0]).await;
            (role == "master")
                .then_some(())
                .ok_or(format!("{}: role {role}", ports[0]))
        })
        .await;
        self.master_port().await
    }

    /// The first word of ROLE on `port` ("master", "slave"), or the error.
    pub async fn role_of(&self, port: u16) -> String {
        match self
            .conns
            .query::<Vec<redis::Value>>(port, &cmd(&["ROLE"]))
            .await
        {
            Ok(v) => redis::from_redis_value(v[0].clone()).unwrap(),
            Err(e) => format!("error: {e}"),
        }
    }

    /// Waits (FAILOVER_DEADLINE: Sentinel converts a stale master after
    /// ~10 s) until `port` replicates `master` with its link up.
    pub async fn wait_replica_of(&self, port: u16, master: u16) {
        let what = format!("{port} to be an up-to-date replica of {master}");
        wait_for(&what, FAILOVER_DEADLINE, || async {
            let info: String = self
                .conns
                .query(port, &cmd(&["INFO", "replication"]))
                .await
                .map_err(|e| e.to_string())?;
            let seen = ["role", "master_port", "master_link_status"].map(|f| info_field(&info, f));
            let want = [Some("slave"), Some(&*master.to_string()), Some("up")];
            (seen == want).then_some(()).ok_or(format!("{seen:?}"))
        })
        .await;
    }

    fn data_node(&mut self, port: u16) -> &mut Redis {
        let node = self.data.iter_mut().find(|r| r.port == port);
        node.unwrap_or_else(|| panic!("no data node on port {port}"))
    }

    /// Starts a killed data node again on its port (as a master, with no
    /// data: Sentinel makes it a replica ~10 s later; see `wait_replica_of`).
    pub fn restart(&mut self, port: u16) {
        self.data_node(port).launch();
    }

    /// SIGKILLs sentinel `i` (0..3).
    pub fn kill_sentinel(&mut self, i: usize) {
        self.sentinels[i].kill();
    }

    /// Starts sentinel `i` again, with the config it rewrote.
    pub fn restart_sentinel(&mut self, i: usize) {
        self.sentinels[i].launch();
    }

    /// PUBLISH on the current master (asked from the sentinels; retried
    /// until DEADLINE while it fails). Returns that node's receivers.
    pub async fn publish(&self, channel: &str, payload: impl ToRedisArgs) -> i64 {
        let mut publish = redis::cmd("PUBLISH");
        publish.arg(channel).arg(payload);
        let start = Instant::now();
        loop {
            let master = self.master_port().await;
            let err = match self.conns.query(master, &publish).await {
                Ok(n) => return n,
                Err(e) => e,
            };
            assert!(
                start.elapsed() < DEADLINE,
                "PUBLISH {channel} on {master}: {err}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `PUBSUB NUMSUB` on the data node at `port`.
    pub async fn numsub_on(&self, port: u16, channel: &str) -> i64 {
        let ask = cmd(&["PUBSUB", "NUMSUB", channel]);
        let r: redis::RedisResult<(String, i64)> = self.conns.query(port, &ask).await;
        r.unwrap_or_else(|e| panic!("PUBSUB NUMSUB on {port}: {e}"))
            .1
    }

    /// `(port, PUBSUB NUMSUB)` for each running data node: where a
    /// subscriber is connected, e.g. `[(master, 1), (replica, 0)]`.
    pub async fn numsub_by_node(&self, channel: &str) -> Vec<(u16, i64)> {
        let mut counts = Vec::new();
        for r in self.data.iter().filter(|r| r.is_running()) {
            counts.push((r.port, self.numsub_on(r.port, channel).await));
        }
        counts
    }

    /// Makes every running sentinel also monitor the node at `port` as
    /// the master `name` (`SENTINEL MONITOR`), whatever its real role.
    pub async fn monitor_as(&self, name: &str, port: u16) {
        let p = port.to_string();
        for s in self.sentinel_ports() {
            let monitor = cmd(&["SENTINEL", "MONITOR", name, "127.0.0.1", &p, "2"]);
            let r: redis::RedisResult<()> = self.conns.query(s, &monitor).await;
            r.unwrap_or_else(|e| panic!("SENTINEL MONITOR on {s}: {e}"));
        }
    }
}
