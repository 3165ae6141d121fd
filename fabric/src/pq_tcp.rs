//! The hybrid post-quantum security upgrade for stream transports (TCP).
//!
//! A thin async shell around [`osmoda_fabric_proto::Handshake`] and
//! [`osmoda_fabric_proto::Session`]: it moves length-prefixed handshake
//! messages, checks membership through [`Membership`], and then exposes the
//! encrypted connection as a byte stream on which libp2p negotiates yamux.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use libp2p::core::upgrade::{InboundConnectionUpgrade, OutboundConnectionUpgrade, UpgradeInfo};
use libp2p::PeerId;
use osmoda_fabric_proto::session::{MAX_FRAME_LEN, MAX_PLAINTEXT_LEN};
use osmoda_fabric_proto::{
    Handshake, HandshakeError, LocalIdentity, NodeKey, Session, SessionError, Side,
};

use crate::enroll::{Enroller, ENROLL_PROTOCOL};
use crate::membership::{peer_id_of, Membership, PeerRecord, Security};
use crate::LiveCredentials;

/// Negotiated with multistream-select before the handshake. A stock libp2p
/// peer offers `/noise` or `/tls/1.0.0` and finds no common protocol.
pub const PROTOCOL: &str = "/osmoda/pq-noise/1.0.0";

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[derive(Debug, thiserror::Error)]
pub enum PqError {
    #[error("handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
    #[error("i/o during the handshake: {0}")]
    Io(#[from] io::Error),
    #[error("the peer's identity key is not an Ed25519 key")]
    BadPeerKey,
    #[error("a message of {0} bytes is longer than allowed")]
    TooLong(usize),
    #[error("served an enrollment; the connection ends with it")]
    Enrolled,
    #[error("this node takes no enrollments")]
    NoEnrollments,
}

/// Runs a handshake to its end over `io`, each message framed by its
/// 2-byte length.
pub(crate) async fn drive<C>(
    hs: &mut Handshake<'_>,
    io: &mut C,
    is_revoked: &(dyn Fn(&NodeKey) -> bool + Sync),
) -> Result<(), PqError>
where
    C: AsyncRead + AsyncWrite + Unpin,
{
    while !hs.is_finished() {
        if hs.wants_to_write() {
            let msg = hs.write_message(&mut rand::rngs::OsRng)?;
            // One write per message: length and body in one segment.
            let mut frame = Vec::with_capacity(2 + msg.len());
            frame.extend_from_slice(&(msg.len() as u16).to_be_bytes());
            frame.extend_from_slice(&msg);
            io.write_all(&frame).await?;
            io.flush().await?;
        } else {
            let mut len = [0u8; 2];
            io.read_exact(&mut len).await?;
            let len = u16::from_be_bytes(len) as usize;
            let mut msg = vec![0u8; len];
            io.read_exact(&mut msg).await?;
            hs.read_message(&msg, unix_now(), is_revoked)?;
        }
    }
    Ok(())
}

/// Writes one message of an exchange after the handshake: `u16 length ||
/// body`, in the session's frames.
pub(crate) async fn write_message<C>(io: &mut C, body: &[u8]) -> Result<(), PqError>
where
    C: AsyncWrite + Unpin,
{
    let len = u16::try_from(body.len()).map_err(|_| PqError::TooLong(body.len()))?;
    let mut out = Vec::with_capacity(2 + body.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
    io.write_all(&out).await?;
    io.flush().await?;
    Ok(())
}

/// Reads one message written by [`write_message`], of at most `max` bytes.
pub(crate) async fn read_message<C>(io: &mut C, max: usize) -> Result<Vec<u8>, PqError>
where
    C: AsyncRead + Unpin,
{
    let mut len = [0u8; 2];
    io.read_exact(&mut len).await?;
    let len = u16::from_be_bytes(len) as usize;
    if len > max {
        return Err(PqError::TooLong(len));
    }
    let mut body = vec![0u8; len];
    io.read_exact(&mut body).await?;
    Ok(body)
}

/// The identity a handshake presents: fixed, or the node's live
/// credentials, read at each handshake so that a renewal applies to every
/// connection made after it.
#[derive(Clone)]
enum Presenting {
    Fixed(Arc<LocalIdentity>),
    Live(LiveCredentials),
}

impl Presenting {
    fn identity(&self) -> Arc<LocalIdentity> {
        match self {
            Presenting::Fixed(local) => local.clone(),
            Presenting::Live(live) => live.handshake_identity(),
        }
    }
}

/// The security upgrade; clone it into every connection.
#[derive(Clone)]
pub struct PqUpgrade {
    local: Presenting,
    membership: Arc<Membership>,
    /// Set on an admin node that takes enrollments (inbound only).
    enroller: Option<Arc<dyn Enroller>>,
}

impl PqUpgrade {
    pub fn new(local: Arc<LocalIdentity>, membership: Arc<Membership>) -> Self {
        Self {
            local: Presenting::Fixed(local),
            membership,
            enroller: None,
        }
    }

    /// Presents the node's certificate as it stands at each handshake.
    pub fn live(credentials: LiveCredentials, membership: Arc<Membership>) -> Self {
        Self {
            local: Presenting::Live(credentials),
            membership,
            enroller: None,
        }
    }

    /// Also offers [`ENROLL_PROTOCOL`] to inbound connections, served by
    /// `enroller`. Only for a node whose certificate may issue.
    pub fn with_enroller(mut self, enroller: Arc<dyn Enroller>) -> Self {
        if self.local.identity().cert().is_some_and(|c| c.may_issue()) {
            self.enroller = Some(enroller);
        }
        self
    }

    async fn run<C>(self, mut io: C, side: Side) -> Result<(PeerId, PqStream<C>), PqError>
    where
        C: AsyncRead + AsyncWrite + Unpin,
    {
        let local = self.local.identity();
        let mut hs = Handshake::new(side, &local, &mut rand::rngs::OsRng);
        let membership = &self.membership;
        let done = async {
            drive(&mut hs, &mut io, &|node| membership.is_revoked(node)).await?;
            let (session, peer) = hs.finish()?;
            let peer_id = peer_id_of(&peer.node).ok_or(PqError::BadPeerKey)?;
            Ok::<_, PqError>((session, peer, peer_id))
        }
        .await;
        let (session, peer, peer_id) = done.inspect_err(|e| {
            if let Some(reason) = crate::stats::Refusal::of_tcp(e) {
                membership
                    .handshakes()
                    .refused(Security::NoiseHybrid, reason);
            }
        })?;
        self.membership.record_peer(
            peer_id,
            PeerRecord {
                cert: peer.cert,
                security: Security::NoiseHybrid,
            },
        );
        Ok((peer_id, PqStream::new(io, session)))
    }
}

impl UpgradeInfo for PqUpgrade {
    type Info = &'static str;
    type InfoIter =
        std::iter::Chain<std::iter::Once<Self::Info>, std::option::IntoIter<Self::Info>>;

    fn protocol_info(&self) -> Self::InfoIter {
        // A dialer proposes the member protocol first, so a listener that
        // takes both always picks it for a member.
        std::iter::once(PROTOCOL).chain(self.enroller.as_ref().map(|_| ENROLL_PROTOCOL))
    }
}

impl<C> InboundConnectionUpgrade<C> for PqUpgrade
where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Output = (PeerId, PqStream<C>);
    type Error = PqError;
    type Future = BoxFuture<'static, Result<Self::Output, Self::Error>>;

    fn upgrade_inbound(self, socket: C, info: Self::Info) -> Self::Future {
        if info != ENROLL_PROTOCOL {
            return Box::pin(self.run(socket, Side::Responder));
        }
        Box::pin(async move {
            let enroller = self.enroller.clone().ok_or(PqError::NoEnrollments)?;
            let membership = self.membership.clone();
            crate::enroll::serve(
                self.local.identity(),
                enroller,
                move |node| membership.is_revoked(node),
                socket,
            )
            .await?;
            // Never a connection: the enrollee is not a member yet.
            Err(PqError::Enrolled)
        })
    }
}

impl<C> OutboundConnectionUpgrade<C> for PqUpgrade
where
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Output = (PeerId, PqStream<C>);
    type Error = PqError;
    type Future = BoxFuture<'static, Result<Self::Output, Self::Error>>;

    fn upgrade_outbound(self, socket: C, info: Self::Info) -> Self::Future {
        if info == ENROLL_PROTOCOL {
            // A member never dials to enroll; `enroll::enroll` does.
            return Box::pin(async { Err(PqError::NoEnrollments) });
        }
        Box::pin(self.run(socket, Side::Initiator))
    }
}

/// Room for two whole frames, so that one read can complete a frame and
/// start the next.
const READ_BUF_LEN: usize = 2 * (2 + MAX_FRAME_LEN);

/// An encrypted connection: plaintext in, AES-256-GCM frames out.
pub struct PqStream<C> {
    io: C,
    session: Session,
    /// Raw bytes read from `io`, `rstart..rend` not yet parsed.
    rbuf: Box<[u8]>,
    rstart: usize,
    rend: usize,
    /// Decrypted bytes not yet handed to the reader.
    plain: Vec<u8>,
    plain_pos: usize,
    /// Plaintext collected for the next frame.
    wplain: Vec<u8>,
    /// Sealed bytes not yet written to `io`.
    wout: Vec<u8>,
    wout_pos: usize,
}

impl<C> PqStream<C> {
    pub(crate) fn new(io: C, session: Session) -> Self {
        Self {
            io,
            session,
            rbuf: vec![0u8; READ_BUF_LEN].into_boxed_slice(),
            rstart: 0,
            rend: 0,
            plain: Vec::new(),
            plain_pos: 0,
            wplain: Vec::with_capacity(MAX_PLAINTEXT_LEN),
            wout: Vec::with_capacity(2 + MAX_FRAME_LEN),
            wout_pos: 0,
        }
    }

    /// Decrypts the next complete frame in the read buffer, if there is one.
    fn next_frame(&mut self) -> io::Result<bool> {
        let avail = &self.rbuf[self.rstart..self.rend];
        if avail.len() < 2 {
            return Ok(false);
        }
        let len = u16::from_be_bytes([avail[0], avail[1]]) as usize;
        if avail.len() < 2 + len {
            return Ok(false);
        }
        let pt = self
            .session
            .open_frame(&avail[2..2 + len])
            .map_err(session_error)?;
        self.rstart += 2 + len;
        self.plain = pt;
        self.plain_pos = 0;
        Ok(true)
    }
}

fn session_error(e: SessionError) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl<C: AsyncRead + Unpin> AsyncRead for PqStream<C> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            if this.plain_pos < this.plain.len() {
                let n = buf.len().min(this.plain.len() - this.plain_pos);
                buf[..n].copy_from_slice(&this.plain[this.plain_pos..this.plain_pos + n]);
                this.plain_pos += n;
                return Poll::Ready(Ok(n));
            }
            if this.next_frame()? {
                continue;
            }
            // Make room: move the partial frame to the front.
            if this.rstart > 0 {
                this.rbuf.copy_within(this.rstart..this.rend, 0);
                this.rend -= this.rstart;
                this.rstart = 0;
            }
            let n = ready!(Pin::new(&mut this.io).poll_read(cx, &mut this.rbuf[this.rend..]))?;
            if n == 0 {
                return Poll::Ready(if this.rend == 0 {
                    Ok(0)
                } else {
                    Err(io::ErrorKind::UnexpectedEof.into())
                });
            }
            this.rend += n;
        }
    }
}

impl<C: AsyncWrite + Unpin> PqStream<C> {
    /// Writes every sealed byte, then seals and writes the pending
    /// plaintext, until both are empty. Sealed bytes always go out before
    /// newer plaintext is sealed, so frames keep their order.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            while self.wout_pos < self.wout.len() {
                let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.wout[self.wout_pos..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.wout_pos += n;
            }
            if self.wplain.is_empty() {
                return Poll::Ready(Ok(()));
            }
            self.wout.clear();
            self.wout_pos = 0;
            self.session
                .seal_frame(&self.wplain, &mut self.wout)
                .map_err(session_error)?;
            self.wplain.clear();
        }
    }
}

impl<C: AsyncWrite + Unpin> AsyncWrite for PqStream<C> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.wplain.len() == MAX_PLAINTEXT_LEN {
            ready!(this.poll_drain(cx))?;
        }
        let n = buf.len().min(MAX_PLAINTEXT_LEN - this.wplain.len());
        this.wplain.extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        ready!(Pin::new(&mut this.io).poll_flush(cx))?;
        Pin::new(&mut this.io).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::io::Cursor;
    use osmoda_fabric_proto::{FleetRoot, Role};
    use rand::rngs::OsRng;

    /// A socket that takes at most 7 bytes per write and says "not yet"
    /// every other time, to exercise partial writes and wake-ups.
    #[derive(Default)]
    struct Trickle {
        written: Vec<u8>,
        calls: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.calls += 1;
            if self.calls.is_multiple_of(2) {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let n = buf.len().min(7);
            self.written.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    fn sessions() -> (Session, Session) {
        let root = FleetRoot::generate(&mut OsRng);
        let ident = |name: &str| {
            let key = ed25519_dalek::SigningKey::generate(&mut OsRng);
            let cert = root
                .issue(
                    key.verifying_key().to_bytes(),
                    name,
                    Role::Member,
                    0,
                    u64::MAX,
                )
                .unwrap();
            LocalIdentity::new(&key, cert, &mut OsRng).unwrap()
        };
        let (a, b) = (ident("a"), ident("b"));
        let mut i = Handshake::new(Side::Initiator, &a, &mut OsRng);
        let mut r = Handshake::new(Side::Responder, &b, &mut OsRng);
        let no = |_: &[u8; 32]| false;
        r.read_message(&i.write_message(&mut OsRng).unwrap(), 1, &no)
            .unwrap();
        i.read_message(&r.write_message(&mut OsRng).unwrap(), 1, &no)
            .unwrap();
        r.read_message(&i.write_message(&mut OsRng).unwrap(), 1, &no)
            .unwrap();
        (i.finish().unwrap().0, r.finish().unwrap().0)
    }

    #[test]
    fn everything_written_and_flushed_arrives_in_order_through_partial_writes() {
        let (send, recv) = sessions();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut writer = PqStream::new(Trickle::default(), send);
        futures::executor::block_on(async {
            // Mixed write sizes: some fill a frame exactly, some straddle two.
            let mut rest = &data[..];
            for size in [1usize, 65_519, 3, 70_000].iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let n = (*size).min(rest.len());
                writer.write_all(&rest[..n]).await.unwrap();
                rest = &rest[n..];
            }
            writer.flush().await.unwrap();
        });
        let wire = std::mem::take(&mut writer.io.written);
        let mut reader = PqStream::new(Cursor::new(wire), recv);
        let mut got = Vec::new();
        futures::executor::block_on(reader.read_to_end(&mut got)).unwrap();
        assert_eq!(got.len(), data.len());
        assert!(got == data, "bytes differ");
    }

    #[test]
    fn a_tampered_frame_is_an_error() {
        let (send, recv) = sessions();
        let mut writer = PqStream::new(Trickle::default(), send);
        futures::executor::block_on(async {
            writer.write_all(b"hello").await.unwrap();
            writer.flush().await.unwrap();
        });
        let mut wire = std::mem::take(&mut writer.io.written);
        let last = wire.len() - 1;
        wire[last] ^= 1;
        let mut reader = PqStream::new(Cursor::new(wire), recv);
        let mut got = Vec::new();
        let err = futures::executor::block_on(reader.read_to_end(&mut got)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
