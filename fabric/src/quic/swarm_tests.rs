//! The transport under a real libp2p swarm: connection, substreams, ping.

use std::time::Duration;

use futures::StreamExt;
use libp2p::swarm::{Swarm, SwarmEvent};
use libp2p::{ping, PeerId};
use osmoda_fabric_proto::FleetRoot;
use rand::rngs::OsRng;

use super::tests::{member, within, Node};
use crate::Security;

fn swarm(node: Node) -> Swarm<ping::Behaviour> {
    let Node {
        transport,
        credentials,
        ..
    } = node;
    libp2p::SwarmBuilder::with_existing_identity(credentials.keypair().clone())
        .with_tokio()
        .with_other_transport(|_| transport)
        .unwrap()
        .with_behaviour(|_| {
            ping::Behaviour::new(ping::Config::new().with_interval(Duration::from_millis(50)))
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(5)))
        .build()
}

fn pinged(event: SwarmEvent<ping::Event>, from: PeerId) -> bool {
    matches!(event, SwarmEvent::Behaviour(ping::Event { peer, result: Ok(_), .. }) if peer == from)
}

#[tokio::test]
async fn quic_swarms_ping_each_other() {
    let root = FleetRoot::generate(&mut OsRng);
    let (a, b) = (member(&root), member(&root));
    let (a_id, b_id) = (a.peer_id(), b.peer_id());
    let (a_membership, b_membership) = (a.membership.clone(), b.membership.clone());
    let (mut a, mut b) = (swarm(a), swarm(b));

    a.listen_on("/ip4/127.0.0.1/udp/0/quic-v1".parse().unwrap())
        .unwrap();
    let addr = within(async {
        loop {
            if let SwarmEvent::NewListenAddr { address, .. } = a.select_next_some().await {
                return address;
            }
        }
    })
    .await;
    b.dial(addr).unwrap();

    let (mut a_pinged, mut b_pinged) = (false, false);
    within(async {
        while !(a_pinged && b_pinged) {
            tokio::select! {
                event = a.select_next_some() => a_pinged |= pinged(event, b_id),
                event = b.select_next_some() => b_pinged |= pinged(event, a_id),
            }
        }
    })
    .await;
    assert_eq!(
        a_membership.peer(&b_id).map(|r| r.security),
        Some(Security::TlsHybrid)
    );
    assert!(b_membership.peer(&a_id).is_some());
}
