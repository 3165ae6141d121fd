//! Framing of Automerge's storage format: a byte string is a sequence of
//! chunks `magic(4) checksum(4) type(1) leb128 length, data`. Reading the
//! framing ourselves lets the crate refuse chunk kinds before Automerge
//! sees them, and report garbage that Automerge's incremental load would
//! silently skip.

/// Kinds of chunk in Automerge's storage format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChunkKind {
    Document,
    Change,
    /// A DEFLATE-compressed change.
    Compressed,
}

const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];

/// Reads an unsigned LEB128 value; `None` if truncated or over 64 bits.
pub(crate) fn read_leb128(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value: u64 = 0;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        let part = u64::from(b & 0x7f);
        if i == 9 && part > 1 {
            return None;
        }
        value |= part << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// Bytes of the LEB128 encoding of `v`.
pub(crate) fn leb128_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// Splits `bytes` into whole chunks. Errors name the first problem; the
/// chunk contents are left to Automerge.
pub(crate) fn split(mut bytes: &[u8]) -> Result<Vec<(ChunkKind, &[u8])>, &'static str> {
    if bytes.is_empty() {
        return Err("no chunk");
    }
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let header = bytes.get(..9).ok_or("truncated chunk header")?;
        if header[..4] != MAGIC {
            return Err("bad chunk magic");
        }
        let kind = match header[8] {
            0 => ChunkKind::Document,
            1 => ChunkKind::Change,
            2 => ChunkKind::Compressed,
            _ => return Err("unknown or unsupported chunk type"),
        };
        let (len, used) = read_leb128(&bytes[9..]).ok_or("bad chunk length")?;
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| (9 + used).checked_add(l))
            .filter(|&end| end <= bytes.len())
            .ok_or("chunk longer than the input")?;
        out.push((kind, &bytes[..end]));
        bytes = &bytes[end..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leb128_reader_matches_lengths() {
        for v in [0u64, 1, 127, 128, 300, 1 << 20, u64::MAX] {
            let mut buf = Vec::new();
            let mut x = v;
            loop {
                let b = (x & 0x7f) as u8;
                x >>= 7;
                if x == 0 {
                    buf.push(b);
                    break;
                }
                buf.push(b | 0x80);
            }
            assert_eq!(read_leb128(&buf), Some((v, buf.len())));
            assert_eq!(leb128_len(v), buf.len());
        }
        assert_eq!(read_leb128(&[0x80]), None);
        assert_eq!(read_leb128(&[0xff; 11]), None);
    }

    #[test]
    fn split_reads_framing() {
        let mut chunk = MAGIC.to_vec();
        chunk.extend([0, 0, 0, 0, 1, 2, 7, 7]);
        assert_eq!(split(&chunk), Ok(vec![(ChunkKind::Change, &chunk[..])]));
        let mut two = chunk.clone();
        two.extend(&chunk);
        assert_eq!(split(&two).map(|v| v.len()), Ok(2));
        let mut bundle = chunk.clone();
        bundle[8] = 3;
        assert!(split(&bundle).is_err());
        assert!(split(&chunk[..chunk.len() - 1]).is_err());
        assert!(split(&[]).is_err());
        assert!(split(b"garbage garbage").is_err());
    }
}
