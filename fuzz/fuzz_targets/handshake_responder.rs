//! Arbitrary bytes as messages 1 and 3 of a responder's handshake.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use osmoda_fabric_proto::{Handshake, Side};

fuzz_target!(|data: &[u8]| {
    let local = common::identity(2);
    let mut rng = common::rng();
    let split = data
        .first()
        .map(|b| *b as usize * 8)
        .unwrap_or(0)
        .min(data.len());
    let (m1, m3) = data.split_at(split);
    let mut hs = Handshake::new(Side::Responder, &local, &mut rng);
    if hs
        .read_message(m1, common::NOW, &common::not_revoked)
        .is_ok()
    {
        let _ = hs.write_message(&mut rng);
        let _ = hs.read_message(m3, common::NOW, &common::not_revoked);
        let _ = hs.finish();
    }
});
