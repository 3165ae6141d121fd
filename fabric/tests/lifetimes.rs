//! Membership ends on live connections: a certificate that expires, or a
//! revocation, closes the connections already open; revocations are
//! signalled for storage even while the event channel is full.

mod common;

use common::{credentials, member_until, now};

use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::Multiaddr;
use osmoda_fabric::proto::{FleetCert, FleetRoot, Role};
use osmoda_fabric::{Credentials, FabricConfig, FabricEvent, FabricHandle, Membership};
use rand::rngs::OsRng;
use tokio::sync::mpsc;

struct Node {
    handle: FabricHandle,
    membership: Arc<Membership>,
    tcp: Multiaddr,
    /// Kept, not read, by the test that fills it.
    events: Option<mpsc::Receiver<FabricEvent>>,
}

async fn start(credentials: Credentials, fleet: [u8; 32], drain: bool) -> Node {
    let config = FabricConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        mdns: false,
        ..FabricConfig::default()
    };
    let membership = Membership::new(fleet);
    let (handle, mut events, _task) =
        osmoda_fabric::start(credentials, membership.clone(), config).unwrap();
    let events = if drain {
        tokio::spawn(async move { while events.recv().await.is_some() {} });
        None
    } else {
        Some(events)
    };
    for _ in 0..100 {
        if let Some(tcp) = handle.status().await.unwrap().listen.first() {
            return Node {
                tcp: tcp.parse().unwrap(),
                handle,
                membership,
                events,
            };
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the node did not listen");
}

async fn peers(node: &Node) -> usize {
    node.handle.peers().await.unwrap().len()
}

async fn wait_for_peers(node: &Node, n: usize, within: Duration) -> bool {
    let started = Instant::now();
    while started.elapsed() < within {
        if peers(node).await == n {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// `a`, and a member with `c_creds` connected to it.
async fn connected_pair(root: &FleetRoot, c_creds: Credentials) -> (Node, Node) {
    let a = start(credentials(root, "a"), root.public(), true).await;
    let c = start(c_creds, root.public(), true).await;
    c.handle.dial(a.tcp.clone()).await.unwrap();
    assert!(wait_for_peers(&a, 1, Duration::from_secs(10)).await);
    (a, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_that_expires_closes_live_connections_at_its_expiry() {
    let root = FleetRoot::generate(&mut OsRng);
    let expires_at = now() + 3;
    let (a, c) = connected_pair(&root, member_until(&root, "c", expires_at)).await;
    assert!(wait_for_peers(&a, 0, Duration::from_secs(6)).await);
    let closed_at = common::now_ms();
    // The timer at the expiry closes it, well before the periodic check
    // would (every 5 s).
    let late_ms = closed_at.saturating_sub(expires_at * 1000);
    eprintln!("closed {late_ms} ms after the certificate expired");
    assert!(late_ms < 1000, "closed {late_ms} ms after the expiry");
    assert!(wait_for_peers(&c, 0, Duration::from_secs(2)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_connected_member_closes_its_connections() {
    let root = FleetRoot::generate(&mut OsRng);
    let c_creds = credentials(&root, "c");
    let c_node = c_creds.cert().node;
    let (a, c) = connected_pair(&root, c_creds).await;
    assert!(a.handle.revoke(root.revoke(c_node, now())).await.unwrap());
    // `a` forgets the revoked peer's record at once, so its own list says
    // nothing about the connection; `c`'s does.
    assert!(
        wait_for_peers(&c, 0, Duration::from_secs(2)).await,
        "a kept the revoked member's connection"
    );
    assert_eq!(peers(&a).await, 0);
}

/// A member whose certificate an admin node signed (root → admin →
/// member) connects like any other; revoking the admin, not the member,
/// closes its connections and refuses its next handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_an_admin_closes_the_members_it_issued() {
    let root = FleetRoot::generate(&mut OsRng);
    let admin_key = ed25519_dalek::SigningKey::generate(&mut OsRng);
    let admin = root
        .issue(
            admin_key.verifying_key().to_bytes(),
            "adm",
            Role::Admin,
            now() - 60,
            now() + 3600,
        )
        .unwrap();
    let key = ed25519_dalek::SigningKey::generate(&mut OsRng);
    let cert = FleetCert::delegate(
        &admin,
        &admin_key,
        key.verifying_key().to_bytes(),
        "c",
        now() - 60,
        now() + 3600,
    )
    .unwrap();
    let c_creds = Credentials::new(&key.to_bytes(), cert).unwrap();
    let (a, c) = connected_pair(&root, c_creds).await;
    assert!(a
        .handle
        .revoke(root.revoke(admin.node, now()))
        .await
        .unwrap());
    assert!(
        wait_for_peers(&c, 0, Duration::from_secs(2)).await,
        "a kept the connection of a member its revoked admin issued"
    );
    assert_eq!(peers(&a).await, 0);
    let _ = c.handle.dial(a.tcp.clone()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        peers(&a).await,
        0,
        "a member of a revoked admin got back in"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_recorded_outside_the_loop_still_closes_connections() {
    let root = FleetRoot::generate(&mut OsRng);
    let c_creds = credentials(&root, "c");
    let c_node = c_creds.cert().node;
    let (a, c) = connected_pair(&root, c_creds).await;
    // Straight into the shared membership, as a node does with the
    // revocations it stored: no command, no event, only the periodic check.
    assert!(a
        .membership
        .apply_revocation(&root.revoke(c_node, now()))
        .unwrap());
    assert!(
        wait_for_peers(&c, 0, Duration::from_secs(7)).await,
        "the periodic check missed a revoked peer"
    );
    assert_eq!(peers(&a).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_are_signalled_while_the_event_channel_is_full() {
    let root = FleetRoot::generate(&mut OsRng);
    let a = start(credentials(&root, "a"), root.public(), false).await;
    let mut changes = a.membership.watch_revocations();
    let n = osmoda_fabric::handle::EVENT_CAPACITY + 100;
    for i in 0..n {
        let mut node = [0u8; 32];
        node[..8].copy_from_slice(&(i as u64).to_be_bytes());
        assert!(a.handle.revoke(root.revoke(node, now())).await.unwrap());
    }
    let status = a.handle.status().await.unwrap();
    assert!(
        status.events_dropped >= 100,
        "the event channel did not fill"
    );
    assert!(changes.has_changed().unwrap());
    assert_eq!(*changes.borrow_and_update(), n);
    assert_eq!(a.membership.revocations().len(), n);
    drop(a.events);
}
