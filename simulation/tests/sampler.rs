//! The link sampler is a pure function of (seed, from, to) and the sequence
//! of draws: no timing involved.

use std::time::Duration;

use osmoda_simulation::{HostId, LinkProfile, LinkSampler, MAX_RETRANSMITS};

fn draws(seed: u64, from: u32, to: u32, profile: &LinkProfile) -> Vec<(Duration, u32)> {
    let mut s = LinkSampler::new(seed, HostId(from), HostId(to));
    (0..2000)
        .map(|_| {
            let d = s.sample(profile);
            (d.jitter, d.retransmits)
        })
        .collect()
}

#[test]
fn same_seed_same_samples() {
    let p = LinkProfile::default()
        .with_jitter(Duration::from_millis(20))
        .with_loss(0.3);
    assert_eq!(draws(1, 3, 4, &p), draws(1, 3, 4, &p));
    assert_ne!(draws(1, 3, 4, &p), draws(2, 3, 4, &p));
    // Each direction, and each pair, has its own stream.
    assert_ne!(draws(1, 3, 4, &p), draws(1, 4, 3, &p));
    assert_ne!(draws(1, 3, 4, &p), draws(1, 3, 5, &p));
}

#[test]
fn samples_stay_within_the_profile() {
    let p = LinkProfile::default()
        .with_jitter(Duration::from_millis(20))
        .with_loss(0.3);
    let d = draws(9, 0, 1, &p);
    assert!(d
        .iter()
        .all(|(j, r)| *j <= Duration::from_millis(20) && *r <= MAX_RETRANSMITS));
    // Loss 0.3: about 30 % of chunks see at least one retransmission.
    let lost = d.iter().filter(|(_, r)| *r > 0).count();
    assert!((450..750).contains(&lost), "{lost} of 2000");
    let jittered = d
        .iter()
        .filter(|(j, _)| *j > Duration::from_millis(10))
        .count();
    assert!((800..1200).contains(&jittered), "{jittered} of 2000");

    let none = draws(9, 0, 1, &LinkProfile::ideal());
    assert!(none.iter().all(|(j, r)| j.is_zero() && *r == 0));
    let all = draws(9, 0, 1, &LinkProfile::ideal().with_loss(1.0));
    assert!(all.iter().all(|(_, r)| *r == MAX_RETRANSMITS));
}
