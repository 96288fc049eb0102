//! `k8s manifests`: what to apply to run the scheduler in a cluster.

use std::io::Write;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::CliError;
use crate::k8s_manifests::{manifests, ManifestOptions};

/// `k8s ...`
#[derive(Clone, Debug, Subcommand)]
pub enum K8sCommand {
    /// Print the YAML of what runs the scheduler in a cluster: a
    /// ServiceAccount, a Role and RoleBinding (only what the Kubernetes
    /// executor uses) in each namespace Jobs run in, the scheduler's
    /// Deployment and its Service. Apply with `kubectl apply -f -`.
    Manifests(ManifestsArgs),
}

/// `k8s manifests`
#[derive(Clone, Debug, Args)]
pub struct ManifestsArgs {
    /// The scheduler's namespace (it must exist).
    #[arg(long, short, default_value = "goflow")]
    pub namespace: String,
    /// The image of this binary, for the scheduler and its tasks.
    #[arg(long, env = "GOFLOW_IMAGE")]
    pub image: String,
    /// Other namespaces where DAGs run their Jobs (their `namespace`
    /// option), comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "NS,...")]
    pub task_namespaces: Vec<String>,
    /// Name of the objects (and the Service's host name).
    #[arg(long, default_value = "goflow")]
    pub name: String,
    /// Scheduler replicas (more than one needs PostgreSQL).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..))]
    pub replicas: i32,
}

pub(super) fn run(command: &K8sCommand, out: &mut dyn Write) -> Result<ExitCode, CliError> {
    match command {
        K8sCommand::Manifests(args) => {
            let mut options = ManifestOptions::new(args.namespace.trim(), args.image.trim());
            options.task_namespaces = args
                .task_namespaces
                .iter()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect();
            options.name = args.name.clone();
            options.replicas = args.replicas;
            let yaml = manifests(&options)?.to_yaml()?;
            out.write_all(yaml.as_bytes())?;
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
