//! Duration literals such as `30s`, `5m`, `1h30m` or `2d`.

use std::time::Duration;

/// Parses a duration literal: a sequence of numbers with units (`ms`, `s`,
/// `m`, `h`, `d`), such as `30s`, `5m`, `1h30m` or `2d`.
///
/// Returns a sentence saying what is wrong, for error messages.
pub fn parse(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("expected a duration such as 30s, 5m, 1h30m or 2d, found nothing".into());
    }
    humantime::parse_duration(s).map_err(|e| {
        format!("{s:?} is not a duration ({e}); expected a number and a unit, such as 30s, 5m, 1h30m or 2d")
    })
}

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
    fn parses_common_literals() {
        assert_eq!(parse("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("2d").unwrap(), Duration::from_secs(172_800));
        assert_eq!(parse("250ms").unwrap(), Duration::from_millis(250));
    }

    #[test]
    fn rejects_with_a_message() {
        let err = parse("5 minutes please").unwrap_err();
        assert!(err.contains("\"5 minutes please\""), "{err}");
        assert!(parse("").is_err());
        assert!(parse("10").is_err());
    }

    #[test]
    fn formats() {
        assert_eq!(format(Duration::from_millis(850)), "850ms");
        assert_eq!(format(Duration::from_millis(1250)), "1.25s");
        assert_eq!(format(Duration::from_secs(200)), "3m 20s");
        assert_eq!(format(Duration::from_secs(3700)), "1h 1m");
    }
}
