//! Tasks (`tasks:` of `slipway.yml`) → swarm jobs.
//!
//! A task borrows a converted service (`service: web`: its image,
//! environment, mounts, networks, configs and secrets) or is converted like
//! a Compose service of its own image, on every network the stack creates. Either
//! way it becomes `<stack>_<task>` in mode `replicated-job` — one task, no
//! restart — with the stack's labels and `io.slipway.task`, its `command` as
//! the container's arguments (as Compose's `command`), no published ports,
//! no health check, and no network alias, so that `http://web` still reaches
//! the service and not a task that borrowed it.

use bollard::models::{
    HealthConfig, NetworkAttachmentConfig, ServiceSpecMode, ServiceSpecModeReplicatedJob,
    TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum,
};

use crate::plan::{NetworkPlan, ServicePlan, TaskPlan, TASK_LABEL};

use super::super::compose::{Compose, Service};
use super::super::deploy_file::{TaskBase, TaskSpec};
use super::super::scalar::Text;
use super::super::yaml::PathError;
use super::service::{self, Refs};
use super::{ConvertError, Scope};

/// The job of `task`, from the plan's `services` (converted already).
pub fn convert(
    scope: &Scope<'_>,
    model: &Compose,
    task: &TaskSpec,
    services: &[ServicePlan],
    networks: &[NetworkPlan],
    refs: &Refs<'_>,
    warnings: &mut Vec<String>,
) -> Result<TaskPlan, ConvertError> {
    if model.services.contains_key(&task.name) {
        return Err(PathError::new(
            &task.key,
            format!(
                "task {:?} has the name of a service of the Compose files: the task's job \
                 would be {}, the service's name; rename the task",
                task.name,
                scope.scoped(&task.name)
            ),
        )
        .into());
    }
    let (mut job, service) = match &task.base {
        TaskBase::Service(name) => {
            let full = scope.scoped(name);
            let Some(base) = services.iter().find(|s| s.name == full) else {
                let names: Vec<&str> = model.services.keys().map(String::as_str).collect();
                return Err(PathError::new(
                    &task.key.key("service"),
                    format!(
                        "names no service of the Compose files ({name:?}; services: {})",
                        if names.is_empty() {
                            "none".to_owned()
                        } else {
                            names.join(", ")
                        }
                    ),
                )
                .into());
            };
            (base.clone(), Some(full))
        }
        TaskBase::Image(image) => {
            let own = Service {
                image: Some(Text(image.clone())),
                ..Service::default()
            };
            let mut job =
                service::convert(scope, model, &task.name, &own, refs, &task.key, warnings)?;
            // On every network of the stack, to reach any of its services.
            if let Some(template) = job.spec.task_template.as_mut() {
                let attached: Vec<NetworkAttachmentConfig> = networks
                    .iter()
                    .filter(|n| !n.external)
                    .map(|n| NetworkAttachmentConfig {
                        target: Some(n.name.clone()),
                        ..Default::default()
                    })
                    .collect();
                template.networks = (!attached.is_empty()).then_some(attached);
            }
            (job, None)
        }
    };
    let name = scope.scoped(&task.name);
    let args = service::command(task.command.as_ref(), &task.key.key("command"))?;
    let environment = environment(scope, task);
    let spec = &mut job.spec;
    spec.name = Some(name.clone());
    spec.mode = Some(ServiceSpecMode {
        replicated_job: Some(ServiceSpecModeReplicatedJob {
            max_concurrent: Some(1),
            total_completions: Some(1),
        }),
        ..Default::default()
    });
    spec.update_config = None;
    spec.rollback_config = None;
    spec.endpoint_spec = None;
    spec.labels
        .get_or_insert_with(Default::default)
        .insert(TASK_LABEL.into(), task.name.clone());
    if let Some(template) = spec.task_template.as_mut() {
        template.restart_policy = Some(TaskSpecRestartPolicy {
            condition: Some(TaskSpecRestartPolicyConditionEnum::NONE),
            max_attempts: Some(0),
            ..Default::default()
        });
        if let Some(placement) = template.placement.as_mut() {
            placement.max_replicas = None;
        }
        for attached in template.networks.iter_mut().flatten() {
            attached.aliases = None;
        }
        if let Some(container) = template.container_spec.as_mut() {
            if args.is_some() {
                container.args = args;
            }
            container.health_check = Some(HealthConfig {
                test: Some(vec!["NONE".into()]),
                ..Default::default()
            });
            if !environment.is_empty() {
                let mut env: Vec<String> = container
                    .env
                    .take()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|line| {
                        let key = line.split_once('=').map_or(line.as_str(), |(k, _)| k);
                        !environment.iter().any(|(k, _)| k == key)
                    })
                    .collect();
                env.extend(environment.iter().map(|(k, v)| format!("{k}={v}")));
                env.sort();
                container.env = Some(env);
            }
        }
    }
    job.name = name;
    Ok(TaskPlan {
        name: task.name.clone(),
        when: task.when,
        timeout: task.timeout,
        service,
        job,
    })
}

/// The task's `environment:`; a name without a value takes the variable of
/// that name, as a Compose service's does, and is left out when none is set.
fn environment(scope: &Scope<'_>, task: &TaskSpec) -> Vec<(String, String)> {
    task.environment
        .iter()
        .filter_map(|(key, value)| match value {
            Some(Text(v)) => Some((key.clone(), v.clone())),
            None => scope.variables.get(key).map(|v| (key.clone(), v.clone())),
        })
        .collect()
}
