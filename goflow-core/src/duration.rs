//! Duration literals such as `30s`, `5m`, `1h30m` or `2d`: the one grammar
//! of every duration goflow reads, in DAG attributes (`timeout`,
//! `retry_delay`, alert deadlines), `@every` schedules and command-line
//! flags (`--retention`, `--k8s-job-ttl`...).

use std::time::Duration;

/// Parses a duration literal: a sequence of numbers with units (`ms`, `s`,
/// `m`, `h`, `d`), such as `30s`, `5m`, `1h30m` or `2d`.
///
/// Returns a sentence saying what is wrong, for error messages.
#[doc(inline)]
pub use goflow_syntax::duration::parse;

/// Formats a duration compactly for people: `1.25s`, `3m 20s`, `850ms`.
pub fn format(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1_000 {
        return format!("{ms}ms");
    }
    if ms < 60_000 {
        return format!("{:.2}s", d.as_secs_f64());
    }
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    match (h, m, s) {
        (0, m, s) => format!("{m}m {s}s"),
        (h, m, _) => format!("{h}h {m}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(format(Duration::from_millis(850)), "850ms");
        assert_eq!(format(Duration::from_millis(1250)), "1.25s");
        assert_eq!(format(Duration::from_secs(200)), "3m 20s");
        assert_eq!(format(Duration::from_secs(3700)), "1h 1m");
    }
}
