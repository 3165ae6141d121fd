//! Identifiers: entry and routine ids, node actors.
//!
//! Ids are restricted to a small ASCII alphabet so they are safe as map keys,
//! in file names, URLs and log lines, and compare the same everywhere.

use automerge::ActorId;

use crate::error::IdError;

/// Longest entry or routine id, in bytes.
pub const MAX_ID_BYTES: usize = 64;
/// Longest node id (the Automerge actor) and actor name, in bytes.
pub const MAX_NODE_ID_BYTES: usize = 128;

/// Checks that `value` is 1..=`max` bytes of `[A-Za-z0-9._-]`.
pub(crate) fn check_token(what: &'static str, value: &str, max: usize) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty { what });
    }
    if value.len() > max {
        return Err(IdError::TooLong {
            what,
            len: value.len(),
            max,
        });
    }
    if let Some(ch) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(IdError::BadChar {
            what,
            value: value.to_owned(),
            ch,
        });
    }
    Ok(())
}

/// Checks an actor (agent id or user name): 1..=128 bytes without
/// whitespace or control characters, so `agent:planner` or `alice@ops`
/// are fine.
pub(crate) fn check_actor(actor: &str) -> Result<(), IdError> {
    let what = "actor";
    if actor.is_empty() {
        return Err(IdError::Empty { what });
    }
    if actor.len() > MAX_NODE_ID_BYTES {
        return Err(IdError::TooLong {
            what,
            len: actor.len(),
            max: MAX_NODE_ID_BYTES,
        });
    }
    if let Some(ch) = actor.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(IdError::BadChar {
            what,
            value: actor.to_owned(),
            ch,
        });
    }
    Ok(())
}

/// Checks an entry or routine id.
pub fn check_id(id: &str) -> Result<(), IdError> {
    check_token("id", id, MAX_ID_BYTES)
}

/// Derives a 16-hex-character id from the writing node and a value the
/// caller makes unique for that node (a counter or random number). Keyed
/// BLAKE3, so ids from different nodes do not collide in practice (64 bits)
/// and the id reveals nothing about the counter.
pub fn derive_id(node_id: &str, unique: u64) -> String {
    let mut h = blake3::Hasher::new_derive_key("osmoda-docs entry id v1");
    h.update(&(node_id.len() as u64).to_be_bytes());
    h.update(node_id.as_bytes());
    h.update(&unique.to_be_bytes());
    let digest = h.finalize();
    let mut out = String::with_capacity(16);
    for b in &digest.as_bytes()[..8] {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// A node's identity as a document writer: the node id (its Automerge actor)
/// and the name stamped on what it authors.
///
/// Every write of a node uses the same actor, so the fleet can attribute each
/// change. Automerge requires that an actor never reuses a sequence number:
/// a node that lost its stored shards must sync them back before writing, or
/// be given a new node id (e.g. the node id plus a storage epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeActor {
    node_id: String,
    actor: ActorId,
}

impl NodeActor {
    /// `node_id` is 1..=128 bytes of `[A-Za-z0-9._-]` (e.g. the hex or
    /// base58 form of the node's public key).
    pub fn new(node_id: &str) -> Result<Self, IdError> {
        check_token("node id", node_id, MAX_NODE_ID_BYTES)?;
        Ok(Self {
            node_id: node_id.to_owned(),
            actor: ActorId::from(node_id.as_bytes()),
        })
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    pub(crate) fn actor_id(&self) -> &ActorId {
        &self.actor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_16_hex_and_valid() {
        let a = derive_id("node-a", 1);
        assert_eq!(a.len(), 16);
        assert!(check_id(&a).is_ok());
        assert_ne!(a, derive_id("node-a", 2));
        assert_ne!(a, derive_id("node-b", 1));
    }

    #[test]
    fn bad_ids_are_refused() {
        assert_eq!(check_id(""), Err(IdError::Empty { what: "id" }));
        assert!(matches!(
            check_id("a b"),
            Err(IdError::BadChar { ch: ' ', .. })
        ));
        assert!(matches!(
            check_id(&"x".repeat(65)),
            Err(IdError::TooLong { len: 65, .. })
        ));
        assert!(NodeActor::new("node/1").is_err());
    }
}
