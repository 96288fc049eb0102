//! Schedules as written in `#[dag(schedule = "...")]`: `@manual` (or
//! nothing), `@once`, `@every <duration>`, the aliases `@hourly`,
//! `@daily` (`@midnight`), `@weekly`, `@monthly`, `@yearly`
//! (`@annually`), or a 5-field cron expression (see [`crate::cron`]).

use std::time::Duration;

use crate::cron::{self, CronFields};
use crate::Error;

/// A parsed schedule, before a time zone gives it instants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Spec {
    /// Runs only when triggered.
    Manual,
    /// One run, at the start date.
    Once,
    /// Every fixed duration (at least a second), from the start date.
    Every(Duration),
    /// At every tick of a cron expression.
    Cron {
        /// The 5-field expression (an alias expanded).
        expression: String,
        /// What its fields select.
        fields: CronFields,
    },
}

impl Spec {
    /// Whether runs are created without a trigger (all but `@manual`).
    pub fn is_scheduled(&self) -> bool {
        !matches!(self, Spec::Manual)
    }
}

/// Expands the usual aliases to their 5-field expressions.
pub fn expand_alias(spec: &str) -> Option<&'static str> {
    Some(match spec {
        "@hourly" => "0 * * * *",
        "@daily" | "@midnight" => "0 0 * * *",
        "@weekly" => "0 0 * * 0",
        "@monthly" => "0 0 1 * *",
        "@yearly" | "@annually" => "0 0 1 1 *",
        _ => return None,
    })
}

/// Parses a schedule (surrounding whitespace ignored).
pub fn parse(spec: &str) -> Result<Spec, Error> {
    let spec = spec.trim();
    let invalid = |reason: String| Error::InvalidSchedule {
        schedule: spec.to_owned(),
        reason,
    };
    match spec {
        "" | "@manual" => return Ok(Spec::Manual),
        "@once" => return Ok(Spec::Once),
        _ => {}
    }
    if let Some(rest) = spec.strip_prefix("@every") {
        let d = crate::duration::parse(rest.trim()).map_err(invalid)?;
        if d < Duration::from_secs(1) {
            return Err(invalid("the interval must be at least 1s".into()));
        }
        return Ok(Spec::Every(d));
    }
    let expression = match expand_alias(spec) {
        Some(expr) => expr,
        None if spec.starts_with('@') => {
            return Err(invalid(
                "unknown alias; expected one of @manual, @once, @hourly, @daily, \
                 @weekly, @monthly, @yearly, @every <duration>"
                    .into(),
            ))
        }
        None => spec,
    };
    let fields = cron::compile(expression).map_err(invalid)?;
    Ok(Spec::Cron {
        expression: expression.to_owned(),
        fields,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind() {
        assert_eq!(parse("").unwrap(), Spec::Manual);
        assert!(!parse("@manual").unwrap().is_scheduled());
        assert_eq!(parse(" @once ").unwrap(), Spec::Once);
        assert_eq!(
            parse("@every 15m").unwrap(),
            Spec::Every(Duration::from_secs(900))
        );
        match parse("@daily").unwrap() {
            Spec::Cron { expression, .. } => assert_eq!(expression, "0 0 * * *"),
            other => panic!("{other:?}"),
        }
        assert!(parse("0 6 * * 1-5").unwrap().is_scheduled());
    }

    #[test]
    fn errors_name_the_schedule() {
        let err = parse("@every 10ms").unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid schedule \"@every 10ms\": the interval must be at least 1s"
        );
        assert!(parse("@fortnightly")
            .unwrap_err()
            .to_string()
            .contains("unknown alias"));
        assert!(parse("@every soon")
            .unwrap_err()
            .to_string()
            .contains("is not a duration"));
    }
}
