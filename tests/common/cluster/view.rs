//! The cluster as `CLUSTER NODES` shows it, and hash slots.

/// Hash slots in a cluster.
pub const SLOTS: u32 = 16384;

/// A slot range and the port of the master serving it: (first, last, port).
pub type SlotRange = (u16, u16, u16);

/// One line of `CLUSTER NODES`.
#[derive(Clone, Debug)]
pub struct NodeView {
    pub id: String,
    pub port: u16,
    /// e.g. `myself,master`, `slave`, `master,fail`.
    pub flags: String,
    /// The master's id, for a replica.
    pub master_id: Option<String>,
    /// Slot ranges served, inclusive (migrating/importing marks left out).
    pub slots: Vec<(u16, u16)>,
}

impl NodeView {
    /// Whether the node serves `slot`.
    pub fn owns(&self, slot: u16) -> bool {
        self.slots.iter().any(|&(a, b)| a <= slot && slot <= b)
    }

    /// Whether `flags` holds `flag` (`master`, `slave`, `myself`, `fail`...).
    pub fn has_flag(&self, flag: &str) -> bool {
        self.flags.split(',').any(|f| f == flag)
    }
}

/// Parses `CLUSTER NODES` output.
pub fn parse_nodes(text: &str) -> Vec<NodeView> {
    let range = |s: &str| match s.split_once('-') {
        Some((a, b)) => (a.parse().unwrap(), b.parse().unwrap()),
        None => (s.parse().unwrap(), s.parse().unwrap()),
    };
    let node = |line: &str| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let addr = f.get(1)?.split(['@', ',']).next()?;
        Some(NodeView {
            id: f[0].to_string(),
            port: addr.rsplit(':').next()?.parse().ok()?,
            flags: f.get(2)?.to_string(),
            master_id: Some(f.get(3)?.to_string()).filter(|m| m != "-"),
            slots: f
                .iter()
                .skip(8)
                .filter(|s| !s.starts_with('['))
                .map(|s| range(s))
                .collect(),
        })
    };
    text.lines().filter_map(node).collect()
}

/// The slot map of a view, sorted by first slot.
pub fn slot_map(view: &[NodeView]) -> Vec<SlotRange> {
    let mut map: Vec<SlotRange> = view
        .iter()
        .flat_map(|n| n.slots.iter().map(|&(a, b)| (a, b, n.port)))
        .collect();
    map.sort_unstable();
    map
}

/// A key's hash slot, computed locally like Redis (CRC16-XMODEM of the key,
/// or of its first non-empty `{hash tag}`, mod 16384).
pub fn key_slot(key: &str) -> u16 {
    let b = key.as_bytes();
    let tag = b.iter().position(|&c| c == b'{').and_then(|open| {
        let len = b[open + 1..].iter().position(|&c| c == b'}')?;
        (len > 0).then(|| &b[open + 1..open + 1 + len])
    });
    let mut crc = 0u16;
    for &byte in tag.unwrap_or(b) {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % SLOTS as u16
}

/// Each live node's (port, master's port if a replica), sorted; an error
/// if the view holds a live node as failing or still in handshake.
pub fn roles(view: &[NodeView], live: &[u16]) -> Result<Vec<(u16, Option<u16>)>, String> {
    let mut roles = Vec::new();
    for n in view.iter().filter(|n| live.contains(&n.port)) {
        if ["fail", "fail?", "handshake", "noaddr"]
            .iter()
            .any(|f| n.has_flag(f))
        {
            return Err(format!("node {} flagged {}", n.port, n.flags));
        }
        let master = view.iter().find(|m| Some(&m.id) == n.master_id.as_ref());
        roles.push((n.port, master.map(|m| m.port)));
    }
    roles.sort_unstable();
    Ok(roles)
}
