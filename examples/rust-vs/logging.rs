//! Log lines to stdout, each prefixed with the UTC time (RFC 3339, in
//! milliseconds).

use std::io::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// One line to stdout, prefixed with the UTC time.
pub(crate) fn log(msg: &str) {
    let t = OffsetDateTime::now_utc();
    let line = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z {msg}\n",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    );
    let mut out = io::stdout().lock();
    let _ = out.write_all(line.as_bytes());
    let _ = out.flush();
}
