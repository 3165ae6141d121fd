use osmoda_crdt_state::Checkpoint;
use proptest::prelude::*;

use super::*;

fn checkpoint() -> Checkpoint {
    let key = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
    Checkpoint::sign(&key, 0, osmoda_crdt_state::merkle::empty_root(), 1)
}

fn offer() -> AntiEntropy {
    AntiEntropy {
        summary: vec![2; 40],
        summary_digest: [1; 16],
        heads_digest: Some([3; 16]),
        heads: vec![vec![9; 100], vec![]],
        emergency_digest: Some([6; 16]),
        emergency: vec![vec![4; 300], vec![5; MAX_COMMAND_LEN]],
    }
}

fn requests() -> Vec<Request> {
    vec![
        Request::AuditRange {
            node: [4; 32],
            start: 7,
            count: 48,
            proofs: true,
        },
        Request::AuditRange {
            node: [4; 32],
            start: 0,
            count: 1,
            proofs: false,
        },
        Request::DocSync {
            start: true,
            messages: vec![
                ShardMessage {
                    shard: 3,
                    data: vec![1, 2, 3],
                },
                ShardMessage {
                    shard: u16::MAX,
                    data: vec![],
                },
            ],
        },
        Request::DocSync {
            start: false,
            messages: vec![],
        },
        Request::AntiEntropy(offer()),
        Request::AntiEntropy(AntiEntropy {
            summary_digest: [8; 16],
            ..AntiEntropy::default()
        }),
    ]
}

fn responses() -> Vec<(u16, Response)> {
    vec![
        (
            AUDIT_RANGE,
            Response::AuditRange {
                checkpoint: checkpoint(),
                records: vec![vec![0; MAX_AUDIT_RECORD], vec![1; 33]],
                proofs: vec![],
            },
        ),
        (
            AUDIT_RANGE,
            Response::AuditRange {
                checkpoint: checkpoint(),
                records: vec![vec![1; 33], vec![2; 40]],
                proofs: vec![
                    osmoda_crdt_state::InclusionProof {
                        leaf_index: 3,
                        tree_size: 9,
                        path: vec![[7; 32]; MAX_PATH_LEN],
                    },
                    osmoda_crdt_state::InclusionProof {
                        leaf_index: 0,
                        tree_size: 1,
                        path: vec![],
                    },
                ],
            },
        ),
        (
            DOC_SYNC,
            Response::DocSync {
                messages: vec![ShardMessage {
                    shard: 255,
                    data: vec![7; MAX_SHARD_MESSAGE],
                }],
            },
        ),
        (ANTI_ENTROPY, Response::AntiEntropy(offer())),
        (ANTI_ENTROPY, Response::Ack),
    ]
}

#[test]
fn every_message_round_trips() {
    for request in requests() {
        let body = request.encode();
        assert_eq!(Request::decode(request.protocol(), &body), Ok(request));
    }
    for (protocol, response) in responses() {
        let body = response.encode();
        assert_eq!(Response::decode(protocol, &body), Ok(response));
    }
}

#[test]
fn limits_versions_and_leftovers_are_refused() {
    let sync = |messages: Vec<ShardMessage>| Request::DocSync {
        start: false,
        messages,
    };
    let big = sync(vec![ShardMessage {
        shard: 0,
        data: vec![0; MAX_SHARD_MESSAGE + 1],
    }]);
    assert!(Request::decode(DOC_SYNC, &big.encode()).is_err());
    let many = sync(vec![
        ShardMessage {
            shard: 0,
            data: vec![],
        };
        MAX_SHARD_MESSAGES + 1
    ]);
    assert!(Request::decode(DOC_SYNC, &many.encode()).is_err());
    let heads = Request::AntiEntropy(AntiEntropy {
        heads: vec![vec![]; MAX_HEADS_CHUNKS + 1],
        ..offer()
    });
    assert!(Request::decode(ANTI_ENTROPY, &heads.encode()).is_err());
    let chunk = Request::AntiEntropy(AntiEntropy {
        heads: vec![vec![0; MAX_CHUNK + 1]],
        ..offer()
    });
    assert!(Request::decode(ANTI_ENTROPY, &chunk.encode()).is_err());
    let commands = Request::AntiEntropy(AntiEntropy {
        emergency: vec![vec![1; 10]; MAX_EMERGENCY_COMMANDS + 1],
        ..offer()
    });
    assert!(Request::decode(ANTI_ENTROPY, &commands.encode()).is_err());
    let command = Request::AntiEntropy(AntiEntropy {
        emergency: vec![vec![1; MAX_COMMAND_LEN + 1]],
        ..offer()
    });
    assert!(Request::decode(ANTI_ENTROPY, &command.encode()).is_err());

    for request in requests() {
        let mut body = request.encode();
        body.push(0);
        assert_eq!(
            Request::decode(request.protocol(), &body),
            Err(WireError::Truncated)
        );
        body.pop();
        body[0] = 9;
        assert_eq!(
            Request::decode(request.protocol(), &body),
            Err(WireError::Version(9))
        );
        assert_eq!(Request::decode(9, &[1]), Err(WireError::Protocol(9)));
    }
    // Anti-entropy speaks version 2 (with the emergency registers), audit
    // ranges version 2 (with proofs), doc sync version 1.
    assert_eq!(Request::AntiEntropy(offer()).encode()[0], 2);
    assert_eq!(requests()[0].encode()[0], 2);
    assert_eq!(requests()[2].encode()[0], 1);
    // Proofs for some records only, and a proof flag that is not a flag.
    let (_, range) = &responses()[1];
    let mut body = range.encode();
    let Response::AuditRange { records, .. } = range else {
        unreachable!()
    };
    let at = 1 + CHECKPOINT_LEN + 1 + records.iter().map(|r| 2 + r.len()).sum::<usize>();
    body[at] = 1;
    assert!(Response::decode(AUDIT_RANGE, &body).is_err());
    let mut body = requests()[0].encode();
    *body.last_mut().unwrap() = 2;
    assert!(Request::decode(AUDIT_RANGE, &body).is_err());
    // A flag that is neither 0 nor 1.
    assert!(Request::decode(DOC_SYNC, &[1, 2, 0, 0]).is_err());
    // An empty body is an acknowledgement only for anti-entropy.
    assert!(Response::decode(DOC_SYNC, &[]).is_err());
    // A count that promises more than follows.
    assert!(Response::decode(DOC_SYNC, &[1, 0, 200]).is_err());
}

proptest! {
    #[test]
    fn random_bodies_never_panic_and_what_decodes_is_exact(
        protocol in 0u16..5,
        body in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        if let Ok(request) = Request::decode(protocol, &body) {
            prop_assert_eq!(request.encode(), body.clone());
        }
        if let Ok(response) = Response::decode(protocol, &body) {
            prop_assert_eq!(response.encode(), body);
        }
    }

    #[test]
    fn every_cut_of_a_valid_body_is_an_error(cut in 0usize..200) {
        for request in requests() {
            let body = request.encode();
            if cut < body.len() {
                prop_assert!(Request::decode(request.protocol(), &body[..cut]).is_err());
            }
        }
    }
}
