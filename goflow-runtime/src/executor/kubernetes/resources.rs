//! What a try's pod reserved on its node: its CPU and memory requests and
//! limits, read from the pod as the API server admitted it, so defaults a
//! `LimitRange` filled in and sidecars a webhook injected count too.
//!
//! The figures are the pod's, computed as the kube-scheduler does: the sum
//! over its containers (and sidecar init containers), at least the largest
//! classic init container, plus the runtime class's overhead. A limit is
//! only known when every container has one; one unlimited container makes
//! the pod unlimited.

use std::collections::BTreeMap;

use goflow_core::options::quantity_millis;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// A pod's reservations. `None` where the pod sets nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Reserved {
    pub cpu_request_millis: Option<u64>,
    pub memory_request_bytes: Option<u64>,
    pub cpu_limit_millis: Option<u64>,
    pub memory_limit_bytes: Option<u64>,
}

/// The reservations of the try's pod, else of its Job's pod template (when
/// the pod is gone or was never created).
pub(crate) fn reserved(pod: Option<&Pod>, job: Option<&Job>) -> Reserved {
    let spec = pod.and_then(|p| p.spec.as_ref()).or_else(|| {
        job.and_then(|j| j.spec.as_ref())
            .and_then(|s| s.template.spec.as_ref())
    });
    spec.map(of_spec).unwrap_or_default()
}

fn of_spec(spec: &PodSpec) -> Reserved {
    let cpu = |thousandths: u128| u64::try_from(thousandths).ok();
    let bytes = |thousandths: u128| u64::try_from(thousandths.div_ceil(1000)).ok();
    Reserved {
        cpu_request_millis: request(spec, "cpu").and_then(cpu),
        memory_request_bytes: request(spec, "memory").and_then(bytes),
        cpu_limit_millis: limit(spec, "cpu").and_then(cpu),
        memory_limit_bytes: limit(spec, "memory").and_then(bytes),
    }
}

type Get = fn(&Container) -> Option<&BTreeMap<String, Quantity>>;

fn requests_of(c: &Container) -> Option<&BTreeMap<String, Quantity>> {
    c.resources.as_ref()?.requests.as_ref()
}

fn limits_of(c: &Container) -> Option<&BTreeMap<String, Quantity>> {
    c.resources.as_ref()?.limits.as_ref()
}

/// One container's value of `resource`, in thousandths. A value that does
/// not parse counts as unset: the API server would not have admitted it.
fn value(c: &Container, get: Get, resource: &str) -> Option<u128> {
    get(c)?
        .get(resource)
        .and_then(|q| quantity_millis(&q.0).ok())
}

/// Init containers that keep running beside the main ones.
fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

fn overhead(spec: &PodSpec, resource: &str) -> u128 {
    spec.overhead
        .as_ref()
        .and_then(|o| o.get(resource))
        .and_then(|q| quantity_millis(&q.0).ok())
        .unwrap_or(0)
}

fn request(spec: &PodSpec, resource: &str) -> Option<u128> {
    pod_figure(spec, requests_of, resource, false)
}

fn limit(spec: &PodSpec, resource: &str) -> Option<u128> {
    pod_figure(spec, limits_of, resource, true)
}

/// The pod's figure of `resource`: the sum over the containers that run
/// together, at least the largest classic init container, plus overhead.
/// With `every`, a container without a value makes the pod's `None` (no
/// limit); otherwise it counts as zero, and `None` means no container has
/// one.
fn pod_figure(spec: &PodSpec, get: Get, resource: &str, every: bool) -> Option<u128> {
    let inits = spec.init_containers.as_deref().unwrap_or_default();
    let (sidecars, classic): (Vec<&Container>, Vec<&Container>) =
        inits.iter().partition(|c| is_sidecar(c));
    let mut any = false;
    let mut value_of = |c: &Container| match value(c, get, resource) {
        Some(v) => {
            any = true;
            Some(v)
        }
        None if every => None,
        None => Some(0),
    };
    let mut sum: u128 = 0;
    for c in spec.containers.iter().chain(sidecars) {
        sum = sum.saturating_add(value_of(c)?);
    }
    let mut largest_init: u128 = 0;
    for c in classic {
        largest_init = largest_init.max(value_of(c)?);
    }
    any.then(|| {
        sum.max(largest_init)
            .saturating_add(overhead(spec, resource))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::JobSpec;
    use k8s_openapi::api::core::v1::{PodTemplateSpec, ResourceRequirements};

    fn quantities(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, Quantity>> {
        (!pairs.is_empty()).then(|| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
                .collect()
        })
    }

    fn container(name: &str, requests: &[(&str, &str)], limits: &[(&str, &str)]) -> Container {
        Container {
            name: name.to_owned(),
            resources: Some(ResourceRequirements {
                requests: quantities(requests),
                limits: quantities(limits),
                ..ResourceRequirements::default()
            }),
            ..Container::default()
        }
    }

    fn pod(spec: PodSpec) -> Pod {
        Pod {
            spec: Some(spec),
            ..Pod::default()
        }
    }

    #[test]
    fn one_container_is_read_in_millicores_and_bytes() {
        let spec = PodSpec {
            containers: vec![container(
                "task",
                &[("cpu", "250m"), ("memory", "256Mi")],
                &[("cpu", "1"), ("memory", "1Gi")],
            )],
            ..PodSpec::default()
        };
        assert_eq!(
            reserved(Some(&pod(spec)), None),
            Reserved {
                cpu_request_millis: Some(250),
                memory_request_bytes: Some(256 << 20),
                cpu_limit_millis: Some(1000),
                memory_limit_bytes: Some(1 << 30),
            }
        );
    }

    #[test]
    fn sidecars_add_up_init_containers_set_a_floor_and_overhead_is_added() {
        let mut sidecar = container("proxy", &[("cpu", "100m")], &[("cpu", "200m")]);
        sidecar.restart_policy = Some("Always".into());
        let spec = PodSpec {
            containers: vec![
                container("task", &[("cpu", "500m"), ("memory", "64Mi")], &[]),
                container("mesh", &[("cpu", "50m")], &[]),
            ],
            init_containers: Some(vec![
                container("migrate", &[("cpu", "2"), ("memory", "32Mi")], &[]),
                sidecar,
            ]),
            overhead: quantities(&[("cpu", "10m")]),
            ..PodSpec::default()
        };
        let r = reserved(Some(&pod(spec)), None);
        // max(500 + 50 + 100, 2000) + 10
        assert_eq!(r.cpu_request_millis, Some(2010));
        // max(64Mi, 32Mi)
        assert_eq!(r.memory_request_bytes, Some(64 << 20));
        // `task` has no CPU limit, so the pod has none.
        assert_eq!(r.cpu_limit_millis, None);
        assert_eq!(r.memory_limit_bytes, None);
    }

    #[test]
    fn nothing_set_is_none_and_the_job_template_stands_in_for_a_missing_pod() {
        let bare = PodSpec {
            containers: vec![Container {
                name: "task".into(),
                ..Container::default()
            }],
            ..PodSpec::default()
        };
        assert_eq!(reserved(Some(&pod(bare)), None), Reserved::default());
        assert_eq!(reserved(None, None), Reserved::default());

        let job = Job {
            spec: Some(JobSpec {
                template: PodTemplateSpec {
                    spec: Some(PodSpec {
                        containers: vec![container("task", &[("memory", "1.5Gi")], &[])],
                        ..PodSpec::default()
                    }),
                    ..PodTemplateSpec::default()
                },
                ..JobSpec::default()
            }),
            ..Job::default()
        };
        let r = reserved(None, Some(&job));
        assert_eq!(r.memory_request_bytes, Some(3 << 29));
        assert_eq!(r.cpu_request_millis, None);
    }
}
