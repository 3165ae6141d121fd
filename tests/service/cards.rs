//! Agent cards and who may hand their agents work: a revoked node's
//! agents leave the fleet's list (no `--skill` task is placed with them),
//! a member node's tasks never count as an operator's, and no task leaves
//! or reaches a node under lockdown until it is lifted.

use std::path::Path;

use osmoda_fabric::proto::{hex, FleetRoot, Role};
use osmoda_node::api::{AddAgent, CardQuery, RevokeBody, SubmitTask};
use osmoda_node::error::ErrorKind;
use osmoda_simulation::{SimConfig, SimNetwork};

use super::emergency::{connected, eventually, Member};
use super::{now_secs, OP};

/// An admin and a member of a new fleet, connected.
async fn pair(tmp: &Path, net: &SimNetwork, root: &FleetRoot) -> (Member, Member) {
    let admin = Member::new(net, root, Role::Admin, tmp, &[], 64).await;
    let boot = [admin.addr(net)];
    let member = Member::new(net, root, Role::Member, tmp, &boot, 64).await;
    assert!(connected(&admin.node(), 1).await);
    assert!(connected(&member.node(), 1).await);
    (admin, member)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_nodes_agents_leave_the_fleets_cards() {
    let tmp = tempfile::tempdir().unwrap();
    let net = SimNetwork::new(SimConfig::default());
    let root = FleetRoot::generate(&mut rand::rngs::OsRng);
    let (admin, worker) = pair(tmp.path(), &net, &root).await;
    let add: AddAgent = serde_json::from_value(serde_json::json!({
        "spec": { "name": "translator", "command": "/bin/true" },
        "start": false,
        "card": { "skills": ["translate"] },
    }))
    .unwrap();
    worker.node().agent_add(OP, add).await.unwrap();

    let query = CardQuery {
        skill: Some("translate".into()),
        name: None,
    };
    let a = admin.node();
    let mut seen = Vec::new();
    for _ in 0..100 {
        seen = a.fleet_cards(&query).await.unwrap();
        if !seen.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(seen.len(), 1, "the worker's card reached the admin");

    let node_key = worker.cert.node;
    let revocation = hex(&root.revoke(node_key, now_secs()).encode());
    a.revoke(OP, RevokeBody { revocation }).await.unwrap();
    assert!(
        a.fleet_cards(&query).await.unwrap().is_empty(),
        "a revoked node's card is gone"
    );
}

fn only_ring_0(name: &str) -> AddAgent {
    serde_json::from_value(serde_json::json!({
        "spec": { "name": name, "command": "/bin/true" },
        "start": false,
        "card": { "accept_rings": [0] },
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_node_cannot_pass_its_tasks_off_as_an_operators() {
    let tmp = tempfile::tempdir().unwrap();
    let net = SimNetwork::new(SimConfig::default());
    let root = FleetRoot::generate(&mut rand::rngs::OsRng);
    let (admin, member) = pair(tmp.path(), &net, &root).await;
    let (a, m) = (admin.node(), member.node());
    a.agent_add(OP, only_ring_0("vault-keeper")).await.unwrap();
    m.agent_add(OP, only_ring_0("fixer")).await.unwrap();
    let submit = |to: String| SubmitTask {
        to: Some(to),
        skill: None,
        input: vec!["do it".into()],
        context_id: None,
    };

    // The member node's operator counts as ring 1 on the admin's node.
    let to = format!("vault-keeper@{}", a.info().name);
    let task = m.task_submit(OP, submit(to)).await.unwrap();
    assert_eq!(task.status.state.to_string(), "rejected");
    let why = task.status.message.unwrap_or_default();
    assert!(why.contains("not from ring 1"), "{why}");

    // The admin node's operator is taken at its word.
    let to = format!("fixer@{}", m.info().name);
    let task = a.task_submit(OP, submit(to)).await.unwrap();
    assert_eq!(task.status.state.to_string(), "submitted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_task_leaves_a_node_under_lockdown_and_it_goes_after() {
    let tmp = tempfile::tempdir().unwrap();
    let net = SimNetwork::new(SimConfig::default());
    let root = FleetRoot::generate(&mut rand::rngs::OsRng);
    let (admin, member) = pair(tmp.path(), &net, &root).await;
    let (a, m) = (admin.node(), member.node());
    m.agent_add(OP, only_ring_0("fixer")).await.unwrap();

    let submit = SubmitTask {
        to: Some(format!("fixer@{}", m.info().name)),
        skill: None,
        input: vec!["soon".into()],
        context_id: None,
    };
    let task = a.task_submit(OP, submit.clone()).await.unwrap();
    assert!(m.task_show(&task.id).is_ok());

    // Locked down: nothing new is submitted, and a cancel waits here.
    a.emergency(OP, "lockdown", false).await.unwrap();
    let refused = a.task_submit(OP, submit).await.expect_err("locked down");
    assert_eq!(refused.kind(), ErrorKind::Forbidden);
    a.task_cancel(OP, &task.id).await.unwrap();
    // Nor does anything come in: a task for the held node is not placed.
    a.agent_add(OP, only_ring_0("keeper")).await.unwrap();
    let inward = SubmitTask {
        to: Some(format!("keeper@{}", a.info().name)),
        skill: None,
        input: vec!["now".into()],
        context_id: None,
    };
    let held = m.task_submit(OP, inward).await.expect_err("held");
    assert_eq!(held.kind(), ErrorKind::Unavailable, "{held}");
    assert!(held.to_string().contains("held:"), "{held}");
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let there = m.task_show(&task.id).unwrap();
    assert_ne!(
        there.status.state.to_string(),
        "canceled",
        "nothing left under lockdown"
    );

    // Lifted: the cancel goes.
    a.emergency(OP, "unlock", false).await.unwrap();
    assert!(
        eventually(10, || m.task_show(&task.id).is_ok_and(|t| t
            .status
            .state
            .to_string()
            == "canceled"))
        .await,
        "the cancel went once the lockdown was lifted"
    );
}
