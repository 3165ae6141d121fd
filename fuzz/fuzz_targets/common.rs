// Shared set-up for the fuzz targets: a deterministic fleet and identities,
// so that a crash reproduces from its input alone.
#![allow(dead_code)]

use ed25519_dalek::SigningKey;
use osmoda_fabric_proto::{FleetRoot, LocalIdentity, Role};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

pub const NOW: u64 = 1_800_000_000;

pub fn rng() -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(7)
}

pub fn root() -> FleetRoot {
    FleetRoot::from_secret([1; 32])
}

pub fn identity(seed: u8) -> LocalIdentity {
    let key = SigningKey::from_bytes(&[seed; 32]);
    let cert = root()
        .issue(
            key.verifying_key().to_bytes(),
            "fuzz",
            Role::Member,
            NOW - 10,
            NOW + 10,
        )
        .expect("valid certificate");
    LocalIdentity::new(&key, cert, &mut rng()).expect("matching certificate")
}

pub fn not_revoked(_: &[u8; 32]) -> bool {
    false
}
