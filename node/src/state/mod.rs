//! What a node holds: its audit log and the fleet's audit heads, the
//! replicated documents, copies of other nodes' logs and the checked
//! reading of them, its agents, the
//! approvals waiting for an operator, the emergency registers (and the
//! tally of emergency commands refused), the
//! address book of peers met before and the vault of agents' secrets. Each part
//! keeps its own invariants; the service layer (`service/`) composes them
//! into operations.

pub mod address_book;
pub mod agent_uids;
pub mod agents;
pub mod approvals;
pub mod audit_log;
pub mod authority;
pub mod cards;
pub mod docs;
pub mod emergency;
pub mod heads;
pub mod invites;
pub mod mirrors;
pub mod refusals;
pub mod remote;
pub mod tasks;
pub mod vault;
