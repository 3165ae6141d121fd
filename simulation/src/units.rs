//! The small value syntaxes of scenario files: durations ("30s"), bandwidths
//! ("10Mbit/s" or bytes per second) and node sets ("all", "0..10", [1, 4]).
//!
//! Each parser returns a message without the field name: serde and the TOML
//! parser put the error next to the offending key and line, and the
//! scenario's own validation names the field itself.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

/// Deserializes a humantime duration ("500ms", "1m 30s").
pub(crate) fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(de::Error::custom)
}

/// Like `duration`, for optional fields (use with `#[serde(default)]`).
pub(crate) fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration {s:?} ({e}); write e.g. \"30s\" or \"500ms\""))
}

/// A link's throughput in bytes per second. Written as an integer (bytes
/// per second) or a string with a unit: `bit/s`, `kbit/s`, `Mbit/s`,
/// `Gbit/s` (powers of 1000, bits) or `B/s`, `kB/s`, `MB/s`, `GB/s`
/// (powers of 1000, bytes), `KiB/s`, `MiB/s`, `GiB/s` (powers of 1024).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bandwidth(pub u64);

impl<'de> Deserialize<'de> for Bandwidth {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Bandwidth;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("bytes per second, or a string like \"10Mbit/s\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Bandwidth, E> {
                Ok(Bandwidth(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Bandwidth, E> {
                u64::try_from(v)
                    .map(Bandwidth)
                    .map_err(|_| E::custom(format!("bandwidth {v} is negative")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Bandwidth, E> {
                parse_bandwidth(v).map(Bandwidth).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

pub(crate) fn parse_bandwidth(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("invalid bandwidth {s:?}: no number; write e.g. \"10Mbit/s\""))?;
    // Bytes per second per unit.
    let scale = match unit.trim() {
        "bit/s" | "bps" => 1.0 / 8.0,
        "kbit/s" | "kbps" => 1e3 / 8.0,
        "Mbit/s" | "Mbps" => 1e6 / 8.0,
        "Gbit/s" | "Gbps" => 1e9 / 8.0,
        "" | "B/s" => 1.0,
        "kB/s" | "KB/s" => 1e3,
        "MB/s" => 1e6,
        "GB/s" => 1e9,
        "KiB/s" => 1024.0,
        "MiB/s" => 1024.0 * 1024.0,
        "GiB/s" => 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "invalid bandwidth {s:?}: unknown unit {other:?} (bit/s, kbit/s, Mbit/s, Gbit/s, B/s, kB/s, MB/s, GB/s, KiB/s, MiB/s, GiB/s)"
            ))
        }
    };
    let bytes = (value * scale).round();
    if !(1.0..=u64::MAX as f64).contains(&bytes) {
        return Err(format!(
            "invalid bandwidth {s:?}: must be at least 1 byte/s"
        ));
    }
    Ok(bytes as u64)
}

/// A set of node indexes. Written as `"all"`, a string of comma-separated
/// items (`"3"`, `"0..10"` half-open, `"0..=9"` inclusive, e.g.
/// `"0..5,7,10..=12"`), a single integer, or an array of integers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum NodeSet {
    #[default]
    All,
    /// Half-open ranges, as written (resolved against the node count later).
    Ranges(Vec<(usize, usize)>),
}

impl NodeSet {
    /// The indexes in increasing order, without repeats; errors name the
    /// first index that is not below `nodes`.
    pub fn resolve(&self, nodes: usize) -> Result<Vec<usize>, String> {
        match self {
            NodeSet::All => Ok((0..nodes).collect()),
            NodeSet::Ranges(ranges) => {
                let mut out = Vec::new();
                for &(start, end) in ranges {
                    if end > nodes {
                        return Err(format!(
                            "node {} is out of range (the scenario has {nodes} nodes, 0..{nodes})",
                            end - 1
                        ));
                    }
                    out.extend(start..end);
                }
                out.sort_unstable();
                out.dedup();
                if out.is_empty() {
                    return Err("the node set is empty".into());
                }
                Ok(out)
            }
        }
    }

    pub fn parse(s: &str) -> Result<NodeSet, String> {
        let s = s.trim();
        if s == "all" {
            return Ok(NodeSet::All);
        }
        let mut ranges = Vec::new();
        for item in s.split(',') {
            ranges.push(parse_range(item.trim()).map_err(|e| {
                format!("invalid node set {s:?}: {e}; write \"all\", \"3\", \"0..10\", \"0..=9\" or a list [1, 2]")
            })?);
        }
        Ok(NodeSet::Ranges(ranges))
    }
}

fn parse_range(item: &str) -> Result<(usize, usize), String> {
    let num = |t: &str| {
        t.trim()
            .parse::<usize>()
            .map_err(|_| format!("{t:?} is not a node index"))
    };
    if let Some((a, b)) = item.split_once("..=") {
        let (a, b) = (num(a)?, num(b)?);
        if b < a {
            return Err(format!("range {item:?} is empty"));
        }
        Ok((a, b + 1))
    } else if let Some((a, b)) = item.split_once("..") {
        let (a, b) = (num(a)?, num(b)?);
        if b <= a {
            return Err(format!("range {item:?} is empty"));
        }
        Ok((a, b))
    } else {
        let n = num(item)?;
        Ok((n, n + 1))
    }
}

impl<'de> Deserialize<'de> for NodeSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeSetVisitor { group: false })
    }
}

/// One side of a partition: `[first, last]` (inclusive, as in
/// `groups = [[0, 24], [25, 49]]`) or a node-set string ("0..25", "0..5,9").
/// An array here is a range, not a list: two-element lists would be
/// ambiguous, so a list of single nodes is written as a string ("3,9").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group(pub NodeSet);

impl<'de> Deserialize<'de> for Group {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeSetVisitor { group: true }).map(Group)
    }
}

struct NodeSetVisitor {
    /// Arrays are `[first, last]` ranges (partition groups).
    group: bool,
}

impl<'de> Visitor<'de> for NodeSetVisitor {
    type Value = NodeSet;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.group {
            f.write_str("a group [first, last] or a node-set string like \"0..25\"")
        } else {
            f.write_str("\"all\", a range string like \"0..10\", an index or a list of indexes")
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<NodeSet, E> {
        NodeSet::parse(v).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<NodeSet, E> {
        let n = usize::try_from(v).map_err(|_| E::custom(format!("node {v} is out of range")))?;
        Ok(NodeSet::Ranges(vec![(n, n + 1)]))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<NodeSet, E> {
        match u64::try_from(v) {
            Ok(v) => self.visit_u64(v),
            Err(_) => Err(E::custom(format!("node index {v} is negative"))),
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NodeSet, A::Error> {
        let mut items: Vec<usize> = Vec::new();
        while let Some(n) = seq.next_element::<usize>()? {
            items.push(n);
        }
        if self.group {
            match items[..] {
                [first, last] if first <= last => Ok(NodeSet::Ranges(vec![(first, last + 1)])),
                _ => Err(de::Error::custom(format!(
                    "invalid group {items:?}: write [first, last] with first <= last, or a string like \"3,9\""
                ))),
            }
        } else {
            Ok(NodeSet::Ranges(
                items.into_iter().map(|n| (n, n + 1)).collect(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bandwidth_units() {
        assert_eq!(parse_bandwidth("8bit/s"), Ok(1));
        assert_eq!(parse_bandwidth("10Mbit/s"), Ok(1_250_000));
        assert_eq!(parse_bandwidth("1.5 MB/s"), Ok(1_500_000));
        assert_eq!(parse_bandwidth("1KiB/s"), Ok(1024));
        assert_eq!(parse_bandwidth("500"), Ok(500));
        assert!(parse_bandwidth("1 furlong/s").is_err());
        assert!(parse_bandwidth("0 B/s").is_err());
        assert!(parse_bandwidth("fast").is_err());
    }

    #[test]
    fn node_sets() {
        let r = |s: &str| NodeSet::parse(s).and_then(|n| n.resolve(20));
        assert_eq!(r("all").map(|v| v.len()), Ok(20));
        assert_eq!(r("0..3,7,9..=10"), Ok(vec![0, 1, 2, 7, 9, 10]));
        assert_eq!(r("2..2").map(|_| ()), Err("invalid node set \"2..2\": range \"2..2\" is empty; write \"all\", \"3\", \"0..10\", \"0..=9\" or a list [1, 2]".into()));
        assert!(r("0..21").unwrap_err().contains("node 20 is out of range"));
        assert!(r("x").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("30").is_err());
    }
}
