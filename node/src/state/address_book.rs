//! The peers this node has met and where they listened, kept in the store
//! (table `peers`): a node that restarts dials them besides its bootstrap
//! addresses, so that a node back on new random ports finds the fleet by
//! itself (and the fleet learns its new address from its identify), and a
//! node whose bootstrap peer moved still finds the others.
//!
//! Fed by what the fabric learns from identify (`FabricEvent::
//! PeerIdentified`). Bounded: [`MAX_PEERS`] peers of [`MAX_ADDRS`]
//! addresses each, the peer seen longest ago evicted first. A peer seen
//! again at the same addresses is written at most every [`REWRITE_AFTER_MS`],
//! so that reconnections do not cost an fsync each.

use std::collections::HashMap;
use std::sync::Mutex;

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use osmoda_crdt_state::NodeKey;
use osmoda_fabric::KnownPeer;
use osmoda_store::{Ack, Batch, Store, StoreError};
use osmoda_wire::Reader;

const TABLE: &str = "peers";
const VERSION: u8 = 1;
/// Peers remembered.
pub const MAX_PEERS: usize = 1024;
/// Addresses remembered per peer.
pub const MAX_ADDRS: usize = 8;
/// Longest address kept, in its binary form.
const MAX_ADDR_BYTES: usize = 255;
/// Longest name kept (a certificate's names are at most 63 bytes).
const MAX_NAME: usize = 63;
/// A peer seen at unchanged addresses is written again after this long.
pub const REWRITE_AFTER_MS: u64 = 10 * 60 * 1000;

/// What the book holds about one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRecord {
    /// From its certificate, when known.
    pub name: String,
    pub addrs: Vec<Multiaddr>,
    /// Unix milliseconds.
    pub last_seen_ms: u64,
}

impl PeerRecord {
    fn encode(&self) -> Vec<u8> {
        let mut out = vec![VERSION];
        out.extend_from_slice(&self.last_seen_ms.to_be_bytes());
        let name = self.name.as_bytes();
        let name = &name[..name.len().min(MAX_NAME)];
        out.push(name.len() as u8);
        out.extend_from_slice(name);
        out.push(self.addrs.len() as u8);
        for addr in &self.addrs {
            let bytes = addr.to_vec();
            out.push(bytes.len() as u8);
            out.extend_from_slice(&bytes);
        }
        out
    }

    fn decode(bytes: &[u8]) -> Option<Self> {
        let mut r = Reader::new(bytes);
        if r.u8().ok()? != VERSION {
            return None;
        }
        let last_seen_ms = r.u64().ok()?;
        let len = usize::from(r.u8().ok()?);
        if len > MAX_NAME {
            return None;
        }
        let name = String::from_utf8(r.bytes(len).ok()?.to_vec()).ok()?;
        let n = usize::from(r.u8().ok()?);
        if n > MAX_ADDRS {
            return None;
        }
        let mut addrs = Vec::with_capacity(n);
        for _ in 0..n {
            let len = usize::from(r.u8().ok()?);
            addrs.push(Multiaddr::try_from(r.bytes(len).ok()?.to_vec()).ok()?);
        }
        r.finish().ok()?;
        Some(Self {
            name,
            addrs,
            last_seen_ms,
        })
    }
}

/// Whether another node could dial `addr`: a concrete IP or DNS name and a
/// port, without a relay. A trailing `/p2p/...` is dropped.
fn dialable(addr: &Multiaddr) -> Option<Multiaddr> {
    let mut out = Multiaddr::empty();
    let mut host = false;
    for p in addr.iter() {
        match p {
            Protocol::Ip4(ip) if ip.is_unspecified() => return None,
            Protocol::Ip6(ip) if ip.is_unspecified() => return None,
            Protocol::Ip4(_)
            | Protocol::Ip6(_)
            | Protocol::Dns(_)
            | Protocol::Dns4(_)
            | Protocol::Dns6(_) => host = true,
            Protocol::P2pCircuit => return None,
            Protocol::P2p(_) => break,
            _ => {}
        }
        out.push(p);
    }
    (host && out.to_vec().len() <= MAX_ADDR_BYTES).then_some(out)
}

struct Entry {
    record: PeerRecord,
    /// When the record was last written.
    written_ms: u64,
}

/// The address book; cheap to share (`Arc`), every method takes `&self`.
pub struct AddressBook {
    store: Store,
    peers: Mutex<HashMap<NodeKey, Entry>>,
}

impl AddressBook {
    /// Loads the book; records that do not decode are skipped (they are
    /// replaced when their peer is seen again).
    pub fn open(store: Store) -> Result<Self, StoreError> {
        let mut peers = HashMap::new();
        for (key, value) in store.scan_prefix(TABLE, b"", MAX_PEERS)? {
            let (Ok(key), Some(record)) = (
                NodeKey::try_from(key.as_slice()),
                PeerRecord::decode(&value),
            ) else {
                tracing::debug!("skipping a damaged address-book record");
                continue;
            };
            let written_ms = record.last_seen_ms;
            peers.insert(key, Entry { record, written_ms });
        }
        Ok(Self {
            store,
            peers: Mutex::new(peers),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<NodeKey, Entry>> {
        self.peers.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, peer: &PeerId) -> Option<PeerRecord> {
        let key = osmoda_fabric::node_key_of(peer)?;
        self.lock().get(&key).map(|e| e.record.clone())
    }

    /// The `max` peers seen most recently, with their addresses.
    pub fn to_dial(&self, max: usize) -> Vec<KnownPeer> {
        let peers = self.lock();
        let mut by_recency: Vec<(&NodeKey, &Entry)> = peers
            .iter()
            .filter(|(_, e)| !e.record.addrs.is_empty())
            .collect();
        by_recency.sort_by_key(|(_, e)| std::cmp::Reverse(e.record.last_seen_ms));
        by_recency
            .into_iter()
            .filter_map(|(key, e)| {
                Some(KnownPeer {
                    peer: osmoda_fabric::peer_id_of(key)?,
                    addrs: e.record.addrs.clone(),
                })
            })
            .take(max)
            .collect()
    }

    /// Notes that `peer` was seen now (kept in memory; written with its
    /// next change of address or refresh).
    pub fn seen(&self, peer: &PeerId, now_ms: u64) {
        if let Some(key) = osmoda_fabric::node_key_of(peer) {
            if let Some(entry) = self.lock().get_mut(&key) {
                entry.record.last_seen_ms = entry.record.last_seen_ms.max(now_ms);
            }
        }
    }

    /// Records where `peer` says it listens. Returns the pending write
    /// when something worth keeping changed (a new peer, new addresses, or
    /// a refresh), `None` when nothing needs writing.
    pub fn learn(
        &self,
        peer: &PeerId,
        name: String,
        listen_addrs: &[Multiaddr],
        now_ms: u64,
    ) -> Result<Option<Ack<usize>>, StoreError> {
        let Some(key) = osmoda_fabric::node_key_of(peer) else {
            return Ok(None);
        };
        let mut addrs: Vec<Multiaddr> = Vec::new();
        for addr in listen_addrs.iter().filter_map(dialable) {
            if !addrs.contains(&addr) && addrs.len() < MAX_ADDRS {
                addrs.push(addr);
            }
        }
        if addrs.is_empty() {
            self.seen(peer, now_ms);
            return Ok(None);
        }
        let mut batch = Batch::new();
        let mut peers = self.lock();
        if let Some(entry) = peers.get_mut(&key) {
            entry.record.last_seen_ms = entry.record.last_seen_ms.max(now_ms);
            let same = entry.record.addrs == addrs && entry.record.name == name;
            if same && now_ms.saturating_sub(entry.written_ms) < REWRITE_AFTER_MS {
                return Ok(None);
            }
            entry.record.addrs = addrs;
            entry.record.name = name;
            entry.written_ms = now_ms;
            batch.put(TABLE, &key, &entry.record.encode());
        } else {
            if peers.len() >= MAX_PEERS {
                let oldest = peers
                    .iter()
                    .min_by_key(|(_, e)| e.record.last_seen_ms)
                    .map(|(k, _)| *k);
                if let Some(oldest) = oldest {
                    peers.remove(&oldest);
                    batch.delete(TABLE, &oldest);
                }
            }
            let record = PeerRecord {
                name,
                addrs,
                last_seen_ms: now_ms,
            };
            batch.put(TABLE, &key, &record.encode());
            peers.insert(
                key,
                Entry {
                    record,
                    written_ms: now_ms,
                },
            );
        }
        // Queued under the lock, so that writes reach the store in the
        // order of the changes; queueing does not wait for the disk.
        self.store.submit_batch(batch).map(Some)
    }
}

#[cfg(test)]
mod tests;
