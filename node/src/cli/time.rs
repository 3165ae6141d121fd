//! Times as people read them: local wall-clock time, and how long ago.
//! JSON output keeps the raw Unix values; only text output uses these.

use jiff::tz::TimeZone;
use jiff::Timestamp;

/// `2026-12-07 09:41:07` in the machine's time zone (`TZ`, else
/// `/etc/localtime`, else UTC), from Unix milliseconds.
pub fn local_ms(ms: u64) -> String {
    let Ok(ms) = i64::try_from(ms) else {
        return ms.to_string();
    };
    match Timestamp::from_millisecond(ms) {
        Ok(t) => t
            .to_zoned(TimeZone::system())
            .strftime("%Y-%m-%d %H:%M:%S")
            .to_string(),
        Err(_) => ms.to_string(),
    }
}

/// As [`local_ms`], from Unix seconds.
pub fn local_secs(secs: u64) -> String {
    local_ms(secs.saturating_mul(1000))
}

/// `3m ago`, `in 2h`, `just now`, from Unix milliseconds.
pub fn relative_ms(ms: u64) -> String {
    let now = crate::service::now_ms();
    let (delta, future) = if ms > now {
        (ms - now, true)
    } else {
        (now - ms, false)
    };
    let secs = delta / 1000;
    let text = if secs < 2 {
        return "just now".into();
    } else if secs < 120 {
        format!("{secs}s")
    } else if secs < 2 * 3600 {
        format!("{}m", secs / 60)
    } else if secs < 2 * 86_400 {
        format!("{}h", secs / 3600)
    } else {
        format!("{}d", secs / 86_400)
    };
    if future {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

/// Both: `2026-12-07 09:41:07 (3m ago)`.
pub fn when_ms(ms: u64) -> String {
    format!("{} ({})", local_ms(ms), relative_ms(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times_read_naturally() {
        let now = crate::service::now_ms();
        assert_eq!(relative_ms(now), "just now");
        assert_eq!(relative_ms(now - 30_000), "30s ago");
        assert_eq!(relative_ms(now - 10 * 60_000), "10m ago");
        assert_eq!(relative_ms(now + 3 * 3_600_000 + 5_000), "in 3h");
        assert_eq!(relative_ms(now - 3 * 86_400_000), "3d ago");
    }

    #[test]
    fn local_times_have_a_fixed_shape() {
        let text = local_ms(1_700_000_000_000);
        assert_eq!(text.len(), "2023-11-14 22:13:20".len(), "{text}");
        assert!(text.starts_with("2023-11-1"), "{text}");
    }
}
