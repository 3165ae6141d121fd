//! Checks on ML-KEM-768 inputs that the `ml-kem` crate leaves to callers.

/// Length of an ML-KEM-768 encapsulation key.
pub const ENCAPSULATION_KEY_LEN: usize = 1184;
const Q: u16 = 3329;

/// FIPS 203 §7.2 "modulus check": every 12-bit coefficient of the key's
/// vector must already be reduced mod q. `ml-kem` 0.2 would silently reduce
/// them, accepting several encodings of one key; both the TLS hybrid draft and
/// FIPS 203 require refusing such a key.
pub fn encapsulation_key_is_canonical(bytes: &[u8]) -> bool {
    if bytes.len() != ENCAPSULATION_KEY_LEN {
        return false;
    }
    // The last 32 bytes are the matrix seed, which is not checked.
    let vector = &bytes[..ENCAPSULATION_KEY_LEN - 32];
    vector.chunks_exact(3).all(|c| {
        let first = u16::from(c[0]) | (u16::from(c[1] & 0x0f) << 8);
        let second = u16::from(c[1] >> 4) | (u16::from(c[2]) << 4);
        first < Q && second < Q
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ml_kem::{EncodedSizeUser, KemCore, MlKem768};

    #[test]
    fn generated_keys_pass_and_unreduced_keys_fail() {
        let (_, ek) = MlKem768::generate(&mut rand::rngs::OsRng);
        let mut bytes = ek.as_bytes().to_vec();
        assert!(encapsulation_key_is_canonical(&bytes));
        // First coefficient set to 0xd01 = 3329 = q.
        bytes[0] = 0x01;
        bytes[1] = (bytes[1] & 0xf0) | 0x0d;
        assert!(!encapsulation_key_is_canonical(&bytes));
        assert!(!encapsulation_key_is_canonical(&bytes[..100]));
    }
}
