//! The fabric over the simulated network: the same hybrid handshake, yamux
//! and gossip as over TCP, with the links the harness shapes.

mod common;

use common::credentials;

use std::time::Duration;

use libp2p::core::transport::Transport as _;
use osmoda_fabric::proto::FleetRoot;
use osmoda_fabric::{FabricConfig, Membership, RawStream, StreamTransportSlot};
use osmoda_simulation::{LinkProfile, SimConfig, SimNetwork};
use rand::rngs::OsRng;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_connect_and_gossip_over_the_simulated_network() {
    let root = FleetRoot::generate(&mut OsRng);
    let net = SimNetwork::new(SimConfig {
        default_profile: LinkProfile::default().with_latency(Duration::from_millis(20)),
        ..SimConfig::default()
    });
    let hosts = net.add_hosts(2).unwrap();
    let mut handles = Vec::new();
    let mut inboxes = Vec::new();
    for (i, host) in hosts.iter().enumerate() {
        let transport = net
            .transport(*host)
            .unwrap()
            .map(|s, _| Box::new(s) as Box<dyn RawStream>)
            .boxed();
        let addr = net.host_addr(*host, 4001).unwrap();
        let config = FabricConfig {
            listen: vec![addr.clone()],
            bootstrap: if i == 1 {
                vec![net.host_addr(hosts[0], 4001).unwrap()]
            } else {
                vec![]
            },
            mdns: false,
            stream_transport: Some(StreamTransportSlot::new(transport)),
            ..FabricConfig::default()
        };
        let (handle, events, _task) = osmoda_fabric::start(
            credentials(&root, &format!("n{i}")),
            Membership::new(root.public()),
            config,
        )
        .unwrap();
        handles.push(handle);
        inboxes.push(events);
    }
    let mut connected = false;
    for _ in 0..100 {
        if handles[0].peers().await.unwrap().len() == 1 {
            connected = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(connected, "no connection over the simulated network");
    let peer = &handles[0].peers().await.unwrap()[0];
    assert!(
        peer.key_exchange.starts_with("X25519+ML-KEM-768"),
        "{peer:?}"
    );
    assert!(
        net.stats(hosts[0]).unwrap().bytes_received > 2_000,
        "handshake bytes went elsewhere"
    );

    // Gossip meshes form on a heartbeat; then a broadcast arrives.
    tokio::time::sleep(Duration::from_secs(2)).await;
    handles[1]
        .broadcast("over the simulated wire".into())
        .await
        .unwrap();
    let mut got = None;
    for _ in 0..50 {
        got = handles[0]
            .inbox()
            .into_iter()
            .find(|m| m.text == "over the simulated wire");
        if got.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = got.expect("the broadcast did not arrive");
    // The sender comes from the signed envelope, not from the relaying link.
    assert_eq!(got.from, handles[1].local_peer_id().to_string());
    drop(inboxes);
}
