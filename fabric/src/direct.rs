//! The direct (one peer to one peer) protocol: its messages and their
//! bytes.
//!
//! The fabric's own requests (a text for the operator's inbox, the
//! revocations sent on every new connection) sit beside an opaque
//! application request: a protocol number the application registered
//! ([`AppProtocol`]) and a body the fabric forwards untouched. Each request
//! is answered with an acknowledgement, a refusal with its reason, or the
//! application's body.
//!
//! Format (docs/protocol.md §5): one message per stream direction, read to
//! the stream's end, at most [`MAX_DIRECT_MESSAGE`]; a kind byte, then
//! big-endian fields read through `osmoda_wire::Reader`, exactly.

use std::io;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::{request_response, StreamProtocol};
use osmoda_fabric_proto::cert::{MAX_CERT_LEN, REVOCATION_LEN};
use osmoda_fabric_proto::Revocation;
use osmoda_wire::{Reader, Truncated};

use crate::topics::{MeshText, MAX_TEXT_LEN};

/// Version 2: binary, with opaque application requests (version 1 was
/// JSON and carried the node's own messages; the two do not interoperate).
pub const DIRECT_PROTOCOL: StreamProtocol = StreamProtocol::new("/osmoda/direct/2.0.0");
/// Largest direct request or response. Document sync rounds are the
/// largest: the node bounds one at 8 MiB of messages (of up to 1 MiB
/// each) for up to 272 documents (256 shards, 16 single documents).
pub const MAX_DIRECT_MESSAGE: usize = 16 * 1024 * 1024;
/// Revocations carried by one request.
pub const MAX_REVOCATIONS_PER_SYNC: usize = 4096;
/// Longest reason of a refusal (longer ones are cut).
pub const MAX_REASON_LEN: usize = 1024;
/// Most application protocols one fabric registers.
pub const MAX_APP_PROTOCOLS: usize = 64;

const REQ_TEXT: u8 = 1;
const REQ_REVOCATIONS: u8 = 2;
const REQ_APP: u8 = 3;
const REQ_CERTIFICATE: u8 = 4;
const RESP_ACK: u8 = 1;
const RESP_REFUSED: u8 = 2;
const RESP_APP: u8 = 3;

/// An application protocol carried inside the direct protocol: the
/// fabric forwards requests for it to the application, and refuses
/// requests for protocols nobody registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppProtocol {
    pub id: u16,
    /// For logs.
    pub name: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectRequest {
    /// `osmoda mesh send`.
    Text(MeshText),
    /// Sent on every new connection so that revocations reach nodes that
    /// were away when they were gossiped.
    Revocations(Vec<Revocation>),
    /// A request the application answers.
    App { protocol: u16, body: Vec<u8> },
    /// The sender's renewed certificate (its encoding), so that its live
    /// connections outlast the certificate they were made with.
    Certificate(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectResponse {
    Ack,
    Refused {
        reason: String,
    },
    /// The application's answer.
    App {
        body: Vec<u8>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("truncated, oversized or with bytes left over")]
    Truncated,
    #[error("unknown kind {0}")]
    Kind(u8),
    #[error("text is not UTF-8")]
    Utf8,
    #[error("a revocation does not parse")]
    Revocation,
}

impl From<Truncated> for DecodeError {
    fn from(_: Truncated) -> Self {
        DecodeError::Truncated
    }
}

fn text(r: &mut Reader<'_>, max: usize) -> Result<String, DecodeError> {
    let len = usize::from(r.u16()?);
    if len > max {
        return Err(DecodeError::Truncated);
    }
    String::from_utf8(r.bytes(len)?.to_vec()).map_err(|_| DecodeError::Utf8)
}

/// `s` cut to at most `max` bytes, at a character boundary.
fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn put_text(out: &mut Vec<u8>, s: &str, max: usize) {
    let s = cut(s, max);
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

impl DirectRequest {
    /// The request's bytes. Texts longer than [`MAX_TEXT_LEN`] are cut and
    /// revocations beyond [`MAX_REVOCATIONS_PER_SYNC`] left out; callers
    /// check both first.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            DirectRequest::Text(msg) => {
                let mut out = vec![REQ_TEXT];
                out.extend_from_slice(&msg.sent_at_ms.to_be_bytes());
                put_text(&mut out, &msg.text, MAX_TEXT_LEN);
                out
            }
            DirectRequest::Revocations(revocations) => {
                let revocations = &revocations[..revocations.len().min(MAX_REVOCATIONS_PER_SYNC)];
                let mut out = Vec::with_capacity(3 + revocations.len() * REVOCATION_LEN);
                out.push(REQ_REVOCATIONS);
                out.extend_from_slice(&(revocations.len() as u16).to_be_bytes());
                for rev in revocations {
                    out.extend_from_slice(&rev.encode());
                }
                out
            }
            DirectRequest::Certificate(cert) => {
                let mut out = Vec::with_capacity(1 + cert.len());
                out.push(REQ_CERTIFICATE);
                out.extend_from_slice(cert);
                out
            }
            DirectRequest::App { protocol, body } => {
                let mut out = Vec::with_capacity(3 + body.len());
                out.push(REQ_APP);
                out.extend_from_slice(&protocol.to_be_bytes());
                out.extend_from_slice(body);
                out
            }
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_DIRECT_MESSAGE {
            return Err(DecodeError::Truncated);
        }
        let mut r = Reader::new(bytes);
        let request = match r.u8()? {
            REQ_TEXT => {
                let sent_at_ms = r.u64()?;
                let text = text(&mut r, MAX_TEXT_LEN)?;
                DirectRequest::Text(MeshText { text, sent_at_ms })
            }
            REQ_REVOCATIONS => {
                let n = usize::from(r.u16()?);
                if n > MAX_REVOCATIONS_PER_SYNC || n * REVOCATION_LEN != r.remaining() {
                    return Err(DecodeError::Truncated);
                }
                let mut revocations = Vec::with_capacity(n);
                for _ in 0..n {
                    let bytes = r.bytes(REVOCATION_LEN)?;
                    revocations
                        .push(Revocation::decode(bytes).map_err(|_| DecodeError::Revocation)?);
                }
                DirectRequest::Revocations(revocations)
            }
            REQ_APP => {
                let protocol = r.u16()?;
                let body = r.bytes(r.remaining())?.to_vec();
                DirectRequest::App { protocol, body }
            }
            REQ_CERTIFICATE => {
                if r.remaining() > MAX_CERT_LEN {
                    return Err(DecodeError::Truncated);
                }
                DirectRequest::Certificate(r.bytes(r.remaining())?.to_vec())
            }
            kind => return Err(DecodeError::Kind(kind)),
        };
        r.finish()?;
        Ok(request)
    }
}

impl DirectResponse {
    /// The response's bytes; a reason longer than [`MAX_REASON_LEN`] is cut.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            DirectResponse::Ack => vec![RESP_ACK],
            DirectResponse::Refused { reason } => {
                let mut out = vec![RESP_REFUSED];
                put_text(&mut out, reason, MAX_REASON_LEN);
                out
            }
            DirectResponse::App { body } => {
                let mut out = Vec::with_capacity(1 + body.len());
                out.push(RESP_APP);
                out.extend_from_slice(body);
                out
            }
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_DIRECT_MESSAGE {
            return Err(DecodeError::Truncated);
        }
        let mut r = Reader::new(bytes);
        let response = match r.u8()? {
            RESP_ACK => DirectResponse::Ack,
            RESP_REFUSED => DirectResponse::Refused {
                reason: text(&mut r, MAX_REASON_LEN)?,
            },
            RESP_APP => DirectResponse::App {
                body: r.bytes(r.remaining())?.to_vec(),
            },
            kind => return Err(DecodeError::Kind(kind)),
        };
        r.finish()?;
        Ok(response)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolsError {
    #[error("direct protocol {0} is registered twice")]
    Duplicate(u16),
    #[error("more than {MAX_APP_PROTOCOLS} direct protocols")]
    TooMany,
}

/// The application's protocols, each once.
pub(crate) fn check_protocols(protocols: &[AppProtocol]) -> Result<(), ProtocolsError> {
    if protocols.len() > MAX_APP_PROTOCOLS {
        return Err(ProtocolsError::TooMany);
    }
    for (i, p) in protocols.iter().enumerate() {
        if protocols[..i].iter().any(|q| q.id == p.id) {
            return Err(ProtocolsError::Duplicate(p.id));
        }
    }
    Ok(())
}

/// Reads one message to the end of its stream, refusing more than
/// [`MAX_DIRECT_MESSAGE`] bytes.
async fn read_message<T: AsyncRead + Unpin + Send>(io: &mut T) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    io.take(MAX_DIRECT_MESSAGE as u64 + 1)
        .read_to_end(&mut buf)
        .await?;
    if buf.len() > MAX_DIRECT_MESSAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "direct message too large",
        ));
    }
    Ok(buf)
}

fn invalid(e: DecodeError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// The request-response codec of [`DIRECT_PROTOCOL`].
#[derive(Debug, Clone, Copy, Default)]
pub struct DirectCodec;

impl request_response::Codec for DirectCodec {
    type Protocol = StreamProtocol;
    type Request = DirectRequest;
    type Response = DirectResponse;

    async fn read_request<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<DirectRequest>
    where
        T: AsyncRead + Unpin + Send,
    {
        DirectRequest::decode(&read_message(io).await?).map_err(invalid)
    }

    async fn read_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
    ) -> io::Result<DirectResponse>
    where
        T: AsyncRead + Unpin + Send,
    {
        DirectResponse::decode(&read_message(io).await?).map_err(invalid)
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        request: DirectRequest,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&request.encode()).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        response: DirectResponse,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&response.encode()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn revocation() -> Revocation {
        let root = osmoda_fabric_proto::FleetRoot::generate(&mut rand::rngs::OsRng);
        root.revoke([7; 32], 1_700_000_000)
    }

    #[test]
    fn every_kind_round_trips() {
        let requests = [
            DirectRequest::Text(MeshText {
                text: "héllo".into(),
                sent_at_ms: 42,
            }),
            DirectRequest::Revocations(vec![revocation(), revocation()]),
            DirectRequest::Revocations(vec![]),
            DirectRequest::App {
                protocol: 9,
                body: vec![0, 1, 2, 255],
            },
            DirectRequest::App {
                protocol: 0,
                body: vec![],
            },
        ];
        for request in requests {
            assert_eq!(DirectRequest::decode(&request.encode()), Ok(request));
        }
        let responses = [
            DirectResponse::Ack,
            DirectResponse::Refused {
                reason: "busy".into(),
            },
            DirectResponse::App { body: vec![3; 100] },
        ];
        for response in responses {
            assert_eq!(DirectResponse::decode(&response.encode()), Ok(response));
        }
    }

    #[test]
    fn a_long_reason_is_cut_at_a_character_boundary() {
        let reason = "é".repeat(MAX_REASON_LEN);
        let encoded = DirectResponse::Refused { reason }.encode();
        let Ok(DirectResponse::Refused { reason }) = DirectResponse::decode(&encoded) else {
            panic!("does not decode");
        };
        assert_eq!(reason.len(), MAX_REASON_LEN);
    }

    #[test]
    fn malformed_messages_are_errors() {
        let text = DirectRequest::Text(MeshText {
            text: "x".into(),
            sent_at_ms: 1,
        })
        .encode();
        for cut in 0..text.len() {
            assert!(DirectRequest::decode(&text[..cut]).is_err(), "{cut}");
        }
        let mut trailing = text.clone();
        trailing.push(0);
        assert_eq!(
            DirectRequest::decode(&trailing),
            Err(DecodeError::Truncated)
        );
        assert_eq!(DirectRequest::decode(&[9]), Err(DecodeError::Kind(9)));
        assert_eq!(DirectResponse::decode(&[0]), Err(DecodeError::Kind(0)));
        let mut long = vec![REQ_TEXT];
        long.extend_from_slice(&[0; 8]);
        long.extend_from_slice(&((MAX_TEXT_LEN + 1) as u16).to_be_bytes());
        long.extend(std::iter::repeat_n(b'a', MAX_TEXT_LEN + 1));
        assert!(DirectRequest::decode(&long).is_err());
        // A count that promises more revocations than follow.
        assert!(DirectRequest::decode(&[REQ_REVOCATIONS, 0xff, 0xff]).is_err());
        let mut bad = DirectRequest::Revocations(vec![revocation()]).encode();
        bad[3] ^= 0xff;
        assert_eq!(DirectRequest::decode(&bad), Err(DecodeError::Revocation));
    }

    #[test]
    fn each_protocol_is_registered_once() {
        let p = |id| AppProtocol { id, name: "p" };
        assert_eq!(check_protocols(&[p(1), p(2)]), Ok(()));
        assert_eq!(
            check_protocols(&[p(1), p(2), p(1)]),
            Err(ProtocolsError::Duplicate(1))
        );
        let many: Vec<_> = (0..=MAX_APP_PROTOCOLS as u16).map(p).collect();
        assert_eq!(check_protocols(&many), Err(ProtocolsError::TooMany));
    }
}
