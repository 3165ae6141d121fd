//! The node's one error type, and the one mapping from it to what each
//! front shows: an HTTP status (control and agent sockets), an MCP error
//! kind (through the agent socket's `kind` field) and a CLI exit code.
//!
//! Every service operation returns `NodeError`. The errors of the library
//! crates are kept as typed sources, and [`NodeError::kind`] decides by
//! variant whose fault a failure is, never by reading message text.

use osmoda_agentd::{AgentdError, SpecError};
use osmoda_docs::{DocError, KnowledgeError, RoutineError};
use osmoda_fabric::FabricError;
use osmoda_store::StoreError;

use crate::state::vault::VaultError;

/// Whose fault a failure is, and so how every front reports it: the kinds
/// are part of the agent socket's wire format (`osmoda_mcpd::forward`),
/// with the HTTP status of each (`ErrorKind::status`); the control socket
/// answers with the same statuses and kinds.
pub use osmoda_mcpd::ErrorKind;

/// The CLI's exit code for a kind (see `osmoda --help`): 4 the node refused
/// the request, 5 it names nothing, 6 try again later, 1 the node failed.
pub fn exit_code(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::Invalid
        | ErrorKind::Conflict
        | ErrorKind::Forbidden
        | ErrorKind::Denied
        | ErrorKind::TooLarge => 4,
        ErrorKind::NotFound => 5,
        ErrorKind::Unavailable | ErrorKind::Upstream | ErrorKind::Busy => 6,
        ErrorKind::Internal => 1,
    }
}

/// Why a node operation failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("{0}")]
    Invalid(String),
    #[error("no {what} {id:?}")]
    NotFound { what: &'static str, id: String },
    #[error("several {what}s are named {name:?} ({}); use the id", ids.join(", "))]
    Ambiguous {
        what: &'static str,
        name: String,
        ids: Vec<String>,
    },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("this node is locked down; `osmoda unlock` first")]
    LockedDown,
    #[error("{0}")]
    Denied(String),
    #[error("{0}")]
    Busy(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Unavailable(String),
    /// Another node's answer could not be used.
    #[error("{0}")]
    Upstream(String),
    #[error("cannot write the audit log: {0}")]
    Audit(String),
    #[error("{0}")]
    Internal(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Fabric(#[from] FabricError),
    #[error(transparent)]
    Knowledge(#[from] KnowledgeError),
    #[error(transparent)]
    Routine(#[from] RoutineError),
    #[error(transparent)]
    Agent(#[from] AgentdError),
    #[error(transparent)]
    Vault(#[from] VaultError),
}

impl From<SpecError> for NodeError {
    fn from(e: SpecError) -> Self {
        NodeError::Agent(AgentdError::Spec(e))
    }
}

impl NodeError {
    pub fn not_found(what: &'static str, id: impl Into<String>) -> Self {
        NodeError::NotFound {
            what,
            id: id.into(),
        }
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        NodeError::Internal(e.to_string())
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            NodeError::Invalid(_) => ErrorKind::Invalid,
            NodeError::NotFound { .. } => ErrorKind::NotFound,
            NodeError::Ambiguous { .. } | NodeError::Conflict(_) => ErrorKind::Conflict,
            NodeError::Forbidden(_) | NodeError::LockedDown => ErrorKind::Forbidden,
            NodeError::Denied(_) => ErrorKind::Denied,
            NodeError::Busy(_) => ErrorKind::Busy,
            NodeError::TooLarge(_) => ErrorKind::TooLarge,
            NodeError::Unavailable(_) => ErrorKind::Unavailable,
            NodeError::Upstream(_) => ErrorKind::Upstream,
            NodeError::Audit(_) | NodeError::Internal(_) | NodeError::Store(_) => {
                ErrorKind::Internal
            }
            NodeError::Fabric(e) => fabric_kind(e),
            NodeError::Knowledge(e) => knowledge_kind(e),
            NodeError::Routine(e) => routine_kind(e),
            NodeError::Agent(e) => agent_kind(e),
            NodeError::Vault(e) => vault_kind(e),
        }
    }
}

fn fabric_kind(e: &FabricError) -> ErrorKind {
    match e {
        FabricError::Stopped | FabricError::NoPeers | FabricError::NotConnected(_) => {
            ErrorKind::Unavailable
        }
        FabricError::TooLarge(_) => ErrorKind::TooLarge,
        FabricError::Revocation(_) | FabricError::Dial(_) => ErrorKind::Invalid,
        FabricError::Delivery(_) | FabricError::Publish(_) => ErrorKind::Upstream,
        // The node registers every topic and protocol it speaks.
        FabricError::UnknownTopic(_) | FabricError::UnknownProtocol(_) => ErrorKind::Internal,
    }
}

fn knowledge_kind(e: &KnowledgeError) -> ErrorKind {
    match e {
        KnowledgeError::NotFound(_) | KnowledgeError::Deleted(_) => ErrorKind::NotFound,
        KnowledgeError::NotAuthor { .. } => ErrorKind::Forbidden,
        KnowledgeError::AlreadyExists(_) | KnowledgeError::BodyChanged(_) => ErrorKind::Conflict,
        KnowledgeError::TooLong { .. } => ErrorKind::TooLarge,
        KnowledgeError::InvalidId(_)
        | KnowledgeError::InvalidActor(_)
        | KnowledgeError::TooManyTags { .. }
        | KnowledgeError::InvalidTag { .. }
        | KnowledgeError::Blank { .. } => ErrorKind::Invalid,
        // A write too large to replicate or to store: refused, undone.
        KnowledgeError::Doc(
            DocError::ChangeTooLarge { .. } | DocError::DocumentTooLarge { .. },
        ) => ErrorKind::TooLarge,
        // A replica wrote something this build cannot read, or a document
        // operation failed: not the caller's doing.
        KnowledgeError::Malformed { .. } | KnowledgeError::Doc(_) => ErrorKind::Internal,
    }
}

fn routine_kind(e: &RoutineError) -> ErrorKind {
    match e {
        RoutineError::NotFound(_) => ErrorKind::NotFound,
        RoutineError::AdminOnly => ErrorKind::Forbidden,
        RoutineError::AlreadyExists(_)
        | RoutineError::NameTaken { .. }
        | RoutineError::Ambiguous { .. } => ErrorKind::Conflict,
        RoutineError::TooLong { .. } => ErrorKind::TooLarge,
        RoutineError::Full { .. } => ErrorKind::Busy,
        RoutineError::InvalidId(_)
        | RoutineError::Invalid { .. }
        | RoutineError::InvalidSchedule { .. } => ErrorKind::Invalid,
        RoutineError::Malformed { .. } | RoutineError::Doc(_) => ErrorKind::Internal,
    }
}

fn agent_kind(e: &AgentdError) -> ErrorKind {
    match e {
        AgentdError::Spec(_) => ErrorKind::Invalid,
        AgentdError::UnknownAgent { .. } => ErrorKind::NotFound,
        AgentdError::Running { .. } | AgentdError::Frozen => ErrorKind::Conflict,
        // The command does not exist or cannot run: the spec's fault.
        AgentdError::Spawn { .. } => ErrorKind::Invalid,
        // `AgentdError` may grow; what this build does not know is ours.
        _ => ErrorKind::Internal,
    }
}

fn vault_kind(e: &VaultError) -> ErrorKind {
    match e {
        VaultError::InvalidName { .. } | VaultError::InvalidAgent { .. } | VaultError::Empty => {
            ErrorKind::Invalid
        }
        VaultError::TooLarge { .. } | VaultError::Full => ErrorKind::TooLarge,
        VaultError::Exists(_) => ErrorKind::Conflict,
        VaultError::NotFound(_) | VaultError::NotGranted { .. } => ErrorKind::NotFound,
        VaultError::Withheld(_) => ErrorKind::Forbidden,
        // The folder's key or the store went wrong: not the caller's doing.
        VaultError::Damaged(_)
        | VaultError::Malformed { .. }
        | VaultError::KeyMissing(_)
        | VaultError::NotText(_) => ErrorKind::Internal,
    }
}

pub type NodeResult<T> = Result<T, NodeError>;

/// Says what was being done when an error from outside the node's types
/// happened, and whose fault it is.
pub trait Context<T> {
    /// The input's fault (a configuration, a token, a folder's contents).
    fn invalid(self, what: impl FnOnce() -> String) -> NodeResult<T>;
    /// This node's (its disk, its files).
    fn internal(self, what: impl FnOnce() -> String) -> NodeResult<T>;
}

impl<T, E: std::fmt::Display> Context<T> for Result<T, E> {
    fn invalid(self, what: impl FnOnce() -> String) -> NodeResult<T> {
        self.map_err(|e| NodeError::Invalid(format!("{}: {e}", what())))
    }

    fn internal(self, what: impl FnOnce() -> String) -> NodeResult<T> {
        self.map_err(|e| NodeError::Internal(format!("{}: {e}", what())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_fails_the_cli() {
        for kind in ErrorKind::ALL {
            assert_ne!(exit_code(kind), 0, "{kind:?}");
            assert!(kind.status().is_client_error() || kind.status().is_server_error());
        }
        assert_eq!(exit_code(ErrorKind::NotFound), 5);
    }

    #[test]
    fn library_errors_keep_their_meaning() {
        let missing = NodeError::from(KnowledgeError::NotFound("x".into()));
        assert_eq!(missing.kind(), ErrorKind::NotFound);
        let deleted = NodeError::from(KnowledgeError::Deleted("x".into()));
        assert_eq!(deleted.kind(), ErrorKind::NotFound);
        let unknown = NodeError::from(AgentdError::UnknownAgent { name: "a".into() });
        assert_eq!(unknown.kind(), ErrorKind::NotFound);
        assert_eq!(
            NodeError::from(FabricError::NoPeers).kind(),
            ErrorKind::Unavailable
        );
        assert_eq!(NodeError::LockedDown.kind(), ErrorKind::Forbidden);
    }
}
