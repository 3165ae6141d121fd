//! Enrollment without shipped keys: a running admin node makes a one-time
//! token, a new node makes its own key and gets its certificate from that
//! admin over the hybrid link, connects, and a second use of the token is
//! refused. The time from `join` to the first connected peer is printed
//! (`docs/benchmarks.md`).

mod common;

use std::time::Instant;

use common::{stderr, Node};

fn token(admin: &Node, name: &str) -> String {
    let out = admin.cli(&["fleet", "invite", "--name", name]);
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn a_node_enrolls_with_its_own_key_and_a_token_works_once() {
    let tmp = tempfile::tempdir().unwrap();
    let mut admin = Node::new(tmp.path(), "n0");
    let out = admin.cli(&["fleet", "create", "--name", "t", "--node-name", "n0"]);
    assert!(out.status.success(), "{}", stderr(&out));
    admin.start_local(&[]);
    let admin_id = admin.status()["node_id"].as_str().unwrap().to_string();

    let token = token(&admin, "n1");
    let mut joiner = Node::new(tmp.path(), "n1");
    let started = Instant::now();
    let out = joiner.cli(&["join", &token]);
    assert!(out.status.success(), "{}", stderr(&out));
    let enrolled = started.elapsed();
    // The joiner's own key: nothing in the token could have made it.
    let cert = joiner.json(&["fleet", "show"]);
    assert_eq!(cert["node"]["name"], "n1");
    assert_eq!(cert["node"]["role"], "member");
    assert_eq!(cert["node"]["issuer"], admin_id.as_str());
    // An enrolled certificate lasts the default 30 days, not a year.
    let lasts =
        cert["node"]["expires_at"].as_u64().unwrap() - cert["node"]["issued_at"].as_u64().unwrap();
    assert!(lasts <= 30 * 24 * 3600 + 60, "{lasts}");
    joiner.start_local(&[]);
    let out = joiner.cli(&["peers", "--wait", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let connected = started.elapsed();
    eprintln!(
        "enrollment: join took {} ms, token to first connected peer {} ms",
        enrolled.as_millis(),
        connected.as_millis()
    );

    // The same token again, from another fresh folder: refused, clearly,
    // and the folder stays empty.
    let again = Node::new(tmp.path(), "n1-again");
    let out = again.cli(&["join", &token]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("used already"), "{}", stderr(&out));
    assert!(!again.dir.join("identity.key").exists());

    // A member (here, one an admin enrolled) cannot enroll anyone.
    let out = joiner.cli(&["fleet", "invite", "--name", "n9"]);
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(stderr(&out).contains("cannot enroll"), "{}", stderr(&out));

    // A fresh certificate is not due for renewal: the admin says so.
    let out = joiner.cli(&["fleet", "renew"]);
    assert_eq!(out.status.code(), Some(6), "{}", stderr(&out));
    assert!(stderr(&out).contains("not due"), "{}", stderr(&out));
    // The root key's holder renews its own with the key, and keeps it.
    let before = admin.json(&["fleet", "show"])["node"]["expires_at"]
        .as_u64()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let renewed = admin.json(&["fleet", "renew"]);
    assert_eq!(renewed["issued_by"], "root", "{renewed}");
    let after = admin.json(&["fleet", "show"])["node"]["expires_at"]
        .as_u64()
        .unwrap();
    assert!(after > before, "{before} then {after}");
    assert_eq!(renewed["expires_at"].as_u64(), Some(after));
    assert_eq!(
        admin.status()["certificate_expires_at"].as_u64(),
        Some(after)
    );

    // An admin is enrolled too, by the node that keeps the root key: the
    // root signs its certificate, and no key travels in the token.
    let view = admin.json(&["fleet", "invite", "--role", "admin", "--name", "n2"]);
    assert_eq!(view["kind"], "enrollment", "{view}");
    let mut second = Node::new(tmp.path(), "n2");
    let out = second.cli(&["join", view["token"].as_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let cert = second.json(&["fleet", "show"]);
    assert_eq!(cert["node"]["role"], "admin", "{cert}");
    assert!(cert["node"]["issuer"].is_null(), "root-signed: {cert}");
    second.start_local(&[]);
    let out = second.cli(&["fleet", "invite", "--name", "n3"]);
    assert!(
        out.status.success(),
        "the new admin enrolls: {}",
        stderr(&out)
    );
    second.stop();
    // A member asked for an admin gets a clear refusal.
    let out = joiner.cli(&["fleet", "invite", "--role", "admin", "--name", "n4"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("root key"), "{}", stderr(&out));

    // Both the enrollment and the refusal are in the admin's audit log.
    let log = admin.json(&["audit", "log"]);
    let enrolls: Vec<&serde_json::Value> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "fleet.enroll")
        .collect();
    assert_eq!(enrolls.len(), 3, "{log:#}");

    // The token never reached the admin's log.
    admin.stop();
    assert!(!admin.log().contains(&token));
}
