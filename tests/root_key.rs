//! Keeping the fleet root key offline: a fleet created with `--root-key
//! FILE` has no key in its folder, its running node does not hold it (and
//! does not warn about it), and inviting or revoking works only with that
//! file; another fleet's key, or an existing file, is refused.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{stderr, Node};

const ONLINE: &str = "the fleet root key is online";

#[test]
fn a_fleet_whose_root_key_is_kept_offline() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = tmp.path().join("usb");
    std::fs::create_dir(&keys).unwrap();
    let key = keys.join("fleet.key");
    let key_arg = key.to_str().unwrap();

    let mut founder = Node::new(tmp.path(), "n0");
    let out = founder.cli(&[
        "fleet",
        "create",
        "--name",
        "offline",
        "--node-name",
        "n0",
        "--root-key",
        key_arg,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(key_arg));
    assert!(
        !founder.dir.join("root.key").exists(),
        "no key in the folder"
    );
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    // A second fleet never writes over the first one's key.
    let other = Node::new(tmp.path(), "other");
    let out = other.cli(&["fleet", "create", "--root-key", key_arg]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("exists"), "{}", stderr(&out));

    // Without the file, no invite; the error says how to pass it.
    let out = founder.cli(&["fleet", "invite", "--name", "n1"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("--root-key"), "{}", stderr(&out));

    // The running node holds no root key, and says nothing about one.
    founder.start_local(&[]);
    assert_eq!(founder.status()["holds_root_key"], false);
    assert!(!founder.log().contains(ONLINE), "{}", founder.log());

    // With it, an invite works, and the new node joins and connects.
    let out = founder.cli(&["fleet", "invite", "--name", "n1", "--root-key", key_arg]);
    assert!(out.status.success(), "{}", stderr(&out));
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let mut joiner = Node::new(tmp.path(), "n1");
    let out = joiner.cli(&["join", &token]);
    assert!(out.status.success(), "{}", stderr(&out));
    let addr = founder.status()["listen"][0].as_str().unwrap().to_string();
    joiner.start_local(&[addr]);
    let out = founder.cli(&["peers", "--wait", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // Another fleet's root key is not this fleet's.
    let stranger = Node::new(tmp.path(), "stranger");
    let stranger_key = keys.join("stranger.key");
    let out = stranger.cli(&[
        "fleet",
        "create",
        "--root-key",
        stranger_key.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = founder.cli(&[
        "fleet",
        "invite",
        "--root-key",
        stranger_key.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not the root key"),
        "{}",
        stderr(&out)
    );

    // Revoking needs the file too, and works with it.
    let n1 = joiner.status()["node_id"].as_str().unwrap().to_string();
    let out = founder.cli(&["fleet", "revoke", &n1]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let out = founder.cli(&["fleet", "revoke", &n1, "--root-key", key_arg]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn a_node_with_its_root_key_online_warns_at_every_start() {
    let tmp = tempfile::tempdir().unwrap();
    let mut node = Node::new(tmp.path(), "n0");
    let out = node.cli(&["fleet", "create", "--name", "online"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(node.dir.join("root.key").exists());
    node.start_local(&[]);
    assert_eq!(node.status()["holds_root_key"], true);
    assert!(node.log().contains(ONLINE), "{}", node.log());
}
