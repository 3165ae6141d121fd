//! Knowledge entries: the fleet's shared notes, replicated to every member.

use osmoda_docs::EntryUpdate;

use super::{Caller, Node};
use crate::api::{Created, Done, EntryPatch, EntryView, ListParams, NewEntry, Page, SearchParams};
use crate::error::{NodeError, NodeResult};

/// Entries a listing returns when the caller does not say.
pub const DEFAULT_PAGE: usize = 100;
/// Most entries one page or one search returns.
pub const MAX_PAGE: usize = 10_000;

impl Node {
    pub async fn knowledge_put(&self, by: Caller<'_>, new: NewEntry) -> NodeResult<Created> {
        let result = self
            .docs
            .put(new.title, new.body, new.tags, by.actor_text())
            .await;
        let target = result.as_deref().unwrap_or_default().to_owned();
        let id = self
            .audited(by, "knowledge.put", &target, "", result)
            .await?;
        Ok(Created { id })
    }

    /// Stores many new entries in one commit, audited as one import.
    pub async fn knowledge_import(
        &self,
        by: Caller<'_>,
        entries: Vec<NewEntry>,
    ) -> NodeResult<Vec<Created>> {
        let count = entries.len();
        let rows = entries
            .into_iter()
            .map(|e| (e.title, e.body, e.tags))
            .collect();
        let result = self.docs.put_many(rows, by.actor_text()).await;
        let details = format!("{count} entries");
        let ids = self
            .audited(by, "knowledge.import", "", &details, result)
            .await?;
        Ok(ids.into_iter().map(|id| Created { id }).collect())
    }

    pub async fn knowledge_update(
        &self,
        by: Caller<'_>,
        id: &str,
        patch: EntryPatch,
    ) -> NodeResult<Done> {
        let update = EntryUpdate {
            title: patch.title,
            body: patch.body,
            tags: patch.tags,
        };
        let result = self.docs.update(id, update).await;
        self.audited(by, "knowledge.update", id, "", result).await?;
        Ok(Done::OK)
    }

    pub async fn knowledge_delete(&self, by: Caller<'_>, id: &str) -> NodeResult<Done> {
        let result = self.docs.delete(id).await;
        self.audited(by, "knowledge.delete", id, "", result).await?;
        Ok(Done::OK)
    }

    pub fn knowledge_get(&self, id: &str) -> NodeResult<EntryView> {
        self.docs
            .get(id)?
            .ok_or_else(|| NodeError::not_found("knowledge entry", id))
    }

    /// One page of entries, newest first; `next_cursor` continues it.
    pub fn knowledge_list(&self, params: ListParams) -> NodeResult<Page<EntryView>> {
        let limit = page_size(params.limit)?;
        self.docs
            .list_page(params.tag, params.prefix, params.cursor.as_deref(), limit)
    }

    pub fn knowledge_search(&self, params: SearchParams) -> NodeResult<Vec<EntryView>> {
        let limit = page_size(params.limit)?;
        self.docs.search(&params.q, limit)
    }
}

fn page_size(limit: Option<usize>) -> NodeResult<usize> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(0) => Err(NodeError::Invalid("limit must be at least 1".into())),
        Some(n) if n > MAX_PAGE => Err(NodeError::Invalid(format!(
            "limit {n} is over the {MAX_PAGE} entries of one page; follow next_cursor for more"
        ))),
        Some(n) => Ok(n),
    }
}
