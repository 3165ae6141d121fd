//! Agent cards: what each agent offers the fleet (description, skills,
//! the rings it takes tasks from), kept beside its spec in the store's
//! `agents-card` table, and the fleet's cards as each node last
//! advertised them on `osmoda/cards/1`.
//!
//! A node's advertisement is its whole card set, signed by the gossip
//! envelope (the fabric takes only a current member's), bounded in size
//! and count; the newest set a node issued replaces the one before.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use libp2p::PeerId;
use serde::{Deserialize, Serialize};

use crate::error::{NodeError, NodeResult};

/// Store table of the node's own agents' cards, by agent name.
pub const TABLE: &str = "agents-card";
/// Longest description, in bytes.
pub const MAX_DESCRIPTION: usize = 512;
/// Skills one agent may list.
pub const MAX_SKILLS: usize = 16;
/// Longest skill name, in bytes.
pub const MAX_SKILL: usize = 48;
/// Cards one node advertises: the first ones by name when it runs more
/// agents. With the bounds above a set stays under 48 KiB, inside a
/// gossip message (64 KiB).
pub const MAX_CARDS_PER_NODE: usize = 48;
/// Nodes whose card sets are kept; more are dropped, oldest first.
pub const MAX_NODES: usize = 4096;
/// Largest encoded card set.
pub const MAX_SET_BYTES: usize = 60 * 1024;

/// The rings an agent takes tasks from when its card does not say: the
/// operator (0) and trusted ring-1 agents. A task makes an agent work for
/// someone else; ring-2 agents are the least trusted, so an agent takes
/// their tasks only when its operator says so (`--accept-rings 0,1,2`).
pub fn default_rings() -> Vec<u8> {
    vec![0, 1]
}

/// One agent's card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Card {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub skills: Vec<String>,
    #[serde(default = "default_rings")]
    pub accept_rings: Vec<u8>,
    /// Whether the agent runs (a stopped agent's tasks wait in its inbox).
    #[serde(default)]
    pub running: bool,
}

impl Card {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            description: String::new(),
            skills: Vec::new(),
            accept_rings: default_rings(),
            running: false,
        }
    }

    pub fn check(&self) -> NodeResult<()> {
        let bad = |what: String| Err(NodeError::Invalid(what));
        if self.name.is_empty() || self.name.len() > 64 {
            return bad("an agent's name is 1 to 64 bytes".into());
        }
        if self.description.len() > MAX_DESCRIPTION || self.description.contains(['\0', '\r']) {
            return bad(format!(
                "a description holds at most {MAX_DESCRIPTION} bytes, no NUL or CR"
            ));
        }
        if self.skills.len() > MAX_SKILLS {
            return bad(format!("an agent lists at most {MAX_SKILLS} skills"));
        }
        for skill in &self.skills {
            if skill.is_empty()
                || skill.len() > MAX_SKILL
                || !skill
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.:/".contains(c))
            {
                return bad(format!(
                    "skill {skill:?}: 1 to {MAX_SKILL} bytes of a-z, 0-9, '-', '_', '.', ':', '/'"
                ));
            }
        }
        if self.accept_rings.len() > 3 || self.accept_rings.iter().any(|r| *r > 2) {
            return bad("accepted rings are among 0 (operator), 1 and 2".into());
        }
        Ok(())
    }

    pub fn has_skill(&self, skill: &str) -> bool {
        self.skills.iter().any(|s| s.eq_ignore_ascii_case(skill))
    }
}

/// What a node advertises: every agent's card, and when it said so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardSet {
    /// Unix milliseconds at the issuer; the newest set wins.
    pub issued_ms: u64,
    pub node_name: String,
    pub cards: Vec<Card>,
}

impl CardSet {
    pub fn encode(&self) -> NodeResult<Vec<u8>> {
        serde_json::to_vec(self).map_err(NodeError::internal)
    }

    pub fn decode(bytes: &[u8]) -> NodeResult<Self> {
        if bytes.len() > MAX_SET_BYTES {
            return Err(NodeError::TooLarge(format!(
                "a card set is at most {MAX_SET_BYTES} bytes"
            )));
        }
        let set: CardSet = serde_json::from_slice(bytes)
            .map_err(|e| NodeError::Invalid(format!("a card set that does not parse: {e}")))?;
        if set.cards.len() > MAX_CARDS_PER_NODE || set.node_name.len() > 128 {
            return Err(NodeError::Invalid(format!(
                "a card set holds at most {MAX_CARDS_PER_NODE} cards"
            )));
        }
        for card in &set.cards {
            card.check()?;
        }
        Ok(set)
    }
}

/// One node's advertised set, as held here.
#[derive(Debug, Clone)]
pub struct Advertised {
    pub set: CardSet,
    pub received: Instant,
}

/// The fleet's card sets, by node.
#[derive(Default)]
pub struct FleetCards {
    sets: Mutex<HashMap<PeerId, Advertised>>,
}

impl FleetCards {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PeerId, Advertised>> {
        self.sets.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `set` is newer than what is held from `node`.
    pub fn is_news(&self, node: &PeerId, set: &CardSet) -> bool {
        self.lock()
            .get(node)
            .is_none_or(|held| set.issued_ms > held.set.issued_ms)
    }

    /// Keeps `set` if it is the newest from `node`; whether it was.
    pub fn insert(&self, node: PeerId, set: CardSet) -> bool {
        let mut sets = self.lock();
        if sets
            .get(&node)
            .is_some_and(|held| set.issued_ms <= held.set.issued_ms)
        {
            return false;
        }
        if !sets.contains_key(&node) && sets.len() >= MAX_NODES {
            let oldest = sets
                .iter()
                .min_by_key(|(_, a)| a.received)
                .map(|(peer, _)| *peer);
            if let Some(oldest) = oldest {
                sets.remove(&oldest);
            }
        }
        sets.insert(
            node,
            Advertised {
                set,
                received: Instant::now(),
            },
        );
        true
    }

    pub fn remove(&self, node: &PeerId) {
        self.lock().remove(node);
    }

    pub fn all(&self) -> Vec<(PeerId, Advertised)> {
        self.lock().iter().map(|(p, a)| (*p, a.clone())).collect()
    }
}
