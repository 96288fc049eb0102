//! Options whose value is one of a few words: `backoff`, `executor`,
//! `trigger_rule`, and the alert channels a DAG may name.

use std::fmt;

/// The words an option accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Words {
    /// The option, as named in messages (`trigger rule`).
    pub what: &'static str,
    /// Its words, in the order of the enum they stand for.
    pub words: &'static [&'static str],
    /// The words, `, `-separated, for messages.
    pub expected: &'static str,
}

/// A value that is not one of an option's words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownWord {
    /// The option.
    pub what: &'static str,
    /// The value as given.
    pub value: String,
    /// The words it accepts, `, `-separated.
    pub expected: &'static str,
}

impl fmt::Display for UnknownWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid {} {:?}: expected one of {}",
            self.what, self.value, self.expected
        )
    }
}

impl std::error::Error for UnknownWord {}

impl Words {
    /// The position of `value` among the words.
    pub fn find(&self, value: &str) -> Result<usize, UnknownWord> {
        self.words
            .iter()
            .position(|w| *w == value)
            .ok_or_else(|| UnknownWord {
                what: self.what,
                value: value.to_owned(),
                expected: self.expected,
            })
    }
}

/// `backoff`: how the delay between retries grows (goflow-core's `Backoff`).
pub const BACKOFF: Words = Words {
    what: "backoff",
    words: &["fixed", "exponential"],
    expected: "fixed, exponential",
};

/// `executor`: which executor runs a task (goflow-core's `ExecutorKind`).
pub const EXECUTOR: Words = Words {
    what: "executor",
    words: &["in_process", "local_process", "kubernetes"],
    expected: "in_process, local_process, kubernetes",
};

/// `trigger_rule`: when a task runs (goflow-core's `TriggerRule`, in the
/// order of `TriggerRule::ALL`).
pub const TRIGGER_RULE: Words = Words {
    what: "trigger rule",
    words: &[
        "all_success",
        "all_failed",
        "all_done",
        "one_success",
        "one_failed",
        "none_failed",
        "none_skipped",
        "none_failed_min_one_success",
        "all_skipped",
        "one_done",
        "always",
    ],
    expected: "all_success, all_failed, all_done, one_success, one_failed, \
               none_failed, none_skipped, none_failed_min_one_success, \
               all_skipped, one_done, always",
};

/// The channel names a DAG may restrict its alerts to.
pub const ALERT_CHANNELS: [&str; 3] = ["webhook", "slack", "email"];

/// Checks a channel name given to a DAG's `alerts(channels = [...])`.
pub fn check_channel(name: &str) -> Result<(), String> {
    if ALERT_CHANNELS.contains(&name) {
        Ok(())
    } else {
        Err(format!(
            "unknown alert channel {name:?}; expected one of: {}",
            ALERT_CHANNELS.join(", ")
        ))
    }
}

/// `snake_case` to `CamelCase`: an option word to its enum variant's name
/// (`all_success` to `AllSuccess`).
pub fn variant_name(word: &str) -> String {
    word.split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_lists_every_word() {
        for w in [BACKOFF, EXECUTOR, TRIGGER_RULE] {
            assert_eq!(w.expected, w.words.join(", "), "{}", w.what);
        }
    }

    #[test]
    fn words_are_found_or_named() {
        assert_eq!(TRIGGER_RULE.find("all_done"), Ok(2));
        assert_eq!(
            BACKOFF.find("linear").unwrap_err().to_string(),
            "invalid backoff \"linear\": expected one of fixed, exponential"
        );
        assert!(check_channel("email").is_ok());
        assert!(check_channel("pager")
            .unwrap_err()
            .contains("webhook, slack, email"));
    }

    #[test]
    fn variant_names() {
        assert_eq!(variant_name("all_success"), "AllSuccess");
        assert_eq!(variant_name("in_process"), "InProcess");
        assert_eq!(variant_name("always"), "Always");
    }
}
