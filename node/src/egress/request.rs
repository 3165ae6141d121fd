//! The one request head a proxy connection carries: read with a bound on
//! its size and time, parsed with `httparse`, and turned into where to
//! connect and, for plain HTTP, the head to send the origin.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};

use super::policy::Refusal;

/// Most headers in a request head; more is a bad request.
const MAX_HEADERS: usize = 64;
/// Longest host accepted (DNS's limit, plus brackets for IPv6).
const MAX_HOST_LEN: usize = 255;

/// Headers that concern the hop to the proxy, not the origin: dropped
/// before forwarding (`Connection: close` is written instead).
const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "host",
];

/// What the client asked for.
#[derive(Debug)]
pub struct Request {
    pub host: String,
    pub port: u16,
    pub kind: Kind,
    /// Bytes the client sent after the head (a body, or a TLS hello sent
    /// early): they go upstream first.
    pub rest: Vec<u8>,
}

#[derive(Debug)]
pub enum Kind {
    /// `CONNECT host:port`: a tunnel.
    Connect,
    /// A plain HTTP request with an absolute URI: `head` is the request in
    /// origin form, `body` how many bytes of the client's stream follow it
    /// (None: until the client closes, for a chunked body).
    Forward {
        method: String,
        head: Vec<u8>,
        body: Option<u64>,
    },
}

impl Request {
    /// How the audit entry names the protocol.
    pub fn via(&self) -> &str {
        match &self.kind {
            Kind::Connect => "CONNECT",
            Kind::Forward { method, .. } => method,
        }
    }
}

/// Reads until the end of the head: at most `max` bytes, within `within`.
/// Returns the bytes read and where the head ends in them.
pub async fn read_head<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
    within: Duration,
) -> Result<(Vec<u8>, usize), Refusal> {
    let read = async {
        let mut buf = Vec::with_capacity(4096.min(max + 1));
        let mut chunk = [0u8; 4096];
        loop {
            let n = r
                .read(&mut chunk)
                .await
                .map_err(|_| Refusal::BadRequest("the connection failed before a request"))?;
            if n == 0 {
                return Err(Refusal::BadRequest(
                    "the connection closed before a request",
                ));
            }
            // Only the bytes a head may still take are kept.
            let room = (max + 1).saturating_sub(buf.len());
            buf.extend_from_slice(&chunk[..n.min(room)]);
            let scan_from = buf.len().saturating_sub(n + 3);
            if let Some(end) = find_end(&buf[scan_from..]) {
                let end = scan_from + end;
                if end > max {
                    return Err(Refusal::BadRequest(
                        "the request head is over the size limit",
                    ));
                }
                // Keep what followed the head, bounded like the head.
                if n > room {
                    buf.extend_from_slice(&chunk[room..n]);
                }
                return Ok((buf, end));
            }
            if buf.len() > max {
                return Err(Refusal::BadRequest(
                    "the request head is over the size limit",
                ));
            }
        }
    };
    tokio::time::timeout(within, read)
        .await
        .map_err(|_| Refusal::HeadTimeout(within.as_secs()))?
}

/// Where `\r\n\r\n` ends in `buf`.
fn find_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Parses the head in `buf[..end]`; what follows it is the request's `rest`.
pub fn parse(buf: &[u8], end: usize) -> Result<Request, Refusal> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(&buf[..end]) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(Refusal::BadRequest("incomplete head")),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Refusal::BadRequest("more than 64 headers"))
        }
        Err(_) => return Err(Refusal::BadRequest("not an HTTP/1 request head")),
    }
    let (Some(method), Some(target)) = (req.method, req.path) else {
        return Err(Refusal::BadRequest("not an HTTP/1 request head"));
    };
    let rest = buf.get(end..).unwrap_or_default().to_vec();
    if method.eq_ignore_ascii_case("CONNECT") {
        let (host, port) = authority(target, None)?;
        return Ok(Request {
            host,
            port,
            kind: Kind::Connect,
            rest,
        });
    }
    let lower = target
        .get(..8)
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let after = if lower.starts_with("http://") {
        &target[7..]
    } else if lower.starts_with("https://") {
        return Err(Refusal::BadRequest(
            "https URIs go through CONNECT (set HTTPS_PROXY)",
        ));
    } else {
        return Err(Refusal::BadRequest(
            "a proxy request needs CONNECT or an absolute http:// URI",
        ));
    };
    let split = after.find(['/', '?']).unwrap_or(after.len());
    let (auth, path) = after.split_at(split);
    let (host, port) = authority(auth, Some(80))?;
    let mut head = Vec::with_capacity(end + 64);
    head.extend_from_slice(method.as_bytes());
    head.push(b' ');
    if !path.starts_with('/') {
        head.push(b'/');
    }
    head.extend_from_slice(path.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    head.extend_from_slice(auth.as_bytes());
    head.extend_from_slice(b"\r\n");
    let mut length = None;
    let mut chunked = false;
    for h in req.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        if name == "content-length" {
            let value = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or(Refusal::BadRequest("Content-Length is not a number"))?;
            if length.is_some_and(|l| l != value) {
                return Err(Refusal::BadRequest("two different Content-Lengths"));
            }
            length = Some(value);
        }
        if name == "transfer-encoding" {
            chunked = true;
        }
        if name.starts_with("proxy-") || HOP_BY_HOP.contains(&name.as_str()) {
            continue;
        }
        head.extend_from_slice(h.name.as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(h.value);
        head.extend_from_slice(b"\r\n");
    }
    if chunked && length.is_some() {
        // The classic request-smuggling pair: refused rather than guessed.
        return Err(Refusal::BadRequest(
            "both Content-Length and Transfer-Encoding",
        ));
    }
    head.extend_from_slice(b"Connection: close\r\n\r\n");
    let body = if chunked {
        None
    } else {
        Some(length.unwrap_or(0))
    };
    let mut rest = rest;
    if let Some(len) = body {
        // Bytes past the body would be a second request: one per connection.
        rest.truncate(usize::try_from(len).unwrap_or(usize::MAX));
    }
    Ok(Request {
        host,
        port,
        kind: Kind::Forward {
            method: method.to_owned(),
            head,
            body,
        },
        rest,
    })
}

/// `host:port` or `[v6]:port` (port optional when `default` is given).
fn authority(auth: &str, default: Option<u16>) -> Result<(String, u16), Refusal> {
    const BAD: Refusal = Refusal::BadRequest("the target is not host:port");
    if auth.contains('@') {
        return Err(Refusal::BadRequest(
            "credentials in the URI are not accepted",
        ));
    }
    let (host, port) = if let Some(inner) = auth.strip_prefix('[') {
        let (ip, after) = inner.split_once(']').ok_or(BAD)?;
        if ip.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(BAD);
        }
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(BAD),
        };
        (format!("[{ip}]"), port)
    } else {
        match auth.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (auth.to_owned(), None),
        }
    };
    let port = match (port, default) {
        (Some(p), _) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or(BAD)?,
        (None, Some(d)) => d,
        (None, None) => return Err(BAD),
    };
    let plain = host.starts_with('[')
        || host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    if host.is_empty() || host.len() > MAX_HOST_LEN || !plain {
        return Err(BAD);
    }
    Ok((host.to_ascii_lowercase(), port))
}
