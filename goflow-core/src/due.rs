//! Which scheduled runs are due: the catchup, start/end date and `@once`
//! rules, decided from the last scheduled run and the current time.

use chrono::{DateTime, Utc};

use crate::{Dag, DataInterval, Schedule};

/// The data intervals of scheduled runs that are due at `now` and come
/// after the latest scheduled run (`last`, its logical date), oldest first,
/// at most `limit` of them.
///
/// An interval is due once it has ended (Airflow's semantics: the run for
/// a day starts when the day is over). With `catchup`, every missed
/// interval since the start date is due; without it only the latest. No
/// interval starting after the end date is ever due. `@once` is due once,
/// at the start date; manual DAGs never are.
pub fn due_intervals(
    dag: &Dag,
    last: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    limit: usize,
) -> Vec<DataInterval> {
    let schedule = dag.schedule();
    let start = dag.start_date();
    let in_range = |i: &DataInterval| dag.end_date().is_none_or(|end| i.start <= end);
    match schedule {
        Schedule::Manual => Vec::new(),
        Schedule::Once => match last {
            None if start <= now && dag.end_date().is_none_or(|end| start <= end) => {
                vec![DataInterval::at(start)]
            }
            _ => Vec::new(),
        },
        Schedule::Cron(_) | Schedule::Interval(_) => {
            if !dag.catchup() {
                return schedule
                    .latest_complete_interval(start, now)
                    .filter(|i| last.is_none_or(|l| i.start > l))
                    .filter(in_range)
                    .into_iter()
                    .collect();
            }
            let mut due = Vec::new();
            let mut cursor = last;
            while due.len() < limit {
                let Some(next) = schedule.next_interval(start, cursor) else {
                    break;
                };
                if next.end > now || !in_range(&next) {
                    break;
                }
                due.push(next);
                cursor = Some(next.start);
            }
            due
        }
    }
}

/// When the next scheduled run after `last` becomes due (the end of its
/// interval), or `None` if no run will ever be due again. The scheduler
/// sleeps until then.
pub fn next_due(
    dag: &Dag,
    last: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let schedule = dag.schedule();
    let start = dag.start_date();
    let next = match schedule {
        Schedule::Manual => return None,
        Schedule::Once => return if last.is_none() { Some(start) } else { None },
        Schedule::Cron(_) | Schedule::Interval(_) => {
            let mut next = schedule.next_interval(start, last)?;
            if !dag.catchup() && next.end <= now {
                // Missed intervals are skipped: the latest complete one is
                // the next to run (due at once) unless it already ran.
                if let Some(latest) = schedule.latest_complete_interval(start, now) {
                    next = if last.is_some_and(|l| latest.start <= l) {
                        schedule.next_interval(start, Some(latest.start))?
                    } else {
                        latest
                    };
                }
            }
            next
        }
    };
    if dag.end_date().is_some_and(|end| next.start > end) {
        return None;
    }
    Some(next.end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dag::tests::spec;
    use crate::DagBuilder;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn daily(catchup: bool, end: Option<&str>) -> Dag {
        DagBuilder::new("d")
            .schedule(Schedule::parse("0 6 * * *", "UTC").unwrap(), chrono_tz::UTC)
            .start_date(utc("2026-01-01T00:00:00Z"))
            .end_date(end.map(utc))
            .catchup(catchup)
            .task(spec("a", &[]))
            .build()
            .unwrap()
    }

    #[test]
    fn catchup_walks_every_missed_interval() {
        let dag = daily(true, None);
        let now = utc("2026-01-04T07:00:00Z");
        let due = due_intervals(&dag, None, now, 100);
        let starts: Vec<String> = due
            .iter()
            .map(|i| i.start.format("%d").to_string())
            .collect();
        assert_eq!(starts, ["01", "02", "03"]);
        assert_eq!(due[2].end, utc("2026-01-04T06:00:00Z"));
        // From the last run on, only what follows.
        let due = due_intervals(&dag, Some(due[1].start), now, 100);
        assert_eq!(due.len(), 1);
        // The limit bounds a burst.
        assert_eq!(due_intervals(&dag, None, now, 2).len(), 2);
        assert_eq!(
            next_due(&dag, Some(utc("2026-01-03T06:00:00Z")), now),
            Some(utc("2026-01-05T06:00:00Z"))
        );
    }

    #[test]
    fn without_catchup_only_the_latest_interval_runs() {
        let dag = daily(false, None);
        let now = utc("2026-01-04T07:00:00Z");
        let due = due_intervals(&dag, None, now, 100);
        assert_eq!(
            due,
            [DataInterval::new(
                utc("2026-01-03T06:00:00Z"),
                utc("2026-01-04T06:00:00Z")
            )]
        );
        assert!(due_intervals(&dag, Some(due[0].start), now, 100).is_empty());
        assert_eq!(
            next_due(&dag, Some(due[0].start), now),
            Some(utc("2026-01-05T06:00:00Z"))
        );
        // Long after the last run, the latest interval is due at once and
        // the ones before it are skipped.
        let (last, later) = (utc("2026-01-01T06:00:00Z"), utc("2026-02-01T07:00:00Z"));
        assert_eq!(
            next_due(&dag, Some(last), later),
            Some(utc("2026-02-01T06:00:00Z"))
        );
        let due = due_intervals(&dag, Some(last), later, 100);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].end, utc("2026-02-01T06:00:00Z"));
        assert_eq!(
            next_due(&dag, Some(due[0].start), later),
            Some(utc("2026-02-02T06:00:00Z"))
        );
    }

    #[test]
    fn nothing_is_due_before_the_first_interval_ends_or_after_the_end() {
        let dag = daily(true, None);
        assert!(due_intervals(&dag, None, utc("2026-01-02T05:00:00Z"), 10).is_empty());
        assert_eq!(
            next_due(&dag, None, utc("2026-01-02T05:00:00Z")),
            Some(utc("2026-01-02T06:00:00Z"))
        );
        let dag = daily(true, Some("2026-01-02T12:00:00Z"));
        let due = due_intervals(&dag, None, utc("2026-01-10T00:00:00Z"), 10);
        assert_eq!(due.len(), 2, "intervals starting on the 1st and 2nd only");
        assert_eq!(
            next_due(&dag, Some(due[1].start), utc("2026-01-10T00:00:00Z")),
            None
        );
    }

    #[test]
    fn once_and_manual() {
        let once = DagBuilder::new("o")
            .schedule(Schedule::Once, chrono_tz::UTC)
            .start_date(utc("2026-01-01T00:00:00Z"))
            .task(spec("a", &[]))
            .build()
            .unwrap();
        let now = utc("2026-01-02T00:00:00Z");
        assert_eq!(due_intervals(&once, None, now, 10).len(), 1);
        assert!(due_intervals(&once, Some(once.start_date()), now, 10).is_empty());
        let manual = DagBuilder::new("m").task(spec("a", &[])).build().unwrap();
        assert!(due_intervals(&manual, None, now, 10).is_empty());
        assert_eq!(next_due(&manual, None, now), None);
    }
}
