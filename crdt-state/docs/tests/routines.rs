//! Routine definitions: operations, validation (cron in particular),
//! bounds, and replication of the routine book.

use proptest::prelude::*;

use osmoda_docs::{
    Action, NewRoutine, NodeActor, RoutineBook, RoutineError, Schedule, SyncLimits, SyncSession,
    Target, MAX_ARGS,
};

fn node(id: &str) -> NodeActor {
    NodeActor::new(id).expect("node id")
}

fn routine(id: &str, schedule: &str) -> NewRoutine {
    NewRoutine {
        id: id.to_owned(),
        name: format!("routine {id}"),
        schedule: schedule.to_owned(),
        target: Target::All,
        action: Action {
            command: "/usr/bin/df".into(),
            args: vec!["-h".into()],
            timeout_secs: 30,
        },
        enabled: true,
        created_by: "user:alice".into(),
    }
}

#[test]
fn add_get_list_enable_disable_remove() {
    let mut book = RoutineBook::new(&node("node-a"));
    book.add(routine("disk", "*/5 * * * *"), 10).expect("add");
    let mut r2 = routine("backup", "every 6h");
    r2.target = Target::parse("label:role=db").expect("target");
    r2.enabled = false;
    book.add(r2, 11).expect("add");

    let disk = book.get("disk").expect("get").expect("present");
    assert_eq!(disk.schedule, Schedule::Cron("*/5 * * * *".into()));
    assert_eq!(disk.target, Target::All);
    assert_eq!(disk.action.args, ["-h"]);
    assert_eq!(
        (disk.created_ms, disk.updated_ms, disk.enabled),
        (10, 10, true)
    );
    assert_eq!(disk.created_by, "user:alice");
    let backup = book.get("backup").expect("get").expect("present");
    assert_eq!(backup.schedule, Schedule::Every { secs: 6 * 3600 });
    assert_eq!(backup.target.to_string(), "label:role=db");

    let ids: Vec<String> = book.list().into_iter().map(|r| r.id).collect();
    assert_eq!(ids, ["backup", "disk"]);

    book.enable("backup", 20).expect("enable");
    book.disable("disk", 21).expect("disable");
    assert!(book.get("backup").expect("get").expect("present").enabled);
    let disk = book.get("disk").expect("get").expect("present");
    assert!(!disk.enabled);
    assert_eq!(disk.updated_ms, 21);

    assert!(matches!(
        book.add(routine("disk", "@hourly"), 22),
        Err(RoutineError::AlreadyExists(_))
    ));
    book.remove("disk", 23).expect("remove");
    assert!(book.get("disk").expect("get").is_none());
    assert!(matches!(
        book.remove("disk", 24),
        Err(RoutineError::NotFound(_))
    ));
    assert!(matches!(
        book.enable("disk", 24),
        Err(RoutineError::NotFound(_))
    ));
    book.add(routine("disk", "@hourly"), 25)
        .expect("an id may be reused after remove");
    assert_eq!(book.len(), 2);
}

#[test]
fn bad_cron_is_refused_with_a_clear_error() {
    let mut book = RoutineBook::new(&node("node-a"));
    for bad in [
        "61 * * * *",
        "* * * *",
        "*/0 * * * *",
        "every",
        "every 10 parsecs",
        "hourly",
    ] {
        let err = book.add(routine("r", bad), 1).expect_err(bad);
        let RoutineError::InvalidSchedule { schedule, reason } = &err else {
            panic!("{bad:?}: unexpected error {err}");
        };
        assert_eq!(schedule, bad);
        assert!(!reason.is_empty());
        assert!(
            err.to_string().contains(bad),
            "the message names the input: {err}"
        );
    }
    let err = book
        .add(routine("r", "61 * * * *"), 1)
        .expect_err("minute 61");
    let text = err.to_string();
    assert!(
        text.starts_with("invalid schedule \"61 * * * *\": not a cron expression"),
        "{text}"
    );
    assert!(book.is_empty(), "nothing was written");
}

#[test]
fn action_and_target_bounds() {
    let mut book = RoutineBook::new(&node("node-a"));
    let mut r = routine("r", "@daily");
    r.action.timeout_secs = 0;
    assert!(matches!(
        book.add(r, 1),
        Err(RoutineError::Invalid {
            field: "timeout",
            ..
        })
    ));
    let mut r = routine("r", "@daily");
    r.action.args = vec!["x".into(); MAX_ARGS + 1];
    assert!(matches!(
        book.add(r, 1),
        Err(RoutineError::Invalid { field: "args", .. })
    ));
    let mut r = routine("r", "@daily");
    r.action.command = " ".into();
    assert!(matches!(
        book.add(r, 1),
        Err(RoutineError::Invalid {
            field: "command",
            ..
        })
    ));
    let mut r = routine("r", "@daily");
    r.target = Target::Nodes(vec![]);
    assert!(matches!(
        book.add(r, 1),
        Err(RoutineError::Invalid {
            field: "target",
            ..
        })
    ));
    let mut r = routine("r", "@daily");
    r.name = "n".repeat(129);
    assert!(matches!(
        book.add(r, 1),
        Err(RoutineError::TooLong { field: "name", .. })
    ));
    let mut r = routine("r", "@daily");
    r.target = Target::Nodes(vec!["b".into(), "a".into(), "a".into()]);
    book.add(r, 1).expect("valid");
    let got = book.get("r").expect("get").expect("present");
    assert_eq!(got.target, Target::Nodes(vec!["a".into(), "b".into()]));
}

#[test]
fn the_book_replicates_and_round_trips() {
    let mut a = RoutineBook::new(&node("node-a"));
    let mut b = RoutineBook::new(&node("node-b"));
    a.add(routine("one", "every 1m"), 1).expect("add");
    b.add(routine("two", "0 3 * * *"), 2).expect("add");
    let limits = SyncLimits::default();
    let (mut sa, mut sb) = (SyncSession::new(limits), SyncSession::new(limits));
    for _ in 0..10 {
        let ma = sa.generate_message(a.doc()).expect("a");
        if let Some(m) = &ma {
            sb.receive_message(b.doc_mut(), m).expect("b receives");
        }
        let mb = sb.generate_message(b.doc()).expect("b");
        if let Some(m) = &mb {
            sa.receive_message(a.doc_mut(), m).expect("a receives");
        }
        if ma.is_none() && mb.is_none() {
            break;
        }
    }
    assert_eq!(a.list(), b.list());
    assert_eq!(a.len(), 2);
    // Concurrent disable and remove: the remove wins.
    a.disable("one", 3).expect("disable");
    b.remove("one", 4).expect("remove");
    let from_a = a.doc().changes_since(&[]);
    b.doc_mut().apply_changes(&from_a).expect("apply");
    assert!(b.get("one").expect("get").is_none());

    let bytes = b.doc_mut().save();
    let loaded = RoutineBook::load(&bytes, &node("node-b")).expect("load");
    assert_eq!(loaded.list(), b.list());
    assert!(RoutineBook::load(b"junk", &node("node-b")).is_err());
}

#[test]
fn names_are_unique_and_not_blank() {
    let mut book = RoutineBook::new(&node("node-a"));
    book.add(routine("disk", "every 5m"), 1).expect("add");
    let mut same_name = routine("disk2", "every 5m");
    same_name.name = "routine disk".into();
    assert!(matches!(
        book.add(same_name.clone(), 2),
        Err(RoutineError::NameTaken { name, id }) if name == "routine disk" && id == "disk"
    ));
    for blank in ["", "   ", "\t"] {
        let mut r = routine("blank", "every 5m");
        r.name = blank.into();
        assert!(matches!(
            book.add(r, 3),
            Err(RoutineError::Invalid { field: "name", .. })
        ));
    }
    // A removed routine's name is free again.
    book.remove("disk", 4).expect("remove");
    book.add(same_name, 5).expect("the name is free");
}

#[test]
fn find_resolves_an_id_or_a_unique_name() {
    let mut a = RoutineBook::new(&node("node-a"));
    a.add(routine("disk", "every 5m"), 1).expect("add");
    let mut named_like_an_id = routine("other", "every 5m");
    named_like_an_id.name = "disk".into();
    a.add(named_like_an_id, 2).expect("add");
    assert_eq!(a.find("disk").expect("by id").id, "disk", "the id first");
    assert_eq!(a.find("routine disk").expect("by name").id, "disk");
    assert!(matches!(
        a.find("nothing here"),
        Err(RoutineError::NotFound(what)) if what == "nothing here"
    ));

    // Two nodes add one name concurrently; after the merge it is ambiguous.
    let mut b = RoutineBook::new(&node("node-b"));
    b.doc_mut()
        .apply_changes(&a.doc().changes_since(&[]))
        .expect("b catches up");
    let mut from_a = routine("nightly-a", "every 1d");
    from_a.name = "nightly".into();
    let mut from_b = routine("nightly-b", "every 1d");
    from_b.name = "nightly".into();
    a.add(from_a, 3).expect("add on a");
    b.add(from_b, 4).expect("add on b");
    a.doc_mut()
        .apply_changes(&b.doc().changes_since(&[]))
        .expect("merge");
    assert!(matches!(
        a.find("nightly"),
        Err(RoutineError::Ambiguous { name, ids })
            if name == "nightly" && ids == ["nightly-a", "nightly-b"]
    ));
    assert_eq!(a.find("nightly-b").expect("by id").name, "nightly");
    let mut third = routine("nightly-c", "every 1d");
    third.name = "nightly".into();
    assert!(matches!(
        a.add(third, 5),
        Err(RoutineError::NameTaken { .. })
    ));
}

proptest! {
    /// Schedules read from peers are re-parsed: no input may panic the
    /// parser, whether random text or cron-shaped noise.
    #[test]
    fn schedule_parsing_never_panics(
        text in "\\PC{0,64}",
        cronish in "[0-9*/,LW#?@A-Za-z -]{0,48}",
    ) {
        let _ = Schedule::parse(&text);
        let _ = Schedule::parse(&cronish);
        let _ = Target::parse(&text);
    }
}
