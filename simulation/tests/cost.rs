//! Memory cost of idle simulated connections, measured with a counting
//! allocator. Run with `--nocapture` to see the figures; the assertions are
//! loose ceilings that catch a per-connection buffer sneaking in.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use common::*;
use futures::{AsyncReadExt, AsyncWriteExt};
use osmoda_simulation::LinkProfile;

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator, only counting sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

#[tokio::test(flavor = "current_thread")]
async fn idle_connection_memory() {
    const HOSTS: usize = 100;
    const CONNS: usize = 1000;
    let net = network(LinkProfile::ideal());
    let hosts = net.add_hosts(HOSTS).unwrap();
    let mut listeners = Vec::new();
    for &h in &hosts {
        listeners.push(listener(&net, h).await);
    }
    let mut dialers: Vec<_> = hosts.iter().map(|&h| net.transport(h).unwrap()).collect();

    // Warm up (first timers, first link entries) before counting.
    let mut conns = Vec::new();
    let (mut c, mut s) = {
        let (t, addr) = &mut listeners[1];
        connect(&mut dialers[0], t, addr.clone()).await
    };
    transfer(&mut c, &mut s, b"warm").await;
    conns.push((c, s));

    let before = live();
    for k in 0..CONNS {
        let from = k % HOSTS;
        let to = (from + 1 + k / HOSTS) % HOSTS;
        let (t, addr) = &mut listeners[to];
        let (mut c, mut s) = connect(&mut dialers[from], t, addr.clone()).await;
        // One exchange each way so both readers have created their timer.
        c.write_all(b"ping").await.unwrap();
        let mut buf = [0; 4];
        s.read_exact(&mut buf).await.unwrap();
        s.write_all(b"pong").await.unwrap();
        c.read_exact(&mut buf).await.unwrap();
        conns.push((c, s));
    }
    let per_conn = (live() - before) / CONNS as isize;
    println!(
        "idle simulated connection (both ends, both directions, links, registry): {per_conn} bytes"
    );
    assert!(per_conn < 4096, "{per_conn} bytes per connection");

    // Dropping the connections gives most of it back at once; the rest are
    // the network's entries for the now unused links (a `Weak` each, which
    // keeps the link's allocation), swept when the link map has doubled.
    let before_drop = live();
    drop(conns);
    let freed = before_drop - live();
    println!(
        "freed on drop: {} bytes per connection",
        freed / (CONNS + 1) as isize
    );
    assert!(freed >= per_conn / 2 * CONNS as isize);
}
