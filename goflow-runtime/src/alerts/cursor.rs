//! Following a table by increasing row id without skipping rows that
//! commit late.
//!
//! On PostgreSQL, ids come from a sequence when a row is inserted, not
//! when its transaction commits: a reader can see id 11 before id 10
//! commits. A reader that moved its cursor to 11 would never see 10. So
//! the cursor moves only through ids without gaps; a gap is waited for,
//! and passed once it has stayed open for a while (its transaction rolled
//! back, or the row was deleted). On SQLite writers are serialized and
//! ids are given in commit order, so gaps are passed at once.

use std::time::{Duration, Instant};

/// A gap-aware position in a table's ids.
#[derive(Clone, Debug)]
pub(crate) struct GapCursor {
    gap_timeout: Duration,
    /// The first missing id of the gap being waited for, and since when.
    waiting: Option<(i64, Instant)>,
}

impl GapCursor {
    /// A cursor that passes a gap after `gap_timeout` (zero: at once).
    pub(crate) fn new(gap_timeout: Duration) -> Self {
        GapCursor {
            gap_timeout,
            waiting: None,
        }
    }

    /// Of `ids` (increasing, all above `position`), how many leading ones
    /// may be consumed now.
    pub(crate) fn consumable(&mut self, position: i64, ids: &[i64], now: Instant) -> usize {
        let mut expected = position + 1;
        for (n, &id) in ids.iter().enumerate() {
            if id > expected && !self.gap_timeout.is_zero() {
                match self.waiting {
                    Some((missing, since)) if missing == expected => {
                        if now.duration_since(since) < self.gap_timeout {
                            return n;
                        }
                    }
                    _ => {
                        self.waiting = Some((expected, now));
                        return n;
                    }
                }
            }
            expected = id + 1;
        }
        ids.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_ids_are_consumed_and_gaps_waited_for() {
        let t0 = Instant::now();
        let mut c = GapCursor::new(Duration::from_secs(30));
        assert_eq!(c.consumable(0, &[1, 2, 3], t0), 3);
        // 5 is missing: stop before 6 until the gap is old enough.
        assert_eq!(c.consumable(3, &[4, 6, 7], t0), 1);
        assert_eq!(c.consumable(4, &[6, 7], t0 + Duration::from_secs(10)), 0);
        // It committed late: no gap any more.
        assert_eq!(c.consumable(4, &[5, 6, 7], t0 + Duration::from_secs(11)), 3);
        // A gap that never fills is passed after the timeout.
        assert_eq!(c.consumable(7, &[9], t0 + Duration::from_secs(12)), 0);
        assert_eq!(c.consumable(7, &[9], t0 + Duration::from_secs(43)), 1);
        // Without a timeout, gaps are passed at once.
        let mut sqlite = GapCursor::new(Duration::ZERO);
        assert_eq!(sqlite.consumable(0, &[2, 5], t0), 2);
    }
}
