//! Replication of the knowledge shards between nodes.
//!
//! Every node gossips the heads summary of its shards on `osmoda/state/1`
//! when it changes and every few seconds. A node that sees a summary that
//! differs from its own runs rounds of Automerge sync with that peer over
//! direct requests (`DocSync`) until neither side has anything to send; the
//! peer answers each round from a session it keeps for the requester.
//! Shards that differ are the only ones synced.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use libp2p::PeerId;
use osmoda_crdt_state::{Actor, Outcome};
use osmoda_docs::{HeadsSummary, ShardId, StoreSync, SyncLimits};
use osmoda_fabric::behaviour::{DirectRequest, DirectResponse, ShardMessage, MAX_SHARD_MESSAGE};
use osmoda_fabric::FabricHandle;
use tracing::{debug, info};

use crate::audit::AuditLog;
use crate::docs::Docs;

/// Rounds one sync may take before it gives up (it is retried on the next
/// summary).
const MAX_ROUNDS: usize = 64;
/// Peers a node answers sync rounds for at once; sessions idle this long go.
const MAX_RESPONDERS: usize = 64;
const RESPONDER_IDLE: Duration = Duration::from_secs(60);

fn limits() -> SyncLimits {
    SyncLimits {
        max_message_bytes: MAX_SHARD_MESSAGE,
        ..SyncLimits::default()
    }
}

fn encode(messages: Vec<(ShardId, Vec<u8>)>) -> Vec<ShardMessage> {
    messages
        .into_iter()
        .map(|(shard, bytes)| ShardMessage {
            shard: shard.index(),
            data: STANDARD.encode(bytes),
        })
        .collect()
}

fn decode(messages: Vec<ShardMessage>) -> Vec<(ShardId, Vec<u8>)> {
    messages
        .into_iter()
        .filter_map(|m| Some((ShardId::new(m.shard)?, STANDARD.decode(m.data).ok()?)))
        .collect()
}

pub struct Replicator {
    docs: Arc<Docs>,
    audit: Arc<AuditLog>,
    fabric: FabricHandle,
    running: Mutex<HashSet<PeerId>>,
    responders: Mutex<HashMap<PeerId, (StoreSync, Instant)>>,
}

impl Replicator {
    pub fn new(docs: Arc<Docs>, audit: Arc<AuditLog>, fabric: FabricHandle) -> Arc<Self> {
        Arc::new(Self {
            docs,
            audit,
            fabric,
            running: Mutex::new(HashSet::new()),
            responders: Mutex::new(HashMap::new()),
        })
    }

    pub fn summary(&self) -> Vec<u8> {
        self.docs.summary().encode()
    }

    /// A peer's gossiped summary: start a sync with it if we differ.
    pub fn on_summary(self: &Arc<Self>, peer: PeerId, bytes: &[u8]) {
        let Ok(remote) = HeadsSummary::decode(bytes) else {
            debug!(%peer, "ignoring a malformed heads summary");
            return;
        };
        let local = self.docs.summary();
        if local.differing_shards(&remote).is_empty() {
            return;
        }
        if !self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(peer)
        {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            this.run(peer, local, remote).await;
            this.running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&peer);
        });
    }

    async fn run(&self, peer: PeerId, local: HeadsSummary, remote: HeadsSummary) {
        let mut sync = StoreSync::new(&local, &remote, limits());
        let mut changed = 0;
        for _ in 0..MAX_ROUNDS {
            let out = self.docs.sync_generate(&mut sync);
            if out.is_empty() {
                break;
            }
            let request = DirectRequest::DocSync {
                messages: encode(out),
            };
            let messages = match self.fabric.request(peer, request).await {
                Ok(DirectResponse::DocSync { messages }) => messages,
                Ok(other) => {
                    debug!(%peer, ?other, "sync refused");
                    return;
                }
                Err(e) => {
                    debug!(%peer, error = %e, "sync round failed");
                    return;
                }
            };
            match self.docs.sync_receive(&mut sync, decode(messages)) {
                Ok(n) => changed += n,
                Err(e) => {
                    debug!(%peer, error = %e, "cannot store synced shards");
                    return;
                }
            }
        }
        if changed > 0 {
            info!(%peer, shards = changed, "knowledge synced");
            self.audit_sync(peer, changed).await;
        }
    }

    async fn audit_sync(&self, peer: PeerId, shards: usize) {
        let actor = osmoda_fabric::node_key_of(&peer)
            .map(Actor::Peer)
            .unwrap_or(Actor::Node);
        let details = format!("{shards} shard(s) changed");
        if let Err(e) = self
            .audit
            .record(
                actor,
                "knowledge.sync",
                &peer.to_string(),
                Outcome::Ok,
                &details,
            )
            .await
        {
            tracing::warn!(error = %e, "cannot audit a sync");
        }
    }

    /// Answers a peer's round from the session kept for it.
    pub async fn answer(&self, peer: PeerId, messages: Vec<ShardMessage>) -> DirectResponse {
        let mut sync = {
            let mut responders = self.responders.lock().unwrap_or_else(|e| e.into_inner());
            responders.retain(|_, (_, used)| used.elapsed() < RESPONDER_IDLE);
            match responders.remove(&peer) {
                Some((sync, _)) => sync,
                None if responders.len() >= MAX_RESPONDERS => {
                    return DirectResponse::Refused {
                        reason: "busy".into(),
                    };
                }
                None => {
                    let local = self.docs.summary();
                    StoreSync::new(&local, &local, limits())
                }
            }
        };
        let changed = match self.docs.sync_receive(&mut sync, decode(messages)) {
            Ok(n) => n,
            Err(e) => {
                return DirectResponse::Refused {
                    reason: format!("{e:#}"),
                }
            }
        };
        let reply = self.docs.sync_generate(&mut sync);
        self.responders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(peer, (sync, Instant::now()));
        if changed > 0 {
            self.audit_sync(peer, changed).await;
        }
        DirectResponse::DocSync {
            messages: encode(reply),
        }
    }
}
