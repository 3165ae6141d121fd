//! The control API's wire types: every request body and every answer, shared
//! by the server (`control/`) and its first client, the CLI (`cli/`), so the
//! two cannot drift apart. `docs/api.md` lists the routes that carry them.
//!
//! Errors travel as [`ErrorBody`]: a message for people and the
//! [`ErrorKind`] that every front maps the same way.

use osmoda_agentd::{AgentSpec, AgentStatus};
use serde::{Deserialize, Serialize};

use crate::datadir::FleetInfo;
use crate::error::ErrorKind;

mod tasks;
pub use tasks::*;

pub use osmoda_fabric::{FabricStatus, InboxEntry, PeerInfo};

/// The body of every error answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    pub kind: ErrorKind,
}

/// Facts about a node that do not change while it runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeInfo {
    pub node_id: String,
    pub name: String,
    pub role: String,
    pub fleet: FleetInfo,
    pub certificate_expires_at: u64,
    pub holds_root_key: bool,
    pub version: String,
}

/// `GET /v1/status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusView {
    #[serde(flatten)]
    pub node: NodeInfo,
    /// `config.toml`'s labels.
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    pub listen: Vec<String>,
    pub connected_peers: usize,
    pub revocations: usize,
    /// Fabric events the node did not take in time (dropped, not queued).
    pub events_dropped: u64,
    pub agents: AgentsSummary,
    #[serde(default)]
    pub knowledge: KnowledgeSummary,
}

/// The knowledge store's health.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct KnowledgeSummary {
    /// Shards whose stored bytes did not load at start: they started
    /// empty, are recovered from peers by sync, and refuse writes until
    /// then; listed until stored again.
    #[serde(default)]
    pub damaged_shards: Vec<u16>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentsSummary {
    pub count: usize,
    /// How agents' limits are enforced here (`cgroup-v2`, `cgroup-v1` or
    /// `rlimits`).
    pub limit_mode: String,
    pub limit_reason: String,
    pub lockdown: bool,
    pub frozen: bool,
    /// Agents that a lockdown or stop left down and that stay down until an
    /// operator starts them (their restart policy is not `always`).
    #[serde(default)]
    pub held_down: Vec<String>,
    /// Each confinement layer and whether this host provides it.
    #[serde(default)]
    pub confinement: Vec<LayerView>,
}

/// One confinement layer on this host.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerView {
    pub layer: String,
    /// `ok`, `missing` (agents start only `--unconfined`) or `absent`
    /// (a second layer this kernel lacks; agents still start).
    pub state: String,
    pub detail: String,
}

/// One page of a listing; `next_cursor` fetches the next one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Present when more items follow; pass it back as `cursor`.
    pub next_cursor: Option<String>,
}

/// A knowledge entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EntryView {
    pub id: String,
    pub title: String,
    pub body: String,
    pub tags: Vec<String>,
    pub author_node: String,
    pub actor: String,
    pub created_ms: u64,
    pub updated_ms: u64,
}

/// A routine definition.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoutineView {
    pub id: String,
    pub name: String,
    pub schedule: String,
    pub target: String,
    pub command: String,
    pub args: Vec<String>,
    pub timeout_secs: u32,
    pub enabled: bool,
    pub created_by: String,
    pub created_ms: u64,
    pub updated_ms: u64,
}

/// `POST /v1/knowledge`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewEntry {
    pub title: String,
    #[serde(default)]
    pub body: String,
    #[serde(default)]
    pub tags: Vec<String>,
}

/// `PATCH /v1/knowledge/ID`: the fields to change.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryPatch {
    pub title: Option<String>,
    pub body: Option<String>,
    pub tags: Option<Vec<String>>,
}

/// `GET /v1/knowledge?...`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    pub tag: Option<String>,
    pub prefix: Option<String>,
    pub limit: Option<usize>,
    pub cursor: Option<String>,
}

/// `GET /v1/knowledge/search?...`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchParams {
    pub q: String,
    pub limit: Option<usize>,
}

/// `POST /v1/routines`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRoutine {
    pub name: String,
    pub schedule: String,
    #[serde(default = "all_nodes")]
    pub target: String,
    pub command: String,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default = "default_timeout")]
    pub timeout_secs: u32,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn all_nodes() -> String {
    "all".into()
}
fn default_timeout() -> u32 {
    60
}
fn yes() -> bool {
    true
}

/// The id of something just made.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Created {
    pub id: String,
}

/// `POST /v1/fleet/renewal`: what a certificate renewal gave.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Renewed {
    /// Unix seconds.
    pub expires_at: u64,
    /// The admin node that signed it, or `root` for the root key.
    pub issued_by: String,
}

/// An acknowledgement that carries nothing else.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Done {
    pub ok: bool,
}

impl Done {
    pub const OK: Done = Done { ok: true };
}

/// `POST /v1/mesh/broadcast`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextBody {
    pub text: String,
}

/// `POST /v1/mesh/send`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendBody {
    /// A node id or name.
    pub node: String,
    pub text: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sent {
    pub node_id: String,
}

/// `POST /v1/fleet/revocations`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeBody {
    /// A signed revocation in hex, as `osmoda fleet revoke` makes it.
    pub revocation: String,
}

/// `POST /v1/fleet/invites`: an enrollment token this admin node redeems.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InviteBody {
    /// The new node's name (unique in the fleet).
    pub name: String,
    /// Seconds the token stays usable.
    pub ttl_secs: u64,
    /// Addresses of this node to put first (reachable from the joiner);
    /// the node adds its listen addresses.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// `member` (the default) or `admin`: an admin is enrolled only by the
    /// node that keeps the root key, which signs its certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// For an admin: how long its certificate lasts, in seconds (365 days
    /// when absent). A member's lasts this node's `certificate_lifetime_days`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_for_secs: Option<u64>,
}

/// The token (a secret until used) and what it says.
#[derive(Clone, Serialize, Deserialize)]
pub struct InviteView {
    pub token: String,
    pub name: String,
    /// Unix seconds from which the token is refused.
    pub valid_until: u64,
    /// The admin node that redeems it: this one.
    pub admin: String,
    pub addresses: Vec<String>,
}

impl std::fmt::Debug for InviteView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token never reaches a log line.
        f.debug_struct("InviteView")
            .field("name", &self.name)
            .field("valid_until", &self.valid_until)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Revoked {
    /// False when the node knew the revocation already.
    pub new: bool,
}

/// `GET /v1/audit/log?...`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    /// Another node (id or name): fetch from it instead of reading our own.
    #[serde(default)]
    pub node: Option<String>,
    #[serde(default)]
    pub start: u64,
    #[serde(default = "default_log_limit")]
    pub limit: u64,
}

fn default_log_limit() -> u64 {
    100
}

/// What `GET /v1/audit/log` answers: the entries and, for another node's
/// log, where they came from and what they were checked against.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditLogView {
    pub entries: Vec<AuditEntryView>,
    /// Absent for this node's own log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceView>,
}

/// Where another node's entries came from. Every entry shown was checked
/// against `checkpoint_size`, a checkpoint its owner signed, with its own
/// inclusion proof; one that fails is never shown.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SourceView {
    /// The peer that served them: the owner, or a relay holding a copy.
    pub served_by: String,
    /// Size of the owner's checkpoint the entries were verified against.
    pub checkpoint_size: u64,
    /// The largest checkpoint of that node in this node's audit heads,
    /// when it is larger than the one served: the copy served is behind
    /// what the fleet knows, and later entries are not shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet_size: Option<u64>,
    /// Set when the checkpoint served contradicts one the fleet knows: the
    /// owner signed two histories (the evidence joins the audit heads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fork: Option<String>,
    /// Sources tried first whose answer did not verify, each with the
    /// reason (naming the entry that failed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<String>,
}

/// One audit entry. `actor` and `outcome` are as recorded; the names beside
/// ids are what this node knows of them (absent when it knows nothing).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuditEntryView {
    pub seq: u64,
    pub time_ms: u64,
    pub actor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_name: Option<String>,
    pub action: String,
    pub target: String,
    pub ring: u8,
    pub outcome: String,
    pub details: String,
}

/// `POST /v1/audit/verify`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyBody {
    #[serde(default)]
    pub node: Option<String>,
}

/// What `audit verify` reports.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct VerifyReport {
    pub ok: bool,
    pub entries: u64,
    /// Size of the signed checkpoint the entries were checked against.
    pub checkpoint_size: u64,
    /// The first entry that fails, if one does.
    pub bad_entry: Option<u64>,
    pub problem: Option<String>,
    /// The peer the entries came from, when they were fetched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_by: Option<String>,
    /// For a fetched log: the largest checkpoint of its owner in this
    /// node's audit heads, when larger than the one verified (the copy
    /// served is behind what the fleet knows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet_size: Option<u64>,
    /// For a fetched log: the checkpoint served contradicts one the fleet
    /// knows, so the owner forked its log (then `ok` is false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fork: Option<String>,
    /// For a fetched log: sources tried first whose copy did not verify,
    /// each with the reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<String>,
}

/// `POST /v1/audit/record`: an action the CLI took on its own.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordBody {
    pub action: String,
    #[serde(default)]
    pub target: String,
    #[serde(default)]
    pub details: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Recorded {
    pub seq: u64,
}

/// The latest signed checkpoint of one node's log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeadView {
    pub node_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub size: u64,
    pub root: String,
    pub time_ms: u64,
}

/// A node caught signing two histories.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ForkView {
    pub node_id: String,
    /// Hex of each piece of evidence, which any member can verify.
    pub evidence: Vec<String>,
}

/// `POST /v1/agents`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddAgent {
    pub spec: AgentSpec,
    #[serde(default = "yes")]
    pub start: bool,
    /// What the fleet sees of the agent (description, skills, rings it
    /// takes tasks from); the default card when none is given.
    #[serde(default)]
    pub card: CardEdit,
}

/// One agent: its spec and state, and whether an operator's stop keeps it
/// down across node restarts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AgentView {
    #[serde(flatten)]
    pub status: AgentStatus,
    /// Stopped by an operator (or held down after a lockdown): not started
    /// with the node.
    #[serde(default)]
    pub held: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card: Option<crate::state::cards::Card>,
}

/// `POST /v1/agents/{name}/allow` and `/disallow`: egress allowlist
/// entries to add or remove.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowBody {
    pub entries: Vec<osmoda_agentd::AllowEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Removed {
    pub removed: String,
}

/// `GET /v1/agents/NAME/logs?lines=N`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsQuery {
    #[serde(default = "default_lines")]
    pub lines: usize,
}

fn default_lines() -> usize {
    100
}

/// A ring-1 call waiting for an operator.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingView {
    pub id: u64,
    pub agent: String,
    pub tool: String,
    pub arguments: serde_json::Value,
    pub reason: String,
    pub requested_at_ms: u64,
}

/// A standing grant: this agent may use this tool without asking, until.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GrantView {
    pub agent: String,
    pub tool: String,
    pub expires_at_ms: u64,
}

/// `GET /v1/approvals`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApprovalsView {
    pub pending: Vec<PendingView>,
    pub grants: Vec<GrantView>,
}

/// `POST /v1/approvals/ID/approve`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApproveBody {
    /// Makes a standing grant for this agent and tool, e.g. "1h".
    #[serde(default)]
    pub grant: Option<String>,
}

/// `POST /v1/emergency`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmergencyBody {
    pub kind: String,
    #[serde(default)]
    pub fleet: bool,
}

/// What an emergency command did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmergencyOutcome {
    pub kind: String,
    /// `node` or `fleet`.
    pub scope: String,
    /// What happened on this node.
    pub here: String,
    /// Fleet commands: whether at least one peer took it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publish_error: Option<String>,
    /// Fleet commands: the signed command, hex, for `osmoda relay`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
}

/// `POST /v1/emergency/relay`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayBody {
    pub command: String,
}

/// `GET /v1/emergency`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmergencyView {
    pub lockdown: bool,
    pub frozen: bool,
    /// The last fleet command applied: its kind, who signed it, when.
    pub last_fleet_kind: Option<String>,
    pub last_fleet_issuer: Option<String>,
    pub last_fleet_issued_ms: Option<u64>,
    /// Fleet commands from peers not taken since the node started (junk,
    /// forgeries, replays, stale news), each peer's audited at most once a
    /// minute as `emergency.refused`.
    #[serde(default)]
    pub refused_commands: u64,
    pub limit_mode: String,
    pub limit_reason: String,
}

/// A secret's value on its way to the node: UTF-8 text, held in a buffer
/// wiped when dropped, and never shown by `Debug`.
#[derive(Clone, Default)]
pub struct SecretValue(zeroize::Zeroizing<String>);

impl SecretValue {
    pub fn new(value: String) -> Self {
        Self(zeroize::Zeroizing::new(value))
    }

    /// The value itself, for the vault to seal.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretValue(<redacted>)")
    }
}

impl Serialize for SecretValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for SecretValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self::new)
    }
}

/// `POST /v1/secrets`: a new secret, and the agents it is granted to.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSecret {
    pub name: String,
    pub value: SecretValue,
    #[serde(default)]
    pub agents: Vec<String>,
}

/// `POST /v1/secrets/NAME/rotate`: the new value.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateSecret {
    pub value: SecretValue,
}

/// `POST /v1/secrets/NAME/grant` and `.../revoke`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretAgent {
    pub agent: String,
}

/// A secret as the node shows it: never its value.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SecretView {
    pub name: String,
    /// 1 when set, one more at each rotation.
    pub version: u32,
    pub created_ms: u64,
    pub rotated_ms: u64,
    /// The agents it is granted to, by name.
    pub agents: Vec<String>,
}
