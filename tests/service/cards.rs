//! Agent cards and revocation: a revoked node's agents leave the fleet's
//! list, and a `--skill` task is not placed with them.

use osmoda_fabric::proto::{hex, FleetRoot, Role};
use osmoda_node::api::{AddAgent, CardQuery, RevokeBody};
use osmoda_simulation::{SimConfig, SimNetwork};

use super::emergency::{connected, Member};
use super::{now_secs, OP};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_nodes_agents_leave_the_fleets_cards() {
    let tmp = tempfile::tempdir().unwrap();
    let net = SimNetwork::new(SimConfig::default());
    let root = FleetRoot::generate(&mut rand::rngs::OsRng);
    let admin = Member::new(&net, &root, Role::Admin, tmp.path(), &[], 64).await;
    let boot = [admin.addr(&net)];
    let worker = Member::new(&net, &root, Role::Member, tmp.path(), &boot, 64).await;
    assert!(connected(&admin.node(), 1).await);
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
