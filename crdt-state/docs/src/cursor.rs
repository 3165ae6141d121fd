//! Where a page of a knowledge listing ended, as an opaque token a caller
//! hands back to get the next page.
//!
//! The token is URL-safe base64 (no padding) of a version byte, the
//! entry's `updated_ms` (8 bytes, big-endian) and its id. It is not signed:
//! a forged cursor only moves where a listing starts, which the caller
//! could ask for anyway.

use std::cmp::Reverse;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use crate::error::CursorError;
use crate::ids::{check_id, MAX_ID_BYTES};

const VERSION: u8 = 1;
const FIXED_BYTES: usize = 1 + 8;
/// Longest token [`ListCursor::encode`] makes, in characters.
pub const MAX_CURSOR_CHARS: usize = (FIXED_BYTES + MAX_ID_BYTES).div_ceil(3) * 4;

/// The `(updated_ms, id)` of the last entry of a page: the next page holds
/// the entries strictly after it in listing order (newest first, then by
/// id).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ListCursor {
    pub updated_ms: u64,
    pub id: String,
}

impl ListCursor {
    /// The opaque token for this cursor.
    pub fn encode(&self) -> String {
        let mut bytes = Vec::with_capacity(FIXED_BYTES + self.id.len());
        bytes.push(VERSION);
        bytes.extend_from_slice(&self.updated_ms.to_be_bytes());
        bytes.extend_from_slice(self.id.as_bytes());
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Reads a token made by [`encode`](Self::encode). The token is
    /// untrusted: its length is checked before anything is decoded, and
    /// any malformed token is an error.
    pub fn decode(token: &str) -> Result<Self, CursorError> {
        if token.len() > MAX_CURSOR_CHARS {
            return Err(CursorError::TooLong {
                len: token.len(),
                max: MAX_CURSOR_CHARS,
            });
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| CursorError::Encoding)?;
        let (&version, rest) = bytes.split_first().ok_or(CursorError::Truncated)?;
        if version != VERSION {
            return Err(CursorError::Version(version));
        }
        let (time, id) = rest
            .split_first_chunk::<8>()
            .ok_or(CursorError::Truncated)?;
        let id = std::str::from_utf8(id).map_err(|_| CursorError::Encoding)?;
        check_id(id).map_err(CursorError::InvalidId)?;
        Ok(Self {
            updated_ms: u64::from_be_bytes(*time),
            id: id.to_owned(),
        })
    }

    /// The cursor's place in listing order (see [`rank`]).
    pub(crate) fn rank(&self) -> (Reverse<u64>, &str) {
        (Reverse(self.updated_ms), &self.id)
    }
}

/// An entry's place in listing order: sorting ranks ascending lists the
/// newest first, ties by id.
pub(crate) fn rank(updated_ms: u64, id: &str) -> (Reverse<u64>, &str) {
    (Reverse(updated_ms), id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn decode_is_total_and_inverts_encode(
            token in "\\PC{0,120}",
            updated_ms in any::<u64>(),
            id in "[A-Za-z0-9._-]{1,64}",
        ) {
            let _ = ListCursor::decode(&token);
            let cursor = ListCursor { updated_ms, id };
            prop_assert_eq!(ListCursor::decode(&cursor.encode()), Ok(cursor));
        }
    }

    #[test]
    fn round_trips_and_stays_within_its_bound() {
        for cursor in [
            ListCursor {
                updated_ms: 0,
                id: "a".into(),
            },
            ListCursor {
                updated_ms: u64::MAX,
                id: "z".repeat(MAX_ID_BYTES),
            },
        ] {
            let token = cursor.encode();
            assert!(token.len() <= MAX_CURSOR_CHARS);
            assert!(token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            assert_eq!(ListCursor::decode(&token), Ok(cursor));
        }
    }

    #[test]
    fn malformed_tokens_are_errors() {
        let good = ListCursor {
            updated_ms: 7,
            id: "e1".into(),
        }
        .encode();
        assert!(matches!(
            ListCursor::decode(&"A".repeat(MAX_CURSOR_CHARS + 1)),
            Err(CursorError::TooLong { .. })
        ));
        assert_eq!(ListCursor::decode("!!"), Err(CursorError::Encoding));
        assert_eq!(ListCursor::decode(""), Err(CursorError::Truncated));
        assert_eq!(
            ListCursor::decode(&URL_SAFE_NO_PAD.encode([1u8, 0, 0])),
            Err(CursorError::Truncated)
        );
        assert_eq!(
            ListCursor::decode(&URL_SAFE_NO_PAD.encode([2u8; 12])),
            Err(CursorError::Version(2))
        );
        let mut no_id = vec![1u8];
        no_id.extend_from_slice(&[0; 8]);
        assert!(matches!(
            ListCursor::decode(&URL_SAFE_NO_PAD.encode(&no_id)),
            Err(CursorError::InvalidId(_))
        ));
        no_id.extend_from_slice(b"a b");
        assert!(matches!(
            ListCursor::decode(&URL_SAFE_NO_PAD.encode(&no_id)),
            Err(CursorError::InvalidId(_))
        ));
        assert!(ListCursor::decode(&good).is_ok());
    }
}
