//! Identifiers of DAGs, tasks and runs, and the naming rules they obey.
//!
//! DAG ids and namespaces end up in Kubernetes object names, so they must be
//! DNS-1123 labels. Task ids end up in label values, so they are limited to
//! what a label value accepts.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Error;

/// The longest DNS-1123 label (and Kubernetes label value).
pub const MAX_LABEL_LEN: usize = 63;

/// Checks that `s` is a DNS-1123 label: 1 to 63 characters of lowercase
/// letters, digits and `-`, starting and ending with a letter or digit.
///
/// Returns a sentence saying what is wrong, for error messages.
pub fn check_dns1123_label(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > MAX_LABEL_LEN {
        return Err(format!(
            "is {} characters long; at most {MAX_LABEL_LEN} are allowed",
            s.len()
        ));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(format!(
            "contains {c:?}; only lowercase letters, digits and '-' are allowed"
        ));
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Err("must start and end with a lowercase letter or digit".into());
    }
    Ok(())
}

/// Checks that `s` can be a task id: 1 to 63 characters of ASCII letters,
/// digits, `_`, `-` and `.`, starting and ending with a letter or digit (a
/// valid Kubernetes label value).
pub fn check_task_id(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > MAX_LABEL_LEN {
        return Err(format!(
            "is {} characters long; at most {MAX_LABEL_LEN} are allowed",
            s.len()
        ));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(format!(
            "contains {c:?}; only letters, digits, '_', '-' and '.' are allowed"
        ));
    }
    let first = s.chars().next().unwrap_or('a');
    let last = s.chars().last().unwrap_or('a');
    if !first.is_ascii_alphanumeric() || !last.is_ascii_alphanumeric() {
        return Err("must start and end with a letter or digit".into());
    }
    Ok(())
}

/// The id a DAG function named `fn_name` gets when none is given: the name
/// with `_` replaced by `-`, so that `fn daily_sales` becomes `daily-sales`.
pub fn dag_id_from_fn_name(fn_name: &str) -> String {
    fn_name.trim_start_matches("r#").replace('_', "-")
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $check:path, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps `id`.
            pub fn new(id: impl Into<String>) -> Result<Self, Error> {
                let id = id.into();
                match $check(&id) {
                    Ok(()) => Ok(Self(id)),
                    Err(reason) => Err(Error::InvalidId { what: $what, id, reason }),
                }
            }

            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.pad(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self, Error> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = Error;
            fn try_from(s: String) -> Result<Self, Error> {
                Self::new(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

string_id!(
    /// A DAG's id: a DNS-1123 label such as `daily-sales`.
    DagId,
    check_dns1123_label,
    "DAG id"
);
string_id!(
    /// A task's id inside its DAG, such as `load_csv`.
    TaskId,
    check_task_id,
    "task id"
);

/// A DAG run's id, unique within its DAG, such as
/// `scheduled__2026-01-01T00:00:00+00:00` (Airflow's convention).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(String);

impl RunId {
    /// Wraps a run id. Any non-empty string without `/` is accepted, so ids
    /// can be given on the command line and in URLs.
    pub fn new(id: impl Into<String>) -> Result<Self, Error> {
        let id = id.into();
        if id.is_empty() || id.contains('/') || id.chars().any(char::is_control) {
            return Err(Error::InvalidId {
                what: "run id",
                id,
                reason: "must be non-empty, without '/' or control characters".into(),
            });
        }
        Ok(Self(id))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        assert!(check_dns1123_label("daily-sales").is_ok());
        assert!(check_dns1123_label("a").is_ok());
        assert!(check_dns1123_label("x1-2y").is_ok());
        let err = check_dns1123_label("Daily").unwrap_err();
        assert!(err.contains("'D'"), "{err}");
        assert!(check_dns1123_label("daily_sales").is_err());
        assert!(check_dns1123_label("-a").is_err());
        assert!(check_dns1123_label("a-").is_err());
        assert!(check_dns1123_label("").is_err());
        assert!(check_dns1123_label(&"a".repeat(64)).is_err());
        assert!(check_dns1123_label(&"a".repeat(63)).is_ok());
    }

    #[test]
    fn task_ids() {
        assert!(check_task_id("load_csv").is_ok());
        assert!(check_task_id("stats.north-1").is_ok());
        assert!(check_task_id("_x").is_err());
        assert!(check_task_id("a b").is_err());
    }

    #[test]
    fn dag_id_from_fn() {
        assert_eq!(dag_id_from_fn_name("daily_sales"), "daily-sales");
        assert_eq!(dag_id_from_fn_name("r#type"), "type");
    }

    #[test]
    fn ids_round_trip_through_serde() {
        let id = DagId::new("etl").unwrap();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"etl\"");
        let back: DagId = serde_json::from_str(&json).unwrap();
        assert_eq!(back, id);
        assert!(serde_json::from_str::<DagId>("\"Not_Valid\"").is_err());
    }
}
