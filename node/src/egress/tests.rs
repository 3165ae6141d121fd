//! The proxy against real sockets on 127.0.0.1 only: a local origin on
//! two ports, a raw client, curl and Python when they are installed.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use osmoda_agentd::AllowEntry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::{canonical, forbidden, Egress, EgressLimits};
use crate::api::AuditEntryView;
use crate::state::audit_log::{read_entries, AuditLog};

/// The proxy's overhead figures, kept apart from the checks.
mod measure;

struct Fixture {
    egress: Arc<Egress>,
    audit: Arc<AuditLog>,
    locked: Arc<AtomicBool>,
    _dir: tempfile::TempDir,
}

fn fixture(limits: EgressLimits) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = osmoda_store::Store::open(dir.path().join("state.redb")).unwrap();
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let audit = Arc::new(AuditLog::open(&store, key).unwrap());
    let locked = Arc::new(AtomicBool::new(false));
    let flag = locked.clone();
    let egress = Arc::new(Egress::new(
        audit.clone(),
        Arc::new(move || flag.load(Ordering::SeqCst)),
        limits,
    ));
    Fixture {
        egress,
        audit,
        locked,
        _dir: dir,
    }
}

type Allow = Arc<RwLock<Vec<AllowEntry>>>;

fn entries(list: &[&str]) -> Vec<AllowEntry> {
    list.iter().map(|e| e.parse().unwrap()).collect()
}

async fn start(f: &Fixture, list: &[&str]) -> (u16, Allow, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let allow = Arc::new(RwLock::new(entries(list)));
    let handle = f.egress.serve("tester".into(), allow.clone(), listener);
    (port, allow, handle)
}

/// What the origin answers to `path`: N bytes for `/bytes/N`, else a
/// greeting naming its port and the path.
fn response_head_and_body(port: u16, path: &str) -> (Vec<u8>, u64) {
    let len = match path.strip_prefix("/bytes/") {
        Some(n) => n.parse().unwrap(),
        None => format!("hello from {port} {path}").len() as u64,
    };
    let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n");
    (head.into_bytes(), len)
}

fn response(port: u16, path: &str) -> Vec<u8> {
    let (mut head, _) = response_head_and_body(port, path);
    head.extend_from_slice(format!("hello from {port} {path}").as_bytes());
    head
}

/// A local HTTP origin; returns its port.
async fn origin() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(serve_origin(stream, port));
        }
    });
    port
}

async fn serve_origin(mut s: TcpStream, port: u16) {
    let _ = s.set_nodelay(true);
    let mut head = Vec::new();
    let mut byte = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut byte).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&byte[..n]),
        }
        if head.len() > 65536 {
            return;
        }
    }
    let text = String::from_utf8_lossy(&head).to_string();
    let path = text.split(' ').nth(1).unwrap_or("/").to_string();
    let (resp_head, len) = response_head_and_body(port, &path);
    if s.write_all(&resp_head).await.is_err() {
        return;
    }
    if path.starts_with("/bytes/") {
        let chunk = vec![b'x'; 256 * 1024];
        let mut left = len;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            if s.write_all(&chunk[..n]).await.is_err() {
                return;
            }
            left -= n as u64;
        }
    } else {
        let _ = s
            .write_all(format!("hello from {port} {path}").as_bytes())
            .await;
    }
    let _ = s.shutdown().await;
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

async fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).await.unwrap() == 0 {
            break;
        }
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

/// Opens a CONNECT tunnel; Ok(stream) when the proxy said 200, else the
/// proxy's whole answer.
async fn tunnel(proxy: u16, target: &str) -> Result<TcpStream, String> {
    let mut s = TcpStream::connect(("127.0.0.1", proxy)).await.unwrap();
    s.set_nodelay(true).unwrap();
    s.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut s).await;
    if head.starts_with("HTTP/1.1 200 ") {
        return Ok(s);
    }
    let mut rest = String::new();
    let _ = s.read_to_string(&mut rest).await;
    Err(head + &rest)
}

/// A GET through a CONNECT tunnel: the origin's whole response, or the
/// proxy's refusal.
async fn via_connect(proxy: u16, target: &str, path: &str) -> Result<String, String> {
    let mut s = tunnel(proxy, target).await?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    Ok(out)
}

/// A plain proxied GET of `url`: the whole answer.
async fn via_plain(proxy: u16, url: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", proxy)).await.unwrap();
    s.write_all(
        format!("GET {url} HTTP/1.1\r\nHost: ignored\r\nProxy-Authorization: Basic eDp5\r\nProxy-Connection: keep-alive\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

fn status(answer: &str) -> u16 {
    answer.split(' ').nth(1).unwrap().parse().unwrap()
}

fn body(answer: &str) -> &str {
    answer.split_once("\r\n\r\n").unwrap().1
}

/// The audit log's entries once it holds at least `n`.
async fn audited(audit: &AuditLog, n: u64) -> Vec<AuditEntryView> {
    // Read from the store: an entry is counted before its commit lands.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = read_entries(audit.store(), 0, 10_000).unwrap();
        if log.len() as u64 >= n {
            return log;
        }
        assert!(Instant::now() < deadline, "only {} entries", log.len());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn connect_and_plain_http_reach_an_allowed_port_only() {
    let f = fixture(EgressLimits::default());
    let (a, b) = (origin().await, origin().await);
    let gone = closed_port();
    let (proxy, _, _h) = start(
        &f,
        &[&format!("127.0.0.1:{a}"), &format!("127.0.0.1:{gone}")],
    )
    .await;

    let ok = via_connect(proxy, &format!("127.0.0.1:{a}"), "/tunnel")
        .await
        .unwrap();
    assert_eq!(body(&ok), format!("hello from {a} /tunnel"));
    let ok = via_plain(proxy, &format!("http://127.0.0.1:{a}/plain?q=1")).await;
    assert_eq!(status(&ok), 200, "{ok}");
    assert_eq!(body(&ok), format!("hello from {a} /plain?q=1"));

    let refused = via_connect(proxy, &format!("127.0.0.1:{b}"), "/")
        .await
        .unwrap_err();
    assert_eq!(status(&refused), 403, "{refused}");
    assert!(
        body(&refused).contains("not in this agent's allowlist"),
        "{refused}"
    );
    let refused = via_plain(proxy, &format!("http://127.0.0.1:{b}/")).await;
    assert_eq!(status(&refused), 403, "{refused}");

    let unreachable = via_connect(proxy, &format!("127.0.0.1:{gone}"), "/")
        .await
        .unwrap_err();
    assert_eq!(status(&unreachable), 502, "{unreachable}");
    assert!(
        body(&unreachable).contains("upstream unreachable"),
        "{unreachable}"
    );

    // Entries are written as connections end, so their order is not
    // asserted.
    let log = audited(&f.audit, 5).await;
    let count = |prefix: &str| log.iter().filter(|e| e.outcome.starts_with(prefix)).count();
    assert_eq!(count("ok"), 2, "{log:#?}");
    assert_eq!(count("denied"), 2, "{log:#?}");
    assert_eq!(count("failed: upstream unreachable"), 1, "{log:#?}");
    for e in &log {
        assert_eq!(e.actor, "agent:tester");
        assert_eq!(e.action, "egress.connect");
    }
    let has = |target: String, details: String| {
        assert!(
            log.iter()
                .any(|e| e.target == target && e.details.starts_with(&details)),
            "no {target} {details} in {log:#?}"
        )
    };
    has(
        format!("127.0.0.1:{a}"),
        format!("200 CONNECT to 127.0.0.1:{a}: up "),
    );
    has(
        format!("127.0.0.1:{a}"),
        format!("200 GET to 127.0.0.1:{a}: up "),
    );
    has(
        format!("127.0.0.1:{b}"),
        "403 CONNECT: up 0 B, down 0 B, ".into(),
    );
    has(
        format!("127.0.0.1:{b}"),
        "403 GET: up 0 B, down 0 B, ".into(),
    );
    has(
        format!("127.0.0.1:{gone}"),
        "502 CONNECT: up 0 B, down 0 B, ".into(),
    );
}

#[tokio::test]
async fn the_origin_gets_an_origin_form_request_without_proxy_headers() {
    let f = fixture(EgressLimits::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = listener.local_addr().unwrap().port();
    let (proxy, _, _h) = start(&f, &[&format!("127.0.0.1:{a}")]).await;
    let url = format!("http://127.0.0.1:{a}/p");
    let client = tokio::spawn(async move { via_plain(proxy, &url).await });
    let (mut s, _) = listener.accept().await.unwrap();
    let head = read_head(&mut s).await;
    s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
        .await
        .unwrap();
    drop(s);
    assert_eq!(
        head,
        format!("GET /p HTTP/1.1\r\nHost: 127.0.0.1:{a}\r\nConnection: close\r\n\r\n")
    );
    assert_eq!(status(&client.await.unwrap()), 204);
}

#[tokio::test]
async fn curl_and_python_use_the_proxy() {
    let f = fixture(EgressLimits::default());
    let (a, b) = (origin().await, origin().await);
    let (proxy, _, _h) = start(&f, &[&format!("127.0.0.1:{a}")]).await;
    let proxy_url = format!("http://127.0.0.1:{proxy}");
    let run = |program: &str, args: Vec<String>| {
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .env_remove("http_proxy")
            .env_remove("HTTP_PROXY");
        cmd
    };
    let curl = |extra: &[&str], url: String| {
        let mut args: Vec<String> = ["-sS", "--max-time", "10", "--noproxy", "", "-x", &proxy_url]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        args.push(url);
        run("curl", args)
    };
    match curl(&[], format!("http://127.0.0.1:{a}/curl-plain"))
        .output()
        .await
    {
        Err(e) => println!("skipping curl: cannot run it ({e})"),
        Ok(out) => {
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                format!("hello from {a} /curl-plain"),
                "{out:?}"
            );
            let out = curl(&["-p"], format!("http://127.0.0.1:{a}/curl-tunnel"))
                .output()
                .await
                .unwrap();
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                format!("hello from {a} /curl-tunnel"),
                "{out:?}"
            );
            let out = curl(
                &["-o", "/dev/null", "-w", "%{http_code}"],
                format!("http://127.0.0.1:{b}/"),
            )
            .output()
            .await
            .unwrap();
            assert_eq!(String::from_utf8_lossy(&out.stdout), "403", "{out:?}");
        }
    }
    let script = "import sys, urllib.request, http.client\n\
        p, a = int(sys.argv[1]), int(sys.argv[2])\n\
        o = urllib.request.build_opener(urllib.request.ProxyHandler({'http': f'http://127.0.0.1:{p}'}))\n\
        print(o.open(f'http://127.0.0.1:{a}/py-plain', timeout=10).read().decode())\n\
        c = http.client.HTTPConnection('127.0.0.1', p, timeout=10)\n\
        c.set_tunnel('127.0.0.1', a)\n\
        c.request('GET', '/py-tunnel')\n\
        print(c.getresponse().read().decode())\n";
    let args = vec!["-c".into(), script.into(), proxy.to_string(), a.to_string()];
    match run("python3", args).output().await {
        Err(e) => println!("skipping python3: cannot run it ({e})"),
        Ok(out) => assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            format!("hello from {a} /py-plain\nhello from {a} /py-tunnel\n"),
            "{out:?}"
        ),
    }
}

#[tokio::test]
async fn names_resolving_to_loopback_need_an_entry_naming_the_ip() {
    let f = fixture(EgressLimits::default());
    let a = origin().await;
    let (proxy, allow, _h) = start(&f, &[&format!("localhost:{a}")]).await;
    let refused = via_connect(proxy, &format!("localhost:{a}"), "/")
        .await
        .unwrap_err();
    assert_eq!(status(&refused), 403, "{refused}");
    assert!(body(&refused).contains("address refused"), "{refused}");
    assert!(body(&refused).contains("loopback"), "{refused}");
    let refused = via_plain(proxy, &format!("http://localhost:{a}/")).await;
    assert_eq!(status(&refused), 403, "{refused}");

    // The allowlist changes while the proxy runs.
    *allow.write().unwrap() = entries(&[&format!("127.0.0.1:{a}")]);
    let ok = via_connect(proxy, &format!("127.0.0.1:{a}"), "/ip")
        .await
        .unwrap();
    assert_eq!(body(&ok), format!("hello from {a} /ip"));
    let refused = via_connect(proxy, &format!("localhost:{a}"), "/")
        .await
        .unwrap_err();
    assert!(
        body(&refused).contains("not in this agent's allowlist"),
        "{refused}"
    );
    // An IPv4-mapped spelling is not the entry, and is loopback anyway.
    let refused = via_connect(proxy, &format!("[::ffff:127.0.0.1]:{a}"), "/")
        .await
        .unwrap_err();
    assert_eq!(status(&refused), 403, "{refused}");
}

#[tokio::test]
async fn own_and_special_addresses_are_refused_before_any_connection() {
    let f = fixture(EgressLimits::default());
    f.egress.set_own_addresses(["10.9.9.9".parse().unwrap()]);
    for (name, ip, why) in [
        ("self.test", "10.9.9.9", "node's own"),
        ("meta.test", "169.254.169.254", "link-local"),
        ("mapped.test", "::ffff:127.0.0.1", "loopback"),
        ("zero.test", "0.0.0.0", "unspecified"),
        ("v6local.test", "fe80::1", "link-local"),
        ("group.test", "224.0.0.1", "multicast"),
    ] {
        f.egress
            .pinned
            .write()
            .unwrap()
            .insert(name.into(), vec![ip.parse().unwrap()]);
        let (proxy, _, h) = start(&f, &[&format!("{name}:80")]).await;
        let refused = via_connect(proxy, &format!("{name}:80"), "/")
            .await
            .unwrap_err();
        assert_eq!(status(&refused), 403, "{refused}");
        assert!(
            body(&refused).contains(&format!("a {why} address")),
            "{refused}"
        );
        h.abort();
    }
    // One bad address among good ones refuses the name.
    f.egress.pinned.write().unwrap().insert(
        "mixed.test".into(),
        vec!["192.0.2.1".parse().unwrap(), "127.0.0.1".parse().unwrap()],
    );
    let (proxy, _, _h) = start(&f, &["mixed.test:80"]).await;
    let refused = via_connect(proxy, "mixed.test:80", "/").await.unwrap_err();
    assert!(body(&refused).contains("a loopback address"), "{refused}");

    let none = Default::default();
    let ip = |s: &str| canonical(s.parse::<IpAddr>().unwrap());
    assert_eq!(
        forbidden(ip("::ffff:169.254.1.1"), &none),
        Some("link-local")
    );
    assert_eq!(forbidden(ip("::1"), &none), Some("loopback"));
    assert_eq!(forbidden(ip("255.255.255.255"), &none), Some("multicast"));
    assert_eq!(forbidden(ip("192.0.2.1"), &none), None);
    assert_eq!(forbidden(ip("2001:db8::1"), &none), None);
}

#[tokio::test]
async fn suffix_entries_match_names_below_the_suffix_only() {
    let f = fixture(EgressLimits::default());
    let a = origin().await;
    for name in ["api.example.test", "example.test", "badexample.test"] {
        f.egress
            .pinned
            .write()
            .unwrap()
            .insert(name.into(), vec!["127.0.0.1".parse().unwrap()]);
    }
    let (proxy, _, _h) = start(&f, &[&format!("*.example.test:{a}")]).await;
    // Matched, then refused for its loopback address: a suffix never names
    // an IP, and loopback is the only address these tests may use.
    let matched = via_connect(proxy, &format!("api.example.test:{a}"), "/")
        .await
        .unwrap_err();
    assert!(body(&matched).contains("address refused"), "{matched}");
    for target in [
        format!("example.test:{a}"),
        format!("badexample.test:{a}"),
        format!("api.example.test:{}", a.wrapping_add(1)),
    ] {
        let refused = via_connect(proxy, &target, "/").await.unwrap_err();
        assert!(
            body(&refused).contains("not in this agent's allowlist"),
            "{target}: {refused}"
        );
    }
}

#[tokio::test]
async fn lockdown_refuses_every_connection() {
    let f = fixture(EgressLimits::default());
    let a = origin().await;
    let (proxy, _, _h) = start(&f, &[&format!("127.0.0.1:{a}")]).await;
    f.locked.store(true, Ordering::SeqCst);
    let refused = via_connect(proxy, &format!("127.0.0.1:{a}"), "/")
        .await
        .unwrap_err();
    assert_eq!(status(&refused), 403, "{refused}");
    assert!(body(&refused).contains("locked down"), "{refused}");
    let refused = via_plain(proxy, &format!("http://127.0.0.1:{a}/")).await;
    assert_eq!(status(&refused), 403, "{refused}");
    f.locked.store(false, Ordering::SeqCst);
    let target = format!("127.0.0.1:{a}");
    assert!(via_connect(proxy, &target, "/").await.is_ok());
    // A tunnel open when the lockdown comes is closed within seconds.
    let mut open = tunnel(proxy, &target).await.unwrap();
    f.locked.store(true, Ordering::SeqCst);
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(5), open.read(&mut byte)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    let log = audited(&f.audit, 4).await;
    let locked = |e: &&AuditEntryView| e.outcome == "denied" && e.details.contains("locked down");
    assert_eq!(log.iter().filter(locked).count(), 2, "{log:#?}");
    assert!(
        log.iter()
            .any(|e| e.outcome == "ok" && e.details.ends_with("ended: node locked down")),
        "{log:#?}"
    );
}

#[tokio::test]
async fn connections_over_the_bound_get_429() {
    let limits = EgressLimits {
        max_connections: 2,
        ..EgressLimits::default()
    };
    let f = fixture(limits);
    let a = origin().await;
    let (proxy, _, _h) = start(&f, &[&format!("127.0.0.1:{a}")]).await;
    let target = format!("127.0.0.1:{a}");
    let one = tunnel(proxy, &target).await.unwrap();
    let two = tunnel(proxy, &target).await.unwrap();
    let refused = via_connect(proxy, &target, "/").await.unwrap_err();
    assert_eq!(status(&refused), 429, "{refused}");
    assert!(body(&refused).contains("too many connections"), "{refused}");
    drop((one, two));
    // Slots come back once the two connections are audited.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match via_connect(proxy, &target, "/again").await {
            Ok(ok) => break assert_eq!(body(&ok), format!("hello from {a} /again")),
            Err(e) => assert!(Instant::now() < deadline, "still refused: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = audited(&f.audit, 4).await;
    assert!(log
        .iter()
        .any(|e| e.outcome.starts_with("failed: too many connections")));
}

#[tokio::test]
async fn the_audit_entry_counts_the_bytes_moved() {
    let f = fixture(EgressLimits::default());
    let a = origin().await;
    let (proxy, _, _h) = start(&f, &[&format!("127.0.0.1:{a}")]).await;
    let request = "GET /count HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".to_string();
    let mut s = tunnel(proxy, &format!("127.0.0.1:{a}")).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, response(a, "/count"));
    drop(s);

    let big = 3 * 1024 * 1024 + 17;
    let answer = via_connect(proxy, &format!("127.0.0.1:{a}"), &format!("/bytes/{big}"))
        .await
        .unwrap();
    let plain = via_plain(proxy, &format!("http://127.0.0.1:{a}/p")).await;

    let log = audited(&f.audit, 3).await;
    for want in [
        format!(
            "200 CONNECT to 127.0.0.1:{a}: up {} B, down {} B, ",
            request.len(),
            got.len()
        ),
        format!("down {} B, ", answer.len()),
        format!("200 GET to 127.0.0.1:{a}: up "),
        format!("down {} B, ", plain.len()),
    ] {
        assert!(
            log.iter().any(|e| e.details.contains(&want)),
            "no {want} in {log:#?}"
        );
    }
}

#[tokio::test]
async fn bad_heads_get_400_and_the_proxy_goes_on() {
    let f = fixture(EgressLimits::default());
    let a = origin().await;
    let (proxy, _, _h) = start(&f, &[&format!("127.0.0.1:{a}")]).await;
    let mut s = TcpStream::connect(("127.0.0.1", proxy)).await.unwrap();
    let big = format!(
        "GET http://127.0.0.1:{a}/ HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    s.write_all(big.as_bytes()).await.unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).await.unwrap();
    assert_eq!(status(&answer), 400, "{answer}");
    assert!(body(&answer).contains("over the size limit"), "{answer}");

    for junk in [
        "hello\r\n\r\n".to_string(),
        format!("GET /relative HTTP/1.1\r\nHost: 127.0.0.1:{a}\r\n\r\n"),
        format!("GET https://127.0.0.1:{a}/ HTTP/1.1\r\n\r\n"),
        "CONNECT 127.0.0.1 HTTP/1.1\r\n\r\n".to_string(),
        format!("POST http://127.0.0.1:{a}/ HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"),
    ] {
        let mut s = TcpStream::connect(("127.0.0.1", proxy)).await.unwrap();
        s.write_all(junk.as_bytes()).await.unwrap();
        let mut answer = String::new();
        s.read_to_string(&mut answer).await.unwrap();
        assert_eq!(status(&answer), 400, "{junk:?}: {answer}");
    }
    let ok = via_connect(proxy, &format!("127.0.0.1:{a}"), "/after")
        .await
        .unwrap();
    assert_eq!(body(&ok), format!("hello from {a} /after"));
}

#[tokio::test]
async fn stopping_the_proxy_ends_its_connections_and_audits_them() {
    let f = fixture(EgressLimits::default());
    let a = origin().await;
    let (proxy, _, h) = start(&f, &[&format!("127.0.0.1:{a}")]).await;
    let mut open = tunnel(proxy, &format!("127.0.0.1:{a}")).await.unwrap();
    h.abort();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(5), open.read(&mut byte)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    let log = audited(&f.audit, 1).await;
    assert!(
        log[0].details.contains("proxy stopped"),
        "{}",
        log[0].details
    );
}

#[tokio::test]
async fn bandwidth_is_bounded_per_agent() {
    let limits = EgressLimits {
        bytes_per_sec: 1024 * 1024,
        ..EgressLimits::default()
    };
    let f = fixture(limits);
    let a = origin().await;
    let (proxy, _, _h) = start(&f, &[&format!("127.0.0.1:{a}")]).await;
    let target = format!("127.0.0.1:{a}");
    let started = Instant::now();
    // Two connections share the bucket: 3 MiB at 1 MiB/s after a 1 MiB burst.
    let (x, y) = tokio::join!(
        via_connect(proxy, &target, "/bytes/1572864"),
        via_connect(proxy, &target, "/bytes/1572864")
    );
    let took = started.elapsed();
    assert!(x.unwrap().len() > 1572864 && y.unwrap().len() > 1572864);
    assert!(took >= Duration::from_millis(1800), "took {took:?}");
    assert!(took < Duration::from_secs(6), "took {took:?}");
}

#[test]
fn request_targets_parse_to_host_and_port() {
    use super::request::{parse, Kind};
    let head = |text: &str| parse(text.as_bytes(), text.len());
    let r = head("CONNECT Api.Example.org:443 HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(
        (r.host.as_str(), r.port, r.via()),
        ("api.example.org", 443, "CONNECT")
    );
    let r = head("CONNECT [::1]:8443 HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!((r.host.as_str(), r.port), ("[::1]", 8443));
    let r = head("GET http://example.org?q=1 HTTP/1.1\r\nProxy-Connection: x\r\n\r\n").unwrap();
    assert_eq!((r.host.as_str(), r.port), ("example.org", 80));
    let Kind::Forward {
        head: sent, body, ..
    } = r.kind
    else {
        panic!("not forwarded")
    };
    assert_eq!(
        String::from_utf8(sent).unwrap(),
        "GET /?q=1 HTTP/1.1\r\nHost: example.org\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(body, Some(0));
    // Bytes past the declared body are not sent: one request per connection.
    let text = "POST http://h:81/ HTTP/1.1\r\nContent-Length: 2\r\n\r\nabGET / HTTP/1.1\r\n\r\n";
    let r = parse(text.as_bytes(), text.find("ab").unwrap()).unwrap();
    assert_eq!(r.rest, b"ab");
    for bad in [
        "CONNECT [::1] HTTP/1.1\r\n\r\n",
        "CONNECT host:0 HTTP/1.1\r\n\r\n",
        "CONNECT host:99999 HTTP/1.1\r\n\r\n",
        "CONNECT ho$t:80 HTTP/1.1\r\n\r\n",
        "GET http://user:pw@host/ HTTP/1.1\r\n\r\n",
        "GET http://[nope]:80/ HTTP/1.1\r\n\r\n",
        "GET http://h/ HTTP/1.1\r\nContent-Length: x\r\n\r\n",
        "GET http://h/ HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    ] {
        assert!(head(bad).is_err(), "{bad:?} parsed");
    }
}
