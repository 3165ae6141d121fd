//! Agent cards: the operator's edits, this node's advertisement on
//! `osmoda/cards/1`, the fleet's advertised agents, and where a task for a
//! skill goes.

use std::collections::HashSet;
use std::time::Duration;

use libp2p::PeerId;
use osmoda_fabric::Verdict;

use super::{Caller, Node};
use crate::api::{AgentView, CardEdit, CardQuery, FleetCardView};
use crate::error::{NodeError, NodeResult};
use crate::state::cards::{Card, CardSet, MAX_CARDS_PER_NODE, MAX_SET_BYTES};

/// How often a node advertises its cards again, changed or not: the set
/// of a node that joined since, or missed a message, arrives within this.
pub const ADVERTISE_EVERY: Duration = Duration::from_secs(30);

/// Applies an edit to a card.
pub(crate) fn edited(mut card: Card, edit: CardEdit) -> NodeResult<Card> {
    if let Some(description) = edit.description {
        card.description = description;
    }
    if let Some(mut skills) = edit.skills {
        skills.dedup();
        card.skills = skills;
    }
    if let Some(mut rings) = edit.accept_rings {
        rings.sort_unstable();
        rings.dedup();
        card.accept_rings = rings;
    }
    card.check()?;
    Ok(card)
}

impl Node {
    /// Changes an agent's card; the fleet hears of it at once.
    pub async fn agent_edit(
        &self,
        by: Caller<'_>,
        name: &str,
        edit: CardEdit,
    ) -> NodeResult<AgentView> {
        let result = match self.agents.card(name) {
            Ok(card) => match edited(card, edit) {
                Ok(card) => self.agents.set_card(&card).await.map(|()| card),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        let details = match &result {
            Ok(card) => format!(
                "skills [{}], rings {:?}",
                card.skills.join(" "),
                card.accept_rings
            ),
            Err(_) => String::new(),
        };
        self.audited(by, "agent.edit", name, &details, result)
            .await?;
        self.cards_changed();
        self.agent_show(name).await
    }

    /// Tells the advertising task to say the cards again soon.
    pub(crate) fn cards_changed(&self) {
        self.cards_kick.notify_one();
    }

    /// This node's cards as it advertises them: every agent's, the first
    /// [`MAX_CARDS_PER_NODE`] by name, as many as fit a gossip message.
    pub(crate) async fn own_cards(&self) -> NodeResult<CardSet> {
        let mut cards = Vec::new();
        for status in self.agents.list().await? {
            let name = status.spec.name.clone();
            let mut card = self.agents.card(&name)?;
            card.running = self.agents.is_up(&name).await;
            cards.push(card);
        }
        cards.sort_by(|a, b| a.name.cmp(&b.name));
        cards.truncate(MAX_CARDS_PER_NODE);
        let mut set = CardSet {
            issued_ms: super::now_ms(),
            node_name: self.info.name.clone(),
            cards,
        };
        while set.encode()?.len() > MAX_SET_BYTES && set.cards.pop().is_some() {}
        Ok(set)
    }

    /// Publishes this node's cards and keeps them as its own entry.
    pub(crate) async fn advertise_cards(&self) -> NodeResult<()> {
        let set = self.own_cards().await?;
        let bytes = set.encode()?;
        self.cards.insert(self.fabric.local_peer_id(), set);
        // Nobody to tell (no peer yet) is no failure: the next round tells.
        if let Err(e) = self
            .fabric
            .publish(crate::runtime::topics::CARDS, bytes)
            .await
        {
            tracing::debug!(error = %e, "cards not advertised this round");
        }
        Ok(())
    }

    /// The check of a card set from gossip, before it is forwarded: it
    /// decodes within its bounds and is newer than what its node said
    /// before. Who said it is the envelope's signer, a current member.
    pub(crate) fn check_cards(&self, data: &[u8], origin: PeerId) -> Result<CardSet, Verdict> {
        let set = CardSet::decode(data).map_err(|_| Verdict::Reject)?;
        if origin == self.fabric.local_peer_id() || !self.cards.is_news(&origin, &set) {
            return Err(Verdict::Ignore);
        }
        Ok(set)
    }

    /// The fleet's advertised agents that `query` picks, this node's first.
    pub async fn fleet_cards(&self, query: &CardQuery) -> NodeResult<Vec<FleetCardView>> {
        let me = self.fabric.local_peer_id();
        if self.cards.all().iter().all(|(p, _)| *p != me) {
            self.advertise_cards().await?;
        }
        let live: HashSet<String> = self
            .fabric
            .peers()
            .await?
            .into_iter()
            .map(|p| p.node_id)
            .collect();
        let mut out = Vec::new();
        for (peer, advertised) in self.cards.all() {
            // A revoked node's agents take no more work, however the
            // revocation arrived.
            if osmoda_fabric::node_key_of(&peer).is_some_and(|k| self.membership.is_revoked(&k)) {
                self.cards.remove(&peer);
                continue;
            }
            let node_id = peer.to_string();
            let local = peer == me;
            for card in advertised.set.cards {
                if query.skill.as_deref().is_some_and(|s| !card.has_skill(s))
                    || query
                        .name
                        .as_deref()
                        .is_some_and(|n| !card.name.eq_ignore_ascii_case(n))
                {
                    continue;
                }
                out.push(FleetCardView {
                    live: local || live.contains(&node_id),
                    age_secs: if local {
                        0
                    } else {
                        advertised.received.elapsed().as_secs()
                    },
                    node_id: node_id.clone(),
                    node_name: advertised.set.node_name.clone(),
                    card,
                });
            }
        }
        out.sort_by(|a, b| {
            (b.node_id == me.to_string())
                .cmp(&(a.node_id == me.to_string()))
                .then(a.node_name.cmp(&b.node_name))
                .then(a.card.name.cmp(&b.card.name))
        });
        Ok(out)
    }

    /// Where a task for `skill` from a submitter of `ring` goes: an agent
    /// that lists the skill and takes tasks from that ring, on a live node
    /// (this one or a connected one), running agents first; among the best
    /// a random one, so that work spreads. None fits: the reason.
    pub(crate) async fn place(&self, skill: &str, ring: u8) -> NodeResult<(PeerId, String)> {
        let query = CardQuery {
            skill: Some(skill.to_owned()),
            name: None,
        };
        let all = self.fleet_cards(&query).await?;
        if all.is_empty() {
            return Err(NodeError::not_found("agent advertising the skill", skill));
        }
        let taking: Vec<_> = all
            .iter()
            .filter(|c| c.card.accept_rings.contains(&ring))
            .collect();
        if taking.is_empty() {
            return Err(NodeError::Forbidden(format!(
                "{} agents advertise skill {skill:?}; none takes tasks from ring {ring}",
                all.len()
            )));
        }
        let live: Vec<_> = taking.iter().filter(|c| c.live).collect();
        if live.is_empty() {
            return Err(NodeError::Unavailable(format!(
                "the agents with skill {skill:?} are on nodes not connected now ({})",
                taking
                    .iter()
                    .map(|c| format!("{}@{}", c.card.name, c.node_name))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let running: Vec<_> = live.iter().filter(|c| c.card.running).collect();
        let best: Vec<&FleetCardView> = if running.is_empty() {
            live.iter().map(|c| **c).collect()
        } else {
            running.iter().map(|c| ***c).collect()
        };
        let chosen = best[rand::random::<usize>() % best.len()];
        let peer = chosen
            .node_id
            .parse()
            .map_err(|_| NodeError::internal("an advertised node id does not parse"))?;
        Ok((peer, chosen.card.name.clone()))
    }
}

/// Advertises this node's cards every [`ADVERTISE_EVERY`], and a second
/// after each change, until the node is gone.
pub async fn advertise(node: std::sync::Weak<Node>) {
    loop {
        let Some(strong) = node.upgrade() else { return };
        if let Err(e) = strong.advertise_cards().await {
            tracing::warn!(error = %e, "cannot advertise this node's cards");
        }
        let kick = strong.cards_kick.clone();
        drop(strong);
        let woken = tokio::time::timeout(ADVERTISE_EVERY, kick.notified()).await;
        if woken.is_ok() {
            // Changes come in bursts (an agent added, then started).
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}
