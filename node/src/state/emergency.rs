//! The emergency register of this node: the lockdown and freeze flags, and
//! the last fleet command applied (a last-writer-wins register by issue
//! time and nonce). Stored durably: a lockdown survives a restart, and a
//! replayed fleet command is recognised after one too.
//!
//! What the commands do, and the order they are applied in, is the
//! service's (`service/emergency.rs`); this is only the state.

use std::sync::{Arc, Mutex};

use osmoda_fabric::proto::{admit, hex, parse_hex, Admission, EmergencyCommand, EmergencyKind};
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

    /// Whether a verified fleet command is newer than the last one applied;
    /// the reason when it is not.
    pub fn admit(&self, cmd: &EmergencyCommand, now_ms: u64) -> Result<(), String> {
        let last = self
            .state()
            .last_fleet_command
            .and_then(|(t, n)| Some((t, parse_hex::<16>(&n)?)));
        match admit(last, cmd, now_ms) {
            Admission::Apply => Ok(()),
            Admission::Replay => Err("replay: not newer than the last command applied".into()),
            Admission::FromTheFuture => Err("dated in the future".into()),
        }
    }

    /// Records `cmd` as the last fleet command applied, with the flags it
    /// sets, in one durable write.
    pub async fn record_fleet(&self, cmd: &EmergencyCommand) -> NodeResult<()> {
        let mut next = self.state();
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
