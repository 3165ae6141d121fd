//! Application requests over the direct protocol between two real nodes:
//! the fabric carries a registered protocol's bodies untouched both ways,
//! refuses a protocol the receiver did not register, and will not send on
//! one the sender did not register.

mod common;

use common::credentials;

use std::time::Duration;

use osmoda_fabric::proto::FleetRoot;
use osmoda_fabric::{
    AppProtocol, DirectRequest, DirectResponse, FabricConfig, FabricError, FabricEvent,
    FabricHandle, Membership,
};
use rand::rngs::OsRng;
use tokio::sync::mpsc;

async fn start(
    root: &FleetRoot,
    name: &str,
    protocols: &[u16],
) -> (FabricHandle, mpsc::Receiver<FabricEvent>) {
    let config = FabricConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        mdns: false,
        protocols: protocols
            .iter()
            .map(|&id| AppProtocol { id, name: "test" })
            .collect(),
        ..FabricConfig::default()
    };
    let (handle, events, _task) = osmoda_fabric::start(
        credentials(root, name),
        Membership::new(root.public()),
        config,
    )
    .unwrap();
    (handle, events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_protocols_carry_bodies_untouched_and_others_are_refused() {
    let root = FleetRoot::generate(&mut OsRng);
    let (a, _a_events) = start(&root, "a", &[7, 8]).await;
    let (b, mut b_events) = start(&root, "b", &[7]).await;
    let mut listen = Vec::new();
    for _ in 0..100 {
        listen = b.status().await.unwrap().listen;
        if !listen.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    a.dial(listen[0].parse().unwrap()).await.unwrap();
    let target = b.local_peer_id();
    for _ in 0..100 {
        if a.peers().await.unwrap().len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let unregistered = DirectRequest::App {
        protocol: 9,
        body: vec![1],
    };
    assert!(matches!(
        a.request(target, unregistered).await,
        Err(FabricError::UnknownProtocol(9))
    ));
    let unknown_there = DirectRequest::App {
        protocol: 8,
        body: vec![1],
    };
    assert!(matches!(
        a.request(target, unknown_there).await,
        Ok(DirectResponse::Refused { .. })
    ));

    let body: Vec<u8> = (0..=255).cycle().take(100_000).collect();
    let answering = tokio::spawn(async move {
        loop {
            match b_events.recv().await {
                Some(FabricEvent::Request {
                    id, protocol, body, ..
                }) => {
                    assert_eq!(protocol, 7);
                    let body = body.into_iter().rev().collect();
                    b.respond(id, DirectResponse::App { body }).await;
                    // Dropping the last handle would stop b's fabric.
                    return (b, b_events);
                }
                Some(_) => {}
                None => panic!("b stopped"),
            }
        }
    });
    let request = DirectRequest::App {
        protocol: 7,
        body: body.clone(),
    };
    let got = a.request(target, request).await;
    let Ok(DirectResponse::App { body: answer }) = got else {
        panic!("no application answer: {got:?}");
    };
    let expected: Vec<u8> = body.into_iter().rev().collect();
    assert_eq!(answer, expected);
    answering.await.unwrap();
}
