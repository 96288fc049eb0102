//! Task options (retries, timeouts, trigger rule, pools, Kubernetes
//! settings) and the retry policy they define.
//!
//! Every field is optional so that options layer: a task's own
//! `#[task(...)]` options win over its DAG's defaults, which win over the
//! built-in defaults given by the accessor methods.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Error, TriggerRule};

/// The default delay before a retry (Airflow's default too).
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_secs(300);
/// The default cap on exponential backoff.
pub const DEFAULT_MAX_RETRY_DELAY: Duration = Duration::from_secs(24 * 3600);
/// Tries of a task that may be lost to crashes before it fails, unless set
/// (`max_lost_tries`): enough for a few scheduler restarts, few enough that
/// a task that kills its scheduler every time still ends.
pub const DEFAULT_MAX_LOST_TRIES: u32 = 3;
/// The pool a task uses when it names none.
pub const DEFAULT_POOL: &str = "default_pool";

/// How the delay between retries grows.
///
/// Non-exhaustive: more policies may come, so a `match` needs a `_` arm.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Backoff {
    /// The same delay before every retry.
    #[default]
    Fixed,
    /// The delay doubles with each retry, up to the maximum delay.
    Exponential,
}

impl FromStr for Backoff {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        const ALL: [Backoff; 2] = [Backoff::Fixed, Backoff::Exponential];
        word(goflow_syntax::words::BACKOFF, s).map(|i| ALL[i])
    }
}

/// The position of `s` among an option's words (the grammar the macros
/// check literals with), or the model's error naming them.
fn word(words: goflow_syntax::words::Words, s: &str) -> Result<usize, Error> {
    words.find(s).map_err(|e| Error::InvalidOption {
        what: e.what,
        value: e.value,
        expected: e.expected,
    })
}

/// Which executor runs a task.
///
/// Non-exhaustive: more executors may come, so a `match` needs a `_` arm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ExecutorKind {
    /// On the scheduler's own async runtime (fastest).
    InProcess,
    /// In a child process: the binary re-executes itself as `tasks run`.
    LocalProcess,
    /// As a Kubernetes Job.
    Kubernetes,
}

impl ExecutorKind {
    /// The executor's name as written in options.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutorKind::InProcess => "in_process",
            ExecutorKind::LocalProcess => "local_process",
            ExecutorKind::Kubernetes => "kubernetes",
        }
    }
}

impl fmt::Display for ExecutorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for ExecutorKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        const ALL: [ExecutorKind; 3] = [
            ExecutorKind::InProcess,
            ExecutorKind::LocalProcess,
            ExecutorKind::Kubernetes,
        ];
        word(goflow_syntax::words::EXECUTOR, s).map(|i| ALL[i])
    }
}

/// Settings the Kubernetes executor applies to a task's Job.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KubernetesOptions {
    /// Container image.
    pub image: Option<String>,
    /// CPU request, a Kubernetes quantity such as `500m`.
    pub cpu_request: Option<String>,
    /// CPU limit.
    pub cpu_limit: Option<String>,
    /// Memory request, a Kubernetes quantity such as `512Mi`.
    pub memory_request: Option<String>,
    /// Memory limit.
    pub memory_limit: Option<String>,
    /// Extra environment variables, in order.
    pub env: Vec<(String, String)>,
    /// Service account the pod runs as.
    pub service_account: Option<String>,
    /// Node selector labels.
    pub node_selector: Vec<(String, String)>,
}

impl KubernetesOptions {
    fn or(self, d: &KubernetesOptions) -> KubernetesOptions {
        let mut env = d.env.clone();
        env.extend(self.env);
        let mut node_selector = d.node_selector.clone();
        node_selector.extend(self.node_selector);
        KubernetesOptions {
            image: self.image.or_else(|| d.image.clone()),
            cpu_request: self.cpu_request.or_else(|| d.cpu_request.clone()),
            cpu_limit: self.cpu_limit.or_else(|| d.cpu_limit.clone()),
            memory_request: self.memory_request.or_else(|| d.memory_request.clone()),
            memory_limit: self.memory_limit.or_else(|| d.memory_limit.clone()),
            env,
            service_account: self.service_account.or_else(|| d.service_account.clone()),
            node_selector,
        }
    }
}

/// A task's options. Unset fields fall back to the DAG's defaults, then to
/// the built-in defaults of the accessor methods.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TaskOptions {
    /// Retries after the first try (so `retries = 2` means up to 3 tries).
    pub retries: Option<u32>,
    /// Delay before the first retry.
    pub retry_delay: Option<Duration>,
    /// How the delay grows between retries.
    pub backoff: Option<Backoff>,
    /// Cap on the retry delay under exponential backoff.
    pub max_retry_delay: Option<Duration>,
    /// A try running longer than this is cancelled and fails.
    pub timeout: Option<Duration>,
    /// When the task runs, given its upstreams' states.
    pub trigger_rule: Option<TriggerRule>,
    /// The pool whose slots bound how many such tasks run at once.
    pub pool: Option<String>,
    /// Higher runs first when tasks compete for slots.
    pub priority_weight: Option<i32>,
    /// The executor that runs the task.
    pub executor: Option<ExecutorKind>,
    /// How many tries may be lost to crashes of the process running them
    /// (they do not use `retries`) before the task fails.
    pub max_lost_tries: Option<u32>,
    /// Kubernetes settings.
    pub kubernetes: KubernetesOptions,
}

impl TaskOptions {
    /// These options with unset fields taken from `defaults`.
    pub fn or(self, defaults: &TaskOptions) -> TaskOptions {
        TaskOptions {
            retries: self.retries.or(defaults.retries),
            retry_delay: self.retry_delay.or(defaults.retry_delay),
            backoff: self.backoff.or(defaults.backoff),
            max_retry_delay: self.max_retry_delay.or(defaults.max_retry_delay),
            timeout: self.timeout.or(defaults.timeout),
            trigger_rule: self.trigger_rule.or(defaults.trigger_rule),
            pool: self.pool.or_else(|| defaults.pool.clone()),
            priority_weight: self.priority_weight.or(defaults.priority_weight),
            executor: self.executor.or(defaults.executor),
            max_lost_tries: self.max_lost_tries.or(defaults.max_lost_tries),
            kubernetes: self.kubernetes.or(&defaults.kubernetes),
        }
    }

    /// The retry policy these options define.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            retries: self.retries.unwrap_or(0),
            delay: self.retry_delay.unwrap_or(DEFAULT_RETRY_DELAY),
            backoff: self.backoff.unwrap_or_default(),
            max_delay: self.max_retry_delay.unwrap_or(DEFAULT_MAX_RETRY_DELAY),
        }
    }

    /// Tries that may be lost before the task fails
    /// ([`DEFAULT_MAX_LOST_TRIES`] unless set).
    pub fn max_lost_tries(&self) -> u32 {
        self.max_lost_tries.unwrap_or(DEFAULT_MAX_LOST_TRIES)
    }

    /// The trigger rule (`all_success` unless set).
    pub fn trigger_rule(&self) -> TriggerRule {
        self.trigger_rule.unwrap_or_default()
    }

    /// The pool (`default_pool` unless set).
    pub fn pool(&self) -> &str {
        self.pool.as_deref().unwrap_or(DEFAULT_POOL)
    }

    /// The priority weight (1 unless set).
    pub fn priority_weight(&self) -> i32 {
        self.priority_weight.unwrap_or(1)
    }
}

/// When and how often a failed task is tried again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first try.
    pub retries: u32,
    /// Delay before the first retry.
    pub delay: Duration,
    /// Growth of the delay.
    pub backoff: Backoff,
    /// Cap on the delay.
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// The most tries a task instance gets.
    pub fn max_tries(&self) -> u32 {
        self.retries.saturating_add(1)
    }

    /// The delay to wait after try `try_number` (1-based) failed, or `None`
    /// when that was the last try.
    pub fn delay_after(&self, try_number: u32) -> Option<Duration> {
        if try_number >= self.max_tries() {
            return None;
        }
        Some(match self.backoff {
            Backoff::Fixed => self.delay,
            Backoff::Exponential => {
                let factor = 2u32.saturating_pow(try_number.saturating_sub(1));
                self.delay.saturating_mul(factor).min(self.max_delay)
            }
        })
    }
}

pub use goflow_syntax::quantity::{check_quantity, quantity_millis};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_options_layer_over_defaults() {
        let defaults = TaskOptions {
            retries: Some(2),
            timeout: Some(Duration::from_secs(60)),
            kubernetes: KubernetesOptions {
                image: Some("base:1".into()),
                env: vec![("A".into(), "1".into())],
                ..Default::default()
            },
            ..Default::default()
        };
        let task = TaskOptions {
            retries: Some(5),
            kubernetes: KubernetesOptions {
                env: vec![("B".into(), "2".into())],
                ..Default::default()
            },
            ..Default::default()
        };
        let merged = task.or(&defaults);
        assert_eq!(merged.retries, Some(5));
        assert_eq!(merged.timeout, Some(Duration::from_secs(60)));
        assert_eq!(merged.kubernetes.image.as_deref(), Some("base:1"));
        assert_eq!(merged.kubernetes.env.len(), 2);
        assert_eq!(merged.pool(), "default_pool");
        assert_eq!(merged.trigger_rule(), TriggerRule::AllSuccess);
    }

    #[test]
    fn fixed_and_exponential_backoff() {
        let fixed = RetryPolicy {
            retries: 3,
            delay: Duration::from_secs(30),
            backoff: Backoff::Fixed,
            max_delay: DEFAULT_MAX_RETRY_DELAY,
        };
        assert_eq!(fixed.max_tries(), 4);
        assert_eq!(fixed.delay_after(1), Some(Duration::from_secs(30)));
        assert_eq!(fixed.delay_after(3), Some(Duration::from_secs(30)));
        assert_eq!(fixed.delay_after(4), None);

        let exp = RetryPolicy {
            retries: 10,
            delay: Duration::from_secs(10),
            backoff: Backoff::Exponential,
            max_delay: Duration::from_secs(60),
        };
        let delays: Vec<u64> = (1..=6)
            .map(|t| exp.delay_after(t).unwrap().as_secs())
            .collect();
        assert_eq!(delays, [10, 20, 40, 60, 60, 60]);
        assert_eq!(exp.delay_after(11), None);
        // Far-out tries saturate instead of overflowing.
        assert_eq!(exp.delay_after(9).unwrap(), Duration::from_secs(60));
    }

    #[test]
    fn no_retries_by_default() {
        let p = TaskOptions::default().retry_policy();
        assert_eq!(p.max_tries(), 1);
        assert_eq!(p.delay_after(1), None);
    }

    #[test]
    fn quantities() {
        for ok in ["500m", "2", "1.5", "512Mi", "1Gi", "100k"] {
            assert!(check_quantity(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Mi", "1.2.3", "512MB", "-1", "lots", ".", "1e", "1e400"] {
            assert!(check_quantity(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn quantity_values_round_up_to_thousandths() {
        let cases: [(&str, u128); 13] = [
            ("500m", 500),
            ("2", 2000),
            ("1.5", 1500),
            ("0.1", 100),
            (".5", 500),
            ("1Ki", 1024 * 1000),
            ("256Mi", 256 * (1 << 20) * 1000),
            ("1G", 1_000_000_000_000),
            ("100k", 100_000_000),
            ("1e3", 1_000_000),
            ("1E", 1_000_000_000_000_000_000_000),
            // Kubernetes rounds fractions of a milli-unit up.
            ("1u", 1),
            ("0", 0),
        ];
        for (q, want) in cases {
            assert_eq!(quantity_millis(q), Ok(want), "{q}");
        }
        assert!(quantity_millis("99999999999999999999999999999999999999Ei")
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn option_words() {
        for (i, b) in [Backoff::Fixed, Backoff::Exponential]
            .into_iter()
            .enumerate()
        {
            let word = goflow_syntax::words::BACKOFF.words[i];
            assert_eq!(word.parse::<Backoff>().unwrap(), b);
            assert_eq!(serde_json::to_value(b).unwrap(), word);
        }
        for e in [
            ExecutorKind::InProcess,
            ExecutorKind::LocalProcess,
            ExecutorKind::Kubernetes,
        ] {
            assert_eq!(e.as_str().parse::<ExecutorKind>().unwrap(), e);
        }
        assert_eq!(
            goflow_syntax::words::EXECUTOR.words,
            ["in_process", "local_process", "kubernetes"]
        );
        assert_eq!(
            "exponential".parse::<Backoff>().unwrap(),
            Backoff::Exponential
        );
        assert!("linear".parse::<Backoff>().is_err());
        assert_eq!(
            "local_process".parse::<ExecutorKind>().unwrap(),
            ExecutorKind::LocalProcess
        );
        assert!("docker".parse::<ExecutorKind>().is_err());
    }
}
