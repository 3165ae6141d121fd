//! The tool catalogue: every tool an agent can call, its ring, its schema,
//! and the check of its arguments.
//!
//! The catalogue is the single source of truth for both sides: the MCP
//! server lists it and validates against it before forwarding, and the node
//! parses each call into a [`ToolCall`] (the tool, its ring, its checked
//! arguments, its audit target) and executes it by matching every variant.
//! Both the list and [`ToolCall`] come from one declaration, so a tool
//! missing from it does not exist, and one in it that the node does not
//! execute does not compile.

use std::fmt;
use std::sync::{Arc, OnceLock};

use schemars::generate::SchemaSettings;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::args::*;

/// How much trust a tool needs. Enforcement is the node's: this is the
/// label it enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ring {
    /// Reaches beyond the agent (other nodes, the fleet's shared state, the
    /// host): needs the operator's approval unless the agent was granted it.
    One,
    /// Confined to the agent's own state or read-only: allowed to every
    /// ring-2 agent.
    Two,
}

impl Ring {
    pub fn number(self) -> u8 {
        match self {
            Ring::One => 1,
            Ring::Two => 2,
        }
    }
}

impl fmt::Display for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ring {}", self.number())
    }
}

/// One tool as listed to agents.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolInfo {
    /// The MCP tool name (lowercase, underscores).
    pub name: &'static str,
    pub description: &'static str,
    pub ring: Ring,
    /// JSON Schema (draft 2020-12) of the arguments; its root is always
    /// `"type": "object"`, as MCP requires.
    pub input_schema: Arc<Map<String, Value>>,
}

/// Why a tool's arguments were refused. `field` is a dotted path into the
/// arguments (`args[2]`, `arguments.timeout_secs`), or empty when the
/// arguments as a whole are wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgumentError {
    #[error("unknown tool `{0}`")]
    UnknownTool(String),
    #[error("arguments must be a JSON object, not {0}")]
    NotAnObject(&'static str),
    #[error("argument `{field}`: {reason}")]
    Invalid { field: String, reason: String },
}

impl ArgumentError {
    /// The argument at fault, when there is one.
    pub fn field(&self) -> Option<&str> {
        match self {
            ArgumentError::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }
}

/// Longest audit target, in characters: enough for a path or a title to
/// be recognised, short enough to keep audit lines small.
pub const MAX_AUDIT_TARGET_CHARS: usize = 128;

/// A row of [`TABLE`]; its schema is built on first use.
struct Entry {
    name: &'static str,
    ring: Ring,
    description: &'static str,
    schema: fn() -> Map<String, Value>,
}

/// Declares every tool once: its [`ToolCall`] variant, MCP name, ring,
/// argument struct and description. Both the listed [`TABLE`] and
/// [`ToolCall`] are generated from this one list, so a tool cannot be
/// listed without a variant, and a node that matches every variant cannot
/// miss a listed tool. The argument struct must implement [`Bounded`] and
/// [`AuditTarget`], or the list does not compile.
macro_rules! catalogue {
    ($($variant:ident($name:literal, $ring:ident, $args:ty, $description:literal),)*) => {
        static TABLE: &[Entry] = &[$(
            Entry {
                name: $name,
                ring: Ring::$ring,
                description: $description,
                schema: schema_of::<$args>,
            },
        )*];

        /// A call of one tool, its arguments parsed and checked: one variant
        /// per tool of the catalogue, in catalogue order.
        ///
        /// The node executes a call by matching it without a wildcard arm,
        /// so adding a tool to the catalogue without executing it is a
        /// compile error rather than an "unknown tool" at run time:
        ///
        /// ```compile_fail,E0004
        /// use osmoda_mcpd::ToolCall;
        ///
        /// fn execute(call: ToolCall) -> &'static str {
        ///     match call {
        ///         ToolCall::KnowledgeGet(_) => "read",
        ///         // every other tool missing: does not compile
        ///     }
        /// }
        /// ```
        #[derive(Debug, Clone, PartialEq)]
        pub enum ToolCall {
            $(
                #[doc = concat!("`", $name, "`: ", $description)]
                $variant($args),
            )*
        }

        /// Each variant's row in [`TABLE`]: the discriminants count from 0
        /// in the same order as the rows.
        #[derive(Clone, Copy)]
        enum Row {
            $($variant,)*
        }

        impl ToolCall {
            /// Parses a call of the tool `name`: an unknown name is
            /// [`ArgumentError::UnknownTool`], and the arguments are checked
            /// exactly as [`validate_arguments`] checks them.
            pub fn parse(name: &str, arguments: &Value) -> Result<Self, ArgumentError> {
                match name {
                    $($name => parse_arguments::<$args>(arguments).map(ToolCall::$variant),)*
                    _ => Err(ArgumentError::UnknownTool(name.to_owned())),
                }
            }

            fn row(&self) -> Row {
                match self {
                    $(ToolCall::$variant(_) => Row::$variant,)*
                }
            }

            fn target(&self) -> &str {
                match self {
                    $(ToolCall::$variant(arguments) => AuditTarget::audit_target(arguments),)*
                }
            }
        }
    };
}

// Every tool. Ring 1 is for what leaves the agent's own sandbox: writes
// that replicate fleet-wide, messages to other nodes, routines the fleet
// runs, commands on the host.
catalogue! {
    KnowledgePut("knowledge_put", One, KnowledgePut,
        "Add an entry (title, body, tags) to the fleet's shared knowledge; it replicates to every node. Returns its id."),
    KnowledgeGet("knowledge_get", Two, KnowledgeGet,
        "Read one knowledge entry by id."),
    KnowledgeSearch("knowledge_search", Two, KnowledgeSearch,
        "Find knowledge entries whose title or body contains every word of the query (case-insensitive), newest first."),
    KnowledgeList("knowledge_list", Two, KnowledgeList,
        "List knowledge entries, newest first, optionally only those with a tag or an id prefix."),
    AuditLog("audit_log", Two, AuditLog,
        "Read entries of this node's audit log (or another node's), from a sequence number."),
    AuditVerify("audit_verify", Two, AuditVerify,
        "Verify the hash chain and signed checkpoints of this node's audit log (or another node's)."),
    MeshPeers("mesh_peers", Two, NoArguments,
        "List the fleet nodes this node is connected to."),
    MeshSend("mesh_send", One, MeshSend,
        "Send a text message directly to another node of the fleet."),
    MeshBroadcast("mesh_broadcast", One, MeshBroadcast,
        "Broadcast a text message to every node of the fleet."),
    AgentMessage("agent_message", Two, AgentMessage,
        "Send a text message to another agent on this node."),
    RoutineCreate("routine_create", One, RoutineCreate,
        "Define a routine: a command the fleet runs on a schedule, on all nodes or a selection. Returns its id."),
    RoutineList("routine_list", Two, NoArguments,
        "List the fleet's routines."),
    KvGet("kv_get", Two, KvKey,
        "Read a value from this agent's own key-value space."),
    KvSet("kv_set", Two, KvSet,
        "Store a value in this agent's own key-value space."),
    KvDelete("kv_delete", Two, KvKey,
        "Delete a key from this agent's own key-value space."),
    KvList("kv_list", Two, KvList,
        "List keys of this agent's own key-value space."),
    FileRead("file_read", Two, FilePath,
        "Read a text file inside this agent's workspace."),
    FileWrite("file_write", Two, FileWrite,
        "Create or replace a text file inside this agent's workspace (atomically)."),
    FileList("file_list", Two, FileList,
        "List a directory inside this agent's workspace."),
    FileDelete("file_delete", Two, FilePath,
        "Delete a file or an empty directory inside this agent's workspace."),
    AgentStatus("agent_status", Two, NoArguments,
        "This agent's status as the node sees it: name, ring, grants, limits, pending approvals."),
    HostExec("host_exec", One, HostExec,
        "Run a program on the host (no shell) with arguments and a timeout. Returns its exit status and output."),
    ApprovalRequest("approval_request", Two, ApprovalRequest,
        "Ask the operator in advance to approve one ring-1 tool call (the tool and its exact arguments). Returns a request id."),
    ApprovalStatus("approval_status", Two, ApprovalStatus,
        "Whether an approval request is pending, approved or denied."),
    SecretGet("secret_get", Two, SecretName,
        "Read a secret the operator granted to this agent: its name, version and value. Ring 2 because the operator's grant is the authority: no approval is asked, and a secret not granted to this agent is refused, whether it exists or not. Refused while the node is locked down."),
    AgentsFind("agents_find", Two, AgentsFind,
        "Find agents of the fleet by skill or name, as their nodes advertise them: node, name, description, skills, the rings each takes tasks from, whether it runs and its node is connected."),
    TaskSubmit("task_submit", Two, TaskSubmit,
        "Give a task to another agent (`to`: AGENT@NODE) or to any agent advertising a skill (`skill`), with input messages. Ring 2 because the receiving agent's card decides which rings it takes tasks from. Returns the task (its id, status)."),
    TaskStatus("task_status", Two, TaskId,
        "A task this agent submitted or was given: status (submitted, working, input-required, completed, failed, canceled, rejected), history, artifacts."),
    TaskWait("task_wait", Two, TaskWait,
        "Wait until a task this agent submitted ends or asks for input (at most timeout_secs), then return it."),
    TaskReply("task_reply", Two, TaskText,
        "Answer a task this agent submitted that asks for input; the agent working on it sees the reply in its history."),
    TaskInbox("task_inbox", Two, TaskInbox,
        "The tasks given to this agent, newest first, with their status, history (the submitter's inputs and replies) and whether a cancel was asked for."),
    TaskUpdate("task_update", Two, TaskText,
        "Report progress on a task given to this agent (its state becomes working); the submitter sees the message."),
    TaskComplete("task_complete", Two, TaskComplete,
        "Complete a task given to this agent, with its artifacts (name and text each)."),
    TaskFail("task_fail", Two, TaskText,
        "End a task given to this agent as failed, saying why."),
    TaskInputRequired("task_input_required", Two, TaskText,
        "Ask the submitter of a task given to this agent for input; it answers with task_reply or `osmoda task reply`."),
}

impl ToolCall {
    /// The tool called, as listed.
    pub fn info(&self) -> &'static ToolInfo {
        // `tools()` holds one ToolInfo per row of TABLE, in its order.
        &tools()[self.row() as usize]
    }

    /// The tool's MCP name.
    pub fn name(&self) -> &'static str {
        TABLE[self.row() as usize].name
    }

    /// The trust the tool needs.
    pub fn ring(&self) -> Ring {
        TABLE[self.row() as usize].ring
    }

    /// What the audit entry names as the call's target: the argument saying
    /// what the call is about (an id, a key, a path), never a body or a
    /// value; at most [`MAX_AUDIT_TARGET_CHARS`] characters, empty for a
    /// call about nothing in particular.
    pub fn audit_target(&self) -> String {
        self.target().chars().take(MAX_AUDIT_TARGET_CHARS).collect()
    }
}

/// Every tool, in catalogue order.
pub fn tools() -> &'static [ToolInfo] {
    static TOOLS: OnceLock<Vec<ToolInfo>> = OnceLock::new();
    TOOLS.get_or_init(|| {
        TABLE
            .iter()
            .map(|e| ToolInfo {
                name: e.name,
                description: e.description,
                ring: e.ring,
                input_schema: Arc::new((e.schema)()),
            })
            .collect()
    })
}

/// The tool with this name.
pub fn tool(name: &str) -> Option<&'static ToolInfo> {
    tools().iter().find(|t| t.name == name)
}

/// Checks `arguments` against the tool: the right fields with the right
/// types, nothing else, within bounds. `Value::Null` (no arguments given)
/// counts as `{}`.
pub fn validate_arguments(tool: &str, arguments: &Value) -> Result<(), ArgumentError> {
    ToolCall::parse(tool, arguments).map(drop)
}

/// Parses and checks arguments into one tool's struct. Same rules as
/// [`validate_arguments`]; [`ToolCall::parse`] picks the struct by the
/// tool's name.
pub fn parse_arguments<T: DeserializeOwned + Bounded>(
    arguments: &Value,
) -> Result<T, ArgumentError> {
    static EMPTY: OnceLock<Value> = OnceLock::new();
    let arguments = match arguments {
        Value::Null => EMPTY.get_or_init(|| Value::Object(Map::new())),
        Value::Object(_) => arguments,
        Value::Bool(_) => return Err(ArgumentError::NotAnObject("a boolean")),
        Value::Number(_) => return Err(ArgumentError::NotAnObject("a number")),
        Value::String(_) => return Err(ArgumentError::NotAnObject("a string")),
        Value::Array(_) => return Err(ArgumentError::NotAnObject("an array")),
    };
    // serde_path_to_error keeps the path serde_json's own errors lack, so
    // a wrong type names its field.
    let parsed: T = serde_path_to_error::deserialize(arguments).map_err(|e| {
        let path = e.path().to_string();
        from_serde(
            if path == "." { "" } else { &path },
            &e.into_inner().to_string(),
        )
    })?;
    parsed.check()?;
    Ok(parsed)
}

/// Turns serde's message into a field and a reason. Missing and unknown
/// fields are reported at their parent, with the name in backquotes.
fn from_serde(path: &str, message: &str) -> ArgumentError {
    let named = |prefix: &str| {
        let rest = message.strip_prefix(prefix)?;
        let (name, tail) = rest.split_once('`')?;
        Some((
            name.to_owned(),
            tail.trim_start_matches(',').trim().to_owned(),
        ))
    };
    let join = |name: &str| match path {
        "" => name.to_owned(),
        p => format!("{p}.{name}"),
    };
    if let Some((name, _)) = named("missing field `") {
        return ArgumentError::Invalid {
            field: join(&name),
            reason: "required, but missing".into(),
        };
    }
    if let Some((name, tail)) = named("unknown field `") {
        // Here the path already ends with the unknown name.
        let field = if path.is_empty() {
            name
        } else {
            path.to_owned()
        };
        return ArgumentError::Invalid {
            field,
            reason: format!("not an argument of this tool ({tail})"),
        };
    }
    ArgumentError::Invalid {
        field: if path.is_empty() {
            "arguments".into()
        } else {
            path.to_owned()
        },
        reason: message.to_owned(),
    }
}

/// The schema as MCP wants it: draft 2020-12, root `type: object`, without
/// the root title and description (the struct's name and doc, which are
/// noise next to the tool's own description).
fn schema_of<T: JsonSchema>() -> Map<String, Value> {
    let schema = SchemaSettings::draft2020_12()
        .into_generator()
        .into_root_schema_for::<T>();
    let mut object = match schema.to_value() {
        Value::Object(object) => object,
        // A `true`/`false` schema: never produced for a struct.
        _ => Map::new(),
    };
    object.remove("title");
    object.remove("description");
    object.insert("type".into(), Value::String("object".into()));
    // Some MCP clients reject an object schema without `properties`, which
    // schemars leaves out for a struct without fields.
    object
        .entry("properties")
        .or_insert_with(|| Value::Object(Map::new()));
    object
}

impl Bounded for ApprovalRequest {
    fn check(&self) -> Result<(), ArgumentError> {
        let tool = tool(&self.tool).ok_or_else(|| ArgumentError::Invalid {
            field: "tool".into(),
            reason: format!("`{}` is not a tool", self.tool),
        })?;
        if tool.ring != Ring::One {
            return Err(ArgumentError::Invalid {
                field: "tool".into(),
                reason: format!("`{}` is a ring-2 tool, it needs no approval", tool.name),
            });
        }
        // The approval is for exactly these arguments, so they must be
        // valid for that tool now, not when the operator already said yes.
        validate_arguments(tool.name, &self.arguments).map_err(|e| match e {
            ArgumentError::Invalid { field, reason } => ArgumentError::Invalid {
                field: format!("arguments.{field}"),
                reason,
            },
            other => ArgumentError::Invalid {
                field: "arguments".into(),
                reason: other.to_string(),
            },
        })?;
        if self.reason.trim().is_empty() {
            return Err(ArgumentError::Invalid {
                field: "reason".into(),
                reason: "must not be empty".into(),
            });
        }
        if self.reason.len() > MAX_REASON_BYTES {
            return Err(ArgumentError::Invalid {
                field: "reason".into(),
                reason: format!(
                    "{} bytes, over the limit of {MAX_REASON_BYTES}",
                    self.reason.len()
                ),
            });
        }
        Ok(())
    }
}
