//! Fleet emergency commands between in-process nodes on the simulated
//! network: junk stops at the first hop and is audited at a bounded rate;
//! a member that was away takes a lockdown still in force from its
//! neighbours' registers; a later FREEZE does not hide a LOCKDOWN; an old
//! LOCKDOWN replayed to a node that joined after the UNLOCK changes
//! nothing; the relaying peer is named in the audit.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use libp2p::Multiaddr;
use osmoda_fabric::proto::emergency::MAX_NEWS_AGE_MS;
use osmoda_fabric::proto::{hex, EmergencyKind, FleetCert, FleetRoot, Role};
use osmoda_fabric::FabricConfig;
use osmoda_node::api::{AuditEntryView, LogQuery};
use osmoda_node::datadir::FleetInfo;
use osmoda_node::runtime::builder::Running;
use osmoda_node::runtime::topics::EMERGENCY;
use osmoda_node::service::{Node, Received, Via};
use osmoda_node::sim::SimHost;
use osmoda_simulation::{HostId, SimConfig, SimNetwork};

use super::{command, now_secs, OP};

const PORT: u16 = 4001;

/// A member of the test fleet, which can be stopped and started again on
/// the same host with the same store.
pub(super) struct Member {
    pub(super) running: Option<Running>,
    pub(super) key: SigningKey,
    pub(super) cert: FleetCert,
    pub(super) host: HostId,
    folder: PathBuf,
}

impl Member {
    pub(super) async fn new(
        net: &SimNetwork,
        root: &FleetRoot,
        role: Role,
        dir: &Path,
        bootstrap: &[Multiaddr],
        max_links: u32,
    ) -> Self {
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        let node = key.verifying_key().to_bytes();
        let issue = |name: &str| {
            root.issue(node, name, role, now_secs() - 60, now_secs() + 86_400)
                .unwrap()
        };
        Self::holding(net, root, key, issue, dir, bootstrap, max_links).await
    }

    /// A node started with the certificate `issue` makes for its name.
    pub(super) async fn holding(
        net: &SimNetwork,
        root: &FleetRoot,
        key: SigningKey,
        issue: impl FnOnce(&str) -> FleetCert,
        dir: &Path,
        bootstrap: &[Multiaddr],
        max_links: u32,
    ) -> Self {
        let host = net.add_host().unwrap();
        let name = format!("n{}", host.0);
        let cert = issue(&name);
        let folder = dir.join(&name);
        std::fs::create_dir_all(&folder).unwrap();
        let mut member = Member {
            running: None,
            key,
            cert,
            host,
            folder,
        };
        member.start(net, root, bootstrap, max_links).await;
        member
    }

    async fn start(&mut self, net: &SimNetwork, root: &FleetRoot, boot: &[Multiaddr], max: u32) {
        let fleet = FleetInfo {
            name: "test".into(),
            id: hex(&root.public()),
        };
        // A stopped node's tasks may hold the store for a moment.
        let mut store = osmoda_store::Store::open(self.folder.join("state.redb"));
        for _ in 0..50 {
            if store.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            store = osmoda_store::Store::open(self.folder.join("state.redb"));
        }
        let at = SimHost {
            net,
            host: self.host,
            port: PORT,
        };
        let mut builder = at
            .builder(
                store.unwrap(),
                self.key.to_bytes(),
                self.cert.clone(),
                fleet,
                &self.folder,
            )
            .unwrap();
        // The folder keeps what the node writes there (revocations, a
        // renewed certificate), as `osmoda run`'s does.
        builder.data = Some(osmoda_node::datadir::DataDir::new(self.folder.clone()));
        builder.fabric = FabricConfig {
            bootstrap: boot.to_vec(),
            limits: osmoda_fabric::behaviour::Limits {
                max_established: max,
                ..Default::default()
            },
            ..builder.fabric
        };
        self.running = Some(builder.start().await.unwrap());
    }

    async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
    }

    pub(super) fn node(&self) -> Arc<Node> {
        self.running.as_ref().unwrap().node.clone()
    }

    pub(super) fn addr(&self, net: &SimNetwork) -> Multiaddr {
        net.host_addr(self.host, PORT).unwrap()
    }

    pub(super) fn peer_id(&self) -> String {
        self.node().info().node_id.clone()
    }
}

/// Waits up to `secs` for `check`.
pub(super) async fn eventually(secs: u64, mut check: impl FnMut() -> bool) -> bool {
    for _ in 0..secs * 10 {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    check()
}

pub(super) async fn connected(node: &Node, n: usize) -> bool {
    for _ in 0..300 {
        if node.peers().await.unwrap().len() >= n {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// The node's own audit entries of `action`.
pub(super) async fn entries(node: &Node, action: &str) -> Vec<AuditEntryView> {
    let query = LogQuery {
        node: None,
        start: 0,
        limit: 4096,
    };
    let log = node.audit_log(query).await.unwrap().entries;
    log.into_iter().filter(|e| e.action == action).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_stops_at_the_first_hop_and_is_audited_at_a_bounded_rate() {
    let tmp = tempfile::tempdir().unwrap();
    let net = SimNetwork::new(SimConfig::default());
    let root = FleetRoot::generate(&mut rand::rngs::OsRng);
    // A line: rogue — hub — far, and the admin beside the hub. The far
    // node and the rogue keep one link each, so junk can reach the far
    // node only through the hub.
    let hub = Member::new(&net, &root, Role::Member, tmp.path(), &[], 512).await;
    let boot = [hub.addr(&net)];
    let far = Member::new(&net, &root, Role::Member, tmp.path(), &boot, 1).await;
    assert!(connected(&far.node(), 1).await);
    let rogue = Member::new(&net, &root, Role::Member, tmp.path(), &boot, 1).await;
    assert!(connected(&rogue.node(), 1).await);
    let admin = Member::new(&net, &root, Role::Admin, tmp.path(), &boot, 2).await;
    assert!(connected(&hub.node(), 3).await);
    // Gossip meshes form on heartbeats.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Junk, a member's forgery and another fleet's command, 2,000 in all.
    let other = FleetRoot::generate(&mut rand::rngs::OsRng);
    let stranger = SigningKey::generate(&mut rand::rngs::OsRng);
    let stranger_cert = other
        .issue(
            stranger.verifying_key().to_bytes(),
            "x",
            Role::Admin,
            now_secs() - 60,
            now_secs() + 60,
        )
        .unwrap();
    let now_ms = now_secs() * 1000;
    let forged = command(EmergencyKind::Lockdown, now_ms, &rogue.cert, &rogue.key);
    let foreign = command(EmergencyKind::Lockdown, now_ms, &stranger_cert, &stranger);
    let fabric = rogue.running.as_ref().unwrap().fabric().clone();
    let mut sent = 0;
    for i in 0..2_000u32 {
        let data = match i % 3 {
            0 => [b"junk".as_slice(), &i.to_be_bytes()].concat(),
            1 => forged.clone(),
            _ => foreign.clone(),
        };
        if fabric.publish(EMERGENCY, data).await.is_ok() {
            sent += 1;
        }
        if i % 100 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert!(sent > 1_000, "the rogue could not gossip: {sent}");
    let hub_node = hub.node();
    assert!(
        // Rejections soon graylist the rogue at the hub, so a handful.
        eventually(20, || hub_node.emergency_state().refused_commands >= 1).await,
        "the hub counted {} refusals",
        hub_node.emergency_state().refused_commands
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let refused = hub_node.emergency_state().refused_commands;
    let summaries = entries(&hub_node, "emergency.refused").await;
    eprintln!(
        "{sent} junk messages; the hub refused {refused} and wrote {} entries",
        summaries.len()
    );
    assert_eq!(
        summaries.len(),
        1,
        "one summary per peer per minute: {summaries:?}"
    );
    assert!(summaries[0].target == rogue.peer_id(), "{summaries:?}");
    assert!(entries(&hub_node, "emergency.unknown").await.is_empty());
    assert!(entries(&hub_node, "emergency.lockdown").await.is_empty());

    // Nothing went past the hub, though the path works for real commands.
    let far_node = far.node();
    assert_eq!(
        far_node.emergency_state().refused_commands,
        0,
        "junk was forwarded"
    );
    let real = admin.node().emergency(OP, "lockdown", true).await.unwrap();
    assert_eq!(real.here, "applied");
    assert!(eventually(20, || far_node.emergency_state().lockdown).await);
    assert_eq!(
        far_node.emergency_state().refused_commands,
        0,
        "junk was forwarded"
    );

    // The far node names the issuer, and who relayed the command to it.
    let applied = entries(&far_node, "emergency.lockdown").await;
    assert_eq!(applied.len(), 1, "{applied:?}");
    let details = &applied[0].details;
    assert!(details.contains(&admin.peer_id()), "{details}");
    // Its one link is to the hub: by gossip or by the register exchange,
    // the hub brought it.
    assert!(details.contains(&hub.peer_id()), "{details}");
    for mut m in [hub, far, rogue, admin] {
        m.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_away_takes_the_lockdown_in_force_and_a_freeze_does_not_hide_it() {
    let tmp = tempfile::tempdir().unwrap();
    let net = SimNetwork::new(SimConfig::default());
    let root = FleetRoot::generate(&mut rand::rngs::OsRng);
    let admin = Member::new(&net, &root, Role::Admin, tmp.path(), &[], 512).await;
    let boot = [admin.addr(&net)];
    let other = Member::new(&net, &root, Role::Member, tmp.path(), &boot, 512).await;
    let mut away = Member::new(&net, &root, Role::Member, tmp.path(), &boot, 512).await;
    assert!(connected(&admin.node(), 2).await);
    tokio::time::sleep(Duration::from_secs(2)).await;

    away.stop().await;
    let admin_node = admin.node();
    admin_node.emergency(OP, "lockdown", true).await.unwrap();
    // A later FREEZE, newer than the LOCKDOWN: a single register would
    // hold only it.
    tokio::time::sleep(Duration::from_millis(5)).await;
    admin_node.emergency(OP, "freeze", true).await.unwrap();
    let other_node = other.node();
    assert!(
        eventually(20, || {
            let s = other_node.emergency_state();
            s.lockdown && s.frozen
        })
        .await
    );

    // Back once gossipsub's cache (5 heartbeats of 0.7 s) forgot the
    // commands, with no gossip to hear: its neighbours' registers lock it.
    tokio::time::sleep(Duration::from_secs(5)).await;
    away.start(&net, &root, &boot, 512).await;
    let back = away.node();
    assert!(
        eventually(10, || back.emergency_state().lockdown).await,
        "the member that was away is not locked down"
    );
    assert!(eventually(10, || back.emergency_state().frozen).await);
    let applied = entries(&back, "emergency.lockdown").await;
    assert!(
        applied
            .iter()
            .any(|e| e.details.contains("from the register of")),
        "{applied:?}"
    );
    for mut m in [admin, other, away] {
        m.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_lockdown_replayed_to_a_node_that_joined_after_the_unlock_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let net = SimNetwork::new(SimConfig::default());
    let root = FleetRoot::generate(&mut rand::rngs::OsRng);
    let admin = Member::new(&net, &root, Role::Admin, tmp.path(), &[], 512).await;
    let boot = [admin.addr(&net)];
    let member = Member::new(&net, &root, Role::Member, tmp.path(), &boot, 512).await;
    assert!(connected(&admin.node(), 1).await);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let admin_node = admin.node();
    let lockdown = admin_node.emergency(OP, "lockdown", true).await.unwrap();
    let old = lockdown.command.unwrap();
    admin_node.emergency(OP, "unlock", true).await.unwrap();
    let member_node = member.node();
    assert!(
        eventually(20, || member_node
            .emergency_state()
            .last_fleet_kind
            .as_deref()
            == Some("unlock"))
        .await
    );

    // A node joins after the UNLOCK: its neighbours' registers hold it.
    // It joins through the member, which then gossips the old command.
    let through = [member.addr(&net)];
    let joiner = Member::new(&net, &root, Role::Member, tmp.path(), &through, 512).await;
    let joined = joiner.node();
    assert!(
        eventually(10, || joined.emergency_state().last_fleet_kind.as_deref()
            == Some("unlock"))
        .await,
        "the joiner did not get the registers"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The operator's relay refuses the old command...
    let refused = joined.relay(OP, &old).await.expect_err("a replay relayed");
    assert!(refused.to_string().contains("replay"), "{refused}");
    // ... and a member that gossips it anyway changes nothing anywhere.
    let bytes = osmoda_fabric::proto::parse_hex_bytes(&old).unwrap();
    let fabric = member.running.as_ref().unwrap().fabric().clone();
    assert!(fabric.publish(EMERGENCY, bytes.clone()).await.is_ok());
    assert!(eventually(10, || joined.emergency_state().refused_commands > 0).await);
    assert!(
        !joined.emergency_state().lockdown,
        "the replay locked the joiner"
    );
    assert_eq!(
        joined.receive_emergency(&bytes, Via::Operator).await,
        Received::Ignored("replay: not newer than the fleet's lockdown register".into())
    );
    assert!(!joined.emergency_state().lockdown);
    for mut m in [admin, member, joiner] {
        m.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn news_has_a_maximum_age_the_register_has_none_and_flags_keep_apart() {
    let tmp = tempfile::tempdir().unwrap();
    let net = SimNetwork::new(SimConfig::default());
    let root = FleetRoot::generate(&mut rand::rngs::OsRng);
    let admin = Member::new(&net, &root, Role::Admin, tmp.path(), &[], 512).await;
    let member = Member::new(&net, &root, Role::Member, tmp.path(), &[], 512).await;
    let node = member.node();
    let (key, cert) = (&admin.key, &admin.cert);
    let now_ms = now_secs() * 1000;

    // A FREEZE newer than a LOCKDOWN arrives first: the LOCKDOWN still
    // applies (its own register), and the flags stay apart.
    let freeze = command(EmergencyKind::Freeze, now_ms - 1000, cert, key);
    let lockdown = command(EmergencyKind::Lockdown, now_ms - 2000, cert, key);
    assert_eq!(
        node.receive_emergency(&freeze, Via::Operator).await,
        Received::Applied(EmergencyKind::Freeze)
    );
    assert_eq!(
        node.receive_emergency(&lockdown, Via::Operator).await,
        Received::Applied(EmergencyKind::Lockdown)
    );
    let state = node.emergency_state();
    assert!(state.lockdown && state.frozen);

    // A LOCKDOWN older than the news limit, on a node that holds nothing:
    // ignored as news, refused by the relay, taken from a register (the
    // register is the fleet's current state, however old).
    let old = now_ms - MAX_NEWS_AGE_MS - 60_000;
    let old_lockdown = command(EmergencyKind::Lockdown, old, cert, key);
    let fresh = Member::new(&net, &root, Role::Member, tmp.path(), &[], 512).await;
    let fresh_node = fresh.node();
    let stale = fresh_node
        .receive_emergency(&old_lockdown, Via::Operator)
        .await;
    assert!(
        matches!(&stale, Received::Ignored(r) if r.starts_with("stale")),
        "{stale:?}"
    );
    let relayed = fresh_node.relay(OP, &hex(&old_lockdown)).await;
    let refused = relayed.expect_err("stale news relayed");
    assert!(refused.to_string().contains("stale"), "{refused}");
    assert!(!fresh_node.emergency_state().lockdown);
    let peer = libp2p::PeerId::random();
    assert_eq!(
        fresh_node
            .receive_emergency(&old_lockdown, Via::Register(peer))
            .await,
        Received::Applied(EmergencyKind::Lockdown)
    );
    // An UNLOCK older than the LOCKDOWN held changes nothing, by any way.
    let old_unlock = command(EmergencyKind::Unlock, old + 1, cert, key);
    let replay = node
        .receive_emergency(&old_unlock, Via::Register(peer))
        .await;
    assert!(
        matches!(&replay, Received::Ignored(r) if r.starts_with("replay")),
        "{replay:?}"
    );
    assert!(node.emergency_state().lockdown);
    assert!(fresh_node.emergency_state().lockdown);
    for mut m in [admin, member, fresh] {
        m.stop().await;
    }
}
