//! A member that sends garbage sync rounds is cut off by the node it talks
//! to, the cut-off is audited, and the node goes on syncing with the others.

mod common;

use std::time::Duration;

use common::{fleet, wait_until};
use osmoda_fabric::proto::{parse_hex, parse_hex_bytes, FleetCert};
use osmoda_fabric::{Credentials, DirectRequest, DirectResponse, FabricConfig, Membership};
use osmoda_node::replication::wire::{self, Request, ShardMessage};

/// The credentials of a member that joined but never ran its node.
fn credentials_of(dir: &std::path::Path) -> Credentials {
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    let key: [u8; 32] = parse_hex(read("identity.key").trim()).unwrap();
    let cert =
        FleetCert::decode(&parse_hex_bytes(read("membership.cert").trim()).unwrap()).unwrap();
    Credentials::new(&key, cert).unwrap()
}

#[test]
fn a_peer_sending_garbage_sync_rounds_is_cut_off_and_the_others_go_on() {
    let tmp = tempfile::tempdir().unwrap();
    let mut nodes = fleet(tmp.path(), 3);
    let rogue_dir = nodes.pop().unwrap().dir.clone();
    nodes[0].start_local(&[]);
    let boot = nodes[0].addr("tcp");
    nodes[1].start_local(std::slice::from_ref(&boot));
    let target: libp2p::PeerId = nodes[0].node_id().parse().unwrap();

    let rt = tokio::runtime::Runtime::new().unwrap();
    let creds = credentials_of(&rogue_dir);
    let rogue_id = creds.peer_id().to_string();
    let fleet_id = creds.cert().fleet;
    let answers = rt.block_on(async {
        let config = FabricConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            bootstrap: vec![boot.parse().unwrap()],
            mdns: false,
            protocols: wire::protocols(),
            ..FabricConfig::default()
        };
        let (fabric, _events, _task) =
            osmoda_fabric::start(creds, Membership::new(fleet_id), config).unwrap();
        for _ in 0..100 {
            if fabric.peers().await.unwrap().len() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut answers = Vec::new();
        for _ in 0..5 {
            let junk = Request::DocSync {
                messages: vec![ShardMessage {
                    shard: 3,
                    data: b"not automerge".to_vec(),
                }],
                start: false,
            };
            let junk = DirectRequest::App {
                protocol: junk.protocol(),
                body: junk.encode(),
            };
            answers.push(fabric.request(target, junk).await);
        }
        answers
    });
    // Two rounds are refused with a reason; the third strike cuts the link,
    // and the node keeps the rogue out.
    for a in &answers[..2] {
        assert!(
            matches!(a, Ok(DirectResponse::Refused { .. })),
            "{answers:?}"
        );
    }
    assert!(answers[2..].iter().all(|a| a.is_err()), "{answers:?}");
    // The cut-off is audited as the penalty is applied, off the request's
    // path: give it a moment on a loaded machine.
    let audited = wait_until(Duration::from_secs(10), || {
        nodes[0].json(&["audit", "log", "--limit", "1000"])["entries"]
            .clone()
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "peer.penalize" && e["target"] == rogue_id.as_str())
    });
    assert!(audited, "the cut-off is not in the audit log");
    assert!(!nodes[0].peer_ids().contains(&rogue_id));

    // The honest member still replicates.
    let out = nodes[1].cli(&["knowledge", "put", "--title", "after", "--body", "b"]);
    assert!(out.status.success());
    assert!(
        wait_until(Duration::from_secs(20), || nodes[0]
            .json(&["knowledge", "list"])["items"]
            .as_array()
            .is_some_and(|l| l.iter().any(|e| e["title"] == "after"))),
        "n0 stopped syncing with n1:\n{}",
        nodes[0].log()
    );
}
