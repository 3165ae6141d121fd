//! The emergency state of this node: the lockdown and freeze flags, and
//! the fleet's two emergency registers, one per flag: each holds the
//! newest signed command that set its flag (lockdown: LOCKDOWN and UNLOCK;
//! freeze: FREEZE, RESUME and STOP), ordered by issue time then nonce.
//! Separate registers, so that a later FREEZE cannot hide a LOCKDOWN. The
//! registers are what anti-entropy exchanges, so a member that was away
//! or joined later takes the fleet's current state from its neighbours.
//! Stored durably: a lockdown survives a restart, and a replayed fleet
//! command is recognised after one too.
//!
//! What the commands do, and the order they are applied in, is the
//! service's (`service/emergency.rs`); this is only the state.

use std::sync::{Arc, Mutex};

use osmoda_fabric::proto::{
    admit, admit_news, hex, parse_hex_bytes, Admission, EmergencyCommand, EmergencyKind,
};
use osmoda_store::{Batch, Store};
use serde::{Deserialize, Serialize};

use crate::error::{NodeError, NodeResult};

const TABLE: &str = "emergency";
const KEY: &[u8] = b"state";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EmergencyState {
    pub lockdown: bool,
    pub frozen: bool,
    /// The last fleet command applied: its time and nonce (hex).
    pub last_fleet_command: Option<(u64, String)>,
    /// What it was and who signed it, for `status`.
    pub last_fleet_kind: Option<String>,
    pub last_fleet_issuer: Option<String>,
    /// The lockdown register: the newest LOCKDOWN or UNLOCK applied, the
    /// signed command (hex). Absent in states stored before registers.
    #[serde(default)]
    pub lockdown_register: Option<String>,
    /// The freeze register: the newest FREEZE, RESUME or STOP applied.
    #[serde(default)]
    pub freeze_register: Option<String>,
}

/// The flag a fleet command writes, and so the register it belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    Lockdown,
    Freeze,
}

impl Flag {
    pub fn of(kind: EmergencyKind) -> Self {
        match kind {
            EmergencyKind::Lockdown | EmergencyKind::Unlock => Flag::Lockdown,
            EmergencyKind::Freeze | EmergencyKind::Resume | EmergencyKind::Stop => Flag::Freeze,
        }
    }
}

/// How a fleet command reached this node, which decides the rules it
/// meets: news (gossip, a relay, one made here) must be recent, while the
/// register exchange brings the fleet's current state, however old.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    News,
    Register,
}

impl EmergencyState {
    fn register(&self, flag: Flag) -> Option<EmergencyCommand> {
        let stored = match flag {
            Flag::Lockdown => &self.lockdown_register,
            Flag::Freeze => &self.freeze_register,
        };
        // Stored by this node after it verified the command: a damaged one
        // reads as empty, and the next exchange fills it again.
        EmergencyCommand::decode(&parse_hex_bytes(stored.as_deref()?)?).ok()
    }
}

/// Whether `mine` holds a command newer than what `theirs` holds for the
/// same flag (both lists of encoded commands; undecodable ones count as
/// absent): whether the peer that holds `theirs` lacks something.
pub fn holds_newer(mine: &[Vec<u8>], theirs: &[Vec<u8>]) -> bool {
    let decoded = |list: &[Vec<u8>]| -> Vec<EmergencyCommand> {
        list.iter()
            .filter_map(|b| EmergencyCommand::decode(b).ok())
            .collect()
    };
    let theirs = decoded(theirs);
    decoded(mine).iter().any(|m| {
        !theirs
            .iter()
            .any(|t| Flag::of(t.kind) == Flag::of(m.kind) && t.order() >= m.order())
    })
}

pub struct Emergency {
    store: Store,
    /// Shared with [`Emergency::lock_check`]'s closures.
    state: Arc<Mutex<EmergencyState>>,
}

impl Emergency {
    pub fn open(store: Store) -> NodeResult<Self> {
        let state = match store.get(TABLE, KEY)? {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                NodeError::Internal(format!("the stored emergency state is damaged: {e}"))
            })?,
            None => EmergencyState::default(),
        };
        Ok(Self {
            store,
            state: Arc::new(Mutex::new(state)),
        })
    }

    /// Whether the node is locked down, as a closure for parts that hold
    /// no reference to the node (the egress proxy asks at every
    /// connection).
    pub fn lock_check(&self) -> Arc<dyn Fn() -> bool + Send + Sync> {
        let state = self.state.clone();
        Arc::new(move || state.lock().unwrap_or_else(|e| e.into_inner()).lockdown)
    }

    pub fn state(&self) -> EmergencyState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn is_locked(&self) -> bool {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .lockdown
    }

    /// Stores `next` durably, then makes it the state. Callers serialise
    /// their read-modify-write (the service's emergency order lock).
    async fn save(&self, next: EmergencyState) -> NodeResult<()> {
        let bytes = serde_json::to_vec(&next).map_err(NodeError::internal)?;
        let mut batch = Batch::new();
        batch.put(TABLE, KEY, &bytes);
        self.store.submit_batch(batch)?.await?;
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = next;
        Ok(())
    }

    /// Sets the flags `kind` changes, durably, before anything acts on
    /// them: a crash halfway leaves the stricter state.
    pub async fn set_flags(&self, kind: EmergencyKind) -> NodeResult<()> {
        let mut next = self.state();
        match kind {
            EmergencyKind::Lockdown => next.lockdown = true,
            EmergencyKind::Unlock => next.lockdown = false,
            EmergencyKind::Freeze => next.frozen = true,
            EmergencyKind::Resume | EmergencyKind::Stop => next.frozen = false,
        }
        self.save(next).await
    }

    /// The signed commands the registers hold, encoded: what anti-entropy
    /// offers a neighbour.
    pub fn registers(&self) -> Vec<Vec<u8>> {
        let state = self.state();
        [Flag::Lockdown, Flag::Freeze]
            .into_iter()
            .filter_map(|flag| state.register(flag))
            .map(|cmd| cmd.encode())
            .collect()
    }

    /// The registers' digest (BLAKE3, first 16 bytes): two nodes with the
    /// same digest hold the same commands.
    pub fn digest(&self) -> [u8; 16] {
        let mut hasher = blake3::Hasher::new();
        for command in self.registers() {
            hasher.update(&(command.len() as u32).to_be_bytes());
            hasher.update(&command);
        }
        let mut out = [0; 16];
        out.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
        out
    }

    /// Whether `cmd` would be newer than what its register holds, by its
    /// order alone: worth verifying.
    pub fn is_newer(&self, cmd: &EmergencyCommand) -> bool {
        self.state()
            .register(Flag::of(cmd.kind))
            .is_none_or(|held| cmd.order() > held.order())
    }

    /// Whether a verified fleet command is to be applied: newer than what
    /// its flag's register holds and, as news, recent. The reason when not.
    pub fn admit(
        &self,
        cmd: &EmergencyCommand,
        now_ms: u64,
        arrival: Arrival,
    ) -> Result<(), String> {
        let held = self.state().register(Flag::of(cmd.kind)).map(|c| c.order());
        let admission = match arrival {
            Arrival::News => admit_news(held, cmd, now_ms),
            Arrival::Register => admit(held, cmd, now_ms),
        };
        match admission {
            Admission::Apply => Ok(()),
            Admission::Replay => Err(format!(
                "replay: not newer than the fleet's {} register",
                match Flag::of(cmd.kind) {
                    Flag::Lockdown => "lockdown",
                    Flag::Freeze => "freeze",
                }
            )),
            Admission::FromTheFuture => Err("dated in the future".into()),
            Admission::Stale => Err(format!(
                "stale: issued {} s ago, news may be at most {} s old",
                now_ms.saturating_sub(cmd.issued_at_ms) / 1000,
                osmoda_fabric::proto::emergency::MAX_NEWS_AGE_MS / 1000
            )),
        }
    }

    /// Records `cmd` in its flag's register as the last fleet command
    /// applied, with the flag it sets, in one durable write.
    pub async fn record_fleet(&self, cmd: &EmergencyCommand) -> NodeResult<()> {
        let mut next = self.state();
        let stored = Some(hex(&cmd.encode()));
        match Flag::of(cmd.kind) {
            Flag::Lockdown => next.lockdown_register = stored,
            Flag::Freeze => next.freeze_register = stored,
        }
        next.last_fleet_command = Some((cmd.issued_at_ms, hex(&cmd.nonce)));
        next.last_fleet_kind = Some(cmd.kind.as_str().into());
        next.last_fleet_issuer = osmoda_fabric::peer_id_of(&cmd.issuer.node).map(|p| p.to_string());
        match cmd.kind {
            EmergencyKind::Lockdown => next.lockdown = true,
            EmergencyKind::Unlock => next.lockdown = false,
            EmergencyKind::Freeze => next.frozen = true,
            EmergencyKind::Resume | EmergencyKind::Stop => next.frozen = false,
        }
        self.save(next).await
    }
}
