//! Certificate renewal between running nodes: a member whose certificate
//! is about to expire gets a new one from a connected admin, keeps its
//! links and its right to write past the old expiry, and keeps the new
//! certificate in its folder; an admin refuses a renewal that is not due.

use std::time::Duration;

use ed25519_dalek::SigningKey;
use osmoda_fabric::proto::{FleetRoot, Role};
use osmoda_node::datadir::DataDir;
use osmoda_node::error::ErrorKind;
use osmoda_simulation::{SimConfig, SimNetwork};

use super::emergency::{connected, entries, eventually, Member};
use super::{entry, now_secs, OP};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_renews_before_expiry_and_keeps_its_links_and_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let net = SimNetwork::new(SimConfig::default());
    let root = FleetRoot::generate(&mut rand::rngs::OsRng);
    // An admin certificate that outlives what the admin gives (30 days).
    let admin_key = SigningKey::generate(&mut rand::rngs::OsRng);
    let admin_node = admin_key.verifying_key().to_bytes();
    let admin_cert = |name: &str| {
        root.issue(
            admin_node,
            name,
            Role::Admin,
            now_secs() - 60,
            now_secs() + 60 * 86_400,
        )
        .unwrap()
    };
    let admin = Member::holding(&net, &root, admin_key, admin_cert, tmp.path(), &[], 64).await;
    let boot = [admin.addr(&net)];
    // A member whose certificate has 15 s left of 75: due at once.
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let node_key = key.verifying_key().to_bytes();
    let expires_at = now_secs() + 15;
    let issue = |name: &str| {
        root.issue(node_key, name, Role::Member, now_secs() - 60, expires_at)
            .unwrap()
    };
    let member = Member::holding(&net, &root, key, issue, tmp.path(), &boot, 64).await;
    assert!(connected(&member.node(), 1).await);

    let m = member.node();
    let renewed = || {
        let m = m.clone();
        async move { m.status().await.unwrap().node.certificate_expires_at }
    };
    let mut now_expires = renewed().await;
    for _ in 0..100 {
        if now_expires > expires_at {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        now_expires = renewed().await;
    }
    let thirty_days = now_secs() + 30 * 86_400;
    assert!(
        now_expires.abs_diff(thirty_days) < 120,
        "renewed for the admin's lifetime, 30 days: {now_expires}, {thirty_days}"
    );
    // Kept where `osmoda run` reads it at its next start.
    let folder = DataDir::new(tmp.path().join(&m.info().name));
    let kept = folder.cert().unwrap();
    assert_eq!(kept.expires_at, now_expires);
    assert!(kept.issuer().is_some(), "signed by the admin, not the root");

    // Both sides audited it, the admin naming the member.
    let asked = entries(&admin.node(), "fleet.renew").await;
    assert!(
        asked
            .iter()
            .any(|e| e.outcome == "ok" && e.actor == format!("peer:{}", member.peer_id())),
        "the admin audited the renewal: {asked:?}"
    );
    assert!(!entries(&m, "fleet.renew").await.is_empty());

    // Not due again for a long while: the admin refuses, and says why.
    let again = m.renew_certificate(OP).await.expect_err("not due");
    assert_eq!(again.kind(), ErrorKind::Unavailable);
    assert!(again.to_string().contains("not due"), "{again}");

    // Past the first certificate's expiry: the member is still connected,
    // and a change it seals now reaches the admin (sealed under the old
    // certificate it would be refused there).
    let before = net.stats(member.host).unwrap();
    let wait = (expires_at + 2).saturating_sub(now_secs());
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let after = net.stats(member.host).unwrap();
    assert_eq!(
        (after.connections_opened, after.connections_closed),
        (before.connections_opened, before.connections_closed),
        "no link closed at the old expiry, none made again"
    );
    assert_eq!(admin.node().peers().await.unwrap().len(), 1);
    let created = m.knowledge_put(OP, entry("after renewal")).await.unwrap();
    let a = admin.node();
    assert!(
        eventually(20, || a.knowledge_get(&created.id).is_ok()).await,
        "the member's write after its first expiry replicated"
    );
}
