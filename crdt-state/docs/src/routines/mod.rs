//! Routine definitions: what the fleet runs, where and when. Definitions
//! only; running them is the node's business.
//!
//! Routines are few, so all of them share one Automerge document (the
//! routine book), bounded to [`MAX_ROUTINES`]. Its root map holds one map
//! per routine, keyed by id. The target and the action are each written as
//! one nested object and replaced whole, so two concurrent edits of an
//! action never interleave into a command from one and arguments from the
//! other: one of them wins entirely.
//!
//! A routine is named by its id or by its name ([`RoutineBook::find`]).
//! `add` refuses a name the book already has, but two nodes can add one
//! name concurrently; `find` then says the name is ambiguous rather than
//! pick one.
//!
//! Removing a routine deletes its key (unlike knowledge entries, which keep
//! a tombstone): a removed definition should not linger, re-adding the same
//! id later is legitimate, and a concurrent `enable` on another node writes
//! into the detached object and cannot bring the routine back.

mod spec;

use automerge::transaction::Transactable;
use automerge::{ObjId, ObjType, ReadDoc, ScalarValue, Value, ROOT};

pub use spec::{
    Action, Schedule, Target, MAX_ARGS, MAX_ARG_BYTES, MAX_COMMAND_BYTES, MAX_INTERVAL_SECS,
    MAX_LABEL_BYTES, MAX_SCHEDULE_BYTES, MAX_TARGET_NODES, MAX_TIMEOUT_SECS,
};

use crate::doc::Doc;
use crate::error::{DocError, RoutineError};
use crate::ids::{check_actor, check_id, NodeActor};
use crate::seal::Standing;
use crate::verdict::Rules;

/// Most routines in the book.
pub const MAX_ROUTINES: usize = 10_000;
/// Longest routine name, in bytes.
pub const MAX_NAME_BYTES: usize = 128;

/// What the caller gives to add a routine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRoutine {
    pub id: String,
    /// Not blank, without control characters, at most [`MAX_NAME_BYTES`],
    /// and not the name of a routine in the book.
    pub name: String,
    /// A cron expression or `every 5m`; see [`Schedule::parse`].
    pub schedule: String,
    pub target: Target,
    pub action: Action,
    pub enabled: bool,
    /// The agent or user adding it.
    pub created_by: String,
}

/// A routine as read from the book.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routine {
    pub id: String,
    pub name: String,
    pub schedule: Schedule,
    pub target: Target,
    pub action: Action,
    pub enabled: bool,
    pub created_by: String,
    pub created_ms: u64,
    pub updated_ms: u64,
}

/// The replicated set of routine definitions.
#[derive(Debug)]
pub struct RoutineBook {
    doc: Doc,
}

fn malformed(id: &str, reason: impl Into<String>) -> RoutineError {
    RoutineError::Malformed {
        id: id.to_owned(),
        reason: reason.into(),
    }
}

impl RoutineBook {
    pub fn new(node: &NodeActor) -> Self {
        Self {
            doc: Doc::new(node).with_rules(Rules::AdminOnly),
        }
    }

    /// Loads a book saved with `doc_mut().save()`.
    pub fn load(bytes: &[u8], node: &NodeActor) -> Result<Self, DocError> {
        Ok(Self {
            doc: Doc::load(bytes, node)?.with_rules(Rules::AdminOnly),
        })
    }

    /// The document, for saving and heads.
    pub fn doc(&self) -> &Doc {
        &self.doc
    }

    /// The document, for saving and sync sessions.
    pub fn doc_mut(&mut self) -> &mut Doc {
        &mut self.doc
    }

    /// Adds a routine. Its id must be new, and its name not be that of a
    /// routine in the book (names are compared exactly). Two nodes can
    /// still add one name concurrently; [`find`](Self::find) then reports
    /// the name as ambiguous.
    pub fn add(&mut self, new: NewRoutine, now_ms: u64) -> Result<(), RoutineError> {
        self.check_admin()?;
        check_id(&new.id).map_err(RoutineError::InvalidId)?;
        if new.name.trim().is_empty() || new.name.chars().any(char::is_control) {
            return Err(RoutineError::Invalid {
                field: "name",
                reason: "empty or contains a control character".into(),
            });
        }
        if new.name.len() > MAX_NAME_BYTES {
            return Err(RoutineError::TooLong {
                field: "name",
                len: new.name.len(),
                max: MAX_NAME_BYTES,
            });
        }
        check_actor(&new.created_by).map_err(|e| RoutineError::Invalid {
            field: "created_by",
            reason: e.to_string(),
        })?;
        let schedule = Schedule::parse(&new.schedule)?;
        let target = new.target.clone().validated()?;
        new.action.validate()?;
        let am = self.doc.am();
        if matches!(am.get(ROOT, new.id.as_str()), Ok(Some(_))) {
            return Err(RoutineError::AlreadyExists(new.id));
        }
        if let Some(id) = self.ids_named(&new.name).into_iter().next() {
            return Err(RoutineError::NameTaken { name: new.name, id });
        }
        if am.length(ROOT) >= MAX_ROUTINES {
            return Err(RoutineError::Full { max: MAX_ROUTINES });
        }
        self.doc.transact(now_ms, |tx| {
            let obj = tx.put_object(ROOT, new.id.as_str(), ObjType::Map)?;
            tx.put(&obj, "name", new.name.as_str())?;
            tx.put(&obj, "schedule", schedule.to_string())?;
            write_target(tx, &obj, &target)?;
            write_action(tx, &obj, &new.action)?;
            tx.put(&obj, "enabled", new.enabled)?;
            tx.put(&obj, "created_by", new.created_by.as_str())?;
            tx.put(&obj, "created_ms", now_ms)?;
            tx.put(&obj, "updated_ms", now_ms)?;
            Ok(())
        })
    }

    pub fn get(&self, id: &str) -> Result<Option<Routine>, RoutineError> {
        check_id(id).map_err(RoutineError::InvalidId)?;
        let am = self.doc.am();
        match am.get(ROOT, id) {
            Ok(Some((Value::Object(ObjType::Map), obj))) => read_routine(am, id, &obj).map(Some),
            Ok(Some(_)) => Err(malformed(id, "not a map")),
            Ok(None) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The routine with id `id_or_name` if there is one, else the one
    /// routine named so. A name several routines carry is
    /// [`RoutineError::Ambiguous`], listing their ids; none is
    /// [`RoutineError::NotFound`].
    pub fn find(&self, id_or_name: &str) -> Result<Routine, RoutineError> {
        if check_id(id_or_name).is_ok() {
            if let Some(routine) = self.get(id_or_name)? {
                return Ok(routine);
            }
        }
        let mut ids = self.ids_named(id_or_name);
        match ids.len() {
            0 => Err(RoutineError::NotFound(id_or_name.to_owned())),
            1 => {
                let id = ids.remove(0);
                self.get(&id)?.ok_or(RoutineError::NotFound(id))
            }
            _ => Err(RoutineError::Ambiguous {
                name: id_or_name.to_owned(),
                ids,
            }),
        }
    }

    /// Ids of the routines named `name`, in id order, malformed ones
    /// included (a name is taken whatever else is wrong with its routine).
    fn ids_named(&self, name: &str) -> Vec<String> {
        let am = self.doc.am();
        am.keys(ROOT)
            .filter(|id| match am.get(ROOT, id.as_str()) {
                Ok(Some((Value::Object(ObjType::Map), obj))) => {
                    get_str(am, &obj, "name").is_some_and(|n| n == name)
                }
                _ => false,
            })
            .collect()
    }

    /// Every well-formed routine, by id. Malformed ones (from a faulty or
    /// incompatible replica) are skipped.
    pub fn list(&self) -> Vec<Routine> {
        let am = self.doc.am();
        am.keys(ROOT)
            .filter_map(|id| match am.get(ROOT, id.as_str()) {
                Ok(Some((Value::Object(ObjType::Map), obj))) => read_routine(am, &id, &obj).ok(),
                _ => None,
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.doc.am().length(ROOT)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn remove(&mut self, id: &str, now_ms: u64) -> Result<(), RoutineError> {
        self.check_admin()?;
        self.existing(id)?;
        self.doc
            .transact(now_ms, |tx| tx.delete(ROOT, id).map_err(RoutineError::from))
    }

    pub fn enable(&mut self, id: &str, now_ms: u64) -> Result<(), RoutineError> {
        self.set_enabled(id, true, now_ms)
    }

    pub fn disable(&mut self, id: &str, now_ms: u64) -> Result<(), RoutineError> {
        self.set_enabled(id, false, now_ms)
    }

    fn set_enabled(&mut self, id: &str, enabled: bool, now_ms: u64) -> Result<(), RoutineError> {
        self.check_admin()?;
        let obj = self.existing(id)?;
        self.doc.transact(now_ms, |tx| {
            tx.put(&obj, "enabled", enabled)?;
            tx.put(&obj, "updated_ms", now_ms)?;
            Ok(())
        })
    }

    /// Every replica refuses a member's change to the book: refused here
    /// before it is made.
    fn check_admin(&self) -> Result<(), RoutineError> {
        if self.doc.standing() == Standing::Admin {
            Ok(())
        } else {
            Err(RoutineError::AdminOnly)
        }
    }

    fn existing(&self, id: &str) -> Result<ObjId, RoutineError> {
        check_id(id).map_err(RoutineError::InvalidId)?;
        match self.doc.am().get(ROOT, id) {
            Ok(Some((Value::Object(ObjType::Map), obj))) => Ok(obj),
            Ok(Some(_)) => Err(malformed(id, "not a map")),
            Ok(None) => Err(RoutineError::NotFound(id.to_owned())),
            Err(e) => Err(e.into()),
        }
    }
}

fn write_target<T: Transactable>(tx: &mut T, obj: &ObjId, t: &Target) -> Result<(), RoutineError> {
    let map = tx.put_object(obj, "target", ObjType::Map)?;
    match t {
        Target::All => tx.put(&map, "kind", "all")?,
        Target::Nodes(nodes) => {
            tx.put(&map, "kind", "nodes")?;
            let list = tx.put_object(&map, "nodes", ObjType::List)?;
            for (i, n) in nodes.iter().enumerate() {
                tx.insert(&list, i, n.as_str())?;
            }
        }
        Target::Label { key, value } => {
            tx.put(&map, "kind", "label")?;
            tx.put(&map, "key", key.as_str())?;
            tx.put(&map, "value", value.as_str())?;
        }
    }
    Ok(())
}

fn write_action<T: Transactable>(tx: &mut T, obj: &ObjId, a: &Action) -> Result<(), RoutineError> {
    let map = tx.put_object(obj, "action", ObjType::Map)?;
    tx.put(&map, "command", a.command.as_str())?;
    let list = tx.put_object(&map, "args", ObjType::List)?;
    for (i, arg) in a.args.iter().enumerate() {
        tx.insert(&list, i, arg.as_str())?;
    }
    tx.put(&map, "timeout_secs", u64::from(a.timeout_secs))?;
    Ok(())
}

fn scalar(v: Value<'_>) -> Option<ScalarValue> {
    match v {
        Value::Scalar(s) => Some(s.into_owned()),
        Value::Object(_) => None,
    }
}

fn get_scalar<R: ReadDoc>(doc: &R, obj: &ObjId, key: &str) -> Option<ScalarValue> {
    doc.get(obj, key)
        .ok()
        .flatten()
        .and_then(|(v, _)| scalar(v))
}

fn get_str<R: ReadDoc>(doc: &R, obj: &ObjId, key: &str) -> Option<String> {
    match get_scalar(doc, obj, key)? {
        ScalarValue::Str(s) => Some(s.to_string()),
        _ => None,
    }
}

fn get_u64<R: ReadDoc>(doc: &R, obj: &ObjId, key: &str) -> Option<u64> {
    match get_scalar(doc, obj, key)? {
        ScalarValue::Uint(n) => Some(n),
        ScalarValue::Int(n) => u64::try_from(n).ok(),
        _ => None,
    }
}

fn get_child<R: ReadDoc>(doc: &R, obj: &ObjId, key: &str, ty: ObjType) -> Option<ObjId> {
    match doc.get(obj, key).ok().flatten()? {
        (Value::Object(t), id) if t == ty => Some(id),
        _ => None,
    }
}

/// The strings of a list, bounded by `max` so a faulty replica cannot make
/// a read allocate without limit.
fn get_strings<R: ReadDoc>(doc: &R, obj: &ObjId, key: &str, max: usize) -> Option<Vec<String>> {
    let list = get_child(doc, obj, key, ObjType::List)?;
    if doc.length(&list) > max {
        return None;
    }
    doc.values(&list)
        .map(|(v, _)| match scalar(v)? {
            ScalarValue::Str(s) => Some(s.to_string()),
            _ => None,
        })
        .collect()
}

fn read_routine<R: ReadDoc>(doc: &R, id: &str, obj: &ObjId) -> Result<Routine, RoutineError> {
    let field = |name: &'static str| malformed(id, format!("missing or bad {name}"));
    let schedule_text = get_str(doc, obj, "schedule").ok_or_else(|| field("schedule"))?;
    let schedule = Schedule::parse(&schedule_text).map_err(|e| malformed(id, e.to_string()))?;
    let t = get_child(doc, obj, "target", ObjType::Map).ok_or_else(|| field("target"))?;
    let target = match get_str(doc, &t, "kind").as_deref() {
        Some("all") => Target::All,
        Some("nodes") => Target::Nodes(
            get_strings(doc, &t, "nodes", MAX_TARGET_NODES).ok_or_else(|| field("nodes"))?,
        ),
        Some("label") => Target::Label {
            key: get_str(doc, &t, "key").ok_or_else(|| field("label key"))?,
            value: get_str(doc, &t, "value").ok_or_else(|| field("label value"))?,
        },
        _ => return Err(field("target kind")),
    }
    .validated()
    .map_err(|e| malformed(id, e.to_string()))?;
    let a = get_child(doc, obj, "action", ObjType::Map).ok_or_else(|| field("action"))?;
    let action = Action {
        command: get_str(doc, &a, "command").ok_or_else(|| field("command"))?,
        args: get_strings(doc, &a, "args", MAX_ARGS).ok_or_else(|| field("args"))?,
        timeout_secs: get_u64(doc, &a, "timeout_secs")
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| field("timeout"))?,
    };
    action
        .validate()
        .map_err(|e| malformed(id, e.to_string()))?;
    let enabled = match get_scalar(doc, obj, "enabled") {
        Some(ScalarValue::Boolean(b)) => b,
        _ => return Err(field("enabled")),
    };
    Ok(Routine {
        id: id.to_owned(),
        name: get_str(doc, obj, "name").ok_or_else(|| field("name"))?,
        schedule,
        target,
        action,
        enabled,
        created_by: get_str(doc, obj, "created_by").ok_or_else(|| field("created_by"))?,
        created_ms: get_u64(doc, obj, "created_ms").ok_or_else(|| field("created_ms"))?,
        updated_ms: get_u64(doc, obj, "updated_ms").ok_or_else(|| field("updated_ms"))?,
    })
}
