//! Seals: who made a change, proven, not declared.
//!
//! An Automerge change names its actor, and anyone can write any actor
//! into a change. So every change a node makes is sealed: its node key
//! signs the change hash together with the id of the credential (the
//! fleet certificate) it wrote under. The seal travels with the change,
//! by push and by sync, and is kept with the document, so every replica
//! judges a change on the same evidence: the change, its seal, the
//! credential the seal names, and the change's history. What the
//! signature and credential mean (keys, certificates, roles) is the
//! node's business, behind [`Authority`]; this crate keeps, carries and
//! asks.
//!
//! On the wire, sealed changes are a [`Bundle`]: the credentials the
//! seals name (each once), then one optional seal per change, in the
//! order of the changes that follow (a push's chunks, a sync message's
//! changes).

use std::collections::HashMap;
use std::sync::Arc;

use automerge::ChangeHash;
use osmoda_wire::Reader;

use crate::error::DocError;

/// The id of a credential: the BLAKE3 hash of its bytes.
pub type CredentialId = [u8; 32];

/// Longest credential (a certificate, or a chain of two).
pub const MAX_CREDENTIAL_BYTES: usize = 1024;
/// Most credentials one bundle carries (one per author).
pub const MAX_BUNDLE_CREDENTIALS: usize = 256;
/// Most distinct credentials one document keeps. Each member's writes
/// name its current certificate; renewals add one each.
pub const MAX_DOC_CREDENTIALS: usize = 4096;
/// Bytes a bundle adds per change (flag, signature, credential index).
pub const SEAL_WIRE_BYTES: usize = 1 + 64 + 2;

const BUNDLE_VERSION: u8 = 1;

/// The id of `credential`.
pub fn credential_id(credential: &[u8]) -> CredentialId {
    *blake3::hash(credential).as_bytes()
}

/// The bytes a seal's signature covers.
pub fn sealed_message(hash: &ChangeHash, credential: &CredentialId) -> Vec<u8> {
    let mut out = Vec::with_capacity(SEAL_CONTEXT.len() + 64);
    out.extend_from_slice(SEAL_CONTEXT);
    out.extend_from_slice(&hash.0);
    out.extend_from_slice(credential);
    out
}

/// Domain separation of seal signatures.
pub const SEAL_CONTEXT: &[u8] = b"osmoda change seal v1\0";

/// A change's seal: the author's signature over [`sealed_message`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seal {
    pub signature: [u8; 64],
    pub credential: CredentialId,
}

/// What an author may do, from its credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Member,
    Admin,
}

/// The node's side of sealing: signing its own changes and judging
/// others'. Every verdict must depend only on its arguments and on state
/// every replica converges on (the fleet root, revocations), never on
/// the time a change arrives, so that replicas keep the same changes.
pub trait Authority: Send + Sync + std::fmt::Debug {
    /// The credential this node writes under now (it may be renewed
    /// while the node runs).
    fn credential(&self) -> Vec<u8>;
    /// This node's standing, to refuse locally what every other replica
    /// would refuse.
    fn standing(&self) -> Standing;
    /// Signs [`sealed_message`] for a change this node made.
    fn sign(&self, message: &[u8]) -> [u8; 64];
    /// Whether `seal` binds the change `hash`, made by `actor` at
    /// `time_ms` (the change's own time), to a member, and what that
    /// member may do. The error says why not.
    fn judge(
        &self,
        actor: &[u8],
        hash: &ChangeHash,
        time_ms: i64,
        seal: &Seal,
        credential: &[u8],
    ) -> Result<Standing, String>;
}

/// Shared handle to the node's authority.
pub type SharedAuthority = Arc<dyn Authority>;

/// What a writer with `authority` may do: an admin when it has none
/// (nothing is checked then).
pub(crate) fn standing_of(authority: Option<&SharedAuthority>) -> Standing {
    authority.map_or(Standing::Admin, |a| a.standing())
}

/// The seals of a document's changes and the credentials they name.
#[derive(Debug, Clone, Default)]
pub(crate) struct SealBook {
    seals: HashMap<ChangeHash, Seal>,
    credentials: HashMap<CredentialId, Vec<u8>>,
}

impl SealBook {
    pub(crate) fn get(&self, hash: &ChangeHash) -> Option<(&Seal, &[u8])> {
        let seal = self.seals.get(hash)?;
        let cred = self.credentials.get(&seal.credential)?;
        Some((seal, cred))
    }

    /// Keeps a seal and its credential. False when the document already
    /// holds [`MAX_DOC_CREDENTIALS`] others.
    pub(crate) fn insert(&mut self, hash: ChangeHash, seal: Seal, credential: &[u8]) -> bool {
        if !self.credentials.contains_key(&seal.credential) {
            if self.credentials.len() >= MAX_DOC_CREDENTIALS {
                return false;
            }
            self.credentials
                .insert(seal.credential, credential.to_vec());
        }
        self.seals.insert(hash, seal);
        true
    }

    pub(crate) fn len(&self) -> usize {
        self.seals.len()
    }

    /// Appends the book to `out` (see [`SealBook::decode`]).
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let mut creds: Vec<(&CredentialId, &Vec<u8>)> = self.credentials.iter().collect();
        creds.sort();
        let index: HashMap<&CredentialId, u32> = creds
            .iter()
            .enumerate()
            .map(|(i, (id, _))| (*id, i as u32))
            .collect();
        out.extend_from_slice(&(creds.len() as u32).to_be_bytes());
        for (_, bytes) in &creds {
            out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
            out.extend_from_slice(bytes);
        }
        let mut seals: Vec<(&ChangeHash, &Seal)> = self.seals.iter().collect();
        seals.sort_by_key(|(h, _)| **h);
        out.extend_from_slice(&(seals.len() as u32).to_be_bytes());
        for (hash, seal) in seals {
            out.extend_from_slice(&hash.0);
            out.extend_from_slice(&seal.signature);
            out.extend_from_slice(
                &index
                    .get(&seal.credential)
                    .copied()
                    .unwrap_or(0)
                    .to_be_bytes(),
            );
        }
    }

    /// Takes every seal and credential of `other` this book lacks (within
    /// [`MAX_DOC_CREDENTIALS`]).
    pub(crate) fn merge(&mut self, other: SealBook) {
        for (hash, seal) in other.seals {
            if let Some(cred) = other.credentials.get(&seal.credential) {
                self.insert(hash, seal, cred);
            }
        }
    }

    /// Reads a book written by [`SealBook::encode`].
    pub(crate) fn decode(r: &mut Reader<'_>) -> Result<Self, DocError> {
        let bad = |_| DocError::Framing("the seals of a stored document are truncated");
        let n = r.u32().map_err(bad)? as usize;
        if n > MAX_DOC_CREDENTIALS || n > r.remaining() / 2 {
            return Err(DocError::Framing(
                "too many credentials in a stored document",
            ));
        }
        let mut ids = Vec::with_capacity(n);
        let mut credentials = HashMap::with_capacity(n);
        for _ in 0..n {
            let len = r.u16().map_err(bad)? as usize;
            let bytes = r.bytes(len).map_err(bad)?.to_vec();
            let id = credential_id(&bytes);
            ids.push(id);
            credentials.insert(id, bytes);
        }
        let n = r.u32().map_err(bad)? as usize;
        if n > r.remaining() / (32 + 64 + 4) {
            return Err(DocError::Framing(
                "more seals than a stored document has changes",
            ));
        }
        let mut seals = HashMap::with_capacity(n);
        for _ in 0..n {
            let hash = ChangeHash(r.array().map_err(bad)?);
            let signature = r.array().map_err(bad)?;
            let i = r.u32().map_err(bad)? as usize;
            let credential = *ids.get(i).ok_or(DocError::Framing(
                "a stored seal names an unknown credential",
            ))?;
            seals.insert(
                hash,
                Seal {
                    signature,
                    credential,
                },
            );
        }
        Ok(Self { seals, credentials })
    }
}

/// A seal as carried with a change: the seal and its credential's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CarriedSeal {
    pub seal: Seal,
    pub credential: Vec<u8>,
}

/// Sealed changes on the wire: one optional seal per change, and the body
/// they go with (a push's change chunks, or a sync message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle<'a> {
    pub seals: Vec<Option<CarriedSeal>>,
    pub body: &'a [u8],
}

/// Encodes seals for the changes of `body`, each credential once.
pub fn encode_bundle(seals: &[Option<(&Seal, &[u8])>], body: &[u8]) -> Vec<u8> {
    let mut creds: Vec<&[u8]> = Vec::new();
    let mut index: HashMap<CredentialId, u16> = HashMap::new();
    for (seal, cred) in seals.iter().flatten() {
        if !index.contains_key(&seal.credential) && creds.len() < MAX_BUNDLE_CREDENTIALS {
            index.insert(seal.credential, creds.len() as u16);
            creds.push(cred);
        }
    }
    let mut out = Vec::with_capacity(body.len() + seals.len() * SEAL_WIRE_BYTES + 512);
    out.push(BUNDLE_VERSION);
    out.extend_from_slice(&(creds.len() as u16).to_be_bytes());
    for cred in &creds {
        out.extend_from_slice(&(cred.len() as u16).to_be_bytes());
        out.extend_from_slice(cred);
    }
    out.extend_from_slice(&(seals.len() as u16).to_be_bytes());
    for seal in seals {
        match seal.and_then(|(s, _)| Some((s, *index.get(&s.credential)?))) {
            Some((seal, i)) => {
                out.push(1);
                out.extend_from_slice(&seal.signature);
                out.extend_from_slice(&i.to_be_bytes());
            }
            None => out.push(0),
        }
    }
    out.extend_from_slice(body);
    out
}

/// The most bytes one bundle's seals and credentials take, without the
/// body (a slot without a seal takes one byte).
pub fn bundle_overhead(seals: usize, credentials: &[usize]) -> usize {
    1 + 2 + credentials.iter().map(|c| 2 + c).sum::<usize>() + 2 + seals * SEAL_WIRE_BYTES
}

/// Reads a bundle. Exact: every seal names a credential it carries, and
/// every credential is at most [`MAX_CREDENTIAL_BYTES`].
pub fn decode_bundle(bytes: &[u8]) -> Result<Bundle<'_>, DocError> {
    let bad = |_| DocError::Framing("truncated seals");
    let mut r = Reader::new(bytes);
    if r.u8().map_err(bad)? != BUNDLE_VERSION {
        return Err(DocError::Framing("unknown version of sealed changes"));
    }
    let n = r.u16().map_err(bad)? as usize;
    if n > MAX_BUNDLE_CREDENTIALS {
        return Err(DocError::Framing("too many credentials with the changes"));
    }
    let mut creds = Vec::with_capacity(n.min(r.remaining() / 2));
    for _ in 0..n {
        let len = r.u16().map_err(bad)? as usize;
        if len > MAX_CREDENTIAL_BYTES {
            return Err(DocError::Framing("a credential over the size limit"));
        }
        creds.push(r.bytes(len).map_err(bad)?);
    }
    let ids: Vec<CredentialId> = creds.iter().map(|c| credential_id(c)).collect();
    let n = r.u16().map_err(bad)? as usize;
    let mut seals = Vec::with_capacity(n.min(r.remaining()));
    for _ in 0..n {
        match r.u8().map_err(bad)? {
            0 => seals.push(None),
            1 => {
                let signature = r.array().map_err(bad)?;
                let i = r.u16().map_err(bad)? as usize;
                let (cred, id) = creds
                    .get(i)
                    .zip(ids.get(i))
                    .ok_or(DocError::Framing("a seal names a credential not carried"))?;
                seals.push(Some(CarriedSeal {
                    seal: Seal {
                        signature,
                        credential: *id,
                    },
                    credential: cred.to_vec(),
                }));
            }
            _ => return Err(DocError::Framing("a seal flag other than 0 or 1")),
        }
    }
    let body = r.bytes(r.remaining()).map_err(bad)?;
    Ok(Bundle { seals, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seal(n: u8, cred: &[u8]) -> Seal {
        Seal {
            signature: [n; 64],
            credential: credential_id(cred),
        }
    }

    #[test]
    fn bundles_round_trip_and_share_credentials() {
        let (c1, c2) = (b"cert one".to_vec(), b"cert two".to_vec());
        let (s1, s2, s3) = (seal(1, &c1), seal(2, &c2), seal(3, &c1));
        let seals = [
            Some((&s1, &c1[..])),
            None,
            Some((&s2, &c2[..])),
            Some((&s3, &c1[..])),
        ];
        let bytes = encode_bundle(&seals, b"body");
        // The one slot without a seal takes a byte, not a seal's bytes.
        let most = bundle_overhead(4, &[c1.len(), c2.len()]) + 4;
        assert_eq!(bytes.len(), most - (SEAL_WIRE_BYTES - 1));
        let b = decode_bundle(&bytes).unwrap();
        assert_eq!(b.body, b"body");
        let got: Vec<Option<Seal>> = b.seals.iter().map(|s| s.as_ref().map(|s| s.seal)).collect();
        assert_eq!(got, [Some(s1), None, Some(s2), Some(s3)]);
        assert_eq!(b.seals[3].as_ref().unwrap().credential, c1);
    }

    #[test]
    fn malformed_bundles_are_errors() {
        let c = b"cert".to_vec();
        let s = seal(1, &c);
        let good = encode_bundle(&[Some((&s, &c[..]))], b"");
        for cut in 0..good.len() {
            assert!(decode_bundle(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad_index = good.clone();
        let at = good.len() - 1;
        bad_index[at] = 9;
        assert!(decode_bundle(&bad_index).is_err());
        let mut bad_version = good.clone();
        bad_version[0] = 2;
        assert!(decode_bundle(&bad_version).is_err());
    }

    #[test]
    fn books_round_trip() {
        let mut book = SealBook::default();
        let c = b"cert".to_vec();
        assert!(book.insert(ChangeHash([7; 32]), seal(1, &c), &c));
        assert!(book.insert(ChangeHash([8; 32]), seal(2, &c), &c));
        let mut out = Vec::new();
        book.encode(&mut out);
        let mut r = Reader::new(&out);
        let back = SealBook::decode(&mut r).unwrap();
        assert!(r.finish().is_ok());
        assert_eq!(back.get(&ChangeHash([8; 32])).unwrap().0, &seal(2, &c));
        assert_eq!(back.len(), 2);
        for cut in 0..out.len() {
            let mut r = Reader::new(&out[..cut]);
            assert!(SealBook::decode(&mut r).is_err(), "cut at {cut}");
        }
    }
}
