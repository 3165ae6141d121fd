//! A bounds-checked reader for osmoda's fixed binary formats.
//!
//! The binary formats of the fabric and the audit log are big-endian with an
//! exact length. Decoders read them through [`Reader`], whose every read
//! checks the length first, so no input can make a decoder index out of
//! bounds, and whose [`Reader::finish`] refuses leftover bytes, so every
//! format is exact.
//! Counted lists ([`Reader::arrays`]) check their bound and the bytes left
//! before allocating, so a hostile count cannot reserve memory.
//!
//! No dependencies and `no_std` (with `alloc`), so any crate that parses
//! untrusted bytes can share it.

// Outside bytes, files and answers are errors, never panics; tests may
// unwrap what they made themselves.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
#![cfg_attr(not(test), no_std)]

extern crate alloc;

use alloc::vec::Vec;
use core::fmt;

/// Reads big-endian fields from a byte slice; every read checks the length.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

/// The input ended before a field did, had bytes left over, or held a count
/// above its bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncated;

impl fmt::Display for Truncated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("input truncated, oversized or with bytes left over")
    }
}

impl core::error::Error for Truncated {}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// The next `n` bytes, borrowed from the input.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], Truncated> {
        let (head, tail) = self.buf.split_at_checked(n).ok_or(Truncated)?;
        self.buf = tail;
        Ok(head)
    }

    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], Truncated> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    pub fn u8(&mut self) -> Result<u8, Truncated> {
        Ok(self.array::<1>()?[0])
    }

    pub fn u16(&mut self) -> Result<u16, Truncated> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub fn u32(&mut self) -> Result<u32, Truncated> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> Result<u64, Truncated> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// A one-byte count followed by that many `N`-byte arrays, as written by
    /// [`put_arrays`]. A count above `max`, or above what the input still
    /// holds, fails before anything is allocated, so a hostile count cannot
    /// reserve memory.
    pub fn arrays<const N: usize>(&mut self, max: usize) -> Result<Vec<[u8; N]>, Truncated> {
        let n = usize::from(self.u8()?);
        if n > max || n.saturating_mul(N) > self.remaining() {
            return Err(Truncated);
        }
        // One allocation of exactly `n` arrays, never more than `max`.
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.array()?);
        }
        Ok(out)
    }

    /// What is left to read.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Fails if anything is left: every format here has an exact length.
    pub fn finish(self) -> Result<(), Truncated> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(Truncated)
        }
    }
}

/// Appends a one-byte count and the arrays, the format [`Reader::arrays`]
/// reads. The count is one byte, so only the first 255 arrays are written;
/// callers keep their lists within the `max` they decode with, far below.
pub fn put_arrays<const N: usize>(out: &mut Vec<u8>, items: &[[u8; N]]) {
    // Cutting rather than wrapping keeps the count true to what follows.
    let items = &items[..items.len().min(usize::from(u8::MAX))];
    out.push(items.len() as u8);
    for item in items {
        out.extend_from_slice(item);
    }
}

#[cfg(test)]
mod tests;
