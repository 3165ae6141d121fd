use super::*;

fn peer() -> PeerId {
    libp2p::identity::Keypair::generate_ed25519()
        .public()
        .to_peer_id()
}

fn addr(s: &str) -> Multiaddr {
    s.parse().unwrap()
}

async fn written(ack: Result<Option<Ack<usize>>, StoreError>) -> bool {
    match ack.unwrap() {
        Some(ack) => {
            ack.await.unwrap();
            true
        }
        None => false,
    }
}

#[tokio::test]
async fn peers_survive_a_restart_most_recent_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.redb");
    let (a, b) = (peer(), peer());
    {
        let book = AddressBook::open(Store::open(&path).unwrap()).unwrap();
        let tcp = addr("/ip4/127.0.0.1/tcp/4001");
        assert!(written(book.learn(&a, "a".into(), std::slice::from_ref(&tcp), 1_000)).await);
        let quic = addr("/ip4/10.0.0.2/udp/4001/quic-v1");
        assert!(written(book.learn(&b, "b".into(), &[quic], 2_000)).await);
    }
    let book = AddressBook::open(Store::open(&path).unwrap()).unwrap();
    let dial = book.to_dial(10);
    assert_eq!(
        dial.iter().map(|k| k.peer).collect::<Vec<_>>(),
        [b, a],
        "most recently seen first"
    );
    assert_eq!(dial[1].addrs, [addr("/ip4/127.0.0.1/tcp/4001")]);
    assert_eq!(book.get(&a).unwrap().name, "a");
    assert_eq!(book.to_dial(1).len(), 1);
}

#[tokio::test]
async fn only_dialable_addresses_are_kept_and_at_most_eight() {
    let dir = tempfile::tempdir().unwrap();
    let book = AddressBook::open(Store::open(dir.path().join("s.redb")).unwrap()).unwrap();
    let p = peer();
    let mut addrs = vec![
        addr("/ip4/0.0.0.0/tcp/1"),
        addr("/ip6/::/tcp/1"),
        addr("/ip4/1.2.3.4/tcp/5/p2p-circuit"),
        addr("/tcp/7"),
        addr(&format!("/ip4/1.2.3.4/tcp/9/p2p/{p}")),
        addr("/ip4/1.2.3.4/tcp/9"),
    ];
    addrs.extend((0..20).map(|i| addr(&format!("/dns4/n{i}.example/tcp/1"))));
    assert!(written(book.learn(&p, String::new(), &addrs, 1)).await);
    let kept = book.get(&p).unwrap().addrs;
    assert_eq!(kept.len(), MAX_ADDRS);
    assert_eq!(
        kept[0],
        addr("/ip4/1.2.3.4/tcp/9"),
        "p2p dropped, duplicate merged"
    );
    assert!(kept[1..]
        .iter()
        .all(|a| a.to_string().starts_with("/dns4/")));

    // Nothing dialable: nothing written, nothing to dial.
    let q = peer();
    assert!(!written(book.learn(&q, String::new(), &[addr("/ip4/0.0.0.0/tcp/1")], 1)).await);
    assert!(book.get(&q).is_none());
}

#[tokio::test]
async fn the_same_addresses_are_written_again_only_after_a_while() {
    let dir = tempfile::tempdir().unwrap();
    let book = AddressBook::open(Store::open(dir.path().join("s.redb")).unwrap()).unwrap();
    let p = peer();
    let one = [addr("/ip4/1.2.3.4/tcp/1")];
    assert!(written(book.learn(&p, "n".into(), &one, 1_000)).await);
    assert!(!written(book.learn(&p, "n".into(), &one, 2_000)).await);
    assert_eq!(book.get(&p).unwrap().last_seen_ms, 2_000);
    let moved = [addr("/ip4/1.2.3.4/tcp/2")];
    assert!(written(book.learn(&p, "n".into(), &moved, 3_000)).await);
    let later = 3_000 + REWRITE_AFTER_MS;
    assert!(written(book.learn(&p, "n".into(), &moved, later)).await);
    book.seen(&p, later + 5);
    assert_eq!(book.get(&p).unwrap().last_seen_ms, later + 5);
}

#[tokio::test]
async fn the_book_is_bounded_and_forgets_the_peer_seen_longest_ago() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let first = peer();
    {
        let book = AddressBook::open(Store::open(&path).unwrap()).unwrap();
        let a = [addr("/ip4/1.2.3.4/tcp/1")];
        assert!(written(book.learn(&first, String::new(), &a, 0)).await);
        let mut acks = Vec::new();
        for i in 1..=MAX_PEERS as u64 {
            acks.push(book.learn(&peer(), String::new(), &a, i).unwrap().unwrap());
        }
        for ack in acks {
            ack.await.unwrap();
        }
        assert_eq!(book.len(), MAX_PEERS);
        assert!(book.get(&first).is_none());
    }
    let book = AddressBook::open(Store::open(&path).unwrap()).unwrap();
    assert_eq!(book.len(), MAX_PEERS);
    assert!(book.get(&first).is_none(), "evicted on disk too");
}

#[test]
fn damaged_records_do_not_decode() {
    let record = PeerRecord {
        name: "n".into(),
        addrs: vec![addr("/ip4/1.2.3.4/tcp/1")],
        last_seen_ms: 7,
    };
    let bytes = record.encode();
    assert_eq!(PeerRecord::decode(&bytes), Some(record));
    for cut in 0..bytes.len() {
        assert!(PeerRecord::decode(&bytes[..cut]).is_none());
    }
    let mut long = bytes.clone();
    long.push(0);
    assert!(PeerRecord::decode(&long).is_none());
}
