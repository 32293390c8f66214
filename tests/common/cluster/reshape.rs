//! Changing a running cluster's shape: slot migration, adding and
//! removing nodes.

use super::{slot_map, spawn_node, Cluster, Node};
use crate::common::topology::{cmd, wait_for};
use crate::common::DEADLINE;

impl Cluster {
    /// Moves `slot` to the master at `to` the documented way (IMPORTING on
    /// the target, MIGRATING on the source, MIGRATE its keys, then SETSLOT
    /// NODE on target, source and the other masters) and waits until all
    /// nodes agree. Moving a master's last slot makes it a replica (7.0).
    pub async fn migrate_slot(&self, slot: u16, to: u16) {
        let view = self.view().await;
        let src = view.iter().find(|n| n.owns(slot)).expect("slot assigned");
        let dst = view.iter().find(|n| n.port == to && n.has_flag("master"));
        let dst = dst.unwrap_or_else(|| panic!("{to} is not a master"));
        assert_ne!(src.port, to, "slot {slot} already on {to}");
        let (s, to_s) = (slot.to_string(), to.to_string());
        self.must(to, &["CLUSTER", "SETSLOT", &s, "IMPORTING", &src.id])
            .await;
        self.must(src.port, &["CLUSTER", "SETSLOT", &s, "MIGRATING", &dst.id])
            .await;
        loop {
            let keys = self
                .must(src.port, &["CLUSTER", "GETKEYSINSLOT", &s, "100"])
                .await;
            let keys: Vec<Vec<u8>> = redis::from_redis_value(keys).unwrap();
            if keys.is_empty() {
                break;
            }
            let mut migrate = cmd(&["MIGRATE", "127.0.0.1", &to_s, "", "0", "5000", "KEYS"]);
            migrate.arg(keys);
            let r: redis::RedisResult<()> = self.conns.query(src.port, &migrate).await;
            r.unwrap_or_else(|e| panic!("MIGRATE of slot {slot} to {to}: {e}"));
        }
        let mut order = vec![to, src.port];
        for p in slot_map(&view).into_iter().map(|r| r.2) {
            if !order.contains(&p) && self.ports().contains(&p) {
                order.push(p);
            }
        }
        for p in order {
            let set_node = cmd(&["CLUSTER", "SETSLOT", &s, "NODE", &dst.id]);
            match self.conns.query::<()>(p, &set_node).await {
                // A source that just lost its last slot may already have
                // turned replica of the target (7.0): nothing to tell it.
                Err(e) if p != to && e.to_string().contains("only with masters") => {}
                r => r.unwrap_or_else(|e| panic!("SETSLOT {s} NODE {to} on {p}: {e}")),
            }
        }
        let what = format!("every node to see slot {slot} on {to}");
        wait_for(&what, DEADLINE, || async {
            self.agreed_map().await?;
            let owner = self.owner_of_slot(slot).await;
            (owner == to)
                .then_some(())
                .ok_or(format!("slot {slot} on {owner}"))
        })
        .await;
    }

    /// Starts a 7th (8th, ...) node and makes it join (`CLUSTER MEET` with
    /// its bus port) as a master serving no slots; give it some with
    /// `migrate_slot`. Returns its port once the cluster is stable.
    pub async fn add_master(&mut self) -> u16 {
        let (redis, bus) = spawn_node();
        let port = redis.port;
        let id = redis::from_redis_value(self.must(port, &["CLUSTER", "MYID"]).await).unwrap();
        let seed = self.ports()[0];
        let seed_bus = self
            .nodes
            .iter()
            .find(|n| n.redis.port == seed)
            .unwrap()
            .bus;
        let (seed, seed_bus) = (seed.to_string(), seed_bus.to_string());
        self.must(port, &["CLUSTER", "MEET", "127.0.0.1", &seed, &seed_bus])
            .await;
        self.nodes.push(Node { redis, id, bus });
        self.wait_stable().await;
        port
    }

    /// Kills a node serving no slots and makes every other node forget it
    /// (`CLUSTER FORGET`, as `redis-cli --cluster del-node` does).
    pub async fn remove_node(&mut self, port: u16) {
        let view = self.view().await;
        let me = view.iter().find(|n| n.port == port).expect("known node");
        assert!(
            me.slots.is_empty(),
            "{port} serves slots; migrate them first"
        );
        self.kill(port);
        let i = self
            .nodes
            .iter()
            .position(|n| n.redis.port == port)
            .unwrap();
        let id = self.nodes.remove(i).id;
        for p in self.ports() {
            self.must(p, &["CLUSTER", "FORGET", &id]).await;
        }
        self.wait_stable().await;
    }

    /// Makes the node at `port` announce `announced` as its client port
    /// (`cluster-announce-port`), e.g. a proxy in front of it, and waits
    /// until every running node lists it there. Harness calls that find
    /// nodes through the topology then go through that port too.
    pub async fn announce_port(&self, port: u16, announced: u16) {
        let a = announced.to_string();
        self.must(port, &["CONFIG", "SET", "cluster-announce-port", &a])
            .await;
        let what = format!("every node to list {port} as {announced}");
        wait_for(&what, DEADLINE, || async {
            for p in self.ports() {
                let nodes: String = self
                    .conns
                    .query(p, &cmd(&["CLUSTER", "NODES"]))
                    .await
                    .map_err(|e| e.to_string())?;
                if !nodes.contains(&format!(":{announced}@")) {
                    return Err(format!("{p} does not list it yet"));
                }
            }
            Ok(())
        })
        .await;
    }
}
