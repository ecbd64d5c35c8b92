//! The pages' view models, built from the replicated state by pure
//! functions: [`fleets`] (fleets, their hosts and processes, and the
//! utilization sample the charts draw), [`rollout`] (a fleet's processes
//! by version), [`placements`] (placements and battle sessions, one
//! placement's timeline, a player's sessions), [`processes`] (one DS
//! process's page) and [`ds_logs`] (its log files and the tail of one).
//!
//! Every function takes the caller's [`Scope`]: a title-region session
//! sees only its region's records, and a record of another region is
//! reported exactly as a missing one.

pub mod ds_logs;
pub mod fleets;
pub mod logs;
pub mod placements;
pub mod processes;
pub mod rollout;

use respawn_types::TitleRegionId;
use serde::Serialize;

/// Whose records a page may show: `None` = every title region (admin).
#[derive(Clone, Copy, Debug)]
pub struct Scope<'a>(pub Option<&'a TitleRegionId>);

impl Scope<'_> {
    /// May this scope see a record of title region `tr`?
    pub fn sees(&self, tr: &TitleRegionId) -> bool {
        self.0.is_none_or(|mine| mine == tr)
    }
}

/// Most rows a list page shows (newest first); the page says when more matched.
pub const MAX_ROWS: usize = 200;

/// A list cut to [`MAX_ROWS`] and how many matched.
#[derive(Debug, Serialize)]
pub struct Rows<T> {
    pub rows: Vec<T>,
    pub matched: usize,
}

impl<T> Rows<T> {
    pub fn cut(mut all: Vec<T>) -> Rows<T> {
        let matched = all.len();
        all.truncate(MAX_ROWS);
        Rows { rows: all, matched }
    }
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of Unix milliseconds.
pub fn time(ms: u64) -> String {
    let secs = ms / 1000;
    let (y, m, d) = respawn_types::civil::civil_from_days((secs / 86_400) as i64);
    let s = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        s / 3600,
        (s / 60) % 60,
        s % 60
    )
}

/// [`time`] with milliseconds: `YYYY-MM-DD HH:MM:SS.mmm`.
pub fn time_ms(ms: u64) -> String {
    format!("{}.{:03}", time(ms), ms % 1000)
}

/// The upper-case name serde gives a status enum.
pub fn status_name<T: Serialize>(s: &T) -> String {
    match serde_json::to_value(s) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_are_utc_civil() {
        assert_eq!(super::time(0), "1970-01-01 00:00:00");
        assert_eq!(super::time(1_796_515_200_000), "2026-12-06 00:00:00");
        assert_eq!(super::time_ms(1_796_515_200_042), "2026-12-06 00:00:00.042");
    }
}
