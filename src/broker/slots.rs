//! Redis Cluster's key space: the slot of a channel name (CRC16 of the
//! name, or of its `{hash tag}`, modulo 16384, as Redis computes it for
//! keys and for sharded channels) and the map of slots to master nodes
//! read from `CLUSTER SLOTS`.

use crate::config::HostPort;
use redis::Value;

/// Slots in a Redis Cluster.
pub const SLOTS: u16 = 16384;

/// The slot of a key or sharded channel, hash tags honoured: when the name
/// holds `{...}` with at least one byte inside, only those bytes count.
pub fn key_slot(name: &[u8]) -> u16 {
    let tagged = name.iter().position(|&b| b == b'{').and_then(|open| {
        let rest = &name[open + 1..];
        let close = rest.iter().position(|&b| b == b'}')?;
        (close > 0).then(|| &rest[..close])
    });
    crc16::State::<crc16::XMODEM>::calculate(tagged.unwrap_or(name)) % SLOTS
}

/// Which master serves each slot, as one node saw it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SlotMap {
    /// `(first slot, last slot, master)`, sorted by first slot.
    ranges: Vec<(u16, u16, HostPort)>,
    /// Every node named (masters and replicas), for later refreshes.
    nodes: Vec<HostPort>,
}

impl SlotMap {
    /// Reads a `CLUSTER SLOTS` reply; `asked` stands in for a node that
    /// announces no host of its own (an empty or `?` host).
    pub fn from_cluster_slots(reply: Value, asked: &HostPort) -> Option<SlotMap> {
        let Value::Array(entries) = reply else {
            return None;
        };
        let mut map = SlotMap::default();
        for entry in entries {
            let Value::Array(fields) = entry else {
                return None;
            };
            let mut fields = fields.into_iter();
            let start = int(fields.next()?)?;
            let end = int(fields.next()?)?;
            let master = node(fields.next()?, asked)?;
            map.nodes.push(master.clone());
            map.nodes.extend(fields.filter_map(|f| node(f, asked)));
            let valid = start <= end && end < i64::from(SLOTS);
            valid.then_some(())?;
            map.ranges.push((start as u16, end as u16, master));
        }
        map.ranges.sort();
        map.nodes.sort();
        map.nodes.dedup();
        Some(map)
    }

    /// The master serving `slot`, if any does.
    pub fn owner(&self, slot: u16) -> Option<&HostPort> {
        let i = self.ranges.partition_point(|(start, _, _)| *start <= slot);
        let (_, end, node) = self.ranges.get(i.checked_sub(1)?)?;
        (slot <= *end).then_some(node)
    }

    /// Every master serving at least one slot, each once.
    pub fn masters(&self) -> Vec<HostPort> {
        let mut masters: Vec<HostPort> = self.ranges.iter().map(|r| r.2.clone()).collect();
        masters.sort();
        masters.dedup();
        masters
    }

    /// Every node the map names, masters and replicas.
    pub fn nodes(&self) -> &[HostPort] {
        &self.nodes
    }

    /// Slots no master serves (the cluster is down for them).
    pub fn uncovered(&self) -> usize {
        let covered: usize = self
            .ranges
            .iter()
            .map(|(s, e, _)| usize::from(e - s) + 1)
            .sum();
        usize::from(SLOTS).saturating_sub(covered)
    }

    /// The map with `slot` served by `node` (what a MOVED reply says),
    /// until the next read of the whole topology.
    pub fn with_owner(&self, slot: u16, node: &HostPort) -> SlotMap {
        let mut ranges = Vec::with_capacity(self.ranges.len() + 2);
        for (start, end, owner) in &self.ranges {
            if (*start..=*end).contains(&slot) {
                if *start < slot {
                    ranges.push((*start, slot - 1, owner.clone()));
                }
                if slot < *end {
                    ranges.push((slot + 1, *end, owner.clone()));
                }
            } else {
                ranges.push((*start, *end, owner.clone()));
            }
        }
        ranges.push((slot, slot, node.clone()));
        ranges.sort();
        let mut nodes = self.nodes.clone();
        if !nodes.contains(node) {
            nodes.push(node.clone());
            nodes.sort();
        }
        SlotMap { ranges, nodes }
    }

    /// A hash tag whose slot `node` serves: probe channels named with it
    /// land on that node.
    pub fn tag_on(&self, node: &HostPort) -> Option<String> {
        // Each master holds a share of the slots, so a few tries find one.
        (0u32..u32::from(SLOTS) * 8)
            .map(|n| n.to_string())
            .find(|tag| self.owner(key_slot(tag.as_bytes())) == Some(node))
    }
}

fn int(v: Value) -> Option<i64> {
    match v {
        Value::Int(n) => Some(n),
        _ => None,
    }
}

/// A node entry: `[host, port, id, ...]`.
fn node(v: Value, asked: &HostPort) -> Option<HostPort> {
    let Value::Array(parts) = v else {
        return None;
    };
    let mut parts = parts.into_iter();
    let host = match parts.next()? {
        Value::BulkString(b) => String::from_utf8(b).ok()?,
        Value::SimpleString(s) => s,
        _ => return None,
    };
    let port = u16::try_from(int(parts.next()?)?).ok()?;
    let host = match host.as_str() {
        "" | "?" => asked.host.clone(),
        _ => host,
    };
    Some(HostPort { host, port })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hp(port: u16) -> HostPort {
        HostPort {
            host: "127.0.0.1".into(),
            port,
        }
    }

    fn entry(start: i64, end: i64, ports: &[u16]) -> Value {
        let mut fields = vec![Value::Int(start), Value::Int(end)];
        for p in ports {
            fields.push(Value::Array(vec![
                Value::BulkString(b"127.0.0.1".to_vec()),
                Value::Int(i64::from(*p)),
                Value::BulkString(b"id".to_vec()),
            ]));
        }
        Value::Array(fields)
    }

    #[test]
    fn slots_match_redis_cluster_keyslot() {
        // Values from CLUSTER KEYSLOT on Redis 7.0.
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"{user1000}.following"), 3443);
        assert_eq!(key_slot(b"{user1000}.followers"), 3443);
        assert_eq!(key_slot(b"foo{}{bar}"), 8363);
        assert_eq!(key_slot(b"foo{{bar}}zap"), 4015);
        assert_eq!(key_slot(b"foo{bar}{zap}"), 5061);
        assert_eq!(key_slot(b""), 0);
    }

    #[test]
    fn cluster_slots_reply_maps_every_slot_to_its_master() {
        let reply = Value::Array(vec![
            entry(5461, 10922, &[7001, 7004]),
            entry(0, 5460, &[7000, 7003]),
            entry(10923, 16383, &[7002, 7005]),
        ]);
        let map = SlotMap::from_cluster_slots(reply, &hp(7000)).unwrap();
        assert_eq!(map.owner(0), Some(&hp(7000)));
        assert_eq!(map.owner(5460), Some(&hp(7000)));
        assert_eq!(map.owner(5461), Some(&hp(7001)));
        assert_eq!(map.owner(16383), Some(&hp(7002)));
        assert_eq!(map.masters(), vec![hp(7000), hp(7001), hp(7002)]);
        assert_eq!(map.nodes().len(), 6);
        assert_eq!(map.uncovered(), 0);
        let tag = map.tag_on(&hp(7001)).unwrap();
        assert_eq!(map.owner(key_slot(tag.as_bytes())), Some(&hp(7001)));
    }

    #[test]
    fn a_moved_slot_splits_its_range() {
        let reply = Value::Array(vec![entry(0, 99, &[7000]), entry(100, 199, &[7001])]);
        let map = SlotMap::from_cluster_slots(reply, &hp(1)).unwrap();
        let moved = map.with_owner(50, &hp(7001)).with_owner(0, &hp(7002));
        assert_eq!(moved.owner(0), Some(&hp(7002)));
        assert_eq!(moved.owner(1), Some(&hp(7000)));
        assert_eq!(moved.owner(49), Some(&hp(7000)));
        assert_eq!(moved.owner(50), Some(&hp(7001)));
        assert_eq!(moved.owner(51), Some(&hp(7000)));
        assert_eq!(moved.owner(150), Some(&hp(7001)));
        assert_eq!(moved.owner(300), None);
        assert_eq!(moved.masters(), vec![hp(7000), hp(7001), hp(7002)]);
        assert_eq!(map.with_owner(300, &hp(7000)).owner(300), Some(&hp(7000)));
    }

    #[test]
    fn gaps_and_garbage() {
        let map =
            SlotMap::from_cluster_slots(Value::Array(vec![entry(0, 99, &[7000])]), &hp(1)).unwrap();
        assert_eq!(map.owner(100), None);
        assert_eq!(map.uncovered(), 16284);
        assert_eq!(map.tag_on(&hp(7001)), None);
        assert!(SlotMap::from_cluster_slots(Value::Nil, &hp(1)).is_none());
        let bad = Value::Array(vec![entry(10, 20000, &[7000])]);
        assert!(SlotMap::from_cluster_slots(bad, &hp(1)).is_none());
    }
}
