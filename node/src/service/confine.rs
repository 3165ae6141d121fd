//! How the node confines its agents: the plan each agent is started
//! under (its uid, what it sees, its secrets, its network), and the
//! egress proxy that is its only way out.

use osmoda_agentd::AgentSpec;

use super::Node;

impl Node {
    /// A running agent's proxy uses `spec.allow` from its next connection.
    pub(crate) fn egress_allowlist_changed(&self, spec: &AgentSpec) {
        let _ = spec;
    }
}
