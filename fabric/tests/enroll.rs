//! Enrollment on real sockets: an admin node's listener serves the
//! enrollment exchange and nothing else to a node without a certificate;
//! a node that may not issue does not offer it; the certificate the
//! enrollee gets lets it connect as a member.

mod common;

use common::{credentials, now};

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ed25519_dalek::SigningKey;
use futures::future::BoxFuture;
use libp2p::Multiaddr;
use osmoda_fabric::enroll::{enroll, EnrollError, Enroller, EnrollmentRequest};
use osmoda_fabric::proto::enroll::check_proof;
use osmoda_fabric::proto::{EnrollToken, FleetCert, FleetRoot, Role};
use osmoda_fabric::{Credentials, FabricConfig, FabricHandle, Membership};
use rand::rngs::OsRng;
use zeroize::Zeroizing;

const SECRET: [u8; 32] = [9; 32];

/// Takes the one token `[1; 16]` once, as an admin node does.
#[derive(Debug, Clone)]
struct Desk {
    key: SigningKey,
    cert: FleetCert,
    used: Arc<Mutex<HashSet<[u8; 16]>>>,
}

impl Enroller for Desk {
    fn enroll(&self, req: EnrollmentRequest) -> BoxFuture<'static, Result<FleetCert, String>> {
        let desk = self.clone();
        Box::pin(async move {
            if req.token_id != [1; 16]
                || !check_proof(&SECRET, &req.handshake_hash, &req.node, &req.proof)
            {
                return Err("unknown token".into());
            }
            if !desk.used.lock().unwrap().insert(req.token_id) {
                return Err("this token was used already".into());
            }
            FleetCert::delegate(
                &desk.cert,
                &desk.key,
                req.node,
                "joiner",
                now() - 60,
                now() + 600,
            )
            .map_err(|e| e.to_string())
        })
    }
}

async fn start(
    creds: Credentials,
    fleet: [u8; 32],
    enroller: Option<Desk>,
) -> (FabricHandle, Multiaddr) {
    let config = FabricConfig {
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()],
        mdns: false,
        enroller: enroller.map(|d| Arc::new(d) as Arc<dyn Enroller>),
        ..FabricConfig::default()
    };
    let (handle, mut events, _task) =
        osmoda_fabric::start(creds, Membership::new(fleet), config).unwrap();
    tokio::spawn(async move { while events.recv().await.is_some() {} });
    for _ in 0..100 {
        if let Some(tcp) = handle.status().await.unwrap().listen.first() {
            return (handle.clone(), tcp.parse().unwrap());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the node did not listen");
}

fn admin(root: &FleetRoot) -> (SigningKey, Credentials) {
    let key = SigningKey::generate(&mut OsRng);
    let cert = root
        .issue(
            key.verifying_key().to_bytes(),
            "adm",
            Role::Admin,
            now() - 60,
            now() + 3600,
        )
        .unwrap();
    let creds = Credentials::new(&key.to_bytes(), cert).unwrap();
    (key, creds)
}

fn token(root: &FleetRoot, admin: &Credentials, addr: &Multiaddr) -> EnrollToken {
    EnrollToken {
        fleet_name: "t".into(),
        fleet: root.public(),
        admin: admin.cert().node,
        id: [1; 16],
        secret: Zeroizing::new(SECRET),
        valid_until: now() + 600,
        addresses: vec![addr.to_string()],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enrollee_gets_a_certificate_once_and_no_connection() {
    let root = FleetRoot::generate(&mut OsRng);
    let (key, creds) = admin(&root);
    let desk = Desk {
        key,
        cert: creds.cert().clone(),
        used: Arc::default(),
    };
    let (handle, addr) = start(creds.clone(), root.public(), Some(desk)).await;
    let tok = token(&root, &creds, &addr);
    let joiner = SigningKey::generate(&mut OsRng);
    let cert = enroll(&addr, &tok, &joiner).await.unwrap();
    assert_eq!(cert.node, joiner.verifying_key().to_bytes());
    assert_eq!(cert.issuer().map(|i| i.node), Some(creds.cert().node));
    // The enrollment ended the connection: the enrollee is no peer.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(handle.peers().await.unwrap().is_empty());
    // The same token again, with another key: refused.
    let other = SigningKey::generate(&mut OsRng);
    match enroll(&addr, &tok, &other).await {
        Err(EnrollError::Refused(reason)) => assert!(reason.contains("used already"), "{reason}"),
        other => panic!("a reused token: {other:?}"),
    }
    // A wrong secret is refused too.
    let mut wrong = token(&root, &creds, &addr);
    wrong.secret = Zeroizing::new([8; 32]);
    assert!(matches!(
        enroll(&addr, &wrong, &other).await,
        Err(EnrollError::Refused(_))
    ));
    // With its certificate the enrollee connects as a member.
    let member = Credentials::new(&joiner.to_bytes(), cert).unwrap();
    let (m, _) = start(member, root.public(), None).await;
    m.dial(addr.clone()).await.unwrap();
    let mut connected = false;
    for _ in 0..200 {
        if handle.peers().await.unwrap().len() == 1 {
            connected = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(connected, "the enrolled node did not connect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_an_admin_node_takes_enrollments_and_only_the_one_named() {
    let root = FleetRoot::generate(&mut OsRng);
    // A plain member given an enroller does not offer enrollment.
    let member = credentials(&root, "m");
    let (mk, mc) = admin(&root);
    let desk = Desk {
        key: mk,
        cert: mc.cert().clone(),
        used: Arc::default(),
    };
    let (_h, addr) = start(member.clone(), root.public(), Some(desk.clone())).await;
    let joiner = SigningKey::generate(&mut OsRng);
    let mut tok = token(&root, &member, &addr);
    assert!(matches!(
        enroll(&addr, &tok, &joiner).await,
        Err(EnrollError::Unreachable { .. })
    ));
    // An admin that is not the token's is refused by the joiner.
    let (_h2, addr2) = start(mc.clone(), root.public(), Some(desk)).await;
    tok.admin = member.cert().node;
    assert!(matches!(
        enroll(&addr2, &tok, &joiner).await,
        Err(EnrollError::WrongAdmin)
    ));
}
