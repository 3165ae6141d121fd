//! Arbitrary bytes as a fleet certificate, a revocation and a signed gossip
//! envelope.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use osmoda_fabric_proto::{gossip, FleetCert, Revocation};

fuzz_target!(|data: &[u8]| {
    let fleet = common::root().public();
    if let Ok(cert) = FleetCert::decode(data) {
        let _ = cert.verify(&fleet, common::NOW);
        assert_eq!(cert.encode(), data, "decode and encode must agree");
    }
    if let Ok(rev) = Revocation::decode(data) {
        let _ = rev.verify(&fleet);
    }
    if let Ok(envelope) = gossip::open("osmoda/mesh/1", data) {
        assert_eq!(
            envelope.payload.len() + envelope.cert_bytes.len() + 2 + 8 + 64,
            data.len()
        );
        assert!(data.len() <= envelope.payload.len() + gossip::ENVELOPE_OVERHEAD);
    }
});
