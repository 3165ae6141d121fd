//! Sealed changes, judged as a malicious member would test them: edits
//! and deletes of another's entry, changes written under another node's
//! actor, unsealed changes, members' routines. Each is refused on every
//! path (push and sync), the honest replicas lose nothing, and every
//! replica reaches the same verdict whatever order changes arrive in.

use std::sync::Arc;

use automerge::ChangeHash;
use osmoda_docs::{
    credential_id, decode_bundle, encode_bundle, sealed_message, Action, Authority, DocError,
    EntryUpdate, KnowledgeError, KnowledgeStore, NewEntry, NewRoutine, NodeActor, Pushed,
    RoutineBook, RoutineError, Seal, ShardId, Standing, SyncError, SyncLimits, SyncSession, Target,
};
use proptest::prelude::*;

/// A stand-in for the node's certificates: a credential is `name:role`;
/// a signature is BLAKE3 keyed by the signer's name (a secret in real
/// life: here the point is who may claim what, not the cryptography).
#[derive(Debug)]
struct Fake {
    name: String,
    role: Standing,
    /// What this node claims about itself locally (a liar's may differ
    /// from its credential).
    claims: Standing,
}

fn role_text(r: Standing) -> &'static str {
    match r {
        Standing::Admin => "admin",
        Standing::Member => "member",
    }
}

fn fake_sign(name: &str, message: &[u8]) -> [u8; 64] {
    let mut key = [0u8; 32];
    key[..name.len().min(32)].copy_from_slice(&name.as_bytes()[..name.len().min(32)]);
    let mut out = [0u8; 64];
    out[..32].copy_from_slice(blake3::keyed_hash(&key, message).as_bytes());
    out
}

impl Authority for Fake {
    fn credential(&self) -> Vec<u8> {
        format!("{}:{}", self.name, role_text(self.role)).into_bytes()
    }
    fn standing(&self) -> Standing {
        self.claims
    }
    fn sign(&self, message: &[u8]) -> [u8; 64] {
        fake_sign(&self.name, message)
    }
    fn judge(
        &self,
        actor: &[u8],
        hash: &ChangeHash,
        _time_ms: i64,
        seal: &Seal,
        credential: &[u8],
    ) -> Result<Standing, String> {
        let text = std::str::from_utf8(credential).map_err(|_| "not text")?;
        let (name, role) = text.split_once(':').ok_or("no role")?;
        if name.as_bytes() != actor {
            return Err(format!("written as another actor than {name}"));
        }
        let want = fake_sign(name, &sealed_message(hash, &credential_id(credential)));
        if want != seal.signature {
            return Err("bad signature".into());
        }
        match role {
            "admin" => Ok(Standing::Admin),
            "member" => Ok(Standing::Member),
            _ => Err("unknown role".into()),
        }
    }
}

fn node(name: &str, role: Standing) -> NodeActor {
    liar(name, role, role)
}

/// A node whose credential says `role` but which acts as `claims`
/// locally, as a modified build of a member would.
fn liar(name: &str, role: Standing, claims: Standing) -> NodeActor {
    NodeActor::new(name)
        .expect("name")
        .with_authority(Arc::new(Fake {
            name: name.into(),
            role,
            claims,
        }))
}

/// `actor` with the authority of `signer`: changes written under one
/// node's actor, sealed by another.
fn impostor(actor: &str, signer: &str) -> NodeActor {
    NodeActor::new(actor)
        .expect("name")
        .with_authority(Arc::new(Fake {
            name: signer.into(),
            role: Standing::Member,
            claims: Standing::Admin,
        }))
}

fn entry(store: &mut KnowledgeStore, n: u64) -> String {
    let id = osmoda_docs::derive_id(store.node().node_id(), n);
    let new = NewEntry {
        id: id.clone(),
        title: format!("entry {n}"),
        body: "body".into(),
        tags: vec![],
        actor: "agent".into(),
    };
    store.put(new, 1000 + n).expect("put");
    id
}

/// `store`'s shards, loaded by a node with `actor`'s authority.
fn replica(store: &mut KnowledgeStore, actor: NodeActor) -> KnowledgeStore {
    let mut out = KnowledgeStore::new(actor);
    for (shard, bytes) in store.save_all() {
        out.load_shard(shard, &bytes).expect("load");
    }
    out
}

fn push_last(
    from: &KnowledgeStore,
    to: &mut KnowledgeStore,
    shard: ShardId,
) -> Result<Pushed, DocError> {
    let change = from
        .shard(shard)
        .expect("shard")
        .last_local_change()
        .expect("a change");
    to.shard_mut(shard).apply_pushed(&change)
}

/// Syncs one shard both ways until quiet; the first error from `to`'s
/// side, if any.
fn sync(
    from: &mut KnowledgeStore,
    to: &mut KnowledgeStore,
    shard: ShardId,
) -> Result<(), SyncError> {
    let limits = SyncLimits::default();
    let (mut sf, mut st) = (SyncSession::new(limits), SyncSession::new(limits));
    for _ in 0..20 {
        let mut quiet = true;
        if let Some(m) = sf.generate_message(from.shard_mut(shard))? {
            st.receive_message(to.shard_mut(shard), &m)?;
            quiet = false;
        }
        if let Some(m) = st.generate_message(to.shard_mut(shard))? {
            let _ = sf.receive_message(from.shard_mut(shard), &m);
            quiet = false;
        }
        if quiet {
            break;
        }
    }
    Ok(())
}

#[test]
fn honest_changes_are_sealed_replicate_and_name_their_author() {
    let mut a = KnowledgeStore::new(node("node-a", Standing::Member));
    let id = entry(&mut a, 1);
    let shard = ShardId::of(&id);
    let mut b = KnowledgeStore::new(node("node-b", Standing::Member));
    assert_eq!(push_last(&a, &mut b, shard).expect("push"), Pushed::Applied);
    a.update_body(&id, "edited by its author", 2000)
        .expect("edit");
    let mut c = KnowledgeStore::new(node("node-c", Standing::Member));
    sync(&mut a, &mut c, shard).expect("sync");
    sync(&mut b, &mut c, shard).expect("sync");
    for s in [&b, &c] {
        let e = s.get(&id).expect("get").expect("present");
        assert_eq!(e.author_node, "node-a");
        assert_eq!(e.body, "edited by its author");
    }
    // Seals survive a save and load: c can serve them on.
    let mut d = KnowledgeStore::new(node("node-d", Standing::Member));
    let mut c2 = replica(&mut c, node("node-c", Standing::Member));
    sync(&mut c2, &mut d, shard).expect("sync from a reloaded replica");
    assert_eq!(
        d.get(&id).expect("get").expect("present").author_node,
        "node-a"
    );
}

#[test]
fn a_member_cannot_change_or_delete_another_members_entry() {
    let mut a = KnowledgeStore::new(node("node-a", Standing::Member));
    let id = entry(&mut a, 1);
    let shard = ShardId::of(&id);
    // An honest member's node refuses before writing.
    let mut m = replica(&mut a, node("node-m", Standing::Member));
    assert!(matches!(
        m.delete(&id, 2000),
        Err(KnowledgeError::NotAuthor { .. })
    ));
    assert!(matches!(
        m.update_body(&id, "mine now", 2000),
        Err(KnowledgeError::NotAuthor { .. })
    ));
    // A modified build skips that check and writes anyway: every replica
    // refuses its changes, by push and by sync.
    let mut evil = replica(&mut a, liar("node-m", Standing::Member, Standing::Admin));
    evil.update(
        &id,
        &EntryUpdate {
            title: Some("defaced".into()),
            ..EntryUpdate::default()
        },
        2000,
    )
    .expect("the liar writes locally");
    let mut honest = replica(&mut a, node("node-b", Standing::Member));
    assert!(matches!(
        push_last(&evil, &mut honest, shard),
        Err(DocError::Refused(_))
    ));
    evil.delete(&id, 2001).expect("the liar deletes locally");
    let got = sync(&mut evil, &mut honest, shard);
    assert!(matches!(got, Err(SyncError::Refused(_))), "{got:?}");
    let e = honest.get(&id).expect("get").expect("still there");
    assert_eq!(e.title, "entry 1");
    assert!(!e.deleted);
    // An admin may.
    let mut admin = replica(&mut a, node("node-z", Standing::Admin));
    admin.delete(&id, 3000).expect("an admin deletes");
    assert_eq!(
        push_last(&admin, &mut honest, shard).expect("push"),
        Pushed::Applied
    );
    assert!(honest.get(&id).expect("get").is_none());
}

#[test]
fn changes_under_another_nodes_actor_or_namespace_are_refused() {
    let mut a = KnowledgeStore::new(node("node-a", Standing::Member));
    let id = entry(&mut a, 1);
    let shard = ShardId::of(&id);
    let mut honest = replica(&mut a, node("node-b", Standing::Member));
    // Written as node-a, sealed by node-m.
    let mut forger = replica(&mut a, impostor("node-a", "node-m"));
    forger
        .update_body(&id, "forged", 2000)
        .expect("written locally");
    let got = push_last(&forger, &mut honest, shard);
    assert!(matches!(got, Err(DocError::Refused(_))), "{got:?}");
    // An entry created under node-a's namespace by node-m.
    let mut squatter = KnowledgeStore::new(liar("node-m", Standing::Member, Standing::Member));
    let taken = osmoda_docs::derive_id("node-a", 7);
    squatter
        .put(
            NewEntry {
                id: taken.clone(),
                title: "squat".into(),
                body: String::new(),
                tags: vec![],
                actor: "x".into(),
            },
            10,
        )
        .expect("written locally");
    let mut fresh = KnowledgeStore::new(node("node-b", Standing::Member));
    let got = push_last(&squatter, &mut fresh, ShardId::of(&taken));
    assert!(matches!(got, Err(DocError::Refused(_))), "{got:?}");
    assert!(fresh.get(&taken).expect("get").is_none());
}

#[test]
fn unsealed_changes_are_refused_by_a_node_with_an_authority() {
    let mut plain = KnowledgeStore::new(NodeActor::new("node-a").expect("name"));
    let id = entry(&mut plain, 1);
    let shard = ShardId::of(&id);
    let change = plain.shard(shard).unwrap().last_local_change().unwrap();
    assert!(decode_bundle(&change).unwrap().seals[0].is_none());
    let mut b = KnowledgeStore::new(node("node-b", Standing::Member));
    assert!(matches!(
        b.shard_mut(shard).apply_pushed(&change),
        Err(DocError::Refused(_))
    ));
    // A seal taken from another change does not fit this one.
    let mut a = KnowledgeStore::new(node("node-a", Standing::Member));
    let other = entry(&mut a, 2);
    let sealed = a
        .shard(ShardId::of(&other))
        .unwrap()
        .last_local_change()
        .unwrap();
    let seal = decode_bundle(&sealed).unwrap().seals[0].clone().unwrap();
    let body = decode_bundle(&change).unwrap().body.to_vec();
    let moved = encode_bundle(&[Some((&seal.seal, &seal.credential[..]))], &body);
    assert!(matches!(
        b.shard_mut(shard).apply_pushed(&moved),
        Err(DocError::Refused(_))
    ));
    assert!(b.get(&id).expect("get").is_none());
}

#[test]
fn routines_are_written_by_admins_only() {
    let new = |id: &str| NewRoutine {
        id: id.into(),
        name: format!("r-{id}"),
        schedule: "every 5m".into(),
        target: Target::All,
        action: Action {
            command: "/usr/bin/true".into(),
            args: vec![],
            timeout_secs: 60,
        },
        enabled: true,
        created_by: "ops".into(),
    };
    let mut member = RoutineBook::new(&node("node-m", Standing::Member));
    assert!(matches!(
        member.add(new("r1"), 1),
        Err(RoutineError::AdminOnly)
    ));
    let mut liar_book = RoutineBook::new(&liar("node-m", Standing::Member, Standing::Admin));
    liar_book.add(new("r2"), 1).expect("written locally");
    let mut honest = RoutineBook::new(&node("node-b", Standing::Member));
    let change = liar_book.doc().last_local_change().unwrap();
    assert!(matches!(
        honest.doc_mut().apply_pushed(&change),
        Err(DocError::Refused(_))
    ));
    let mut admin = RoutineBook::new(&node("node-z", Standing::Admin));
    admin.add(new("r3"), 1).expect("an admin writes");
    let change = admin.doc().last_local_change().unwrap();
    assert_eq!(
        honest.doc_mut().apply_pushed(&change).unwrap(),
        Pushed::Applied
    );
    assert_eq!(honest.list().len(), 1);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Honest and refused changes from several authors, delivered to two
    /// replicas by push in different orders: both keep exactly the same
    /// changes (none of the refused ones).
    #[test]
    fn verdicts_do_not_depend_on_arrival_order(order in Just(()).prop_perturb(|_, mut rng| {
        let mut v: Vec<usize> = (0..8).collect();
        for i in (1..v.len()).rev() {
            let j = (rng.next_u32() as usize) % (i + 1);
            v.swap(i, j);
        }
        v
    })) {
        // One shard: every id of node-a and node-c in it.
        let mut a = KnowledgeStore::new(node("node-a", Standing::Member));
        let shard = ShardId::of(&osmoda_docs::derive_id("node-a", 0));
        let ids: Vec<u64> = (0..)
            .filter(|n| ShardId::of(&osmoda_docs::derive_id("node-a", *n)) == shard)
            .take(2)
            .collect();
        let mut pushes = Vec::new();
        let take = |s: &KnowledgeStore| s.shard(shard).unwrap().last_local_change().unwrap();
        let first = entry(&mut a, ids[0]);
        pushes.push(take(&a));
        a.update_body(&first, "a edits its own", 2000).unwrap();
        pushes.push(take(&a));
        let second = entry(&mut a, ids[1]);
        pushes.push(take(&a));
        let mut evil = replica(&mut a, liar("node-m", Standing::Member, Standing::Admin));
        evil.delete(&first, 3000).unwrap();
        pushes.push(take(&evil));
        evil.update_body(&second, "defaced", 3001).unwrap();
        pushes.push(take(&evil));
        let mut admin = replica(&mut a, node("node-z", Standing::Admin));
        admin.update_body(&second, "an admin's fix", 3002).unwrap();
        pushes.push(take(&admin));
        let mut forger = replica(&mut a, impostor("node-a", "node-m"));
        forger.update_body(&second, "forged", 3003).unwrap();
        pushes.push(take(&forger));
        a.update_body(&second, "a again", 3004).unwrap();
        pushes.push(take(&a));

        let deliver = |order: &[usize]| {
            let mut r = KnowledgeStore::new(node("node-r", Standing::Member));
            // Pushes whose history is missing are retried, as sync would.
            for _ in 0..order.len() {
                for &i in order {
                    let _ = r.shard_mut(shard).apply_pushed(&pushes[i]);
                }
            }
            r
        };
        let in_order = deliver(&(0..pushes.len()).collect::<Vec<_>>());
        let shuffled = deliver(&order);
        prop_assert_eq!(in_order.shard_heads(shard), shuffled.shard_heads(shard));
        let e = shuffled.get(&first).unwrap().expect("not deleted by a member");
        prop_assert_eq!(e.body.as_str(), "a edits its own");
        let body = shuffled.get(&second).unwrap().unwrap().body;
        prop_assert!(!body.contains("defaced") && !body.contains("forged"), "{}", body);
    }
}

#[test]
fn a_change_over_the_size_of_one_change_is_refused() {
    use automerge::transaction::Transactable;
    // No honest writer makes one: a peer crafted it.
    let mut am = automerge::Automerge::new().with_actor(automerge::ActorId::from(&b"node-m"[..]));
    let mut tx = am.transaction();
    let words: String = (0..200_000u32).map(|i| format!("{i:x} ")).collect();
    tx.put(automerge::ROOT, osmoda_docs::derive_id("node-m", 1), words)
        .unwrap();
    tx.commit();
    let change = am.get_last_local_change().unwrap().raw_bytes().to_vec();
    assert!(
        change.len() > osmoda_docs::MAX_CHANGE_BYTES,
        "{}",
        change.len()
    );
    let mut b = KnowledgeStore::new(NodeActor::new("node-b").unwrap());
    let got = b
        .shard_mut(ShardId::of(&osmoda_docs::derive_id("node-m", 1)))
        .apply_pushed(&encode_bundle(&[None], &change));
    assert!(
        matches!(
            got,
            Err(DocError::Refused(osmoda_docs::Refusal::TooLarge { .. }))
        ),
        "{got:?}"
    );
}
