//! Standard 5-field cron expressions (`minute hour day-of-month month
//! day-of-week`), compiled to the bit sets of the values each field
//! selects.
//!
//! The grammar of a field is Vixie cron's: `*`, numbers, ranges `a-b`,
//! steps `*/n`, `a/n` and `a-b/n`, and lists of those separated by `,`.
//! Months also take names (`jan`, `january`; any case, also in ranges),
//! days of the week `sun`-`sat`, and the day of the month `?` (every day)
//! and `L` (the last day of the month). Days of the week are numbered 0
//! (Sunday) to 6, with 7 also Sunday. A step may not exceed the field's
//! largest value.

/// The values a cron expression selects, one bit per value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CronFields {
    /// Bit `m` for minute `m` (0-59).
    pub minutes: u64,
    /// Bit `h` for hour `h` (0-23).
    pub hours: u32,
    /// Bit `d` for day of the month `d` (1-31).
    pub days: u32,
    /// `L` in the day-of-month field: the last day of the month.
    pub last_day: bool,
    /// Bit `m` for month `m` (1-12).
    pub months: u16,
    /// Bit `d` for day of the week `d` (0 = Sunday to 6 = Saturday).
    pub weekdays: u8,
}

impl CronFields {
    /// Every hour.
    pub const ALL_HOURS: u32 = (1 << 24) - 1;
    /// Days 1 to 31 (bit 0 is unused).
    pub const ALL_DAYS: u32 = !1;
    /// Every day of the week.
    pub const ALL_WEEKDAYS: u8 = (1 << 7) - 1;
}

/// One of the fields parsed here (the day of the week has its own parser).
struct Unit {
    min: u32,
    max: u32,
    /// Whether `?` means every value (day of the month).
    any: bool,
    /// Whether values have names (months).
    named: bool,
}

const MINUTE: Unit = Unit {
    min: 0,
    max: 59,
    any: false,
    named: false,
};
const HOUR: Unit = Unit {
    min: 0,
    max: 23,
    any: false,
    named: false,
};
const DAY_OF_MONTH: Unit = Unit {
    min: 1,
    max: 31,
    any: true,
    named: false,
};
const MONTH: Unit = Unit {
    min: 1,
    max: 12,
    any: false,
    named: true,
};

const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

/// What an item of a list is, before a step.
enum Spec {
    All,
    Point(u32),
    Range(u32, u32),
}

impl Unit {
    fn check(&self, v: u32) -> Result<u32, ()> {
        if (self.min..=self.max).contains(&v) {
            Ok(v)
        } else {
            Err(())
        }
    }

    /// A month's number from its name: `jan` or `january`, any case.
    fn named(&self, name: &str) -> Result<u32, ()> {
        let lower = name.to_ascii_lowercase();
        let found = MONTHS
            .iter()
            .position(|m| lower == *m || (lower.len() == 3 && m.starts_with(&lower)));
        match found {
            Some(i) if self.named => Ok(i as u32 + 1),
            _ => Err(()),
        }
    }

    fn range(&self, lo: u32, hi: u32) -> Result<Spec, ()> {
        let (lo, hi) = (self.check(lo)?, self.check(hi)?);
        if lo <= hi {
            Ok(Spec::Range(lo, hi))
        } else {
            Err(())
        }
    }

    /// `*`, `?` (if allowed), `n`, `a-b` or `name-name`.
    fn spec(&self, s: &str) -> Result<Spec, ()> {
        if s == "*" || (self.any && s == "?") {
            return Ok(Spec::All);
        }
        if let Some((a, b)) = s.split_once('-') {
            return match (number(a), number(b)) {
                (Some(a), Some(b)) => self.range(a, b),
                _ if is_name(a) && is_name(b) => self.range(self.named(a)?, self.named(b)?),
                _ => Err(()),
            };
        }
        number(s).map(Spec::Point).ok_or(())
    }

    fn values(&self, spec: Spec) -> Result<Vec<u32>, ()> {
        Ok(match spec {
            Spec::All => (self.min..=self.max).collect(),
            Spec::Point(v) => vec![self.check(v)?],
            Spec::Range(lo, hi) => (lo..=hi).collect(),
        })
    }

    /// One item of a list: a spec, a spec with a step, or a name.
    fn item(&self, item: &str) -> Result<Vec<u32>, ()> {
        if let Some((spec, step)) = item.split_once('/') {
            let step = number(step).ok_or(())?;
            if step == 0 || step > self.max {
                return Err(());
            }
            let base = match self.spec(spec)? {
                // `a/n`: from `a` to the field's end.
                Spec::Point(v) => (self.check(v)?..=self.max).collect(),
                other => self.values(other)?,
            };
            return Ok(base.into_iter().step_by(step as usize).collect());
        }
        match self.spec(item) {
            Ok(spec) => self.values(spec),
            Err(()) if is_name(item) => Ok(vec![self.named(item)?]),
            Err(()) => Err(()),
        }
    }

    /// The bit set of a whole field.
    fn mask(&self, field: &str) -> Result<u64, ()> {
        let mut mask = 0u64;
        for item in field.split(',') {
            for v in self.item(item)? {
                mask |= 1 << v;
            }
        }
        Ok(mask)
    }
}

fn number(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphabetic())
}

/// Compiles a 5-field cron expression; the error names the first field
/// that is not valid (the day of the week first) and what it expects.
pub fn compile(expr: &str) -> Result<CronFields, String> {
    const NAMES: [&str; 5] = ["minute", "hour", "day-of-month", "month", "day-of-week"];
    let fields: Vec<&str> = expr.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected 5 fields (minute hour day-of-month month day-of-week), found {}",
            fields.len()
        ));
    }
    let weekdays = translate_day_of_week(fields[4])
        .map_err(|e| format!("day-of-week field {:?}: {e}", fields[4]))?;
    let (days, last_day) = split_last_day(fields[2]);
    let days_field = if days.is_empty() { "*" } else { &days };
    let own = [fields[0], fields[1], days_field, fields[3]];
    let mut masks = [0u64; 4];
    for (i, unit) in [MINUTE, HOUR, DAY_OF_MONTH, MONTH].iter().enumerate() {
        masks[i] = unit.mask(own[i]).map_err(|()| {
            format!(
                "{} field {:?} is not valid ({})",
                NAMES[i],
                fields[i],
                field_range(i)
            )
        })?;
    }
    Ok(CronFields {
        minutes: masks[0],
        hours: masks[1] as u32,
        // Only `L`: no day by number.
        days: if days.is_empty() { 0 } else { masks[2] as u32 },
        last_day,
        months: masks[3] as u16,
        weekdays,
    })
}

/// Splits `L` (the last day of the month) out of a day-of-month list:
/// `1,15,L` is `("1,15", true)`.
fn split_last_day(field: &str) -> (String, bool) {
    let mut last = false;
    let rest: Vec<&str> = field
        .split(',')
        .filter(|item| {
            let is_last = item.eq_ignore_ascii_case("L");
            last |= is_last;
            !is_last
        })
        .collect();
    (rest.join(","), last)
}

fn field_range(i: usize) -> &'static str {
    match i {
        0 => "expected 0-59, lists, ranges and steps",
        1 => "expected 0-23, lists, ranges and steps",
        2 => "expected 1-31 or L, lists, ranges and steps",
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

/// Parses a standard day-of-week field into a bit set (bit 0 = Sunday).
fn translate_day_of_week(field: &str) -> Result<u8, String> {
    if field == "*" || field == "?" {
        return Ok(CronFields::ALL_WEEKDAYS);
    }
    let mut days = 0u8;
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
            days |= 1 << (d % 7);
            d += step;
        }
    }
    if days == 0 {
        return Err("selects no day".into());
    }
    Ok(days)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bits(mask: u64) -> Vec<u32> {
        (0..64).filter(|b| mask & (1 << b) != 0).collect()
    }

    #[test]
    fn fields_select_their_values() {
        let f = compile("*/15 9-17/4 1,15,L jan-mar/2 mon-fri").unwrap();
        assert_eq!(bits(f.minutes), [0, 15, 30, 45]);
        assert_eq!(bits(f.hours.into()), [9, 13, 17]);
        assert_eq!(bits(f.days.into()), [1, 15]);
        assert!(f.last_day);
        assert_eq!(bits(f.months.into()), [1, 3]);
        assert_eq!(bits(f.weekdays.into()), [1, 2, 3, 4, 5]);

        let f = compile("5/20 0 L December ?").unwrap();
        assert_eq!(bits(f.minutes), [5, 25, 45]);
        assert_eq!((f.days, f.last_day), (0, true));
        assert_eq!(bits(f.months.into()), [12]);
        assert_eq!(f.weekdays, CronFields::ALL_WEEKDAYS);

        let all = compile("* * ? * *").unwrap();
        assert_eq!(all.hours, CronFields::ALL_HOURS);
        assert_eq!(all.days, CronFields::ALL_DAYS);
        assert_eq!(bits(compile("0 0 * * 7").unwrap().weekdays.into()), [0]);
    }

    #[test]
    fn bad_fields_are_named() {
        let cases = [
            (
                "0 25 * * *",
                "hour field \"25\" is not valid (expected 0-23",
            ),
            ("60 * * * *", "minute field \"60\""),
            ("*/60 * * * *", "minute field \"*/60\""),
            ("*/0 * * * *", "minute field \"*/0\""),
            ("0 0 0 * *", "day-of-month field \"0\""),
            ("0 0 ? 13 *", "month field \"13\""),
            ("0 0 * mar-jan *", "month field \"mar-jan\""),
            ("0 0 * jan/2 *", "month field \"jan/2\""),
            ("0 jan * * *", "hour field \"jan\""),
            ("0 5-2 * * *", "hour field \"5-2\""),
            ("0 1,,2 * * *", "hour field \"1,,2\""),
            ("? * * * *", "minute field \"?\""),
            ("0 0 * * 8", "day-of-week field \"8\": \"8\" is not a day"),
            ("60 0 * * 8", "day-of-week field"),
            ("0 0 * *", "expected 5 fields"),
        ];
        for (expr, want) in cases {
            let err = compile(expr).unwrap_err();
            assert!(err.contains(want), "{expr}: {err}");
        }
    }
}
