//! Figures, not checks: the proxy's added latency and throughput against
//! direct connections, side by side in one run.

use std::time::{Duration, Instant};

use super::*;

fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Figures, not a check: `cargo test -p osmoda-node --lib
/// egress::tests::measure::measure -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run with --ignored --nocapture"]
async fn measure() {
    let limits = EgressLimits {
        max_connections: 4096,
        bytes_per_sec: 1 << 40,
        ..EgressLimits::default()
    };
    let f = fixture(limits);
    let a = origin().await;
    let (proxy, _, _h) = start(&f, &[&format!("127.0.0.1:{a}")]).await;
    let target = format!("127.0.0.1:{a}");
    let direct = |path: String| async move {
        let mut s = TcpStream::connect(("127.0.0.1", a)).await.unwrap();
        s.set_nodelay(true).unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut sink = vec![0u8; 256 * 1024];
        let mut n = 0u64;
        loop {
            match s.read(&mut sink).await.unwrap() {
                0 => break n,
                k => n += k as u64,
            }
        }
    };
    let proxied = |path: String| {
        let target = target.clone();
        async move {
            let mut s = tunnel(proxy, &target).await.unwrap();
            s.write_all(
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .unwrap();
            let mut sink = vec![0u8; 256 * 1024];
            let mut n = 0u64;
            loop {
                match s.read(&mut sink).await.unwrap() {
                    0 => break n,
                    k => n += k as u64,
                }
            }
        }
    };
    const N: usize = 1000;
    let (mut d, mut p) = (Vec::with_capacity(N), Vec::with_capacity(N));
    for i in 0..N + 50 {
        let t = Instant::now();
        direct("/small".into()).await;
        let td = t.elapsed();
        let t = Instant::now();
        proxied("/small".into()).await;
        let tp = t.elapsed();
        if i >= 50 {
            d.push(td);
            p.push(tp);
        }
    }
    let (md, mp) = (median(&mut d), median(&mut p));
    println!(
        "latency, median of {N} sequential small GETs (new connection each): direct {md:?}, through CONNECT {mp:?}, added {:?}, ratio {:.2}",
        mp.saturating_sub(md),
        mp.as_secs_f64() / md.as_secs_f64()
    );
    let size: u64 = 256 * 1024 * 1024;
    let path = format!("/bytes/{size}");
    let (mut td, mut tp) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let t = Instant::now();
        assert!(direct(path.clone()).await > size);
        td.push(t.elapsed());
        let t = Instant::now();
        assert!(proxied(path.clone()).await > size);
        tp.push(t.elapsed());
    }
    let mib = |t: Duration| 256.0 / t.as_secs_f64();
    let (md, mp) = (median(&mut td), median(&mut tp));
    println!(
        "throughput, median of 3 transfers of 256 MiB: direct {:.0} MiB/s ({md:?}), through CONNECT {:.0} MiB/s ({mp:?}), ratio {:.2}",
        mib(md),
        mib(mp),
        mib(mp) / mib(md)
    );
}
