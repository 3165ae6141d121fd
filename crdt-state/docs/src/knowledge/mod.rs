//! Knowledge entries: short documents agents and people write, replicated
//! to every node.

mod entry;
mod listing;
mod read;
mod store;

pub use entry::{
    Entry, EntryUpdate, NewEntry, MAX_BODY_BYTES, MAX_TAGS, MAX_TAG_BYTES, MAX_TITLE_BYTES,
};
pub use store::KnowledgeStore;
