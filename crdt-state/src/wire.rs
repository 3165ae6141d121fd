//! A bounds-checked reader for the fixed binary formats of this crate.
//!
//! The same shape as `osmoda-fabric-proto`'s reader (which is private to that
//! crate): every read checks the length first, so no input can make a decoder
//! index out of bounds, and `finish` makes every format exact.

use crate::Hash;

/// Reads big-endian fields from a byte slice; every read checks the length.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

/// The input ended before a field did, or had bytes left over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Truncated;

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], Truncated> {
        if self.buf.len() < n {
            return Err(Truncated);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], Truncated> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Truncated> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, Truncated> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, Truncated> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, Truncated> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// A count followed by that many 32-byte hashes. `max` is checked before
    /// anything is allocated, so a hostile count cannot reserve memory.
    pub(crate) fn hashes(&mut self, max: usize) -> Result<Vec<Hash>, Truncated> {
        let n = self.u8()? as usize;
        if n > max || n * 32 > self.remaining() {
            return Err(Truncated);
        }
        (0..n).map(|_| self.array()).collect()
    }

    /// What is left to read.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Fails if anything is left: every format here has an exact length.
    pub(crate) fn finish(self) -> Result<(), Truncated> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(Truncated)
        }
    }
}

/// Appends a count byte and the hashes. Callers keep `hashes.len()` within
/// the format's bound (at most [`crate::proof::MAX_PATH_LEN`], far below 256).
pub(crate) fn put_hashes(out: &mut Vec<u8>, hashes: &[Hash]) {
    debug_assert!(hashes.len() <= u8::MAX as usize);
    out.push(hashes.len() as u8);
    for h in hashes {
        out.extend_from_slice(h);
    }
}
