//! Arbitrary bytes as a fleet certificate and as a revocation.
#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use osmoda_fabric_proto::{FleetCert, Revocation};

fuzz_target!(|data: &[u8]| {
    let fleet = common::root().public();
    if let Ok(cert) = FleetCert::decode(data) {
        let _ = cert.verify(&fleet, common::NOW);
        assert_eq!(cert.encode(), data, "decode and encode must agree");
    }
    if let Ok(rev) = Revocation::decode(data) {
        let _ = rev.verify(&fleet);
    }
});
