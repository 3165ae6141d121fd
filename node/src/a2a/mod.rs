//! The A2A front: A2A v1.0's HTTP+JSON binding for this node's agents,
//! on `[a2a] listen` (plain TCP, loopback unless `listen_remote`). A thin
//! front over the service layer like the control API: each route calls
//! the `Node` method the CLI's would (`task_submit`, `task_cancel`,
//! `task_reply`, `task_watch`), as a `Caller::Remote` whose ring its
//! bearer token sets, so audit, rings, bounds and delivery are the same.
//!
//! Each agent is an A2A agent of its own under `/a2a/agents/{name}`:
//! its card at `.well-known/agent-card.json` there, and the binding's
//! routes (`message:send`, `message:stream`, `tasks/{id}`,
//! `tasks/{id}:cancel`, `tasks/{id}:subscribe`) below it. A client sees
//! only the tasks its own token submitted. docs/api.md lists it all.

mod auth;
mod convert;
mod stream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{middleware, Extension, Json, Router};
use serde_json::json;
use tokio::sync::Semaphore;

pub use auth::Clients;

use crate::api::{SubmitTask, TaskView};
use crate::error::{NodeError, NodeResult};
use crate::service::{Caller, Node, RemoteClient};

/// Largest request body: a message of the longest text, JSON-escaped at
/// its worst, and room for the envelope.
const MAX_BODY_BYTES: usize = 6 * crate::state::tasks::MAX_TEXT + 16 * 1024;
/// Calls waiting on a task at once (streams and blocking sends), over
/// all clients: each holds a task waiting on the task table's changes.
const MAX_WAITING: usize = 64;
/// Longest a blocking `message:send` waits for its task to end or ask
/// for input before it answers with the task as it is.
const MAX_BLOCK: Duration = Duration::from_secs(300);

#[derive(Clone)]
struct Front {
    node: Arc<Node>,
    clients: Arc<Clients>,
    /// `http://IP:PORT`, where the cards say the agents are.
    base: String,
    streams: Arc<Semaphore>,
}

/// An error as the HTTP+JSON binding answers it: the status of its kind
/// and a `google.rpc.Status`-shaped body.
pub(crate) struct A2aError(pub NodeError);

impl From<NodeError> for A2aError {
    fn from(e: NodeError) -> Self {
        A2aError(e)
    }
}

impl From<JsonRejection> for A2aError {
    fn from(e: JsonRejection) -> Self {
        A2aError(NodeError::Invalid(e.body_text()))
    }
}

impl IntoResponse for A2aError {
    fn into_response(self) -> Response {
        let status = self.0.kind().status();
        error_response(status, &self.0.to_string())
    }
}

fn error_response(status: StatusCode, message: &str) -> Response {
    (status, Json(error_body(status, message))).into_response()
}

/// `google.rpc.Status` as JSON, the code's canonical name beside it.
fn error_body(status: StatusCode, message: &str) -> serde_json::Value {
    let name = match status {
        StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE => "INVALID_ARGUMENT",
        StatusCode::UNAUTHORIZED => "UNAUTHENTICATED",
        StatusCode::FORBIDDEN => "PERMISSION_DENIED",
        StatusCode::NOT_FOUND => "NOT_FOUND",
        StatusCode::CONFLICT => "FAILED_PRECONDITION",
        StatusCode::TOO_MANY_REQUESTS => "RESOURCE_EXHAUSTED",
        StatusCode::SERVICE_UNAVAILABLE => "UNAVAILABLE",
        _ => "INTERNAL",
    };
    json!({ "error": { "code": status.as_u16(), "status": name, "message": message } })
}

type Answer<T> = Result<Json<T>, A2aError>;

/// Binds `addr` now, so that a taken port stops the start, and serves
/// the A2A front there until the task is aborted.
pub async fn listen(
    addr: SocketAddr,
    node: Arc<Node>,
    clients: Clients,
) -> NodeResult<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| NodeError::Invalid(format!("[a2a] listen: cannot bind {addr}: {e}")))?;
    let bound = listener
        .local_addr()
        .map_err(|e| NodeError::internal(format!("[a2a] listen: {e}")))?;
    let front = Front {
        node,
        clients: Arc::new(clients),
        base: format!("http://{bound}"),
        streams: Arc::new(Semaphore::new(MAX_WAITING)),
    };
    let app = router(front);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "the A2A front stopped");
        }
    });
    Ok((bound, task))
}

fn router(front: Front) -> Router {
    let agent = "/a2a/agents/{name}";
    Router::new()
        .route("/a2a/agents", get(agents))
        .route(&format!("{agent}/.well-known/agent-card.json"), get(card))
        .route(&format!("{agent}/message:send"), post(send))
        .route(&format!("{agent}/message:stream"), post(send_streaming))
        .route(
            &format!("{agent}/tasks/{{op}}"),
            get(task_get).post(task_post),
        )
        .layer(middleware::from_fn_with_state(
            front.clone(),
            auth::require_token,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(front)
}

/// Every agent of this node, as its card.
async fn agents(State(front): State<Front>) -> Answer<Vec<a2a_types::AgentCard>> {
    let name = &front.node.info().name;
    let cards = front
        .node
        .agent_list()
        .await?
        .into_iter()
        .filter_map(|view| view.card)
        .map(|card| convert::card(&card, name, &front.base))
        .collect();
    Ok(Json(cards))
}

async fn card(
    State(front): State<Front>,
    Path(name): Path<String>,
) -> Answer<a2a_types::AgentCard> {
    let view = front.node.agent_show(&name).await?;
    let card = view
        .card
        .ok_or_else(|| NodeError::not_found("agent card", &name))?;
    Ok(Json(convert::card(
        &card,
        &front.node.info().name,
        &front.base,
    )))
}

/// A new task for the agent, or, naming a task of the client's, the
/// client's reply to it.
async fn deliver(
    front: &Front,
    client: &RemoteClient,
    agent: &str,
    request: a2a_types::SendMessageRequest,
) -> NodeResult<TaskView> {
    let by = Caller::Remote(client);
    let input = convert::input(&request.message)?;
    match request.message.task_id.filter(|id| !id.is_empty()) {
        Some(id) => {
            own_task(front, client, agent, &id)?;
            front.node.task_reply(by, &id, input).await
        }
        None => {
            let body = SubmitTask {
                to: Some(format!("{agent}@{}", front.node.info().node_id)),
                skill: None,
                input: vec![input],
                context_id: request.message.context_id.filter(|c| !c.is_empty()),
            };
            front.node.task_submit(by, body).await
        }
    }
}

/// The task, if this client submitted it to this agent; not found else.
fn own_task(front: &Front, client: &RemoteClient, agent: &str, id: &str) -> NodeResult<TaskView> {
    let task = front.node.task_show_as(Caller::Remote(client), id)?;
    if task.to_party.agent.as_deref() != Some(agent) {
        return Err(NodeError::not_found("task of this agent", id));
    }
    Ok(task)
}

/// Whether a blocking call may answer: the task ended or waits on the
/// client.
fn settled(task: &TaskView) -> bool {
    task.status.state.is_terminal()
        || task.status.state == crate::state::tasks::TaskState::InputRequired
}

async fn send(
    State(front): State<Front>,
    Extension(client): Extension<RemoteClient>,
    Path(name): Path<String>,
    body: Result<Json<a2a_types::SendMessageRequest>, JsonRejection>,
) -> Answer<a2a_types::SendMessageResponse> {
    let Json(request) = body?;
    let immediate = request
        .configuration
        .as_ref()
        .and_then(|c| c.return_immediately)
        .unwrap_or(false);
    let permit = if immediate {
        None
    } else {
        Some(stream::permit(&front.streams)?)
    };
    let mut task = deliver(&front, &client, &name, request).await?;
    let deadline = tokio::time::Instant::now() + MAX_BLOCK;
    while !immediate && !settled(&task) && tokio::time::Instant::now() < deadline {
        task = front
            .node
            .task_watch(&task.id, Some(task.version), 60)
            .await?;
    }
    drop(permit);
    Ok(Json(a2a_types::SendMessageResponse::Task(convert::task(
        &task,
    ))))
}

async fn send_streaming(
    State(front): State<Front>,
    Extension(client): Extension<RemoteClient>,
    Path(name): Path<String>,
    body: Result<Json<a2a_types::SendMessageRequest>, JsonRejection>,
) -> Result<Response, A2aError> {
    let Json(request) = body?;
    let permit = stream::permit(&front.streams)?;
    let task = deliver(&front, &client, &name, request).await?;
    Ok(stream::follow(front.node.clone(), task, permit))
}

/// `tasks/{id}` and `tasks/{id}:subscribe`.
async fn task_get(
    State(front): State<Front>,
    Extension(client): Extension<RemoteClient>,
    Path((name, op)): Path<(String, String)>,
) -> Result<Response, A2aError> {
    match op.split_once(':') {
        None => {
            let task = own_task(&front, &client, &name, &op)?;
            Ok(Json(convert::task(&task)).into_response())
        }
        Some((id, "subscribe")) => subscribe(&front, &client, &name, id),
        Some(_) => Err(unknown_method()),
    }
}

/// `tasks/{id}:cancel`, and `tasks/{id}:subscribe` as the Python SDK
/// sends it.
async fn task_post(
    State(front): State<Front>,
    Extension(client): Extension<RemoteClient>,
    Path((name, op)): Path<(String, String)>,
) -> Result<Response, A2aError> {
    match op.split_once(':') {
        Some((id, "cancel")) => {
            own_task(&front, &client, &name, id)?;
            let task = front.node.task_cancel(Caller::Remote(&client), id).await?;
            Ok(Json(convert::task(&task)).into_response())
        }
        Some((id, "subscribe")) => subscribe(&front, &client, &name, id),
        _ => Err(unknown_method()),
    }
}

fn subscribe(
    front: &Front,
    client: &RemoteClient,
    agent: &str,
    id: &str,
) -> Result<Response, A2aError> {
    let task = own_task(front, client, agent, id)?;
    if task.status.state.is_terminal() {
        return Err(NodeError::Conflict(format!(
            "task {id} has ended ({}): nothing to subscribe to",
            task.status.state
        ))
        .into());
    }
    let permit = stream::permit(&front.streams)?;
    Ok(stream::follow(front.node.clone(), task, permit))
}

fn unknown_method() -> A2aError {
    A2aError(NodeError::not_found("A2A method", "tasks/{id}:?"))
}

impl Front {
    fn locked(&self) -> bool {
        self.node.emergency.is_locked()
    }
}

/// A lockdown stops every agent; the clients that give them work are
/// refused too, as the agent socket refuses agents' calls.
fn locked_down() -> Response {
    A2aError(NodeError::LockedDown).into_response()
}
