//! The service layer in process, with no sockets: nodes assembled by the
//! same builder as `osmoda run`, on the simulation's in-memory network.
//! Each operation's change, its audit entry and its error kinds; the HTTP
//! front's statuses for the same errors; paging through a large store;
//! emergency commands that arrive out of order, and between nodes
//! (`service/emergency.rs`).

#[path = "service/authority.rs"]
mod authority;
#[path = "service/cards.rs"]
mod cards;
#[path = "service/emergency.rs"]
mod emergency;
#[path = "service/renewal.rs"]
mod renewal;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use osmoda_fabric::proto::{EmergencyCommand, EmergencyKind, FleetRoot, Role};
use osmoda_node::api::{
    CardEdit, EntryPatch, ListParams, LogQuery, NewEntry, NewRoutine, SubmitTask,
};
use osmoda_node::datadir::FleetInfo;
use osmoda_node::error::{ErrorKind, NodeError};
use osmoda_node::runtime::builder::Running;
use osmoda_node::service::{Caller, Node, Received, Via};
use osmoda_node::sim::SimHost;
use osmoda_simulation::{SimConfig, SimNetwork};
use tower::ServiceExt;

const OP: Caller<'static> = Caller::Operator;

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// One node of `root`'s fleet on `net`, its state in `dir`.
async fn start(net: &SimNetwork, root: &FleetRoot, role: Role, dir: &Path) -> Running {
    let host = net.add_host().unwrap();
    let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let name = format!("n{}", host.0);
    let cert = root
        .issue(
            key.verifying_key().to_bytes(),
            &name,
            role,
            now_secs() - 60,
            now_secs() + 86_400,
        )
        .unwrap();
    let folder = dir.join(&name);
    std::fs::create_dir_all(&folder).unwrap();
    let fleet = FleetInfo {
        name: "test".into(),
        id: osmoda_fabric::proto::hex(&root.public()),
    };
    let store = osmoda_store::Store::open(folder.join("state.redb")).unwrap();
    let at = SimHost {
        net,
        host,
        port: 4001,
    };
    at.builder(store, key.to_bytes(), cert, fleet, &folder)
        .unwrap()
        .start()
        .await
        .unwrap()
}

fn kind<T: std::fmt::Debug>(result: Result<T, NodeError>) -> ErrorKind {
    result.expect_err("an error").kind()
}

fn entry(title: &str) -> NewEntry {
    NewEntry {
        title: title.into(),
        body: "body".into(),
        tags: vec!["t".into()],
    }
}

/// The actions of the node's own audit log, oldest first.
async fn actions(node: &Node) -> Vec<(String, String, String)> {
    node.audit_log(LogQuery {
        node: None,
        start: 0,
        limit: 4096,
    })
    .await
    .unwrap()
    .entries
    .into_iter()
    .map(|e| (e.action, e.target, e.outcome))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_change_state_write_their_audit_entry_and_fail_by_kind() {
    let tmp = tempfile::tempdir().unwrap();
    let net = SimNetwork::new(SimConfig::default());
    let root = FleetRoot::generate(&mut rand::rngs::OsRng);
    // An admin: routines are admins' to write.
    let running = start(&net, &root, Role::Admin, tmp.path()).await;
    let node = running.node.clone();

    // Knowledge: put, update, get, delete; each audited once.
    let id = node.knowledge_put(OP, entry("first")).await.unwrap().id;
    let patch = EntryPatch {
        body: Some("a new body".into()),
        ..EntryPatch::default()
    };
    node.knowledge_update(OP, &id, patch.clone()).await.unwrap();
    assert_eq!(node.knowledge_get(&id).unwrap().body, "a new body");
    node.knowledge_delete(OP, &id).await.unwrap();
    let log = actions(&node).await;
    for action in ["knowledge.put", "knowledge.update", "knowledge.delete"] {
        let found: Vec<_> = log
            .iter()
            .filter(|(a, t, _)| a == action && t == &id)
            .collect();
        assert_eq!(found.len(), 1, "{action}: {log:?}");
        assert_eq!(found[0].2, "ok");
    }
    // A missing entry is not found for every operation alike, and the
    // failed change is audited with its outcome.
    assert_eq!(kind(node.knowledge_get(&id)), ErrorKind::NotFound);
    assert_eq!(
        kind(node.knowledge_update(OP, &id, patch).await),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind(node.knowledge_delete(OP, &id).await),
        ErrorKind::NotFound
    );
    let log = actions(&node).await;
    assert!(log
        .iter()
        .any(|(a, t, o)| a == "knowledge.delete" && t == &id && o.starts_with("failed")));
    assert_eq!(
        kind(node.knowledge_put(OP, entry("   ")).await),
        ErrorKind::Invalid,
        "a blank title"
    );
    let page = ListParams {
        limit: Some(0),
        ..ListParams::default()
    };
    assert_eq!(kind(node.knowledge_list(page)), ErrorKind::Invalid);
    let bad_cursor = ListParams {
        cursor: Some("not a cursor".into()),
        ..ListParams::default()
    };
    assert_eq!(kind(node.knowledge_list(bad_cursor)), ErrorKind::Invalid);

    // Routines: names are unique and stand for ids.
    let routine = |name: &str| NewRoutine {
        name: name.into(),
        schedule: "every 5m".into(),
        target: "all".into(),
        command: "true".into(),
        args: Vec::new(),
        timeout_secs: 60,
        enabled: true,
    };
    let rid = node.routine_add(OP, routine("backup")).await.unwrap().id;
    assert_eq!(
        kind(node.routine_add(OP, routine("backup")).await),
        ErrorKind::Conflict
    );
    assert_eq!(node.routine_show("backup").unwrap().id, rid);
    node.routine_set_enabled(OP, "backup", false).await.unwrap();
    assert!(!node.routine_show(&rid).unwrap().enabled);
    node.routine_remove(OP, "backup").await.unwrap();
    assert_eq!(kind(node.routine_show("backup")), ErrorKind::NotFound);
    let log = actions(&node).await;
    for action in ["routine.add", "routine.disable", "routine.remove"] {
        assert!(
            log.iter().any(|(a, _, o)| a == action && o == "ok"),
            "{action}"
        );
    }

    // Agents, approvals, emergency: each refusal its kind.
    assert_eq!(
        kind(node.agent_logs("nobody", 10).await),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind(node.agent_stop(OP, "nobody").await),
        ErrorKind::NotFound
    );
    assert_eq!(kind(node.approve(OP, 42, None).await), ErrorKind::NotFound);
    assert_eq!(
        kind(node.approve(OP, 42, Some("soon")).await),
        ErrorKind::Invalid
    );
    assert_eq!(
        kind(node.emergency(OP, "panic", false).await),
        ErrorKind::Invalid
    );
    // A member may not sign fleet commands, nor write routines; no node
    // relays junk.
    let member = start(&net, &root, Role::Member, tmp.path()).await;
    assert_eq!(
        kind(member.node.emergency(OP, "lockdown", true).await),
        ErrorKind::Forbidden
    );
    assert_eq!(
        kind(member.node.routine_add(OP, routine("theirs")).await),
        ErrorKind::Forbidden
    );
    member.shutdown().await;
    assert_eq!(kind(node.relay(OP, "c0ffee").await), ErrorKind::Invalid);
    assert_eq!(kind(node.resolve_node("nobody").await), ErrorKind::NotFound);
    // A local lockdown: agents cannot start, and it is audited.
    node.emergency(OP, "lockdown", false).await.unwrap();
    assert!(node.emergency_state().lockdown);
    let log = actions(&node).await;
    assert!(log
        .iter()
        .any(|(a, _, o)| a == "emergency.lockdown" && o == "ok"));
    running.shutdown().await;
}

/// A request to the control API, in process.
async fn http(node: &Arc<Node>, method: &str, uri: &str, body: &str) -> (StatusCode, String) {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .unwrap();
    let response = osmoda_node::control::router(node.clone())
        .oneshot(request)
        .await
        .unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_entry_is_404_for_get_patch_and_delete() {
    let tmp = tempfile::tempdir().unwrap();
    let net = SimNetwork::new(SimConfig::default());
    let root = FleetRoot::generate(&mut rand::rngs::OsRng);
    let running = start(&net, &root, Role::Member, tmp.path()).await;
    let node = running.node.clone();
    for (method, body) in [("GET", ""), ("PATCH", r#"{"title":"x"}"#), ("DELETE", "")] {
        let (status, text) = http(&node, method, "/v1/knowledge/missing-id", body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method}: {text}");
        assert!(text.contains(r#""kind":"not_found""#), "{method}: {text}");
    }
    for uri in ["/v1/routines/nope", "/v1/agents/nope", "/v1/nothing"] {
        let (status, text) = http(&node, "GET", uri, "").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}: {text}");
    }
    let (status, text) = http(&node, "POST", "/v1/knowledge", r#"{"title":""}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains(r#""kind":"invalid""#), "{text}");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_returns_every_entry_of_a_25000_entry_store_exactly_once() {
    const ENTRIES: usize = 25_000;
    let tmp = tempfile::tempdir().unwrap();
    let net = SimNetwork::new(SimConfig::default());
    let root = FleetRoot::generate(&mut rand::rngs::OsRng);
    let running = start(&net, &root, Role::Member, tmp.path()).await;
    let node = running.node.clone();
    let mut written = std::collections::HashSet::new();
    for batch in 0..ENTRIES / 1000 {
        let entries = (0..1000)
            .map(|i| entry(&format!("entry {batch}-{i}")))
            .collect();
        for created in node.knowledge_import(OP, entries).await.unwrap() {
            written.insert(created.id);
        }
    }
    assert_eq!(written.len(), ENTRIES);
    let started = std::time::Instant::now();
    let mut seen = std::collections::HashSet::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = node
            .knowledge_list(ListParams {
                limit: Some(1000),
                cursor: cursor.take(),
                ..ListParams::default()
            })
            .unwrap();
        pages += 1;
        for item in page.items {
            assert!(seen.insert(item.id.clone()), "{} returned twice", item.id);
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    eprintln!(
        "{ENTRIES} entries in {pages} pages of 1,000: {:?}",
        started.elapsed()
    );
    assert_eq!(seen, written);
    running.shutdown().await;
}

/// A fleet command signed by `root`'s admin `key`/`cert`, issued at `at_ms`.
fn command(
    kind: EmergencyKind,
    at_ms: u64,
    cert: &osmoda_fabric::proto::FleetCert,
    key: &ed25519_dalek::SigningKey,
) -> Vec<u8> {
    EmergencyCommand::sign(kind, at_ms, cert.clone(), key, &mut rand::rngs::OsRng)
        .unwrap()
        .encode()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emergency_commands_in_reverse_order_leave_the_newer_one_applied() {
    let tmp = tempfile::tempdir().unwrap();
    let net = SimNetwork::new(SimConfig::default());
    let root = FleetRoot::generate(&mut rand::rngs::OsRng);
    let running = start(&net, &root, Role::Member, tmp.path()).await;
    let node = running.node.clone();
    let admin = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let cert = root
        .issue(
            admin.verifying_key().to_bytes(),
            "admin",
            Role::Admin,
            now_secs() - 60,
            now_secs() + 3600,
        )
        .unwrap();
    let now_ms = now_secs() * 1000;

    // Delivered one after the other, newer first: the older is a replay.
    let lockdown = command(EmergencyKind::Lockdown, now_ms - 2000, &cert, &admin);
    let unlock = command(EmergencyKind::Unlock, now_ms - 1000, &cert, &admin);
    assert_eq!(
        node.receive_emergency(&unlock, Via::Operator).await,
        Received::Applied(EmergencyKind::Unlock)
    );
    assert!(matches!(
        node.receive_emergency(&lockdown, Via::Operator).await,
        Received::Ignored(reason) if reason.contains("replay")
    ));
    assert!(!node.emergency_state().lockdown, "the older lockdown won");

    // Delivered at once, many times over, in both orders: whichever is
    // decided first, the newer one is in force at the end.
    for round in 0..20u64 {
        let base = now_ms + round * 10;
        let older = command(EmergencyKind::Unlock, base + 1, &cert, &admin);
        let newer = command(EmergencyKind::Lockdown, base + 2, &cert, &admin);
        let (a, b) = (node.clone(), node.clone());
        let (first, second) = if round % 2 == 0 {
            (newer.clone(), older.clone())
        } else {
            (older.clone(), newer.clone())
        };
        let one = tokio::spawn(async move { a.receive_emergency(&first, Via::Operator).await });
        let two = tokio::spawn(async move { b.receive_emergency(&second, Via::Operator).await });
        let _ = tokio::time::timeout(Duration::from_secs(30), async {
            (one.await.unwrap(), two.await.unwrap())
        })
        .await
        .unwrap();
        let state = node.emergency_state();
        assert!(state.lockdown, "round {round}: the older unlock won");
        assert_eq!(state.last_fleet_kind.as_deref(), Some("lockdown"));
        // Lift it for the next round with a command newer than both.
        let lift = command(EmergencyKind::Unlock, base + 3, &cert, &admin);
        node.receive_emergency(&lift, Via::Operator).await;
    }
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_cannot_be_placed_fails_at_submit_and_an_ended_one_takes_no_change() {
    let tmp = tempfile::tempdir().unwrap();
    let net = SimNetwork::new(SimConfig::default());
    let root = FleetRoot::generate(&mut rand::rngs::OsRng);
    let running = start(&net, &root, Role::Member, tmp.path()).await;
    let node = running.node.clone();
    let submit = |to: Option<&str>, skill: Option<&str>, input: &[&str]| SubmitTask {
        to: to.map(Into::into),
        skill: skill.map(Into::into),
        input: input.iter().map(|s| s.to_string()).collect(),
        context_id: None,
    };

    // Nobody advertises the skill: refused at submit, naming it.
    let none = node
        .task_submit(OP, submit(None, Some("translate"), &["hola"]))
        .await;
    let error = none.expect_err("no agent has the skill");
    assert_eq!(error.kind(), ErrorKind::NotFound);
    assert!(error.to_string().contains("translate"), "{error}");
    // One target, and some input.
    for body in [
        submit(Some("a@n0"), Some("translate"), &["x"]),
        submit(None, None, &["x"]),
        submit(Some("a@n0"), None, &[]),
    ] {
        assert_eq!(kind(node.task_submit(OP, body).await), ErrorKind::Invalid);
    }
    assert_eq!(node.task_list(100).len(), 0, "nothing unplaced is kept");

    // A task for an agent this node does not run is rejected, with why.
    let name = node.info().name.clone();
    let to = format!("ghost@{name}");
    let task = node
        .task_submit(OP, submit(Some(&to), None, &["boo"]))
        .await
        .unwrap();
    assert_eq!(task.status.state.to_string(), "rejected");
    let why = task.status.message.clone().unwrap_or_default();
    assert!(why.contains("ghost"), "{why}");
    assert_eq!(node.task_show(&task.id).unwrap().history[0].text, "boo");
    // Ended: no cancel, no reply.
    assert_eq!(
        kind(node.task_cancel(OP, &task.id).await),
        ErrorKind::Conflict
    );
    assert_eq!(
        kind(node.task_reply(OP, &task.id, "more".into()).await),
        ErrorKind::Conflict
    );
    assert_eq!(kind(node.task_show("0123")), ErrorKind::NotFound);
    // A card of an agent that does not exist cannot change.
    assert_eq!(
        kind(node.agent_edit(OP, "ghost", CardEdit::default()).await),
        ErrorKind::NotFound
    );

    let log = actions(&node).await;
    let submits: Vec<_> = log.iter().filter(|(a, _, _)| a == "task.submit").collect();
    assert_eq!(submits.len(), 5, "{log:?}");
    assert!(submits.iter().any(|(_, t, o)| t == &task.id && o == "ok"));
    assert!(log
        .iter()
        .any(|(a, t, _)| a == "task.cancel" && t == &task.id));
}
