//! Enrollment over the hybrid TCP link: a node without a certificate gets
//! one from an admin node, and is served nothing else.
//!
//! The admin's TCP listener offers a second security protocol beside the
//! member one, [`ENROLL_PROTOCOL`], only when the node may issue and the
//! application gave it an [`Enroller`]. On it, the hybrid handshake runs in
//! [`Mode::Enrollment`] (its own prologue: neither handshake can pass for
//! the other), the enrollee sends one [`EnrollRequest`], the admin answers
//! one [`EnrollResponse`] and closes: the upgrade never yields a connection,
//! so no libp2p protocol, gossip or request ever reaches an enrollee. The
//! whole exchange runs within the inbound handshake timeout.

use std::sync::Arc;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use futures::future::BoxFuture;
use futures::{AsyncRead, AsyncWrite, AsyncWriteExt};
use libp2p::multiaddr::Protocol;
use libp2p::Multiaddr;
use osmoda_fabric_proto::enroll::{
    accept_certificate, proof, MessageError, MAX_RESPONSE_LEN, REQUEST_LEN,
};
use osmoda_fabric_proto::{
    CertError, EnrollRequest, EnrollResponse, EnrollToken, FleetCert, Handshake, HandshakeError,
    LocalIdentity, Mode, NodeKey, Side,
};

use crate::pq_tcp::{drive, read_message, unix_now, write_message, PqError};

/// Negotiated with multistream-select instead of the member protocol.
pub const ENROLL_PROTOCOL: &str = "/osmoda/pq-enroll/1.0.0";
/// How long a joiner waits for an admin, connection to answer.
pub const ENROLL_TIMEOUT: Duration = Duration::from_secs(10);

/// What an admin node is asked: an enrollee proved, in one session, that
/// it holds `node`'s key; `proof` says it knows the secret of `token_id`
/// (check it with `osmoda_fabric_proto::enroll::check_proof` over
/// `handshake_hash`).
#[derive(Debug, Clone)]
pub struct EnrollmentRequest {
    pub node: NodeKey,
    pub token_id: [u8; 16],
    pub proof: [u8; 32],
    pub handshake_hash: [u8; 32],
}

/// The application's side of enrollment: checks the token, marks it used
/// before answering, and issues the certificate; or says why not.
pub trait Enroller: Send + Sync + std::fmt::Debug + 'static {
    fn enroll(&self, request: EnrollmentRequest) -> BoxFuture<'static, Result<FleetCert, String>>;
}

/// Serves one enrollment on an admin's inbound connection. Always ends
/// the connection: `Ok` means the enrollee got its answer.
pub(crate) async fn serve<C>(
    local: Arc<LocalIdentity>,
    enroller: Arc<dyn Enroller>,
    is_revoked: impl Fn(&NodeKey) -> bool + Send + Sync,
    mut io: C,
) -> Result<(), PqError>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let mut hs = Handshake::with_mode(
        Side::Responder,
        Mode::Enrollment,
        &local,
        &mut rand::rngs::OsRng,
    );
    drive(&mut hs, &mut io, &is_revoked).await?;
    let (session, node) = hs.finish_enrollee()?;
    let handshake_hash = session.handshake_hash();
    let mut stream = crate::pq_tcp::PqStream::new(io, session);
    let request = read_message(&mut stream, REQUEST_LEN).await?;
    let answer = match EnrollRequest::decode(&request) {
        Ok(req) => {
            let request = EnrollmentRequest {
                node,
                token_id: req.token_id,
                proof: req.proof,
                handshake_hash,
            };
            match enroller.enroll(request).await {
                Ok(cert) => EnrollResponse::Certificate(cert.encode()),
                Err(reason) => EnrollResponse::Refused(reason),
            }
        }
        Err(e) => EnrollResponse::Refused(format!("bad request: {e}")),
    };
    write_message(&mut stream, &answer.encode()).await?;
    let _ = stream.close().await;
    Ok(())
}

/// Why an enrollment failed, on the joiner's side.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("{0} is not a TCP address (enrollment runs over TCP)")]
    NotTcp(Multiaddr),
    #[error("cannot reach the admin at {addr}: {reason}")]
    Unreachable { addr: Multiaddr, reason: String },
    #[error("the enrollment handshake failed: {0}")]
    Handshake(#[from] PqError),
    #[error("another node answered, not the admin that issued the token")]
    WrongAdmin,
    #[error("the admin refused: {0}")]
    Refused(String),
    #[error("the admin's answer is malformed: {0}")]
    Malformed(#[from] MessageError),
    #[error("the certificate the admin sent is not valid: {0}")]
    Certificate(#[from] CertError),
    #[error("the admin did not answer within {0:?}")]
    Timeout(Duration),
}

impl EnrollError {
    /// Whether another of the admin's addresses may do better: the admin
    /// was not reached; an answer from it is final.
    pub fn try_next_address(&self) -> bool {
        matches!(
            self,
            Self::NotTcp(_) | Self::Unreachable { .. } | Self::Timeout(_) | Self::Handshake(_)
        )
    }
}

/// Enrolls `identity` with the admin of `token` at `addr`: the certificate
/// the admin issued, checked against the token's fleet.
pub async fn enroll(
    addr: &Multiaddr,
    token: &EnrollToken,
    identity: &SigningKey,
) -> Result<FleetCert, EnrollError> {
    let socket = tcp_address(addr).ok_or_else(|| EnrollError::NotTcp(addr.clone()))?;
    let attempt = async {
        let tcp =
            tokio::net::TcpStream::connect(socket)
                .await
                .map_err(|e| EnrollError::Unreachable {
                    addr: addr.clone(),
                    reason: e.to_string(),
                })?;
        let _ = tcp.set_nodelay(true);
        let io = libp2p::tcp::tokio::TcpStream(tcp);
        let (_, io) = multistream_select::dialer_select_proto(
            io,
            [ENROLL_PROTOCOL],
            multistream_select::Version::V1,
        )
        .await
        .map_err(|e| EnrollError::Unreachable {
            addr: addr.clone(),
            reason: format!("it does not take enrollments ({e})"),
        })?;
        let local = LocalIdentity::enrollee(identity, token.fleet, &mut rand::rngs::OsRng);
        exchange(io, &local, token).await
    };
    let cert = tokio::time::timeout(ENROLL_TIMEOUT, attempt)
        .await
        .map_err(|_| EnrollError::Timeout(ENROLL_TIMEOUT))??;
    Ok(cert)
}

fn tcp_address(addr: &Multiaddr) -> Option<std::net::SocketAddr> {
    let mut ip = None;
    for p in addr.iter() {
        match p {
            Protocol::Ip4(a) => ip = Some(std::net::IpAddr::V4(a)),
            Protocol::Ip6(a) => ip = Some(std::net::IpAddr::V6(a)),
            Protocol::Tcp(port) => return ip.map(|ip| std::net::SocketAddr::new(ip, port)),
            _ => {}
        }
    }
    None
}

/// The joiner's side, once the admin agreed to enroll: the handshake,
/// the request, the answer.
async fn exchange<C>(
    mut io: C,
    local: &LocalIdentity,
    token: &EnrollToken,
) -> Result<FleetCert, EnrollError>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    let mut hs = Handshake::with_mode(
        Side::Initiator,
        Mode::Enrollment,
        local,
        &mut rand::rngs::OsRng,
    );
    // The joiner holds no revocation list; the admin checks itself.
    drive(&mut hs, &mut io, &|_| false).await?;
    let (session, admin) = hs.finish().map_err(PqError::from)?;
    if admin.node != token.admin {
        return Err(EnrollError::WrongAdmin);
    }
    let node = local.node();
    let request = EnrollRequest {
        token_id: token.id,
        proof: proof(&token.secret, &session.handshake_hash(), &node),
    };
    let mut stream = crate::pq_tcp::PqStream::new(io, session);
    write_message(&mut stream, &request.encode()).await?;
    let answer = read_message(&mut stream, MAX_RESPONSE_LEN).await?;
    match EnrollResponse::decode(&answer)? {
        EnrollResponse::Certificate(cert) => {
            Ok(accept_certificate(&cert, &node, &token.fleet, unix_now())?)
        }
        EnrollResponse::Refused(reason) => Err(EnrollError::Refused(reason)),
    }
}

impl From<HandshakeError> for EnrollError {
    fn from(e: HandshakeError) -> Self {
        Self::Handshake(PqError::Handshake(e))
    }
}
