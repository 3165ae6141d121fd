//! Arbitrary bytes where enrollment reads outside input: the request an
//! admin reads from an enrollee, the answer a joiner reads from its admin
//! (and the certificate in it), the token a joiner is given, and messages
//! 1 and 3 of an admin's enrollment handshake with a stranger. What
//! decodes encodes back to its input; nothing panics.
#![no_main]

#[path = "common.rs"]
mod common;

use ed25519_dalek::SigningKey;
use libfuzzer_sys::fuzz_target;
use osmoda_fabric_proto::enroll::{accept_certificate, check_proof, token_version};
use osmoda_fabric_proto::{
    EnrollRequest, EnrollResponse, EnrollToken, FleetCert, Handshake, LocalIdentity, Mode, Role,
    Side,
};

fn admin() -> LocalIdentity {
    let key = SigningKey::from_bytes(&[3; 32]);
    let cert = common::root()
        .issue(
            key.verifying_key().to_bytes(),
            "admin",
            Role::Admin,
            common::NOW - 10,
            common::NOW + 10,
        )
        .expect("valid certificate");
    LocalIdentity::new(&key, cert, &mut common::rng()).expect("matching certificate")
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => {
            if let Ok(req) = EnrollRequest::decode(rest) {
                assert_eq!(req.encode(), rest, "decode and encode must agree");
                let _ = check_proof(&[1; 32], &[2; 32], &[3; 32], &req.proof);
            }
        }
        1 => {
            if let Ok(resp) = EnrollResponse::decode(rest) {
                assert_eq!(resp.encode(), rest, "decode and encode must agree");
                if let EnrollResponse::Certificate(cert) = resp {
                    let fleet = common::root().public();
                    let _ = accept_certificate(&cert, &[0; 32], &fleet, common::NOW);
                    if let Ok(c) = FleetCert::decode(&cert) {
                        assert_eq!(c.encode(), cert, "decode and encode must agree");
                    }
                }
            }
        }
        2 => {
            if let Ok(text) = std::str::from_utf8(rest) {
                let _ = token_version(text);
                let _ = EnrollToken::decode(text, common::NOW);
                let _ = EnrollToken::decode(&format!("osmoda1{text}"), common::NOW);
            }
        }
        _ => {
            let local = admin();
            let mut rng = common::rng();
            let split = rest
                .first()
                .map(|b| *b as usize * 8)
                .unwrap_or(0)
                .min(rest.len());
            let (m1, m3) = rest.split_at(split);
            let mut hs = Handshake::with_mode(Side::Responder, Mode::Enrollment, &local, &mut rng);
            if hs
                .read_message(m1, common::NOW, &common::not_revoked)
                .is_ok()
            {
                let _ = hs.write_message(&mut rng);
                let _ = hs.read_message(m3, common::NOW, &common::not_revoked);
                let _ = hs.finish_enrollee();
            }
        }
    }
});
