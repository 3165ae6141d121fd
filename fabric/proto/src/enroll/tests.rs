use super::*;
use crate::cert::{FleetRoot, Role};
use crate::handshake::{Handshake, HandshakeError, LocalIdentity, Mode, Side};
use ed25519_dalek::SigningKey;
use proptest::prelude::*;
use rand::rngs::OsRng;

const NOW: u64 = 1_800_000_000;

fn token() -> EnrollToken {
    EnrollToken {
        fleet_name: "lab".into(),
        fleet: [1; 32],
        admin: [2; 32],
        id: [3; 16],
        secret: Zeroizing::new([4; 32]),
        valid_until: NOW + 60,
        addresses: vec!["/ip4/127.0.0.1/tcp/7410/p2p/12D3KooW".into()],
    }
}

#[test]
fn a_token_round_trips_and_expires() {
    let text = token().encode().unwrap();
    assert_eq!(token_version(&text), Ok(ENROLL_TOKEN_VERSION));
    let back = EnrollToken::decode(&text, NOW).unwrap();
    assert_eq!(back.fleet_name, "lab");
    assert_eq!(
        (back.fleet, back.admin, back.id),
        ([1; 32], [2; 32], [3; 16])
    );
    assert_eq!(*back.secret, [4; 32]);
    assert_eq!(back.addresses, token().addresses);
    assert!(matches!(
        EnrollToken::decode(&text, NOW + 60),
        Err(TokenError::Expired { .. })
    ));
    // The root's direct tokens are another version.
    assert!(matches!(
        crate::JoinToken::decode(&text, NOW),
        Err(TokenError::Version(ENROLL_TOKEN_VERSION))
    ));
    // The secret stays out of Debug.
    assert!(!format!("{back:?}").contains("0404"));
}

#[test]
fn every_altered_character_is_refused() {
    let text = token().encode().unwrap();
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    for i in TOKEN_PREFIX.len()..text.len() - 1 {
        let mut b = text.as_bytes().to_vec();
        b[i] = if b[i] == alphabet[0] {
            alphabet[1]
        } else {
            alphabet[0]
        };
        let altered = String::from_utf8(b).unwrap();
        assert!(
            EnrollToken::decode(&altered, NOW).is_err(),
            "altered char {i} accepted"
        );
    }
}

#[test]
fn a_proof_binds_the_secret_the_session_and_the_key() {
    let p = proof(&[4; 32], &[5; 32], &[6; 32]);
    assert!(check_proof(&[4; 32], &[5; 32], &[6; 32], &p));
    assert!(!check_proof(&[7; 32], &[5; 32], &[6; 32], &p));
    assert!(!check_proof(&[4; 32], &[8; 32], &[6; 32], &p));
    assert!(!check_proof(&[4; 32], &[5; 32], &[9; 32], &p));
}

#[test]
fn messages_round_trip_exactly() {
    let req = EnrollRequest {
        token_id: [1; 16],
        proof: [2; 32],
    };
    let bytes = req.encode();
    assert_eq!(bytes.len(), REQUEST_LEN);
    assert_eq!(EnrollRequest::decode(&bytes), Ok(req));
    assert!(EnrollRequest::decode(&bytes[..REQUEST_LEN - 1]).is_err());
    for resp in [
        EnrollResponse::Certificate(vec![1, 2, 3]),
        EnrollResponse::Refused("the token was used already".into()),
    ] {
        let bytes = resp.encode();
        assert_eq!(EnrollResponse::decode(&bytes), Ok(resp));
        let mut long = bytes.clone();
        long.push(0);
        assert!(EnrollResponse::decode(&long).is_err());
    }
    let long = EnrollResponse::Refused("é".repeat(MAX_REASON_LEN)).encode();
    assert!(long.len() <= MAX_RESPONSE_LEN);
    assert!(EnrollResponse::decode(&long).is_ok());
}

fn admin(root: &FleetRoot, role: Role) -> (SigningKey, LocalIdentity) {
    let key = SigningKey::generate(&mut OsRng);
    let cert = root
        .issue(
            key.verifying_key().to_bytes(),
            "adm",
            role,
            NOW - 10,
            NOW + 1000,
        )
        .unwrap();
    let local = LocalIdentity::new(&key, cert, &mut OsRng).unwrap();
    (key, local)
}

/// Runs an enrollment handshake: the enrollee initiates, the responder
/// answers in `mode`.
fn enroll(
    enrollee: &LocalIdentity,
    responder: &LocalIdentity,
    mode: Mode,
) -> Result<([u8; 32], [u8; 32], NodeKey, NodeKey), HandshakeError> {
    let mut i = Handshake::with_mode(Side::Initiator, Mode::Enrollment, enrollee, &mut OsRng);
    let mut r = Handshake::with_mode(Side::Responder, mode, responder, &mut OsRng);
    let none = |_: &NodeKey| false;
    r.read_message(&i.write_message(&mut OsRng)?, NOW, &none)?;
    i.read_message(&r.write_message(&mut OsRng)?, NOW, &none)?;
    r.read_message(&i.write_message(&mut OsRng)?, NOW, &none)?;
    let (is, admin) = i.finish()?;
    let (rs, node) = r.finish_enrollee()?;
    Ok((is.handshake_hash(), rs.handshake_hash(), admin.node, node))
}

#[test]
fn an_enrollee_without_a_certificate_reaches_an_admin_and_only_in_enrollment() {
    let root = FleetRoot::generate(&mut OsRng);
    let (admin_key, adm) = admin(&root, Role::Admin);
    let joiner = SigningKey::generate(&mut OsRng);
    let enrollee = LocalIdentity::enrollee(&joiner, root.public(), &mut OsRng);
    let (h1, h2, admin_node, node) = enroll(&enrollee, &adm, Mode::Enrollment).unwrap();
    assert_eq!(h1, h2);
    assert_eq!(admin_node, admin_key.verifying_key().to_bytes());
    assert_eq!(node, joiner.verifying_key().to_bytes());
    // A member handshake refuses it: the prologues differ.
    assert!(matches!(
        enroll(&enrollee, &adm, Mode::Member),
        Err(HandshakeError::Decrypt(_))
    ));
    // An admin the root did not sign for cannot take enrollments, nor a
    // plain member.
    let (_, member) = admin(&root, Role::Member);
    assert_eq!(
        enroll(&enrollee, &member, Mode::Enrollment).err(),
        Some(HandshakeError::NotAnIssuer)
    );
    let other = FleetRoot::generate(&mut OsRng);
    let (_, foreign) = admin(&other, Role::Admin);
    assert!(enroll(&enrollee, &foreign, Mode::Enrollment).is_err());
    // A member presenting a certificate where an enrollee presents none is
    // refused by the admin.
    let (_, with_cert) = admin(&root, Role::Member);
    assert_eq!(
        enroll(&with_cert, &adm, Mode::Enrollment).err(),
        Some(HandshakeError::Malformed(3))
    );
}

#[test]
fn an_enrollee_cannot_pass_a_member_handshake() {
    let root = FleetRoot::generate(&mut OsRng);
    let (_, adm) = admin(&root, Role::Admin);
    let joiner = SigningKey::generate(&mut OsRng);
    let enrollee = LocalIdentity::enrollee(&joiner, root.public(), &mut OsRng);
    let none = |_: &NodeKey| false;
    let mut i = Handshake::new(Side::Initiator, &enrollee, &mut OsRng);
    let mut r = Handshake::new(Side::Responder, &adm, &mut OsRng);
    r.read_message(&i.write_message(&mut OsRng).unwrap(), NOW, &none)
        .unwrap();
    i.read_message(&r.write_message(&mut OsRng).unwrap(), NOW, &none)
        .unwrap();
    let m3 = i.write_message(&mut OsRng).unwrap();
    assert!(r.read_message(&m3, NOW, &none).is_err());
}

proptest! {
    /// What an admin reads from a stranger and what a joiner reads from
    /// its token and its admin: random bytes, and valid messages with a
    /// byte changed, never panic, and what decodes encodes back exactly.
    #[test]
    fn hostile_bytes_decode_exactly_or_not_at_all(
        junk in proptest::collection::vec(any::<u8>(), 0..MAX_RESPONSE_LEN + 8),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let req = EnrollRequest { token_id: [1; 16], proof: [2; 32] }.encode();
        let resp = EnrollResponse::Refused("no".into()).encode();
        for valid in [req, resp] {
            let mut changed = valid.clone();
            let i = at.index(changed.len());
            changed[i] = byte;
            for input in [&junk, &changed] {
                if let Ok(r) = EnrollRequest::decode(input) {
                    prop_assert_eq!(&r.encode(), input);
                }
                if let Ok(r) = EnrollResponse::decode(input) {
                    prop_assert_eq!(&r.encode(), input);
                }
                let _ = accept_certificate(input, &[0; 32], &[0; 32], NOW);
            }
        }
        let text = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(&junk));
        let _ = EnrollToken::decode(&text, NOW);
        let _ = token_version(&text);
    }
}
