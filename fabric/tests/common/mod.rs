//! Set-up shared by the fabric's tests and benchmarks (these include it
//! by path).

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

/// Unix milliseconds.
#[allow(dead_code)]
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A fresh member of `root`'s fleet, valid for a day.
#[allow(dead_code)] // not every test or bench uses both
pub fn credentials(root: &FleetRoot, name: &str) -> Credentials {
    member_until(root, name, now() + 24 * 3600)
}

/// A fresh member of `root`'s fleet whose certificate expires at
/// `expires_at` (Unix seconds; in the past for an expired one).
pub fn member_until(root: &FleetRoot, name: &str, expires_at: u64) -> Credentials {
    let key = ed25519_dalek::SigningKey::generate(&mut OsRng);
    let cert = root
        .issue(
            key.verifying_key().to_bytes(),
            name,
            Role::Member,
            now() - 3600,
            expires_at,
        )
        .expect("issue certificate");
    Credentials::new(&key.to_bytes(), cert).expect("credentials")
}
