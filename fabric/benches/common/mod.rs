//! Set-up shared by the fabric benchmarks.

use std::time::{SystemTime, UNIX_EPOCH};

use osmoda_fabric::proto::{FleetRoot, Role};
use osmoda_fabric::Credentials;
use rand::rngs::OsRng;

/// Unix seconds.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A fresh member of `root`'s fleet, valid for a day.
pub fn credentials(root: &FleetRoot, name: &str) -> Credentials {
    let key = ed25519_dalek::SigningKey::generate(&mut OsRng);
    let cert = root
        .issue(
            key.verifying_key().to_bytes(),
            name,
            Role::Member,
            now() - 3600,
            now() + 24 * 3600,
        )
        .expect("issue certificate");
    Credentials::new(&key.to_bytes(), cert).expect("credentials")
}
