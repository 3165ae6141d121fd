//! Arbitrary text as a join token.
#![no_main]

use libfuzzer_sys::fuzz_target;
use osmoda_fabric_proto::JoinToken;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = JoinToken::decode(text, 1_800_000_000);
        let _ = JoinToken::decode(&format!("osmoda1{text}"), 1_800_000_000);
    }
});
