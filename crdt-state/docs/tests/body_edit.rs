//! Body updates prepared outside the store's lock: they reproduce the new
//! text exactly (non-ASCII included), are refused when the body changed
//! meanwhile, merge with concurrent edits as text, and cost little to
//! apply.

mod common;

use std::time::{Duration, Instant};

use automerge::transaction::Transactable;
use automerge::{Automerge, ObjType, ReadDoc, ROOT};
use common::{new_entry, store};
use osmoda_docs::{EntryUpdate, KnowledgeError, PreparedUpdate, ShardId};
use proptest::prelude::*;

fn body_update(body: &str) -> EntryUpdate {
    EntryUpdate {
        body: Some(body.to_owned()),
        ..EntryUpdate::default()
    }
}

#[test]
fn prepared_updates_reproduce_non_ascii_bodies() {
    let bodies = [
        "plain ascii",
        "accents: déjà vu, naïve, Ångström",
        "emoji: 👩‍👩‍👧 🇯🇵 🐻‍❄️ done",
        "CJK: 知識は力なり、東京",
        "combining: e\u{301}e\u{301}",
        "",
        "mixed 知識 déjà 👩‍👩‍👧 end",
    ];
    let mut s = store("node-a");
    s.put(new_entry("e", "t", bodies[0], &[]), 1).expect("put");
    for (i, body) in bodies.iter().enumerate() {
        let current = s.get("e").expect("get").expect("live").body;
        let prepared = PreparedUpdate::new(body_update(body), &current).expect("prepare");
        s.apply_update("e", &prepared, 2 + i as u64).expect("apply");
        assert_eq!(s.get("e").expect("get").expect("live").body, *body);
    }
    // And back through the one-call path.
    for body in bodies.iter().rev() {
        s.update_body("e", body, 20).expect("update");
        assert_eq!(s.get("e").expect("get").expect("live").body, *body);
    }
}

#[test]
fn an_update_prepared_from_an_old_body_is_refused() {
    let mut s = store("node-a");
    s.put(new_entry("e", "t", "version one", &[]), 1)
        .expect("put");
    let prepared = PreparedUpdate::new(
        EntryUpdate {
            title: Some("new title".into()),
            body: Some("version three".into()),
            tags: Some(vec!["x".into()]),
        },
        "version one",
    )
    .expect("prepare");
    s.update_body("e", "version two", 2).expect("update");
    assert!(matches!(
        s.apply_update("e", &prepared, 3),
        Err(KnowledgeError::BodyChanged(id)) if id == "e"
    ));
    let e = s.get("e").expect("get").expect("live");
    assert_eq!(
        (e.title.as_str(), e.body.as_str(), e.updated_ms),
        ("t", "version two", 2),
        "nothing of the refused update was written"
    );
    assert!(e.tags.is_empty());
    // Prepared again from the current body, it applies.
    let again = PreparedUpdate::new(body_update("version three"), &e.body).expect("prepare");
    s.apply_update("e", &again, 4).expect("apply");
    assert_eq!(
        s.get("e").expect("get").expect("live").body,
        "version three"
    );
}

#[test]
fn preparing_validates_the_update() {
    let too_many: Vec<String> = (0..40).map(|i| format!("t{i}")).collect();
    let update = EntryUpdate {
        tags: Some(too_many),
        ..EntryUpdate::default()
    };
    assert!(matches!(
        PreparedUpdate::new(update, ""),
        Err(KnowledgeError::TooManyTags { .. })
    ));
}

#[test]
fn prepared_edits_on_two_replicas_merge_as_text() {
    let mut a = store("node-a");
    a.put(new_entry("doc", "t", "alpha béta gamma 東京", &[]), 1)
        .expect("put");
    let mut b = store("node-b");
    let shard = ShardId::of("doc");
    b.load_shard(shard, &a.shard_mut(shard).save())
        .expect("load");

    let base = "alpha béta gamma 東京";
    let pa = PreparedUpdate::new(body_update("ALPHA béta gamma 東京"), base).expect("prepare");
    let pb =
        PreparedUpdate::new(body_update("alpha béta gamma 大阪 delta"), base).expect("prepare");
    a.apply_update("doc", &pa, 2).expect("edit a");
    b.apply_update("doc", &pb, 3).expect("edit b");
    let from_a = a.shard(shard).expect("shard").changes_since(&[]);
    let from_b = b.shard(shard).expect("shard").changes_since(&[]);
    a.shard_mut(shard).apply_changes(&from_b).expect("apply");
    b.shard_mut(shard).apply_changes(&from_a).expect("apply");

    let ea = a.get("doc").expect("get").expect("present");
    let eb = b.get("doc").expect("get").expect("present");
    assert_eq!(ea.body, "ALPHA béta gamma 大阪 delta", "both edits survive");
    assert_eq!(ea, eb);
}

#[test]
fn a_rewrite_of_a_long_body_wins_over_a_concurrent_edit() {
    let old = words(1, 80_000);
    let rewritten = words(2, 80_000);
    let mut a = store("node-a");
    a.put(new_entry("doc", "t", &old, &[]), 1).expect("put");
    let mut b = store("node-b");
    let shard = ShardId::of("doc");
    b.load_shard(shard, &a.shard_mut(shard).save())
        .expect("load");

    let rewrite = PreparedUpdate::new(body_update(&rewritten), &old).expect("prepare");
    assert!(rewrite.body().expect("edit").is_rewrite());
    a.apply_update("doc", &rewrite, 2).expect("rewrite");
    b.update_body("doc", &format!("{old} and a postscript"), 3)
        .expect("edit");
    let from_a = a.shard(shard).expect("shard").changes_since(&[]);
    let from_b = b.shard(shard).expect("shard").changes_since(&[]);
    a.shard_mut(shard).apply_changes(&from_b).expect("apply");
    b.shard_mut(shard).apply_changes(&from_a).expect("apply");
    let ea = a.get("doc").expect("get").expect("present");
    assert_eq!(ea.body, rewritten, "the edit of the replaced text is lost");
    assert_eq!(ea, b.get("doc").expect("get").expect("present"));
}

/// Text over characters of every UTF-8 and UTF-16 width, and clusters.
fn mixed_text() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec![
            "a",
            "b",
            " ",
            "é",
            "e\u{301}",
            "知",
            "識",
            "😀",
            "👩‍👧",
            "🇫🇷",
            "\n",
        ]),
        0..60,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #[test]
    fn any_prepared_edit_yields_the_new_body(old in mixed_text(), new in mixed_text()) {
        let mut s = store("node-a");
        s.put(new_entry("e", "t", &old, &[]), 1).expect("put");
        let prepared = PreparedUpdate::new(body_update(&new), &old).expect("prepare");
        s.apply_update("e", &prepared, 2).expect("apply");
        prop_assert_eq!(s.get("e").expect("get").expect("live").body, new);
    }
}

/// Pseudo-random lowercase words, `chars` long.
fn words(mut seed: u64, chars: usize) -> String {
    let mut out = String::with_capacity(chars);
    while out.len() < chars {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let len = 2 + (seed >> 60) as usize % 8;
        for k in 0..len {
            out.push((b'a' + ((seed >> (8 + 5 * k)) % 26) as u8) as char);
        }
        out.push(' ');
    }
    out.truncate(chars);
    out
}

/// Time of Automerge's `update_text` (what `update` ran under the lock
/// before) from `old` to `new`.
fn automerge_update_text(old: &str, new: &str) -> Duration {
    let mut doc = Automerge::new();
    let mut tx = doc.transaction();
    let text = tx.put_object(ROOT, "body", ObjType::Text).expect("text");
    tx.splice_text(&text, 0, 0, old).expect("fill");
    tx.commit();
    let started = Instant::now();
    let mut tx = doc.transaction();
    tx.update_text(&text, new).expect("update");
    tx.commit();
    let elapsed = started.elapsed();
    assert_eq!(doc.text(&text).expect("read"), new);
    elapsed
}

/// The 40,000-character body, fully replaced and with a small edit.
fn forty_thousand_cases() -> (String, [(&'static str, String); 2]) {
    const CHARS: usize = 40_000;
    let old = words(1, CHARS);
    let mut small = old.clone();
    small.replace_range(CHARS / 2..CHARS / 2 + 5, "EDIT!");
    (
        old,
        [("fully replaced", words(2, CHARS)), ("small edit", small)],
    )
}

/// Prints, for a 40,000-character body, the prepared path's times: the
/// diff (without the lock) and the apply (under it). Figures, not
/// assertions; the old path is `automerge_update_text_on_forty_thousand`.
#[test]
fn forty_thousand_character_bodies_apply_quickly() {
    let (old, cases) = forty_thousand_cases();
    for (case, new) in &cases {
        let mut s = store("node-a");
        s.put(new_entry("e", "t", &old, &[]), 1).expect("put");
        let current = s.get("e").expect("get").expect("live").body;
        let started = Instant::now();
        let prepared = PreparedUpdate::new(body_update(new), &current).expect("prepare");
        let prepare = started.elapsed();
        let started = Instant::now();
        s.apply_update("e", &prepared, 2).expect("apply");
        let apply = started.elapsed();
        assert_eq!(&s.get("e").expect("get").expect("live").body, new);
        let edit = prepared.body().expect("a body edit");
        println!(
            "figure: 40k body {case}: prepared diff {prepare:?} (without the lock; {} splices, \
             coarse: {}, rewrite: {}), apply {apply:?} (under the lock)",
            edit.splice_count(),
            edit.is_coarse(),
            edit.is_rewrite(),
        );
    }
}

/// The old path: Automerge's `update_text`, which `update` ran under the
/// node's lock. Minutes for the full replacement, so run on demand:
/// `cargo test -p osmoda-docs --test body_edit -- --ignored --nocapture`.
#[test]
#[ignore = "minutes long; prints the old path's figures"]
fn automerge_update_text_on_forty_thousand() {
    let (old, cases) = forty_thousand_cases();
    for (case, new) in cases.iter().rev() {
        println!(
            "figure: 40k body {case}: automerge update_text {:?}",
            automerge_update_text(&old, new)
        );
    }
}
