//! Messages for what a user can get wrong: each names the namespace,
//! object and setting involved, and what to do.

use kube::runtime::watcher;

/// Describes a failed API call: `action` is what was attempted ("create
/// Job jobs/etl-load-1a2b-1"), in `namespace`.
pub(crate) fn describe(e: &kube::Error, action: &str, namespace: &str) -> String {
    match e {
        kube::Error::Api(s) => describe_status(s.code, &s.reason, &s.message, action, namespace),
        kube::Error::InferConfig(e) => no_config(e),
        kube::Error::HyperError(_) | kube::Error::Service(_) => format!(
            "cannot reach the Kubernetes API server to {action}: {e}{}",
            source_chain(e)
        ),
        other => format!("cannot {action}: {other}{}", source_chain(other)),
    }
}

fn describe_status(
    code: u16,
    reason: &str,
    message: &str,
    action: &str,
    namespace: &str,
) -> String {
    match code {
        401 => format!(
            "the Kubernetes API server refused goflow's credentials (401 Unauthorized) to \
             {action}: {message}; check the kubeconfig, or the scheduler's service account token"
        ),
        403 => format!(
            "forbidden by RBAC: the scheduler's service account may not {action} in namespace \
             {namespace:?} ({message}); apply the Role and RoleBinding printed by \
             `k8s manifests --task-namespaces {namespace}`"
        ),
        404 if action.starts_with("create") => format!(
            "namespace {namespace:?} does not exist, so goflow cannot {action} ({message}); \
             create it, or set the DAG's `namespace` or the scheduler's --k8s-namespace"
        ),
        422 => format!("Kubernetes rejected the request to {action} as invalid: {message}"),
        _ => format!("the Kubernetes API server refused to {action}: {code} {reason}: {message}"),
    }
}

/// Describes a watch failure (shown when a try in the namespace fails
/// because nothing could be seen of it).
pub(crate) fn describe_watch(e: &watcher::Error, kind: &str, namespace: &str) -> String {
    let action = format!("watch {kind} in namespace {namespace:?}");
    match e {
        watcher::Error::InitialListFailed(e)
        | watcher::Error::WatchStartFailed(e)
        | watcher::Error::WatchFailed(e) => describe(e, &action, namespace),
        watcher::Error::WatchError(s) => {
            describe_status(s.code, &s.reason, &s.message, &action, namespace)
        }
        other => format!("cannot {action}: {other}"),
    }
}

/// The message when no client configuration can be found.
pub(crate) fn no_config(e: &dyn std::error::Error) -> String {
    format!(
        "no Kubernetes configuration: not running in a cluster (no service account token) and \
         no usable kubeconfig ($KUBECONFIG or ~/.kube/config): {e}{}",
        source_chain(e)
    )
}

/// `: cause: cause...` of an error's sources, which kube's messages leave
/// out.
fn source_chain(e: &dyn std::error::Error) -> String {
    let mut out = String::new();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::ErrorResponse;

    fn api(code: u16, reason: &str, message: &str) -> kube::Error {
        kube::Error::Api(ErrorResponse {
            status: "Failure".into(),
            message: message.into(),
            reason: reason.into(),
            code,
        })
    }

    #[test]
    fn messages_name_what_is_wrong() {
        let m = describe(
            &api(403, "Forbidden", "jobs.batch is forbidden"),
            "create Job jobs/x-1",
            "jobs",
        );
        assert!(
            m.contains("forbidden by RBAC") && m.contains("--task-namespaces jobs"),
            "{m}"
        );
        let m = describe(
            &api(404, "NotFound", "namespaces \"nope\" not found"),
            "create Job nope/x-1",
            "nope",
        );
        assert!(m.contains("namespace \"nope\" does not exist"), "{m}");
        let m = describe(&api(422, "Invalid", "spec.x: bad"), "create Job a/b", "a");
        assert!(m.contains("rejected") && m.contains("spec.x: bad"), "{m}");
        let m = describe(&api(401, "Unauthorized", "no"), "list pods", "a");
        assert!(m.contains("credentials"), "{m}");
    }
}
