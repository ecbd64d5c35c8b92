//! The VS log page's filters: read from the query string, checked (a bad
//! value is answered 400 naming the field), and the parts the admin API
//! does not filter on (instance, stream, level) applied to its lines.

use serde::{Deserialize, Serialize};

/// The log page's query string, as typed (empty = any).
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
#[serde(default)]
pub struct LogForm {
    /// `console` (stdout/stderr of the instances, the default) or `access`.
    pub kind: String,
    /// An instance id (console log only).
    pub instance: String,
    /// `stdout` or `stderr` (console log only).
    pub stream: String,
    /// `error`, `warn`, `info` or `debug`: lines naming that level (case-insensitive).
    pub level: String,
    /// Lines containing this text.
    pub q: String,
    /// From this UTC time: `YYYY-MM-DD HH:MM[:SS]` or `YYYY-MM-DDTHH:MM[:SS]`.
    pub since: String,
    /// Until this UTC time, same forms.
    pub until: String,
    /// How many of the newest matching lines (1–1000, default 200).
    pub limit: String,
}

/// Which log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogKind {
    Console,
    Access,
}

/// The checked filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFilter {
    pub kind: LogKind,
    pub instance: Option<String>,
    pub stream: Option<String>,
    pub level: Option<String>,
    pub contains: Option<String>,
    pub since_ms: Option<u64>,
    pub until_ms: Option<u64>,
    pub limit: usize,
}

/// Most lines the page shows.
pub const MAX_LINES: usize = 1000;
/// Lines shown when the form does not say.
pub const DEFAULT_LINES: usize = 200;
/// Lines asked of the hosts when instance, stream or level filter further
/// (those filters run here, on at most this many of the newest lines).
pub const SCAN_LINES: usize = 10_000;

fn opt(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

/// Unix milliseconds of a UTC time typed as `YYYY-MM-DD HH:MM[:SS]` (a `T`
/// may separate date and time, as a browser's datetime-local field sends).
pub fn parse_utc(s: &str) -> Option<u64> {
    let s = s.trim();
    let (date, clock) = s.split_once([' ', 'T'])?;
    let mut d = date.split('-');
    let (y, m, day) = (d.next()?, d.next()?, d.next()?);
    if d.next().is_some() || y.len() != 4 || m.len() != 2 || day.len() != 2 {
        return None;
    }
    let (y, m, day): (i64, u32, u32) = (y.parse().ok()?, m.parse().ok()?, day.parse().ok()?);
    let mut c = clock.split(':');
    let h: u64 = c.next()?.parse().ok()?;
    let min: u64 = c.next()?.parse().ok()?;
    let sec: u64 = match c.next() {
        Some(v) => v.parse().ok()?,
        None => 0,
    };
    if c.next().is_some()
        || !(1..=12).contains(&m)
        || !(1..=31).contains(&day)
        || h > 23
        || min > 59
        || sec > 59
    {
        return None;
    }
    let days = respawn_types::civil::days_from_civil(y, m, day);
    if days < 0 || respawn_types::civil::civil_from_days(days) != (y, m, day) {
        return None;
    }
    Some(((days as u64) * 86_400 + h * 3600 + min * 60 + sec) * 1000)
}

impl LogForm {
    /// The checked filters, or the message naming the bad field.
    pub fn check(&self) -> Result<LogFilter, String> {
        let kind = match self.kind.trim() {
            "" | "console" => LogKind::Console,
            "access" => LogKind::Access,
            other => return Err(format!("kind: 'console' or 'access', got '{other}'")),
        };
        let stream = opt(&self.stream);
        if let Some(s) = &stream {
            if s != "stdout" && s != "stderr" {
                return Err(format!("stream: 'stdout' or 'stderr', got '{s}'"));
            }
        }
        let level = opt(&self.level).map(|l| l.to_ascii_lowercase());
        if let Some(l) = &level {
            if !["error", "warn", "info", "debug"].contains(&l.as_str()) {
                return Err(format!("level: error, warn, info or debug, got '{l}'"));
            }
        }
        let time = |field: &str, v: &str| match opt(v) {
            None => Ok(None),
            Some(v) => parse_utc(&v)
                .map(Some)
                .ok_or_else(|| format!("{field}: a UTC time as YYYY-MM-DD HH:MM[:SS], got '{v}'")),
        };
        let since_ms = time("since", &self.since)?;
        let until_ms = time("until", &self.until)?;
        if let (Some(a), Some(b)) = (since_ms, until_ms) {
            if a > b {
                return Err("since: must not be after until".into());
            }
        }
        let limit = match opt(&self.limit) {
            None => DEFAULT_LINES,
            Some(v) => match v.parse::<usize>() {
                Ok(n) if (1..=MAX_LINES).contains(&n) => n,
                _ => return Err(format!("limit: a number from 1 to {MAX_LINES}, got '{v}'")),
            },
        };
        Ok(LogFilter {
            kind,
            instance: opt(&self.instance),
            stream,
            level,
            contains: opt(&self.q),
            since_ms,
            until_ms,
            limit,
        })
    }
}

impl LogFilter {
    /// Whether filters run here beyond what the admin API filters on.
    pub fn filters_here(&self) -> bool {
        self.instance.is_some() || self.stream.is_some() || self.level.is_some()
    }

    /// Whether a console line passes the instance, stream and level filters.
    pub fn keeps(&self, instance: &str, stream: &str, line: &str) -> bool {
        self.instance.as_deref().is_none_or(|i| i == instance)
            && self.stream.as_deref().is_none_or(|s| s == stream)
            && self
                .level
                .as_deref()
                .is_none_or(|l| line.to_ascii_lowercase().contains(l))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn utc_times_parse_in_both_forms_and_nonsense_does_not() {
        assert_eq!(parse_utc("2026-12-06 00:00"), Some(1_796_515_200_000));
        assert_eq!(parse_utc("2026-12-06T00:00:05"), Some(1_796_515_205_000));
        for bad in [
            "2026-02-30 00:00",
            "2026-12-06",
            "yesterday",
            "2026-12-06 24:00",
            "2026-1-6 00:00",
        ] {
            assert_eq!(parse_utc(bad), None, "{bad}");
        }
    }

    #[test]
    fn bad_fields_are_named_and_good_ones_filter() {
        let f = |k: &str, v: &str| {
            let mut form = LogForm::default();
            match k {
                "kind" => form.kind = v.into(),
                "stream" => form.stream = v.into(),
                "level" => form.level = v.into(),
                "since" => form.since = v.into(),
                _ => form.limit = v.into(),
            }
            form.check()
        };
        for (k, v) in [
            ("kind", "x"),
            ("stream", "stdin"),
            ("level", "loud"),
            ("since", "soon"),
            ("limit", "0"),
            ("limit", "1001"),
        ] {
            let e = f(k, v).unwrap_err();
            assert!(e.starts_with(&format!("{k}:")), "{e}");
        }
        let form = LogForm {
            since: "2026-12-06 00:10".into(),
            until: "2026-12-06 00:00".into(),
            ..LogForm::default()
        };
        assert!(form.check().unwrap_err().starts_with("since:"));
        let ok = LogForm {
            stream: "stderr".into(),
            level: "ERROR".into(),
            ..LogForm::default()
        }
        .check()
        .unwrap();
        assert_eq!((ok.kind, ok.limit), (LogKind::Console, DEFAULT_LINES));
        assert!(ok.filters_here());
        assert!(ok.keeps("i-1", "stderr", "an Error here"));
        assert!(!ok.keeps("i-1", "stdout", "an Error here"));
        assert!(!ok.keeps("i-1", "stderr", "all fine"));
    }
}
