//! A task's updates as server-sent events (`message:stream`,
//! `tasks/{id}:subscribe`): the task first, then, at each change, an
//! `artifactUpdate` for each new artifact and a `statusUpdate`; the
//! stream ends with the task.

use std::convert::Infallible;
use std::sync::Arc;

use a2a_types::{StreamResponse, TaskArtifactUpdateEvent, TaskStatusUpdateEvent};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, Stream, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{convert, error_body, A2aError};
use crate::api::TaskView;
use crate::error::NodeError;
use crate::service::Node;

/// How long one wait for a change lasts before it starts again; the
/// keep-alive comments in between tell a gone client apart.
const WAIT_SECS: u64 = 60;

/// A place among the calls waiting at once, or the refusal.
pub fn permit(streams: &Arc<Semaphore>) -> Result<OwnedSemaphorePermit, A2aError> {
    streams.clone().try_acquire_owned().map_err(|_| {
        A2aError(NodeError::Unavailable(
            "this node has as many A2A calls waiting on tasks as it serves; try again later".into(),
        ))
    })
}

fn event(update: &StreamResponse) -> Event {
    match serde_json::to_string(update) {
        Ok(data) => Event::default().data(data),
        Err(e) => failure(&NodeError::internal(e)),
    }
}

/// An error in the middle of a stream, as the binding sends it.
fn failure(e: &NodeError) -> Event {
    let body = error_body(e.kind().status(), &e.to_string());
    Event::default().event("error").data(body.to_string())
}

/// What changed between two versions of a task, as events.
fn changes(before: &TaskView, now: &TaskView) -> Vec<Event> {
    let mut out: Vec<Event> = (before.artifacts.len()..now.artifacts.len())
        .filter_map(|i| convert::artifact(now, i))
        .map(|artifact| {
            event(&StreamResponse::ArtifactUpdate(TaskArtifactUpdateEvent {
                task_id: now.id.clone(),
                context_id: now.context_id.clone(),
                artifact,
                append: Some(false),
                last_chunk: Some(true),
                metadata: None,
            }))
        })
        .collect();
    out.push(event(&StreamResponse::StatusUpdate(
        TaskStatusUpdateEvent {
            task_id: now.id.clone(),
            context_id: now.context_id.clone(),
            status: convert::status(now),
            metadata: None,
        },
    )));
    out
}

enum Step {
    First(TaskView),
    Next(TaskView),
}

/// Follows `task` until it ends (or the client goes), holding `permit`.
pub fn follow(node: Arc<Node>, task: TaskView, permit: OwnedSemaphorePermit) -> Response {
    Sse::new(updates(node, task, permit))
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn updates(
    node: Arc<Node>,
    task: TaskView,
    permit: OwnedSemaphorePermit,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let start = Some((Step::First(task), permit));
    stream::unfold(start, move |state| {
        let node = node.clone();
        async move {
            let (step, permit) = state?;
            let before = match step {
                Step::First(task) => {
                    let first = vec![event(&StreamResponse::Task(convert::task(&task)))];
                    let next =
                        (!task.status.state.is_terminal()).then_some((Step::Next(task), permit));
                    return Some((first, next));
                }
                Step::Next(task) => task,
            };
            loop {
                let now = match node
                    .task_watch(&before.id, Some(before.version), WAIT_SECS)
                    .await
                {
                    Ok(now) => now,
                    Err(e) => return Some((vec![failure(&e)], None)),
                };
                if now.version == before.version {
                    continue;
                }
                let events = changes(&before, &now);
                let next = (!now.status.state.is_terminal()).then_some((Step::Next(now), permit));
                return Some((events, next));
            }
        }
    })
    .flat_map(|events| stream::iter(events.into_iter().map(Ok)))
}
