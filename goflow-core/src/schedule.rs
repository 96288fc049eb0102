//! When a DAG runs: cron expressions in a time zone, fixed intervals, once,
//! or only when triggered; and the data interval each run covers.
//!
//! Semantics follow Airflow's timetables: a scheduled run covers the data
//! interval `[start, end)` between two consecutive ticks and is started at
//! `end`; its logical date (the seed's `execution_date`) is `start`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{
    DateTime, Datelike, FixedOffset, LocalResult, NaiveDate, NaiveDateTime, Offset, TimeDelta,
    TimeZone, Timelike, Utc,
};
use chrono_tz::{GapInfo, Tz};
use goflow_syntax::schedule::Spec;
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
///
/// The expression is matched against the wall clock of the time zone, the
/// way Vixie cron and Airflow (croniter) read it:
///
/// * When both day-of-month and day-of-week are restricted (neither selects
///   every day), a day matches if *either* matches: `0 0 1 * 1` runs on the
///   1st of every month and on every Monday. When one of them selects every
///   value (`*`, `?`, `1-31`, `*/1`, `0-6`, ...), only the other restricts.
/// * `L` in the day-of-month field is the last day of the month.
/// * A local time skipped by a DST change (02:30 on a spring-forward day in
///   Europe/Paris) runs shifted forward by the gap (03:30 summer time), as
///   Airflow does (the private `instants` method says why).
/// * A local time that happens twice (02:30 on a fall-back day in
///   Europe/Paris) runs once, at its first occurrence; a schedule that runs
///   every hour (hour field `*`) also runs in the repeated hour, as Vixie
///   cron and Airflow do, so that its runs stay an hour apart.
#[derive(Clone, Debug)]
pub struct CronSchedule {
    source: String,
    tz: Tz,
    fields: CronFields,
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
        // Local ticks map to instants in order except around a DST change,
        // where a shifted tick from the gap, or the second occurrence of a
        // repeated time, can land before the instant of an earlier-scanned
        // local tick. Such reordering spans at most the size of the change,
        // so scan local ticks from that much before `t`'s wall time, and on
        // past the best tick found by that much, keeping the earliest.
        let slack = self.offset_change_near(t);
        let mut cursor = self.wall_clock(t).checked_sub_signed(slack)?;
        let mut best: Option<(DateTime<Utc>, NaiveDateTime, TimeDelta)> = None;
        while let Some(local) = self.fields.next_after(cursor) {
            if let Some((_, best_local, best_slack)) = best {
                if local > best_local + best_slack {
                    break;
                }
            }
            for at in self.instants(local).into_iter().flatten() {
                if at > t && best.is_none_or(|(b, ..)| at < b) {
                    best = Some((at, local, self.offset_change_near(at)));
                }
            }
            cursor = local;
        }
        best.map(|(at, ..)| at)
    }

    /// The last tick at or before `t`.
    pub fn at_or_before(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // The mirror image of `next_after`.
        let slack = self.offset_change_near(t);
        let mut cursor = self.wall_clock(t).checked_add_signed(slack)?;
        let mut best: Option<(DateTime<Utc>, NaiveDateTime, TimeDelta)> = None;
        while let Some(local) = self.fields.at_or_before(cursor) {
            if let Some((_, best_local, best_slack)) = best {
                if local < best_local - best_slack {
                    break;
                }
            }
            for at in self.instants(local).into_iter().flatten() {
                if at <= t && best.is_none_or(|(b, ..)| at > b) {
                    best = Some((at, local, self.offset_change_near(at)));
                }
            }
            cursor = local.checked_sub_signed(TimeDelta::minutes(1))?;
        }
        best.map(|(at, ..)| at)
    }

    /// The local wall-clock time at `t`.
    fn wall_clock(&self, t: DateTime<Utc>) -> NaiveDateTime {
        t.with_timezone(&self.tz).naive_local()
    }

    /// How far the UTC offset moves within a day or so of `t`: zero unless
    /// a DST (or other offset) change is near.
    fn offset_change_near(&self, t: DateTime<Utc>) -> TimeDelta {
        let window = TimeDelta::hours(26);
        let offsets = [
            t.checked_sub_signed(window).unwrap_or(t),
            t,
            t.checked_add_signed(window).unwrap_or(t),
        ]
        .map(|u| {
            self.tz
                .offset_from_utc_datetime(&u.naive_utc())
                .fix()
                .local_minus_utc()
        });
        let max = offsets.iter().max().copied().unwrap_or(0);
        let min = offsets.iter().min().copied().unwrap_or(0);
        TimeDelta::seconds(i64::from(max - min))
    }

    /// The instants at which the local tick `local` runs.
    ///
    /// * A local time that exists once runs then.
    /// * A local time that happens twice (the clock is set back) runs at its
    ///   first occurrence only, so a daily job runs once that day, as in
    ///   Airflow and Vixie cron. A schedule that runs every hour also runs
    ///   at the second occurrence: its runs then keep following elapsed
    ///   time through the repeated hour (again as in both), instead of
    ///   leaving a two-hour interval.
    /// * A local time that does not exist (the clock jumps forward) runs
    ///   shifted forward by the gap: 02:30 on a spring-forward day in
    ///   Europe/Paris runs at 03:30 summer time, the instant that 02:30
    ///   standard time names. This is what Airflow does (croniter computes
    ///   the wall time, which is then resolved forward), and it keeps one
    ///   run per day for daily schedules: skipping, as the bare `cron`
    ///   crate does, would silently drop that day's run and give one data
    ///   interval of 47 hours. For schedules that also run after the gap,
    ///   e.g. hourly, the shifted tick coincides with a regular one and
    ///   runs once.
    fn instants(&self, local: NaiveDateTime) -> [Option<DateTime<Utc>>; 2] {
        match self.tz.from_local_datetime(&local) {
            LocalResult::Single(at) => [Some(at.with_timezone(&Utc)), None],
            LocalResult::Ambiguous(first, second) => [
                Some(first.with_timezone(&Utc)),
                self.fields.every_hour().then(|| second.with_timezone(&Utc)),
            ],
            LocalResult::None => {
                let shifted = GapInfo::new(&local, &self.tz)
                    .and_then(|gap| gap.begin)
                    .and_then(|(_, before)| {
                        let offset = i64::from(before.fix().local_minus_utc());
                        local.checked_sub_signed(TimeDelta::seconds(offset))
                    })
                    .map(|at| at.and_utc());
                [shifted, None]
            }
        }
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
        let tz = parse_tz(tz)?;
        Ok(match goflow_syntax::schedule::parse(spec)? {
            Spec::Manual => Schedule::Manual,
            Spec::Once => Schedule::Once,
            Spec::Every(d) => Schedule::Interval(d),
            Spec::Cron { expression, fields } => Schedule::Cron(Box::new(CronSchedule {
                source: expression,
                tz,
                fields: fields.into(),
            })),
        })
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

/// How many days a search for the next or previous matching day looks
/// through: enough for the rarest day a schedule can name, February 29th
/// (eight years apart around 2100).
const MAX_SCAN_DAYS: u32 = 366 * 9;

/// The values each field of a cron expression selects, as bit sets, matched
/// against local wall-clock time.
#[derive(Clone, Debug, PartialEq, Eq)]
struct CronFields {
    /// Bit `m` for minute `m` (0-59).
    minutes: u64,
    /// Bit `h` for hour `h` (0-23).
    hours: u32,
    /// Bit `d` for day of the month `d` (1-31).
    days: u32,
    /// `L` in the day-of-month field: the last day of the month.
    last_day: bool,
    /// Bit `m` for month `m` (1-12).
    months: u16,
    /// Bit `d` for day of the week `d` (0 = Sunday to 6 = Saturday).
    weekdays: u8,
}

impl CronFields {
    const ALL_HOURS: u32 = (1 << 24) - 1;
    /// Days 1 to 31 (bit 0 is unused).
    const ALL_DAYS: u32 = !1;
    const ALL_WEEKDAYS: u8 = (1 << 7) - 1;

    /// Whether the hour field selects every hour.
    fn every_hour(&self) -> bool {
        self.hours == Self::ALL_HOURS
    }

    /// Whether `date` is a day the schedule runs on. As in Vixie cron and
    /// croniter, when both the day-of-month and the day-of-week fields are
    /// restricted, either may match; otherwise the restricted one decides.
    fn day_matches(&self, date: NaiveDate) -> bool {
        if self.months & (1 << date.month()) == 0 {
            return false;
        }
        let by_month_day = self.days & (1 << date.day()) != 0
            || (self.last_day && date.succ_opt().is_none_or(|d| d.month() != date.month()));
        let by_weekday = self.weekdays & (1 << date.weekday().num_days_from_sunday()) != 0;
        match (
            self.days != Self::ALL_DAYS,
            self.weekdays != Self::ALL_WEEKDAYS,
        ) {
            (true, true) => by_month_day || by_weekday,
            (true, false) => by_month_day,
            (false, true) => by_weekday,
            (false, false) => true,
        }
    }

    /// The first selected time of day at or after `hour:minute`.
    fn first_time_from(&self, hour: u32, minute: u32) -> Option<(u32, u32)> {
        (hour..24)
            .filter(|h| self.hours & (1 << h) != 0)
            .find_map(|h| {
                let from = if h == hour { minute } else { 0 };
                let minutes = self.minutes & (u64::MAX << from);
                (minutes != 0).then(|| (h, minutes.trailing_zeros()))
            })
    }

    /// The last selected time of day at or before `hour:minute`.
    fn last_time_until(&self, hour: u32, minute: u32) -> Option<(u32, u32)> {
        (0..=hour)
            .rev()
            .filter(|h| self.hours & (1 << h) != 0)
            .find_map(|h| {
                let until = if h == hour { minute } else { 59 };
                let minutes = self.minutes & (u64::MAX >> (63 - until));
                (minutes != 0).then(|| (h, 63 - minutes.leading_zeros()))
            })
    }

    /// The first local tick strictly after `after`.
    fn next_after(&self, after: NaiveDateTime) -> Option<NaiveDateTime> {
        let start = truncate_to_minute(after)?.checked_add_signed(TimeDelta::minutes(1))?;
        let mut date = start.date();
        let (mut hour, mut minute) = (start.hour(), start.minute());
        for _ in 0..MAX_SCAN_DAYS {
            if self.day_matches(date) {
                if let Some((h, m)) = self.first_time_from(hour, minute) {
                    return date.and_hms_opt(h, m, 0);
                }
            }
            date = date.succ_opt()?;
            (hour, minute) = (0, 0);
        }
        None
    }

    /// The last local tick at or before `at`.
    fn at_or_before(&self, at: NaiveDateTime) -> Option<NaiveDateTime> {
        let mut date = at.date();
        let (mut hour, mut minute) = (at.hour(), at.minute());
        for _ in 0..MAX_SCAN_DAYS {
            if self.day_matches(date) {
                if let Some((h, m)) = self.last_time_until(hour, minute) {
                    return date.and_hms_opt(h, m, 0);
                }
            }
            date = date.pred_opt()?;
            (hour, minute) = (23, 59);
        }
        None
    }
}

fn truncate_to_minute(t: NaiveDateTime) -> Option<NaiveDateTime> {
    t.date().and_hms_opt(t.hour(), t.minute(), 0)
}

/// A compiled expression of goflow-syntax's grammar (the one `#[dag]`
/// checks literals with).
impl From<goflow_syntax::cron::CronFields> for CronFields {
    fn from(f: goflow_syntax::cron::CronFields) -> Self {
        CronFields {
            minutes: f.minutes,
            hours: f.hours,
            days: f.days,
            last_day: f.last_day,
            months: f.months,
            weekdays: f.weekdays,
        }
    }
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
    let d = goflow_syntax::date::parse(s)?;
    let naive = NaiveDate::from_ymd_opt(d.year, d.month, d.day)
        .and_then(|date| date.and_hms_nano_opt(d.hour, d.minute, d.second, d.nanosecond))
        .ok_or_else(|| bad("not a date of the calendar"))?;
    if let Some(offset) = d.offset {
        let offset = FixedOffset::east_opt(offset).ok_or_else(|| bad("invalid offset"))?;
        return match offset.from_local_datetime(&naive) {
            LocalResult::Single(dt) => Ok(dt.with_timezone(&Utc)),
            _ => Err(bad("invalid offset")),
        };
    }
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
        // A tick inside the skipped hour runs shifted by the gap: 02:30 CET
        // does not exist on 03-29, so it runs at 03:30 CEST.
        let s = Schedule::parse("30 2 * * *", "Europe/Paris").unwrap();
        let Schedule::Cron(cron) = &s else { panic!() };
        let next = cron.next_after(utc("2026-03-28T02:00:00Z")).unwrap();
        assert_eq!(next, utc("2026-03-29T01:30:00Z"));
    }

    fn cron(expr: &str, tz: &str) -> CronSchedule {
        match Schedule::parse(expr, tz).unwrap() {
            Schedule::Cron(c) => *c,
            other => panic!("{expr}: not a cron schedule: {other}"),
        }
    }

    /// Next ticks worked out by hand from the calendar. 2026-01-01 is a
    /// Thursday, so the 1st of each month falls on: Jan Thu, Feb Sun, Mar
    /// Sun, Apr Wed, May Fri, Jun Mon, Jul Wed, Aug Sat, Sep Tue, Oct Thu,
    /// Nov Sun, Dec Tue. DST in 2026: Europe/Paris (CET +1, CEST +2) springs
    /// forward 03-29 at 01:00Z (02:00 -> 03:00) and falls back 10-25 at
    /// 01:00Z (03:00 -> 02:00); America/New_York (EST -5, EDT -4) springs
    /// forward 03-08 at 07:00Z (02:00 -> 03:00) and falls back 11-01 at
    /// 06:00Z (02:00 -> 01:00).
    #[rustfmt::skip]
    const NEXT_TICKS: &[(&str, &str, &str, &[&str])] = &[
        // 1st of the month OR Monday: Mondays 01-05..01-26, Sunday 02-01
        // (the 1st), Monday 02-02.
        ("0 0 1 * 1", "UTC", "2026-01-01T00:00:00Z", &[
            "2026-01-05T00:00:00Z", "2026-01-12T00:00:00Z", "2026-01-19T00:00:00Z",
            "2026-01-26T00:00:00Z", "2026-02-01T00:00:00Z", "2026-02-02T00:00:00Z",
        ]),
        // 1st or 15th OR Friday: Fridays 01-02, 09, 16, 23, 30; Thursday
        // 01-15; Sunday 02-01; Friday 02-06.
        ("0 0 1,15 * 5", "UTC", "2026-01-01T00:00:00Z", &[
            "2026-01-02T00:00:00Z", "2026-01-09T00:00:00Z", "2026-01-15T00:00:00Z",
            "2026-01-16T00:00:00Z", "2026-01-23T00:00:00Z", "2026-01-30T00:00:00Z",
            "2026-02-01T00:00:00Z", "2026-02-06T00:00:00Z",
        ]),
        // Mondays only.
        ("0 0 * * 1", "UTC", "2026-01-01T00:00:00Z", &[
            "2026-01-05T00:00:00Z", "2026-01-12T00:00:00Z", "2026-01-19T00:00:00Z",
        ]),
        // A day-of-week field that selects every day does not restrict.
        ("0 0 13 * 0-6", "UTC", "2026-01-01T00:00:00Z", &[
            "2026-01-13T00:00:00Z", "2026-02-13T00:00:00Z", "2026-03-13T00:00:00Z",
        ]),
        // The 13th only (02-13 is a Friday; nothing else matches).
        ("0 0 13 * *", "UTC", "2026-01-01T00:00:00Z", &[
            "2026-01-13T00:00:00Z", "2026-02-13T00:00:00Z", "2026-03-13T00:00:00Z",
        ]),
        // Working hours, Friday 01-02 afternoon to Monday 01-05.
        ("*/15 9-17 * * 1-5", "UTC", "2026-01-02T16:50:00Z", &[
            "2026-01-02T17:00:00Z", "2026-01-02T17:15:00Z", "2026-01-02T17:30:00Z",
            "2026-01-02T17:45:00Z", "2026-01-05T09:00:00Z", "2026-01-05T09:15:00Z",
        ]),
        // Last day of the month.
        ("0 12 L * *", "UTC", "2026-01-01T00:00:00Z", &[
            "2026-01-31T12:00:00Z", "2026-02-28T12:00:00Z", "2026-03-31T12:00:00Z",
            "2026-04-30T12:00:00Z",
        ]),
        ("0 12 L 2 *", "UTC", "2026-03-01T00:00:00Z", &[
            "2027-02-28T12:00:00Z", "2028-02-29T12:00:00Z", "2029-02-28T12:00:00Z",
        ]),
        // The 15th OR the last day.
        ("0 0 15,L * *", "UTC", "2026-02-01T00:00:00Z", &[
            "2026-02-15T00:00:00Z", "2026-02-28T00:00:00Z", "2026-03-15T00:00:00Z",
        ]),
        // Paris midnight is 23:00Z in winter.
        ("@daily", "Europe/Paris", "2026-01-01T00:00:00Z", &[
            "2026-01-01T23:00:00Z", "2026-01-02T23:00:00Z", "2026-01-03T23:00:00Z",
        ]),
        // Paris spring forward: 02:30 does not exist on 03-29 and runs at
        // 03:30 CEST (01:30Z); the next day 02:30 CEST is 00:30Z.
        ("30 2 * * *", "Europe/Paris", "2026-03-27T12:00:00Z", &[
            "2026-03-28T01:30:00Z", "2026-03-29T01:30:00Z", "2026-03-30T00:30:00Z",
        ]),
        // Hourly through the gap: 01:00 CET, then 02:00 (shifted to 03:00
        // CEST, the same instant as the 03:00 tick, run once), 04:00 CEST:
        // every real hour, once.
        ("0 * * * *", "Europe/Paris", "2026-03-28T23:30:00Z", &[
            "2026-03-29T00:00:00Z", "2026-03-29T01:00:00Z", "2026-03-29T02:00:00Z",
            "2026-03-29T03:00:00Z",
        ]),
        // Shifted gap ticks that coincide with real ones run once:
        // 02:15 -> 03:15 CEST, 02:45 -> 03:45 CEST.
        ("15,45 2,3 * * *", "Europe/Paris", "2026-03-29T00:00:00Z", &[
            "2026-03-29T01:15:00Z", "2026-03-29T01:45:00Z", "2026-03-30T00:15:00Z",
        ]),
        // Paris fall back: 02:30 happens at 00:30Z (CEST) and 01:30Z (CET)
        // on 10-25; it runs once, at the first.
        ("30 2 * * *", "Europe/Paris", "2026-10-23T12:00:00Z", &[
            "2026-10-24T00:30:00Z", "2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z",
        ]),
        // ... also when asked from between the two occurrences.
        ("30 2 * * *", "Europe/Paris", "2026-10-25T00:45:00Z", &[
            "2026-10-26T01:30:00Z", "2026-10-27T01:30:00Z",
        ]),
        // Hourly through the repeated hour: 02:00 CEST, 02:00 CET, 03:00
        // CET: every real hour.
        ("0 * * * *", "Europe/Paris", "2026-10-24T23:30:00Z", &[
            "2026-10-25T00:00:00Z", "2026-10-25T01:00:00Z", "2026-10-25T02:00:00Z",
            "2026-10-25T03:00:00Z",
        ]),
        // New York spring forward: 02:30 runs at 03:30 EDT (07:30Z).
        ("30 2 * * *", "America/New_York", "2026-03-06T12:00:00Z", &[
            "2026-03-07T07:30:00Z", "2026-03-08T07:30:00Z", "2026-03-09T06:30:00Z",
        ]),
        ("0 * * * *", "America/New_York", "2026-03-08T05:30:00Z", &[
            "2026-03-08T06:00:00Z", "2026-03-08T07:00:00Z", "2026-03-08T08:00:00Z",
            "2026-03-08T09:00:00Z",
        ]),
        // New York fall back repeats 01:00-01:59, so 02:30 happens once
        // (EST, 07:30Z): that day's interval is 25 hours.
        ("30 2 * * *", "America/New_York", "2026-10-30T12:00:00Z", &[
            "2026-10-31T06:30:00Z", "2026-11-01T07:30:00Z", "2026-11-02T07:30:00Z",
        ]),
        // 01:30 happens twice (05:30Z EDT, 06:30Z EST); runs at the first.
        ("30 1 * * *", "America/New_York", "2026-10-30T12:00:00Z", &[
            "2026-10-31T05:30:00Z", "2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z",
        ]),
        // A restricted hour field: the repeated 01:xx runs once.
        ("*/30 1 * * *", "America/New_York", "2026-11-01T04:00:00Z", &[
            "2026-11-01T05:00:00Z", "2026-11-01T05:30:00Z", "2026-11-02T06:00:00Z",
        ]),
        ("0 * * * *", "America/New_York", "2026-11-01T04:30:00Z", &[
            "2026-11-01T05:00:00Z", "2026-11-01T06:00:00Z", "2026-11-01T07:00:00Z",
            "2026-11-01T08:00:00Z",
        ]),
        // Lord Howe springs forward by 30 minutes on local 10-04, at
        // 10-03T15:30Z (02:00 +10:30 -> 02:30 +11). 02:20 runs shifted to 02:50 +11
        // (15:50Z), after the real 02:35 +11 (15:35Z).
        ("20,35 2 * * *", "Australia/Lord_Howe", "2026-10-03T15:00:00Z", &[
            "2026-10-03T15:35:00Z", "2026-10-03T15:50:00Z", "2026-10-04T15:20:00Z",
        ]),
    ];

    #[test]
    fn next_ticks_by_hand() {
        for (expr, tz, from, expected) in NEXT_TICKS {
            let c = cron(expr, tz);
            let mut t = utc(from);
            for want in expected.iter().copied().map(utc) {
                let got = c.next_after(t);
                assert_eq!(got, Some(want), "{expr} ({tz}) after {t}");
                t = want;
            }
        }
    }

    /// Walking backwards finds the same ticks: each expected tick is the
    /// last at or before itself, and the last before the tick after it.
    #[test]
    fn previous_ticks_match_next_ticks() {
        for (expr, tz, _, expected) in NEXT_TICKS {
            let c = cron(expr, tz);
            let ticks: Vec<_> = expected.iter().copied().map(utc).collect();
            for pair in ticks.windows(2) {
                let (a, b) = (pair[0], pair[1]);
                let ctx = format!("{expr} ({tz}) between {a} and {b}");
                assert_eq!(c.at_or_before(a), Some(a), "{ctx}");
                assert_eq!(c.at_or_before(b - TimeDelta::seconds(1)), Some(a), "{ctx}");
                assert_eq!(c.at_or_before(a + (b - a) / 2), Some(a), "{ctx}");
            }
        }
    }

    #[test]
    fn previous_ticks_across_dst() {
        let c = cron("30 2 * * *", "Europe/Paris");
        // In the repeated 02:xx on 10-25 (second pass, CET), the last tick
        // is the first 02:30 (CEST), not the second.
        assert_eq!(
            c.at_or_before(utc("2026-10-25T01:45:00Z")),
            Some(utc("2026-10-25T00:30:00Z"))
        );
        assert_eq!(
            c.at_or_before(utc("2026-10-25T00:29:00Z")),
            Some(utc("2026-10-24T00:30:00Z"))
        );
        // The shifted tick of the spring-forward day.
        assert_eq!(
            c.at_or_before(utc("2026-03-29T01:40:00Z")),
            Some(utc("2026-03-29T01:30:00Z"))
        );
        let s = Schedule::parse("30 2 * * *", "Europe/Paris").unwrap();
        let start = utc("2026-03-01T00:00:00Z");
        let i = s.interval_for(start, utc("2026-03-29T12:00:00Z")).unwrap();
        assert_eq!(
            i,
            DataInterval::new(utc("2026-03-29T01:30:00Z"), utc("2026-03-30T00:30:00Z"))
        );
        let i = s.interval_for(start, utc("2026-03-28T12:00:00Z")).unwrap();
        assert_eq!(
            i,
            DataInterval::new(utc("2026-03-28T01:30:00Z"), utc("2026-03-29T01:30:00Z"))
        );
        // Lord Howe: from inside the shifted half hour.
        let c = cron("20,35 2 * * *", "Australia/Lord_Howe");
        assert_eq!(
            c.at_or_before(utc("2026-10-03T15:45:00Z")),
            Some(utc("2026-10-03T15:35:00Z"))
        );
        assert_eq!(
            c.at_or_before(utc("2026-10-03T15:30:00Z")),
            Some(utc("2026-10-02T16:05:00Z")),
            "02:35 +10:30 on local 10-03"
        );
    }

    /// Whether instant `u` is a tick, decided minute by minute from the
    /// rules in [`CronSchedule::instants`] rather than by its search.
    fn fires_by_reference(c: &CronSchedule, u: DateTime<Utc>) -> bool {
        let f = &c.fields;
        let matches = |n: NaiveDateTime| {
            f.day_matches(n.date())
                && f.hours & (1 << n.hour()) != 0
                && f.minutes & (1 << n.minute()) != 0
        };
        let wall = c.wall_clock(u);
        let offset = |x: DateTime<Utc>| {
            i64::from(
                c.tz.offset_from_utc_datetime(&x.naive_utc())
                    .fix()
                    .local_minus_utc(),
            )
        };
        let regular = matches(wall)
            && match c.tz.from_local_datetime(&wall) {
                LocalResult::Ambiguous(first, _) => first == u || f.every_hour(),
                _ => true,
            };
        // Within `gap` after the clock jumped forward by `gap`, the wall
        // time `gap` earlier does not exist and runs now.
        let gap = offset(u) - offset(u - TimeDelta::hours(26));
        let shifted = gap > 0 && {
            let skipped = wall - TimeDelta::seconds(gap);
            matches!(c.tz.from_local_datetime(&skipped), LocalResult::None) && matches(skipped)
        };
        regular || shifted
    }

    #[test]
    fn agrees_with_a_minute_by_minute_reference_around_dst() {
        let transitions = [
            ("Europe/Paris", "2026-03-29T01:00:00Z"),
            ("Europe/Paris", "2026-10-25T01:00:00Z"),
            ("America/New_York", "2026-03-08T07:00:00Z"),
            ("America/New_York", "2026-11-01T06:00:00Z"),
            ("Australia/Lord_Howe", "2026-04-04T15:00:00Z"),
            ("Australia/Lord_Howe", "2026-10-03T15:30:00Z"),
        ];
        let exprs = [
            "30 2 * * *",
            "0 * * * *",
            "*/15 * * * *",
            "15,45 2,3 * * *",
            "20,35 2 * * *",
            "*/30 1 * * *",
            "59 1,2 * * *",
            "0 0 1 * 1",
            "10 1-3 * * 0",
        ];
        for (tz, at) in transitions {
            let at = utc(at);
            let (from, to) = (at - TimeDelta::hours(30), at + TimeDelta::hours(30));
            for expr in exprs {
                let c = cron(expr, tz);
                let ctx = format!("{expr} ({tz}) near {at}");
                let mut want = Vec::new();
                let mut u = from + TimeDelta::minutes(1);
                while u <= to {
                    if fires_by_reference(&c, u) {
                        want.push(u);
                    }
                    u += TimeDelta::minutes(1);
                }
                let mut got = Vec::new();
                let mut t = from;
                while let Some(next) = c.next_after(t).filter(|n| *n <= to) {
                    got.push(next);
                    t = next;
                }
                assert_eq!(got, want, "{ctx}");
                let mut u = from + TimeDelta::minutes(1);
                while u <= to {
                    let last = want.iter().rev().find(|w| **w <= u).copied();
                    if let Some(last) = last {
                        assert_eq!(c.at_or_before(u), Some(last), "{ctx} at {u}");
                    }
                    u += TimeDelta::minutes(7);
                }
            }
        }
    }

    #[test]
    fn data_intervals_with_either_day_field() {
        // The 1st of the month OR Mondays. 2026-01-01 (a Thursday) is the
        // 1st, so it is the first logical date.
        let s = Schedule::parse("0 0 1 * 1", "UTC").unwrap();
        let start = utc("2026-01-01T00:00:00Z");
        let mut logical = None;
        let starts = [
            "2026-01-01",
            "2026-01-05",
            "2026-01-12",
            "2026-01-19",
            "2026-01-26",
            "2026-02-01",
            "2026-02-02",
            "2026-02-09",
        ];
        for pair in starts.windows(2) {
            let i = s.next_interval(start, logical).unwrap();
            let want = DataInterval::new(
                utc(&format!("{}T00:00:00Z", pair[0])),
                utc(&format!("{}T00:00:00Z", pair[1])),
            );
            assert_eq!(i, want);
            logical = Some(i.start);
        }
        // Saturday 01-31 lies in the interval from Monday 01-26 to Sunday
        // 02-01 (the 1st).
        assert_eq!(
            s.interval_for(start, utc("2026-01-31T00:00:00Z")),
            Some(DataInterval::new(
                utc("2026-01-26T00:00:00Z"),
                utc("2026-02-01T00:00:00Z")
            ))
        );
        assert_eq!(
            s.interval_for(start, utc("2026-02-01T12:00:00Z")),
            Some(DataInterval::new(
                utc("2026-02-01T00:00:00Z"),
                utc("2026-02-02T00:00:00Z")
            ))
        );
        // On Tuesday 02-03 the latest complete interval is the 1st to
        // Monday the 2nd; the next run is due on Monday 02-09.
        let now = utc("2026-02-03T00:00:00Z");
        assert_eq!(
            s.latest_complete_interval(start, now),
            Some(DataInterval::new(
                utc("2026-02-01T00:00:00Z"),
                utc("2026-02-02T00:00:00Z")
            ))
        );
        assert_eq!(
            s.next_due_after(start, None, now),
            Some(utc("2026-02-09T00:00:00Z"))
        );
        // The 1st of April is a Wednesday: it ends the interval that
        // started on Monday 03-30.
        assert_eq!(
            s.interval_for(start, utc("2026-03-31T00:00:00Z")),
            Some(DataInterval::new(
                utc("2026-03-30T00:00:00Z"),
                utc("2026-04-01T00:00:00Z")
            ))
        );
    }

    #[test]
    fn day_fields_and_impossible_days() {
        let err = Schedule::parse("0 0 32 * *", "UTC")
            .unwrap_err()
            .to_string();
        assert!(err.contains("day-of-month field \"32\""), "{err}");
        let err = Schedule::parse("0 0 L-2 * *", "UTC")
            .unwrap_err()
            .to_string();
        assert!(err.contains("day-of-month field \"L-2\""), "{err}");
        let err = Schedule::parse("0 0 * 13 *", "UTC")
            .unwrap_err()
            .to_string();
        assert!(err.contains("month field \"13\""), "{err}");
        let err = Schedule::parse("0 24 * * *", "UTC")
            .unwrap_err()
            .to_string();
        assert!(err.contains("hour field \"24\""), "{err}");
        // A day that never comes: parsed, but never due.
        let c = cron("0 0 30 2 *", "UTC");
        assert_eq!(c.next_after(utc("2026-01-01T00:00:00Z")), None);
        assert_eq!(c.at_or_before(utc("2026-01-01T00:00:00Z")), None);
        // `?` does not restrict, in either day field.
        let c = cron("0 0 ? * 1", "UTC");
        assert_eq!(
            c.next_after(utc("2026-01-01T00:00:00Z")),
            Some(utc("2026-01-05T00:00:00Z"))
        );
        let c = cron("0 0 13 * ?", "UTC");
        assert_eq!(
            c.next_after(utc("2026-01-01T00:00:00Z")),
            Some(utc("2026-01-13T00:00:00Z"))
        );
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
