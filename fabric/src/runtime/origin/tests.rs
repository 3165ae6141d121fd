use ed25519_dalek::SigningKey;
use osmoda_fabric_proto::{FleetCert, FleetRoot, Role};

use super::*;

const NOW: u64 = 1_000_000;
const TOPIC: &str = "osmoda/audit/1";

fn root() -> FleetRoot {
    FleetRoot::from_secret([7; 32])
}

fn cert_from(root: &FleetRoot, key: &SigningKey, expires_at: u64) -> FleetCert {
    root.issue(
        key.verifying_key().to_bytes(),
        "n",
        Role::Member,
        0,
        expires_at,
    )
    .unwrap()
}

fn key(i: u8) -> SigningKey {
    SigningKey::from_bytes(&[i; 32])
}

struct World {
    membership: std::sync::Arc<Membership>,
    penalties: PenaltyBox,
    replay: Replay,
    local: PeerId,
}

impl World {
    fn new() -> Self {
        Self {
            membership: Membership::new(root().public()),
            penalties: PenaltyBox::default(),
            replay: Replay::default(),
            local: PeerId::random(),
        }
    }

    fn check(&mut self, data: &[u8]) -> Result<PeerId, Refusal> {
        check(
            TOPIC,
            data,
            &self.membership,
            &self.penalties,
            &mut self.replay,
            &self.local,
            NOW,
        )
        .map(|(_, origin)| origin)
    }
}

fn sealed(key: &SigningKey, cert: &FleetCert, seqno: u64) -> Vec<u8> {
    gossip::seal(key, cert, TOPIC, seqno, b"payload").unwrap()
}

#[test]
fn a_member_never_met_is_admitted_by_the_certificate_it_carries() {
    let mut w = World::new();
    let k = key(1);
    let data = sealed(&k, &cert_from(&root(), &k, NOW + 10), 1);
    let origin = peer_id_of(&k.verifying_key().to_bytes()).unwrap();
    assert_eq!(w.check(&data), Ok(origin));
    assert!(w.membership.is_member(&k.verifying_key().to_bytes(), NOW));
}

#[test]
fn a_throwaway_key_is_rejected_and_strikes_the_sender() {
    let mut w = World::new();
    for i in 0..50u8 {
        // A key of the attacker's own, with a certificate from a root of
        // its own: every envelope is well formed and validly signed.
        let throwaway = key(100 + i);
        let fake_root = FleetRoot::from_secret([i + 10; 32]);
        let data = sealed(&throwaway, &cert_from(&fake_root, &throwaway, NOW + 10), 1);
        let refusal = w.check(&data).unwrap_err();
        assert_eq!(
            refusal,
            Refusal::NotMember(MemberError::Certificate(
                osmoda_fabric_proto::CertError::WrongFleet
            ))
        );
        assert_eq!(refusal.acceptance(), MessageAcceptance::Reject);
        assert!(refusal.strikes());
    }
    // None of them became a member, nor took a sequence window.
    assert!(!w
        .membership
        .is_member(&key(100).verifying_key().to_bytes(), NOW));
    assert!(w
        .check(&sealed(&key(1), &cert_from(&root(), &key(1), NOW + 10), 1))
        .is_ok());
}

#[test]
fn the_sender_of_non_member_gossip_ends_in_the_penalty_box() {
    let mut w = World::new();
    let sender = PeerId::random();
    let now = Instant::now();
    let mut penalized = false;
    for i in 0..crate::runtime::penalty::MAX_STRIKES as u8 {
        let throwaway = key(200 + i);
        let data = sealed(
            &throwaway,
            &cert_from(&FleetRoot::from_secret([9; 32]), &throwaway, NOW + 10),
            1,
        );
        let refusal = w.check(&data).unwrap_err();
        assert!(!penalized, "penalized before the last strike");
        penalized = refusal.strikes() && w.penalties.strike(sender, now);
    }
    assert!(penalized);
}

#[test]
fn revoked_or_expired_members_are_ignored_without_a_strike() {
    let mut w = World::new();
    let (revoked, expired) = (key(3), key(4));
    w.membership
        .apply_revocation(&root().revoke(revoked.verifying_key().to_bytes(), NOW))
        .unwrap();
    for data in [
        sealed(&revoked, &cert_from(&root(), &revoked, NOW + 10), 1),
        sealed(&expired, &cert_from(&root(), &expired, NOW), 1),
    ] {
        let refusal = w.check(&data).unwrap_err();
        assert!(matches!(refusal, Refusal::NotMember(_)), "{refusal:?}");
        assert_eq!(refusal.acceptance(), MessageAcceptance::Ignore);
        assert!(!refusal.strikes());
    }
}

#[test]
fn a_signature_by_another_key_than_the_certificates_is_rejected() {
    let mut w = World::new();
    let (member, thief) = (key(5), key(6));
    let mut data = sealed(&thief, &cert_from(&root(), &thief, NOW + 10), 1);
    // Swap in the member's certificate (same length: same name).
    let theirs = cert_from(&root(), &member, NOW + 10).encode();
    data[3..3 + theirs.len()].copy_from_slice(&theirs);
    let refusal = w.check(&data).unwrap_err();
    assert_eq!(refusal, Refusal::Envelope(EnvelopeError::BadSignature));
    assert!(refusal.strikes());
}

#[test]
fn an_envelope_is_news_once_even_after_the_duplicate_cache_forgot_it() {
    let mut w = World::new();
    let k = key(7);
    let cert = cert_from(&root(), &k, NOW + 10);
    let first = sealed(&k, &cert, 5_000);
    assert!(w.check(&first).is_ok());
    assert_eq!(w.check(&first), Err(Refusal::Stale(Seen::Duplicate)));
    assert!(
        w.check(&sealed(&k, &cert, 4_000)).is_ok(),
        "inside the window"
    );
    assert!(w.check(&sealed(&k, &cert, 6_100)).is_ok());
    let refusal = w.check(&sealed(&k, &cert, 4_500)).unwrap_err();
    assert_eq!(refusal, Refusal::Stale(Seen::TooOld));
    assert_eq!(refusal.acceptance(), MessageAcceptance::Ignore);
}

#[test]
fn penalized_members_and_own_messages_stop_here() {
    let mut w = World::new();
    let k = key(8);
    let cert = cert_from(&root(), &k, NOW + 10);
    let origin = peer_id_of(&k.verifying_key().to_bytes()).unwrap();
    w.penalties.penalize(origin, Instant::now());
    assert_eq!(w.check(&sealed(&k, &cert, 1)), Err(Refusal::Penalized));
    let mut w = World::new();
    w.local = origin;
    assert_eq!(w.check(&sealed(&k, &cert, 1)), Err(Refusal::Own));
}
