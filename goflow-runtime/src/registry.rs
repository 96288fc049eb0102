//! The DAGs and tasks a binary contains, collected at start-up from what
//! `#[dag]` and `#[task]` registered through `inventory`.

use std::collections::BTreeMap;
use std::sync::Arc;

use goflow_core::{Dag, DagId, TaskOptions};

/// A DAG registered by `#[dag]`.
#[derive(Debug)]
pub struct DagRegistration {
    /// Builds the DAG (the function `#[dag]` generated).
    pub build: fn() -> Dag,
    /// Where the DAG is declared, for error messages.
    pub file: &'static str,
    /// The line of the declaration.
    pub line: u32,
}

inventory::collect!(DagRegistration);

/// A task function registered by `#[task]`.
#[derive(Debug)]
pub struct TaskRegistration {
    /// The function's name.
    pub name: &'static str,
    /// The module that defines it.
    pub module_path: &'static str,
    /// The options given in `#[task(...)]`.
    pub options: fn() -> TaskOptions,
    /// Where it is declared.
    pub file: &'static str,
    /// The line of the declaration.
    pub line: u32,
}

inventory::collect!(TaskRegistration);

/// Errors in the set of registered DAGs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// Two DAGs share an id (e.g. two crates linked into one binary).
    #[error(
        "two DAGs have the id {id:?}: one declared at {first}, the other at {second}; \
         give one of them another id with #[dag(id = \"...\")]"
    )]
    DuplicateDag {
        /// The shared id.
        id: String,
        /// `file:line` of the first.
        first: String,
        /// `file:line` of the second.
        second: String,
    },
    /// No DAG has this id.
    #[error("no DAG with id {id:?}; this binary has: {known}")]
    UnknownDag {
        /// The id asked for.
        id: String,
        /// The ids there are, comma-separated.
        known: String,
    },
}

/// The DAGs of this binary, by id.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    dags: BTreeMap<DagId, Arc<Dag>>,
}

impl Registry {
    /// Collects every DAG registered with `#[dag]` in the binary.
    pub fn from_inventory() -> Result<Self, RegistryError> {
        Self::from_dags(
            inventory::iter::<DagRegistration>
                .into_iter()
                .map(|r| (r.build)()),
        )
    }

    /// A registry of the given DAGs (for embedding and tests).
    pub fn from_dags(dags: impl IntoIterator<Item = Dag>) -> Result<Self, RegistryError> {
        let mut map: BTreeMap<DagId, Arc<Dag>> = BTreeMap::new();
        for dag in dags {
            if let Some(first) = map.get(dag.id()) {
                return Err(RegistryError::DuplicateDag {
                    id: dag.id().to_string(),
                    first: format!("{}:{}", first.source_file(), first.source_line()),
                    second: format!("{}:{}", dag.source_file(), dag.source_line()),
                });
            }
            map.insert(dag.id().clone(), Arc::new(dag));
        }
        Ok(Self { dags: map })
    }

    /// The DAG `id`. Also accepts the id with `_` for `-`, as the DAG
    /// function is named (`daily_sales` for `daily-sales`).
    pub fn get(&self, id: &str) -> Result<&Arc<Dag>, RegistryError> {
        let normalized = id.replace('_', "-");
        self.dags
            .get(id)
            .or_else(|| self.dags.get(normalized.as_str()))
            .ok_or_else(|| RegistryError::UnknownDag {
                id: id.to_owned(),
                known: if self.dags.is_empty() {
                    "no DAGs at all".to_owned()
                } else {
                    self.dags
                        .keys()
                        .map(|k| k.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            })
    }

    /// Every DAG, by id.
    pub fn dags(&self) -> impl Iterator<Item = &Arc<Dag>> {
        self.dags.values()
    }

    /// How many DAGs there are.
    pub fn len(&self) -> usize {
        self.dags.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.dags.is_empty()
    }
}

/// Every task function registered with `#[task]`, sorted by module and name.
pub fn registered_tasks() -> Vec<&'static TaskRegistration> {
    let mut tasks: Vec<_> = inventory::iter::<TaskRegistration>.into_iter().collect();
    tasks.sort_by_key(|t| (t.module_path, t.name));
    tasks
}

#[cfg(test)]
mod tests {
    use super::*;
    use goflow_core::DagBuilder;

    #[test]
    fn duplicate_ids_are_an_error_naming_both_places() {
        let a = DagBuilder::new("etl")
            .source("src/a.rs", 10)
            .build()
            .unwrap();
        let b = DagBuilder::new("etl")
            .source("src/b.rs", 20)
            .build()
            .unwrap();
        let err = Registry::from_dags([a, b]).unwrap_err().to_string();
        assert!(
            err.contains("src/a.rs:10") && err.contains("src/b.rs:20"),
            "{err}"
        );
    }

    #[test]
    fn lookup_accepts_underscores_and_lists_known_ids() {
        let reg = Registry::from_dags([DagBuilder::new("daily-sales").build().unwrap()]).unwrap();
        assert!(reg.get("daily_sales").is_ok());
        let err = reg.get("nightly").unwrap_err().to_string();
        assert_eq!(
            err,
            "no DAG with id \"nightly\"; this binary has: daily-sales"
        );
    }
}
