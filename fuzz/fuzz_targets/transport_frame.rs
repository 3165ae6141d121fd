//! Arbitrary bytes as transport frames of an established session.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use osmoda_fabric_proto::{Handshake, Side};

fuzz_target!(|data: &[u8]| {
    let (a, b) = (common::identity(4), common::identity(5));
    let mut rng = common::rng();
    let mut i = Handshake::new(Side::Initiator, &a, &mut rng);
    let mut r = Handshake::new(Side::Responder, &b, &mut rng);
    let ok = (|| {
        let m1 = i.write_message(&mut rng).ok()?;
        r.read_message(&m1, common::NOW, &common::not_revoked)
            .ok()?;
        let m2 = r.write_message(&mut rng).ok()?;
        i.read_message(&m2, common::NOW, &common::not_revoked)
            .ok()?;
        let m3 = i.write_message(&mut rng).ok()?;
        r.read_message(&m3, common::NOW, &common::not_revoked)
            .ok()?;
        Some(())
    })();
    assert!(ok.is_some(), "a valid handshake must finish");
    let (mut session, _) = r.finish().expect("finished");
    for frame in data.chunks(97) {
        assert!(
            session.open_frame(frame).is_err(),
            "junk must never authenticate"
        );
    }
});
