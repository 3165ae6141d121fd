//! The node and its links: status, peers, texts to the fleet or one member.

use super::{Caller, Node};
use crate::api::{
    AgentsSummary, Done, InboxEntry, KnowledgeSummary, NodeInfo, PeerInfo, Sent, StatusView,
};
use crate::error::NodeResult;

impl Node {
    pub async fn status(&self) -> NodeResult<StatusView> {
        let (limit_mode, limit_reason) = self.agents.limit_mode();
        let emergency = self.emergency.state();
        let held_down = self.agents.held()?.into_iter().collect();
        let fabric = self.fabric.status().await?;
        Ok(StatusView {
            node: NodeInfo {
                // Renewal moves it while the node runs.
                certificate_expires_at: self.signer.cert().expires_at,
                ..self.info.clone()
            },
            labels: self.labels.clone(),
            listen: fabric.listen,
            connected_peers: fabric.connected_peers,
            revocations: fabric.revocations,
            events_dropped: fabric.events_dropped,
            agents: AgentsSummary {
                count: self.agents.specs()?.len(),
                limit_mode,
                limit_reason,
                lockdown: emergency.lockdown,
                frozen: emergency.frozen,
                held_down,
                confinement: self.confinement_layers(),
            },
            knowledge: KnowledgeSummary {
                damaged_shards: self.docs.damaged_shards(),
            },
        })
    }

    pub async fn peers(&self) -> NodeResult<Vec<PeerInfo>> {
        Ok(self.fabric.peers().await?)
    }

    pub async fn broadcast(&self, by: Caller<'_>, text: String) -> NodeResult<Done> {
        let details = format!("{} bytes", text.len());
        let result = self.fabric.broadcast(text).await.map_err(Into::into);
        self.audited(by, "mesh.broadcast", "fleet", &details, result)
            .await?;
        Ok(Done::OK)
    }

    /// Sends a text to one member, named by id or name.
    pub async fn send(&self, by: Caller<'_>, node: &str, text: String) -> NodeResult<Sent> {
        let details = format!("{} bytes", text.len());
        let result = match self.resolve_node(node).await {
            Ok(peer) => self
                .fabric
                .send(peer, text)
                .await
                .map(|()| peer)
                .map_err(Into::into),
            Err(e) => Err(e),
        };
        let target = match &result {
            Ok(peer) => peer.to_string(),
            Err(_) => node.to_owned(),
        };
        let peer = self
            .audited(by, "mesh.send", &target, &details, result)
            .await?;
        Ok(Sent {
            node_id: peer.to_string(),
        })
    }

    pub fn inbox(&self) -> Vec<InboxEntry> {
        self.fabric.inbox()
    }
}
