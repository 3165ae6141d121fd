//! The node's one error type, and the one mapping from it to what each
//! front shows: an HTTP status (control and agent sockets), an MCP error
//! kind (through the agent socket's `kind` field) and a CLI exit code.
//!
//! Every service operation returns `NodeError`. The errors of the library
//! crates are kept as typed sources, and [`NodeError::kind`] decides by
//! variant whose fault a failure is, never by reading message text.

use osmoda_agentd::{AgentdError, SpecError};
use osmoda_docs::{KnowledgeError, RoutineError};
use osmoda_fabric::FabricError;
use osmoda_store::StoreError;
use serde::{Deserialize, Serialize};

/// Whose fault a failure is, and so how every front reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request is malformed or breaks a rule of the data (400).
    Invalid,
    /// What the request names does not exist (404).
    NotFound,
    /// The request clashes with the current state: a name taken, agents
    /// frozen, a name that matches several things (409).
    Conflict,
    /// A rule refuses it: trust ring, role, lockdown (403).
    Forbidden,
    /// The operator said no, or did not answer in time (409 on the agent
    /// socket, where agents tell it from a conflict by this kind).
    Denied,
    /// Nothing to carry it now: no peer connected, the fabric stopped (503).
    Unavailable,
    /// Another node answered badly or not at all (502).
    Upstream,
    /// Over a size limit (413).
    TooLarge,
    /// Over a rate or count limit; try again later (429).
    Busy,
    /// This node failed: its store, its audit log (500).
    Internal,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 10] = [
        ErrorKind::Invalid,
        ErrorKind::NotFound,
        ErrorKind::Conflict,
        ErrorKind::Forbidden,
        ErrorKind::Denied,
        ErrorKind::Unavailable,
        ErrorKind::Upstream,
        ErrorKind::TooLarge,
        ErrorKind::Busy,
        ErrorKind::Internal,
    ];

    /// The name on the wire (`"kind"` of an error body).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Invalid => "invalid",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::Denied => "denied",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Upstream => "upstream",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::Busy => "busy",
            ErrorKind::Internal => "internal",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }

    pub fn http_status(self) -> u16 {
        match self {
            ErrorKind::Invalid => 400,
            ErrorKind::NotFound => 404,
            ErrorKind::Conflict | ErrorKind::Denied => 409,
            ErrorKind::Forbidden => 403,
            ErrorKind::Unavailable => 503,
            ErrorKind::Upstream => 502,
            ErrorKind::TooLarge => 413,
            ErrorKind::Busy => 429,
            ErrorKind::Internal => 500,
        }
    }

    /// The CLI's exit code (see `osmoda --help`): 4 the node refused the
    /// request, 5 it names nothing, 6 try again later, 1 the node failed.
    pub fn exit_code(self) -> u8 {
        match self {
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
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
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
            NodeError::Unavailable(_) => ErrorKind::Unavailable,
            NodeError::Upstream(_) => ErrorKind::Upstream,
            NodeError::Audit(_) | NodeError::Internal(_) | NodeError::Store(_) => {
                ErrorKind::Internal
            }
            NodeError::Fabric(e) => fabric_kind(e),
            NodeError::Knowledge(e) => knowledge_kind(e),
            NodeError::Routine(e) => routine_kind(e),
            NodeError::Agent(e) => agent_kind(e),
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
    }
}

fn knowledge_kind(e: &KnowledgeError) -> ErrorKind {
    match e {
        KnowledgeError::NotFound(_) | KnowledgeError::Deleted(_) => ErrorKind::NotFound,
        KnowledgeError::AlreadyExists(_) => ErrorKind::Conflict,
        KnowledgeError::TooLong { .. } => ErrorKind::TooLarge,
        KnowledgeError::InvalidId(_)
        | KnowledgeError::InvalidActor(_)
        | KnowledgeError::TooManyTags { .. }
        | KnowledgeError::InvalidTag { .. } => ErrorKind::Invalid,
        // A replica wrote something this build cannot read, or a document
        // operation failed: not the caller's doing.
        KnowledgeError::Malformed { .. } | KnowledgeError::Doc(_) => ErrorKind::Internal,
    }
}

fn routine_kind(e: &RoutineError) -> ErrorKind {
    match e {
        RoutineError::NotFound(_) => ErrorKind::NotFound,
        RoutineError::AlreadyExists(_) => ErrorKind::Conflict,
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

pub type NodeResult<T> = Result<T, NodeError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_map_once() {
        for kind in ErrorKind::ALL {
            assert_eq!(ErrorKind::parse(kind.as_str()), Some(kind));
            assert!((400..600).contains(&kind.http_status()));
            assert_ne!(kind.exit_code(), 0);
        }
        assert_eq!(ErrorKind::parse("teapot"), None);
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
