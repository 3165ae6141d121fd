//! Arbitrary bytes as message 2 of an initiator's handshake.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use osmoda_fabric_proto::{Handshake, Side};

fuzz_target!(|data: &[u8]| {
    let local = common::identity(3);
    let mut rng = common::rng();
    let mut hs = Handshake::new(Side::Initiator, &local, &mut rng);
    let _ = hs.write_message(&mut rng);
    if hs
        .read_message(data, common::NOW, &common::not_revoked)
        .is_ok()
    {
        let _ = hs.write_message(&mut rng);
        let _ = hs.finish();
    }
});
