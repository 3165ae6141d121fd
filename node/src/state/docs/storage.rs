//! How a replicated document's bytes sit in the store: in parts of at
//! most [`PART_BYTES`], under the document's key followed by the part's
//! number (`key || part`, one byte), written in one batch with the parts a
//! shorter save left behind deleted, and read back in order. A document
//! is thus no longer bound by the store's 1 MiB per value, only by what
//! one batch (one commit) holds, 8 MiB, since its parts must change
//! together.
//!
//! Until a document is saved again, the layout before parts (the whole
//! document as one value under its key) is read as it is; the first save
//! in parts deletes it.
//!
//! Local writes stop well below the store's bound ([`MAX_DOC_BYTES`],
//! checked where the write is made, which undoes a write beyond it):
//! replicas must store whatever merged, and several members writing into
//! one document at once can each take it up to the limit.

use osmoda_store::{Batch, Store, MAX_BATCH_BYTES, MAX_BATCH_OPS};

use crate::error::{NodeError, NodeResult};

/// Largest part of a document in one store value (the store's limit is
/// 1 MiB).
pub const PART_BYTES: usize = 512 * 1024;
/// Largest document the store holds: one batch, less room for the keys.
pub const MAX_STORED_BYTES: usize = MAX_BATCH_BYTES - 64 * 1024;
/// Most parts of one document.
pub const MAX_PARTS: usize = MAX_STORED_BYTES.div_ceil(PART_BYTES);
/// Largest document a local write may leave (its saved bytes): half of
/// what the store holds, so concurrent writers on other members, each
/// within this limit, cannot together make a document no replica can
/// store unless many of them write large changes into it at once.
pub const MAX_DOC_BYTES: usize = 4 << 20;

const _: () = assert!(MAX_PARTS <= u8::MAX as usize);
const _: () = assert!(MAX_DOC_BYTES <= MAX_STORED_BYTES);
const _: () = assert!(PART_BYTES <= osmoda_store::MAX_VALUE_BYTES);

fn part_key(key: &[u8], part: usize) -> Vec<u8> {
    let mut k = key.to_vec();
    // MAX_PARTS fits a byte (asserted above).
    k.push(part as u8);
    k
}

/// Adds to `batch` what stores `bytes` as the document under `key`: its
/// parts, and deletes of every other part and of the single-value layout.
fn put(batch: &mut Batch, table: &str, key: &[u8], bytes: &[u8]) -> NodeResult<()> {
    if bytes.len() > MAX_STORED_BYTES {
        return Err(NodeError::TooLarge(format!(
            "a document of {} bytes in table {table}, over the {MAX_STORED_BYTES}-byte limit \
             of what the store holds in one commit",
            bytes.len()
        )));
    }
    let parts: Vec<&[u8]> = bytes.chunks(PART_BYTES).collect();
    for (i, part) in parts.iter().enumerate() {
        batch.put(table, &part_key(key, i), part);
    }
    for i in parts.len()..MAX_PARTS {
        batch.delete(table, &part_key(key, i));
    }
    batch.delete(table, key);
    Ok(())
}

/// Operations and bytes one document's [`put`] adds to a batch.
fn cost(key: &[u8], bytes: &[u8]) -> (usize, usize) {
    (
        MAX_PARTS + 1,
        bytes.len() + (MAX_PARTS + 1) * (key.len() + 1),
    )
}

/// The batches that store `docs` (key and bytes each) in `table`: each
/// document whole in one batch, as many to a batch as the store allows.
/// Batches commit in the order given, so later saves stay later. A
/// document over what the store holds is left out, and its error
/// returned beside the batches, so that the others are still stored.
pub fn batches(table: &str, docs: Vec<(Vec<u8>, Vec<u8>)>) -> (Vec<Batch>, Vec<NodeError>) {
    let mut out = Vec::new();
    let mut refused = Vec::new();
    let mut batch = Batch::new();
    let (mut ops, mut size) = (0, 0);
    for (key, bytes) in docs {
        let (o, s) = cost(&key, &bytes);
        if !batch.is_empty() && (ops + o > MAX_BATCH_OPS || size + s > MAX_BATCH_BYTES) {
            out.push(std::mem::take(&mut batch));
            (ops, size) = (0, 0);
        }
        match put(&mut batch, table, &key, &bytes) {
            Ok(()) => {
                ops += o;
                size += s;
            }
            Err(e) => refused.push(e),
        }
    }
    if !batch.is_empty() {
        out.push(batch);
    }
    (out, refused)
}

/// The stored document under `key`: its parts in order, or the value of
/// the single-value layout, or `None`.
pub fn load(store: &Store, table: &str, key: &[u8]) -> NodeResult<Option<Vec<u8>>> {
    let mut bytes = Vec::new();
    let mut parts = 0;
    while parts < MAX_PARTS {
        match store.get(table, &part_key(key, parts))? {
            Some(part) => bytes.extend_from_slice(&part),
            None => break,
        }
        parts += 1;
    }
    if parts > 0 {
        return Ok(Some(bytes));
    }
    Ok(store.get(table, key)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("state.redb")).unwrap();
        (dir, store)
    }

    fn save(store: &Store, docs: Vec<(Vec<u8>, Vec<u8>)>) -> usize {
        let (batches, refused) = batches("t", docs);
        assert!(refused.is_empty());
        let n = batches.len();
        for b in batches {
            store.batch(b).unwrap();
        }
        n
    }

    #[test]
    fn documents_past_one_value_save_and_load_in_parts() {
        let (_dir, store) = open();
        let big: Vec<u8> = (0..3 * PART_BYTES + 17).map(|i| (i % 251) as u8).collect();
        save(&store, vec![(b"k".to_vec(), big.clone())]);
        assert_eq!(load(&store, "t", b"k").unwrap(), Some(big.clone()));
        assert!(store.get("t", &part_key(b"k", 3)).unwrap().is_some());
        // A shorter save leaves no stale part behind.
        save(&store, vec![(b"k".to_vec(), b"small".to_vec())]);
        assert_eq!(load(&store, "t", b"k").unwrap(), Some(b"small".to_vec()));
        assert!(store.get("t", &part_key(b"k", 1)).unwrap().is_none());
        assert_eq!(load(&store, "t", b"other").unwrap(), None);
        // Over what one commit holds: refused, naming the limit, and the
        // other documents are still stored.
        let huge = vec![0u8; MAX_STORED_BYTES + 1];
        let (kept, refused) = batches(
            "t",
            vec![(b"k".to_vec(), huge), (b"j".to_vec(), b"fits".to_vec())],
        );
        assert_eq!(refused.len(), 1);
        assert!(refused[0]
            .to_string()
            .contains(&format!("{MAX_STORED_BYTES}-byte limit")));
        for b in kept {
            store.batch(b).unwrap();
        }
        assert_eq!(load(&store, "t", b"j").unwrap(), Some(b"fits".to_vec()));
        assert_eq!(load(&store, "t", b"k").unwrap(), Some(b"small".to_vec()));
    }

    #[test]
    fn the_single_value_layout_is_read_until_saved_again() {
        let (_dir, store) = open();
        store.put("t", b"k", b"old layout").unwrap();
        assert_eq!(
            load(&store, "t", b"k").unwrap(),
            Some(b"old layout".to_vec())
        );
        save(&store, vec![(b"k".to_vec(), b"new".to_vec())]);
        assert_eq!(store.get("t", b"k").unwrap(), None, "the old value is gone");
        assert_eq!(load(&store, "t", b"k").unwrap(), Some(b"new".to_vec()));
    }

    #[test]
    fn many_documents_are_packed_into_batches_the_store_takes() {
        let (_dir, store) = open();
        let docs: Vec<(Vec<u8>, Vec<u8>)> = (0u16..40)
            .map(|i| (i.to_be_bytes().to_vec(), vec![i as u8; 1 << 20]))
            .collect();
        let n = save(&store, docs.clone());
        assert!(n >= 5, "40 MiB in batches of at most 8 MiB: {n}");
        for (key, bytes) in docs {
            assert_eq!(load(&store, "t", &key).unwrap(), Some(bytes));
        }
    }
}
