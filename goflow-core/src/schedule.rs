//! When a DAG runs: cron expressions in a time zone, fixed intervals, once,
//! or only when triggered; and the data interval each run covers.
//!
//! Semantics follow Airflow's timetables: a scheduled run covers the data
//! interval `[start, end)` between two consecutive ticks and is started at
//! `end`; its logical date (the seed's `execution_date`) is `start`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::Error;

/// The span of data a run is responsible for: `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DataInterval {
    /// Inclusive start; also the run's logical date.
    pub start: DateTime<Utc>,
    /// Exclusive end; a scheduled run becomes due at this instant.
    pub end: DateTime<Utc>,
}

impl DataInterval {
    /// An interval from `start` to `end`.
    pub fn new(start: DateTime<Utc>, end: DateTime<Utc>) -> Self {
        Self { start, end }
    }

    /// An empty interval at one instant (manual and `@once` runs).
    pub fn at(t: DateTime<Utc>) -> Self {
        Self { start: t, end: t }
    }
}

/// A DAG's schedule.
#[derive(Clone, Debug)]
pub enum Schedule {
    /// Runs only when triggered (CLI, API or UI).
    Manual,
    /// One run, at the start date.
    Once,
    /// Runs at every tick of a cron expression, evaluated in a time zone.
    Cron(Box<CronSchedule>),
    /// Runs every fixed duration, counted from the start date.
    Interval(Duration),
}

/// A standard 5-field cron expression bound to a time zone.
#[derive(Clone, Debug)]
pub struct CronSchedule {
    source: String,
    tz: Tz,
    compiled: cron::Schedule,
}

impl CronSchedule {
    /// The expression as written (after alias expansion, e.g. `@daily` is
    /// `0 0 * * *`).
    pub fn expression(&self) -> &str {
        &self.source
    }

    /// The time zone the expression is evaluated in.
    pub fn tz(&self) -> Tz {
        self.tz
    }

    /// The first tick strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.compiled
            .after(&t.with_timezone(&self.tz))
            .next()
            .map(|d| d.with_timezone(&Utc))
    }

    /// The last tick at or before `t`.
    pub fn at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // `after(x).next_back()` is the last tick strictly before `x`, so ask
        // from one second past `t` (ticks fall on whole minutes).
        let probe = t + chrono::Duration::seconds(1);
        self.compiled
            .after(&probe.with_timezone(&self.tz))
            .next_back()
            .map(|d| d.with_timezone(&Utc))
    }
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Manual => f.write_str("@manual"),
            Schedule::Once => f.write_str("@once"),
            Schedule::Cron(c) if c.tz == Tz::UTC => f.write_str(&c.source),
            Schedule::Cron(c) => write!(f, "{} ({})", c.source, c.tz),
            Schedule::Interval(d) => write!(f, "@every {}", humantime::format_duration(*d)),
        }
    }
}

/// Expands the usual aliases to their 5-field expressions.
fn expand_alias(spec: &str) -> Option<&'static str> {
    Some(match spec {
        "@hourly" => "0 * * * *",
        "@daily" | "@midnight" => "0 0 * * *",
        "@weekly" => "0 0 * * 0",
        "@monthly" => "0 0 1 * *",
        "@yearly" | "@annually" => "0 0 1 1 *",
        _ => return None,
    })
}

/// Parses a time zone name such as `Europe/Paris` or `UTC`.
pub fn parse_tz(tz: &str) -> Result<Tz, Error> {
    Tz::from_str(tz).map_err(|_| Error::InvalidTimeZone { tz: tz.to_owned() })
}

impl Schedule {
    /// Parses a schedule: `@manual`, `@once`, `@hourly`, `@daily`,
    /// `@weekly`, `@monthly`, `@yearly`, `@every <duration>` (e.g.
    /// `@every 15m`), or a 5-field cron expression `minute hour
    /// day-of-month month day-of-week` evaluated in `tz`.
    pub fn parse(spec: &str, tz: &str) -> Result<Self, Error> {
        let spec = spec.trim();
        let tz = parse_tz(tz)?;
        match spec {
            "" | "@manual" => return Ok(Schedule::Manual),
            "@once" => return Ok(Schedule::Once),
            _ => {}
        }
        if let Some(rest) = spec.strip_prefix("@every") {
            let d =
                crate::duration::parse(rest.trim()).map_err(|reason| Error::InvalidSchedule {
                    schedule: spec.to_owned(),
                    reason,
                })?;
            if d < Duration::from_secs(1) {
                return Err(Error::InvalidSchedule {
                    schedule: spec.to_owned(),
                    reason: "the interval must be at least 1s".into(),
                });
            }
            return Ok(Schedule::Interval(d));
        }
        let source = match expand_alias(spec) {
            Some(expr) => expr,
            None if spec.starts_with('@') => {
                return Err(Error::InvalidSchedule {
                    schedule: spec.to_owned(),
                    reason: "unknown alias; expected one of @manual, @once, @hourly, @daily, \
                             @weekly, @monthly, @yearly, @every <duration>"
                        .into(),
                })
            }
            None => spec,
        };
        let compiled = compile_cron(source).map_err(|reason| Error::InvalidSchedule {
            schedule: spec.to_owned(),
            reason,
        })?;
        Ok(Schedule::Cron(Box::new(CronSchedule {
            source: source.to_owned(),
            tz,
            compiled,
        })))
    }

    /// The first logical date at or after `start`, or `None` for manual
    /// schedules.
    pub fn first_logical_date(&self, start: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Manual => None,
            Schedule::Once | Schedule::Interval(_) => Some(start),
            Schedule::Cron(c) => c.next_after(start - chrono::Duration::seconds(1)),
        }
    }

    /// The data interval whose logical date follows `logical_date` (the next
    /// run after the run at `logical_date`). `start` anchors fixed intervals.
    pub fn next_interval(
        &self,
        start: DateTime<Utc>,
        logical_date: Option<DateTime<Utc>>,
    ) -> Option<DataInterval> {
        let begin = match logical_date {
            None => self.first_logical_date(start)?,
            Some(prev) => match self {
                Schedule::Manual | Schedule::Once => return None,
                Schedule::Cron(c) => {
                    c.next_after(prev.max(start - chrono::Duration::seconds(1)))?
                }
                Schedule::Interval(_) => self.interval_for(start, prev)?.end,
            },
        };
        self.interval_for(start, begin)
    }

    /// The data interval that a run with logical date `t` covers: from the
    /// last tick at or before `t` to the tick after it. For `@once` and
    /// manual schedules the interval is the instant `t`.
    pub fn interval_for(&self, start: DateTime<Utc>, t: DateTime<Utc>) -> Option<DataInterval> {
        match self {
            Schedule::Manual | Schedule::Once => Some(DataInterval::at(t)),
            Schedule::Cron(c) => {
                let begin = c.at_or_before(t)?;
                let end = c.next_after(begin)?;
                Some(DataInterval::new(begin, end))
            }
            Schedule::Interval(d) => {
                let step = chrono::Duration::from_std(*d).ok()?;
                let step_ms = step.num_milliseconds().max(1);
                let offset = (t - start).num_milliseconds();
                let k = offset.div_euclid(step_ms);
                let begin = start + chrono::Duration::milliseconds(k * step_ms);
                Some(DataInterval::new(begin, begin + step))
            }
        }
    }

    /// The latest interval that has fully elapsed by `now` (the one a
    /// scheduler without catchup would run), if any.
    pub fn latest_complete_interval(
        &self,
        start: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Option<DataInterval> {
        match self {
            Schedule::Manual => None,
            Schedule::Once => (start <= now).then(|| DataInterval::at(start)),
            Schedule::Cron(c) => {
                let end = c.at_or_before(now)?;
                let interval = self.interval_for(start, end - chrono::Duration::seconds(1))?;
                (interval.start >= start).then_some(interval)
            }
            Schedule::Interval(_) => {
                let current = self.interval_for(start, now)?;
                let step = current.end - current.start;
                let previous = DataInterval::new(current.start - step, current.start);
                (previous.start >= start).then_some(previous)
            }
        }
    }

    /// When the next scheduled run after `now` becomes due (the end of its
    /// data interval), for display: `None` for manual schedules and once
    /// the interval would start after `end`.
    pub fn next_due_after(
        &self,
        start: DateTime<Utc>,
        end: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let due = self.next_due_unbounded(start, now)?;
        // The run due at `due` is the one whose interval ends there.
        let interval_start = match self {
            Schedule::Cron(c) => c.at_or_before(due - chrono::Duration::seconds(1))?,
            Schedule::Interval(d) => due - chrono::Duration::from_std(*d).ok()?,
            Schedule::Manual | Schedule::Once => due,
        };
        match end {
            Some(end) if interval_start > end => None,
            _ => Some(due),
        }
    }

    fn next_due_unbounded(
        &self,
        start: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Manual => None,
            Schedule::Once => (start > now).then_some(start),
            Schedule::Cron(c) => {
                let from = now.max(start);
                let mut tick = c.next_after(from)?;
                // The first due instant is the end of the first interval.
                if let Some(first) = self.first_logical_date(start) {
                    if tick <= first {
                        tick = c.next_after(first)?;
                    }
                }
                Some(tick)
            }
            Schedule::Interval(_) => {
                if now < start {
                    return self.interval_for(start, start).map(|i| i.end);
                }
                self.interval_for(start, now).map(|i| i.end)
            }
        }
    }
}

/// Compiles a 5-field cron expression into the `cron` crate's 6-field form.
///
/// The `cron` crate numbers days of the week 1 (Sunday) to 7 (Saturday);
/// standard cron numbers them 0 (Sunday) to 6 (Saturday), with 7 also
/// Sunday. The day-of-week field is therefore expanded to an explicit list
/// here, so `1-5` keeps meaning Monday to Friday.
fn compile_cron(expr: &str) -> Result<cron::Schedule, String> {
    const NAMES: [&str; 5] = ["minute", "hour", "day-of-month", "month", "day-of-week"];
    let fields: Vec<&str> = expr.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected 5 fields (minute hour day-of-month month day-of-week), found {}",
            fields.len()
        ));
    }
    let dow = translate_day_of_week(fields[4])
        .map_err(|e| format!("day-of-week field {:?}: {e}", fields[4]))?;
    let six = |f: [&str; 5]| format!("0 {} {} {} {} {}", f[0], f[1], f[2], f[3], f[4]);
    match cron::Schedule::from_str(&six([fields[0], fields[1], fields[2], fields[3], &dow])) {
        Ok(s) => Ok(s),
        Err(_) => {
            // Name the first field that does not parse on its own.
            for (i, name) in NAMES.iter().enumerate().take(4) {
                let mut probe = ["*"; 5];
                probe[i] = fields[i];
                if cron::Schedule::from_str(&six(probe)).is_err() {
                    return Err(format!(
                        "{name} field {:?} is not valid ({})",
                        fields[i],
                        field_range(i)
                    ));
                }
            }
            Err("the fields do not form a valid schedule".into())
        }
    }
}

fn field_range(i: usize) -> &'static str {
    match i {
        0 => "expected 0-59, lists, ranges and steps",
        1 => "expected 0-23, lists, ranges and steps",
        2 => "expected 1-31, lists, ranges and steps",
        3 => "expected 1-12 or JAN-DEC, lists, ranges and steps",
        _ => "expected 0-7 or SUN-SAT, lists, ranges and steps",
    }
}

fn day_number(token: &str) -> Result<u32, String> {
    const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    let lower = token.to_ascii_lowercase();
    if let Some(i) = DAYS.iter().position(|d| *d == lower) {
        return Ok(i as u32);
    }
    match lower.parse::<u32>() {
        Ok(n) if n <= 7 => Ok(n % 7),
        _ => Err(format!("{token:?} is not a day (0-7 or SUN-SAT)")),
    }
}

/// Expands a standard day-of-week field into the `cron` crate's numbering.
fn translate_day_of_week(field: &str) -> Result<String, String> {
    if field == "*" || field == "?" {
        return Ok("*".into());
    }
    let mut days = [false; 7];
    for item in field.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s
                    .parse()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| format!("step {s:?} is not a positive number"))?;
                (r, step)
            }
            None => (item, 1),
        };
        let (lo, hi) = if range == "*" {
            (0, 6)
        } else if let Some((a, b)) = range.split_once('-') {
            let lo = day_number(a)?;
            // `7` as the end of a range means Sunday at the end of the week.
            let hi = if b == "7" { 7 } else { day_number(b)? };
            if hi < lo {
                return Err(format!("range {range:?} runs backwards"));
            }
            (lo, hi)
        } else {
            let d = day_number(range)?;
            (d, if step > 1 { 6 } else { d })
        };
        let mut d = lo;
        while d <= hi {
            days[(d % 7) as usize] = true;
            d += step;
        }
    }
    let list: Vec<String> = (0..7)
        .filter(|d| days[*d])
        .map(|d| (d + 1).to_string())
        .collect();
    if list.is_empty() {
        return Err("selects no day".into());
    }
    Ok(list.join(","))
}

/// Parses a date or date-time given in a DAG's time zone: `2026-01-01`,
/// `2026-01-01T06:00:00`, `2026-01-01 06:00`, or RFC 3339 with an offset.
///
/// A local time that does not exist (skipped by a DST change) is refused;
/// an ambiguous one takes the earlier instant.
pub fn parse_datetime(s: &str, tz: Tz) -> Result<DateTime<Utc>, Error> {
    let bad = |reason: &str| Error::InvalidDate {
        date: s.to_owned(),
        reason: reason.to_owned(),
    };
    let s_trim = s.trim();
    if let Ok(dt) = DateTime::parse_from_rfc3339(s_trim) {
        return Ok(dt.with_timezone(&Utc));
    }
    let naive = if let Ok(d) = NaiveDate::parse_from_str(s_trim, "%Y-%m-%d") {
        d.and_hms_opt(0, 0, 0).ok_or_else(|| bad("invalid time"))?
    } else {
        [
            "%Y-%m-%dT%H:%M:%S",
            "%Y-%m-%dT%H:%M",
            "%Y-%m-%d %H:%M:%S",
            "%Y-%m-%d %H:%M",
        ]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s_trim, f).ok())
        .ok_or_else(|| {
            bad("expected YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS], or RFC 3339 with an offset")
        })?
    };
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(dt) => Ok(dt.with_timezone(&Utc)),
        LocalResult::Ambiguous(early, _) => Ok(early.with_timezone(&Utc)),
        LocalResult::None => Err(bad(&format!("this local time does not exist in {tz}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn aliases_and_manual() {
        assert!(matches!(
            Schedule::parse("", "UTC").unwrap(),
            Schedule::Manual
        ));
        assert!(matches!(
            Schedule::parse("@once", "UTC").unwrap(),
            Schedule::Once
        ));
        let Schedule::Cron(c) = Schedule::parse("@daily", "UTC").unwrap() else {
            panic!("not cron")
        };
        assert_eq!(c.expression(), "0 0 * * *");
        assert!(matches!(
            Schedule::parse("@every 15m", "UTC").unwrap(),
            Schedule::Interval(d) if d == Duration::from_secs(900)
        ));
    }

    #[test]
    fn invalid_cron_names_the_field() {
        let err = Schedule::parse("61 * * * *", "UTC")
            .unwrap_err()
            .to_string();
        assert!(err.contains("minute field \"61\""), "{err}");
        let err = Schedule::parse("0 6 * *", "UTC").unwrap_err().to_string();
        assert!(err.contains("expected 5 fields"), "{err}");
        let err = Schedule::parse("0 0 * * 9", "UTC").unwrap_err().to_string();
        assert!(err.contains("day-of-week"), "{err}");
        let err = Schedule::parse("@fortnightly", "UTC")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown alias"), "{err}");
        assert!(Schedule::parse("0 6 * * *", "Mars/Olympus").is_err());
    }

    #[test]
    fn day_of_week_uses_standard_numbering() {
        // 2026-01-05 is a Monday.
        let s = Schedule::parse("0 9 * * 1-5", "UTC").unwrap();
        let Schedule::Cron(c) = &s else { panic!() };
        let sat = utc("2026-01-10T00:00:00Z");
        assert_eq!(c.next_after(sat), Some(utc("2026-01-12T09:00:00Z")));
        let s = Schedule::parse("0 9 * * 0", "UTC").unwrap();
        let Schedule::Cron(c) = &s else { panic!() };
        assert_eq!(c.next_after(sat), Some(utc("2026-01-11T09:00:00Z")));
        let s = Schedule::parse("0 9 * * 5-7", "UTC").unwrap();
        let Schedule::Cron(c) = &s else { panic!() };
        assert_eq!(c.next_after(sat), Some(utc("2026-01-10T09:00:00Z")));
        assert_eq!(
            c.next_after(utc("2026-01-10T09:00:00Z")),
            Some(utc("2026-01-11T09:00:00Z"))
        );
        assert_eq!(
            c.next_after(utc("2026-01-11T09:00:00Z")),
            Some(utc("2026-01-16T09:00:00Z"))
        );
        let Schedule::Cron(c) = Schedule::parse("0 0 * * MON,wed", "UTC").unwrap() else {
            panic!()
        };
        assert_eq!(c.next_after(sat), Some(utc("2026-01-12T00:00:00Z")));
    }

    #[test]
    fn cron_data_intervals() {
        let s = Schedule::parse("0 6 * * *", "UTC").unwrap();
        let start = utc("2026-01-01T00:00:00Z");
        let first = s.next_interval(start, None).unwrap();
        assert_eq!(first.start, utc("2026-01-01T06:00:00Z"));
        assert_eq!(first.end, utc("2026-01-02T06:00:00Z"));
        let second = s.next_interval(start, Some(first.start)).unwrap();
        assert_eq!(second.start, first.end);
        let latest = s
            .latest_complete_interval(start, utc("2026-01-05T07:00:00Z"))
            .unwrap();
        assert_eq!(latest.start, utc("2026-01-04T06:00:00Z"));
        assert_eq!(latest.end, utc("2026-01-05T06:00:00Z"));
        assert_eq!(
            s.next_due_after(start, None, utc("2026-01-05T07:00:00Z")),
            Some(utc("2026-01-06T06:00:00Z"))
        );
        // Past the end date there is no next run.
        let end = Some(utc("2026-01-03T00:00:00Z"));
        assert_eq!(
            s.next_due_after(start, end, utc("2026-01-05T07:00:00Z")),
            None
        );
        assert_eq!(
            s.next_due_after(start, end, utc("2026-01-02T07:00:00Z")),
            Some(utc("2026-01-03T06:00:00Z")),
            "the interval starting 01-02 06:00 is before the end"
        );
        // Before the first interval has ended, nothing is complete.
        assert_eq!(
            s.latest_complete_interval(start, utc("2026-01-01T07:00:00Z")),
            None
        );
        assert_eq!(
            s.interval_for(start, utc("2026-01-03T12:00:00Z"))
                .unwrap()
                .start,
            utc("2026-01-03T06:00:00Z")
        );
    }

    #[test]
    fn cron_in_a_time_zone_across_dst() {
        // Paris switches to summer time on 2026-03-29 (02:00 -> 03:00).
        let s = Schedule::parse("0 6 * * *", "Europe/Paris").unwrap();
        let start = utc("2026-03-27T00:00:00Z");
        let a = s.next_interval(start, None).unwrap();
        assert_eq!(a.start, utc("2026-03-27T05:00:00Z")); // 06:00 CET
        let b = s.next_interval(start, Some(a.start)).unwrap();
        let c = s.next_interval(start, Some(b.start)).unwrap();
        assert_eq!(c.start, utc("2026-03-29T04:00:00Z")); // 06:00 CEST
        assert_eq!(c.start - b.start, chrono::Duration::hours(23));
        // A tick inside the skipped hour does not fire that day.
        let s = Schedule::parse("30 2 * * *", "Europe/Paris").unwrap();
        let Schedule::Cron(cron) = &s else { panic!() };
        let next = cron.next_after(utc("2026-03-28T02:00:00Z")).unwrap();
        assert_eq!(next, utc("2026-03-30T00:30:00Z"));
    }

    #[test]
    fn fixed_intervals_count_from_start() {
        let s = Schedule::parse("@every 1h", "UTC").unwrap();
        let start = utc("2026-01-01T00:10:00Z");
        let i = s.interval_for(start, utc("2026-01-01T05:30:00Z")).unwrap();
        assert_eq!(i.start, utc("2026-01-01T05:10:00Z"));
        assert_eq!(i.end, utc("2026-01-01T06:10:00Z"));
        let next = s.next_interval(start, Some(i.start)).unwrap();
        assert_eq!(next.start, i.end);
        let latest = s
            .latest_complete_interval(start, utc("2026-01-01T05:30:00Z"))
            .unwrap();
        assert_eq!(latest.end, utc("2026-01-01T05:10:00Z"));
    }

    #[test]
    fn dates_in_a_time_zone() {
        let paris = parse_tz("Europe/Paris").unwrap();
        assert_eq!(
            parse_datetime("2026-01-01", paris).unwrap(),
            utc("2025-12-31T23:00:00Z")
        );
        assert_eq!(
            parse_datetime("2026-07-01T06:00", paris).unwrap(),
            utc("2026-07-01T04:00:00Z")
        );
        assert_eq!(
            parse_datetime("2026-07-01T06:00:00Z", paris).unwrap(),
            utc("2026-07-01T06:00:00Z")
        );
        let err = parse_datetime("2026-03-29T02:30", paris)
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not exist"), "{err}");
        assert!(parse_datetime("yesterday", paris).is_err());
    }
}
