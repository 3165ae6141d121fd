//! The simulated byte stream: one connection is two `Pipe`s, one per
//! direction, each crossing one directed `Link`.
//!
//! No task and no channel per connection: the writer computes each chunk's
//! delivery time (see `link.rs`) and appends it to the pipe; the reader,
//! when polled, hands out the chunks that are due and otherwise arms one
//! reusable tokio timer for the head chunk. The swarm's connection task
//! polls the reader anyway, so delivery costs one timer wake-up per batch
//! of due chunks.
//!
//! Semantics a caller can rely on:
//! - Bytes arrive in order, never earlier than `latency` after they were
//!   written.
//! - At most `SimConfig::buffer_bytes` per direction are written and not yet
//!   read (in flight plus unread, each chunk counting `CHUNK_OVERHEAD`
//!   bytes more); beyond that `poll_write` is pending (backpressure), like a
//!   full TCP send buffer.
//! - While the link is down, nothing is delivered, the FIN included; data
//!   stays buffered (up to the bound, then the writer blocks) and is
//!   delivered once the link is up again. No error is raised: like a cut
//!   cable, only timeouts above (libp2p's ping) notice.
//! - `poll_close` and dropping send a FIN: the peer reads EOF after the
//!   data written before it. Writes towards a peer that dropped its stream
//!   are accepted and discarded (the remote learns through the FIN, after
//!   the link's delay, never instantly).
//! - A host going down resets its connections at once: reads and writes on
//!   both ends fail with `ConnectionReset`.

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::net::SocketAddrV4;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use futures::io::{AsyncRead, AsyncWrite};
use futures::Future;
use tokio::time::{Instant, Sleep};

use crate::link::Link;
use crate::stats::HostCounters;
use crate::sync::lock;

/// Largest chunk one `poll_write` accepts; bigger writes are split by the
/// caller's retry, which keeps a single write from holding the whole buffer.
pub const MAX_CHUNK: usize = 64 * 1024;

/// What a chunk costs beyond its bytes (its `Vec`, its queue slot, the
/// allocator's header), charged against the buffer bound so that a writer
/// of one-byte chunks cannot hold 1 MiB of bytes in 70 MiB of memory.
pub const CHUNK_OVERHEAD: usize = 64;

/// One direction of a connection.
pub(crate) struct Pipe {
    link: Arc<Link>,
    capacity: usize,
    state: Mutex<PipeState>,
}

struct PipeState {
    chunks: VecDeque<Chunk>,
    /// Bytes written and not yet read, plus `CHUNK_OVERHEAD` per queued
    /// chunk; at most `capacity`.
    buffered: usize,
    /// Delivery time of the last chunk: later chunks never overtake it.
    last_deliver: Instant,
    fin_at: Option<Instant>,
    reset: bool,
    reader_gone: bool,
    reader_waker: Option<Waker>,
    writer_waker: Option<Waker>,
}

struct Chunk {
    data: Vec<u8>,
    /// Bytes of `data` already read.
    pos: usize,
    at: Instant,
}

impl Pipe {
    pub(crate) fn new(link: Arc<Link>, capacity: usize) -> Arc<Self> {
        let pipe = Arc::new(Self {
            link,
            capacity: capacity.max(CHUNK_OVERHEAD + 1),
            state: Mutex::new(PipeState {
                chunks: VecDeque::new(),
                buffered: 0,
                last_deliver: Instant::now(),
                fin_at: None,
                reset: false,
                reader_gone: false,
                reader_waker: None,
                writer_waker: None,
            }),
        });
        pipe.link.register(&pipe);
        pipe
    }

    /// Wakes both ends so they re-check the link (it came up, or a stall
    /// changed).
    pub(crate) fn wake_all(&self) {
        let (r, w) = {
            let mut st = lock(&self.state);
            (st.reader_waker.take(), st.writer_waker.take())
        };
        wake(r);
        wake(w);
    }

    /// The connection is gone (its host went down): drop the data, fail both
    /// ends.
    pub(crate) fn reset(&self) {
        let (r, w) = {
            let mut st = lock(&self.state);
            st.reset = true;
            st.chunks = VecDeque::new();
            st.buffered = 0;
            (st.reader_waker.take(), st.writer_waker.take())
        };
        wake(r);
        wake(w);
    }

    fn send_fin(&self, now: Instant) {
        let waker = {
            let mut st = lock(&self.state);
            if st.fin_at.is_some() || st.reset {
                return;
            }
            st.fin_at = Some(st.last_deliver.max(self.link.fin_arrival(now)));
            if st.chunks.is_empty() {
                st.reader_waker.take()
            } else {
                None
            }
        };
        wake(waker);
    }

    fn reader_dropped(&self) {
        let waker = {
            let mut st = lock(&self.state);
            st.reader_gone = true;
            st.chunks = VecDeque::new();
            st.buffered = 0;
            st.writer_waker.take()
        };
        wake(waker);
    }
}

fn wake(w: Option<Waker>) {
    if let Some(w) = w {
        w.wake();
    }
}

/// Stores the task's waker unless the same one is already stored (polls
/// repeat often; cloning a waker is an atomic increment at least).
fn set_waker(slot: &mut Option<Waker>, cx: &Context<'_>) {
    if !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
        *slot = Some(cx.waker().clone());
    }
}

/// One end of a simulated connection: what `SimTransport` yields, a byte
/// stream like a TCP socket. Must be polled inside a tokio runtime (it uses
/// tokio timers); outside one, reads fail with an `Other` error.
pub struct SimStream {
    tx: Arc<Pipe>,
    rx: Arc<Pipe>,
    counters: Arc<HostCounters>,
    /// Timer for the head chunk, created on the first wait and reused.
    sleep: Option<Pin<Box<Sleep>>>,
    write_closed: bool,
    local_addr: SocketAddrV4,
    remote_addr: SocketAddrV4,
}

impl SimStream {
    pub(crate) fn new(
        tx: Arc<Pipe>,
        rx: Arc<Pipe>,
        counters: Arc<HostCounters>,
        local_addr: SocketAddrV4,
        remote_addr: SocketAddrV4,
    ) -> Self {
        Self {
            tx,
            rx,
            counters,
            sleep: None,
            write_closed: false,
            local_addr,
            remote_addr,
        }
    }

    pub fn local_addr(&self) -> SocketAddrV4 {
        self.local_addr
    }

    pub fn remote_addr(&self) -> SocketAddrV4 {
        self.remote_addr
    }

    /// Arms the timer for `due` and polls it; `Ready` means the time came.
    fn poll_timer(&mut self, due: Instant, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let sleep = match &mut self.sleep {
            Some(sleep) => {
                if sleep.deadline() != due {
                    sleep.as_mut().reset(due);
                }
                sleep
            }
            None => {
                if tokio::runtime::Handle::try_current().is_err() {
                    return Poll::Ready(Err(io::Error::other(
                        "a simulated stream must be polled inside a tokio runtime",
                    )));
                }
                self.sleep.insert(Box::pin(tokio::time::sleep_until(due)))
            }
        };
        sleep.as_mut().poll(cx).map(Ok)
    }
}

/// What a read found while holding the pipe lock.
enum ReadStep {
    Data {
        bytes: usize,
        chunks: usize,
        writer: Option<Waker>,
    },
    Eof,
    Wait(Instant),
}

impl AsyncRead for SimStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        loop {
            let now = Instant::now();
            let step = {
                let mut st = lock(&this.rx.state);
                if st.reset {
                    return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
                }
                // Checked under the pipe lock: a heal sets `up` before it
                // takes this lock to wake us, so no wake-up is lost.
                if !this.rx.link.is_up() {
                    set_waker(&mut st.reader_waker, cx);
                    return Poll::Pending;
                }
                let head = match (st.chunks.front(), st.fin_at) {
                    (Some(chunk), _) => chunk.at,
                    (None, Some(fin)) => fin,
                    (None, None) => {
                        set_waker(&mut st.reader_waker, cx);
                        return Poll::Pending;
                    }
                };
                let due = match this.rx.link.stalled_until() {
                    Some(stall) => head.max(stall),
                    None => head,
                };
                if due > now {
                    // Also woken by a reset or a changed stall.
                    set_waker(&mut st.reader_waker, cx);
                    ReadStep::Wait(due)
                } else if st.chunks.is_empty() {
                    ReadStep::Eof
                } else {
                    let (bytes, chunks) = read_due(&mut st, now, buf);
                    ReadStep::Data {
                        bytes,
                        chunks,
                        writer: st.writer_waker.take(),
                    }
                }
            };
            match step {
                ReadStep::Eof => return Poll::Ready(Ok(0)),
                ReadStep::Data {
                    bytes,
                    chunks,
                    writer,
                } => {
                    wake(writer);
                    HostCounters::add(&this.counters.bytes_received, bytes as u64);
                    HostCounters::add(&this.counters.chunks_received, chunks as u64);
                    return Poll::Ready(Ok(bytes));
                }
                ReadStep::Wait(due) => match this.poll_timer(due, cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Ready(Ok(())) => continue,
                },
            }
        }
    }
}

/// Copies the chunks due at `now` into `buf`; returns (bytes, chunks
/// finished).
fn read_due(st: &mut PipeState, now: Instant, buf: &mut [u8]) -> (usize, usize) {
    let mut n = 0;
    let mut finished = 0;
    while n < buf.len() {
        let Some(chunk) = st.chunks.front_mut() else {
            break;
        };
        if chunk.at > now {
            break;
        }
        let rest = &chunk.data[chunk.pos..];
        let take = rest.len().min(buf.len() - n);
        buf[n..n + take].copy_from_slice(&rest[..take]);
        chunk.pos += take;
        n += take;
        if chunk.pos == chunk.data.len() {
            st.chunks.pop_front();
            finished += 1;
        }
    }
    st.buffered -= n + finished * CHUNK_OVERHEAD;
    (n, finished)
}

impl AsyncWrite for SimStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if this.write_closed {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let now = Instant::now();
        let (n, reader) = {
            let mut st = lock(&this.tx.state);
            if st.reset {
                return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
            }
            if st.reader_gone {
                // Discarded, as the peer's kernel would after its close.
                (buf.len().min(MAX_CHUNK), None)
            } else {
                let space = this
                    .tx
                    .capacity
                    .saturating_sub(st.buffered + CHUNK_OVERHEAD);
                if space == 0 {
                    set_waker(&mut st.writer_waker, cx);
                    return Poll::Pending;
                }
                let n = buf.len().min(space).min(MAX_CHUNK);
                // Lock order: pipe, then link state (never the reverse).
                let at = this.tx.link.schedule(now, n).max(st.last_deliver);
                st.last_deliver = at;
                let was_empty = st.chunks.is_empty();
                st.chunks.push_back(Chunk {
                    data: buf[..n].to_vec(),
                    pos: 0,
                    at,
                });
                st.buffered += n + CHUNK_OVERHEAD;
                // A reader with a non-empty queue waits on the head's timer;
                // this chunk is due no earlier, so only an idle reader needs
                // a wake-up.
                (
                    n,
                    if was_empty {
                        st.reader_waker.take()
                    } else {
                        None
                    },
                )
            }
        };
        wake(reader);
        HostCounters::add(&this.counters.bytes_sent, n as u64);
        HostCounters::add(&this.counters.chunks_sent, 1);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Written data is already on its way; nothing is held back.
        if lock(&self.tx.state).reset {
            return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
        }
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.write_closed {
            this.write_closed = true;
            this.tx.send_fin(Instant::now());
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for SimStream {
    fn drop(&mut self) {
        if !self.write_closed {
            self.tx.send_fin(Instant::now());
        }
        self.rx.reader_dropped();
        HostCounters::add(&self.counters.connections_closed, 1);
    }
}

impl fmt::Debug for SimStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimStream")
            .field("local", &self.local_addr)
            .field("remote", &self.remote_addr)
            .finish_non_exhaustive()
    }
}
