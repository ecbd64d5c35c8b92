//! Five-field cron schedules, in UTC, for scheduled VS tasks.
//!
//! `minute hour day-of-month month day-of-week`, as in Vixie cron:
//!
//! | Field        | Values | Names                       |
//! |--------------|--------|-----------------------------|
//! | minute       | 0–59   |                             |
//! | hour         | 0–23   |                             |
//! | day-of-month | 1–31   |                             |
//! | month        | 1–12   | `JAN`–`DEC`                 |
//! | day-of-week  | 0–7    | `SUN`–`SAT` (0 and 7 = Sunday) |
//!
//! Each field is a comma-separated list of `*`, `a`, `a-b`, `*/n`, `a-b/n`
//! or `a/n` (`a` to the field's maximum, every `n`). Names are
//! case-insensitive and may be used wherever a number may. The aliases
//! `@yearly` (`@annually`), `@monthly`, `@weekly`, `@daily` (`@midnight`)
//! and `@hourly` stand for `0 0 1 1 *`, `0 0 1 * *`, `0 0 * * 0`,
//! `0 0 * * *` and `0 * * * *`.
//!
//! Days follow the Vixie rule: when both day-of-month and day-of-week are
//! restricted (their text does not start with `*`), a day matches if
//! **either** matches; otherwise it must match both (so `*/2` counts as
//! unrestricted here, as in Vixie cron).
//!
//! A schedule that can never fire (`0 0 30 2 *`) parses, and
//! [`CronSchedule::next_after`] returns `None` for it.
//!
//! Std only: the civil-date arithmetic is [`crate::civil`].

use crate::civil::{civil_from_days, days_from_civil, weekday};
use std::fmt;
use std::str::FromStr;

const MS_PER_MINUTE: u64 = 60_000;
const MINUTES_PER_DAY: u64 = 1_440;
/// The Gregorian calendar repeats every 400 years (146 097 days, a whole
/// number of weeks): a schedule that does not fire within 400 years of a
/// time never fires after it.
const SEARCH_YEARS: i64 = 401;

/// One of the five fields of a cron expression.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CronField {
    Minute,
    Hour,
    DayOfMonth,
    Month,
    DayOfWeek,
}

impl CronField {
    const ALL: [CronField; 5] = [
        CronField::Minute,
        CronField::Hour,
        CronField::DayOfMonth,
        CronField::Month,
        CronField::DayOfWeek,
    ];

    /// Smallest and largest value the field accepts.
    pub fn bounds(self) -> (u32, u32) {
        match self {
            CronField::Minute => (0, 59),
            CronField::Hour => (0, 23),
            CronField::DayOfMonth => (1, 31),
            CronField::Month => (1, 12),
            CronField::DayOfWeek => (0, 7),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            CronField::Minute => "minute",
            CronField::Hour => "hour",
            CronField::DayOfMonth => "day-of-month",
            CronField::Month => "month",
            CronField::DayOfWeek => "day-of-week",
        }
    }

    fn names(self) -> &'static [&'static str] {
        match self {
            CronField::Month => &[
                "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
            ],
            CronField::DayOfWeek => &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
            _ => &[],
        }
    }
}

impl fmt::Display for CronField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a cron expression was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CronError {
    /// Nothing but whitespace.
    Empty,
    /// Not five fields.
    FieldCount { found: usize },
    /// An `@alias` that is not one of the supported ones.
    UnknownAlias(String),
    /// Neither a number nor (where allowed) a name.
    InvalidValue { field: CronField, value: String },
    /// A number outside the field's bounds.
    OutOfRange { field: CronField, value: u32 },
    /// `a-b` with `a > b`.
    ReversedRange { field: CronField, value: String },
    /// A step that is not a positive number.
    InvalidStep { field: CronField, value: String },
}

impl fmt::Display for CronError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CronError::Empty => f.write_str("empty cron expression"),
            CronError::FieldCount { found } => write!(
                f,
                "a cron expression has 5 fields (minute hour day-of-month month \
                 day-of-week), found {found}"
            ),
            CronError::UnknownAlias(a) => write!(
                f,
                "unknown cron alias '{a}' (expected @yearly, @annually, @monthly, \
                 @weekly, @daily, @midnight or @hourly)"
            ),
            CronError::InvalidValue { field, value } => {
                let (min, max) = field.bounds();
                let names = field.names();
                if names.is_empty() {
                    write!(
                        f,
                        "invalid {field} value '{value}': expected a number {min}-{max}"
                    )
                } else {
                    write!(
                        f,
                        "invalid {field} value '{value}': expected a number {min}-{max} \
                         or a name {}-{}",
                        names[0],
                        names[names.len() - 1]
                    )
                }
            }
            CronError::OutOfRange { field, value } => {
                let (min, max) = field.bounds();
                write!(f, "{field} value {value} is out of range {min}-{max}")
            }
            CronError::ReversedRange { field, value } => {
                write!(f, "invalid {field} range '{value}': start is after end")
            }
            CronError::InvalidStep { field, value } => write!(
                f,
                "invalid {field} step in '{value}': expected a positive number"
            ),
        }
    }
}

impl std::error::Error for CronError {}

/// A parsed five-field cron schedule, evaluated in UTC.
///
/// Displays as the expression it was parsed from, with whitespace
/// normalised (and an alias in lower case).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CronSchedule {
    expr: String,
    /// Bit `v` set when value `v` matches.
    minutes: u64,
    hours: u64,
    days_of_month: u64,
    months: u64,
    /// Bits 0–6, Sunday = 0 (a 7 in the expression sets bit 0).
    days_of_week: u64,
    dom_restricted: bool,
    dow_restricted: bool,
}

impl CronSchedule {
    /// Parses a five-field expression or an `@alias`.
    pub fn parse(expr: &str) -> Result<CronSchedule, CronError> {
        let trimmed = expr.trim();
        if trimmed.is_empty() {
            return Err(CronError::Empty);
        }
        if trimmed.starts_with('@') {
            let alias = trimmed.to_ascii_lowercase();
            let fields = match alias.as_str() {
                "@yearly" | "@annually" => "0 0 1 1 *",
                "@monthly" => "0 0 1 * *",
                "@weekly" => "0 0 * * 0",
                "@daily" | "@midnight" => "0 0 * * *",
                "@hourly" => "0 * * * *",
                _ => return Err(CronError::UnknownAlias(trimmed.to_string())),
            };
            let mut schedule = Self::parse_fields(fields)?;
            schedule.expr = alias;
            return Ok(schedule);
        }
        Self::parse_fields(trimmed)
    }

    fn parse_fields(expr: &str) -> Result<CronSchedule, CronError> {
        let parts: Vec<&str> = expr.split_whitespace().collect();
        if parts.len() != 5 {
            return Err(CronError::FieldCount { found: parts.len() });
        }
        let mut masks = [0u64; 5];
        for ((mask, field), text) in masks.iter_mut().zip(CronField::ALL).zip(&parts) {
            *mask = parse_field(text, field)?;
        }
        let [minutes, hours, days_of_month, months, mut days_of_week] = masks;
        if days_of_week & (1 << 7) != 0 {
            days_of_week = (days_of_week & !(1 << 7)) | 1;
        }
        Ok(CronSchedule {
            expr: parts.join(" "),
            minutes,
            hours,
            days_of_month,
            months,
            days_of_week,
            dom_restricted: !parts[2].starts_with('*'),
            dow_restricted: !parts[4].starts_with('*'),
        })
    }

    /// The expression, whitespace normalised.
    pub fn as_str(&self) -> &str {
        &self.expr
    }

    /// The first fire time strictly after `unix_ms`: a whole minute, in
    /// milliseconds since the Unix epoch. `None` when the schedule never
    /// fires again (or the time does not fit a `u64`).
    pub fn next_after(&self, unix_ms: u64) -> Option<u64> {
        let start = unix_ms / MS_PER_MINUTE + 1; // minutes since the epoch
        let mut day = i64::try_from(start / MINUTES_PER_DAY).ok()?;
        // `start % MINUTES_PER_DAY` < 1440.
        let mut minute_of_day = (start % MINUTES_PER_DAY) as u32;
        let (start_year, _, _) = civil_from_days(day);
        let (mut year, mut month, mut dom) = civil_from_days(day);
        loop {
            if year > start_year + SEARCH_YEARS {
                return None;
            }
            if !bit(self.months, month) {
                // Skip to the first day of the next month.
                (year, month) = if month == 12 {
                    (year + 1, 1)
                } else {
                    (year, month + 1)
                };
                dom = 1;
                day = days_from_civil(year, month, 1);
                minute_of_day = 0;
                continue;
            }
            if self.day_matches(dom, weekday(day)) {
                if let Some(m) = self.first_minute_from(minute_of_day) {
                    let day = u64::try_from(day).ok()?;
                    return day
                        .checked_mul(MINUTES_PER_DAY)?
                        .checked_add(u64::from(m))?
                        .checked_mul(MS_PER_MINUTE);
                }
            }
            day += 1;
            (year, month, dom) = civil_from_days(day);
            minute_of_day = 0;
        }
    }

    /// Whether the schedule fires in the minute that contains `unix_ms`.
    pub fn matches(&self, unix_ms: u64) -> bool {
        let minutes = unix_ms / MS_PER_MINUTE;
        let Ok(day) = i64::try_from(minutes / MINUTES_PER_DAY) else {
            return false;
        };
        let minute_of_day = (minutes % MINUTES_PER_DAY) as u32;
        let (_, month, dom) = civil_from_days(day);
        bit(self.months, month)
            && self.day_matches(dom, weekday(day))
            && bit(self.hours, minute_of_day / 60)
            && bit(self.minutes, minute_of_day % 60)
    }

    fn day_matches(&self, dom: u32, dow: u32) -> bool {
        let dom_ok = bit(self.days_of_month, dom);
        let dow_ok = bit(self.days_of_week, dow);
        if self.dom_restricted && self.dow_restricted {
            dom_ok || dow_ok
        } else {
            dom_ok && dow_ok
        }
    }

    /// The first matching minute of a day at or after `minute_of_day`.
    fn first_minute_from(&self, minute_of_day: u32) -> Option<u32> {
        let (h0, m0) = (minute_of_day / 60, minute_of_day % 60);
        (h0..24).filter(|&h| bit(self.hours, h)).find_map(|h| {
            let from = if h == h0 { m0 } else { 0 };
            first_bit_from(self.minutes, from).map(|m| h * 60 + m)
        })
    }
}

impl FromStr for CronSchedule {
    type Err = CronError;
    fn from_str(s: &str) -> Result<Self, CronError> {
        CronSchedule::parse(s)
    }
}

impl TryFrom<&str> for CronSchedule {
    type Error = CronError;
    fn try_from(s: &str) -> Result<Self, CronError> {
        CronSchedule::parse(s)
    }
}

impl fmt::Display for CronSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expr)
    }
}

fn bit(mask: u64, v: u32) -> bool {
    v < 64 && mask & (1u64 << v) != 0
}

fn first_bit_from(mask: u64, from: u32) -> Option<u32> {
    if from >= 64 {
        return None;
    }
    let rest = mask & (u64::MAX << from);
    (rest != 0).then(|| rest.trailing_zeros())
}

/// The set of values a field's text selects, as a bit mask.
fn parse_field(text: &str, field: CronField) -> Result<u64, CronError> {
    let (min, max) = field.bounds();
    let mut mask = 0u64;
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                let step = step.parse::<u32>().ok().filter(|&s| s > 0).ok_or_else(|| {
                    CronError::InvalidStep {
                        field,
                        value: item.to_string(),
                    }
                })?;
                (range, Some(step))
            }
            None => (item, None),
        };
        let (lo, hi) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = split_range(range) {
            let (lo, hi) = (parse_value(a, field)?, parse_value(b, field)?);
            if lo > hi {
                return Err(CronError::ReversedRange {
                    field,
                    value: item.to_string(),
                });
            }
            (lo, hi)
        } else {
            let v = parse_value(range, field)?;
            // `a/n` runs from a to the field's maximum.
            (v, if step.is_some() { max } else { v })
        };
        let step = step.unwrap_or(1);
        let mut v = lo;
        while v <= hi {
            mask |= 1u64 << v;
            v += step;
        }
    }
    Ok(mask)
}

/// `a-b` split at its dash (`None` when there is no dash).
fn split_range(range: &str) -> Option<(&str, &str)> {
    range.split_once('-')
}

fn parse_value(text: &str, field: CronField) -> Result<u32, CronError> {
    let (min, max) = field.bounds();
    let invalid = || CronError::InvalidValue {
        field,
        value: text.to_string(),
    };
    let value = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for a u32 is out of range too.
        text.parse::<u32>().unwrap_or(u32::MAX)
    } else {
        let i = field
            .names()
            .iter()
            .position(|n| n.eq_ignore_ascii_case(text))
            .ok_or_else(invalid)?;
        // Months are numbered from 1, days of the week from 0 (Sunday).
        i as u32 + min
    };
    if value < min || value > max {
        return Err(CronError::OutOfRange { field, value });
    }
    Ok(value)
}

#[cfg(test)]
mod tests;
