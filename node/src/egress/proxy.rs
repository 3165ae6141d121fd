//! One agent connection through the proxy, from its request head to its
//! audit entry: refuse with a status, or connect to the checked address and
//! move bytes both ways under the agent's bandwidth bucket.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use osmoda_crdt_state::{Actor, Outcome};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::policy::{self, Refusal};
use super::request::{self, Kind, Request};
use super::AgentCtx;

/// Buffer per direction of a relayed connection.
const BUF: usize = 64 * 1024;
/// Longest target text kept for the audit entry.
const MAX_TARGET: usize = 300;
/// How long a refused client gets to read its answer before the close.
const LINGER: Duration = Duration::from_millis(500);
/// Most bytes read and dropped while it does (closing a socket with unread
/// bytes resets it, and the client may lose the answer).
const LINGER_BYTES: usize = 256 * 1024;

/// How often an open connection looks at the lockdown flag.
const LOCK_CHECK: Duration = Duration::from_secs(1);

/// Bytes moved so far, readable by the audit however the connection ends.
#[derive(Default)]
struct Counters {
    up: AtomicU64,
    down: AtomicU64,
    /// Milliseconds since the start at the last byte moved (idle check).
    last: AtomicU64,
}

/// The audit entry of one connection, written exactly once: by `finish`,
/// or on drop when the agent's proxy is aborted mid-connection.
struct Record {
    ctx: Arc<AgentCtx>,
    started: Instant,
    counters: Arc<Counters>,
    target: String,
    via: String,
    addr: Option<SocketAddr>,
    done: bool,
}

impl Record {
    fn text(&self, status: &str, note: &str) -> String {
        let to = self.addr.map(|a| format!(" to {a}")).unwrap_or_default();
        format!(
            "{status} {}{to}: up {} B, down {} B, {} ms; {note}",
            self.via,
            self.counters.up.load(Ordering::Relaxed),
            self.counters.down.load(Ordering::Relaxed),
            self.started.elapsed().as_millis(),
        )
    }

    async fn finish(mut self, outcome: Outcome, status: u16, note: &str) {
        self.done = true;
        let details = self.text(&status.to_string(), note);
        write_audit(&self.ctx, &self.target, outcome, &details).await;
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // Aborted (the agent stopped): the entry is written by a task of its
        // own, since this one will not be polled again.
        const STOPPED: &str = "the agent's proxy stopped";
        let (outcome, details) = if self.addr.is_some() {
            (Outcome::Ok, self.text("200", &format!("ended: {STOPPED}")))
        } else {
            (Outcome::Failed(STOPPED.into()), self.text("-", STOPPED))
        };
        let (ctx, target) = (self.ctx.clone(), std::mem::take(&mut self.target));
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { write_audit(&ctx, &target, outcome, &details).await });
        }
    }
}

async fn write_audit(ctx: &AgentCtx, target: &str, outcome: Outcome, details: &str) {
    let actor = Actor::Agent(ctx.agent.clone());
    if let Err(e) = ctx
        .egress
        .audit
        .record(actor, "egress.connect", target, outcome, details)
        .await
    {
        tracing::warn!(agent = %ctx.agent, error = %e, "cannot audit an egress connection");
    }
}

/// Printable, bounded text for the audit entry's target.
fn printable(text: &str) -> String {
    text.chars()
        .take(MAX_TARGET)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect()
}

/// Serves one accepted connection; `admitted` is false when the agent
/// already holds its limit of connections (answered 429).
pub(super) async fn handle(ctx: Arc<AgentCtx>, mut client: TcpStream, admitted: bool) {
    let counters = Arc::new(Counters::default());
    let mut record = Record {
        ctx: ctx.clone(),
        started: Instant::now(),
        counters: counters.clone(),
        target: "-".into(),
        via: "-".into(),
        addr: None,
        done: false,
    };
    match proxy(&ctx, &mut client, admitted, &mut record).await {
        Ok(end) => record.finish(Outcome::Ok, 200, end).await,
        Err(refusal) => {
            let (status, _) = refusal.status();
            answer(&mut client, &refusal).await;
            let reason = refusal.to_string();
            let outcome = if refusal.is_policy() {
                Outcome::Denied
            } else {
                Outcome::Failed(reason.clone())
            };
            record.finish(outcome, status, &reason).await;
        }
    }
}

/// The connection's life up to the end of its relay; a refusal is
/// answered by the caller.
async fn proxy(
    ctx: &AgentCtx,
    client: &mut TcpStream,
    admitted: bool,
    record: &mut Record,
) -> Result<&'static str, Refusal> {
    let limits = &ctx.egress.limits;
    let (buf, end) = request::read_head(client, limits.max_head, limits.head_timeout).await?;
    let req = request::parse(&buf, end)?;
    drop(buf);
    record.target = printable(&format!("{}:{}", req.host, req.port));
    record.via = printable(req.via());
    if (ctx.egress.locked)() {
        return Err(Refusal::LockedDown);
    }
    if !admitted {
        return Err(Refusal::TooMany(limits.max_connections));
    }
    let matched = {
        let allow = ctx.allow.read().unwrap_or_else(|e| e.into_inner());
        policy::matching(&allow, &req.host, req.port)
    };
    if matched.is_empty() {
        return Err(Refusal::NotAllowed(record.target.clone()));
    }
    let deadline = Instant::now() + limits.connect_timeout;
    let own = ctx.egress.own_addresses();
    let addrs = policy::resolve_checked(
        &req.host,
        req.port,
        &matched,
        &own,
        limits.connect_timeout,
        ctx.egress.pinned(&req.host),
    )
    .await?;
    let (mut upstream, addr) = connect(&addrs, deadline, limits.connect_timeout).await?;
    record.addr = Some(addr);
    let _ = upstream.set_nodelay(true);
    let _ = client.set_nodelay(true);
    Ok(relay(ctx, client, &mut upstream, req, &record.counters).await)
}

/// Tries the checked addresses in order until one answers, all within
/// one connect timeout.
async fn connect(
    addrs: &[SocketAddr],
    deadline: Instant,
    timeout: Duration,
) -> Result<(TcpStream, SocketAddr), Refusal> {
    let mut last = String::from("no address");
    for &addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, TcpStream::connect(addr)).await {
            Err(_) => return Err(Refusal::Timeout(timeout.as_secs())),
            Ok(Ok(stream)) => return Ok((stream, addr)),
            Ok(Err(e)) => last = format!("{addr}: {e}"),
        }
    }
    Err(Refusal::Unreachable(last))
}

/// Answers a refusal: status, a one-line text body, close. The client is
/// given a moment to read it.
async fn answer(client: &mut TcpStream, refusal: &Refusal) {
    let (status, phrase) = refusal.status();
    let body = format!("osmoda egress: {refusal}\n");
    let head = format!(
        "HTTP/1.1 {status} {phrase}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let write = async {
        client.write_all(head.as_bytes()).await?;
        client.write_all(body.as_bytes()).await?;
        client.shutdown().await
    };
    if tokio::time::timeout(LINGER, write).await.is_err() {
        return;
    }
    let drain = async {
        let mut sink = [0u8; 4096];
        let mut left = LINGER_BYTES;
        while left > 0 {
            match client.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// Moves bytes both ways until the exchange ends; returns how it ended.
async fn relay(
    ctx: &AgentCtx,
    client: &mut TcpStream,
    upstream: &mut TcpStream,
    req: Request,
    counters: &Arc<Counters>,
) -> &'static str {
    let start = Instant::now();
    let (tunnel, up_limit) = match &req.kind {
        Kind::Connect => {
            // Best effort: a client gone already shows up in the relay.
            let _ = client
                .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .await;
            (true, None)
        }
        Kind::Forward { head, body, .. } => {
            ctx.bucket.take(head.len()).await;
            if upstream.write_all(head).await.is_err() {
                return "ended: upstream closed";
            }
            counters.up.fetch_add(head.len() as u64, Ordering::Relaxed);
            (false, body.map(|b| b.saturating_sub(req.rest.len() as u64)))
        }
    };
    if !req.rest.is_empty() {
        ctx.bucket.take(req.rest.len()).await;
        if upstream.write_all(&req.rest).await.is_err() {
            return "ended: upstream closed";
        }
        counters
            .up
            .fetch_add(req.rest.len() as u64, Ordering::Relaxed);
    }
    let idle = ctx.egress.limits.idle_timeout;
    let (cr, cw) = client.split();
    let (ur, uw) = upstream.split();
    let c = counters.as_ref();
    let up = pump(cr, uw, up_limit, &ctx.bucket, &c.up, c, start, idle);
    let down = pump(ur, cw, None, &ctx.bucket, &c.down, c, start, idle);
    tokio::pin!(up, down);
    let (mut up_done, mut down_done) = (false, false);
    // A lockdown ends open connections too, not only new ones, even before
    // the node gets to stopping the agent.
    let mut lock_check = tokio::time::interval(LOCK_CHECK);
    loop {
        tokio::select! {
            _ = lock_check.tick() => {
                if (ctx.egress.locked)() {
                    return "ended: node locked down";
                }
            }
            r = &mut up, if !up_done => {
                up_done = true;
                if let Err(Ended(why)) = r {
                    return why;
                }
            }
            r = &mut down, if !down_done => {
                down_done = true;
                if let Err(Ended(why)) = r {
                    return why;
                }
                // A plain request is over when the origin's answer is: the
                // client may keep its side open, waiting for the close.
                if !tunnel {
                    return "ended: closed";
                }
            }
        }
        if up_done && down_done {
            return "ended: closed";
        }
    }
}

/// How a relay direction ended early: the entry's note (the connection
/// itself was made, so its outcome stays ok).
#[derive(Debug)]
struct Ended(&'static str);

/// One direction: read, pay the bucket, write, count. Ends on EOF (passed
/// on as a half close), on `limit` bytes, or after `idle` without a byte
/// moved in either direction.
#[allow(clippy::too_many_arguments)]
async fn pump<R, W>(
    mut r: R,
    mut w: W,
    limit: Option<u64>,
    bucket: &super::Bucket,
    moved: &AtomicU64,
    counters: &Counters,
    start: Instant,
    idle: Duration,
) -> Result<(), Ended>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; BUF];
    let mut left = limit;
    let idle_ms = idle.as_millis() as u64;
    loop {
        let want = match left {
            Some(0) => return Ok(()),
            Some(l) => BUF.min(usize::try_from(l).unwrap_or(BUF)),
            None => BUF,
        };
        let n = match tokio::time::timeout(idle, r.read(&mut buf[..want])).await {
            Err(_) => {
                let now = start.elapsed().as_millis() as u64;
                if now.saturating_sub(counters.last.load(Ordering::Relaxed)) >= idle_ms {
                    return Err(Ended("ended: idle timeout"));
                }
                continue;
            }
            Ok(Err(_)) => return Err(Ended("ended: connection reset")),
            Ok(Ok(0)) => {
                let _ = w.shutdown().await;
                return Ok(());
            }
            Ok(Ok(n)) => n,
        };
        bucket.take(n).await;
        match tokio::time::timeout(idle, w.write_all(&buf[..n])).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(Ended("ended: connection reset")),
            Err(_) => return Err(Ended("ended: idle timeout")),
        }
        moved.fetch_add(n as u64, Ordering::Relaxed);
        counters
            .last
            .store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
        if let Some(l) = left.as_mut() {
            *l = l.saturating_sub(n as u64);
        }
    }
}
