//! A verified QUIC connection as a libp2p stream muxer.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use futures::future::BoxFuture;
use futures::{AsyncRead, AsyncWrite, FutureExt};
use libp2p::core::muxing::{StreamMuxer, StreamMuxerEvent};
use quinn::VarInt;

use super::QuicError;

type StreamPair = (quinn::SendStream, quinn::RecvStream);

/// An established, verified QUIC connection. Each libp2p substream is one
/// QUIC bidirectional stream; QUIC bounds their number and buffers.
pub struct QuicMuxer {
    connection: quinn::Connection,
    /// Pending `accept_bi`, kept across polls so no stream is lost.
    inbound: Option<BoxFuture<'static, Result<StreamPair, quinn::ConnectionError>>>,
    /// Pending `open_bi`, which waits while the peer's stream limit is reached.
    outbound: Option<BoxFuture<'static, Result<StreamPair, quinn::ConnectionError>>>,
    /// Resolves when the connection ends for any reason, so that `poll`
    /// reports a dead connection even when nobody polls for streams.
    closed: BoxFuture<'static, quinn::ConnectionError>,
    /// Our own graceful close, once started.
    closing: Option<BoxFuture<'static, quinn::ConnectionError>>,
}

impl QuicMuxer {
    pub(crate) fn new(connection: quinn::Connection) -> Self {
        let closed = {
            let connection = connection.clone();
            async move { connection.closed().await }.boxed()
        };
        Self {
            connection,
            inbound: None,
            outbound: None,
            closed,
            closing: None,
        }
    }

    /// The peer's current UDP address.
    pub fn remote_address(&self) -> std::net::SocketAddr {
        self.connection.remote_address()
    }
}

impl StreamMuxer for QuicMuxer {
    type Substream = QuicStream;
    type Error = QuicError;

    fn poll_inbound(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        let this = self.get_mut();
        let inbound = this.inbound.get_or_insert_with(|| {
            let connection = this.connection.clone();
            async move { connection.accept_bi().await }.boxed()
        });
        let result = ready!(inbound.poll_unpin(cx));
        this.inbound = None;
        let (send, recv) = result?;
        Poll::Ready(Ok(QuicStream::new(send, recv)))
    }

    fn poll_outbound(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Self::Substream, Self::Error>> {
        let this = self.get_mut();
        let outbound = this.outbound.get_or_insert_with(|| {
            let connection = this.connection.clone();
            async move { connection.open_bi().await }.boxed()
        });
        let result = ready!(outbound.poll_unpin(cx));
        this.outbound = None;
        let (send, recv) = result?;
        Poll::Ready(Ok(QuicStream::new(send, recv)))
    }

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<StreamMuxerEvent, Self::Error>> {
        // Migration is disabled on the server side, so there are no address
        // changes to report; the only event is the connection's end.
        let error = ready!(self.get_mut().closed.poll_unpin(cx));
        Poll::Ready(Err(QuicError::Connection(error)))
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let this = self.get_mut();
        let closing = this.closing.get_or_insert_with(|| {
            this.connection.close(VarInt::from_u32(0), b"");
            let connection = this.connection.clone();
            async move { connection.closed().await }.boxed()
        });
        match ready!(closing.poll_unpin(cx)) {
            // What `close` above leads to.
            quinn::ConnectionError::LocallyClosed => Poll::Ready(Ok(())),
            error => Poll::Ready(Err(QuicError::Connection(error))),
        }
    }
}

/// One QUIC bidirectional stream as a libp2p substream.
pub struct QuicStream {
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    /// Outcome of the first `poll_close`: finishing a stream twice is an
    /// error in quinn, while `AsyncWrite::poll_close` may be called again.
    close_result: Option<Result<(), io::ErrorKind>>,
}

impl QuicStream {
    fn new(send: quinn::SendStream, recv: quinn::RecvStream) -> Self {
        Self {
            send,
            recv,
            close_result: None,
        }
    }
}

impl AsyncRead for QuicStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(Err(_)) = self.close_result {
            // Closing failed, so the connection is gone: report end of stream.
            return Poll::Ready(Ok(0));
        }
        // The trait method, not quinn's inherent one of the same name.
        AsyncRead::poll_read(Pin::new(&mut self.recv), cx, buf)
    }
}

impl AsyncWrite for QuicStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        AsyncWrite::poll_write(Pin::new(&mut self.send), cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        AsyncWrite::poll_flush(Pin::new(&mut self.send), cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(result) = self.close_result {
            return Poll::Ready(result.map_err(io::Error::from));
        }
        let result = ready!(AsyncWrite::poll_close(Pin::new(&mut self.send), cx));
        self.close_result = Some(result.as_ref().map(|_| ()).map_err(io::Error::kind));
        Poll::Ready(result)
    }
}
