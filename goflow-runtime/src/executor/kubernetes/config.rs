//! How the Kubernetes executor builds and follows Jobs: [`KubernetesConfig`],
//! and [`KubernetesArgs`], the same settings as command-line flags and
//! environment variables for a binary's `scheduler` command.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

/// How a Job is deleted: what happens to its pods.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, ValueEnum)]
pub enum Propagation {
    /// The Job goes at once; the garbage collector removes its pods after.
    #[default]
    Background,
    /// The Job stays (with a deletion timestamp) until its pods are gone.
    Foreground,
}

impl Propagation {
    pub(crate) fn policy(self) -> kube::api::PropagationPolicy {
        match self {
            Propagation::Background => kube::api::PropagationPolicy::Background,
            Propagation::Foreground => kube::api::PropagationPolicy::Foreground,
        }
    }
}

/// Settings of the Kubernetes executor. [`KubernetesConfig::default`]
/// reads nothing from the environment; [`KubernetesArgs`] does.
///
/// Non-exhaustive: start from [`KubernetesConfig::default`] and set the
/// fields you need.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct KubernetesConfig {
    /// The namespace of Jobs whose DAG names none.
    pub namespace: String,
    /// The image of tasks whose options (and DAG defaults) name none
    /// (`GOFLOW_IMAGE`).
    pub image: Option<String>,
    /// The binary's path inside the image; the Job's command.
    pub binary: String,
    /// Arguments before `tasks run ...` (e.g. a test harness's).
    pub args_prefix: Vec<String>,
    /// The URL at which pods reach this scheduler's web server; the task
    /// API is under it, at [`crate::task_api::MOUNT_PATH`].
    pub advertise_url: String,
    /// Tells this deployment's Jobs from others' in the same namespaces
    /// (label `goflow.rs/instance`; part of each Job's name hash).
    pub instance: String,
    /// How long a Job's pod may stay unstarted (image pull errors,
    /// unschedulable, no pod created) before the try fails.
    pub pending_deadline: Duration,
    /// `ttlSecondsAfterFinished` of every Job: how long Kubernetes keeps a
    /// finished Job that no scheduler deleted.
    pub ttl_after_finished: Duration,
    /// How long after a try's timeout (enforced by the Job's
    /// `activeDeadlineSeconds`) the executor stops waiting for Kubernetes
    /// to say so, and deletes the Job itself.
    pub timeout_grace: Duration,
    /// Whether a finished Job is deleted as soon as its logs are copied
    /// (otherwise its TTL removes it).
    pub delete_finished_jobs: bool,
    /// How the Jobs of tries that ended are deleted. Jobs that goflow
    /// stops (a cancelled, timed-out or lost try, a leftover Job of an
    /// older try) are always deleted in the foreground, so that their
    /// pods go first.
    pub propagation: Propagation,
    /// How long a running try's worker may send nothing to the task API
    /// (it heartbeats every 15 s) while the watch knows no pod of its Job,
    /// before the try is failed as lost and its Job deleted.
    pub heartbeat_timeout: Duration,
    /// Sustained Job creations per second.
    pub creates_per_second: u32,
    /// Job creations allowed at once above that rate.
    pub create_burst: u32,
    /// Environment variables of every task container, before the task's
    /// own.
    pub env: Vec<(String, String)>,
    /// The service account of pods whose task names none; without one,
    /// pods get no API token mounted.
    pub service_account: Option<String>,
    /// `imagePullPolicy` of task containers (`Always`, `IfNotPresent`,
    /// `Never`); Kubernetes' default when `None`.
    pub image_pull_policy: Option<String>,
    /// The most bytes of a pod's log copied into goflow's log store.
    pub log_limit_bytes: i64,
    /// Whether a running pod's log is followed into goflow's log (live in
    /// the UI), one open stream per running pod; otherwise it is copied
    /// when the try ends.
    pub follow_logs: bool,
}

/// The Service name the generated manifests use, and so the default
/// advertise URL's host.
pub const DEFAULT_SERVICE: &str = "goflow";
/// The port the generated manifests' Service and container use.
pub const DEFAULT_PORT: u16 = 8080;

impl Default for KubernetesConfig {
    fn default() -> Self {
        let namespace = "default".to_owned();
        KubernetesConfig {
            advertise_url: default_advertise_url(&namespace),
            namespace,
            image: None,
            binary: "/usr/local/bin/goflow".to_owned(),
            args_prefix: Vec::new(),
            instance: "goflow".to_owned(),
            pending_deadline: Duration::from_secs(300),
            ttl_after_finished: Duration::from_secs(24 * 3600),
            timeout_grace: Duration::from_secs(60),
            delete_finished_jobs: true,
            propagation: Propagation::Background,
            heartbeat_timeout: Duration::from_secs(300),
            creates_per_second: 20,
            create_burst: 50,
            env: Vec::new(),
            service_account: None,
            image_pull_policy: None,
            log_limit_bytes: 16 << 20,
            follow_logs: true,
        }
    }
}

/// The in-cluster URL of the generated manifests' Service in `namespace`.
pub fn default_advertise_url(namespace: &str) -> String {
    format!("http://{DEFAULT_SERVICE}.{namespace}.svc:{DEFAULT_PORT}")
}

/// The namespace this process runs in, when it runs in a pod.
pub fn in_cluster_namespace() -> Option<String> {
    std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
}

/// The Kubernetes executor's settings as flags (each with an environment
/// variable), for a `scheduler` command to `#[command(flatten)]`.
#[derive(Clone, Debug, Default, Args)]
pub struct KubernetesArgs {
    /// Namespace of Jobs whose DAG names none [default: the scheduler's own
    /// namespace in a cluster, else `default`].
    #[arg(
        long = "k8s-namespace",
        env = "GOFLOW_K8S_NAMESPACE",
        value_name = "NS"
    )]
    pub namespace: Option<String>,
    /// Image of tasks that name none (nor their DAG's defaults).
    #[arg(long = "image", env = "GOFLOW_IMAGE", value_name = "IMAGE")]
    pub image: Option<String>,
    /// Path of this binary inside the image [default: this binary's own
    /// path].
    #[arg(long = "k8s-binary", env = "GOFLOW_K8S_BINARY", value_name = "PATH")]
    pub binary: Option<PathBuf>,
    /// URL at which task pods reach this scheduler's web server (and its
    /// task API). Default: `http://goflow.<namespace>.svc:8080`.
    #[arg(
        long = "advertise-url",
        env = "GOFLOW_ADVERTISE_URL",
        value_name = "URL"
    )]
    pub advertise_url: Option<String>,
    /// Name telling this deployment's Jobs from others' [default: goflow].
    #[arg(
        long = "k8s-instance",
        env = "GOFLOW_K8S_INSTANCE",
        value_name = "NAME"
    )]
    pub instance: Option<String>,
    /// How long a pod may stay unstarted (image pull error,
    /// unschedulable) before its try fails, e.g. `5m`.
    #[arg(long = "k8s-pending-deadline", env = "GOFLOW_K8S_PENDING_DEADLINE", value_name = "DURATION", value_parser = goflow_core::duration::parse)]
    pub pending_deadline: Option<Duration>,
    /// `ttlSecondsAfterFinished` of Jobs, e.g. `1d`.
    #[arg(long = "k8s-job-ttl", env = "GOFLOW_K8S_JOB_TTL", value_name = "DURATION", value_parser = goflow_core::duration::parse)]
    pub job_ttl: Option<Duration>,
    /// Keep finished Jobs until their TTL instead of deleting them once
    /// their logs are copied.
    #[arg(long = "k8s-keep-jobs", env = "GOFLOW_K8S_KEEP_JOBS")]
    pub keep_jobs: bool,
    /// Copy a pod's log when its try ends instead of following it while it
    /// runs (one open stream per running pod, which a very wide fan-out may
    /// not want).
    #[arg(long = "k8s-no-follow-logs", env = "GOFLOW_K8S_NO_FOLLOW_LOGS")]
    pub no_follow_logs: bool,
    /// How the Jobs of finished tries are deleted (Jobs goflow stops are
    /// always deleted in the foreground).
    #[arg(long = "k8s-propagation", env = "GOFLOW_K8S_PROPAGATION", value_enum)]
    pub propagation: Option<Propagation>,
    /// How long a running try's worker may be silent (no heartbeat to the
    /// task API) while its pod is gone or unknown before the try fails as
    /// lost, e.g. `5m` [default: 5m].
    #[arg(long = "k8s-heartbeat-timeout", env = "GOFLOW_K8S_HEARTBEAT_TIMEOUT", value_name = "DURATION", value_parser = goflow_core::duration::parse)]
    pub heartbeat_timeout: Option<Duration>,
    /// Job creations per second [default: 20].
    #[arg(long = "k8s-qps", env = "GOFLOW_K8S_QPS", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub qps: Option<u32>,
    /// Job creations allowed in a burst above that rate [default: 50].
    #[arg(long = "k8s-burst", env = "GOFLOW_K8S_BURST", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub burst: Option<u32>,
    /// Service account of task pods whose task names none.
    #[arg(
        long = "k8s-service-account",
        env = "GOFLOW_K8S_SERVICE_ACCOUNT",
        value_name = "NAME"
    )]
    pub service_account: Option<String>,
    /// `imagePullPolicy` of task containers.
    #[arg(long = "k8s-image-pull-policy", env = "GOFLOW_K8S_IMAGE_PULL_POLICY", value_name = "POLICY", value_parser = ["Always", "IfNotPresent", "Never"])]
    pub image_pull_policy: Option<String>,
}

impl KubernetesArgs {
    /// The configuration these flags describe, on top of the defaults.
    pub fn to_config(&self) -> KubernetesConfig {
        let mut config = KubernetesConfig::default();
        let namespace = self
            .namespace
            .clone()
            .filter(|n| !n.trim().is_empty())
            .or_else(in_cluster_namespace)
            .unwrap_or_else(|| config.namespace.clone());
        config.advertise_url = self
            .advertise_url
            .clone()
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(|| default_advertise_url(&namespace));
        config.namespace = namespace;
        config.image = self.image.clone().filter(|i| !i.trim().is_empty());
        config.binary = match &self.binary {
            Some(path) => path.display().to_string(),
            None => std::env::current_exe()
                .map(|p| p.display().to_string())
                .unwrap_or(config.binary),
        };
        if let Some(instance) = &self.instance {
            config.instance = instance.clone();
        }
        if let Some(d) = self.pending_deadline {
            config.pending_deadline = d;
        }
        if let Some(d) = self.job_ttl {
            config.ttl_after_finished = d;
        }
        config.delete_finished_jobs = !self.keep_jobs;
        config.follow_logs = !self.no_follow_logs;
        if let Some(p) = self.propagation {
            config.propagation = p;
        }
        if let Some(d) = self.heartbeat_timeout {
            config.heartbeat_timeout = d;
        }
        if let Some(n) = self.qps {
            config.creates_per_second = n;
        }
        if let Some(n) = self.burst {
            config.create_burst = n;
        }
        config.service_account = self.service_account.clone();
        config.image_pull_policy = self.image_pull_policy.clone();
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        k8s: KubernetesArgs,
    }

    #[test]
    fn flags_override_defaults() {
        let cli = Cli::try_parse_from([
            "x",
            "--k8s-namespace",
            "jobs",
            "--image",
            "reg.example/app:1",
            "--k8s-binary",
            "/app",
            "--k8s-pending-deadline",
            "2m",
            "--k8s-job-ttl",
            "1h 30m",
            "--k8s-keep-jobs",
            "--k8s-no-follow-logs",
            "--k8s-propagation",
            "foreground",
            "--k8s-heartbeat-timeout",
            "90s",
            "--k8s-qps",
            "5",
            "--k8s-burst",
            "7",
        ])
        .unwrap();
        let c = cli.k8s.to_config();
        assert_eq!(c.namespace, "jobs");
        assert_eq!(c.advertise_url, "http://goflow.jobs.svc:8080");
        assert_eq!(c.image.as_deref(), Some("reg.example/app:1"));
        assert_eq!(c.binary, "/app");
        assert_eq!(c.pending_deadline, Duration::from_secs(120));
        assert_eq!(c.ttl_after_finished, Duration::from_secs(5400));
        assert!(!c.delete_finished_jobs);
        assert!(!c.follow_logs);
        assert_eq!(c.propagation, Propagation::Foreground);
        assert_eq!(c.heartbeat_timeout, Duration::from_secs(90));
        assert_eq!(
            Cli::try_parse_from(["x"])
                .unwrap()
                .k8s
                .to_config()
                .heartbeat_timeout,
            Duration::from_secs(300)
        );
        assert_eq!((c.creates_per_second, c.create_burst), (5, 7));
        assert!(Cli::try_parse_from(["x", "--k8s-qps", "0"]).is_err());
        assert!(Cli::try_parse_from(["x", "--k8s-pending-deadline", "soon"]).is_err());
        // One grammar with `#[task(timeout = ...)]`: a number needs its unit.
        let err = Cli::try_parse_from(["x", "--k8s-job-ttl", "3600"])
            .err()
            .expect("a number without its unit")
            .to_string();
        assert!(err.contains("\"3600\" is not a duration"), "{err}");
    }
}
