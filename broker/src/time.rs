//! Wall-clock time as every layer of the broker uses it: milliseconds since the epoch, and how
//! they are shown. Lease decisions never use it (the Raft leader stamps those).

use std::time::{SystemTime, UNIX_EPOCH};

use jiff::Timestamp;

/// Wall-clock milliseconds since the epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Milliseconds since the epoch as RFC 3339 UTC.
pub fn rfc3339(ms: u64) -> String {
    i64::try_from(ms)
        .ok()
        .and_then(|ms| Timestamp::from_millisecond(ms).ok())
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// Milliseconds since the epoch as an API timestamp.
pub fn timestamp(ms: u64) -> Timestamp {
    i64::try_from(ms)
        .ok()
        .and_then(|ms| Timestamp::from_millisecond(ms).ok())
        .unwrap_or(Timestamp::UNIX_EPOCH)
}

/// Like [`timestamp`], with 0 meaning "not yet".
pub fn timestamp_if_set(ms: u64) -> Option<Timestamp> {
    (ms != 0).then(|| timestamp(ms))
}
