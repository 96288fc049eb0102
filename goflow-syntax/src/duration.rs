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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_literals() {
        assert_eq!(parse("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("2d").unwrap(), Duration::from_secs(172_800));
        assert_eq!(parse(" 250ms ").unwrap(), Duration::from_millis(250));
        assert_eq!(parse(" 1h 30m ").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("2 hours").unwrap(), Duration::from_secs(7200));
    }

    #[test]
    fn rejects_with_a_message() {
        let err = parse("5 minutes please").unwrap_err();
        assert!(err.contains("\"5 minutes please\""), "{err}");
        assert!(parse("").unwrap_err().contains("found nothing"));
        assert!(parse("10").unwrap_err().contains("time unit needed"));
    }
}
