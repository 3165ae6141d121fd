//! Application topics over three real nodes in a line, a — b — c: b holds
//! what a publishes until b's application judges it, and c sees only what
//! b accepted. Publishing on a topic nobody registered is an error.

mod common;

use common::credentials;

use std::time::Duration;

use osmoda_fabric::proto::FleetRoot;
use osmoda_fabric::topics::VALIDATION_TIMEOUT;
use osmoda_fabric::{
    FabricConfig, FabricError, FabricHandle, GossipMessage, Membership, TopicSpec, Validator,
    Verdict,
};
use rand::rngs::OsRng;
use tokio::sync::mpsc;

const TOPIC: &str = "test/app/1";

struct Node {
    handle: FabricHandle,
    queue: mpsc::Receiver<GossipMessage>,
    tcp: String,
}

async fn start(root: &FleetRoot, name: &str, bootstrap: Option<&str>) -> Node {
    let (validator, queue) = Validator::queue(16);
    let config = FabricConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        bootstrap: bootstrap.into_iter().map(|a| a.parse().unwrap()).collect(),
        mdns: false,
        topics: vec![TopicSpec::new(TOPIC, validator)],
        ..FabricConfig::default()
    };
    let (handle, mut events, _task) = osmoda_fabric::start(
        credentials(root, name),
        Membership::new(root.public()),
        config,
    )
    .unwrap();
    tokio::spawn(async move { while events.recv().await.is_some() {} });
    for _ in 0..100 {
        if let Some(tcp) = handle.status().await.unwrap().listen.first() {
            let tcp = format!("{tcp}/p2p/{}", handle.local_peer_id());
            return Node { handle, queue, tcp };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{name} did not listen");
}

async fn wait_for_peers(node: &Node, n: usize) {
    for _ in 0..100 {
        if node.handle.peers().await.unwrap().len() == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no {n} peers");
}

/// Publishes until some peer subscribes (gossip meshes form on heartbeats).
async fn publish(node: &Node, data: &[u8]) {
    for _ in 0..100 {
        match node.handle.publish(TOPIC, data.to_vec()).await {
            Ok(()) => return,
            Err(FabricError::NoPeers) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => panic!("publish failed: {e}"),
        }
    }
    panic!("nobody subscribed");
}

async fn next(
    queue: &mut mpsc::Receiver<GossipMessage>,
    within: Duration,
) -> Option<GossipMessage> {
    tokio::time::timeout(within, queue.recv())
        .await
        .ok()
        .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_what_the_application_accepts_is_forwarded() {
    let root = FleetRoot::generate(&mut OsRng);
    let a = start(&root, "a", None).await;
    let mut b = start(&root, "b", Some(&a.tcp)).await;
    let mut c = start(&root, "c", Some(&b.tcp)).await;
    wait_for_peers(&b, 2).await;
    // Discovery may link a and c; a keeps c out, so all goes through b.
    a.handle
        .penalize(c.handle.local_peer_id(), "keep the line a line")
        .await;
    wait_for_peers(&a, 1).await;
    wait_for_peers(&c, 1).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    assert!(matches!(
        a.handle.publish("test/unknown/1", b"x".to_vec()).await,
        Err(FabricError::UnknownTopic(_))
    ));

    // Held at b until b's application accepts it, then forwarded to c.
    publish(&a, b"first").await;
    let held = next(&mut b.queue, Duration::from_secs(10)).await.unwrap();
    assert_eq!((held.topic, held.data.as_slice()), (TOPIC, &b"first"[..]));
    assert_eq!(held.origin, a.handle.local_peer_id());
    assert!(next(&mut c.queue, Duration::from_millis(700))
        .await
        .is_none());
    assert_eq!(b.handle.status().await.unwrap().gossip_awaiting, 1);
    b.handle.report(held.ticket, Verdict::Accept).await;
    let forwarded = next(&mut c.queue, Duration::from_secs(5)).await.unwrap();
    assert_eq!(forwarded.data, b"first");
    assert_eq!(
        forwarded.origin,
        a.handle.local_peer_id(),
        "origin, not relay"
    );
    c.handle.report(forwarded.ticket, Verdict::Accept).await;

    // Rejected at b: c never sees it.
    publish(&a, b"second").await;
    let held = next(&mut b.queue, Duration::from_secs(5)).await.unwrap();
    b.handle.report(held.ticket, Verdict::Reject).await;
    assert!(next(&mut c.queue, Duration::from_secs(2)).await.is_none());

    // Never judged at b: the fabric gives up, counts it, and c never sees it.
    publish(&a, b"third").await;
    let held = next(&mut b.queue, Duration::from_secs(5)).await.unwrap();
    tokio::time::sleep(VALIDATION_TIMEOUT + Duration::from_millis(500)).await;
    assert!(held.ticket.expired());
    let status = b.handle.status().await.unwrap();
    assert_eq!((status.gossip_awaiting, status.gossip_expired), (0, 1));
    b.handle.report(held.ticket, Verdict::Accept).await;
    assert!(next(&mut c.queue, Duration::from_secs(2)).await.is_none());
}
