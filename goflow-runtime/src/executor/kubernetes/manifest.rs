//! The Job of a try, as a value: its name, labels, annotations, pod
//! template. No I/O here; everything is tested as values.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, ObjectFieldSelector, PodSpec, PodTemplateSpec,
    ResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sha2::{Digest, Sha256};

use super::config::KubernetesConfig;
use crate::executor::Launch;
use crate::task_api::{MOUNT_PATH, TASK_API_URL_ENV, TASK_TOKEN_ENV};
use crate::worker::CGROUP_METRICS_ENV;

/// The name of the task container in every Job's pod: the one whose exit
/// code decides the try (other containers, such as sidecars a mutating
/// webhook adds, do not).
pub const CONTAINER: &str = "task";

/// Label: who manages the Job (`goflow`).
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Label: which goflow deployment ([`KubernetesConfig::instance`]).
pub const LABEL_INSTANCE: &str = "goflow.rs/instance";
/// Label: the DAG id (made a valid label value).
pub const LABEL_DAG: &str = "goflow.rs/dag";
/// Label: the run id (made a valid label value: run ids such as
/// `scheduled__2026-01-01T00:00:00+00:00` are not).
pub const LABEL_RUN: &str = "goflow.rs/run";
/// Label: the task id.
pub const LABEL_TASK: &str = "goflow.rs/task";
/// Label: the try number.
pub const LABEL_TRY: &str = "goflow.rs/try";
/// Label on the pod template: the Job's name, to find a Job's pods.
pub const LABEL_JOB: &str = "goflow.rs/job";
/// Annotation: the exact DAG id.
pub const ANNOTATION_DAG: &str = "goflow.rs/dag-id";
/// Annotation: the exact run id.
pub const ANNOTATION_RUN: &str = "goflow.rs/run-id";
/// Annotation: the exact task id.
pub const ANNOTATION_TASK: &str = "goflow.rs/task-id";
/// Annotation: the try number.
pub const ANNOTATION_TRY: &str = "goflow.rs/try-number";
/// The value of [`LABEL_MANAGED_BY`].
pub const MANAGED_BY: &str = "goflow";

/// Environment variables goflow sets in every task container (a task's
/// own `env` cannot override them).
pub const RESERVED_ENV: [&str; 8] = [
    crate::server::WORKER_ENV,
    "GOFLOW_DAG_ID",
    "GOFLOW_RUN_ID",
    "GOFLOW_TASK_ID",
    "GOFLOW_TRY_NUMBER",
    TASK_API_URL_ENV,
    TASK_TOKEN_ENV,
    "GOFLOW_POD_NAME",
];

/// The longest Kubernetes label value and DNS-1123 label.
const MAX_LABEL: usize = 63;

/// Why a try's Job cannot be built. Each message names the setting.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// Neither the task, its DAG's defaults, nor the executor name an
    /// image.
    #[error(
        "task {task:?} has no container image: set `image = \"...\"` on the task or in its \
         DAG's defaults, or GOFLOW_IMAGE (--image) for the scheduler"
    )]
    NoImage {
        /// The task.
        task: String,
    },
    /// The image reference is not one.
    #[error("invalid image reference {image:?} for task {task:?}: {reason}")]
    InvalidImage {
        /// The task.
        task: String,
        /// The reference as given.
        image: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A CPU or memory setting is not a Kubernetes quantity.
    #[error("invalid {what} for task {task:?}: {reason}")]
    InvalidQuantity {
        /// The task.
        task: String,
        /// `cpu`, `memory_limit`...
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A namespace that is not a DNS-1123 label.
    #[error("invalid namespace {namespace:?}: {reason}")]
    InvalidNamespace {
        /// The namespace.
        namespace: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// The name of the Job of one try: `<dag>-<task>-<hash>-<try>`, a DNS-1123
/// label of at most 63 characters. The hash covers the instance, DAG, run
/// and task ids in full, so names stay unique when the readable part is
/// truncated or loses characters (`_`, `.`, capitals); the same try always
/// gets the same name, so no try gets two Jobs.
pub fn job_name(
    instance: &str,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
    try_number: u32,
) -> String {
    let mut hasher = Sha256::new();
    for part in [instance, dag_id, run_id, task_id] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    let hash = hex_prefix(&hasher.finalize(), 10);
    let suffix = format!("-{hash}-{try_number}");
    let budget = MAX_LABEL - suffix.len();
    let dag = dns_part(dag_id);
    let task = dns_part(task_id);
    let mut base = match (dag.is_empty(), task.is_empty()) {
        (false, false) => {
            // Share the room, the DAG getting at most half.
            let dag_room = dag
                .len()
                .min(budget / 2)
                .max(budget.saturating_sub(task.len() + 1));
            let dag = truncate_dns(&dag, dag_room.min(dag.len()));
            let task_room = budget.saturating_sub(dag.len() + 1);
            format!("{dag}-{}", truncate_dns(&task, task_room))
        }
        (false, true) => dag,
        (true, false) => task,
        (true, true) => "task".to_owned(),
    };
    base = truncate_dns(&base, budget);
    if base.is_empty() {
        base = "task".to_owned();
    }
    format!("{base}{suffix}")
}

/// `s` lowercased with runs of anything but `[a-z0-9]` as one `-`, without
/// `-` at either end.
fn dns_part(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_owned()
}

/// The first `max` characters of an ASCII DNS part, without a trailing `-`.
fn truncate_dns(s: &str, max: usize) -> String {
    s[..s.len().min(max)].trim_end_matches('-').to_owned()
}

/// The first `chars` lowercase hex digits of `bytes`.
fn hex_prefix(bytes: &[u8], chars: usize) -> String {
    let mut hex = hex::encode(bytes);
    hex.truncate(chars);
    hex
}

/// Whether `s` is a valid label value: at most 63 characters of
/// `[A-Za-z0-9._-]`, beginning and ending with an alphanumeric (or empty).
pub fn is_label_value(s: &str) -> bool {
    s.len() <= MAX_LABEL
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && s.chars().next().is_none_or(|c| c.is_ascii_alphanumeric())
        && s.chars().last().is_none_or(|c| c.is_ascii_alphanumeric())
}

/// `s` if it is a valid label value; else `s` with invalid characters as
/// `_`, cut to leave room, and `-` plus 8 hex digits of its SHA-256, so
/// that different values stay different. Label selectors on such values
/// match the value this function gives, never the original.
pub fn label_value(s: &str) -> String {
    if is_label_value(s) {
        return s.to_owned();
    }
    let hash = hex_prefix(&Sha256::digest(s.as_bytes()), 8);
    let cleaned: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(MAX_LABEL - hash.len() - 1)
        .collect();
    let cleaned = cleaned.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    if cleaned.is_empty() {
        hash
    } else {
        format!("{cleaned}-{hash}")
    }
}

/// The labels that select every Job (and pod) of one goflow deployment.
pub fn instance_selector(instance: &str) -> String {
    format!(
        "{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_INSTANCE}={}",
        label_value(instance)
    )
}

/// The labels that select every Job (of every try) of one task instance
/// (`dag`, `run`, `task`) of one goflow deployment. Label values may be
/// hashed (see [`label_value`]): compare the annotations for the exact ids.
pub fn task_instance_selector(instance: &str, dag: &str, run: &str, task: &str) -> String {
    format!(
        "{},{LABEL_DAG}={},{LABEL_RUN}={},{LABEL_TASK}={}",
        instance_selector(instance),
        label_value(dag),
        label_value(run),
        label_value(task)
    )
}

/// Checks an image reference (`[registry/]path[:tag][@digest]`) the way
/// the container runtime will, so that a typo fails the try at once
/// with a message instead of a pod stuck on `InvalidImageName`.
pub fn check_image(image: &str) -> Result<(), String> {
    if image.trim().is_empty() {
        return Err("it is empty".to_owned());
    }
    if let Some(c) = image.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("it contains {c:?}"));
    }
    let (rest, digest) = match image.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (image, None),
    };
    if let Some(digest) = digest {
        let ok = digest.split_once(':').is_some_and(|(algo, hex)| {
            !algo.is_empty()
                && algo
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+._-".contains(c))
                && hex.len() >= 32
                && hex.chars().all(|c| c.is_ascii_hexdigit())
        });
        if !ok {
            return Err(format!(
                "digest {digest:?} is not `algorithm:hex` (such as sha256:<64 hex digits>)"
            ));
        }
    }
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].rfind(':') {
        Some(i) => (&rest[..last_slash + i], Some(&rest[last_slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(tag) = tag {
        let valid = !tag.is_empty()
            && tag.len() <= 128
            && tag
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            && tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !valid {
            return Err(format!(
                "tag {tag:?} must be 1 to 128 letters, digits, `_`, `.` or `-`, not starting with `.` or `-`"
            ));
        }
    }
    let mut components: Vec<&str> = name.split('/').collect();
    // A first component with `.` or `:`, or `localhost`, is a registry host.
    if components.len() > 1 && (components[0].contains(['.', ':']) || components[0] == "localhost")
    {
        let host = components.remove(0);
        let valid_host = host.split(':').next().is_some_and(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
        });
        if !valid_host {
            return Err(format!("registry {host:?} is not a host name[:port]"));
        }
    }
    for component in components {
        let valid = !component.is_empty()
            && component.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')
            })
            && component.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && component.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit());
        if !valid {
            return Err(format!(
                "repository path component {component:?} must be lowercase letters and digits, \
                 separated by `.`, `_` or `-`"
            ));
        }
    }
    Ok(())
}

/// Everything about one try's Job that is not in the [`Launch`].
#[derive(Clone, Copy, Debug)]
pub struct JobParams<'a> {
    /// The executor's settings.
    pub config: &'a KubernetesConfig,
    /// The try's task API token.
    pub token: &'a str,
}

/// The namespace a try's Job runs in: its DAG's, else the configured one.
pub fn namespace_of<'a>(launch: &'a Launch, config: &'a KubernetesConfig) -> &'a str {
    launch.dag.namespace().unwrap_or(&config.namespace)
}

/// The name of a launch's Job.
pub fn job_name_of(launch: &Launch, config: &KubernetesConfig) -> String {
    job_name(
        &config.instance,
        launch.dag.id().as_str(),
        launch.ctx.run_id().as_str(),
        launch.ctx.task_id().as_str(),
        launch.ctx.try_number(),
    )
}

/// The Job that runs `launch`: see the module docs of
/// [`crate::executor::kubernetes`] for each field.
pub fn job_manifest(launch: &Launch, params: JobParams<'_>) -> Result<Job, ManifestError> {
    let config = params.config;
    let node = &launch.dag.tasks()[launch.key.task];
    let task_id = node.id.as_str();
    let options = &node.options.kubernetes;
    let namespace = namespace_of(launch, config);
    goflow_core::id::check_dns1123_label(namespace).map_err(|reason| {
        ManifestError::InvalidNamespace {
            namespace: namespace.to_owned(),
            reason,
        }
    })?;

    let image = options
        .image
        .as_deref()
        .or(config.image.as_deref())
        .filter(|i| !i.trim().is_empty())
        .ok_or_else(|| ManifestError::NoImage {
            task: task_id.to_owned(),
        })?;
    check_image(image).map_err(|reason| ManifestError::InvalidImage {
        task: task_id.to_owned(),
        image: image.to_owned(),
        reason,
    })?;

    let quantity =
        |what: &'static str, value: &Option<String>| -> Result<Option<Quantity>, ManifestError> {
            match value {
                None => Ok(None),
                Some(v) => goflow_core::options::check_quantity(v)
                    .map(|()| Some(Quantity(v.clone())))
                    .map_err(|reason| ManifestError::InvalidQuantity {
                        task: task_id.to_owned(),
                        what,
                        reason,
                    }),
            }
        };
    let mut requests = BTreeMap::new();
    let mut limits = BTreeMap::new();
    if let Some(q) = quantity("cpu", &options.cpu_request)? {
        requests.insert("cpu".to_owned(), q);
    }
    if let Some(q) = quantity("memory", &options.memory_request)? {
        requests.insert("memory".to_owned(), q);
    }
    if let Some(q) = quantity("cpu_limit", &options.cpu_limit)? {
        limits.insert("cpu".to_owned(), q);
    }
    if let Some(q) = quantity("memory_limit", &options.memory_limit)? {
        limits.insert("memory".to_owned(), q);
    }

    let name = job_name_of(launch, config);
    let ctx = &launch.ctx;
    let try_number = ctx.try_number().to_string();
    let labels: BTreeMap<String, String> = [
        (LABEL_MANAGED_BY, MANAGED_BY.to_owned()),
        (LABEL_INSTANCE, label_value(&config.instance)),
        (LABEL_DAG, label_value(ctx.dag_id().as_str())),
        (LABEL_RUN, label_value(ctx.run_id().as_str())),
        (LABEL_TASK, label_value(task_id)),
        (LABEL_TRY, try_number.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let annotations: BTreeMap<String, String> = [
        (ANNOTATION_DAG, ctx.dag_id().to_string()),
        (ANNOTATION_RUN, ctx.run_id().to_string()),
        (ANNOTATION_TASK, task_id.to_owned()),
        (ANNOTATION_TRY, try_number.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let mut pod_labels = labels.clone();
    pod_labels.insert(LABEL_JOB.to_owned(), name.clone());

    let value = |name: &str, value: String| EnvVar {
        name: name.to_owned(),
        value: Some(value),
        value_from: None,
    };
    let mut env = vec![
        value("GOFLOW_DAG_ID", ctx.dag_id().to_string()),
        value("GOFLOW_RUN_ID", ctx.run_id().to_string()),
        value("GOFLOW_TASK_ID", task_id.to_owned()),
        value("GOFLOW_TRY_NUMBER", try_number.clone()),
        value(
            TASK_API_URL_ENV,
            format!("{}{MOUNT_PATH}", config.advertise_url.trim_end_matches('/')),
        ),
        value(TASK_TOKEN_ENV, params.token.to_owned()),
        // The worker is alone in its container's cgroup: its counters are
        // the task's, subprocesses included.
        value(CGROUP_METRICS_ENV, "1".to_owned()),
        // A host binary embedding goflow knows by it that it is a worker.
        value(crate::server::WORKER_ENV, "1".to_owned()),
        EnvVar {
            name: "GOFLOW_POD_NAME".to_owned(),
            value: None,
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.name".to_owned(),
                    api_version: None,
                }),
                ..Default::default()
            }),
        },
    ];
    for (k, v) in config.env.iter().chain(&options.env) {
        if RESERVED_ENV.contains(&k.as_str()) {
            continue;
        }
        // A later setting of the same variable wins (the task's over the
        // executor's).
        env.retain(|e| e.name != *k);
        env.push(value(k, v.clone()));
    }

    let mut args = config.args_prefix.clone();
    args.extend([
        "tasks".to_owned(),
        "run".to_owned(),
        ctx.dag_id().to_string(),
        ctx.run_id().to_string(),
        task_id.to_owned(),
        "--try".to_owned(),
        try_number,
    ]);

    let service_account = options
        .service_account
        .clone()
        .or_else(|| config.service_account.clone());
    let node_selector: BTreeMap<String, String> = options.node_selector.iter().cloned().collect();
    let container = Container {
        name: CONTAINER.to_owned(),
        image: Some(image.to_owned()),
        image_pull_policy: config.image_pull_policy.clone(),
        command: Some(vec![config.binary.clone()]),
        args: Some(args),
        env: Some(env),
        resources: (!requests.is_empty() || !limits.is_empty()).then(|| ResourceRequirements {
            requests: (!requests.is_empty()).then_some(requests),
            limits: (!limits.is_empty()).then_some(limits),
            ..Default::default()
        }),
        // On a failure without a termination message, the log's tail.
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        ..Default::default()
    };
    let timeout = node.options.timeout;
    Ok(Job {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels),
            annotations: Some(annotations),
            ..Default::default()
        },
        spec: Some(JobSpec {
            // goflow owns retries: one pod per Job, never a second.
            backoff_limit: Some(0),
            active_deadline_seconds: timeout.map(|t| {
                i64::try_from(t.as_secs() + u64::from(t.subsec_nanos() > 0))
                    .unwrap_or(i64::MAX)
                    .max(1)
            }),
            ttl_seconds_after_finished: Some(
                i32::try_from(config.ttl_after_finished.as_secs()).unwrap_or(i32::MAX),
            ),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".to_owned()),
                    automount_service_account_token: service_account.is_none().then_some(false),
                    service_account_name: service_account,
                    node_selector: (!node_selector.is_empty()).then_some(node_selector),
                    enable_service_links: Some(false),
                    containers: vec![container],
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use goflow_core::{
        DagBuilder, DataInterval, Inputs, KubernetesOptions, RunId, RunType, TaskContext,
        TaskFuture, TaskOptions, TaskSpec,
    };
    use serde_json::json;

    use super::*;
    use crate::executor::TryKey;

    fn noop(_: TaskContext, _: &Inputs) -> TaskFuture {
        Box::pin(async { Err(goflow_core::TaskError::msg("not run")) })
    }

    const RUN: &str = "scheduled__2026-01-01T06:00:00+01:00";

    /// A launch of `task` (options `options`) in a DAG with `namespace` and
    /// DAG defaults `defaults`.
    fn launch(namespace: Option<&str>, defaults: TaskOptions, options: TaskOptions) -> Launch {
        let mut builder = DagBuilder::new("daily-sales").default_options(defaults);
        if let Some(ns) = namespace {
            builder = builder.namespace(ns);
        }
        let dag = builder
            .task(TaskSpec {
                id: "Load_Rows.v2".into(),
                function: "load",
                options,
                data_upstream: vec![],
                run: noop,
            })
            .build()
            .unwrap();
        Launch {
            key: TryKey {
                run: 3,
                task: 0,
                try_number: 2,
            },
            ctx: TaskContext::builder(
                dag.id().clone(),
                RunId::new(RUN).unwrap(),
                dag.tasks()[0].id.clone(),
            )
            .try_number(2)
            .max_tries(3)
            .run_type(RunType::Scheduled)
            .data_interval(DataInterval::at(chrono::Utc::now()))
            .conf(json!({}))
            .build(),
            dag: Arc::new(dag),
            inputs: Inputs::new(),
        }
    }

    fn config() -> KubernetesConfig {
        KubernetesConfig {
            namespace: "jobs-default".into(),
            image: Some("registry.example.com/global:1".into()),
            binary: "/usr/local/bin/dags".into(),
            args_prefix: vec!["--quiet".into()],
            advertise_url: "http://goflow.goflow.svc:8080/".into(),
            ttl_after_finished: Duration::from_secs(7200),
            env: vec![
                ("RUST_LOG".into(), "info".into()),
                ("REGION".into(), "global".into()),
                ("GOFLOW_TASK_TOKEN".into(), "hijack".into()),
            ],
            image_pull_policy: Some("IfNotPresent".into()),
            ..KubernetesConfig::default()
        }
    }

    fn task_options() -> TaskOptions {
        TaskOptions {
            timeout: Some(Duration::from_millis(90_500)),
            kubernetes: KubernetesOptions {
                image: Some("registry.example.com/task:7".into()),
                cpu_request: Some("250m".into()),
                cpu_limit: Some("1".into()),
                memory_request: Some("256Mi".into()),
                memory_limit: Some("1Gi".into()),
                env: vec![
                    ("REGION".into(), "north".into()),
                    ("GOFLOW_RUN_ID".into(), "spoofed".into()),
                ],
                service_account: Some("etl-reader".into()),
                node_selector: vec![("pool".into(), "batch".into())],
            },
            ..Default::default()
        }
    }

    #[test]
    fn the_job_of_a_try_as_a_value() {
        let l = launch(Some("analytics"), TaskOptions::default(), task_options());
        let job = job_manifest(
            &l,
            JobParams {
                config: &config(),
                token: "tok3n",
            },
        )
        .unwrap();
        let name = job_name("goflow", "daily-sales", RUN, "Load_Rows.v2", 2);
        let v = serde_json::to_value(&job).unwrap();
        assert_eq!(v["apiVersion"], "batch/v1");
        assert_eq!(v["kind"], "Job");
        let meta = &v["metadata"];
        assert_eq!(meta["name"], json!(name));
        assert!(
            name.starts_with("daily-sales-load-rows-v2-") && name.ends_with("-2"),
            "{name}"
        );
        assert_eq!(meta["namespace"], "analytics");
        let run_label = label_value(RUN);
        assert_eq!(
            meta["labels"],
            json!({
                "app.kubernetes.io/managed-by": "goflow",
                "goflow.rs/instance": "goflow",
                "goflow.rs/dag": "daily-sales",
                "goflow.rs/run": run_label,
                "goflow.rs/task": "Load_Rows.v2",
                "goflow.rs/try": "2",
            })
        );
        assert_eq!(
            meta["annotations"],
            json!({
                "goflow.rs/dag-id": "daily-sales",
                "goflow.rs/run-id": RUN,
                "goflow.rs/task-id": "Load_Rows.v2",
                "goflow.rs/try-number": "2",
            })
        );
        let spec = &v["spec"];
        assert_eq!(spec["backoffLimit"], 0);
        assert_eq!(spec["activeDeadlineSeconds"], 91, "90.5s rounds up");
        assert_eq!(spec["ttlSecondsAfterFinished"], 7200);
        let mut pod_labels = meta["labels"].clone();
        pod_labels["goflow.rs/job"] = json!(name);
        assert_eq!(spec["template"]["metadata"]["labels"], pod_labels);
        let pod = &spec["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Never");
        assert_eq!(pod["serviceAccountName"], "etl-reader");
        assert!(
            pod["automountServiceAccountToken"].is_null(),
            "the account decides"
        );
        assert_eq!(pod["nodeSelector"], json!({"pool": "batch"}));
        assert_eq!(pod["enableServiceLinks"], false);
        let containers = pod["containers"].as_array().unwrap();
        assert_eq!(containers.len(), 1);
        let c = &containers[0];
        assert_eq!(c["name"], "task");
        assert_eq!(c["image"], "registry.example.com/task:7");
        assert_eq!(c["imagePullPolicy"], "IfNotPresent");
        assert_eq!(c["command"], json!(["/usr/local/bin/dags"]));
        assert_eq!(
            c["args"],
            json!([
                "--quiet",
                "tasks",
                "run",
                "daily-sales",
                RUN,
                "Load_Rows.v2",
                "--try",
                "2"
            ])
        );
        assert_eq!(
            c["resources"],
            json!({"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}})
        );
        assert_eq!(
            c["env"],
            json!([
                {"name": "GOFLOW_DAG_ID", "value": "daily-sales"},
                {"name": "GOFLOW_RUN_ID", "value": RUN},
                {"name": "GOFLOW_TASK_ID", "value": "Load_Rows.v2"},
                {"name": "GOFLOW_TRY_NUMBER", "value": "2"},
                {"name": "GOFLOW_TASK_API_URL", "value": "http://goflow.goflow.svc:8080/api/v1/task-api"},
                {"name": "GOFLOW_TASK_TOKEN", "value": "tok3n"},
                {"name": "GOFLOW_CGROUP_METRICS", "value": "1"},
                {"name": "GOFLOW_WORKER", "value": "1"},
                {"name": "GOFLOW_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "RUST_LOG", "value": "info"},
                {"name": "REGION", "value": "north"},
            ])
        );
        // The typed value round-trips as Kubernetes would read it.
        let back: Job = serde_json::from_value(v).unwrap();
        assert_eq!(back, job);
    }

    #[test]
    fn images_and_namespaces_fall_back_in_order() {
        let config = config();
        let params = JobParams {
            config: &config,
            token: "t",
        };
        let image = |l: &Launch| {
            let job = job_manifest(l, params).unwrap();
            let pod = job.spec.unwrap().template.spec.unwrap();
            (
                job.metadata.namespace.unwrap(),
                pod.containers[0].image.clone().unwrap(),
                pod.automount_service_account_token,
                pod.service_account_name,
            )
        };
        let dag_defaults = TaskOptions {
            kubernetes: KubernetesOptions {
                image: Some("registry.example.com/dag:2".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        // The DAG's default image, the configured namespace.
        assert_eq!(
            image(&launch(None, dag_defaults, TaskOptions::default())),
            (
                "jobs-default".to_owned(),
                "registry.example.com/dag:2".to_owned(),
                Some(false),
                None
            )
        );
        // The global image; no timeout, no deadline; no resources.
        let l = launch(None, TaskOptions::default(), TaskOptions::default());
        assert_eq!(image(&l).1, "registry.example.com/global:1");
        let job = job_manifest(&l, params).unwrap();
        assert_eq!(job.spec.as_ref().unwrap().active_deadline_seconds, None);
        let pod = job.spec.unwrap().template.spec.unwrap();
        assert_eq!(pod.containers[0].resources, None);
        assert_eq!(pod.node_selector, None);
        // No image anywhere, a bad one, a bad quantity, a bad namespace.
        let none = KubernetesConfig {
            image: None,
            ..config.clone()
        };
        let err = job_manifest(
            &l,
            JobParams {
                config: &none,
                token: "t",
            },
        )
        .unwrap_err();
        assert!(matches!(err, ManifestError::NoImage { .. }), "{err}");
        let mut bad = task_options();
        bad.kubernetes.image = Some("Registry.example.com/UPPER:1".into());
        let err = job_manifest(&launch(None, TaskOptions::default(), bad), params).unwrap_err();
        assert!(err.to_string().contains("invalid image reference"), "{err}");
        let mut bad = task_options();
        bad.kubernetes.memory_limit = Some("1GB".into());
        let err = job_manifest(&launch(None, TaskOptions::default(), bad), params).unwrap_err();
        assert!(err.to_string().contains("invalid memory_limit"), "{err}");
        let bad_ns = KubernetesConfig {
            namespace: "Bad_NS".into(),
            ..config.clone()
        };
        let err = job_manifest(
            &launch(None, TaskOptions::default(), task_options()),
            JobParams {
                config: &bad_ns,
                token: "t",
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("invalid namespace"), "{err}");
    }

    #[test]
    fn names_are_dns_labels_unique_and_stable() {
        let n = job_name("goflow", "daily-sales", "manual__1", "extract", 1);
        assert_eq!(
            n, "daily-sales-extract-cb0a99ef83-1",
            "the same name in every goflow version: a restarted scheduler finds its Jobs"
        );
        assert_eq!(
            n,
            job_name("goflow", "daily-sales", "manual__1", "extract", 1)
        );
        assert_ne!(
            n,
            job_name("goflow", "daily-sales", "manual__2", "extract", 1)
        );
        assert_ne!(
            n,
            job_name("other", "daily-sales", "manual__1", "extract", 1)
        );
        // Capitals and `_` map to the same readable part: the hash differs.
        let a = job_name("goflow", "d", "r", "Load_Rows", 1);
        let b = job_name("goflow", "d", "r", "load-rows", 1);
        assert_ne!(a, b);
        let long = "x".repeat(63);
        for (dag, task, try_number) in [
            (long.as_str(), long.as_str(), u32::MAX),
            ("a", long.as_str(), 3),
            (long.as_str(), "b", 3),
            ("_", "__", 1),
            ("a-", "-b.c", 10),
        ] {
            let name = job_name(
                "goflow",
                dag,
                "scheduled__2026-01-01T00:00:00+00:00",
                task,
                try_number,
            );
            goflow_core::id::check_dns1123_label(&name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(name.ends_with(&format!("-{try_number}")), "{name}");
        }
        let both = job_name("goflow", &long, "r", &"y".repeat(63), 1);
        assert!(both.contains("xxx-yyy"), "both ids stay readable: {both}");
    }

    #[test]
    fn label_values_are_valid_and_distinct() {
        assert_eq!(label_value("extract"), "extract");
        assert_eq!(label_value("manual__1"), "manual__1");
        let run = label_value("scheduled__2026-01-01T00:00:00+00:00");
        assert!(is_label_value(&run), "{run}");
        assert!(
            run.starts_with("scheduled__2026-01-01T00_00_00_00_00-"),
            "{run}"
        );
        let other = label_value("scheduled__2026-01-01T00:00:00-00:00");
        assert_ne!(run, other);
        let long = label_value(&"a".repeat(100));
        assert!(is_label_value(&long) && long.len() == 63, "{long}");
        assert_ne!(long, label_value(&"a".repeat(101)));
        for weird in ["", "é", "++", "-a-", "a b"] {
            assert!(is_label_value(&label_value(weird)), "{weird:?}");
        }
        assert_eq!(
            instance_selector("goflow"),
            "app.kubernetes.io/managed-by=goflow,goflow.rs/instance=goflow"
        );
        assert_eq!(
            task_instance_selector("goflow", "etl", "manual__1", "load"),
            "app.kubernetes.io/managed-by=goflow,goflow.rs/instance=goflow,\
             goflow.rs/dag=etl,goflow.rs/run=manual__1,goflow.rs/task=load"
        );
        let hashed = task_instance_selector("goflow", "etl", "a:b", "load");
        assert!(hashed.contains(&format!("goflow.rs/run={}", label_value("a:b"))));
    }

    #[test]
    fn image_references() {
        for ok in [
            "busybox",
            "busybox:1.36",
            "ghcr.io/goflow-rs/app:v1.2.3",
            "localhost:5000/app",
            "registry.example.com:443/team/app_x:latest",
            "app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "Registry.Example.com/app:1",
        ] {
            assert!(check_image(ok).is_ok(), "{ok}: {:?}", check_image(ok));
        }
        for bad in [
            "",
            " ",
            "My/App:1",
            "app:",
            "app:-x",
            "app with space",
            "app@sha256:xyz",
            "/app",
            "app//x",
        ] {
            assert!(check_image(bad).is_err(), "{bad:?}");
        }
    }
}
