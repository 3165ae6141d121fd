//! What a node holds: its audit log and the fleet's audit heads, the
//! replicated documents, copies of other nodes' logs, its agents, the
//! approvals waiting for an operator and the emergency register. Each part
//! keeps its own invariants; the service layer (`service/`) composes them
//! into operations.

pub mod agents;
pub mod approvals;
pub mod audit_log;
pub mod docs;
pub mod emergency;
pub mod heads;
pub mod mirrors;
