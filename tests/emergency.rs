//! Fleet emergency commands over five real nodes: a lockdown signed by an
//! admin reaches every member and is in every audit log, and a member
//! stopped while it was sent is locked down within seconds of coming
//! back; a member's own CLI refuses to sign or relay one, and the same
//! command signed by a compromised member and gossiped straight onto the
//! fabric, again and again, stops at the first hop, which audits it once;
//! a replayed command is refused by relay and ignored by all.

mod common;

use std::time::{Duration, Instant};

use common::{fleet, wait_until, Node};
use osmoda_fabric::proto::FleetCert;
use osmoda_fabric::proto::{hex, parse_hex, parse_hex_bytes, EmergencyCommand, EmergencyKind};
use osmoda_fabric::{Credentials, FabricConfig, Membership, TopicSpec, Validator};
use osmoda_node::runtime::topics::EMERGENCY;

/// A lockdown signed by the member whose folder is `dir`, as a compromised
/// member would make it.
fn member_signed_lockdown(dir: &std::path::Path) -> (Credentials, Vec<u8>) {
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    let key: [u8; 32] = parse_hex(read("identity.key").trim()).unwrap();
    let cert =
        FleetCert::decode(&parse_hex_bytes(read("membership.cert").trim()).unwrap()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let signing = ed25519_dalek::SigningKey::from_bytes(&key);
    let cmd = EmergencyCommand::sign(
        EmergencyKind::Lockdown,
        now,
        cert.clone(),
        &signing,
        &mut rand::rngs::OsRng,
    )
    .unwrap();
    (Credentials::new(&key, cert).unwrap(), cmd.encode())
}

fn locked(node: &Node) -> bool {
    node.status()["agents"]["lockdown"] == true
}

/// Entries of `action` in a node's audit log, with their outcome.
fn outcomes(node: &Node, action: &str) -> Vec<String> {
    node.json(&["audit", "log", "--limit", "4000"])["entries"]
        .clone()
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == action)
        .map(|e| {
            format!(
                "{} {}",
                e["outcome"].as_str().unwrap_or(""),
                e["details"].as_str().unwrap_or("")
            )
        })
        .collect()
}

#[test]
fn fleet_lockdown_from_an_admin_reaches_all_and_forgeries_and_replays_do_not() {
    let tmp = tempfile::tempdir().unwrap();
    let mut nodes = fleet(tmp.path(), 6);
    let rogue_dir = nodes.pop().unwrap().dir.clone();
    nodes[0].start_local(&[]);
    let boot = nodes[0].addr("tcp");
    for node in &mut nodes[1..] {
        node.start_local(std::slice::from_ref(&boot));
    }
    assert!(
        wait_until(Duration::from_secs(30), || nodes
            .iter()
            .all(|n| n.peer_ids().len() == 4)),
        "the fleet did not connect"
    );
    for node in &nodes {
        let out = node.cli(&["agent", "add", "worker", "--", "/bin/sh", "-c", "sleep 600"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Gossip meshes form on heartbeats; give them one.
    std::thread::sleep(Duration::from_secs(2));

    // A plain member's CLI refuses to sign a fleet command, and to relay
    // one a member signed: nothing would obey it.
    let out = nodes[1].cli(&["lockdown", "--fleet"]);
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("admin"));
    let (rogue, forged) = member_signed_lockdown(&rogue_dir);
    let out = nodes[1].cli(&["relay", &hex(&forged)]);
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an admin"));
    let out = nodes[1].cli(&["relay", "c0ffee"]);
    assert_eq!(out.status.code(), Some(4), "a malformed relay is refused");

    // A compromised member gossips it anyway, a hundred times.
    let boot_addr = boot.clone();
    let fleet_id = rogue.cert().fleet;
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (rogue_fabric, _task) = rt.block_on(async {
        let config = FabricConfig {
            listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
            bootstrap: vec![boot_addr.parse().unwrap()],
            mdns: false,
            // The rogue only publishes; it leaves what it receives unjudged.
            topics: vec![TopicSpec::new(EMERGENCY, Validator::queue(1).0)],
            ..FabricConfig::default()
        };
        let (fabric, events, task) =
            osmoda_fabric::start(rogue, Membership::new(fleet_id), config).unwrap();
        std::mem::forget(events);
        let mut sent = 0;
        for _ in 0..500 {
            if fabric.publish(EMERGENCY, forged.clone()).await.is_ok() {
                sent += 1;
                if sent == 100 {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(sent > 0, "the rogue member could not gossip");
        (fabric, task)
    });
    // Its neighbours refuse it (not forwarded), each writing one summary
    // of everything it refused; nobody obeys it.
    let summaries = |node: &Node| outcomes(node, "emergency.refused");
    assert!(
        wait_until(Duration::from_secs(20), || nodes.iter().any(|n| summaries(
            n
        )
        .iter()
        .any(|o| o.starts_with("denied") && o.contains("not an admin")))),
        "no node recorded the forged lockdown"
    );
    std::thread::sleep(Duration::from_secs(2));
    for (i, node) in nodes.iter().enumerate() {
        assert!(summaries(node).len() <= 1, "n{i}: {:?}", summaries(node));
        let per_message = outcomes(node, "emergency.lockdown");
        assert!(
            !per_message.iter().any(|o| o.contains("not an admin")),
            "n{i}: {per_message:?}"
        );
        assert!(!locked(node), "n{i} obeyed a member's lockdown");
    }

    // A member away while the lockdown is sent.
    nodes[4].stop();
    // The admin's lockdown reaches every node within seconds.
    let sent = Instant::now();
    let real = nodes[0].json(&["lockdown", "--fleet"]);
    assert_eq!(real["here"], "applied", "{real}");
    for (i, node) in nodes[..4].iter().enumerate() {
        assert!(
            wait_until(Duration::from_secs(20), || locked(node)),
            "n{i} is not locked down:\n{}",
            node.log()
        );
    }
    eprintln!(
        "lockdown --fleet to the last of 4 nodes locked: {:?} (polled)",
        sent.elapsed()
    );
    // Back once gossipsub's cache forgot the command (3.5 s), it takes the
    // lockdown from its neighbours' registers.
    std::thread::sleep(Duration::from_secs(4));
    nodes[4].start_local(std::slice::from_ref(&boot));
    let back = Instant::now();
    assert!(
        wait_until(Duration::from_secs(15), || locked(&nodes[4])),
        "the member that was away is not locked down:\n{}",
        nodes[4].log()
    );
    eprintln!(
        "a member back from away locked: {:?} (polled)",
        back.elapsed()
    );
    for (i, node) in nodes.iter().enumerate() {
        assert!(
            outcomes(node, "emergency.lockdown")
                .iter()
                .any(|o| o.starts_with("ok")),
            "n{i} has no audit entry for the lockdown"
        );
        let agents = node.json(&["agent", "list"]);
        assert_eq!(agents[0]["state"]["state"], "stopped", "n{i}: {agents}");
        assert_eq!(
            node.cli(&["agent", "start", "worker"]).status.code(),
            Some(4)
        );
    }

    // Unlock, then replay the old lockdown: ignored everywhere.
    let unlock = nodes[0].json(&["unlock", "--fleet"]);
    assert_eq!(unlock["here"], "applied", "{unlock}");
    for (i, node) in nodes.iter().enumerate() {
        assert!(
            wait_until(Duration::from_secs(20), || !locked(node)),
            "n{i} is still locked down"
        );
    }
    let old = real["command"].as_str().unwrap();
    let replay = nodes[3].cli(&["relay", old]);
    assert_eq!(replay.status.code(), Some(4), "a replay relayed");
    assert!(
        String::from_utf8_lossy(&replay.stderr).contains("replay"),
        "{}",
        String::from_utf8_lossy(&replay.stderr)
    );
    // Gossiped anyway, by the compromised member: nobody obeys it.
    let old_bytes = parse_hex_bytes(old).unwrap();
    rt.block_on(async { rogue_fabric.publish(EMERGENCY, old_bytes).await })
        .ok();
    std::thread::sleep(Duration::from_secs(3));
    for (i, node) in nodes.iter().enumerate() {
        assert!(!locked(node), "n{i} obeyed a replayed lockdown");
    }

    // A lockdown survives a restart.
    nodes[2].json(&["lockdown"]);
    nodes[2].stop();
    nodes[2].start_local(std::slice::from_ref(&boot));
    assert!(locked(&nodes[2]), "the lockdown did not survive a restart");
    let agents = nodes[2].json(&["agent", "list"]);
    assert_eq!(agents[0]["state"]["state"], "stopped", "{agents}");
}
