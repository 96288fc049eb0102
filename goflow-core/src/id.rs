//! Identifiers of DAGs, tasks and runs, and the naming rules they obey.
//!
//! DAG ids and namespaces end up in Kubernetes object names, so they must be
//! DNS-1123 labels. Task ids end up in label values, so they are limited to
//! what a label value accepts.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Error;

pub use goflow_syntax::id::{
    check_dns1123_label, check_task_id, dag_id_from_fn_name, MAX_LABEL_LEN,
};

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
    fn ids_round_trip_through_serde() {
        let id = DagId::new("etl").unwrap();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"etl\"");
        let back: DagId = serde_json::from_str(&json).unwrap();
        assert_eq!(back, id);
        assert!(serde_json::from_str::<DagId>("\"Not_Valid\"").is_err());
    }
}
