//! Between osmoda's task and card shapes and A2A v1.0's. Both follow
//! A2A, so the states map one to one; what osmoda keeps as plain text
//! (messages, artifacts) becomes one text part each.

use std::collections::HashMap;

use a2a_types::{
    AgentCapabilities, AgentCard, AgentInterface, AgentSkill, Artifact, HttpAuthSecurityScheme,
    Message, Part, PartContent, Role, SecurityScheme, Task, TaskState, TaskStatus,
    TRANSPORT_PROTOCOL_HTTP_JSON,
};
use chrono::{DateTime, Utc};

use crate::api::TaskView;
use crate::error::NodeError;
use crate::state::cards::Card;
use crate::state::tasks::{self as osmoda, MAX_TEXT};

/// The one security scheme every card names.
pub const BEARER: &str = "bearer";

pub fn state(state: osmoda::TaskState) -> TaskState {
    match state {
        osmoda::TaskState::Submitted => TaskState::Submitted,
        osmoda::TaskState::Working => TaskState::Working,
        osmoda::TaskState::InputRequired => TaskState::InputRequired,
        osmoda::TaskState::Completed => TaskState::Completed,
        osmoda::TaskState::Failed => TaskState::Failed,
        osmoda::TaskState::Canceled => TaskState::Canceled,
        osmoda::TaskState::Rejected => TaskState::Rejected,
    }
}

fn time(ms: u64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(i64::try_from(ms).ok()?)
}

fn text_message(id: String, task: &TaskView, role: Role, text: &str) -> Message {
    Message {
        message_id: id,
        context_id: Some(task.context_id.clone()),
        task_id: Some(task.id.clone()),
        role,
        parts: vec![Part::text(text)],
        metadata: None,
        extensions: None,
        reference_task_ids: None,
    }
}

pub fn status(task: &TaskView) -> TaskStatus {
    TaskStatus {
        state: state(task.status.state),
        message: task.status.message.as_deref().map(|text| {
            let id = format!("{}-status-{}", task.id, task.version);
            text_message(id, task, Role::Agent, text)
        }),
        timestamp: time(task.status.timestamp),
    }
}

pub fn artifact(task: &TaskView, index: usize) -> Option<Artifact> {
    let a = task.artifacts.get(index)?;
    Some(Artifact {
        artifact_id: format!("{}-{index}", task.id),
        name: Some(a.name.clone()),
        description: None,
        parts: vec![Part::text(a.text.clone())],
        metadata: None,
        extensions: None,
    })
}

pub fn task(view: &TaskView) -> Task {
    let history = view
        .history
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let role = match m.role {
                osmoda::Role::User => Role::User,
                osmoda::Role::Agent => Role::Agent,
            };
            text_message(format!("{}-{i}", view.id), view, role, &m.text)
        })
        .collect();
    let artifacts = (0..view.artifacts.len())
        .filter_map(|i| artifact(view, i))
        .collect::<Vec<_>>();
    Task {
        id: view.id.clone(),
        context_id: view.context_id.clone(),
        status: status(view),
        artifacts: (!artifacts.is_empty()).then_some(artifacts),
        history: Some(history),
        metadata: None,
    }
}

/// A message's parts as one task input: text as it is, structured data
/// as its JSON. Files and links are refused, since an osmoda task
/// carries text only.
pub fn input(message: &Message) -> Result<String, NodeError> {
    if message.role == Role::Agent {
        return Err(NodeError::Invalid(
            "a client's message has the user's role".into(),
        ));
    }
    let mut texts = Vec::with_capacity(message.parts.len());
    for part in &message.parts {
        match &part.content {
            PartContent::Text(text) => texts.push(text.clone()),
            PartContent::Data(value) => texts.push(value.to_string()),
            PartContent::Raw(_) | PartContent::Url(_) => {
                return Err(NodeError::Invalid(
                    "this agent takes text and data parts, not files".into(),
                ))
            }
        }
    }
    let text = texts.join("\n");
    if text.is_empty() {
        return Err(NodeError::Invalid("the message holds no text".into()));
    }
    if text.len() > MAX_TEXT {
        return Err(NodeError::TooLarge(format!(
            "a message holds at most {MAX_TEXT} bytes of text"
        )));
    }
    Ok(text)
}

/// The A2A card of one agent of this node, served at `base`.
pub fn card(card: &Card, node_name: &str, base: &str) -> AgentCard {
    let description = if card.description.is_empty() {
        format!("the agent {} of osmoda node {node_name}", card.name)
    } else {
        card.description.clone()
    };
    let skills = card
        .skills
        .iter()
        .map(|skill| AgentSkill {
            id: skill.clone(),
            name: skill.clone(),
            description: skill.clone(),
            tags: vec![skill.clone()],
            examples: None,
            input_modes: None,
            output_modes: None,
            security_requirements: None,
        })
        .collect();
    let scheme = SecurityScheme::HttpAuth(HttpAuthSecurityScheme {
        scheme: "Bearer".into(),
        description: Some("a token from the node's [a2a] tokens".into()),
        bearer_format: None,
    });
    AgentCard {
        name: card.name.clone(),
        description,
        version: env!("CARGO_PKG_VERSION").into(),
        supported_interfaces: vec![AgentInterface::new(
            format!("{base}/a2a/agents/{}", card.name),
            TRANSPORT_PROTOCOL_HTTP_JSON,
        )],
        capabilities: AgentCapabilities {
            streaming: Some(true),
            push_notifications: Some(false),
            extensions: None,
            extended_agent_card: Some(false),
        },
        default_input_modes: vec!["text/plain".into(), "application/json".into()],
        default_output_modes: vec!["text/plain".into()],
        skills,
        provider: None,
        documentation_url: None,
        icon_url: None,
        security_schemes: Some(HashMap::from([(BEARER.to_string(), scheme)])),
        security_requirements: None,
        signatures: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_osmoda_state_has_its_a2a_state() {
        use osmoda::TaskState as O;
        for (ours, theirs) in [
            (O::Submitted, "TASK_STATE_SUBMITTED"),
            (O::Working, "TASK_STATE_WORKING"),
            (O::InputRequired, "TASK_STATE_INPUT_REQUIRED"),
            (O::Completed, "TASK_STATE_COMPLETED"),
            (O::Failed, "TASK_STATE_FAILED"),
            (O::Canceled, "TASK_STATE_CANCELED"),
            (O::Rejected, "TASK_STATE_REJECTED"),
        ] {
            let mapped = state(ours);
            assert_eq!(serde_json::to_value(&mapped).unwrap(), theirs);
            assert_eq!(mapped.is_terminal(), ours.is_terminal(), "{ours}");
        }
    }

    #[test]
    fn files_are_refused_and_text_joined() {
        let mut m = Message::new(Role::User, vec![Part::text("a"), Part::text("b")]);
        assert_eq!(input(&m).unwrap(), "a\nb");
        m.parts.push(Part::url("file:///etc/passwd"));
        assert!(input(&m).is_err());
        let agent = Message::new(Role::Agent, vec![Part::text("a")]);
        assert!(input(&agent).is_err());
    }
}
