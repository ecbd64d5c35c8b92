//! Tests of the cron parser and schedule.

use super::*;

/// Unix milliseconds of a UTC date and time.
fn at(y: i64, mo: u32, d: u32, h: u32, mi: u32) -> u64 {
    let days = days_from_civil(y, mo, d);
    ((days * 1440 + i64::from(h * 60 + mi)) * 60_000) as u64
}

fn cron(expr: &str) -> CronSchedule {
    CronSchedule::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"))
}

fn next(expr: &str, from: u64) -> Option<u64> {
    cron(expr).next_after(from)
}

/// Human-readable form of a fire time, for assertion messages.
fn show(ms: Option<u64>) -> String {
    match ms {
        None => "never".into(),
        Some(ms) => {
            let min = (ms / 60_000) as i64;
            let (y, m, d) = civil_from_days(min.div_euclid(1440));
            let mod_ = min.rem_euclid(1440);
            format!("{y:04}-{m:02}-{d:02} {:02}:{:02}", mod_ / 60, mod_ % 60)
        }
    }
}

fn assert_next(expr: &str, from: u64, want: u64) {
    let got = next(expr, from);
    assert_eq!(
        got,
        Some(want),
        "{expr} after {}: got {}, want {}",
        show(Some(from)),
        show(got),
        show(Some(want))
    );
}

/// The values a field selects.
fn values(mask: u64) -> Vec<u32> {
    (0..64).filter(|&v| bit(mask, v)).collect()
}

fn err(expr: &str) -> CronError {
    match CronSchedule::parse(expr) {
        Ok(s) => panic!("{expr} parsed: {s:?}"),
        Err(e) => e,
    }
}

// ----- parsing

#[test]
fn parse_errors() {
    assert_eq!(err(""), CronError::Empty);
    assert_eq!(err("   "), CronError::Empty);
    assert_eq!(err("* * * *"), CronError::FieldCount { found: 4 });
    assert_eq!(err("* * * * * *"), CronError::FieldCount { found: 6 });
    assert_eq!(err("@reboot"), CronError::UnknownAlias("@reboot".into()));
    assert_eq!(err("@every"), CronError::UnknownAlias("@every".into()));

    let out = |field, value| CronError::OutOfRange { field, value };
    assert_eq!(err("60 * * * *"), out(CronField::Minute, 60));
    assert_eq!(err("* 24 * * *"), out(CronField::Hour, 24));
    assert_eq!(err("* * 0 * *"), out(CronField::DayOfMonth, 0));
    assert_eq!(err("* * 32 * *"), out(CronField::DayOfMonth, 32));
    assert_eq!(err("* * * 0 *"), out(CronField::Month, 0));
    assert_eq!(err("* * * 13 *"), out(CronField::Month, 13));
    assert_eq!(err("* * * * 8"), out(CronField::DayOfWeek, 8));
    assert_eq!(err("1-99 * * * *"), out(CronField::Minute, 99));
    assert_eq!(err("99999999999 * * * *"), out(CronField::Minute, u32::MAX));

    let invalid = |field, value: &str| CronError::InvalidValue {
        field,
        value: value.into(),
    };
    assert_eq!(err("x * * * *"), invalid(CronField::Minute, "x"));
    assert_eq!(err("MON * * * *"), invalid(CronField::Minute, "MON"));
    assert_eq!(err("* * * * JAN"), invalid(CronField::DayOfWeek, "JAN"));
    assert_eq!(err("* * * MON *"), invalid(CronField::Month, "MON"));
    assert_eq!(err("* * * JANUARY *"), invalid(CronField::Month, "JANUARY"));
    assert_eq!(err("1,,2 * * * *"), invalid(CronField::Minute, ""));
    assert_eq!(err("1, * * * *"), invalid(CronField::Minute, ""));
    assert_eq!(err("1- * * * *"), invalid(CronField::Minute, ""));
    assert_eq!(err("-1 * * * *"), invalid(CronField::Minute, ""));
    assert_eq!(err("1-2-3 * * * *"), invalid(CronField::Minute, "2-3"));
    assert_eq!(err("+1 * * * *"), invalid(CronField::Minute, "+1"));
    assert_eq!(err("** * * * *"), invalid(CronField::Minute, "**"));
    assert_eq!(err("* ? * * *"), invalid(CronField::Hour, "?"));

    assert_eq!(
        err("* * 5-1 * *"),
        CronError::ReversedRange {
            field: CronField::DayOfMonth,
            value: "5-1".into()
        }
    );
    assert_eq!(
        err("* * * DEC-JAN *"),
        CronError::ReversedRange {
            field: CronField::Month,
            value: "DEC-JAN".into()
        }
    );
    let step = |field, value: &str| CronError::InvalidStep {
        field,
        value: value.into(),
    };
    assert_eq!(err("*/0 * * * *"), step(CronField::Minute, "*/0"));
    assert_eq!(err("* */x * * *"), step(CronField::Hour, "*/x"));
    assert_eq!(err("* * * * 1-5/"), step(CronField::DayOfWeek, "1-5/"));
    assert_eq!(err("*/-1 * * * *"), step(CronField::Minute, "*/-1"));
    assert_eq!(err("*/1/2 * * * *"), step(CronField::Minute, "*/1/2"));
}

#[test]
fn error_messages_name_the_field_and_value() {
    let msg = |expr: &str| err(expr).to_string();
    assert_eq!(msg("61 * * * *"), "minute value 61 is out of range 0-59");
    assert_eq!(
        msg("* * * FOO *"),
        "invalid month value 'FOO': expected a number 1-12 or a name JAN-DEC"
    );
    assert_eq!(
        msg("* * * * funday"),
        "invalid day-of-week value 'funday': expected a number 0-7 or a name SUN-SAT"
    );
    assert_eq!(
        msg("* h * * *"),
        "invalid hour value 'h': expected a number 0-23"
    );
    assert_eq!(
        msg("* * 9-3 * *"),
        "invalid day-of-month range '9-3': start is after end"
    );
    assert_eq!(
        msg("*/0 * * * *"),
        "invalid minute step in '*/0': expected a positive number"
    );
    assert!(msg("* *").contains("found 2"));
    assert!(msg("@often").contains("'@often'"));
    // It is a std error.
    let e: Box<dyn std::error::Error> = Box::new(err(""));
    assert_eq!(e.to_string(), "empty cron expression");
}

#[test]
fn operators() {
    let s = cron("* * * * *");
    assert_eq!(values(s.minutes), (0..60).collect::<Vec<_>>());
    assert_eq!(values(s.hours), (0..24).collect::<Vec<_>>());
    assert_eq!(values(s.days_of_month), (1..32).collect::<Vec<_>>());
    assert_eq!(values(s.months), (1..13).collect::<Vec<_>>());
    assert_eq!(values(s.days_of_week), (0..7).collect::<Vec<_>>());
    assert!(!s.dom_restricted && !s.dow_restricted);

    let s = cron("5,10,59 0 1,15 6 0");
    assert_eq!(values(s.minutes), vec![5, 10, 59]);
    assert_eq!(values(s.hours), vec![0]);
    assert_eq!(values(s.days_of_month), vec![1, 15]);
    assert_eq!(values(s.months), vec![6]);
    assert_eq!(values(s.days_of_week), vec![0]);
    assert!(s.dom_restricted && s.dow_restricted);

    let s = cron("10-12 9-17 1-3 3-5 1-5");
    assert_eq!(values(s.minutes), vec![10, 11, 12]);
    assert_eq!(values(s.hours), (9..=17).collect::<Vec<_>>());
    assert_eq!(values(s.days_of_month), vec![1, 2, 3]);
    assert_eq!(values(s.months), vec![3, 4, 5]);
    assert_eq!(values(s.days_of_week), vec![1, 2, 3, 4, 5]);

    let s = cron("*/15 */6 */10 */5 */2");
    assert_eq!(values(s.minutes), vec![0, 15, 30, 45]);
    assert_eq!(values(s.hours), vec![0, 6, 12, 18]);
    assert_eq!(values(s.days_of_month), vec![1, 11, 21, 31]);
    assert_eq!(values(s.months), vec![1, 6, 11]);
    assert_eq!(values(s.days_of_week), vec![0, 2, 4, 6]);
    // `*/n` does not restrict the day fields (Vixie).
    assert!(!s.dom_restricted && !s.dow_restricted);

    let s = cron("5-30/10 1-23/11 2-9/3 2-12/5 1-7/3");
    assert_eq!(values(s.minutes), vec![5, 15, 25]);
    assert_eq!(values(s.hours), vec![1, 12, 23]);
    assert_eq!(values(s.days_of_month), vec![2, 5, 8]);
    assert_eq!(values(s.months), vec![2, 7, 12]);
    assert_eq!(values(s.days_of_week), vec![0, 1, 4]); // 7 is Sunday

    // `a/n`: from a to the maximum.
    let s = cron("50/3 20/2 * * *");
    assert_eq!(values(s.minutes), vec![50, 53, 56, 59]);
    assert_eq!(values(s.hours), vec![20, 22]);

    // A step larger than the range keeps the start only.
    assert_eq!(values(cron("*/90 * * * *").minutes), vec![0]);

    // Mixed lists, overlapping items.
    let s = cron("0-4/2,3,*/20 * * * *");
    assert_eq!(values(s.minutes), vec![0, 2, 3, 4, 20, 40]);
}

#[test]
fn names_and_sunday() {
    let s = cron("0 0 * jan,Mar-MAY,dec mon-FRI");
    assert_eq!(values(s.months), vec![1, 3, 4, 5, 12]);
    assert_eq!(values(s.days_of_week), vec![1, 2, 3, 4, 5]);
    assert_eq!(values(cron("0 0 * * sun").days_of_week), vec![0]);
    assert_eq!(values(cron("0 0 * * 7").days_of_week), vec![0]);
    assert_eq!(values(cron("0 0 * * 0,7").days_of_week), vec![0]);
    assert_eq!(values(cron("0 0 * * FRI-7").days_of_week), vec![0, 5, 6]);
    // SUN is 0, so SAT-SUN runs backwards; write SAT,SUN or 6-7.
    assert!(matches!(
        err("0 0 * * sat-SUN"),
        CronError::ReversedRange {
            field: CronField::DayOfWeek,
            ..
        }
    ));
    assert_eq!(values(cron("0 0 * * 6-7").days_of_week), vec![0, 6]);
    assert_eq!(cron("0 0 * * 7"), cron("0 0 * * 7"));
}

#[test]
fn aliases() {
    let same = |alias: &str, expr: &str| {
        let a = cron(alias);
        let e = cron(expr);
        assert_eq!(
            (
                a.minutes,
                a.hours,
                a.days_of_month,
                a.months,
                a.days_of_week
            ),
            (
                e.minutes,
                e.hours,
                e.days_of_month,
                e.months,
                e.days_of_week
            ),
            "{alias}"
        );
        assert_eq!(
            (a.dom_restricted, a.dow_restricted),
            (e.dom_restricted, e.dow_restricted)
        );
        assert_eq!(a.to_string(), alias.to_ascii_lowercase());
    };
    same("@hourly", "0 * * * *");
    same("@daily", "0 0 * * *");
    same("@midnight", "0 0 * * *");
    same("@weekly", "0 0 * * 0");
    same("@monthly", "0 0 1 * *");
    same("@yearly", "0 0 1 1 *");
    same("@annually", "0 0 1 1 *");
    same("@DAILY", "0 0 * * *");

    let from = at(2026, 5, 17, 10, 30); // a Sunday
    assert_next("@hourly", from, at(2026, 5, 17, 11, 0));
    assert_next("@daily", from, at(2026, 5, 18, 0, 0));
    assert_next("@weekly", from, at(2026, 5, 24, 0, 0));
    assert_next("@monthly", from, at(2026, 6, 1, 0, 0));
    assert_next("@yearly", from, at(2027, 1, 1, 0, 0));
}

#[test]
fn display_from_str_round_trip() {
    for expr in [
        "* * * * *",
        "*/5 1-3 1,15 JAN-mar MON-FRI",
        "0 0 29 2 *",
        "@weekly",
    ] {
        let s: CronSchedule = expr.parse().unwrap();
        assert_eq!(s.to_string(), expr);
        assert_eq!(s.as_str(), expr);
        assert_eq!(CronSchedule::parse(&s.to_string()).unwrap(), s);
        assert_eq!(CronSchedule::try_from(expr).unwrap(), s);
    }
    // Whitespace is normalised.
    let s = cron("  0   12\t*  * \n 1-5 ");
    assert_eq!(s.to_string(), "0 12 * * 1-5");
    assert_eq!(s, cron("0 12 * * 1-5"));
    assert_eq!(
        " @Hourly ".parse::<CronSchedule>().unwrap().to_string(),
        "@hourly"
    );
    assert!("61 * * * *".parse::<CronSchedule>().is_err());
}

// ----- next fire times

#[test]
fn next_is_strictly_after_and_on_a_whole_minute() {
    let t = at(2026, 3, 10, 12, 0);
    // Exactly at a fire time: the next one.
    assert_next("* * * * *", t, t + 60_000);
    assert_next("0 12 * * *", t, at(2026, 3, 11, 12, 0));
    // Within the minute.
    assert_next("* * * * *", t + 1, t + 60_000);
    assert_next("* * * * *", t + 59_999, t + 60_000);
    assert_next("0 12 * * *", t + 30_000, at(2026, 3, 11, 12, 0));
    // A millisecond before.
    assert_next("0 12 * * *", t - 1, t);
    assert_next("30 12 * * *", t + 123, at(2026, 3, 10, 12, 30));
    for from in [0u64, 1, 59_999, 60_000, 1_683_603_150_102, t + 7] {
        for expr in ["* * * * *", "*/7 * * * *", "0 0 * * *", "13 4 * * 2"] {
            let n = next(expr, from).unwrap();
            assert!(n > from, "{expr} after {from}: {n}");
            assert_eq!(n % 60_000, 0);
            assert!(cron(expr).matches(n));
        }
    }
    // The epoch itself.
    assert_next("0 0 * * *", 0, 86_400_000);
    assert_next("* * * * *", 0, 60_000);
}

#[test]
fn rollovers() {
    // Minute -> hour.
    assert_next(
        "*/20 * * * *",
        at(2026, 1, 1, 10, 41),
        at(2026, 1, 1, 11, 0),
    );
    // Hour -> day.
    assert_next("15 9 * * *", at(2026, 1, 1, 9, 16), at(2026, 1, 2, 9, 15));
    // Day -> month.
    assert_next("0 0 1 * *", at(2026, 1, 31, 23, 59), at(2026, 2, 1, 0, 0));
    // Month -> year.
    assert_next("0 0 * * *", at(2026, 12, 31, 23, 59), at(2027, 1, 1, 0, 0));
    assert_next(
        "59 23 31 12 *",
        at(2026, 12, 31, 23, 59),
        at(2027, 12, 31, 23, 59),
    );
    // Months without the day are skipped.
    assert_next("0 0 31 * *", at(2026, 3, 31, 0, 0), at(2026, 5, 31, 0, 0));
    assert_next("0 0 30 * *", at(2026, 1, 30, 0, 0), at(2026, 3, 30, 0, 0));
    // Month restrictions.
    assert_next(
        "0 6 1 JUN,SEP *",
        at(2026, 7, 15, 0, 0),
        at(2026, 9, 1, 6, 0),
    );
    assert_next(
        "0 6 1 JUN,SEP *",
        at(2026, 9, 1, 6, 0),
        at(2027, 6, 1, 6, 0),
    );
}

#[test]
fn leap_years() {
    assert_next("0 0 29 2 *", at(2026, 1, 1, 0, 0), at(2028, 2, 29, 0, 0));
    assert_next("0 0 29 2 *", at(2024, 2, 29, 0, 0), at(2028, 2, 29, 0, 0));
    assert_next("0 0 29 2 *", at(2024, 2, 28, 23, 59), at(2024, 2, 29, 0, 0));
    // 2100 is not a leap year, 2000 was.
    assert_next("0 0 29 2 *", at(2097, 3, 1, 0, 0), at(2104, 2, 29, 0, 0));
    assert_next("0 0 29 2 *", at(1999, 1, 1, 0, 0), at(2000, 2, 29, 0, 0));
    // The last day of February.
    assert_next("0 0 * 3 *", at(2028, 2, 28, 12, 0), at(2028, 3, 1, 0, 0));
    assert_next(
        "0 12 28-29 2 *",
        at(2028, 2, 28, 12, 0),
        at(2028, 2, 29, 12, 0),
    );
    assert_next(
        "0 12 28-29 2 *",
        at(2027, 2, 28, 12, 0),
        at(2028, 2, 28, 12, 0),
    );
}

#[test]
fn never_fires() {
    assert_eq!(next("0 0 30 2 *", at(2026, 1, 1, 0, 0)), None);
    assert_eq!(next("0 0 31 4,6,9,11 *", at(2026, 1, 1, 0, 0)), None);
    // Too late for a u64.
    assert_eq!(next("* * * * *", u64::MAX), None);
    let last_minute = u64::MAX / 60_000 * 60_000;
    assert_eq!(next("* * * * *", last_minute - 1), Some(last_minute));
    assert_eq!(next("* * * * *", last_minute), None);
}

#[test]
fn day_of_month_or_day_of_week() {
    // Both restricted: the 13th OR a Friday.
    // 2026-03-01 is a Sunday: Friday 6th comes before the 13th.
    let from = at(2026, 3, 1, 0, 0);
    assert_next("0 0 13 * FRI", from, at(2026, 3, 6, 0, 0));
    assert_next("0 0 13 * FRI", at(2026, 3, 6, 0, 0), at(2026, 3, 13, 0, 0)); // also a Friday
    assert_next("0 0 13 * FRI", at(2026, 3, 13, 0, 0), at(2026, 3, 20, 0, 0));
    assert_next("0 0 2 * FRI", from, at(2026, 3, 2, 0, 0)); // Monday the 2nd
                                                            // Day-of-week unrestricted: day-of-month alone decides.
    assert_next("0 0 13 * *", from, at(2026, 3, 13, 0, 0));
    // Day-of-month unrestricted: day-of-week alone decides.
    assert_next("0 0 * * FRI", from, at(2026, 3, 6, 0, 0));
    assert_next("0 0 * * 0", from, at(2026, 3, 8, 0, 0));
    assert_next("0 0 * * 7", from, at(2026, 3, 8, 0, 0));
    // A star-step counts as unrestricted (Vixie): odd days AND Mondays.
    // Mondays of March 2026: 2, 9, 16, 23, 30 -> the 9th is the first odd one.
    assert_next("0 0 */2 * MON", from, at(2026, 3, 9, 0, 0));
    // ... while a range makes it restricted: days 1-31 step 2 OR Monday.
    assert_next(
        "0 0 1-31/2 * MON",
        at(2026, 3, 1, 0, 0),
        at(2026, 3, 2, 0, 0),
    );
    // With a month restriction, the OR applies inside those months only.
    assert_next("0 0 1 FEB SUN", at(2026, 2, 2, 0, 0), at(2026, 2, 8, 0, 0));
    assert_next("0 0 1 FEB SUN", at(2026, 2, 28, 0, 0), at(2027, 2, 1, 0, 0));
}

/// next_after agrees with a minute-by-minute scan using `matches`.
#[test]
fn agrees_with_brute_force() {
    let exprs = [
        "* * * * *",
        "*/7 * * * *",
        "5-10,40 */5 * * *",
        "0 0 * * *",
        "30 23 * * 1-5",
        "0 12 13 * FRI",
        "0 0 */3 * MON",
        "15 3 1,15,31 * *",
        "0 0 * FEB,MAR SUN",
        "0 */4 29-31 * *",
        "59 23 28-31 * 0",
    ];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let lo = at(2023, 1, 1, 0, 0);
    let span = at(2031, 1, 1, 0, 0) - lo;
    for expr in exprs {
        let s = cron(expr);
        for _ in 0..12 {
            let from = lo + rand() % span;
            let want = {
                let mut t = (from / 60_000 + 1) * 60_000;
                while !s.matches(t) {
                    t += 60_000;
                }
                t
            };
            assert_eq!(
                s.next_after(from),
                Some(want),
                "{expr} after {}",
                show(Some(from))
            );
        }
    }
}
