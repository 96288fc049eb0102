//! What a user applies to run the scheduler in a cluster, as Kubernetes
//! API values (`k8s manifests` prints them as YAML): a ServiceAccount; in
//! each namespace where Jobs run, a Role with only what the Kubernetes
//! executor uses and a RoleBinding to the account; the scheduler's
//! Deployment; and the Service through which users reach the UI and task
//! pods reach the task API.
//!
//! The Deployment expects a Secret `goflow-database` with the database
//! URL under `url` (PostgreSQL for a cluster). Two optional Secrets are
//! read when they exist: `goflow-task-api` (`secret`: the secret task
//! tokens derive from, shared by replicas so that pods survive a
//! restart) and `goflow-web` (`api-token`: the web API's token).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SecretKeySelector, SecurityContext,
    Service, ServiceAccount, ServicePort, ServiceSpec,
};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::executor::kubernetes::config::{DEFAULT_PORT, DEFAULT_SERVICE};
use crate::task_api::TASK_TOKEN_SECRET_ENV;

/// The Secret holding the database URL (key `url`).
pub const DATABASE_SECRET: &str = "goflow-database";
/// The optional Secret holding the task-token secret (key `secret`).
pub const TASK_API_SECRET: &str = "goflow-task-api";
/// The optional Secret holding the web API token (key `api-token`).
pub const WEB_SECRET: &str = "goflow-web";

/// What to generate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestOptions {
    /// The scheduler's namespace.
    pub namespace: String,
    /// The image of the scheduler (and, by default, of tasks): the user's
    /// binary.
    pub image: String,
    /// Other namespaces where DAGs run Jobs (their `namespace` option).
    pub task_namespaces: Vec<String>,
    /// Name of the ServiceAccount, Role, RoleBinding, Deployment and
    /// Service (and so the advertise URL's host).
    pub name: String,
    /// Scheduler replicas (more than one needs PostgreSQL).
    pub replicas: i32,
    /// The port the web server listens on.
    pub port: u16,
}

impl ManifestOptions {
    /// Defaults for `image` in `namespace`.
    pub fn new(namespace: impl Into<String>, image: impl Into<String>) -> Self {
        ManifestOptions {
            namespace: namespace.into(),
            image: image.into(),
            task_namespaces: Vec::new(),
            name: DEFAULT_SERVICE.to_owned(),
            replicas: 1,
            port: DEFAULT_PORT,
        }
    }

    /// The scheduler's namespace, then the task namespaces, without
    /// repeats.
    pub fn job_namespaces(&self) -> Vec<String> {
        let mut all = vec![self.namespace.clone()];
        for ns in &self.task_namespaces {
            if !all.contains(ns) {
                all.push(ns.clone());
            }
        }
        all
    }

    /// The URL task pods use to reach the scheduler.
    pub fn advertise_url(&self) -> String {
        format!("http://{}.{}.svc:{}", self.name, self.namespace, self.port)
    }
}

/// The objects, in the order they are applied.
#[derive(Clone, Debug, PartialEq)]
pub struct Manifests {
    /// The scheduler's identity.
    pub service_account: ServiceAccount,
    /// One per namespace where Jobs run.
    pub roles: Vec<Role>,
    /// One per Role, binding it to the account.
    pub role_bindings: Vec<RoleBinding>,
    /// The scheduler.
    pub deployment: Deployment,
    /// Its Service.
    pub service: Service,
}

/// Why manifests cannot be generated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestsError {
    /// A namespace or name that is not a DNS-1123 label.
    #[error("invalid {what} {value:?}: {reason}")]
    Invalid {
        /// `--namespace`, `--task-namespaces`, `--name`.
        what: &'static str,
        /// The value.
        value: String,
        /// Why.
        reason: String,
    },
    /// The image reference is not one.
    #[error("invalid --image {image:?}: {reason}")]
    Image {
        /// The reference.
        image: String,
        /// Why.
        reason: String,
    },
    /// The YAML could not be written.
    #[error("cannot write the manifests as YAML: {0}")]
    Yaml(#[from] serde_norway::Error),
}

fn labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), name.to_owned()),
        (
            "app.kubernetes.io/component".to_owned(),
            "scheduler".to_owned(),
        ),
    ])
}

fn meta(name: &str, namespace: &str) -> ObjectMeta {
    let mut labels = labels(name);
    labels.insert("app.kubernetes.io/part-of".to_owned(), "goflow".to_owned());
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(namespace.to_owned()),
        labels: Some(labels),
        ..Default::default()
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// The rules of the Role: what the Kubernetes executor does, nothing more.
pub fn executor_rules() -> Vec<PolicyRule> {
    vec![
        PolicyRule {
            api_groups: Some(strings(&["batch"])),
            resources: Some(strings(&["jobs"])),
            verbs: strings(&["create", "get", "list", "watch", "delete"]),
            ..Default::default()
        },
        PolicyRule {
            api_groups: Some(strings(&[""])),
            resources: Some(strings(&["pods"])),
            verbs: strings(&["get", "list", "watch"]),
            ..Default::default()
        },
        PolicyRule {
            api_groups: Some(strings(&[""])),
            resources: Some(strings(&["pods/log"])),
            verbs: strings(&["get"]),
            ..Default::default()
        },
    ]
}

fn secret_env(name: &str, secret: &str, key: &str, optional: bool) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_owned(),
                key: key.to_owned(),
                optional: optional.then_some(true),
            }),
            ..Default::default()
        }),
    }
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.into()),
        value_from: None,
    }
}

fn check(what: &'static str, value: &str) -> Result<(), ManifestsError> {
    goflow_core::id::check_dns1123_label(value).map_err(|reason| ManifestsError::Invalid {
        what,
        value: value.to_owned(),
        reason,
    })
}

/// The manifests for `options`.
pub fn manifests(options: &ManifestOptions) -> Result<Manifests, ManifestsError> {
    check("--namespace", &options.namespace)?;
    check("--name", &options.name)?;
    for ns in &options.task_namespaces {
        check("--task-namespaces", ns)?;
    }
    crate::executor::kubernetes::manifest::check_image(&options.image).map_err(|reason| {
        ManifestsError::Image {
            image: options.image.clone(),
            reason,
        }
    })?;
    let name = options.name.as_str();
    let ns = options.namespace.as_str();

    let service_account = ServiceAccount {
        metadata: meta(name, ns),
        ..Default::default()
    };
    let mut roles = Vec::new();
    let mut role_bindings = Vec::new();
    for job_ns in options.job_namespaces() {
        roles.push(Role {
            metadata: meta(name, &job_ns),
            rules: Some(executor_rules()),
        });
        role_bindings.push(RoleBinding {
            metadata: meta(name, &job_ns),
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".to_owned(),
                kind: "Role".to_owned(),
                name: name.to_owned(),
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".to_owned(),
                name: name.to_owned(),
                namespace: Some(ns.to_owned()),
                api_group: None,
            }]),
        });
    }

    let probe = |path: &str, period: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String("http".to_owned()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(5),
        failure_threshold: Some(3),
        ..Default::default()
    };
    let container = Container {
        name: "scheduler".to_owned(),
        image: Some(options.image.clone()),
        args: Some(strings(&["scheduler"])),
        ports: Some(vec![ContainerPort {
            name: Some("http".to_owned()),
            container_port: i32::from(options.port),
            protocol: Some("TCP".to_owned()),
            ..Default::default()
        }]),
        env: Some(vec![
            secret_env("GOFLOW_DATABASE_URL", DATABASE_SECRET, "url", false),
            env("GOFLOW_EXECUTOR", "kubernetes"),
            env("GOFLOW_IMAGE", options.image.clone()),
            env("GOFLOW_K8S_NAMESPACE", ns),
            env("GOFLOW_K8S_INSTANCE", name),
            env("GOFLOW_ADVERTISE_URL", options.advertise_url()),
            env("GOFLOW_BIND", format!("0.0.0.0:{}", options.port)),
            secret_env(TASK_TOKEN_SECRET_ENV, TASK_API_SECRET, "secret", true),
            secret_env("GOFLOW_API_TOKEN", WEB_SECRET, "api-token", true),
            env("RUST_LOG", "info"),
        ]),
        liveness_probe: Some(probe("/healthz", 10)),
        readiness_probe: Some(probe("/readyz", 5)),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(strings(&["ALL"])),
                add: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let deployment = Deployment {
        metadata: meta(name, ns),
        spec: Some(DeploymentSpec {
            replicas: Some(options.replicas),
            selector: LabelSelector {
                match_labels: Some(labels(name)),
                ..Default::default()
            },
            // Two schedulers with one id would fight over its runs: stop
            // the old pod before starting the new one.
            strategy: (options.replicas == 1).then(|| DeploymentStrategy {
                type_: Some("Recreate".to_owned()),
                rolling_update: None,
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(name)),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(name.to_owned()),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(65532),
                        run_as_group: Some(65532),
                        ..Default::default()
                    }),
                    containers: vec![container],
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    };
    let service = Service {
        metadata: meta(name, ns),
        spec: Some(ServiceSpec {
            selector: Some(labels(name)),
            ports: Some(vec![ServicePort {
                name: Some("http".to_owned()),
                port: i32::from(options.port),
                target_port: Some(IntOrString::String("http".to_owned())),
                protocol: Some("TCP".to_owned()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    };
    Ok(Manifests {
        service_account,
        roles,
        role_bindings,
        deployment,
        service,
    })
}

impl Manifests {
    /// All objects as one YAML stream (`---` between documents), in
    /// apply order.
    pub fn to_yaml(&self) -> Result<String, ManifestsError> {
        let mut docs = vec![serde_norway::to_string(&self.service_account)?];
        for role in &self.roles {
            docs.push(serde_norway::to_string(role)?);
        }
        for binding in &self.role_bindings {
            docs.push(serde_norway::to_string(binding)?);
        }
        docs.push(serde_norway::to_string(&self.deployment)?);
        docs.push(serde_norway::to_string(&self.service)?);
        Ok(docs
            .into_iter()
            .map(|d| format!("---\n{d}"))
            .collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generated() -> Manifests {
        let mut options = ManifestOptions::new("goflow", "registry.example.com/dags:1");
        options.task_namespaces = vec!["analytics".into(), "goflow".into()];
        manifests(&options).unwrap()
    }

    #[test]
    fn roles_grant_only_what_the_executor_uses_where_jobs_run() {
        let m = generated();
        let namespaces: Vec<_> = m
            .roles
            .iter()
            .map(|r| r.metadata.namespace.clone().unwrap())
            .collect();
        assert_eq!(namespaces, ["goflow", "analytics"]);
        for role in &m.roles {
            let rules = role.rules.as_ref().unwrap();
            let mut grants: Vec<(String, String, Vec<String>)> = rules
                .iter()
                .flat_map(|r| {
                    let groups = r.api_groups.clone().unwrap();
                    r.resources
                        .clone()
                        .unwrap()
                        .into_iter()
                        .flat_map(move |res| {
                            let verbs = r.verbs.clone();
                            groups
                                .clone()
                                .into_iter()
                                .map(move |g| (g, res.clone(), verbs.clone()))
                        })
                })
                .collect();
            grants.sort();
            assert_eq!(
                grants,
                [
                    ("".into(), "pods".into(), strings(&["get", "list", "watch"])),
                    ("".into(), "pods/log".into(), strings(&["get"])),
                    (
                        "batch".into(),
                        "jobs".into(),
                        strings(&["create", "get", "list", "watch", "delete"])
                    ),
                ]
            );
        }
        for (binding, role) in m.role_bindings.iter().zip(&m.roles) {
            assert_eq!(binding.metadata.namespace, role.metadata.namespace);
            assert_eq!(binding.role_ref.kind, "Role");
            assert_eq!(Some(&binding.role_ref.name), role.metadata.name.as_ref());
            let subject = &binding.subjects.as_ref().unwrap()[0];
            assert_eq!(
                (
                    subject.kind.as_str(),
                    subject.name.as_str(),
                    subject.namespace.as_deref()
                ),
                ("ServiceAccount", "goflow", Some("goflow"))
            );
        }
    }

    #[test]
    fn the_deployment_runs_the_scheduler_with_probes_and_secrets() {
        let m = generated();
        let spec = m.deployment.spec.as_ref().unwrap();
        let pod = spec.template.spec.as_ref().unwrap();
        assert_eq!(pod.service_account_name.as_deref(), Some("goflow"));
        assert_eq!(
            spec.selector.match_labels.as_ref(),
            spec.template.metadata.as_ref().unwrap().labels.as_ref()
        );
        let c = &pod.containers[0];
        assert_eq!(c.image.as_deref(), Some("registry.example.com/dags:1"));
        assert_eq!(c.args.as_deref(), Some(&strings(&["scheduler"])[..]));
        let path = |p: &Option<Probe>| p.as_ref().unwrap().http_get.as_ref().unwrap().path.clone();
        assert_eq!(path(&c.liveness_probe).as_deref(), Some("/healthz"));
        assert_eq!(path(&c.readiness_probe).as_deref(), Some("/readyz"));
        let env = c.env.as_ref().unwrap();
        let get = |n: &str| env.iter().find(|e| e.name == n).unwrap();
        let db = get("GOFLOW_DATABASE_URL").value_from.as_ref().unwrap();
        let secret = db.secret_key_ref.as_ref().unwrap();
        assert_eq!(
            (secret.name.as_str(), secret.key.as_str(), secret.optional),
            ("goflow-database", "url", None)
        );
        assert!(
            get("GOFLOW_DATABASE_URL").value.is_none(),
            "no credentials in the manifest"
        );
        assert_eq!(
            get("GOFLOW_IMAGE").value.as_deref(),
            Some("registry.example.com/dags:1")
        );
        assert_eq!(get("GOFLOW_EXECUTOR").value.as_deref(), Some("kubernetes"));
        assert_eq!(
            get("GOFLOW_ADVERTISE_URL").value.as_deref(),
            Some("http://goflow.goflow.svc:8080")
        );
        let token = get(TASK_TOKEN_SECRET_ENV).value_from.as_ref().unwrap();
        assert_eq!(token.secret_key_ref.as_ref().unwrap().optional, Some(true));
        assert_eq!(c.ports.as_ref().unwrap()[0].container_port, 8080);
    }

    #[test]
    fn the_service_matches_the_pods_and_the_advertise_url() {
        let m = generated();
        let svc = m.service.spec.as_ref().unwrap();
        let pod_labels = m
            .deployment
            .spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .clone();
        assert_eq!(svc.selector, pod_labels);
        assert_eq!(svc.ports.as_ref().unwrap()[0].port, 8080);
        assert_eq!(m.service.metadata.name.as_deref(), Some("goflow"));
        assert_eq!(m.service.metadata.namespace.as_deref(), Some("goflow"));
    }

    #[test]
    fn yaml_has_every_document_with_kind_and_api_version() {
        let yaml = generated().to_yaml().unwrap();
        let docs: Vec<serde_norway::Value> = serde_norway::Deserializer::from_str(&yaml)
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .collect();
        let kinds: Vec<(String, String)> = docs
            .iter()
            .map(|d| {
                (
                    d["apiVersion"].as_str().unwrap().to_owned(),
                    d["kind"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let expected = [
            ("v1", "ServiceAccount"),
            ("rbac.authorization.k8s.io/v1", "Role"),
            ("rbac.authorization.k8s.io/v1", "Role"),
            ("rbac.authorization.k8s.io/v1", "RoleBinding"),
            ("rbac.authorization.k8s.io/v1", "RoleBinding"),
            ("apps/v1", "Deployment"),
            ("v1", "Service"),
        ]
        .map(|(a, k)| (a.to_owned(), k.to_owned()));
        assert_eq!(kinds, expected);
    }

    #[test]
    fn yaml_reads_back_as_the_same_objects() {
        use serde::Deserialize;
        let m = generated();
        let yaml = m.to_yaml().unwrap();
        let mut docs = serde_norway::Deserializer::from_str(&yaml);
        let mut next = || docs.next().expect("one document per object");
        assert_eq!(
            ServiceAccount::deserialize(next()).unwrap(),
            m.service_account
        );
        for role in &m.roles {
            assert_eq!(&Role::deserialize(next()).unwrap(), role);
        }
        for binding in &m.role_bindings {
            assert_eq!(&RoleBinding::deserialize(next()).unwrap(), binding);
        }
        assert_eq!(Deployment::deserialize(next()).unwrap(), m.deployment);
        assert_eq!(Service::deserialize(next()).unwrap(), m.service);
        assert!(docs.next().is_none(), "no document past the Service");
    }

    #[test]
    fn bad_input_is_named() {
        let mut o = ManifestOptions::new("Goflow", "x:1");
        assert!(manifests(&o)
            .unwrap_err()
            .to_string()
            .contains("--namespace"));
        o.namespace = "ok".into();
        o.task_namespaces = vec!["no_underscores".into()];
        assert!(manifests(&o)
            .unwrap_err()
            .to_string()
            .contains("--task-namespaces"));
        o.task_namespaces.clear();
        o.image = "Bad Image".into();
        assert!(manifests(&o).unwrap_err().to_string().contains("--image"));
    }
}
