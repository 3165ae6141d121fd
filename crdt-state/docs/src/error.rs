//! Typed errors, one enum per area, so callers can tell a caller mistake
//! (bad input: refuse it) from a misbehaving peer (cut the session) from
//! corrupt stored bytes (resync the shard).

use thiserror::Error;

/// Why an identifier, actor or node name was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IdError {
    #[error("{what} is empty")]
    Empty { what: &'static str },
    #[error("{what} is {len} bytes, over the {max}-byte limit")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{what} {value:?} contains the forbidden character {ch:?}")]
    BadChar {
        what: &'static str,
        value: String,
        ch: char,
    },
}

/// Errors of the replicated-document wrapper ([`crate::Doc`]).
#[derive(Debug, Error)]
pub enum DocError {
    /// Stored or received bytes are not a valid Automerge document or change
    /// set. Loaded bytes are untrusted: this is an error, never a panic.
    #[error("invalid document bytes: {0}")]
    Load(#[source] Box<automerge::AutomergeError>),
    /// The bytes are not a sequence of Automerge chunks.
    #[error("invalid document bytes: {0}")]
    Framing(&'static str),
    #[error("invalid change: {0}")]
    Change(String),
    /// An Automerge operation failed while applying a local change.
    #[error("document operation failed: {0}")]
    Automerge(#[source] Box<automerge::AutomergeError>),
    #[error("shard {shard} is out of range (there are {count} shards)")]
    ShardOutOfRange { shard: u16, count: u16 },
    /// A change from outside that no replica takes.
    #[error("refused: {0}")]
    Refused(crate::verdict::Refusal),
    /// A local write whose change could not replicate: refused and undone
    /// (see [`crate::MAX_CHANGE_BYTES`]).
    #[error("the write makes a change of {len} bytes, over the {max}-byte limit of one change")]
    ChangeTooLarge { len: usize, max: usize },
    /// A local write that would make a document larger than its holder
    /// stores: refused and undone.
    #[error("the write makes the document {len} bytes, over the {max}-byte limit of one document")]
    DocumentTooLarge { len: usize, max: usize },
}

// Automerge's error is large; boxed, so every `Result` here stays small.
impl DocError {
    pub(crate) fn load(e: automerge::AutomergeError) -> Self {
        Self::Load(Box::new(e))
    }
}

impl From<automerge::AutomergeError> for DocError {
    fn from(e: automerge::AutomergeError) -> Self {
        Self::Automerge(Box::new(e))
    }
}

/// Why a listing cursor (from [`crate::ListCursor::decode`]) was refused.
/// Cursors come from API callers: every malformed one is an error.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CursorError {
    #[error("cursor is {len} characters, over the {max}-character limit")]
    TooLong { len: usize, max: usize },
    #[error("cursor is not URL-safe base64")]
    Encoding,
    #[error("cursor is truncated")]
    Truncated,
    #[error("unknown cursor version {0}")]
    Version(u8),
    #[error("cursor names an invalid entry id: {0}")]
    InvalidId(IdError),
}

/// Errors of knowledge-entry operations.
#[derive(Debug, Error)]
pub enum KnowledgeError {
    #[error("invalid entry id: {0}")]
    InvalidId(IdError),
    #[error("invalid actor: {0}")]
    InvalidActor(IdError),
    #[error("{field} is {len} bytes, over the {max}-byte limit")]
    TooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("{field} is empty or only whitespace")]
    Blank { field: &'static str },
    #[error("{count} tags, over the limit of {max}")]
    TooManyTags { count: usize, max: usize },
    #[error("invalid tag {tag:?}: {reason}")]
    InvalidTag { tag: String, reason: &'static str },
    #[error("entry {0} already exists (ids are never reused, even after a delete)")]
    AlreadyExists(String),
    #[error("no entry {0}")]
    NotFound(String),
    #[error("entry {0} is deleted")]
    Deleted(String),
    /// Entries are changed by their author or an admin: every replica
    /// refuses anyone else's change, so it is refused before it is made.
    #[error("entry {id} belongs to node {author}: only its author or an admin may change it")]
    NotAuthor { id: String, author: String },
    /// A prepared update's body edit was computed from a text the entry no
    /// longer has (someone wrote it meanwhile): prepare it again.
    #[error("the body of entry {0} changed since the update was prepared")]
    BodyChanged(String),
    /// A replica wrote something this code does not understand (an older or
    /// newer schema, or a faulty peer). Reads skip such entries in lists;
    /// `get` reports them.
    #[error("entry {id} is malformed in the replicated document: {reason}")]
    Malformed { id: String, reason: &'static str },
    #[error(transparent)]
    Doc(#[from] DocError),
}

impl From<automerge::AutomergeError> for KnowledgeError {
    fn from(e: automerge::AutomergeError) -> Self {
        Self::Doc(DocError::from(e))
    }
}

/// Errors of routine-definition operations.
#[derive(Debug, Error)]
pub enum RoutineError {
    #[error("invalid routine id: {0}")]
    InvalidId(IdError),
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("{field} is {len} bytes, over the {max}-byte limit")]
    TooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
    #[error("invalid schedule {schedule:?}: {reason}")]
    InvalidSchedule { schedule: String, reason: String },
    #[error("routine {0} already exists")]
    AlreadyExists(String),
    #[error("routine {id} is already named {name:?}")]
    NameTaken { name: String, id: String },
    /// Several routines have the name (two nodes added it concurrently):
    /// name one by id.
    #[error("{} routines are named {name:?}: {}", ids.len(), ids.join(", "))]
    Ambiguous { name: String, ids: Vec<String> },
    #[error("no routine {0}")]
    NotFound(String),
    #[error("the routine book is full ({max} routines)")]
    Full { max: usize },
    /// Routines run as code on members: only admins write them.
    #[error("only admin nodes may write routines (this node's certificate is a member's)")]
    AdminOnly,
    #[error("routine {id} is malformed in the replicated document: {reason}")]
    Malformed { id: String, reason: String },
    #[error(transparent)]
    Doc(#[from] DocError),
}

impl From<automerge::AutomergeError> for RoutineError {
    fn from(e: automerge::AutomergeError) -> Self {
        Self::Doc(DocError::from(e))
    }
}

/// Errors of a sync session. Every one of them ends the session: the
/// caller should drop it (and may score the peer down), then start afresh.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SyncError {
    #[error("sync message of {len} bytes is over the {max}-byte limit")]
    MessageTooLarge { len: usize, max: usize },
    #[error("session received {total} bytes, over its {max}-byte budget")]
    SessionBudget { total: u64, max: u64 },
    #[error("session ran {rounds} rounds, over its limit")]
    TooManyRounds { rounds: u64 },
    #[error("{rounds} rounds in a row changed nothing on either side")]
    NoProgress { rounds: u32 },
    #[error("undecodable sync message: {0}")]
    Decode(String),
    /// Only plain change chunks are accepted: documents and compressed
    /// chunks would be inflated without a bound inside Automerge.
    #[error("sync message carries a forbidden chunk: {0}")]
    ForbiddenChunk(&'static str),
    #[error("applying the peer's changes failed: {0}")]
    Apply(String),
    #[error("a single change of {len} bytes cannot fit a {max}-byte message")]
    ChangeTooLarge { len: usize, max: usize },
    /// A session that failed stays failed.
    #[error("session already failed: {0}")]
    Failed(String),
    /// The peer sent a change no replica takes.
    #[error("refused: {0}")]
    Refused(crate::verdict::Refusal),
}

/// Errors decoding a heads summary received by gossip.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SummaryError {
    #[error("summary is truncated")]
    Truncated,
    #[error("unknown summary version {0}")]
    Version(u8),
    #[error("summary is for {got} shards, this build uses {expected}")]
    ShardCount { got: u16, expected: u16 },
    #[error("summary lists {0} shards, more than exist")]
    TooManyEntries(u16),
    #[error("summary shards are not strictly increasing or out of range at {0}")]
    Order(u16),
    #[error("{0} trailing bytes after the summary")]
    Trailing(usize),
}
