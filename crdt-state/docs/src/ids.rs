//! Identifiers: entry and routine ids, node actors.
//!
//! Ids are restricted to a small ASCII alphabet so they are safe as map keys,
//! in file names, URLs and log lines, and compare the same everywhere.

use automerge::ActorId;

use crate::error::IdError;
use crate::seal::{SharedAuthority, Standing};

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

/// The namespace of a node's entry ids: 16 hex characters of a keyed
/// BLAKE3 hash of its node id. Entries are created only under their
/// author's namespace (see [`derive_id`]), so no member can take an id
/// another will write: 64 bits, too many to grind a key for.
pub fn id_namespace(node_id: &[u8]) -> String {
    let mut h = blake3::Hasher::new_derive_key("osmoda-docs entry namespace v1");
    h.update(node_id);
    hex16(h.finalize().as_bytes())
}

fn hex16(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(16);
    for b in &bytes[..8] {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Derives a 32-hex-character id: the writing node's [`id_namespace`],
/// then 16 hex characters of a keyed BLAKE3 hash of the node and a value
/// the caller makes unique for that node (a counter or random number), so
/// the id reveals nothing about the counter.
pub fn derive_id(node_id: &str, unique: u64) -> String {
    let mut h = blake3::Hasher::new_derive_key("osmoda-docs entry id v1");
    h.update(&(node_id.len() as u64).to_be_bytes());
    h.update(node_id.as_bytes());
    h.update(&unique.to_be_bytes());
    let mut id = id_namespace(node_id.as_bytes());
    id.push_str(&hex16(h.finalize().as_bytes()));
    id
}

/// Whether `id` is in the namespace of the node whose id is `node_id`.
pub(crate) fn id_belongs_to(id: &str, node_id: &[u8]) -> bool {
    id.len() == 32 && id.starts_with(&id_namespace(node_id))
}

/// A node's identity as a document writer: the node id (its Automerge actor)
/// and the name stamped on what it authors.
///
/// Every write of a node uses the same actor, so the fleet can attribute each
/// change. Automerge requires that an actor never reuses a sequence number:
/// a node that lost its stored shards must sync them back before writing, or
/// be given a new node id (e.g. the node id plus a storage epoch).
#[derive(Debug, Clone)]
pub struct NodeActor {
    node_id: String,
    actor: ActorId,
    /// Seals this node's changes and judges others'; without one (tests,
    /// tools reading stored documents) changes are neither sealed nor
    /// checked.
    authority: Option<SharedAuthority>,
}

impl PartialEq for NodeActor {
    fn eq(&self, other: &Self) -> bool {
        self.node_id == other.node_id
    }
}

impl Eq for NodeActor {}

impl NodeActor {
    /// `node_id` is 1..=128 bytes of `[A-Za-z0-9._-]` (e.g. the hex or
    /// base58 form of the node's public key).
    pub fn new(node_id: &str) -> Result<Self, IdError> {
        check_token("node id", node_id, MAX_NODE_ID_BYTES)?;
        Ok(Self {
            node_id: node_id.to_owned(),
            actor: ActorId::from(node_id.as_bytes()),
            authority: None,
        })
    }

    /// The same node, sealing its changes and judging others' with
    /// `authority`.
    pub fn with_authority(mut self, authority: SharedAuthority) -> Self {
        self.authority = Some(authority);
        self
    }

    pub(crate) fn authority(&self) -> Option<&SharedAuthority> {
        self.authority.as_ref()
    }

    /// What this node may do: an admin when it has no authority (nothing
    /// is checked then).
    pub(crate) fn standing(&self) -> Standing {
        crate::seal::standing_of(self.authority.as_ref())
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
    fn derived_ids_are_32_hex_in_their_node_namespace() {
        let a = derive_id("node-a", 1);
        assert_eq!(a.len(), 32);
        assert!(id_belongs_to(&a, b"node-a"));
        assert!(!id_belongs_to(&a, b"node-b"));
        assert!(!id_belongs_to(&a[..16], b"node-a"));
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
