//! A rogue member for the simulator's `rogue` faults: a node of the fleet,
//! with its real key and certificate, that crafts what an honest node never
//! sends (as a modified build would) and publishes it through its own
//! fabric. Its document changes are made on copies of its own replica's
//! documents, by an authority that seals with its real key but tells the
//! copy it is an admin ([`Liar`]), so the copy writes what an honest node
//! refuses to; its own replica is left as it was.
//!
//! Each attempt's verdict is the one its own replica reaches on it: the
//! fleet's rules give every replica the same verdict, and the rogue's
//! replica holds the history its changes are made on. Whether the honest
//! nodes did refuse it is what the run's invariants check.

use std::sync::Arc;

use osmoda_docs::{
    derive_id, Action, Authority, ChangeHash, EntryUpdate, KnowledgeStore, NewEntry, NewRoutine,
    NodeActor, RoutineBook, Seal, ShardId, SharedAuthority, Standing, Target,
};
use osmoda_fabric::proto::{EmergencyCommand, EmergencyKind};
use osmoda_simulation::{Attack, AttackOutcome, FleetError};

use crate::replication::push::Push;
use crate::runtime::topics::{DOCS, EMERGENCY};
use crate::service::Node;
use crate::state::authority::NodeAuthority;
use crate::state::docs::ROUTINES;

fn err(e: impl std::fmt::Display) -> FleetError {
    FleetError::new(e)
}

/// The prefix of what a rogue node names (routines, entries), so that an
/// honest node holding one is found by name.
pub(super) const ROGUE_PREFIX: &str = "sim-rogue-";

/// A member's real authority that tells its own copy of a document it is
/// an admin: the copy then writes what an honest member's refuses to.
#[derive(Debug)]
pub struct Liar(pub NodeAuthority);

impl Authority for Liar {
    fn credential(&self) -> Vec<u8> {
        self.0.credential()
    }
    fn standing(&self) -> Standing {
        Standing::Admin
    }
    fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message)
    }
    fn judge(
        &self,
        actor: &[u8],
        hash: &ChangeHash,
        time_ms: i64,
        seal: &Seal,
        credential: &[u8],
    ) -> Result<Standing, String> {
        self.0.judge(actor, hash, time_ms, seal, credential)
    }
}

/// What a rogue attempt leaves to look for on the honest nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Mark {
    /// An entry the rogue made (unsealed): no honest node may hold it.
    Entry(String),
    /// A routine the rogue added, by name.
    Routine(String),
}

/// An entry of another node, as the rogue's replica holds it.
pub(super) struct Victim {
    pub id: String,
    /// The peer id of its author, whose actor a forged change takes.
    pub author: String,
}

/// One rogue node: the running node and its own credentials.
pub(super) struct Rogue {
    node: Arc<Node>,
    peer: String,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Rogue {
    pub(super) fn new(node: Arc<Node>) -> Self {
        let peer = node.fabric.local_peer_id().to_string();
        Self { node, peer }
    }

    /// What attempt number `seq` of `attack` leaves behind if taken.
    pub(super) fn mark(&self, attack: Attack, seq: u64) -> Option<Mark> {
        match attack {
            Attack::Unsealed => Some(Mark::Entry(derive_id(&self.peer, seq))),
            Attack::RoutineAdd => Some(Mark::Routine(format!("{ROGUE_PREFIX}routine-{seq}"))),
            _ => None,
        }
    }

    /// The authority the rogue's copies write with: its real key and
    /// certificate, claiming to be an admin.
    fn liar(&self) -> SharedAuthority {
        let signer = &self.node.signer;
        let key = ed25519_dalek::SigningKey::from_bytes(&signer.identity);
        let real = NodeAuthority::new(
            key,
            signer.credentials.clone(),
            self.node.membership.clone(),
        );
        Arc::new(Liar(real))
    }

    /// A copy of the rogue replica's `shard`, written as `actor`.
    fn copy(
        &self,
        actor: &str,
        authority: Option<SharedAuthority>,
        shard: ShardId,
    ) -> Result<KnowledgeStore, FleetError> {
        let mut node = NodeActor::new(actor).map_err(err)?;
        if let Some(authority) = authority {
            node = node.with_authority(authority);
        }
        let mut store = KnowledgeStore::new(node);
        if let Some(bytes) = self.node.docs.shard_bytes(shard) {
            store.load_shard(shard, &bytes).map_err(err)?;
        }
        Ok(store)
    }

    /// Makes attempt number `seq` of the run, the `nth` of its kind, of
    /// `attack` (against `victim` for the moves on another node's entry)
    /// and publishes it.
    pub(super) async fn attack(
        &self,
        attack: Attack,
        victim: Option<&Victim>,
        seq: u64,
        nth: u64,
    ) -> Result<AttackOutcome, FleetError> {
        let now = now_ms();
        let (topic, bytes, refused) = match attack {
            Attack::EmergencyJunk => {
                let bytes = self.junk(seq, nth)?;
                let refused = match EmergencyCommand::decode(&bytes) {
                    Err(_) => true,
                    Ok(cmd) => self.node.check_command(&cmd).is_err(),
                };
                (EMERGENCY, bytes, refused)
            }
            Attack::RoutineAdd => {
                let actor = NodeActor::new(&self.peer)
                    .map_err(err)?
                    .with_authority(self.liar());
                let mut book = RoutineBook::new(&actor);
                let name = format!("{ROGUE_PREFIX}routine-{seq}");
                book.add(
                    NewRoutine {
                        id: derive_id(&self.peer, seq),
                        name: name.clone(),
                        schedule: "every 1m".into(),
                        target: Target::All,
                        action: Action {
                            command: "/bin/sh".into(),
                            args: vec!["-c".into(), "echo owned".into()],
                            timeout_secs: 60,
                        },
                        enabled: true,
                        created_by: "rogue".into(),
                    },
                    now,
                )
                .map_err(err)?;
                let change = book
                    .doc()
                    .last_local_change()
                    .ok_or_else(|| err("the routine made no change"))?;
                self.docs_push(ROUTINES.wire, change)
            }
            Attack::Unsealed => {
                let id = derive_id(&self.peer, seq);
                let shard = ShardId::of(&id);
                let mut plain = self.copy(&self.peer, None, shard)?;
                let new = NewEntry {
                    id,
                    title: format!("{ROGUE_PREFIX}unsealed-{seq}"),
                    body: "no seal".into(),
                    tags: Vec::new(),
                    actor: "rogue".into(),
                };
                plain.put(new, now).map_err(err)?;
                self.shard_push(&plain, shard)?
            }
            Attack::EditForeign | Attack::DeleteForeign | Attack::ForgeActor => {
                let Some(victim) = victim else {
                    return Ok(AttackOutcome::NoTarget);
                };
                let shard = ShardId::of(&victim.id);
                let actor = match attack {
                    // Another node's actor, sealed with the rogue's key.
                    Attack::ForgeActor => victim.author.as_str(),
                    _ => self.peer.as_str(),
                };
                let mut copy = self.copy(actor, Some(self.liar()), shard)?;
                match attack {
                    Attack::DeleteForeign => copy.delete(&victim.id, now),
                    Attack::ForgeActor => {
                        copy.update_body(&victim.id, &format!("{ROGUE_PREFIX}forged-{seq}"), now)
                    }
                    _ => {
                        let update = EntryUpdate {
                            title: Some(format!("{ROGUE_PREFIX}defaced-{seq}")),
                            body: Some(format!("{ROGUE_PREFIX}defaced body {seq}")),
                            ..EntryUpdate::default()
                        };
                        copy.update(&victim.id, &update, now)
                    }
                }
                .map_err(err)?;
                self.shard_push(&copy, shard)?
            }
        };
        self.node
            .fabric
            .publish(topic, bytes)
            .await
            .map_err(|e| err(format!("publish on {topic}: {e}")))?;
        Ok(AttackOutcome::Sent {
            refused: Some(refused),
        })
    }

    /// The push of a copy's last change to `shard`, with the verdict of
    /// the rogue's own replica on it.
    fn shard_push(
        &self,
        copy: &KnowledgeStore,
        shard: ShardId,
    ) -> Result<(&'static str, Vec<u8>, bool), FleetError> {
        let change = copy
            .shard(shard)
            .and_then(|d| d.last_local_change())
            .ok_or_else(|| err("the copy made no change"))?;
        Ok(self.docs_push(shard.index(), change))
    }

    fn docs_push(&self, doc: u16, change: Vec<u8>) -> (&'static str, Vec<u8>, bool) {
        let refused = self.node.docs.judge_pushed(doc, &change).is_err();
        (DOCS, Push { doc, change }.encode(), refused)
    }

    /// Junk for the emergency topic, in turn: bytes that are no command,
    /// and a well-formed LOCKDOWN signed by this member, which is no admin.
    fn junk(&self, seq: u64, nth: u64) -> Result<Vec<u8>, FleetError> {
        if nth.is_multiple_of(2) {
            return Ok(format!("{ROGUE_PREFIX}junk-{seq}").into_bytes());
        }
        let signer = &self.node.signer;
        let key = ed25519_dalek::SigningKey::from_bytes(&signer.identity);
        let cmd = EmergencyCommand::sign(
            EmergencyKind::Lockdown,
            now_ms(),
            signer.cert(),
            &key,
            &mut rand::rngs::OsRng,
        )
        .map_err(err)?;
        Ok(cmd.encode())
    }
}
