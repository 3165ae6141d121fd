//! The cost of sealed changes, side by side with unsealed ones in one run:
//! a local put (one signature), applying a peer's push (the verdict: two
//! signature checks, as the node makes them, one for the seal and one for
//! the certificate, and the operations against the entry's author), and a
//! sync of 100 new entries over 10,000 common ones.
//!
//! Run with `cargo bench -p osmoda-docs --bench sealed`.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use osmoda_docs::{
    derive_id, sealed_message, Authority, ChangeHash, KnowledgeStore, NewEntry, NodeActor, Seal,
    ShardId, Standing, StoreSync, SyncLimits,
};

/// A credential as the node's: a node key, a role, and a root's signature
/// over both (a stand-in for the fleet certificate, with the same checks).
#[derive(Debug)]
struct Ed {
    key: SigningKey,
    credential: Vec<u8>,
    root: VerifyingKey,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Ed {
    fn new(seed: u8, root: &SigningKey) -> Self {
        let key = SigningKey::from_bytes(&[seed; 32]);
        let mut credential = key.verifying_key().to_bytes().to_vec();
        credential.push(1);
        let sig = root.sign(&credential);
        credential.extend_from_slice(&sig.to_bytes());
        Self {
            key,
            credential,
            root: root.verifying_key(),
        }
    }

    fn node_id(&self) -> String {
        hex(&self.key.verifying_key().to_bytes())
    }
}

impl Authority for Ed {
    fn credential(&self) -> Vec<u8> {
        self.credential.clone()
    }
    fn standing(&self) -> Standing {
        Standing::Member
    }
    fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }
    fn judge(
        &self,
        actor: &[u8],
        hash: &ChangeHash,
        _time_ms: i64,
        seal: &Seal,
        credential: &[u8],
    ) -> Result<Standing, String> {
        let (body, sig) = credential.split_at(33);
        let sig = Signature::from_slice(sig).map_err(|e| e.to_string())?;
        self.root.verify(body, &sig).map_err(|e| e.to_string())?;
        let key = VerifyingKey::from_bytes(body[..32].try_into().map_err(|_| "key")?)
            .map_err(|e| e.to_string())?;
        if hex(&body[..32]).as_bytes() != actor {
            return Err("actor".into());
        }
        key.verify(
            &sealed_message(hash, &seal.credential),
            &Signature::from_bytes(&seal.signature),
        )
        .map_err(|e| e.to_string())?;
        Ok(Standing::Member)
    }
}

fn entry(node: &str, i: u64) -> NewEntry {
    NewEntry {
        id: derive_id(node, i),
        title: format!("runbook {i}"),
        body: format!("body {i} ").repeat(25),
        tags: vec!["ops".into()],
        actor: "agent:bench".into(),
    }
}

/// Two nodes' actors, sealed or not.
fn actors(sealed: bool) -> (NodeActor, NodeActor) {
    let root = SigningKey::from_bytes(&[9; 32]);
    let (a, b) = (Ed::new(1, &root), Ed::new(2, &root));
    let (ida, idb) = (a.node_id(), b.node_id());
    let mut na = NodeActor::new(&ida).unwrap();
    let mut nb = NodeActor::new(&idb).unwrap();
    if sealed {
        na = na.with_authority(Arc::new(a));
        nb = nb.with_authority(Arc::new(b));
    }
    (na, nb)
}

fn filled(actor: &NodeActor, n: u64) -> KnowledgeStore {
    let mut s = KnowledgeStore::new(actor.clone());
    for i in 0..n {
        s.put(entry(actor.node_id(), i), i).unwrap();
    }
    s
}

fn load(actor: &NodeActor, saved: &[(ShardId, Vec<u8>)]) -> KnowledgeStore {
    let mut s = KnowledgeStore::new(actor.clone());
    for (sh, bytes) in saved {
        s.load_shard(*sh, bytes).unwrap();
    }
    s
}

fn sealed_vs_plain(c: &mut Criterion) {
    let mut g = c.benchmark_group("sealed");
    for sealed in [false, true] {
        let name = if sealed { "sealed" } else { "plain" };
        let (a, b) = actors(sealed);
        let mut s = filled(&a, 10_000);
        let mut i = 10_000u64;
        g.bench_function(format!("put_into_10k/{name}"), |bch| {
            bch.iter(|| {
                s.put(entry(a.node_id(), i), i).unwrap();
                i += 1;
            })
        });

        // A peer's push of one new entry into a replica of 10,000.
        let saved = s.save_all();
        let replica = load(&b, &saved);
        let mut pushes = Vec::new();
        for k in 0..64u64 {
            let e = entry(a.node_id(), 1_000_000 + k);
            let shard = ShardId::of(&e.id);
            s.put(e, 1_000_000 + k).unwrap();
            pushes.push((shard, s.shard(shard).unwrap().last_local_change().unwrap()));
        }
        // Each iteration takes a fresh copy of the push's shard, so every
        // push is news.
        let mut replica = replica;
        let copies: Vec<Vec<u8>> = pushes
            .iter()
            .map(|(shard, _)| replica.shard_mut(*shard).save())
            .collect();
        let mut n = 0usize;
        g.bench_function(format!("apply_push_into_10k/{name}"), |bch| {
            bch.iter_batched(
                || {
                    n = (n + 1) % pushes.len();
                    let (shard, _) = pushes[n];
                    let doc = osmoda_docs::Doc::load(&copies[n], &b).unwrap();
                    (n, shard, doc)
                },
                |(n, _shard, mut doc)| black_box(doc.apply_pushed(&pushes[n].1).unwrap()),
                BatchSize::SmallInput,
            )
        });

        // Sync of 100 new entries (written on a) over 10,000 common.
        let common = filled(&a, 10_000).save_all();
        let setup = || {
            let mut x = load(&a, &common);
            for k in 0..100u64 {
                x.put(entry(a.node_id(), 2_000_000 + k), 2_000_000 + k)
                    .unwrap();
            }
            (x, load(&b, &common))
        };
        g.sample_size(10);
        g.bench_function(format!("sync_100_new_over_10k/{name}"), |bch| {
            bch.iter_batched(
                setup,
                |(mut x, mut y)| {
                    let limits = SyncLimits::default();
                    let mut sx = StoreSync::new(&x.heads_summary(), &y.heads_summary(), limits);
                    let mut sy = StoreSync::new(&y.heads_summary(), &x.heads_summary(), limits);
                    for _ in 0..16 {
                        let to_y = sx.generate(&mut x);
                        let to_x = sy.generate(&mut y);
                        if to_y.is_empty() && to_x.is_empty() {
                            break;
                        }
                        for (sh, m) in to_y {
                            sy.receive(&mut y, sh, &m).unwrap();
                        }
                        for (sh, m) in to_x {
                            sx.receive(&mut x, sh, &m).unwrap();
                        }
                    }
                    assert_eq!(x.heads_summary(), y.heads_summary());
                },
                BatchSize::LargeInput,
            )
        });
        g.sample_size(100);
    }
    g.finish();
}

criterion_group!(benches, sealed_vs_plain);
criterion_main!(benches);
