//! Dates and date-times as written in a DAG's `start` and `end` and on the
//! command line: `2026-01-01`, `2026-01-01T06:00:00`, `2026-01-01 06:00`,
//! or RFC 3339 with an offset (`2026-01-01T06:00:00+01:00`, `...Z`).
//!
//! This is the syntax and the calendar; which instant a local date-time is
//! depends on its time zone, which goflow-core decides.

use crate::Error;

/// A date-time literal, checked against the calendar.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DateTime {
    /// Year (4 digits).
    pub year: i32,
    /// Month, 1-12.
    pub month: u32,
    /// Day of the month, 1-31.
    pub day: u32,
    /// Hour, 0-23.
    pub hour: u32,
    /// Minute, 0-59.
    pub minute: u32,
    /// Second, 0-59.
    pub second: u32,
    /// Nanoseconds; 1,000,000,000 and more in a leap second (`:60`, RFC
    /// 3339 only), as chrono counts them.
    pub nanosecond: u32,
    /// The offset from UTC in seconds east, for RFC 3339; `None` for a
    /// local date-time, read in the DAG's time zone.
    pub offset: Option<i32>,
}

const EXPECTED: &str = "expected YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS], or RFC 3339 with an offset";

/// Parses a date or date-time: `YYYY-MM-DD` (midnight),
/// `YYYY-MM-DDTHH:MM[:SS]` or `YYYY-MM-DD HH:MM[:SS]` (local), or RFC 3339
/// with an offset. Surrounding whitespace is ignored.
pub fn parse(s: &str) -> Result<DateTime, Error> {
    let t = s.trim();
    rfc3339(t)
        .or_else(|| local(t))
        .ok_or_else(|| Error::InvalidDate {
            date: s.to_owned(),
            reason: EXPECTED.to_owned(),
        })
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

/// Checks the calendar and the clock.
fn checked(mut dt: DateTime, leap_second_ok: bool) -> Option<DateTime> {
    let date_ok =
        (1..=12).contains(&dt.month) && (1..=days_in_month(dt.year, dt.month)).contains(&dt.day);
    if dt.second == 60 && leap_second_ok {
        dt.second = 59;
        dt.nanosecond += 1_000_000_000;
    }
    (date_ok && dt.hour < 24 && dt.minute < 60 && dt.second < 60).then_some(dt)
}

/// `digits` exactly `n` ASCII digits long.
fn fixed(digits: &str, n: usize) -> Option<u32> {
    (digits.len() == n && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// One or two ASCII digits.
fn short(digits: &str) -> Option<u32> {
    fixed(digits, 1).or_else(|| fixed(digits, 2))
}

/// `YYYY-MM-DD[Tt ]HH:MM:SS[.fraction](Z|z|+HH:MM|-HH:MM)`.
fn rfc3339(s: &str) -> Option<DateTime> {
    let b = s.as_bytes();
    if b.len() < 20 || !matches!(b[10], b'T' | b't' | b' ') || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let mut dt = DateTime {
        year: fixed(s.get(0..4)?, 4)? as i32,
        month: fixed(s.get(5..7)?, 2)?,
        day: fixed(s.get(8..10)?, 2)?,
        hour: fixed(s.get(11..13)?, 2)?,
        minute: fixed(s.get(14..16)?, 2)?,
        second: fixed(s.get(17..19)?, 2)?,
        nanosecond: 0,
        offset: None,
    };
    let mut rest = s.get(19..)?;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        // Nanoseconds: the first nine digits, the rest ignored.
        let nine: String = frac[..digits]
            .chars()
            .chain(std::iter::repeat('0'))
            .take(9)
            .collect();
        dt.nanosecond = nine.parse().ok()?;
        rest = &frac[digits..];
    }
    dt.offset = Some(match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (h, m) = rest[1..].split_once(':')?;
            let (h, m) = (fixed(h, 2)?, fixed(m, 2)?);
            if h > 23 || m > 59 {
                return None;
            }
            sign * (h * 3600 + m * 60) as i32
        }
    });
    checked(dt, true)
}

/// `YYYY-MM-DD`, or it followed by `T` or spaces and `HH:MM[:SS]`.
fn local(s: &str) -> Option<DateTime> {
    let (date, time) = match s
        .char_indices()
        .find(|(_, c)| *c == 'T' || c.is_whitespace())
    {
        Some((i, c)) => (&s[..i], Some(s[i + c.len_utf8()..].trim_start())),
        None => (s, None),
    };
    let mut parts = date.splitn(3, '-');
    let mut dt = DateTime {
        year: fixed(parts.next()?, 4)? as i32,
        month: short(parts.next()?)?,
        day: short(parts.next()?)?,
        hour: 0,
        minute: 0,
        second: 0,
        nanosecond: 0,
        offset: None,
    };
    if let Some(time) = time {
        let mut parts = time.split(':');
        dt.hour = short(parts.next()?)?;
        dt.minute = short(parts.next()?)?;
        if let Some(sec) = parts.next() {
            dt.second = short(sec)?;
        }
        if parts.next().is_some() {
            return None;
        }
    }
    checked(dt, false)
}

impl DateTime {
    /// Whether `self` is before `other`, when that can be told without a
    /// time zone: both local, or both with an offset.
    pub fn is_before(&self, other: &DateTime) -> Option<bool> {
        match (self.offset, other.offset) {
            (None, None) => Some(self.local_key() < other.local_key()),
            (Some(_), Some(_)) => Some(self.utc_seconds() < other.utc_seconds()),
            _ => None,
        }
    }

    fn local_key(&self) -> (i32, u32, u32, u32, u32, u32, u32) {
        (
            self.year,
            self.month,
            self.day,
            self.hour,
            self.minute,
            self.second,
            self.nanosecond,
        )
    }

    /// Seconds since 1970-01-01T00:00:00Z, then nanoseconds (offsets only).
    fn utc_seconds(&self) -> (i64, u32) {
        // Days from the civil date (Howard Hinnant's algorithm).
        let y = i64::from(self.year) - i64::from(self.month <= 2);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let m = i64::from(self.month);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        let local = days * 86_400
            + i64::from(self.hour) * 3600
            + i64::from(self.minute) * 60
            + i64::from(self.second);
        (local - i64::from(self.offset.unwrap_or(0)), self.nanosecond)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_local_times() {
        let d = parse(" 2026-01-07 ").unwrap();
        assert_eq!(
            (d.year, d.month, d.day, d.hour, d.offset),
            (2026, 1, 7, 0, None)
        );
        let d = parse("2026-1-7T06:05").unwrap();
        assert_eq!(
            (d.month, d.day, d.hour, d.minute, d.second),
            (1, 7, 6, 5, 0)
        );
        let d = parse("2026-01-07 06:05:09").unwrap();
        assert_eq!((d.hour, d.minute, d.second), (6, 5, 9));
        assert!(parse("2024-02-29").is_ok());
    }

    #[test]
    fn rfc3339_with_offsets() {
        let d = parse("2026-01-07T06:00:00.25+05:30").unwrap();
        assert_eq!(
            (d.hour, d.nanosecond, d.offset),
            (6, 250_000_000, Some(19_800))
        );
        assert_eq!(parse("2026-01-07t06:00:00z").unwrap().offset, Some(0));
        assert_eq!(
            parse("2026-01-07 06:00:00-01:00").unwrap().offset,
            Some(-3600)
        );
        let leap = parse("2016-12-31T23:59:60Z").unwrap();
        assert_eq!((leap.second, leap.nanosecond), (59, 1_000_000_000));
    }

    #[test]
    fn bad_dates_say_what_is_expected() {
        for bad in [
            "",
            "tomorrow",
            "2026-02-30",
            "2025-02-29",
            "2026-13-01",
            "26-01-01",
            "2026-01-01T25:00",
            "2026-01-01T06",
            "2026-01-01T06:00:00:00",
            "2026-01-01T06:00:00+24:00",
            "2026-01-01T06:00:00+0100",
            "2026-01-01T06:00:60",
        ] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("invalid date {bad:?}: expected YYYY-MM-DD")),
                "{err}"
            );
        }
    }

    #[test]
    fn order_without_a_time_zone() {
        let a = parse("2026-01-01").unwrap();
        let b = parse("2026-01-01T00:30").unwrap();
        assert_eq!(a.is_before(&b), Some(true));
        assert_eq!(b.is_before(&a), Some(false));
        let x = parse("2026-01-01T00:00:00+01:00").unwrap();
        let y = parse("2025-12-31T23:30:00Z").unwrap();
        assert_eq!(x.is_before(&y), Some(true));
        assert_eq!(a.is_before(&x), None);
    }
}
