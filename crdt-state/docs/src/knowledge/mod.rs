//! Knowledge entries: short documents agents and people write, replicated
//! to every node.

mod entry;
mod listing;
mod prepared;
mod read;
mod store;

pub use entry::{
    Entry, EntryUpdate, NewEntry, MAX_BODY_BYTES, MAX_TAGS, MAX_TAG_BYTES, MAX_TITLE_BYTES,
};
pub use prepared::{
    BodyEdit, PreparedUpdate, DEFAULT_DIFF_TIMEOUT, MAX_SPLICES, REWRITE_MIN_CHARS,
};
pub use store::KnowledgeStore;
