//! Entries as large as the limits allow reach every member, including one
//! that joins later, and so do the edits after them; a shard written past
//! what one store value holds keeps working on every member; and a write
//! that would take a shard past its limit is refused on the writer, with
//! the limit named, and reaches no one.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{fleet, free_port, start_meshed as start, stderr, wait_until, Node};
use serde_json::Value;

/// `len` bytes of text that compresses little: letters, digits and
/// punctuation from a pseudo-random sequence seeded by `seed`.
fn text(seed: u64, len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .";
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ALPHABET[(x >> 58) as usize] as char
        })
        .collect()
}

fn write_file(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, body).unwrap();
    path.to_str().unwrap().to_string()
}

fn body_of(node: &Node, id: &str) -> Option<String> {
    let out = node.cli(&["--json", "knowledge", "get", id]);
    if !out.status.success() {
        return None;
    }
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    v["body"].as_str().map(str::to_string)
}

fn arrives(node: &Node, id: &str, body: &str, what: &str) {
    let ok = wait_until(Duration::from_secs(60), || {
        body_of(node, id).as_deref() == Some(body)
    });
    assert!(
        ok,
        "{what} did not reach {}\n{}",
        node.dir.display(),
        node.log()
    );
}

fn update(node: &Node, id: &str, file: &str) -> std::process::Output {
    node.cli(&["knowledge", "update", id, "--file", file])
}

#[test]
fn large_entries_and_large_shards_replicate_and_the_limit_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    let mut nodes = fleet(tmp.path(), 3);
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    start(&mut nodes[0], &ports, 0);
    start(&mut nodes[1], &ports, 1);

    // 250 KB: too large for a push (64 KiB), so it travels by sync; before,
    // a sync message held 32 KiB and it reached no one.
    let big = text(1, 250_000);
    let file = write_file(files.path(), "big", &big);
    let out = nodes[0].cli(&["knowledge", "put", "--title", "big", "--file", &file]);
    assert!(out.status.success(), "{}", stderr(&out));
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    arrives(&nodes[1], &id, &big, "a 250 KB entry");

    // An edit after it, small enough to push.
    let edited = format!("{big}\nedited");
    let file = write_file(files.path(), "edited", &edited);
    let out = update(&nodes[0], &id, &file);
    assert!(out.status.success(), "{}", stderr(&out));
    arrives(&nodes[1], &id, &edited, "the edit after a 250 KB entry");

    // A node that joins later gets both.
    start(&mut nodes[2], &ports, 2);
    arrives(
        &nodes[2],
        &id,
        &edited,
        "a 250 KB entry and its edit, to a late joiner",
    );

    // Rewrites of 250 KB into one entry, so one shard. After five its
    // history passes 1 MiB, which no longer fits one store value: every
    // node has the last one, and a restarted node loads what it saved in
    // parts. Then on until the shard would pass its limit: the write is
    // refused on the writer with the limit named, and undone. The entry's
    // author writes (only it, or an admin, may).
    let out = nodes[0].cli(&["knowledge", "put", "--title", "busy", "--body", "start"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let busy = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let mut last = String::new();
    let mut refused = None;
    for i in 0..40u64 {
        let body = text(1000 + i, 250_000);
        let file = write_file(files.path(), "huge", &body);
        let out = update(&nodes[0], &busy, &file);
        if !out.status.success() {
            refused = Some((out, i));
            break;
        }
        last = body;
        if i == 4 {
            for node in &nodes {
                arrives(node, &busy, &last, "a rewrite past 1 MiB of history");
            }
            nodes[1].stop();
            start(&mut nodes[1], &ports, 1);
            assert_eq!(body_of(&nodes[1], &busy).as_deref(), Some(last.as_str()));
            assert_eq!(body_of(&nodes[1], &id).as_deref(), Some(edited.as_str()));
        }
    }
    let (out, i) = refused.expect("a shard past 4 MiB is refused");
    assert!(i > 4, "refused after only {i} rewrites: {}", stderr(&out));
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("4194304-byte limit"),
        "the refusal names the limit: {}",
        stderr(&out)
    );
    assert_eq!(body_of(&nodes[0], &busy).as_deref(), Some(last.as_str()));
    for node in &nodes[1..] {
        arrives(node, &busy, &last, "the last accepted rewrite");
    }
    // The shard still takes small writes, and they replicate.
    let out = nodes[0].cli(&["knowledge", "update", &busy, "--title", "renamed"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let renamed = wait_until(Duration::from_secs(60), || {
        nodes[2].json(&["knowledge", "get", &busy])["title"] == "renamed"
    });
    assert!(renamed, "a small write after the refusal did not replicate");
}
