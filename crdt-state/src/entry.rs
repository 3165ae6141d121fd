//! Audit entries and their exact binary encoding.
//!
//! An entry records one decision a node made: who asked ([`Actor`]), what
//! (`action` on `target`), at which trust ring, and how it ended
//! ([`Outcome`]). The encoding is the leaf of the Merkle tree and the input
//! of the hash chain, so it must be a bijection between valid entries and
//! accepted byte strings: `decode(encode(e)) == e` and
//! `encode(decode(b)) == b`. That is why every length has one width, every
//! string must be valid UTF-8, and decoding rejects trailing bytes.
//!
//! Layout (big-endian), version 1:
//!
//! | field | size |
//! |---|---|
//! | version | 1 (`0x01`) |
//! | seq | 8 |
//! | time_ms | 8 (Unix milliseconds) |
//! | actor tag | 1: `0` operator, `1` agent, `2` peer, `3` node |
//! | agent: id_len, id | 1 + 1..=64 (only for tag 1) |
//! | peer: node key | 32 (only for tag 2) |
//! | action_len, action | 1 + 1..=64, ASCII `0x21..=0x7e` |
//! | target_len, target | 2 + 0..=512, UTF-8 |
//! | ring | 1: 0, 1 or 2 |
//! | outcome tag | 1: `0` ok, `1` denied, `2` failed |
//! | failed: reason_len, reason | 2 + 0..=512, UTF-8 (only for tag 2) |
//! | details_len, details | 2 + 0..=4096, UTF-8 |

use osmoda_wire::{Reader, Truncated};

use crate::NodeKey;

const ENTRY_VERSION: u8 = 1;

/// Longest action name, in bytes.
pub const MAX_ACTION_LEN: usize = 64;
/// Longest agent id, in bytes.
pub const MAX_AGENT_LEN: usize = 64;
/// Longest target, in bytes.
pub const MAX_TARGET_LEN: usize = 512;
/// Longest failure reason, in bytes.
pub const MAX_REASON_LEN: usize = 512;
/// Longest details text, in bytes.
pub const MAX_DETAILS_LEN: usize = 4096;
/// Longest encoded entry. The fields above add up to 5,276 bytes at most; the
/// bound leaves room for a later version and is what readers check first.
pub const MAX_ENTRY_LEN: usize = 8192;
/// Highest trust ring (0 is the most trusted).
pub const MAX_RING: u8 = 2;

/// Why an entry could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("truncated encoding or trailing bytes")]
    Malformed,
    #[error("encoded entry of {0} bytes is over the 8 KiB limit")]
    TooLong(usize),
    #[error("unsupported entry version {0}")]
    Version(u8),
    #[error("unknown actor tag {0}")]
    UnknownActor(u8),
    #[error("unknown outcome tag {0}")]
    UnknownOutcome(u8),
    #[error("trust ring {0} is not 0, 1 or 2")]
    BadRing(u8),
    #[error("{field} is {len} bytes, outside {min}..={max}")]
    FieldLength {
        field: &'static str,
        len: usize,
        min: usize,
        max: usize,
    },
    #[error("{0} is not valid text for its field")]
    BadText(&'static str),
}

impl From<Truncated> for EntryError {
    fn from(_: Truncated) -> Self {
        EntryError::Malformed
    }
}

/// Who caused the entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Actor {
    /// The human operator, through the CLI or API.
    Operator,
    /// A local agent, by its id (1 to 64 bytes of UTF-8, no control characters).
    Agent(String),
    /// Another fleet member, by its identity key.
    Peer(NodeKey),
    /// The node itself (timers, housekeeping).
    Node,
}

/// How the action ended.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    Ok,
    Denied,
    /// Failed, with a reason of at most 512 bytes.
    Failed(String),
}

/// One audit record. `seq` is its position in the owner's log, from 0.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AuditEntry {
    pub seq: u64,
    /// Unix milliseconds, as the caller's clock gave it. Not required to
    /// increase: clocks step backwards, and the order that counts is `seq`.
    pub time_ms: u64,
    pub actor: Actor,
    /// A short dotted name such as `knowledge.put`.
    pub action: String,
    pub target: String,
    /// Trust ring of the actor when the decision was made, 0..=2.
    pub ring: u8,
    pub outcome: Outcome,
    pub details: String,
}

fn check_len(field: &'static str, len: usize, min: usize, max: usize) -> Result<(), EntryError> {
    if (min..=max).contains(&len) {
        Ok(())
    } else {
        Err(EntryError::FieldLength {
            field,
            len,
            min,
            max,
        })
    }
}

fn check_action(action: &str) -> Result<(), EntryError> {
    check_len("action", action.len(), 1, MAX_ACTION_LEN)?;
    // Printable ASCII without spaces: actions are identifiers that end up in
    // log lines and metrics labels.
    if action.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        Ok(())
    } else {
        Err(EntryError::BadText("action"))
    }
}

fn check_agent(id: &str) -> Result<(), EntryError> {
    check_len("agent id", id.len(), 1, MAX_AGENT_LEN)?;
    if id.chars().any(char::is_control) {
        return Err(EntryError::BadText("agent id"));
    }
    Ok(())
}

impl AuditEntry {
    /// Checks every bound the encoding enforces.
    pub fn validate(&self) -> Result<(), EntryError> {
        if let Actor::Agent(id) = &self.actor {
            check_agent(id)?;
        }
        check_action(&self.action)?;
        check_len("target", self.target.len(), 0, MAX_TARGET_LEN)?;
        if self.ring > MAX_RING {
            return Err(EntryError::BadRing(self.ring));
        }
        if let Outcome::Failed(reason) = &self.outcome {
            check_len("reason", reason.len(), 0, MAX_REASON_LEN)?;
        }
        check_len("details", self.details.len(), 0, MAX_DETAILS_LEN)
    }

    /// The exact encoding; fails only if a field is out of bounds.
    pub fn encode(&self) -> Result<Vec<u8>, EntryError> {
        self.validate()?;
        let mut out = Vec::with_capacity(64 + self.target.len() + self.details.len());
        out.push(ENTRY_VERSION);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.time_ms.to_be_bytes());
        match &self.actor {
            Actor::Operator => out.push(0),
            Actor::Agent(id) => {
                out.push(1);
                out.push(id.len() as u8);
                out.extend_from_slice(id.as_bytes());
            }
            Actor::Peer(key) => {
                out.push(2);
                out.extend_from_slice(key);
            }
            Actor::Node => out.push(3),
        }
        out.push(self.action.len() as u8);
        out.extend_from_slice(self.action.as_bytes());
        put_text16(&mut out, &self.target);
        out.push(self.ring);
        match &self.outcome {
            Outcome::Ok => out.push(0),
            Outcome::Denied => out.push(1),
            Outcome::Failed(reason) => {
                out.push(2);
                put_text16(&mut out, reason);
            }
        }
        put_text16(&mut out, &self.details);
        debug_assert!(out.len() <= MAX_ENTRY_LEN);
        Ok(out)
    }

    /// Parses and validates an entry; the inverse of [`AuditEntry::encode`].
    pub fn decode(bytes: &[u8]) -> Result<Self, EntryError> {
        if bytes.len() > MAX_ENTRY_LEN {
            return Err(EntryError::TooLong(bytes.len()));
        }
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != ENTRY_VERSION {
            return Err(EntryError::Version(version));
        }
        let seq = r.u64()?;
        let time_ms = r.u64()?;
        let actor = match r.u8()? {
            0 => Actor::Operator,
            1 => {
                let len = r.u8()? as usize;
                Actor::Agent(text(r.bytes(len)?, "agent id")?)
            }
            2 => Actor::Peer(r.array()?),
            3 => Actor::Node,
            other => return Err(EntryError::UnknownActor(other)),
        };
        let action_len = r.u8()? as usize;
        let action = text(r.bytes(action_len)?, "action")?;
        let target = text16(&mut r, "target")?;
        let ring = r.u8()?;
        let outcome = match r.u8()? {
            0 => Outcome::Ok,
            1 => Outcome::Denied,
            2 => Outcome::Failed(text16(&mut r, "reason")?),
            other => return Err(EntryError::UnknownOutcome(other)),
        };
        let details = text16(&mut r, "details")?;
        r.finish()?;
        let entry = AuditEntry {
            seq,
            time_ms,
            actor,
            action,
            target,
            ring,
            outcome,
            details,
        };
        // Bounds are checked on the decoded value so that decode accepts
        // exactly what encode can produce.
        entry.validate()?;
        Ok(entry)
    }
}

fn put_text16(out: &mut Vec<u8>, text: &str) {
    // Every u16-prefixed field is bounded well below 65,536 by validate().
    out.extend_from_slice(&(text.len() as u16).to_be_bytes());
    out.extend_from_slice(text.as_bytes());
}

fn text(bytes: &[u8], field: &'static str) -> Result<String, EntryError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| EntryError::BadText(field))
}

fn text16(r: &mut Reader<'_>, field: &'static str) -> Result<String, EntryError> {
    let len = r.u16()? as usize;
    text(r.bytes(len)?, field)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample(seq: u64) -> AuditEntry {
        AuditEntry {
            seq,
            time_ms: 1_700_000_000_000 + seq,
            actor: Actor::Agent("planner".into()),
            action: "knowledge.put".into(),
            target: format!("notes/{seq}"),
            ring: 1,
            outcome: Outcome::Failed("quota".into()),
            details: "ünïcode ok\nnewlines too".into(),
        }
    }

    #[test]
    fn round_trips_every_variant() {
        let actors = [
            Actor::Operator,
            Actor::Agent("a".into()),
            Actor::Peer([7; 32]),
            Actor::Node,
        ];
        let outcomes = [Outcome::Ok, Outcome::Denied, Outcome::Failed(String::new())];
        for actor in &actors {
            for outcome in &outcomes {
                let e = AuditEntry {
                    actor: actor.clone(),
                    outcome: outcome.clone(),
                    ..sample(3)
                };
                let bytes = e.encode().unwrap();
                assert_eq!(AuditEntry::decode(&bytes).unwrap(), e);
            }
        }
    }

    #[test]
    fn largest_entry_fits() {
        let e = AuditEntry {
            actor: Actor::Agent("x".repeat(MAX_AGENT_LEN)),
            action: "y".repeat(MAX_ACTION_LEN),
            target: "t".repeat(MAX_TARGET_LEN),
            outcome: Outcome::Failed("r".repeat(MAX_REASON_LEN)),
            details: "d".repeat(MAX_DETAILS_LEN),
            ..sample(0)
        };
        let bytes = e.encode().unwrap();
        assert_eq!(bytes.len(), 5276);
        assert_eq!(AuditEntry::decode(&bytes).unwrap(), e);
    }

    #[test]
    fn bounds_are_enforced_both_ways() {
        let bad = [
            AuditEntry {
                action: String::new(),
                ..sample(0)
            },
            AuditEntry {
                action: "has space".into(),
                ..sample(0)
            },
            AuditEntry {
                actor: Actor::Agent(String::new()),
                ..sample(0)
            },
            AuditEntry {
                actor: Actor::Agent("a\u{7}".into()),
                ..sample(0)
            },
            AuditEntry {
                target: "t".repeat(MAX_TARGET_LEN + 1),
                ..sample(0)
            },
            AuditEntry {
                details: "d".repeat(MAX_DETAILS_LEN + 1),
                ..sample(0)
            },
            AuditEntry {
                ring: 3,
                ..sample(0)
            },
        ];
        for e in bad {
            assert!(e.encode().is_err(), "{e:?}");
        }
        // A ring byte of 3 on the wire is refused as well.
        let mut bytes = AuditEntry {
            outcome: Outcome::Ok,
            details: String::new(),
            ..sample(0)
        }
        .encode()
        .unwrap();
        let ring_at = bytes.len() - 4;
        bytes[ring_at] = 3;
        assert_eq!(AuditEntry::decode(&bytes), Err(EntryError::BadRing(3)));
    }

    #[test]
    fn trailing_and_missing_bytes_are_refused() {
        let bytes = sample(9).encode().unwrap();
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(AuditEntry::decode(&longer), Err(EntryError::Malformed));
        for cut in 0..bytes.len() {
            assert!(AuditEntry::decode(&bytes[..cut]).is_err());
        }
    }
}
